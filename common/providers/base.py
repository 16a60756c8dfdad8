"""The provider interface: normalized stream events, request/config types, streams and the adapter ABC.

Every upstream (OpenAI-compatible servers, Azure OpenAI, Ollama, Google Gemini and the local demo model)
is reached through a :class:`ProviderAdapter`. Adapters translate one :class:`ChatRequest` into the
provider's wire format and translate the provider's answer back into a small set of normalized events:

    ReasoningDelta* ContentDelta* Finish? Usage? EndOfStream

``EndOfStream`` is only produced when the provider's end marker arrived (``data: [DONE]``, a
``finish_reason``, Ollama ``done: true``, Gemini ``finishReason``). A stream that stops without it raises
:class:`~.errors.UpstreamTruncatedError` instead of ending quietly (the errors are in ``errors.py``).

Streams are :class:`ProviderStream` objects: iterators with a ``close()`` that may be called from any
greenlet (or thread) and closes the upstream connection at once, also while another greenlet is blocked
reading from it. This module has no Flask (or any web framework) dependency.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

# --------------------------------------------------------------------------------------------------
# Normalized stream events
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContentDelta:
    """A piece of the visible answer."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of the model's reasoning ("thinking"), shown separately from the answer."""

    text: str


@dataclass(frozen=True, slots=True)
class Finish:
    """The provider said why it stopped (normalized: ``stop``, ``length``, ``content_filter``, ...)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts as reported by the provider."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """The provider's end marker arrived: the answer is complete."""


StreamEvent = ContentDelta | ReasoningDelta | Finish | Usage | EndOfStream

# --------------------------------------------------------------------------------------------------
# Requests, configuration, results
# --------------------------------------------------------------------------------------------------

ProviderName = Literal["openai", "azure_openai", "ollama", "google_genai", "demo"]


@dataclass(slots=True)
class ProviderConfig:
    """One connection and one of its API keys, decrypted, ready to use.

    ``base_url`` is the connection's base URL as stored (for OpenAI-compatible servers it usually ends
    in ``/v1``; for Gemini ``https://generativelanguage.googleapis.com/v1beta``; for Azure the resource
    URL ``https://<name>.openai.azure.com``; for Ollama ``http://host:11434``). ``headers`` are extra
    static headers configured on the connection.
    """

    provider: str
    base_url: str = ""
    api_key: str | None = None
    auth_type: Literal["bearer", "none"] = "bearer"
    headers: dict[str, str] = field(default_factory=dict)
    azure_api_version: str | None = None
    demo_delay_ms: int = 30

    def __repr__(self) -> str:  # never show the key in logs or tracebacks
        key = "set" if self.api_key else "none"
        return (
            f"ProviderConfig(provider={self.provider!r}, base_url={self.base_url!r}, api_key=<{key}>, "
            f"auth_type={self.auth_type!r})"
        )


@dataclass(slots=True)
class ChatRequest:
    """One chat completion request in OpenAI's message shape.

    ``messages`` is a list of ``{"role": "system"|"user"|"assistant", "content": str | list[part]}`` where
    a part is ``{"type": "text", "text": ...}`` or
    ``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}``.
    ``model`` is the raw upstream model id (for Azure: the deployment name).
    ``extra_body`` is merged into the provider's JSON body; it can never replace the model or the
    streaming switches. ``extra_headers`` are sent too, but never override the authentication header.
    """

    model: str
    messages: list[dict[str, Any]]
    temperature: float | None = None
    max_tokens: int | None = None
    reasoning_effort: str | None = None
    ollama_think: bool | None = None
    extra_body: dict[str, Any] | None = None
    extra_headers: dict[str, str] | None = None


@dataclass(slots=True)
class CompletionResult:
    """The answer of a non-streaming request."""

    content: str
    reasoning: str
    finish_reason: str | None
    usage: Usage | None


@dataclass(slots=True)
class ModelInfo:
    """One model of a provider's catalog.

    ``capabilities`` holds only what the provider told us, e.g. ``{"vision": True, "reasoning": True}``.
    """

    raw_id: str
    name: str
    context_window: int | None = None
    max_output_tokens: int | None = None
    capabilities: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------------


class HTTPClient(Protocol):
    """Anything with a ``requests.Session``-compatible ``request`` method returning a ``requests.Response``."""

    def request(self, method: str, url: str, **kwargs: Any) -> Any: ...


class ProviderStream(Iterator[StreamEvent]):
    """A closable iterator of normalized events.

    ``close()`` may be called at any time from any greenlet or thread, also while another greenlet is
    blocked inside ``next()``: the upstream connection is closed at once and the blocked reader returns
    promptly. After ``close()`` iteration simply stops (no exception); ``closed`` tells why.
    ``ended`` becomes true once :class:`EndOfStream` was produced. Also usable as a context manager.

    Subclasses implement :meth:`_produce` (the event generator, which must release its resources in a
    ``finally``) and :meth:`_abort` (wake a blocked reader; must be safe to call from another greenlet).
    """

    def __init__(self) -> None:
        self._gen: Iterator[StreamEvent] | None = None
        self._closed = False
        self._ended = False
        # Held by the reader for the duration of one next(); close() only finalizes the generator
        # itself when it can take the lock without waiting (else the reader does it when it wakes).
        self._lock = threading.Lock()

    # -- subclass hooks ---------------------------------------------------------------------------

    @abc.abstractmethod
    def _produce(self) -> Iterator[StreamEvent]:
        """Generate the events (runs in the reader's greenlet)."""

    def _abort(self) -> None:  # noqa: B027 - optional hook
        """Interrupt a reader blocked in I/O. Called by ``close()``, possibly from another greenlet."""

    # -- public API -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called (by anyone)."""
        return self._closed

    @property
    def ended(self) -> bool:
        """True once the provider's end marker arrived (``EndOfStream`` was produced)."""
        return self._ended

    def __iter__(self) -> ProviderStream:
        return self

    def __next__(self) -> StreamEvent:
        if self._closed:
            raise StopIteration
        with self._lock:
            if self._closed:
                self._finalize()
                raise StopIteration
            if self._gen is None:
                self._gen = self._produce()
            try:
                event = next(self._gen)
            except StopIteration:
                raise
            except _StreamCancelled:
                self._finalize()
                raise StopIteration from None
            except Exception:
                if self._closed:
                    # The reader was woken up by close(): that is not an error.
                    self._finalize()
                    raise StopIteration from None
                raise
            if self._closed:
                self._finalize()
                raise StopIteration
        if isinstance(event, EndOfStream):
            self._ended = True
        return event

    def close(self) -> None:
        """Close the upstream connection now. Idempotent; safe from any greenlet or thread."""
        if self._closed:
            return
        self._closed = True
        try:
            self._abort()
        finally:
            if self._lock.acquire(blocking=False):
                try:
                    self._finalize()
                finally:
                    self._lock.release()

    def _finalize(self) -> None:
        gen, self._gen = self._gen, None
        if gen is not None:
            close = getattr(gen, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # best effort cleanup
                    pass

    def __enter__(self) -> ProviderStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed:
                self.close()
        except Exception:  # never raise from a finalizer
            pass


class _StreamCancelled(BaseException):
    """Thrown into a reader greenlet blocked before the response headers arrived, to abort the request.

    A BaseException so that no ``except Exception`` in the HTTP stack swallows it.
    """


# --------------------------------------------------------------------------------------------------
# The adapter interface
# --------------------------------------------------------------------------------------------------


class ProviderAdapter(abc.ABC):
    """One provider type. Instances may be bound to a :class:`ProviderConfig` (``get_adapter(config)``);
    every method also accepts ``config=`` to use another one for a single call.

    ``http`` is an object with a ``requests.Session``-compatible ``request(method, url, **kwargs)``
    (production passes the SSRF-guarded client). Every request is sent with an explicit timeout and
    without following redirects.
    """

    provider: ClassVar[str] = ""

    def __init__(self, config: ProviderConfig | None = None) -> None:
        self.config = config

    def _config(self, config: ProviderConfig | None) -> ProviderConfig:
        cfg = config or self.config
        if cfg is None:
            raise ValueError(f"{type(self).__name__} needs a ProviderConfig (bind one or pass config=)")
        return cfg

    @abc.abstractmethod
    def stream_chat(
        self,
        req: ChatRequest,
        *,
        http: HTTPClient | None,
        idle_timeout: float,
        first_byte_timeout: float,
        config: ProviderConfig | None = None,
        batch_interval: float = 0.0,
    ) -> ProviderStream:
        """Start a streamed completion. Lazy: the HTTP request is sent on the first ``next()``.

        ``batch_interval``: once the answer flows, read the provider at most this often (seconds), so
        the pieces that arrived meanwhile are handled as one burst; 0 reads each piece as it arrives.

        Raises (from iteration) :class:`ProviderError` subclasses: HTTP errors before streaming,
        ``upstream_timeout`` when no response headers arrive within ``first_byte_timeout`` seconds,
        ``upstream_idle`` when no bytes arrive for ``idle_timeout`` seconds once the headers arrived,
        ``upstream_truncated`` when the stream ends without its end marker, ``upstream_malformed`` on a
        bad frame.
        """

    @abc.abstractmethod
    def complete_chat(
        self,
        req: ChatRequest,
        *,
        http: HTTPClient | None,
        timeout: float,
        config: ProviderConfig | None = None,
    ) -> CompletionResult:
        """A non-streaming completion (the fallback when a stream fails before any content)."""

    @abc.abstractmethod
    def list_models(
        self,
        *,
        http: HTTPClient | None,
        timeout: float,
        config: ProviderConfig | None = None,
    ) -> list[ModelInfo]:
        """The provider's model catalog."""

    def verify(
        self,
        *,
        http: HTTPClient | None,
        timeout: float,
        config: ProviderConfig | None = None,
    ) -> list[ModelInfo]:
        """Check the connection and key by listing the models; raises :class:`ProviderError` on failure."""
        return self.list_models(http=http, timeout=timeout, config=config)

"""The part every network adapter (OpenAI-compatible, Azure, Ollama, Gemini) shares.

A chat turn is one JSON ``POST``: streamed through :class:`HTTPEventStream` with the adapter's stream
decoder, or read whole with :func:`request_json` and turned into a :class:`CompletionResult`. Adapters
only say where to send it (``_chat_url``), what to send (``_body``), how to authenticate
(``_auth_headers``) and how to read the answer (``_stream_decoder``, ``_completion``).
:class:`SSEJSONDecoder` is the stream decoder of the providers that stream JSON objects as server-sent
events (OpenAI-compatible, Azure, Gemini).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

from .base import (
    ChatRequest,
    CompletionResult,
    HTTPClient,
    ModelInfo,
    ProviderAdapter,
    ProviderConfig,
    ProviderStream,
    StreamEvent,
    Usage,
)
from .errors import UpstreamMalformedError, UpstreamTruncatedError
from .event_stream import HTTPEventStream
from .framing import SSEParser, StreamDecoder
from .transport import (
    build_headers,
    merge_body,
    parse_json_payloads,
    request_json,
)


def merge_body_section(
    body: dict[str, Any],
    extra_body: dict[str, Any] | None,
    protected: set[str],
    *,
    section: str,
    values: dict[str, Any],
) -> dict[str, Any]:
    """:func:`merge_body` where ``extra_body[section]`` (when an object) is merged into ``values``
    instead of replacing them; ``values`` go into ``body[section]`` when not empty (Gemini's
    ``generationConfig``, Ollama's ``options``)."""
    extra = dict(extra_body or {})
    if isinstance(extra.get(section), dict):
        values.update(extra.pop(section))
    if values:
        body[section] = values
    return merge_body(body, extra, protected)


class SSEJSONDecoder(abc.ABC):
    """A :class:`StreamDecoder` for server-sent events whose data are JSON objects; subclasses
    :meth:`handle` one decoded object."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.finished = False
        self.done = False
        self.usage: Usage | None = None
        self._sse = SSEParser()

    @abc.abstractmethod
    def handle(self, obj: Any) -> list[StreamEvent]:
        """Handle one decoded JSON object."""

    def feed_line(self, line: str) -> list[StreamEvent]:
        """Feed one SSE line."""
        data = self._sse.feed(line)
        if data is None:
            return []
        return self._handle_data(data)

    def _handle_data(self, data: str) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for obj in parse_json_payloads(data, self.label):
            events += self.handle(obj)
        return events

    def eof(self, rest: str) -> list[StreamEvent]:
        """The body ended: handle an unterminated last line or frame."""
        events: list[StreamEvent] = []
        if rest:
            events += self.feed_line(rest)
        data = self._sse.flush()
        if data is not None and not self.done:
            try:
                events += self._handle_data(data)
            except UpstreamMalformedError:
                if not self.finished:
                    raise UpstreamTruncatedError(f"{self.label}: the stream ended inside a frame") from None
        return events

    def flush_partial(self) -> list[StreamEvent]:
        """Events held back (none unless a subclass holds some)."""
        return []


class HTTPAdapter(ProviderAdapter):
    """A :class:`ProviderAdapter` that talks JSON over HTTP."""

    label: ClassVar[str] = "provider"
    # The Accept header of a streamed chat request.
    stream_accept: ClassVar[str] = "text/event-stream"
    # The key goes in this header, after this prefix.
    auth_header: ClassVar[str] = "Authorization"
    auth_prefix: ClassVar[str] = "Bearer "

    # -- what each provider says -----------------------------------------------------------------

    def _auth_headers(self, cfg: ProviderConfig) -> dict[str, str]:
        """The key in ``auth_header``; nothing without a key or with ``auth_type`` ``none``."""
        if cfg.auth_type == "none" or not cfg.api_key:
            return {}
        return {self.auth_header: f"{self.auth_prefix}{cfg.api_key}"}

    @abc.abstractmethod
    def _chat_url(self, cfg: ProviderConfig, req: ChatRequest, *, stream: bool) -> str:
        """Where a chat request goes."""

    @abc.abstractmethod
    def _body(self, req: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The JSON body of a chat request."""

    @abc.abstractmethod
    def _stream_decoder(self) -> StreamDecoder:
        """A fresh decoder for one streamed answer."""

    @abc.abstractmethod
    def _completion(self, body: Any) -> CompletionResult:
        """A non-streaming answer's decoded JSON body as a :class:`CompletionResult`."""

    @abc.abstractmethod
    def _list_models(self, http: HTTPClient, cfg: ProviderConfig, timeout: float) -> list[ModelInfo]:
        """The catalog, read from the provider's listing endpoint(s) with :meth:`_request_json`."""

    # -- shared plumbing -------------------------------------------------------------------------

    def _headers(self, cfg: ProviderConfig, req: ChatRequest | None, *, accept: str) -> dict[str, str]:
        extra = req.extra_headers if req is not None else None
        return build_headers(cfg.headers, extra, self._auth_headers(cfg), accept=accept)

    def _client(self, config: ProviderConfig | None, http: HTTPClient | None) -> tuple[ProviderConfig, HTTPClient]:
        """The config to use and the HTTP client, which network adapters cannot do without."""
        cfg = self._config(config)
        if http is None:
            raise ValueError("an HTTP client is required")
        return cfg, http

    def _request_json(
        self,
        http: HTTPClient,
        cfg: ProviderConfig,
        method: str,
        url: str,
        *,
        timeout: float,
        json_body: Any = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """One JSON request outside a chat turn (catalog, model details)."""
        return request_json(
            http,
            method,
            url,
            label=self.label,
            timeout=timeout,
            headers=self._headers(cfg, None, accept="application/json"),
            json_body=json_body,
            params=params,
        )

    # -- interface -------------------------------------------------------------------------------

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
        """Stream a chat completion as normalized events (see :class:`ProviderAdapter`)."""
        cfg, http = self._client(config, http)
        return HTTPEventStream(
            http=http,
            method="POST",
            url=self._chat_url(cfg, req, stream=True),
            headers=self._headers(cfg, req, accept=self.stream_accept),
            json_body=self._body(req, stream=True),
            decoder_factory=lambda _resp: self._stream_decoder(),
            idle_timeout=idle_timeout,
            first_byte_timeout=first_byte_timeout,
            label=self.label,
            batch_interval=batch_interval,
        )

    def complete_chat(
        self,
        req: ChatRequest,
        *,
        http: HTTPClient | None,
        timeout: float,
        config: ProviderConfig | None = None,
    ) -> CompletionResult:
        """One non-streaming completion."""
        cfg, http = self._client(config, http)
        body = request_json(
            http,
            "POST",
            self._chat_url(cfg, req, stream=False),
            label=self.label,
            timeout=timeout,
            headers=self._headers(cfg, req, accept="application/json"),
            json_body=self._body(req, stream=False),
        )
        return self._completion(body)

    def list_models(
        self,
        *,
        http: HTTPClient | None,
        timeout: float,
        config: ProviderConfig | None = None,
    ) -> list[ModelInfo]:
        """The provider's model catalog."""
        cfg, http = self._client(config, http)
        return self._list_models(http, cfg, timeout)

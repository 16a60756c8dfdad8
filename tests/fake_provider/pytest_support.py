"""Helpers for tests that drive provider adapters against the fake provider, and their module fixtures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from common.providers import (
    ChatRequest,
    ContentDelta,
    EndOfStream,
    Finish,
    ProviderAdapter,
    ProviderConfig,
    ProviderError,
    ProviderStream,
    ReasoningDelta,
    StreamEvent,
    Usage,
    get_adapter,
)
from tests.fake_provider import FakeProvider


def gevent_patched() -> bool:
    """Whether this process runs with gevent's monkey-patched sockets (as under the real conftest)."""
    try:
        from gevent.monkey import is_module_patched
    except ImportError:  # pragma: no cover
        return False
    return is_module_patched("socket")


def http_session() -> requests.Session:
    """A plain session that ignores proxy environment variables."""
    session = requests.Session()
    session.trust_env = False
    return session


def provider_fixtures(config: Callable[[FakeProvider], ProviderConfig]) -> tuple[Any, Any, Any]:
    """The module-scoped fixtures of one adapter's tests: ``fake`` (the module's own fake provider),
    ``http`` (a session) and ``adapter`` (bound to ``config(fake)``).

    Use: ``fake, http, adapter = provider_fixtures(lambda fake: ProviderConfig(...))``.
    """

    @pytest.fixture(scope="module")
    def fake():
        with FakeProvider() as server:
            yield server

    @pytest.fixture(scope="module")
    def http():
        session = http_session()
        yield session
        session.close()

    @pytest.fixture(scope="module")
    def adapter(fake):
        return get_adapter(config(fake))

    return fake, http, adapter


def open_stream(
    adapter: ProviderAdapter,
    http: Any,
    model: str,
    messages: list[dict[str, Any]],
    *,
    idle: float,
    first_byte: float = 5.0,
    batch_interval: float = 0.0,
    **kwargs: Any,
) -> ProviderStream:
    """Start streaming one chat request of ``model`` with ``messages`` (``kwargs`` go to the ChatRequest)."""
    req = ChatRequest(model=model, messages=messages, **kwargs)
    return adapter.stream_chat(req, http=http, idle_timeout=idle, first_byte_timeout=first_byte,
                               batch_interval=batch_interval)


@dataclass
class Collected:
    """Everything one stream produced."""

    events: list[StreamEvent] = field(default_factory=list)
    error: ProviderError | None = None
    elapsed: float = 0.0

    @property
    def content(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, ContentDelta))

    @property
    def reasoning(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, ReasoningDelta))

    @property
    def tail(self) -> list[StreamEvent]:
        """The events after the deltas."""
        return [e for e in self.events if not isinstance(e, ContentDelta | ReasoningDelta)]

    @property
    def finish(self) -> Finish | None:
        return next((e for e in self.events if isinstance(e, Finish)), None)

    @property
    def usage(self) -> Usage | None:
        return next((e for e in self.events if isinstance(e, Usage)), None)

    @property
    def ended(self) -> bool:
        return bool(self.events) and isinstance(self.events[-1], EndOfStream)

    def kinds(self) -> list[str]:
        """Event class names with consecutive duplicates collapsed, e.g. [ReasoningDelta, ContentDelta, ...]."""
        out: list[str] = []
        for event in self.events:
            name = type(event).__name__
            if not out or out[-1] != name:
                out.append(name)
        return out


def collect(stream: Iterable[StreamEvent]) -> Collected:
    """Drain a stream, keeping the events and the ProviderError that ended it (if any)."""
    result = Collected()
    start = time.monotonic()
    try:
        for event in stream:
            result.events.append(event)
    except ProviderError as exc:
        result.error = exc
    result.elapsed = time.monotonic() - start
    return result


class Background:
    """Run a callable in a thread (a greenlet when gevent patched threading) and keep its outcome."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished_at: float | None = None

        def run() -> None:
            try:
                self.result = fn()
            except BaseException as exc:  # reported to the test
                self.error = exc
            finally:
                self.finished_at = time.monotonic()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait; True when the callable returned."""
        self._thread.join(timeout)
        return not self._thread.is_alive()


def close_while_collecting(stream: ProviderStream, *, after: float) -> tuple[Background, float]:
    """Collect ``stream`` in the background and close it from here ``after`` seconds later.

    Returns the reader (its ``result`` is the :class:`Collected`) and the monotonic time of the close.
    """
    reader = Background(lambda: collect(stream))
    time.sleep(after)
    closed_at = time.monotonic()
    stream.close()
    return reader, closed_at

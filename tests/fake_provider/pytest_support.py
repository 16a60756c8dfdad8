"""Helpers for tests that drive provider adapters against the fake provider (no fixtures here)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import requests

from common.providers import (
    ContentDelta,
    EndOfStream,
    Finish,
    ProviderError,
    ReasoningDelta,
    StreamEvent,
    Usage,
)


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

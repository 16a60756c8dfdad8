"""The HTTP event stream: one streamed provider response as normalized events.

Timeouts: the connect timeout is ``min(CONNECT_TIMEOUT, first_byte_timeout)``; the status line and
headers must arrive within ``first_byte_timeout`` (else ``upstream_timeout``); once they did, the socket's
timeout becomes ``idle_timeout``, so every read of the body must see a byte within it (else
``upstream_idle``).

Bursts: the body is read with :class:`~.body.BurstReader` where it can be (identity-encoded responses,
which streamed requests ask for). Once the first words went out, it reads at most every
``batch_interval`` seconds; the deltas decoded from one read are merged (adjacent content with content,
reasoning with reasoning), so each burst costs one read, one event and one downstream write instead of
one per provider chunk.

Cancellation: :class:`HTTPEventStream` keeps the response's socket. ``close()`` from another greenlet or
thread shuts the socket down (``SHUT_RDWR``): the peer sees the connection close at once and a reader
blocked in ``recv`` wakes up. While the request is still waiting for its response headers, under gevent
(socket monkey-patched, same OS thread) the waiting greenlet is interrupted, which makes urllib3 close
the half-open connection; without gevent the close happens as soon as the headers arrive.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Callable, Iterator
from typing import Any

import requests
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from .base import (
    ContentDelta,
    EndOfStream,
    HTTPClient,
    ProviderStream,
    ReasoningDelta,
    StreamEvent,
    _StreamCancelled,
)
from .body import BodyFramingError, BurstReader, can_read_directly
from .errors import ProviderError, UpstreamIdleError, UpstreamTruncatedError
from .framing import LineSplitter, StreamDecoder
from .transport import MAX_ERROR_BODY, is_timeout, send, short_reason

DRAIN_TIMEOUT = 0.25


def merge_deltas(events: list[StreamEvent]) -> list[StreamEvent]:
    """``events`` with each run of adjacent content (or reasoning) deltas joined into one delta."""
    merged: list[StreamEvent] = []
    for event in events:
        previous = merged[-1] if merged else None
        if isinstance(event, ContentDelta | ReasoningDelta) and type(previous) is type(event):
            merged[-1] = type(event)(previous.text + event.text)  # type: ignore[union-attr]
        else:
            merged.append(event)
    return merged


def _has_text(events: list[StreamEvent]) -> bool:
    return any(isinstance(event, ContentDelta | ReasoningDelta) and event.text for event in events)


def find_socket(resp: Any) -> socket.socket | None:
    """The socket under a streamed ``requests.Response`` (urllib3 1.x/2.x), or None."""
    raw = getattr(resp, "raw", None)
    conn = getattr(raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    if sock is not None:
        return sock
    fp = getattr(raw, "_fp", None)
    for path in (("fp", "raw", "_sock"), ("fp", "_sock")):
        obj: Any = fp
        for attr in path:
            obj = getattr(obj, attr, None)
        if obj is not None and hasattr(obj, "shutdown"):
            return obj
    return None


def iter_body(resp: Any, label: str, idle_timeout: float, reader: BurstReader | None = None) -> Iterator[bytes]:
    """The body's bytes as they arrive (through ``reader`` when given, else urllib3); transport
    failures become idle/truncated errors."""
    raw = getattr(resp, "raw", None)
    try:
        if reader is not None:
            yield from reader
        elif raw is not None and getattr(raw, "chunked", False) and raw.supports_chunked_reads():
            yield from raw.read_chunked(decode_content=True)
        elif raw is not None and hasattr(raw, "read1"):
            while True:
                data = raw.read1(65536, decode_content=True)
                if not data:
                    break
                yield data
        else:
            yield from resp.iter_content(chunk_size=1024)
    except (EOFError, BodyFramingError) as exc:
        raise UpstreamTruncatedError(f"{label}: the connection broke mid-stream ({exc})") from exc
    except (
        requests.exceptions.RequestException,
        ReadTimeoutError,
        ProtocolError,
        http.client.HTTPException,
        OSError,
    ) as exc:
        if is_timeout(exc):
            raise UpstreamIdleError(f"{label}: no data for {idle_timeout:g} s") from exc
        raise UpstreamTruncatedError(f"{label}: the connection broke mid-stream ({short_reason(exc)})") from exc


def _real_thread_id() -> int:
    try:
        from gevent.monkey import get_original

        return get_original("_thread", "get_ident")()
    except ImportError:  # pragma: no cover - gevent is a dependency
        import threading

        return threading.get_ident()


def _current_greenlet() -> Any:
    try:
        import greenlet
    except ImportError:  # pragma: no cover
        return None
    return greenlet.getcurrent()


class HTTPEventStream(ProviderStream):
    """A :class:`ProviderStream` over one streamed HTTP response, decoded by a :class:`StreamDecoder`."""

    def __init__(
        self,
        *,
        http: HTTPClient,
        method: str,
        url: str,
        headers: dict[str, str],
        json_body: Any,
        decoder_factory: Callable[[Any], StreamDecoder],
        idle_timeout: float,
        first_byte_timeout: float,
        label: str,
        batch_interval: float = 0.0,
    ) -> None:
        super().__init__()
        self._http = http
        self._method = method
        self._url = url
        # An encoded body cannot be read in bursts (see body.py); SSE and NDJSON barely compress anyway.
        self._headers = {"Accept-Encoding": "identity", **headers}
        self._batch_interval = max(float(batch_interval), 0.0)
        self._json_body = json_body
        self._decoder_factory = decoder_factory
        self._idle_timeout = float(idle_timeout)
        self._first_byte_timeout = float(first_byte_timeout)
        self._label = label
        self._phase = "new"  # new -> connecting -> streaming
        self._sock: socket.socket | None = None
        self._reader: Any = None
        self._reader_thread: int | None = None

    def _produce(self) -> Iterator[StreamEvent]:
        self._reader = _current_greenlet()
        self._reader_thread = _real_thread_id()
        self._phase = "connecting"
        try:
            resp = send(
                self._http,
                self._method,
                self._url,
                label=self._label,
                timeout=self._first_byte_timeout,
                headers=self._headers,
                json_body=self._json_body,
                stream=True,
            )
        finally:
            self._phase = "streaming"
            self._reader = None
        body = BurstReader(resp, self._batch_interval) if can_read_directly(resp) else None
        try:
            self._sock = find_socket(resp)
            if self._closed:
                raise _StreamCancelled()
            if self._sock is not None:
                try:
                    self._sock.settimeout(self._idle_timeout)
                except OSError:
                    pass
            yield from self._decode(resp, body)
        finally:
            # Forget the socket before the connection can go back to the pool: from then on another
            # request may use it, and a late close() must not shut it down.
            self._sock = None
            try:
                if body is not None and body.reusable and not self._closed:
                    resp.raw.release_conn()
                resp.close()
            except Exception:  # closing a broken connection may fail; it is gone either way
                pass

    def _decode(self, resp: Any, body: BurstReader | None) -> Iterator[StreamEvent]:
        decoder = self._decoder_factory(resp)
        lines = LineSplitter()
        chunks = iter_body(resp, self._label, self._idle_timeout, body)
        try:
            for chunk in chunks:
                events: list[StreamEvent] = []
                try:
                    for line in lines.feed(chunk):
                        events.extend(decoder.feed_line(line))
                        if decoder.done:
                            break
                except ProviderError:
                    yield from merge_deltas(events)  # what arrived before the bad line is kept
                    raise
                if body is not None and not body.paced and _has_text(events):
                    body.paced = True  # the first words go out at once; the rest in bursts
                yield from merge_deltas(events)
                if decoder.done:
                    break
            else:
                yield from decoder.eof(lines.rest())
        except (UpstreamIdleError, UpstreamTruncatedError):
            if not decoder.finished:
                yield from decoder.flush_partial()
                raise
        if decoder.done:
            if body is not None:
                body.paced = False
            self._drain(chunks)
        if not (decoder.done or decoder.finished):
            yield from decoder.flush_partial()
            raise UpstreamTruncatedError(f"{self._label}: the stream ended without its end marker")
        if decoder.usage is not None:
            yield decoder.usage
        yield EndOfStream()

    def _drain(self, chunks: Iterator[bytes]) -> None:
        """Read the few bytes after the end marker (the chunked terminator), briefly, so that the
        connection can go back to the pool instead of being discarded."""
        sock = self._sock
        try:
            if sock is not None:
                sock.settimeout(min(self._idle_timeout, DRAIN_TIMEOUT))
            received = 0
            for chunk in chunks:
                received += len(chunk)
                if received > MAX_ERROR_BODY:
                    break
        except Exception:  # the connection is simply not reused
            pass

    def _abort(self) -> None:
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if self._phase == "connecting":
            self._interrupt_connecting_reader()

    def _interrupt_connecting_reader(self) -> None:
        reader, thread_id = self._reader, self._reader_thread
        if reader is None:
            return
        try:
            import gevent
            from gevent.monkey import is_module_patched
        except ImportError:  # pragma: no cover
            return
        if not is_module_patched("socket") or thread_id != _real_thread_id():
            return  # a blocking socket in another thread cannot be interrupted; closed when headers arrive
        if reader is gevent.getcurrent() or getattr(reader, "dead", True):
            return

        def interrupt() -> None:
            if self._phase == "connecting" and self._reader is reader and not reader.dead:
                try:
                    reader.throw(_StreamCancelled())
                except Exception:  # the greenlet may have finished in between
                    pass

        gevent.get_hub().loop.run_callback(interrupt)

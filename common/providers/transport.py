"""HTTP plumbing shared by the network adapters: requests, error mapping, framing, the HTTP event stream.

Timeouts: the connect timeout is ``min(CONNECT_TIMEOUT, first_byte_timeout)``; the status line and
headers must arrive within ``first_byte_timeout`` (else ``upstream_timeout``); once they did, the socket's
timeout becomes ``idle_timeout``, so every read of the body must see a byte within it (else
``upstream_idle``).

Cancellation: :class:`HTTPEventStream` keeps the response's socket. ``close()`` from another greenlet or
thread shuts the socket down (``SHUT_RDWR``): the peer sees the connection close at once and a reader
blocked in ``recv`` wakes up. While the request is still waiting for its response headers, under gevent
(socket monkey-patched, same OS thread) the waiting greenlet is interrupted, which makes urllib3 close
the half-open connection; without gevent the close happens as soon as the headers arrive.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import requests
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from .base import (
    ContentDelta,
    EndOfStream,
    HTTPClient,
    ProviderError,
    ProviderStream,
    ReasoningDelta,
    StreamEvent,
    UpstreamAuthError,
    UpstreamConnectError,
    UpstreamHTTPError,
    UpstreamIdleError,
    UpstreamMalformedError,
    UpstreamStreamError,
    UpstreamTimeoutError,
    UpstreamTruncatedError,
    Usage,
    _StreamCancelled,
)

CONNECT_TIMEOUT = 10.0
MAX_ERROR_BODY = 64 * 1024
MAX_JSON_BODY = 32 * 1024 * 1024
MAX_LINE = 32 * 1024 * 1024
DRAIN_TIMEOUT = 0.25
USER_AGENT = "Parley/0.1"
# Headers a request may never set through connection or per-request extra headers.
_FORBIDDEN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "te", "upgrade"})

_NEWLINE = re.compile(rb"\r\n|\r|\n")


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def timeouts(seconds: float) -> tuple[float, float]:
    """The (connect, read) timeout pair requests expects."""
    seconds = max(float(seconds), 0.001)
    return (min(CONNECT_TIMEOUT, seconds), seconds)


def join_url(base: str, path: str) -> str:
    """``base`` + ``/`` + ``path`` without doubled or missing slashes."""
    return base.rstrip("/") + "/" + path.lstrip("/")


def build_headers(
    config_headers: dict[str, str] | None,
    extra_headers: dict[str, str] | None,
    auth_headers: dict[str, str],
    *,
    accept: str = "application/json",
) -> dict[str, str]:
    """Connection headers, then per-request headers, then authentication (which always wins)."""
    out: dict[str, str] = {"User-Agent": USER_AGENT, "Accept": accept}
    auth_names = {name.lower() for name in auth_headers} | {"authorization", "api-key", "x-goog-api-key"}
    for source in (config_headers or {}, extra_headers or {}):
        for name, value in source.items():
            if not isinstance(name, str) or value is None:
                continue
            lowered = name.lower()
            if lowered in _FORBIDDEN_HEADERS:
                continue
            if auth_headers and lowered in auth_names:
                continue  # never let a header override the stored key
            for existing in [k for k in out if k.lower() == lowered]:
                del out[existing]
            out[name] = str(value)
    out.update(auth_headers)
    return out


def merge_body(body: dict[str, Any], extra_body: dict[str, Any] | None, protected: set[str]) -> dict[str, Any]:
    """Merge ``extra_body`` into ``body`` without touching the ``protected`` keys."""
    if extra_body:
        for key, value in extra_body.items():
            if key not in protected:
                body[key] = value
    return body


def parse_retry_after(headers: Any, body: Any = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms``, ``Retry-After`` (seconds or HTTP date) or a Google
    ``RetryInfo.retryDelay`` in the error body."""
    if headers is not None:
        raw_ms = headers.get("retry-after-ms")
        if raw_ms:
            try:
                return max(float(raw_ms) / 1000.0, 0.0)
            except ValueError:
                pass
        raw = headers.get("retry-after")
        if raw:
            raw = raw.strip()
            try:
                return max(float(raw), 0.0)
            except ValueError:
                try:
                    when = email.utils.parsedate_to_datetime(raw)
                except (TypeError, ValueError):
                    when = None
                if when is not None:
                    return max(when.timestamp() - time.time(), 0.0)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        for detail in body["error"].get("details") or []:
            delay = detail.get("retryDelay") if isinstance(detail, dict) else None
            if isinstance(delay, str) and delay.endswith("s"):
                try:
                    return max(float(delay[:-1]), 0.0)
                except ValueError:
                    pass
    return None


def error_message_from_body(body: Any, text: str) -> str:
    """The human-readable part of a provider's error body."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            msg = err.get("message") or err.get("status") or err.get("code")
            if msg:
                return str(msg)
        if isinstance(err, str) and err:
            return err
        for key in ("message", "detail"):
            if isinstance(body.get(key), str) and body[key]:
                return body[key]
    return text.strip()


def _read_bounded(resp: Any, limit: int) -> bytes:
    out = bytearray()
    for chunk in resp.iter_content(chunk_size=16384):
        out += chunk
        if len(out) > limit:
            break
    return bytes(out[:limit])


def error_from_response(resp: Any, label: str) -> ProviderError:
    """Turn a non-2xx response into the matching :class:`ProviderError` (reads at most 64 KiB)."""
    status = int(resp.status_code)
    try:
        raw = _read_bounded(resp, MAX_ERROR_BODY)
    except Exception:  # the body is only informative
        raw = b""
    text = raw.decode("utf-8", errors="replace")
    try:
        body = json.loads(text) if text.strip() else None
    except ValueError:
        body = None
    detail = error_message_from_body(body, text)[:500] or http.client.responses.get(status, "error")
    message = f"{label} returned HTTP {status}: {detail}"
    retry_after = parse_retry_after(resp.headers, body)
    cls = UpstreamAuthError if status in (401, 403) else UpstreamHTTPError
    return cls(message, status=status, retry_after=retry_after)


def send(
    http: HTTPClient,
    method: str,
    url: str,
    *,
    label: str,
    timeout: float,
    headers: dict[str, str],
    json_body: Any = None,
    params: dict[str, str] | None = None,
    stream: bool = True,
) -> Any:
    """Send one request; raise the mapped :class:`ProviderError` on transport failure or non-2xx status."""
    kwargs: dict[str, Any] = {
        "headers": headers,
        "timeout": timeouts(timeout),
        "stream": stream,
        "allow_redirects": False,
    }
    if json_body is not None:
        kwargs["json"] = json_body
    if params:
        kwargs["params"] = params
    try:
        resp = http.request(method, url, **kwargs)
    except requests.exceptions.ConnectTimeout as exc:
        raise UpstreamConnectError(f"{label}: connection timed out") from exc
    except requests.exceptions.ReadTimeout as exc:
        raise UpstreamTimeoutError(f"{label}: no response within {timeout:g} s") from exc
    except requests.exceptions.ConnectionError as exc:
        raise UpstreamConnectError(f"{label}: connection failed ({_short(exc)})") from exc
    except requests.exceptions.RequestException as exc:
        raise UpstreamConnectError(f"{label}: request failed ({_short(exc)})") from exc
    if not 200 <= int(resp.status_code) < 300:
        try:
            raise error_from_response(resp, label)
        finally:
            resp.close()
    return resp


def _short(exc: BaseException) -> str:
    text = str(exc)
    # requests' messages repeat the pool and URL; keep the root cause only.
    match = re.search(r"\(Caused by \w+\((?:<[^>]*>, )?'?(.*?)'?\)\)", text)
    if match:
        text = match.group(1)
    return text[:200]


def read_json(resp: Any, label: str, *, limit: int = MAX_JSON_BODY) -> Any:
    """Read a whole (bounded) JSON body from a streamed response."""
    try:
        raw = _read_bounded(resp, limit + 1)
    except (TimeoutError, requests.exceptions.ConnectionError, ReadTimeoutError) as exc:
        if _is_timeout(exc):
            raise UpstreamTimeoutError(f"{label}: the response body stalled") from exc
        raise UpstreamTruncatedError(f"{label}: the connection broke while reading the answer") from exc
    except (requests.exceptions.ChunkedEncodingError, ProtocolError, http.client.HTTPException) as exc:
        raise UpstreamTruncatedError(f"{label}: the connection broke while reading the answer") from exc
    if len(raw) > limit:
        raise UpstreamMalformedError(f"{label}: the answer is larger than {limit} bytes")
    try:
        return json.loads(raw.decode("utf-8", errors="replace"))
    except ValueError as exc:
        raise UpstreamMalformedError(f"{label}: the answer is not JSON: {raw[:120]!r}") from exc


def request_json(
    http: HTTPClient,
    method: str,
    url: str,
    *,
    label: str,
    timeout: float,
    headers: dict[str, str],
    json_body: Any = None,
    params: dict[str, str] | None = None,
) -> Any:
    """Send a request and return its decoded JSON body."""
    resp = send(http, method, url, label=label, timeout=timeout, headers=headers, json_body=json_body, params=params)
    try:
        return read_json(resp, label)
    finally:
        resp.close()


def parse_json_payloads(data: str, label: str) -> list[Any]:
    """Decode one frame's payload. Tolerates servers that put several JSON objects in one frame."""
    try:
        return [json.loads(data)]
    except ValueError:
        pass
    if "\n" in data:
        try:
            return [json.loads(part) for part in data.split("\n") if part.strip()]
        except ValueError:
            pass
    raise UpstreamMalformedError(f"{label}: malformed stream frame: {data[:120]!r}")


def raise_stream_error(obj: dict[str, Any], label: str) -> None:
    """Raise when a decoded frame is an error object (``{"error": ...}``)."""
    err = obj.get("error")
    if not err:
        return
    status = None
    if isinstance(err, dict):
        code = err.get("code")
        if isinstance(code, int) and 100 <= code < 600:
            status = code
        elif isinstance(code, str) and code.isdigit():
            status = int(code)
    message = error_message_from_body(obj, json.dumps(err)[:300])
    raise UpstreamStreamError(f"{label} reported an error: {message[:500]}", status=status)


def int_or_none(value: Any) -> int | None:
    """An int from a JSON number (or numeric string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def make_usage(prompt: Any, completion: Any, total: Any = None) -> Usage | None:
    """A :class:`Usage` from provider numbers; None when the provider sent none."""
    p, c, t = int_or_none(prompt), int_or_none(completion), int_or_none(total)
    if p is None and c is None and t is None:
        return None
    p = p or 0
    c = c or 0
    return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=t if t is not None else p + c)


def data_url_parts(url: str) -> tuple[str, str] | None:
    """``(mime, base64)`` of a ``data:<mime>;base64,<data>`` URL, else None."""
    if not isinstance(url, str) or not url.startswith("data:"):
        return None
    head, sep, data = url.partition(",")
    if not sep or ";base64" not in head:
        return None
    mime = head[5:].split(";", 1)[0] or "application/octet-stream"
    return mime, data


def message_text_and_images(content: Any) -> tuple[str, list[str]]:
    """The text (parts joined by newlines) and the image URLs of an OpenAI-style message content."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    images: list[str] = []
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif part.get("type") == "image_url":
                image = part.get("image_url")
                url = image.get("url") if isinstance(image, dict) else image
                if isinstance(url, str):
                    images.append(url)
    return "\n".join(texts), images


# --------------------------------------------------------------------------------------------------
# Framing
# --------------------------------------------------------------------------------------------------


class LineSplitter:
    """Split a byte stream into text lines; accepts LF, CRLF and CR, also split across chunks."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[str]:
        """Complete lines (without terminators) found so far."""
        buf = self._buf + data if self._buf else data
        hold_cr = buf.endswith(b"\r")  # may be the first half of a CRLF
        work = buf[:-1] if hold_cr else buf
        parts = _NEWLINE.split(work)
        tail = parts.pop()
        self._buf = tail + b"\r" if hold_cr else tail
        if len(self._buf) > MAX_LINE:
            raise UpstreamMalformedError(f"stream line longer than {MAX_LINE} bytes")
        return [part.decode("utf-8", errors="replace") for part in parts]

    def rest(self) -> str:
        """The unterminated text left at the end of the stream."""
        buf, self._buf = self._buf, b""
        return buf.rstrip(b"\r").decode("utf-8", errors="replace")


class SSEParser:
    """Server-sent events: accumulate ``data:`` lines, return the payload at each blank line."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        """Feed one line; returns an event's data when the event is complete."""
        if not line:
            return self.flush()
        if line.startswith(":"):
            return None  # comment / keep-alive
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        return None

    def flush(self) -> str | None:
        """The pending event's data, if any."""
        if not self._data:
            return None
        data = "\n".join(self._data)
        self._data = []
        return data


class StreamDecoder(Protocol):
    """Turns lines of one provider's stream into events.

    ``finished``: a finish reason arrived (a soft end: enough to count the answer as complete);
    ``done``: the hard end marker arrived (stop reading now); ``usage``: the latest provider usage.
    """

    finished: bool
    done: bool
    usage: Usage | None

    def feed_line(self, line: str) -> list[StreamEvent]: ...

    def eof(self, rest: str) -> list[StreamEvent]: ...

    def flush_partial(self) -> list[StreamEvent]: ...


# --------------------------------------------------------------------------------------------------
# The HTTP event stream
# --------------------------------------------------------------------------------------------------


def _is_timeout(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ReadTimeoutError | socket.timeout | requests.exceptions.ReadTimeout):
            return True
        for arg in getattr(current, "args", ()):
            if isinstance(arg, ReadTimeoutError | socket.timeout):
                return True
        current = current.__cause__ or current.__context__
    return False


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


def iter_body(resp: Any, label: str, idle_timeout: float) -> Iterator[bytes]:
    """The body's bytes as they arrive; transport failures become idle/truncated errors."""
    raw = getattr(resp, "raw", None)
    try:
        if raw is not None and getattr(raw, "chunked", False) and raw.supports_chunked_reads():
            yield from raw.read_chunked(decode_content=True)
        elif raw is not None and hasattr(raw, "read1"):
            while True:
                data = raw.read1(65536, decode_content=True)
                if not data:
                    break
                yield data
        else:
            yield from resp.iter_content(chunk_size=1024)
    except (
        requests.exceptions.RequestException,
        ReadTimeoutError,
        ProtocolError,
        http.client.HTTPException,
        OSError,
    ) as exc:
        if _is_timeout(exc):
            raise UpstreamIdleError(f"{label}: no data for {idle_timeout:g} s") from exc
        raise UpstreamTruncatedError(f"{label}: the connection broke mid-stream ({_short(exc)})") from exc


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
    ) -> None:
        super().__init__()
        self._http = http
        self._method = method
        self._url = url
        self._headers = headers
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
        try:
            self._sock = find_socket(resp)
            if self._closed:
                raise _StreamCancelled()
            if self._sock is not None:
                try:
                    self._sock.settimeout(self._idle_timeout)
                except OSError:
                    pass
            yield from self._decode(resp)
        finally:
            self._sock = None
            try:
                resp.close()
            except Exception:  # closing a broken connection may fail; it is gone either way
                pass

    def _decode(self, resp: Any) -> Iterator[StreamEvent]:
        decoder = self._decoder_factory(resp)
        lines = LineSplitter()
        chunks = iter_body(resp, self._label, self._idle_timeout)
        try:
            for chunk in chunks:
                for line in lines.feed(chunk):
                    yield from decoder.feed_line(line)
                    if decoder.done:
                        break
                if decoder.done:
                    break
            else:
                yield from decoder.eof(lines.rest())
        except (UpstreamIdleError, UpstreamTruncatedError):
            if not decoder.finished:
                yield from decoder.flush_partial()
                raise
        if decoder.done:
            self._drain(chunks)
        if not (decoder.done or decoder.finished):
            yield from decoder.flush_partial()
            raise UpstreamTruncatedError(f"{self._label}: the stream ended without its end marker")
        if decoder.usage is not None:
            yield decoder.usage
        yield EndOfStream()

    def _drain(self, chunks: Iterator[bytes]) -> None:
        """Read the few bytes after the end marker (the chunked terminator), briefly, so that urllib3
        can return the connection to its pool instead of discarding it."""
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


def split_reasoning_events(events: list[StreamEvent]) -> tuple[str, str]:
    """Join content and reasoning deltas into ``(content, reasoning)``."""
    content = "".join(e.text for e in events if isinstance(e, ContentDelta))
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    return content, reasoning

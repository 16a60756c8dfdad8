"""Reading a streamed HTTP response body in bursts, straight from its connection.

A provider streams an answer as many small pieces (one HTTP chunk per token or two, ~20-50 a second).
Reading them one at a time costs a wake-up, a ``recv`` and urllib3's per-chunk bookkeeping each, and
the SSE write downstream that follows each one. :class:`BurstReader` instead takes *everything that
has arrived* in one ``recv`` and de-chunks it itself; with a ``pace`` it also waits until ``pace``
seconds after the previous read before reading again, so the pieces that arrived meanwhile are relayed
together: one wake-up, one read and one downstream write per burst instead of per piece.

Only identity-encoded bodies are read this way (streamed requests ask for ``Accept-Encoding:
identity``); anything else goes through urllib3 (see ``event_stream.iter_body``). When the body ended
cleanly on a keep-alive connection, ``reusable`` tells the owner it may go back to urllib3's pool.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

READ_SIZE = 64 * 1024
MAX_CHUNK_LINE = 4096


class BodyFramingError(Exception):
    """The body's chunked framing is broken (a protocol error: the stream is truncated or malformed)."""


class ChunkedDecoder:
    """Incremental ``Transfer-Encoding: chunked`` decoder: feed raw bytes, get the payload bytes."""

    def __init__(self) -> None:
        self._buf = b""
        self._left: int | None = None  # None: a size line is due; >0: payload bytes due; 0: the CRLF after them
        self._trailers = False
        self.done = False

    def feed(self, data: bytes) -> bytes:
        """The payload bytes in ``data`` (plus what was held back from earlier calls)."""
        buf = self._buf + data if self._buf else data
        out: list[bytes] = []
        pos = 0
        while not self.done:
            if self._left is None or self._trailers:
                end = buf.find(b"\n", pos)
                if end < 0:
                    if len(buf) - pos > MAX_CHUNK_LINE:
                        raise BodyFramingError("chunk size line too long")
                    break
                line = buf[pos:end].rstrip(b"\r")
                pos = end + 1
                if self._trailers:
                    self.done = not line  # trailer fields are skipped; a blank line ends the body
                    continue
                self._left = self._size(line)
                self._trailers = self._left == 0
            elif self._left > 0:
                piece = buf[pos:pos + self._left]
                if not piece:
                    break
                out.append(piece)
                pos += len(piece)
                self._left -= len(piece)
            else:  # the CRLF that ends a chunk's payload
                if len(buf) - pos < 2 and not buf.startswith(b"\n", pos):
                    break
                if buf.startswith(b"\r\n", pos):
                    pos += 2
                elif buf.startswith(b"\n", pos):
                    pos += 1
                else:
                    raise BodyFramingError("chunk payload not followed by CRLF")
                self._left = None
        self._buf = buf[pos:]
        return b"".join(out)

    @staticmethod
    def _size(line: bytes) -> int:
        text = line.split(b";", 1)[0].strip()
        try:
            size = int(text, 16)
        except ValueError:
            raise BodyFramingError(f"bad chunk size line {line[:40]!r}") from None
        if size < 0:
            raise BodyFramingError("negative chunk size")
        return size


def can_read_directly(resp: Any) -> bool:
    """Whether this response's body can be read by :class:`BurstReader` (http.client underneath,
    no content encoding, headers only consumed so far)."""
    raw = getattr(resp, "raw", None)
    original = getattr(raw, "_fp", None)
    if original is None or getattr(original, "fp", None) is None or not hasattr(original.fp, "read1"):
        return False
    encoding = (resp.headers.get("Content-Encoding") or "identity").strip().lower()
    untouched = getattr(raw, "chunk_left", None) is None and getattr(raw, "_fp_bytes_read", 0) == 0
    return encoding == "identity" and untouched


class BurstReader:
    """The body of a streamed ``requests.Response`` as bursts of payload bytes (see the module doc).

    ``pace`` is applied only while ``paced`` is true; the owner turns it on once the answer flows (so
    the first words are never held back) and off before draining. Raises ``TimeoutError`` / ``OSError``
    from the socket and :class:`BodyFramingError` (or ``EOFError`` for a body cut short) otherwise.
    """

    def __init__(self, resp: Any, pace: float = 0.0) -> None:
        self._original = resp.raw._fp
        self._fp = self._original.fp
        self._chunked = ChunkedDecoder() if self._original.chunked else None
        self._left = self._original.length  # None: until the connection closes
        self.pace = pace
        self.paced = False
        self.complete = False
        self.reusable = False  # True once the body ended cleanly on a keep-alive connection
        self._last_read = 0.0

    def __iter__(self) -> Iterator[bytes]:
        while not self.complete:
            data = self._read()
            if data:
                yield data

    def _read(self) -> bytes:
        if self.paced and self.pace > 0:
            wait = self._last_read + self.pace - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        raw = self._fp.read1(READ_SIZE if self._left is None else min(READ_SIZE, self._left))
        self._last_read = time.monotonic()
        if self._chunked is not None:
            if not raw:
                raise EOFError("the connection closed before the last chunk")
            data = self._chunked.feed(raw)
            if self._chunked.done:
                self._finish()
            return data
        if not raw:
            if self._left:
                raise EOFError("the connection closed before the announced length")
            self._finish(reusable=False)
            return b""
        if self._left is not None:
            self._left -= len(raw)
            if self._left <= 0:
                self._finish()
        return raw

    def _finish(self, *, reusable: bool = True) -> None:
        """The body is complete: close http.client's response. The connection may go back to the
        pool (``reusable``) unless the server said it closes it; the owner releases it once it no
        longer touches the socket (see ``event_stream.HTTPEventStream``)."""
        self.complete = True
        self.reusable = reusable and not getattr(self._original, "will_close", True)
        self._original.close()

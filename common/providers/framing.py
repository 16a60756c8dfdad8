"""Framing of streamed provider bodies: bytes into lines, lines into SSE payloads, and the decoder
interface each provider implements to turn lines into normalized events."""

from __future__ import annotations

import re
from typing import Protocol

from .base import StreamEvent, Usage
from .errors import UpstreamMalformedError

MAX_LINE = 32 * 1024 * 1024

_NEWLINE = re.compile(rb"\r\n|\r|\n")


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

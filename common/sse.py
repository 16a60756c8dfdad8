"""The SSE wire format, written once: frames, comments, the end marker, headers, heartbeats."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}
PING = ": ping\n\n"
DONE = "data: [DONE]\n\n"


def frame(payload: Any, *, seq: int | None = None, event: str | None = None) -> str:
    """One SSE frame: optional `id:` and `event:` lines, then the JSON payload on one `data:` line."""
    lines = []
    if seq is not None:
        lines.append(f"id: {seq}\n")
    if event is not None:
        lines.append(f"event: {event}\n")
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    lines.append(f"data: {data}\n\n")
    return "".join(lines)


def with_heartbeats(
    wait_next: Callable[[float], list[str] | None], interval_seconds: float
) -> Iterator[str]:
    """Yield what `wait_next(timeout)` returns; a `: ping` comment whenever nothing came in time.

    `wait_next` returns a list of ready frames (possibly empty on timeout) or None when the stream is
    over. The ping is sent from this outermost layer, so it also covers silent reasoning phases.
    """
    while True:
        chunk = wait_next(interval_seconds)
        if chunk is None:
            return
        if chunk:
            yield "".join(chunk)
        else:
            yield PING

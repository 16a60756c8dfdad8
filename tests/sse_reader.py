"""Reading SSE streams in tests: from the Flask test client (streamed) or from requests over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class SseEvent:
    id: int | None
    data: Any  # parsed JSON, or the string "[DONE]"
    event: str | None = None

    @property
    def type(self) -> str | None:
        return self.data.get("type") if isinstance(self.data, dict) else None


def parse(chunks: Iterable[bytes | str]) -> Iterator[SseEvent | str]:
    """Frames as SseEvent objects, and comment lines (`: ping`) as plain strings, in order."""
    buffer = ""
    for chunk in chunks:
        buffer += chunk.decode("utf-8") if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            raw, buffer = buffer.split("\n\n", 1)
            event_id, event_name, data_lines = None, None, []
            for line in raw.split("\n"):
                if line.startswith(":"):
                    yield line
                elif line.startswith("id: "):
                    event_id = int(line[4:])
                elif line.startswith("event: "):
                    event_name = line[7:]
                elif line.startswith("data: "):
                    data_lines.append(line[6:])
            if data_lines:
                text = "\n".join(data_lines)
                yield SseEvent(event_id, text if text == "[DONE]" else json.loads(text), event_name)


def events_only(items: Iterable[SseEvent | str]) -> list[SseEvent]:
    return [item for item in items if isinstance(item, SseEvent)]


def joined(events: Iterable[SseEvent], kind: str = "content") -> str:
    """The concatenated `content` of the events of one type."""
    return "".join(e.data.get("content", "") for e in events if e.type == kind and "content" in e.data)

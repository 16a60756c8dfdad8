"""Split ``<think>...</think>`` blocks out of streamed text (DeepSeek-R1 style models, QwQ, ...).

Some OpenAI-compatible servers and Ollama models put their reasoning inside the visible text, wrapped in
``<think>`` tags, instead of a separate field. The splitter turns that into reasoning deltas and content
deltas, also when a tag is split across chunks (``"<thi"`` + ``"nk>"``).

Only a ``<think>`` that opens the answer (after optional whitespace) is treated as reasoning: a model that
writes about the tag later in its answer keeps its text. The whitespace that usually follows
``</think>`` is dropped.
"""

from __future__ import annotations

from .base import ContentDelta, ReasoningDelta

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class ThinkTagSplitter:
    """Incremental splitter: feed content chunks, get reasoning/content events back."""

    def __init__(self) -> None:
        self._state = "start"  # start -> (inside -> after ->) visible
        self._buf = ""

    @property
    def in_reasoning(self) -> bool:
        """True while inside an open ``<think>`` block."""
        return self._state == "inside"

    def feed(self, text: str) -> list[ContentDelta | ReasoningDelta]:
        """Process one chunk of visible text."""
        if not text:
            return []
        if self._state == "visible":
            return [ContentDelta(text)]
        self._buf += text
        return self._drain()

    def flush(self) -> list[ContentDelta | ReasoningDelta]:
        """Emit whatever is held back (at the end of the stream)."""
        buf, self._buf = self._buf, ""
        if not buf:
            return []
        if self._state == "inside":
            return [ReasoningDelta(buf)]
        if self._state == "after":
            return []  # only whitespace after </think>
        self._state = "visible"
        return [ContentDelta(buf)]

    def _drain(self) -> list[ContentDelta | ReasoningDelta]:
        out: list[ContentDelta | ReasoningDelta] = []
        while True:
            if self._state == "start":
                stripped = self._buf.lstrip()
                if not stripped:
                    return out  # only whitespace so far: wait
                if stripped.startswith(OPEN_TAG):
                    self._state = "inside"
                    self._buf = stripped[len(OPEN_TAG) :]
                    continue
                if OPEN_TAG.startswith(stripped):
                    return out  # maybe the beginning of "<think>": wait
                self._state = "visible"
                buf, self._buf = self._buf, ""
                out.append(ContentDelta(buf))
                return out
            if self._state == "inside":
                idx = self._buf.find(CLOSE_TAG)
                if idx >= 0:
                    if idx:
                        out.append(ReasoningDelta(self._buf[:idx]))
                    self._buf = self._buf[idx + len(CLOSE_TAG) :]
                    self._state = "after"
                    continue
                keep = _partial_suffix(self._buf, CLOSE_TAG)
                emit = self._buf[: len(self._buf) - keep]
                self._buf = self._buf[len(self._buf) - keep :]
                if emit:
                    out.append(ReasoningDelta(emit))
                return out
            if self._state == "after":
                stripped = self._buf.lstrip()
                if not stripped:
                    self._buf = ""
                    return out
                self._state = "visible"
                self._buf = ""
                out.append(ContentDelta(stripped))
                return out
            # visible
            if self._buf:
                out.append(ContentDelta(self._buf))
                self._buf = ""
            return out

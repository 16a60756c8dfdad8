"""Token counts of text and chat messages, and history truncation to a token budget."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from common.tokenizer.heuristic import estimate_tokens
from common.tokenizer.loading import _get_encoding, mode
from common.tokenizer.models import encoding_name_for

#: Per-message overhead (role/name framing) in the OpenAI chat format.
TOKENS_PER_MESSAGE = 4
#: Per-conversation overhead (the primed assistant reply).
TOKENS_PER_CONVERSATION = 3
#: Fixed cost counted for each image part of a message.
TOKENS_PER_IMAGE = 85
#: Exact counts remembered per process: a conversation's history is counted again for every new
#: message, and a text's count never changes. Long texts are keyed by a 128-bit digest, so the
#: cache's memory stays bounded (~3 MB) whatever the messages' size.
COUNT_CACHE_ENTRIES = 16384
_DIGEST_FROM = 128  # characters; shorter texts are their own key


class TokenizerUnavailable(RuntimeError):
    """Raised by :func:`encode` when exact token ids cannot be produced (heuristic mode or load failure)."""


def encode(text: str, model: str = "") -> list[int]:
    """Return the exact token ids of ``text`` for ``model`` (special tokens encoded as plain text).

    Raises :class:`TokenizerUnavailable` in heuristic mode or when the encoding cannot be loaded.
    """
    name = encoding_name_for(model)
    enc = _get_encoding(name)
    if enc is None:
        raise TokenizerUnavailable(f"{name} is not available (tokenizer mode: {mode()})")
    return enc.encode_ordinary(text or "")


def count_text(text: str, model: str = "") -> int:
    """Return the number of tokens in ``text`` for ``model``.

    Exact (tiktoken) in precise mode; :func:`estimate_tokens` in heuristic mode or if the encoding
    failed to load. Text that looks like special tokens (``<|endoftext|>``) is counted as plain text.
    """
    if not text:
        return 0
    name = encoding_name_for(model)
    enc = _get_encoding(name)
    if enc is None:
        return estimate_tokens(text)
    return _counts.count(name, enc, text)


class _CountCache:
    """A bounded LRU of exact token counts by (encoding, text or its digest)."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._counts: OrderedDict[tuple, int] = OrderedDict()

    def count(self, encoding_name: str, enc: Any, text: str) -> int:
        if len(text) < _DIGEST_FROM:
            key: tuple = (encoding_name, text)
        else:
            digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            key = (encoding_name, len(text), digest)
        known = self._counts.get(key)
        if known is not None:
            self._counts.move_to_end(key)
            return known
        counted = len(enc.encode_ordinary(text))
        self._counts[key] = counted
        if len(self._counts) > self.entries:
            self._counts.popitem(last=False)
        return counted


_counts = _CountCache(COUNT_CACHE_ENTRIES)


_IMAGE_PART_TYPES = frozenset({"image_url", "image", "input_image"})


def _count_content(content: Any, model: str) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count_text(content, model)
    if isinstance(content, Mapping):
        content = [content]
    total = 0
    if isinstance(content, Sequence):
        for part in content:
            if isinstance(part, str):
                total += count_text(part, model)
            elif isinstance(part, Mapping):
                part_type = part.get("type")
                if part_type in _IMAGE_PART_TYPES:
                    total += TOKENS_PER_IMAGE
                elif isinstance(part.get("text"), str):
                    total += count_text(part["text"], model)
    return total


def count_message(message: Mapping[str, Any], model: str = "") -> int:
    """Return one message's tokens: 4 + tokens(role) + tokens(content).

    ``content`` may be a string, ``None``, or a list of OpenAI-style parts: text parts
    (``{"type": "text", "text": ...}``) are counted, each image part (``image_url``/``image``/
    ``input_image``) counts a fixed 85 tokens, other parts count 0.
    """
    return (
        TOKENS_PER_MESSAGE
        + count_text(str(message.get("role") or ""), model)
        + _count_content(message.get("content"), model)
    )


def count_messages(messages: Sequence[Mapping[str, Any]], model: str = "") -> int:
    """Return the prompt tokens of a conversation: sum of :func:`count_message` plus 3."""
    return TOKENS_PER_CONVERSATION + sum(count_message(m, model) for m in messages)


def truncate_history(messages: Sequence[Mapping[str, Any]], budget: int, model: str = "") -> list[Mapping[str, Any]]:
    """Keep the newest whole messages whose :func:`count_messages` total fits in ``budget``.

    Walks from the newest message backwards and stops at the first one that does not fit (no gaps),
    so the oldest are dropped first. The last (current) message is always kept, even if it alone
    exceeds the budget. Returns the kept messages in their original order (same dict objects).
    """
    return fit_history(messages, budget, model)[0]


def fit_history(
    messages: Sequence[Mapping[str, Any]], budget: int, model: str = ""
) -> tuple[list[Mapping[str, Any]], int]:
    """:func:`truncate_history` and the :func:`count_messages` total of what it kept."""
    if not messages:
        return [], 0
    kept = [messages[-1]]
    used = TOKENS_PER_CONVERSATION + count_message(messages[-1], model)
    for message in reversed(messages[:-1]):
        cost = count_message(message, model)
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    return kept, used

"""The built-in demo model: a deterministic local answer, streamed with a delay, no network at all.

It is what a fresh install chats with before a real provider is configured (and the default model of the
seed-003 bots). The answer is ``"[<model-id>] "`` followed by a short paragraph (40-80 words) that echoes
the last user message and adds a pseudo-analysis chosen deterministically from a hash of the message, so
the same question always gets the same answer. Models whose id contains ``reason`` first stream a short
reasoning text. Chunks are single words, ``demo_delay_ms`` apart.
"""

from __future__ import annotations

import hashlib
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

from .base import (
    ChatRequest,
    CompletionResult,
    ContentDelta,
    EndOfStream,
    Finish,
    HTTPClient,
    ModelInfo,
    ProviderAdapter,
    ProviderConfig,
    ProviderStream,
    ReasoningDelta,
    StreamEvent,
    Usage,
)
from .transport import message_text_and_images

DEMO_MODELS = (
    ModelInfo(raw_id="demo-chat", name="Demo Chat", context_window=8192, max_output_tokens=1024),
    ModelInfo(
        raw_id="demo-reasoner",
        name="Demo Reasoner",
        context_window=8192,
        max_output_tokens=1024,
        capabilities={"reasoning": True},
    ),
)
QUOTE_WORDS = 12
_SLEEP_SLICE = 0.05

_OPENERS = (
    "Thanks for your message!",
    "Good question, happy to help.",
    "Thanks for asking, here is my take.",
    "Nice one, let me think out loud.",
)
_ANGLES = (
    "From a practical angle, the details matter more than the big picture.",
    "It seems useful to separate what is known from what still needs checking.",
    "A simple first step usually reveals most of what matters here.",
    "Breaking it into smaller parts makes the whole thing easier to reason about.",
)
_STEPS = (
    "I would start with the simplest case, then compare the alternatives.",
    "Write down the goal first, then test one idea at a time.",
    "Try a small example first and grow it once it behaves as expected.",
    "List the constraints, pick the most important one, and tackle it first.",
)
_CLOSING = (
    "This is the built-in demo model answering locally, without any AI provider; "
    "connect a real model for genuine answers."
)


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text_and_images(message.get("content"))[0]
    return ""


def _keywords(words: list[str]) -> list[str]:
    seen: list[str] = []
    cleaned = (re.sub(r"[^\w-]", "", w).lower() for w in words)
    for word in sorted((w for w in cleaned if len(w) >= 4), key=lambda w: (-len(w), w)):
        if word not in seen:
            seen.append(word)
        if len(seen) == 3:
            break
    return seen


def demo_answer(question: str) -> str:
    """The deterministic answer paragraph (without the model prefix) for a question."""
    words = question.split()
    quoted = " ".join(words[:QUOTE_WORDS]) + (" ..." if len(words) > QUOTE_WORDS else "")
    digest = hashlib.sha256(" ".join(words).encode("utf-8")).digest()
    keywords = _keywords(words)
    if not words:
        echo = "You sent an empty message, so I will keep this short."
    else:
        echo = f'You asked: "{quoted}"' + ("" if quoted[-1] in ".?!" else ".")
    if keywords:
        noticed = "The key words I noticed are " + ", ".join(keywords) + "."
    else:
        noticed = "I did not spot any long key words in it."
    return " ".join(
        (
            _OPENERS[digest[0] % len(_OPENERS)],
            echo,
            _ANGLES[digest[1] % len(_ANGLES)],
            noticed,
            _STEPS[digest[2] % len(_STEPS)],
            _CLOSING,
        )
    )


def demo_reasoning(question: str) -> str:
    """The reasoning text of the reasoning demo model."""
    words = question.split()
    topic = " ".join(words[:8]) + (" ..." if len(words) > 8 else "") if words else "nothing in particular"
    topic += "" if topic[-1] in ".?!" else "."
    return (
        f"The user wrote about: {topic} The message has {len(words)} words and {len(question)} characters. "
        "I will acknowledge it, point out its key words and suggest a simple first step."
    )


def demo_text(model: str, messages: list[dict[str, Any]]) -> tuple[str, str]:
    """``(answer with the "[model] " prefix, reasoning or "")`` for a conversation."""
    question = _last_user_text(messages)
    answer = f"[{model}] " + demo_answer(question)
    reasoning = demo_reasoning(question) if "reason" in model.lower() else ""
    return answer, reasoning


def word_chunks(text: str) -> list[str]:
    """Split into word chunks (each with its trailing whitespace) that join back to ``text``."""
    return re.findall(r"\s*\S+\s*", text) if text.strip() else ([text] if text else [])


def count_words(messages: list[dict[str, Any]]) -> int:
    """The demo's "token" count of a conversation: whitespace-separated words."""
    return sum(len(message_text_and_images(m.get("content"))[0].split()) for m in messages)


def _sleep(seconds: float) -> None:
    """gevent.sleep inside a gevent greenlet (or a patched process), else time.sleep."""
    gevent = sys.modules.get("gevent")
    if gevent is not None:
        import greenlet
        from gevent.monkey import is_module_patched

        if is_module_patched("time") or greenlet.getcurrent().parent is not None:
            gevent.sleep(seconds)
            return
    time.sleep(seconds)


class DemoStream(ProviderStream):
    """The demo answer, word by word; ``close()`` stops it within one delay slice."""

    def __init__(self, req: ChatRequest, delay_ms: int) -> None:
        super().__init__()
        self._req = req
        self._delay = max(int(delay_ms), 0) / 1000.0

    def _wait(self) -> None:
        remaining = self._delay
        while remaining > 0 and not self._closed:
            step = min(remaining, _SLEEP_SLICE)
            _sleep(step)
            remaining -= step

    def _produce(self) -> Iterator[StreamEvent]:
        req = self._req
        answer, reasoning = demo_text(req.model, req.messages)
        budget = req.max_tokens if req.max_tokens and req.max_tokens > 0 else None
        sent_words = 0
        finish = "stop"
        for chunk in word_chunks(reasoning):
            self._wait()
            if self._closed:
                return
            yield ReasoningDelta(chunk)
        streamed: list[str] = []
        for chunk in word_chunks(answer):
            if budget is not None and sent_words >= budget:
                finish = "length"
                break
            self._wait()
            if self._closed:
                return
            streamed.append(chunk)
            sent_words += 1
            yield ContentDelta(chunk)
        prompt = count_words(req.messages)
        completion = len("".join(streamed).split()) + len(reasoning.split())
        yield Finish(finish)
        yield Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
        yield EndOfStream()


class DemoAdapter(ProviderAdapter):
    """The local demo provider (``http`` is ignored and may be None)."""

    provider = "demo"

    def _delay_ms(self, config: ProviderConfig | None) -> int:
        cfg = config or self.config
        return cfg.demo_delay_ms if cfg is not None else 30

    def stream_chat(
        self,
        req: ChatRequest,
        *,
        http: HTTPClient | None = None,
        idle_timeout: float = 60.0,
        first_byte_timeout: float = 300.0,
        config: ProviderConfig | None = None,
        batch_interval: float = 0.0,  # noqa: ARG002 - local answer: its own delay paces it
    ) -> ProviderStream:
        """Stream the demo answer word by word."""
        return DemoStream(req, self._delay_ms(config))

    def complete_chat(
        self,
        req: ChatRequest,
        *,
        http: HTTPClient | None = None,
        timeout: float = 300.0,
        config: ProviderConfig | None = None,
    ) -> CompletionResult:
        """The whole demo answer at once."""
        answer, reasoning = demo_text(req.model, req.messages)
        finish = "stop"
        if req.max_tokens and req.max_tokens > 0:
            chunks = word_chunks(answer)
            if len(chunks) > req.max_tokens:
                answer, finish = "".join(chunks[: req.max_tokens]), "length"
        prompt = count_words(req.messages)
        completion = len(answer.split()) + len(reasoning.split())
        return CompletionResult(
            content=answer,
            reasoning=reasoning,
            finish_reason=finish,
            usage=Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion),
        )

    def list_models(
        self,
        *,
        http: HTTPClient | None = None,
        timeout: float = 10.0,
        config: ProviderConfig | None = None,
    ) -> list[ModelInfo]:
        """The fixed demo catalog."""
        return [
            ModelInfo(m.raw_id, m.name, m.context_window, m.max_output_tokens, dict(m.capabilities))
            for m in DEMO_MODELS
        ]

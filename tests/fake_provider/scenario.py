"""Scenario grammar of the fake provider, and the deterministic answers it produces.

A scenario is read from the requested model name and, on top of it, from the ``X-Fake-Scenario`` header.
Both use the same grammar::

    model    := NAME [ "@" OPTIONS ]        e.g. fake-chat, fake-reasoning@chunks=5, fake-cut@after=2
    header   := [ NAME "@" ] OPTIONS | NAME  e.g. "cut=2", "stall_after=3,delay=10", "reasoning"
    OPTIONS  := TOKEN ( "," TOKEN )*
    TOKEN    := KEY [ "=" VALUE ]

The NAME minus a ``fake-`` prefix is itself a token (``fake-500-once`` == ``500_once``); dashes and
underscores are interchangeable; unknown tokens are ignored, so any model name (``gpt-4o``) gets the
normal answer. An Ollama tag (``:latest``) and a Gemini ``models/`` prefix are stripped.

Tokens (bare value defaults in parentheses):

==================  ==========================================================================
chat / normal       the normal answer (default)
reasoning           reasoning first: OpenAI ``delta.reasoning_content`` (``reasoning_field=reasoning``
                    for ``delta.reasoning``), Ollama ``message.thinking`` (unless ``think: false``),
                    Gemini ``thought: true`` parts (when ``thinkingConfig.includeThoughts``)
think               ``<think>reasoning</think>`` inside the content, sliced into 5-char chunks so the
                    tags are split across chunks (OpenAI/Azure/Ollama; Gemini treats it as reasoning)
no_usage            no usage (no OpenAI usage chunk, no Ollama counts, no Gemini usageMetadata)
no_done             OpenAI/Azure: finish_reason (and usage), then the body ends without ``data: [DONE]``
429[=N]             HTTP 429 with ``Retry-After: <retry_after>`` (1) the first N (1) times for the
                    counter key (``key=`` option, else the whole model string), then success;
                    ``times=N`` sets N too (``fake-429@key=t1,times=2``)
500_once            HTTP 500 the first time for the counter key, then success
500                 HTTP 500 always; ``status=NNN`` fails always with that status
401                 HTTP 401 always (also: an API key starting with ``bad`` or ``invalid``)
stall[=K]           stream K (0) chunks, then no bytes for ``stall_ms`` (60000), then end the body
                    without the end marker; headers are sent at once. ``stall_after=K`` is the same
cut[=K]             stream K (3) chunks, then end the body cleanly without [DONE]/done/finishReason
hard_cut[=K]        stream K (3) chunks, then abort the TCP connection mid-body
malformed[=K]       stream K (1) chunks, then a frame that is not JSON
slow_first_byte[=MS]  wait MS (2000) before sending the response headers (also ``slow``)
large[=W]           an answer of at least W (2000) words
fallback_fail       non-streaming requests fail with HTTP 500 (the stream scenarios above only apply
                    to streaming requests, so a non-streaming fallback normally succeeds)
chunks=N            split the answer into exactly N chunks (padding it with filler words if needed)
delay=MS            wait MS between chunks (0)
words=W             pad the answer to at least W words
text=T              answer T instead of "Echo: <last user text>" (percent-decoded)
after=K             K for cut / stall / malformed / hard_cut given without a value
finish=R            the finish reason (stop)
crlf                OpenAI/Ollama frames end with CRLF (Gemini always uses CRLF)
key=K               the counter key of 429 / 500_once
==================  ==========================================================================

Usage numbers: ``prompt_tokens`` = 7 + the number of whitespace-separated words of all message texts
(system prompts included); ``completion_tokens`` = words of the answer + words of the reasoning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

PROMPT_OVERHEAD = 7
FILLER = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
    "et dolore magna aliqua"
).split()
THINK_SLICE = 5


@dataclass
class Scenario:
    """Everything that shapes one fake answer."""

    model: str = ""
    reasoning: bool = False
    think: bool = False
    reasoning_field: str = "reasoning_content"
    no_usage: bool = False
    no_done: bool = False
    fail_429: int = 0
    retry_after: str = "1"
    fail_500_once: bool = False
    fail_status: int | None = None
    stall_after: int | None = None
    stall_ms: int = 60000
    cut_after: int | None = None
    hard_cut: bool = False
    malformed_after: int | None = None
    first_byte_ms: int = 0
    chunks: int | None = None
    delay_ms: int = 0
    words: int | None = None
    text: str | None = None
    finish: str = "stop"
    crlf: bool = False
    fallback_fail: bool = False
    key: str | None = None
    unknown: list[str] = field(default_factory=list)

    @property
    def counter_key(self) -> str:
        """What 429 / 500_once counters are keyed by."""
        return self.key or self.model


def _int(value: str | None, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(float(value))
    except ValueError:
        return default


def base_model_name(model: str) -> str:
    """The model name without options, Ollama tag or Gemini ``models/`` prefix."""
    name = model.removeprefix("models/")
    name = name.split("@", 1)[0]
    return name.split(":", 1)[0]


def _tokens(spec: str, *, is_model: bool) -> list[tuple[str, str | None]]:
    spec = spec.strip()
    if not spec:
        return []
    spec = spec.removeprefix("models/")
    if spec.endswith(":latest"):
        spec = spec[: -len(":latest")]
    if "@" in spec:
        name, opts = spec.split("@", 1)
        raw = [name, *opts.split(",")]
    elif is_model:
        raw = [spec.split(":", 1)[0]]
    else:
        raw = spec.split(",")
    out: list[tuple[str, str | None]] = []
    for token in raw:
        token = token.strip()
        if not token:
            continue
        key, sep, value = token.partition("=")
        key = key.strip().lower().replace("-", "_")
        if not sep:
            key = key.removeprefix("fake_")
            if key == "fake":
                continue
        out.append((key, value.strip() if sep else None))
    return out


def _apply(sc: Scenario, tokens: list[tuple[str, str | None]]) -> None:
    pending_after: list[str] = []
    after: int | None = None
    times: int | None = None
    for key, value in tokens:
        if key in ("chat", "normal", "default", "echo"):
            continue
        if key in ("reasoning", "reasoner", "thinking"):
            sc.reasoning = True
        elif key == "think":
            sc.think = True
        elif key in ("no_usage", "nousage"):
            sc.no_usage = True
        elif key in ("no_done", "nodone"):
            sc.no_done = True
        elif key == "429":
            sc.fail_429 = _int(value, 1)
        elif key in ("500_once", "500once"):
            sc.fail_500_once = True
        elif key == "500":
            sc.fail_status = 500
        elif key == "401":
            sc.fail_status = 401
        elif key == "status":
            sc.fail_status = _int(value, 500)
        elif key in ("stall", "stall_after"):
            sc.stall_after = _int(value, 0)
            if value is None:
                pending_after.append("stall_after")
        elif key in ("cut", "hard_cut", "abort"):
            sc.cut_after = _int(value, 3)
            sc.hard_cut = sc.hard_cut or key != "cut"
            if value is None:
                pending_after.append("cut_after")
        elif key == "malformed":
            sc.malformed_after = _int(value, 1)
            if value is None:
                pending_after.append("malformed_after")
        elif key in ("slow_first_byte", "slow", "first_byte_ms", "wait"):
            sc.first_byte_ms = _int(value, 2000)
        elif key == "large":
            sc.words = _int(value, 2000)
        elif key == "words":
            sc.words = _int(value, 2000)
        elif key == "chunks":
            sc.chunks = max(_int(value, 1), 1)
        elif key == "delay":
            sc.delay_ms = max(_int(value, 0), 0)
        elif key == "stall_ms":
            sc.stall_ms = max(_int(value, 60000), 0)
        elif key == "text":
            sc.text = unquote(value or "")
        elif key == "after":
            after = _int(value, 0)
        elif key == "times":
            times = _int(value, 1)
        elif key == "finish":
            sc.finish = value or "stop"
        elif key == "crlf":
            sc.crlf = True
        elif key in ("fallback_fail", "nonstream_fail"):
            sc.fallback_fail = True
        elif key == "key":
            sc.key = value or None
        elif key == "retry_after":
            sc.retry_after = value or "1"
        elif key == "reasoning_field":
            sc.reasoning_field = value or "reasoning_content"
        else:
            sc.unknown.append(key)
    if times is not None and sc.fail_429:
        sc.fail_429 = times
    if after is not None:
        for name in pending_after:
            setattr(sc, name, after)


def parse_scenario(model: str, header: str | None = None) -> Scenario:
    """The scenario for a requested model name and an optional ``X-Fake-Scenario`` header."""
    sc = Scenario(model=model or "")
    _apply(sc, _tokens(model or "", is_model=True))
    if header:
        _apply(sc, _tokens(header, is_model=False))
    return sc


# --------------------------------------------------------------------------------------------------
# Deterministic answers
# --------------------------------------------------------------------------------------------------


def answer_words(sc: Scenario, user_text: str) -> list[str]:
    """The answer's words (before chunking)."""
    base = sc.text if sc.text is not None else f"Echo: {user_text}"
    words = base.split() or ["Echo:"]
    target = max(sc.chunks or 0, sc.words or 0)
    index = 0
    while len(words) < target:
        words.append(FILLER[index % len(FILLER)])
        index += 1
    return words


def answer_text(sc: Scenario, user_text: str) -> str:
    """The full visible answer (words joined by single spaces)."""
    return " ".join(answer_words(sc, user_text))


def reasoning_text(user_text: str) -> str:
    """The reasoning that ``reasoning`` / ``think`` scenarios produce."""
    words = user_text.split()
    return "Let me think about " + (" ".join(words[:12]) if words else "this") + " step by step."


def split_words(words: list[str], n: int | None) -> list[str]:
    """Split words into n contiguous chunks (one word per chunk when n is None); joins back with spaces."""
    if not words:
        return []
    count = len(words) if not n else min(n, len(words))
    size, extra = divmod(len(words), count)
    chunks: list[str] = []
    pos = 0
    for i in range(count):
        take = size + (1 if i < extra else 0)
        group = " ".join(words[pos : pos + take])
        pos += take
        chunks.append(group if i == 0 else " " + group)
    return chunks


def slices(text: str, size: int = THINK_SLICE) -> list[str]:
    """Fixed-size slices of text."""
    return [text[i : i + size] for i in range(0, len(text), size)]


def plan(sc: Scenario, user_text: str, *, native_reasoning: bool) -> list[tuple[str, str]]:
    """The chunks of one streamed answer as ``("reasoning"|"content", text)`` pairs.

    ``native_reasoning``: whether the provider carries reasoning in its own field (else reasoning is
    dropped, as a provider does when thinking is off).
    """
    items: list[tuple[str, str]] = []
    answer_chunks = split_words(answer_words(sc, user_text), sc.chunks)
    if sc.think:
        text = "<think>" + reasoning_text(user_text) + "</think>\n\n" + "".join(answer_chunks)
        return [("content", part) for part in slices(text)]
    if sc.reasoning and native_reasoning:
        items += [("reasoning", part) for part in split_words(reasoning_text(user_text).split(), None)]
    items += [("content", part) for part in answer_chunks]
    return items


def usage_numbers(sc: Scenario, prompt_words: int, user_text: str, *, with_reasoning: bool) -> tuple[int, int, int]:
    """``(prompt_tokens, completion_tokens, total_tokens)`` the fake reports."""
    prompt = PROMPT_OVERHEAD + prompt_words
    completion = len(answer_words(sc, user_text))
    if with_reasoning:
        completion += len(reasoning_text(user_text).split())
    return prompt, completion, prompt + completion


def count_words(texts: list[str]) -> int:
    """Whitespace-separated words of several texts."""
    return sum(len(t.split()) for t in texts)

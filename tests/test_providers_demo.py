"""The local demo provider: deterministic, no network, closable."""

from __future__ import annotations

import socket
import time

import pytest

from common.providers import (
    ChatRequest,
    ContentDelta,
    DemoAdapter,
    EndOfStream,
    Finish,
    ProviderConfig,
    ReasoningDelta,
    Usage,
    get_adapter,
)
from common.providers.demo import demo_answer
from tests.fake_provider.pytest_support import close_while_collecting, collect

QUESTION = "How do I keep my basil plant alive indoors?"
MESSAGES = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": QUESTION}]


def fast_adapter() -> DemoAdapter:
    return get_adapter(ProviderConfig(provider="demo", demo_delay_ms=0))


def stream(model="demo-chat", messages=MESSAGES, adapter=None, **kwargs):
    adapter = adapter or fast_adapter()
    return adapter.stream_chat(
        ChatRequest(model=model, messages=messages, **kwargs), http=None, idle_timeout=1, first_byte_timeout=1
    )


def test_answer_starts_with_the_model_prefix_and_echoes_the_question():
    got = collect(stream())
    assert got.error is None
    assert got.content.startswith("[demo-chat] ")
    assert QUESTION in got.content


def test_answer_is_deterministic():
    assert collect(stream()).content == collect(stream()).content


def test_different_questions_get_different_answers():
    other = [{"role": "user", "content": "What should I cook for dinner tonight?"}]
    assert collect(stream()).content != collect(stream(messages=other)).content


@pytest.mark.parametrize(
    "question",
    ["", "hi", QUESTION, " ".join(f"word{i}" for i in range(300)), "Ünïcode ça marche? 你好"],
)
def test_answer_body_has_40_to_80_words(question):
    assert 40 <= len(demo_answer(question).split()) <= 80


def test_stream_is_word_by_word_then_finish_usage_end():
    got = collect(stream())
    deltas = [e for e in got.events if isinstance(e, ContentDelta)]
    assert len(deltas) == len(got.content.split())
    prompt = len("Be kind.".split()) + len(QUESTION.split())
    completion = len(got.content.split())
    assert got.tail == [Finish("stop"), Usage(prompt, completion, prompt + completion), EndOfStream()]


def test_reasoner_streams_reasoning_before_the_answer():
    got = collect(stream(model="demo-reasoner"))
    assert got.kinds() == ["ReasoningDelta", "ContentDelta", "Finish", "Usage", "EndOfStream"]
    assert got.reasoning and "basil" in got.reasoning
    assert got.content.startswith("[demo-reasoner] ")


def test_chat_model_has_no_reasoning():
    assert collect(stream()).reasoning == ""


def test_needs_no_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the demo provider opened a socket")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    got = collect(stream())
    assert got.ended


def test_delay_between_chunks_is_configurable():
    adapter = get_adapter(ProviderConfig(provider="demo", demo_delay_ms=20))
    s = stream(adapter=adapter)
    start = time.monotonic()
    for _ in range(5):
        next(s)
    assert time.monotonic() - start >= 0.08
    s.close()


def test_close_stops_the_stream():
    s = stream()
    first = [next(s) for _ in range(3)]
    assert all(isinstance(e, ContentDelta) for e in first)
    s.close()
    assert list(s) == []
    assert s.closed and not s.ended


def test_close_from_another_thread_stops_a_slow_stream_promptly():
    adapter = get_adapter(ProviderConfig(provider="demo", demo_delay_ms=1000))
    s = stream(adapter=adapter)
    reader, closed_at = close_while_collecting(s, after=0.2)
    assert reader.join(2.0)
    assert reader.finished_at - closed_at < 0.5
    assert reader.result.events == []


def test_max_tokens_truncates_with_finish_length():
    got = collect(stream(max_tokens=5))
    assert len(got.content.split()) == 5
    assert got.finish == Finish("length")
    assert got.ended


def test_complete_chat_matches_the_streamed_answer():
    adapter = fast_adapter()
    result = adapter.complete_chat(ChatRequest(model="demo-reasoner", messages=MESSAGES), http=None, timeout=1)
    got = collect(stream(model="demo-reasoner"))
    assert result.content == got.content
    assert result.reasoning == got.reasoning
    assert result.finish_reason == "stop"
    assert result.usage == got.usage


def test_list_models_and_verify_return_the_fixed_catalog():
    adapter = get_adapter("demo")
    models = {m.raw_id: m for m in adapter.list_models(http=None, timeout=1)}
    assert set(models) == {"demo-chat", "demo-reasoner"}
    assert models["demo-chat"].context_window == 8192
    assert models["demo-reasoner"].capabilities["reasoning"] is True
    assert [m.raw_id for m in adapter.verify(http=None, timeout=1)] == sorted(models)


def test_unbound_adapter_uses_the_default_delay():
    adapter = get_adapter("demo")
    s = adapter.stream_chat(
        ChatRequest(model="demo-chat", messages=MESSAGES), http=None, idle_timeout=1, first_byte_timeout=1
    )
    start = time.monotonic()
    next(s)
    next(s)
    assert time.monotonic() - start >= 0.05  # 30 ms per chunk
    s.close()


def test_multimodal_content_uses_its_text_parts():
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this flower"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        }
    ]
    assert "What is this flower" in collect(stream(messages=messages)).content


def test_events_are_reasoning_or_content_deltas_with_text():
    for event in collect(stream(model="demo-reasoner")).events:
        if isinstance(event, ContentDelta | ReasoningDelta):
            assert event.text

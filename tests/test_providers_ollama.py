"""The Ollama adapter against the fake provider's /api endpoints (NDJSON)."""

from __future__ import annotations

import pytest

from common.providers import (
    ChatRequest,
    EndOfStream,
    Finish,
    OllamaAdapter,
    ProviderConfig,
    ProviderError,
    Usage,
)
from tests.fake_provider.pytest_support import collect, open_stream, provider_fixtures
from tests.fake_provider.scenario import PROMPT_OVERHEAD, reasoning_text

QUESTION = "Why is the sky blue"
PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
MESSAGES = [{"role": "user", "content": QUESTION}]
PROMPT_TOKENS = PROMPT_OVERHEAD + 5
IDLE = 0.5


fake, http, adapter = provider_fixtures(
    lambda fake: ProviderConfig(provider="ollama", base_url=fake.ollama_base_url, auth_type="none")
)


def stream(adapter, http, model, *, idle=IDLE, messages=MESSAGES, **kwargs):
    return open_stream(adapter, http, model, messages, idle=idle, **kwargs)


def test_get_adapter_returns_the_ollama_adapter(adapter):
    assert isinstance(adapter, OllamaAdapter)


def test_normal_stream_yields_content_then_finish_usage_end(adapter, http):
    got = collect(stream(adapter, http, "fake-chat"))
    assert got.error is None
    assert got.content == f"Echo: {QUESTION}"
    # prompt_eval_count / eval_count are the provider's numbers
    assert got.tail == [Finish("stop"), Usage(PROMPT_TOKENS, 6, PROMPT_TOKENS + 6), EndOfStream()]


def test_request_body_carries_options_think_and_no_auth(adapter, http, fake):
    collect(stream(adapter, http, "fake-chat@key=body", temperature=0.2, max_tokens=64, ollama_think=True))
    entry = fake.last_request(model="fake-chat@key=body")
    assert entry["path"] == "/api/chat"
    assert entry["auth_present"] is False
    body = entry["body"]
    assert body["stream"] is True
    assert body["think"] is True
    assert body["options"] == {"temperature": 0.2, "num_predict": 64}
    assert body["messages"] == [{"role": "user", "content": QUESTION}]


def test_images_are_sent_as_bare_base64(adapter, http, fake):
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
            ],
        }
    ]
    got = collect(stream(adapter, http, "fake-vision@key=img", messages=messages))
    assert got.content == "Echo: What is in this picture"
    sent = fake.last_request(model="fake-vision@key=img")["body"]["messages"][0]
    assert sent == {"role": "user", "content": "What is in this picture", "images": [PNG_B64]}


def test_thinking_becomes_reasoning_deltas(adapter, http):
    got = collect(stream(adapter, http, "fake-reasoning", ollama_think=True))
    assert got.error is None
    assert got.reasoning == reasoning_text(QUESTION)
    assert got.content == f"Echo: {QUESTION}"
    assert got.kinds()[:2] == ["ReasoningDelta", "ContentDelta"]


def test_think_false_is_sent_and_gives_no_reasoning(adapter, http, fake):
    got = collect(stream(adapter, http, "fake-reasoning@key=nothink", ollama_think=False))
    assert got.reasoning == ""
    assert fake.last_request(model="fake-reasoning@key=nothink")["body"]["think"] is False


def test_think_tags_in_content_become_reasoning(adapter, http):
    got = collect(stream(adapter, http, "fake-think"))
    assert got.reasoning == reasoning_text(QUESTION)
    assert got.content == f"Echo: {QUESTION}"


def test_cut_without_done_raises_truncated(adapter, http):
    got = collect(stream(adapter, http, "fake-cut@after=3"))
    assert got.error is not None and got.error.code == "upstream_truncated"
    assert got.content == "Echo: Why is"


def test_aborted_connection_raises_truncated(adapter, http):
    got = collect(stream(adapter, http, "fake-hard-cut@after=1"))
    assert got.error is not None and got.error.code == "upstream_truncated"


def test_malformed_line_raises_malformed(adapter, http):
    got = collect(stream(adapter, http, "fake-malformed@after=2"))
    assert got.error is not None and got.error.code == "upstream_malformed"


def test_429_surfaces_status_and_retry_after(adapter, http):
    got = collect(stream(adapter, http, "fake-429@key=ollama-429,retry_after=2"))
    assert got.error is not None
    assert (got.error.code, got.error.status, got.error.retry_after) == ("upstream_http", 429, 2.0)


def test_500_surfaces_status_and_message(adapter, http):
    got = collect(stream(adapter, http, "fake-500"))
    assert got.error is not None and got.error.status == 500
    assert "fake failure 500" in got.error.message


def test_stall_raises_idle_within_the_idle_timeout(adapter, http):
    got = collect(stream(adapter, http, "fake-stall@after=1"))
    assert got.error is not None and got.error.code == "upstream_idle"
    assert got.elapsed < IDLE + 1.5


def test_closing_mid_stream_closes_the_upstream_connection(adapter, http, fake):
    model = "fake-chat@chunks=30,delay=50,key=ollama-close"
    s = stream(adapter, http, model)
    next(s)
    s.close()
    assert list(s) == []
    entry = fake.wait_for_disconnect(model, timeout=1.0)
    assert entry is not None and entry["completed"] is False


def test_complete_chat_returns_answer_reasoning_and_usage(adapter, http, fake):
    result = adapter.complete_chat(
        ChatRequest(model="fake-reasoning@key=ns", messages=MESSAGES, ollama_think=True), http=http, timeout=5
    )
    reasoning_words = len(reasoning_text(QUESTION).split())
    assert result.content == f"Echo: {QUESTION}"
    assert result.reasoning == reasoning_text(QUESTION)
    assert result.finish_reason == "stop"
    assert result.usage == Usage(PROMPT_TOKENS, 6 + reasoning_words, PROMPT_TOKENS + 6 + reasoning_words)
    assert fake.last_request(model="fake-reasoning@key=ns")["body"]["stream"] is False


def test_complete_chat_surfaces_errors(adapter, http):
    with pytest.raises(ProviderError) as info:
        adapter.complete_chat(ChatRequest(model="fake-429@key=ns-429", messages=MESSAGES), http=http, timeout=5)
    assert info.value.status == 429


def test_list_models_reads_context_windows_from_api_show(adapter, http, fake):
    fake.reset()
    models = {m.raw_id: m for m in adapter.list_models(http=http, timeout=5)}
    assert set(models) == {"fake-chat:latest", "fake-reasoning:latest", "fake-vision:latest"}
    assert models["fake-chat:latest"].context_window == 8192  # num_ctx wins over llama.context_length
    assert models["fake-reasoning:latest"].context_window == 40960  # qwen3.context_length
    assert models["fake-reasoning:latest"].capabilities["reasoning"] is True
    assert models["fake-vision:latest"].capabilities["vision"] is True
    shows = [e["body"]["model"] for e in fake.requests_log(path="/api/show")]
    assert sorted(shows) == sorted(models)

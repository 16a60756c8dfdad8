"""The Gemini adapter against the fake provider's /v1beta endpoints (SSE with CRLF frames)."""

from __future__ import annotations

import pytest

from common.providers import (
    ChatRequest,
    EndOfStream,
    Finish,
    GeminiAdapter,
    ProviderConfig,
    ProviderError,
    UpstreamAuthError,
    Usage,
    get_adapter,
)
from tests.fake_provider.pytest_support import collect, open_stream, provider_fixtures
from tests.fake_provider.scenario import PROMPT_OVERHEAD, reasoning_text

QUESTION = "Plan a weekend in Lisbon"
MESSAGES = [
    {"role": "system", "content": "You are a travel agent."},
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi, how can I help?"},
    {"role": "user", "content": QUESTION},
]
PROMPT_TOKENS = PROMPT_OVERHEAD + 5 + 1 + 5 + 5
ANSWER_WORDS = 6
IDLE = 0.5


fake, http, adapter = provider_fixtures(
    lambda fake: ProviderConfig(provider="google_genai", base_url=fake.gemini_base_url, api_key="AIza-test-42ab")
)


def stream(adapter, http, model, *, idle=IDLE, messages=MESSAGES, **kwargs):
    return open_stream(adapter, http, model, messages, idle=idle, **kwargs)


def test_get_adapter_returns_the_gemini_adapter(adapter):
    assert isinstance(adapter, GeminiAdapter)


def test_crlf_stream_yields_content_then_finish_usage_end(adapter, http):
    got = collect(stream(adapter, http, "fake-chat"))
    assert got.error is None
    assert got.content == f"Echo: {QUESTION}"
    # STOP is normalized; the last usageMetadata wins over the partial ones of earlier frames
    assert got.tail == [
        Finish("stop"),
        Usage(PROMPT_TOKENS, ANSWER_WORDS, PROMPT_TOKENS + ANSWER_WORDS),
        EndOfStream(),
    ]


def test_request_uses_sse_url_key_header_system_instruction_and_roles(adapter, http, fake):
    collect(stream(adapter, http, "fake-chat@key=req", temperature=0.4, max_tokens=100))
    entry = fake.last_request(model="fake-chat@key=req")
    assert entry["path"] == "/v1beta/models/fake-chat@key=req:streamGenerateContent"
    assert entry["query"] == {"alt": "sse"}
    assert entry["auth_header"] == "x-goog-api-key"
    assert entry["auth_key_last4"] == "42ab"
    body = entry["body"]
    assert body["systemInstruction"] == {"parts": [{"text": "You are a travel agent."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][-1]["parts"] == [{"text": QUESTION}]
    assert body["generationConfig"] == {"temperature": 0.4, "maxOutputTokens": 100}


def test_images_become_inline_data_parts(adapter, http, fake):
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe this"},
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/AAAA"}},
            ],
        }
    ]
    collect(stream(adapter, http, "fake-vision@key=img", messages=messages))
    parts = fake.last_request(model="fake-vision@key=img")["body"]["contents"][0]["parts"]
    assert parts == [{"text": "Describe this"}, {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/AAAA"}}]


def test_thought_parts_become_reasoning_deltas(adapter, http, fake):
    got = collect(stream(adapter, http, "fake-reasoning@key=thoughts", reasoning_effort="medium"))
    assert got.error is None
    assert got.reasoning == reasoning_text(QUESTION)
    assert got.content == f"Echo: {QUESTION}"
    assert got.kinds()[:2] == ["ReasoningDelta", "ContentDelta"]
    thoughts = len(reasoning_text(QUESTION).split())
    assert got.usage == Usage(PROMPT_TOKENS, ANSWER_WORDS + thoughts, PROMPT_TOKENS + ANSWER_WORDS + thoughts)
    config = fake.last_request(model="fake-reasoning@key=thoughts")["body"]["generationConfig"]
    assert config["thinkingConfig"] == {"includeThoughts": True, "thinkingBudget": 8192}


def test_max_tokens_finish_reason_is_normalized_to_length(adapter, http):
    got = collect(stream(adapter, http, "fake-chat@finish=length"))
    assert got.finish == Finish("length")


def test_cut_without_finish_reason_raises_truncated(adapter, http):
    got = collect(stream(adapter, http, "fake-cut@after=2"))
    assert got.error is not None and got.error.code == "upstream_truncated"
    assert got.content == "Echo: Plan"


def test_malformed_frame_raises_malformed(adapter, http):
    got = collect(stream(adapter, http, "fake-malformed@after=1"))
    assert got.error is not None and got.error.code == "upstream_malformed"


def test_429_surfaces_status_and_retry_after(adapter, http):
    got = collect(stream(adapter, http, "fake-429@key=gemini-429"))
    assert got.error is not None
    assert (got.error.code, got.error.status, got.error.retry_after) == ("upstream_http", 429, 1.0)


def test_500_surfaces_status(adapter, http):
    got = collect(stream(adapter, http, "fake-500"))
    assert got.error is not None and got.error.status == 500


def test_missing_key_raises_upstream_auth(fake, http):
    keyless = get_adapter(ProviderConfig(provider="google_genai", base_url=fake.gemini_base_url, api_key=None))
    got = collect(
        keyless.stream_chat(
            ChatRequest(model="fake-chat", messages=MESSAGES), http=http, idle_timeout=IDLE, first_byte_timeout=5
        )
    )
    assert got.error is not None and got.error.code == "upstream_auth" and got.error.status == 403


def test_stall_raises_idle_within_the_idle_timeout(adapter, http):
    got = collect(stream(adapter, http, "fake-stall@after=1"))
    assert got.error is not None and got.error.code == "upstream_idle"
    assert got.elapsed < IDLE + 1.5


def test_closing_mid_stream_closes_the_upstream_connection(adapter, http, fake):
    model = "fake-chat@chunks=30,delay=50,key=gemini-close"
    s = stream(adapter, http, model)
    next(s)
    next(s)
    s.close()
    entry = fake.wait_for_disconnect(model, timeout=1.0)
    assert entry is not None and entry["completed"] is False


def test_complete_chat_uses_generate_content(adapter, http, fake):
    result = adapter.complete_chat(
        ChatRequest(model="fake-reasoning@key=ns", messages=MESSAGES, reasoning_effort="low"), http=http, timeout=5
    )
    assert result.content == f"Echo: {QUESTION}"
    assert result.reasoning == reasoning_text(QUESTION)
    assert result.finish_reason == "stop"
    assert result.usage is not None and result.usage.prompt_tokens == PROMPT_TOKENS
    assert fake.last_request(model="fake-reasoning@key=ns")["path"].endswith(":generateContent")


def test_complete_chat_surfaces_errors(adapter, http):
    with pytest.raises(ProviderError) as info:
        adapter.complete_chat(ChatRequest(model="fake-500", messages=MESSAGES), http=http, timeout=5)
    assert info.value.status == 500


def test_list_models_follows_pages_strips_prefix_and_reads_limits(adapter, http, fake):
    fake.reset()
    models = {m.raw_id: m for m in adapter.list_models(http=http, timeout=5)}
    assert set(models) == {"fake-chat", "fake-reasoning", "fake-vision", "fake-pro"}  # no embedding model
    assert models["fake-chat"].name == "Fake Chat"
    assert models["fake-chat"].context_window == 1048576
    assert models["fake-chat"].max_output_tokens == 8192
    assert models["fake-reasoning"].capabilities == {"reasoning": True}
    pages = fake.requests_log(path="/v1beta/models")
    assert len(pages) == 3  # the fake serves 2 models per page
    assert [p["query"].get("pageToken") for p in pages] == [None, "2", "4"]


def test_verify_with_a_bad_key_raises(fake, http):
    cfg = ProviderConfig(provider="google_genai", base_url=fake.gemini_base_url, api_key=None)
    with pytest.raises(UpstreamAuthError):
        get_adapter(cfg).verify(http=http, timeout=5)

"""The Azure OpenAI adapter against the fake provider's /openai/deployments endpoints."""

from __future__ import annotations

import pytest

from common.providers import (
    AzureOpenAIAdapter,
    ChatRequest,
    EndOfStream,
    Finish,
    ProviderConfig,
    UpstreamAuthError,
    Usage,
    get_adapter,
)
from tests.fake_provider.pytest_support import collect, open_stream, provider_fixtures
from tests.fake_provider.scenario import PROMPT_OVERHEAD, reasoning_text

QUESTION = "Summarize the meeting notes"
MESSAGES = [{"role": "user", "content": QUESTION}]
PROMPT_TOKENS = PROMPT_OVERHEAD + 4
IDLE = 0.5


fake, http, adapter = provider_fixtures(
    lambda fake: ProviderConfig(provider="azure_openai", base_url=fake.azure_base_url, api_key="az-secret-7c21")
)


def stream(adapter, http, model, *, idle=IDLE, **kwargs):
    return open_stream(adapter, http, model, MESSAGES, idle=idle, **kwargs)


def test_get_adapter_returns_the_azure_adapter(adapter):
    assert isinstance(adapter, AzureOpenAIAdapter)


def test_normal_stream_yields_content_then_finish_usage_end(adapter, http):
    got = collect(stream(adapter, http, "fake-chat"))
    assert got.error is None
    assert got.content == f"Echo: {QUESTION}"
    assert got.tail == [Finish("stop"), Usage(PROMPT_TOKENS, 5, PROMPT_TOKENS + 5), EndOfStream()]


def test_request_uses_the_deployment_url_default_api_version_and_api_key_header(adapter, http, fake):
    collect(stream(adapter, http, "fake-chat@key=url"))
    entry = fake.last_request(model="fake-chat@key=url")
    assert entry["path"] == "/openai/deployments/fake-chat@key=url/chat/completions"
    assert entry["query"] == {"api-version": "2024-10-21"}
    assert entry["auth_header"] == "api-key"
    assert entry["auth_key_last4"] == "7c21"
    assert "model" not in entry["body"]
    assert entry["body"]["stream_options"] == {"include_usage": True}


def test_configured_api_version_is_used(fake, http):
    cfg = ProviderConfig(
        provider="azure_openai",
        base_url=fake.azure_base_url + "/openai",
        api_key="k-1111",
        azure_api_version="2025-01-01-preview",
    )
    got = collect(
        get_adapter(cfg).stream_chat(
            ChatRequest(model="fake-chat@key=ver", messages=MESSAGES),
            http=http,
            idle_timeout=IDLE,
            first_byte_timeout=5,
        )
    )
    assert got.ended
    entry = fake.last_request(model="fake-chat@key=ver")
    assert entry["query"] == {"api-version": "2025-01-01-preview"}
    assert entry["path"].startswith("/openai/deployments/")


def test_missing_key_raises_upstream_auth(fake, http):
    cfg = ProviderConfig(provider="azure_openai", base_url=fake.azure_base_url, api_key=None)
    got = collect(
        get_adapter(cfg).stream_chat(
            ChatRequest(model="fake-chat", messages=MESSAGES), http=http, idle_timeout=IDLE, first_byte_timeout=5
        )
    )
    assert got.error is not None and got.error.code == "upstream_auth" and got.error.status == 401


def test_reasoning_deltas(adapter, http):
    got = collect(stream(adapter, http, "fake-reasoning"))
    assert got.reasoning == reasoning_text(QUESTION)
    assert got.content == f"Echo: {QUESTION}"


def test_cut_raises_truncated(adapter, http):
    got = collect(stream(adapter, http, "fake-cut@after=1"))
    assert got.error is not None and got.error.code == "upstream_truncated"
    assert got.content == "Echo:"


def test_malformed_frame_raises_malformed(adapter, http):
    got = collect(stream(adapter, http, "fake-malformed"))
    assert got.error is not None and got.error.code == "upstream_malformed"


def test_429_surfaces_status_and_retry_after(adapter, http):
    got = collect(stream(adapter, http, "fake-429@key=azure-429"))
    assert got.error is not None
    assert (got.error.status, got.error.retry_after) == (429, 1.0)


def test_500_surfaces_status(adapter, http):
    got = collect(stream(adapter, http, "fake-500"))
    assert got.error is not None and got.error.status == 500


def test_stall_raises_idle(adapter, http):
    got = collect(stream(adapter, http, "fake-stall@after=0"))
    assert got.error is not None and got.error.code == "upstream_idle"
    assert got.elapsed < IDLE + 1.5


def test_closing_mid_stream_closes_the_upstream_connection(adapter, http, fake):
    model = "fake-chat@chunks=30,delay=50,key=az-close"
    s = stream(adapter, http, model)
    next(s)
    next(s)
    s.close()
    entry = fake.wait_for_disconnect(model, timeout=1.0)
    assert entry is not None and entry["completed"] is False


def test_complete_chat(adapter, http):
    result = adapter.complete_chat(ChatRequest(model="fake-chat", messages=MESSAGES), http=http, timeout=5)
    assert result.content == f"Echo: {QUESTION}"
    assert result.finish_reason == "stop"
    assert result.usage == Usage(PROMPT_TOKENS, 5, PROMPT_TOKENS + 5)


def test_list_models_falls_back_to_openai_models_and_keeps_chat_models(adapter, http, fake):
    fake.reset()
    models = adapter.list_models(http=http, timeout=5)
    assert [m.raw_id for m in models] == ["fake-chat", "fake-reasoning"]  # the embedding model is dropped
    paths = [(e["path"], e["status"]) for e in fake.requests_log()]
    assert paths == [("/openai/deployments", 404), ("/openai/models", 200)]


def test_verify_with_a_bad_key_raises(fake, http):
    cfg = ProviderConfig(provider="azure_openai", base_url=fake.azure_base_url, api_key="bad-0000")
    with pytest.raises(UpstreamAuthError):
        get_adapter(cfg).verify(http=http, timeout=5)

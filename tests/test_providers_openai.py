"""The OpenAI-compatible adapter against the fake provider's /v1 endpoints."""

from __future__ import annotations

import itertools
import time

import pytest

from common.providers import (
    ChatRequest,
    ContentDelta,
    EndOfStream,
    Finish,
    OpenAIAdapter,
    ProviderConfig,
    Usage,
    get_adapter,
)
from tests.fake_provider.pytest_support import (
    close_while_collecting,
    collect,
    gevent_patched,
    open_stream,
    provider_fixtures,
)
from tests.fake_provider.scenario import PROMPT_OVERHEAD, reasoning_text

QUESTION = "What is the capital of France"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": QUESTION},
]
PROMPT_TOKENS = PROMPT_OVERHEAD + 3 + 6
IDLE = 0.5


fake, http, adapter = provider_fixtures(
    lambda fake: ProviderConfig(provider="openai", base_url=fake.openai_base_url, api_key="sk-test-9f3a")
)


def stream(adapter, http, model, *, idle=IDLE, first_byte=5.0, **kwargs):
    return open_stream(adapter, http, model, MESSAGES, idle=idle, first_byte=first_byte, **kwargs)


def test_get_adapter_returns_the_openai_adapter_bound_to_its_config(adapter):
    assert isinstance(adapter, OpenAIAdapter)
    assert adapter.config.api_key == "sk-test-9f3a"


def test_normal_stream_yields_content_then_finish_usage_end(adapter, http):
    got = collect(stream(adapter, http, "fake-chat"))
    assert got.error is None
    assert got.content == f"Echo: {QUESTION}"
    assert got.tail == [
        Finish("stop"),
        Usage(prompt_tokens=PROMPT_TOKENS, completion_tokens=7, total_tokens=PROMPT_TOKENS + 7),
        EndOfStream(),
    ]


def _deltas(events) -> list:
    return [e for e in events if isinstance(e, ContentDelta)]


def test_pieces_that_arrive_apart_come_as_separate_deltas(adapter, http):
    got = collect(stream(adapter, http, "fake-chat@chunks=4,delay=60"))
    assert len(_deltas(got.events)) == 4
    assert got.content == f"Echo: {QUESTION}"


def test_pieces_that_arrive_within_the_batch_interval_come_as_one_delta(adapter, http):
    # 10 pieces 10 ms apart: the first goes out alone, the other nine arrive within one 300 ms pause.
    model = "fake-chat@chunks=10,delay=10"
    got = collect(stream(adapter, http, model, batch_interval=0.3))
    assert len(_deltas(got.events)) <= 2
    assert got.content == collect(stream(adapter, http, model)).content and got.ended


def test_the_batch_interval_never_holds_back_the_first_words(adapter, http):
    s = stream(adapter, http, "fake-chat@chunks=3,delay=100", batch_interval=2.0)
    started = time.monotonic()
    first = next(e for e in s if isinstance(e, ContentDelta))
    waited = time.monotonic() - started
    s.close()
    assert first.text and waited < 1.0


def test_a_batched_stream_is_still_read_to_its_end_marker(adapter, http):
    model = "fake-chat@chunks=12,delay=15"
    got = collect(stream(adapter, http, model, batch_interval=0.05))
    assert got.error is None and got.content == collect(stream(adapter, http, model)).content
    assert got.tail[-1] == EndOfStream()


def test_request_asks_for_usage_and_sends_the_bearer_key(adapter, http, fake):
    collect(stream(adapter, http, "fake-chat@key=req", temperature=0.3, max_tokens=50, reasoning_effort="low"))
    entry = fake.last_request(model="fake-chat@key=req")
    assert entry["path"] == "/v1/chat/completions"
    assert entry["auth_present"] is True
    assert entry["auth_header"] == "authorization"
    assert entry["auth_key_last4"] == "9f3a"
    assert "authorization" not in entry["headers"]
    body = entry["body"]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == MESSAGES
    assert body["temperature"] == 0.3
    assert body["max_tokens"] == 50
    assert body["reasoning_effort"] == "low"


def test_extra_body_and_headers_cannot_replace_model_or_key(adapter, http, fake):
    collect(
        stream(
            adapter,
            http,
            "fake-chat@key=extra",
            extra_body={"model": "gpt-expensive", "top_p": 0.5, "stream": False},
            extra_headers={"Authorization": "Bearer stolen-0000", "X-Trace": "abc"},
        )
    )
    entry = fake.last_request(model="fake-chat@key=extra")
    assert entry["body"]["model"] == "fake-chat@key=extra"
    assert entry["body"]["stream"] is True
    assert entry["body"]["top_p"] == 0.5
    assert entry["auth_key_last4"] == "9f3a"
    assert entry["headers"]["x-trace"] == "abc"


def test_reasoning_content_becomes_reasoning_deltas_before_content(adapter, http):
    got = collect(stream(adapter, http, "fake-reasoning"))
    assert got.error is None
    assert got.reasoning == reasoning_text(QUESTION)
    assert got.content == f"Echo: {QUESTION}"
    assert got.kinds()[:2] == ["ReasoningDelta", "ContentDelta"]
    assert got.ended


def test_delta_reasoning_field_is_read_too(adapter, http):
    got = collect(stream(adapter, http, "fake-reasoning@reasoning_field=reasoning"))
    assert got.reasoning == reasoning_text(QUESTION)


def test_think_tags_split_across_chunks_become_reasoning(adapter, http):
    got = collect(stream(adapter, http, "fake-think"))
    assert got.error is None
    assert got.reasoning == reasoning_text(QUESTION)
    assert got.content == f"Echo: {QUESTION}"
    assert "<think>" not in got.content and "</think>" not in got.reasoning


def test_crlf_frames_parse(adapter, http):
    got = collect(stream(adapter, http, "fake-chat@crlf"))
    assert got.error is None
    assert got.content == f"Echo: {QUESTION}"
    assert got.ended


def test_finish_reason_without_done_still_ends_properly(adapter, http):
    got = collect(stream(adapter, http, "fake-chat@no_done"))
    assert got.error is None
    assert got.tail[0] == Finish("stop")
    assert got.tail[-1] == EndOfStream()


def test_stream_without_usage_chunk_still_ends(adapter, http):
    got = collect(stream(adapter, http, "fake-no-usage"))
    assert got.error is None
    assert got.tail == [Finish("stop"), EndOfStream()]


def test_cut_without_done_raises_truncated_and_keeps_partial_text(adapter, http):
    got = collect(stream(adapter, http, "fake-cut@after=2"))
    assert got.error is not None and got.error.code == "upstream_truncated"
    assert got.content == "Echo: What"
    assert not got.ended


def test_aborted_connection_raises_truncated(adapter, http):
    got = collect(stream(adapter, http, "fake-hard-cut@after=2"))
    assert got.error is not None and got.error.code == "upstream_truncated"


def test_malformed_frame_raises_malformed(adapter, http):
    got = collect(stream(adapter, http, "fake-malformed@after=1"))
    assert got.error is not None and got.error.code == "upstream_malformed"
    assert got.content == "Echo:"


def test_429_surfaces_status_and_retry_after(adapter, http):
    got = collect(stream(adapter, http, "fake-429@key=openai-429,retry_after=3"))
    assert got.error is not None
    assert got.error.code == "upstream_http"
    assert got.error.status == 429
    assert got.error.retry_after == 3.0
    assert "Rate limit" in got.error.message


def test_429_then_success_for_the_same_key(adapter, http):
    first = collect(stream(adapter, http, "fake-429@key=openai-429b"))
    second = collect(stream(adapter, http, "fake-429@key=openai-429b"))
    assert first.error is not None and first.error.status == 429
    assert second.error is None and second.ended


def test_500_surfaces_status(adapter, http):
    got = collect(stream(adapter, http, "fake-500"))
    assert got.error is not None
    assert got.error.code == "upstream_http"
    assert got.error.status == 500
    assert got.error.retry_after is None


def test_bad_key_raises_upstream_auth(fake, http):
    bad = get_adapter(ProviderConfig(provider="openai", base_url=fake.openai_base_url, api_key="bad-key"))
    got = collect(
        bad.stream_chat(
            ChatRequest(model="fake-chat", messages=MESSAGES), http=http, idle_timeout=IDLE, first_byte_timeout=5
        )
    )
    assert got.error is not None and got.error.code == "upstream_auth" and got.error.status == 401


def test_stall_raises_idle_within_the_idle_timeout(adapter, http):
    got = collect(stream(adapter, http, "fake-stall@after=2", idle=IDLE))
    assert got.error is not None and got.error.code == "upstream_idle"
    assert IDLE * 0.8 <= got.elapsed < IDLE + 1.5
    assert got.content == "Echo: What"


def test_slow_first_byte_raises_timeout(adapter, http):
    got = collect(stream(adapter, http, "fake-slow-first-byte@wait=3000", first_byte=0.5))
    assert got.error is not None and got.error.code == "upstream_timeout"
    assert got.elapsed < 2.5


def test_connection_refused_raises_connect_error(http):
    dead = get_adapter(ProviderConfig(provider="openai", base_url="http://127.0.0.1:9/v1", api_key="k"))
    got = collect(
        dead.stream_chat(ChatRequest(model="m", messages=MESSAGES), http=http, idle_timeout=IDLE, first_byte_timeout=2)
    )
    assert got.error is not None and got.error.code == "upstream_connect"


def test_closing_mid_stream_closes_the_upstream_connection(adapter, http, fake):
    model = "fake-chat@chunks=40,delay=50,key=close-mid"
    s = stream(adapter, http, model)
    first = [next(s) for _ in range(3)]
    assert all(type(e).__name__ == "ContentDelta" for e in first)
    s.close()
    assert list(s) == []
    assert s.closed and not s.ended
    entry = fake.wait_for_disconnect(model, timeout=1.0)
    assert entry is not None, "the fake provider did not see the client go away within 1 s"
    assert entry["completed"] is False
    assert 3 <= entry["disconnected_at_chunk"] < 40


def test_close_from_another_thread_wakes_a_reader_blocked_in_a_stall(adapter, http, fake):
    model = "fake-stall@after=1,key=close-blocked"
    s = stream(adapter, http, model, idle=30)
    reader, closed_at = close_while_collecting(s, after=0.3)
    assert reader.join(2.0), "the blocked reader did not return"
    assert reader.finished_at - closed_at < 0.5
    assert reader.result.error is None  # closing is not an error
    assert reader.result.content == "Echo:"
    assert fake.wait_for_disconnect(model, timeout=1.0) is not None


def test_close_before_the_headers_arrive_stops_the_reader(adapter, http, fake):
    model = "fake-slow-first-byte@wait=1500,key=close-early"
    s = stream(adapter, http, model, first_byte=30)
    reader, closed_at = close_while_collecting(s, after=0.2)
    assert reader.join(5.0)
    assert reader.result.events == [] and reader.result.error is None
    if gevent_patched():
        # Under gevent the request waiting for its headers is aborted at once.
        assert reader.finished_at - closed_at < 0.5
        assert fake.wait_for_disconnect(model, timeout=1.0) is not None


def test_the_session_stays_usable_after_a_cancelled_stream(adapter, http):
    s = stream(adapter, http, "fake-chat@chunks=20,delay=20,key=reuse")
    next(s)
    s.close()
    got = collect(stream(adapter, http, "fake-chat"))
    assert got.error is None and got.ended


def test_a_finished_stream_leaves_its_connection_for_reuse(adapter, http, fake):
    for _ in range(2):
        assert collect(stream(adapter, http, "fake-chat@key=reuse-pool")).ended
    clients = [e["client"] for e in fake.requests_log(model="fake-chat@key=reuse-pool")]
    assert len(clients) == 2 and clients[0] == clients[1]


def test_closing_a_stream_after_its_end_does_not_break_the_next_request_on_the_client(adapter, http, fake):
    first = stream(adapter, http, "fake-chat@key=late-close")
    events = list(itertools.takewhile(lambda e: not isinstance(e, EndOfStream), first))
    assert events  # `first` now waits just after its end marker, its body fully read
    second = stream(adapter, http, "fake-chat@chunks=6,delay=30,key=late-close-2")
    assert isinstance(next(second), ContentDelta)
    first.close()  # a late close (a cancel racing the end) must touch only its own connection
    got = collect(second)
    assert got.error is None and got.ended


def test_complete_chat_returns_the_whole_answer(adapter, http, fake):
    result = adapter.complete_chat(
        ChatRequest(model="fake-reasoning@key=nonstream", messages=MESSAGES), http=http, timeout=5
    )
    assert result.content == f"Echo: {QUESTION}"
    assert result.reasoning == reasoning_text(QUESTION)
    assert result.finish_reason == "stop"
    assert result.usage == Usage(
        PROMPT_TOKENS,
        7 + len(reasoning_text(QUESTION).split()),
        PROMPT_TOKENS + 7 + len(reasoning_text(QUESTION).split()),
    )
    assert fake.last_request(model="fake-reasoning@key=nonstream")["body"]["stream"] is False


def test_complete_chat_splits_think_tags(adapter, http):
    result = adapter.complete_chat(ChatRequest(model="fake-think", messages=MESSAGES), http=http, timeout=5)
    assert result.content == f"Echo: {QUESTION}"
    assert result.reasoning == reasoning_text(QUESTION)


def test_complete_chat_surfaces_http_errors(adapter, http):
    from common.providers import ProviderError

    with pytest.raises(ProviderError) as info:
        adapter.complete_chat(ChatRequest(model="fake-500", messages=MESSAGES), http=http, timeout=5)
    assert info.value.status == 500


def test_list_models_reads_ids_and_context_windows(adapter, http):
    models = {m.raw_id: m for m in adapter.list_models(http=http, timeout=5)}
    assert set(models) == {"fake-chat", "fake-reasoning", "fake-think", "fake-vision"}
    assert models["fake-chat"].context_window == 8192  # vLLM's max_model_len
    assert models["fake-reasoning"].context_window == 32768
    assert models["fake-think"].context_window is None


def test_verify_raises_on_a_bad_key(fake, http):
    from common.providers import UpstreamAuthError

    bad = get_adapter(ProviderConfig(provider="openai", base_url=fake.openai_base_url, api_key="invalid-1"))
    with pytest.raises(UpstreamAuthError):
        bad.verify(http=http, timeout=5)

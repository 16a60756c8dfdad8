"""Shared provider plumbing: <think> splitting, framing, Retry-After, errors, get_adapter."""

from __future__ import annotations

import email.utils
import time

import pytest

from common.providers import (
    AzureOpenAIAdapter,
    ContentDelta,
    GeminiAdapter,
    ProviderConfig,
    ProviderError,
    ReasoningDelta,
    UnknownProviderError,
    UpstreamHTTPError,
    get_adapter,
    is_retryable,
)
from common.providers.framing import LineSplitter, SSEParser
from common.providers.think import ThinkTagSplitter
from common.providers.transport import build_headers, parse_retry_after


def split(chunks):
    splitter = ThinkTagSplitter()
    events = []
    for chunk in chunks:
        events += splitter.feed(chunk)
    events += splitter.flush()
    content = "".join(e.text for e in events if isinstance(e, ContentDelta))
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    return content, reasoning


def test_think_block_becomes_reasoning():
    assert split(["<think>plan it</think>\n\nThe answer"]) == ("The answer", "plan it")


def test_think_tags_split_across_every_character():
    text = "  <think>step one</think>\n\nDone."
    assert split(list(text)) == ("Done.", "step one")


def test_text_without_tags_is_untouched():
    assert split(["Hello ", "world"]) == ("Hello world", "")


def test_think_tag_later_in_the_answer_stays_content():
    assert split(["Use the ", "<think> tag like this"]) == ("Use the <think> tag like this", "")


def test_unterminated_think_block_is_reasoning():
    assert split(["<think>still thinking"]) == ("", "still thinking")


def test_partial_tag_at_the_end_is_flushed_as_content():
    assert split(["<thi"]) == ("<thi", "")


def test_line_splitter_handles_lf_crlf_and_cr_across_chunks():
    splitter = LineSplitter()
    lines = []
    for chunk in [b"data: a\r", b"\n\r\ndata: b\n", b"\ndata: c\rdata: d\r\n", b"tail"]:
        lines += splitter.feed(chunk)
    assert lines == ["data: a", "", "data: b", "", "data: c", "data: d"]
    assert splitter.rest() == "tail"


def test_line_splitter_keeps_multibyte_characters_split_across_chunks():
    data = "data: café ☕\n".encode()
    splitter = LineSplitter()
    assert splitter.feed(data[:9]) == []
    assert splitter.feed(data[9:]) == ["data: café ☕"]


def test_sse_parser_joins_data_lines_and_skips_comments():
    parser = SSEParser()
    out = [parser.feed(line) for line in [": ping", "event: message", 'data: {"a":', "data: 1}", ""]]
    assert out == [None, None, None, None, '{"a":\n1}']
    assert parser.feed("") is None


def test_retry_after_in_seconds_ms_and_http_date():
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 27 <= parse_retry_after({"retry-after": date}) <= 30
    assert parse_retry_after({}) is None


def test_retry_after_from_google_retry_info():
    body = {
        "error": {"code": 429, "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s"}]}
    }
    assert parse_retry_after({}, body) == 12.0


def test_retryable_errors_follow_the_resilience_rules():
    assert is_retryable(UpstreamHTTPError("x", status=429))
    assert is_retryable(UpstreamHTTPError("x", status=503))
    assert not is_retryable(UpstreamHTTPError("x", status=400))
    assert is_retryable(ProviderError("x", code="upstream_connect"))
    assert is_retryable(ProviderError("x", code="upstream_timeout"))
    assert not is_retryable(ProviderError("x", code="upstream_truncated"))


def test_error_codes_of_the_subclasses():
    error = UpstreamHTTPError("boom", status=502, retry_after=2.0)
    assert (error.code, error.status, error.retry_after, str(error)) == ("upstream_http", 502, 2.0, "boom")


def test_auth_header_wins_over_connection_and_request_headers():
    headers = build_headers(
        {"X-Org": "acme", "Host": "evil.example"},
        {"authorization": "Bearer other", "X-Req": "1"},
        {"Authorization": "Bearer mine"},
    )
    assert headers["Authorization"] == "Bearer mine"
    assert "authorization" not in headers and "Host" not in headers
    assert headers["X-Org"] == "acme" and headers["X-Req"] == "1"


def test_config_repr_never_shows_the_key():
    cfg = ProviderConfig(provider="openai", base_url="https://api.example/v1", api_key="sk-very-secret")
    assert "sk-very-secret" not in repr(cfg)


def test_get_adapter_accepts_names_aliases_and_configs():
    assert isinstance(get_adapter("azure"), AzureOpenAIAdapter)
    assert isinstance(get_adapter("gemini"), GeminiAdapter)
    cfg = ProviderConfig(provider="google_genai", api_key="k")
    bound = get_adapter(cfg)
    assert isinstance(bound, GeminiAdapter) and bound.config is cfg


def test_get_adapter_rejects_unknown_providers():
    with pytest.raises(UnknownProviderError) as info:
        get_adapter("anthropic-ish")
    assert info.value.code == "unknown_provider"


def test_unbound_network_adapter_requires_a_config():
    with pytest.raises(ValueError):
        get_adapter("openai").list_models(http=None, timeout=1)

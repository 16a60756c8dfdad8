"""Building the prompt: system prompt, history fitted to the context window, token totals."""

import pytest

from common import tokenizer
from common.chat.prompt import build_prompt

HISTORY = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris, on the Seine, has been the capital for centuries."},
    {"role": "user", "content": "And of Italy?"},
    {"role": "assistant", "content": "Rome."},
]
CURRENT = {"role": "user", "content": "And of Spain?"}


@pytest.fixture(autouse=True)
def precise(tmp_path):
    tokenizer.configure("precise", str(tmp_path / "tiktoken"))
    yield
    tokenizer._reset_for_tests()


@pytest.mark.parametrize("system", ["", "Answer in one word."])
def test_prompt_tokens_are_the_count_of_the_messages_sent(system):
    prompt = build_prompt(history=HISTORY, current=CURRENT, system=system, model="gpt-4o",
                          context_window=8000, max_output_tokens=None)
    assert prompt.prompt_tokens == tokenizer.count_messages(prompt.messages, "gpt-4o")
    assert prompt.messages[-1] == CURRENT and len(prompt.messages) == len(HISTORY) + 1 + bool(system)


def test_the_oldest_messages_go_first_when_the_window_is_small():
    full = build_prompt(history=HISTORY, current=CURRENT, system="Be brief.", model="gpt-4o",
                        context_window=100_000, max_output_tokens=None)
    window = full.prompt_tokens - tokenizer.count_message(HISTORY[0], "gpt-4o") + 50  # 50 kept for the answer
    prompt = build_prompt(history=HISTORY, current=CURRENT, system="Be brief.", model="gpt-4o",
                          context_window=window, max_output_tokens=50)
    assert prompt.messages[1:] == [*HISTORY[1:], CURRENT]
    assert prompt.prompt_tokens == tokenizer.count_messages(prompt.messages, "gpt-4o")
    assert prompt.max_tokens == 50


def test_the_current_message_is_kept_even_when_it_alone_is_too_long():
    prompt = build_prompt(history=HISTORY, current=CURRENT, system="", model="gpt-4o",
                          context_window=10, max_output_tokens=None)
    assert prompt.messages == [CURRENT]
    assert prompt.prompt_tokens == tokenizer.count_messages([CURRENT], "gpt-4o")

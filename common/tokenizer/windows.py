"""Context windows and maximum output tokens of known models (by longest model-id prefix)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Matched by longest prefix of the lower-cased model id without its "provider/" prefix.
CONTEXT_WINDOWS: dict[str, int] = {
    # OpenAI
    "gpt-3.5-turbo": 16385,
    "gpt-3.5-turbo-instruct": 4096,
    "gpt-35-turbo": 16385,
    "gpt-4": 8192,
    "gpt-4-32k": 32768,
    "gpt-4-turbo": 128000,
    "gpt-4-1106": 128000,
    "gpt-4-0125": 128000,
    "gpt-4-vision": 128000,
    "gpt-4o": 128000,
    "gpt-4o-mini": 128000,
    "chatgpt-4o": 128000,
    "gpt-4.1": 1047576,
    "gpt-4.5": 128000,
    "gpt-5": 400000,
    "gpt-5-chat": 128000,
    "gpt-oss": 131072,
    "o1": 200000,
    "o1-mini": 128000,
    "o1-preview": 128000,
    "o3": 200000,
    "o3-mini": 200000,
    "o4-mini": 200000,
    # Anthropic
    "claude-": 200000,
    "claude-2": 100000,
    "claude-2.1": 200000,
    "claude-instant": 100000,
    "claude-3": 200000,
    "claude-sonnet-4": 200000,
    "claude-opus-4": 200000,
    "claude-haiku-4": 200000,
    # Google
    "gemini-pro": 32760,
    "gemini-1.0-pro": 32760,
    "gemini-1.5-pro": 2097152,
    "gemini-1.5-flash": 1048576,
    "gemini-2": 1048576,
    "gemini-2.0-flash": 1048576,
    "gemini-2.5": 1048576,
    "gemma2": 8192,
    "gemma-2": 8192,
    "gemma3": 131072,
    "gemma-3": 131072,
    # Meta
    "llama2": 4096,
    "llama-2": 4096,
    "llama3": 8192,
    "llama-3": 8192,
    "llama3.1": 131072,
    "llama-3.1": 131072,
    "llama3.2": 131072,
    "llama-3.2": 131072,
    "llama3.3": 131072,
    "llama-3.3": 131072,
    # Mistral
    "mistral": 32768,
    "mistral-large": 131072,
    "mistral-nemo": 131072,
    "mixtral": 32768,
    "codestral": 32768,
    # Qwen
    "qwen2": 32768,
    "qwen2.5": 32768,
    "qwen-2.5": 32768,
    "qwen3": 40960,
    # DeepSeek
    "deepseek-chat": 128000,
    "deepseek-reasoner": 128000,
    "deepseek-r1": 131072,
    "deepseek-v3": 131072,
    "deepseek-coder": 16384,
    # Others
    "phi3": 4096,
    "phi4": 16384,
    "command-r": 131072,
}

# Maximum completion tokens, where well known. Same matching as CONTEXT_WINDOWS.
MAX_OUTPUT_TOKENS: dict[str, int] = {
    "gpt-3.5-turbo": 4096,
    "gpt-4": 8192,
    "gpt-4-turbo": 4096,
    "gpt-4-1106": 4096,
    "gpt-4-0125": 4096,
    "gpt-4o": 16384,
    "gpt-4o-2024-05-13": 4096,
    "gpt-4o-mini": 16384,
    "chatgpt-4o": 16384,
    "gpt-4.1": 32768,
    "gpt-4.5": 16384,
    "gpt-5": 128000,
    "gpt-5-chat": 16384,
    "o1": 100000,
    "o1-mini": 65536,
    "o1-preview": 32768,
    "o3": 100000,
    "o3-mini": 100000,
    "o4-mini": 100000,
    "claude-3": 4096,
    "claude-3-5": 8192,
    "claude-3-7": 64000,
    "claude-sonnet-4": 64000,
    "claude-opus-4": 32000,
    "claude-haiku-4": 64000,
    "gemini-1.5": 8192,
    "gemini-2.0": 8192,
    "gemini-2.5": 65536,
    "deepseek-chat": 8192,
    "deepseek-reasoner": 65536,
}


def _lookup_prefix(table: Mapping[str, int], model_raw_id: str) -> int | None:
    name = (model_raw_id or "").strip().lower()
    if "/" in name:
        name = name.rsplit("/", 1)[-1]
    if not name:
        return None
    best: str | None = None
    for prefix in table:
        if name.startswith(prefix) and (best is None or len(prefix) > len(best)):
            best = prefix
    return table[best] if best is not None else None


def _positive(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def context_window_for(
    model_raw_id: str,
    override: int | None = None,
    catalog_value: int | None = None,
    default: int = 4000,
) -> int:
    """Return the context window (tokens) for a model.

    Precedence: ``override`` (the model's admin setting), then ``catalog_value`` (e.g. Ollama
    ``num_ctx``), then :data:`CONTEXT_WINDOWS` matched by longest prefix (case-insensitive, ignoring a
    ``provider/`` prefix, so "openai/GPT-4o-2024-08-06" and "llama3.1:8b" match), then ``default``.
    Values that are missing, zero or negative are skipped.
    """
    for value in (override, catalog_value, _lookup_prefix(CONTEXT_WINDOWS, model_raw_id)):
        number = _positive(value)
        if number is not None:
            return number
    return default


def max_output_tokens_for(model_raw_id: str, override: int | None = None) -> int | None:
    """Return the model's maximum completion tokens: ``override``, else :data:`MAX_OUTPUT_TOKENS`
    (longest prefix, like :func:`context_window_for`), else ``None`` when unknown."""
    number = _positive(override)
    if number is not None:
        return number
    return _lookup_prefix(MAX_OUTPUT_TOKENS, model_raw_id)

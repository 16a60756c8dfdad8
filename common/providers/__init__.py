"""Model providers: one adapter per upstream type behind one small interface (see ``base``).

Usage::

    from common.providers import ChatRequest, ProviderConfig, get_adapter

    cfg = ProviderConfig(provider="openai", base_url="https://api.openai.com/v1", api_key="sk-...")
    adapter = get_adapter(cfg)
    stream = adapter.stream_chat(req, http=session, idle_timeout=60, first_byte_timeout=300)
    try:
        for event in stream:  # ContentDelta, ReasoningDelta, Finish, Usage, EndOfStream
            ...
    finally:
        stream.close()  # also from another greenlet, to cancel
"""

from __future__ import annotations

from .base import (
    ChatRequest,
    CompletionResult,
    ContentDelta,
    EndOfStream,
    Finish,
    HTTPClient,
    ModelInfo,
    ProviderAdapter,
    ProviderConfig,
    ProviderStream,
    ReasoningDelta,
    StreamEvent,
    Usage,
)
from .demo import DemoAdapter
from .errors import (
    ProviderError,
    UnknownProviderError,
    UpstreamAuthError,
    UpstreamConnectError,
    UpstreamHTTPError,
    UpstreamIdleError,
    UpstreamMalformedError,
    UpstreamStreamError,
    UpstreamTimeoutError,
    UpstreamTruncatedError,
    is_retryable,
)
from .gemini import GeminiAdapter
from .ollama import OllamaAdapter
from .openai import AzureOpenAIAdapter, OpenAIAdapter

ADAPTERS: dict[str, type[ProviderAdapter]] = {
    "openai": OpenAIAdapter,
    "azure_openai": AzureOpenAIAdapter,
    "ollama": OllamaAdapter,
    "google_genai": GeminiAdapter,
    "demo": DemoAdapter,
}
PROVIDERS = tuple(ADAPTERS)
_ALIASES = {"azure": "azure_openai", "gemini": "google_genai", "google": "google_genai"}


def adapter_class(provider: str) -> type[ProviderAdapter]:
    """The adapter class for a provider name (raises :class:`UnknownProviderError`)."""
    name = (provider or "").strip().lower()
    name = _ALIASES.get(name, name)
    try:
        return ADAPTERS[name]
    except KeyError:
        raise UnknownProviderError(f"unknown provider type {provider!r}") from None


def get_adapter(provider: str | ProviderConfig, config: ProviderConfig | None = None) -> ProviderAdapter:
    """An adapter for a provider.

    ``get_adapter(config)`` returns an adapter bound to that connection+key; ``get_adapter("openai")``
    returns an unbound one (pass ``config=`` to each call, except for ``demo`` which works without);
    ``get_adapter("openai", config)`` binds too.
    """
    if isinstance(provider, ProviderConfig):
        return adapter_class(provider.provider)(provider)
    return adapter_class(provider)(config)


__all__ = [
    "ADAPTERS",
    "PROVIDERS",
    "AzureOpenAIAdapter",
    "ChatRequest",
    "CompletionResult",
    "ContentDelta",
    "DemoAdapter",
    "EndOfStream",
    "Finish",
    "GeminiAdapter",
    "HTTPClient",
    "ModelInfo",
    "OllamaAdapter",
    "OpenAIAdapter",
    "ProviderAdapter",
    "ProviderConfig",
    "ProviderError",
    "ProviderStream",
    "ReasoningDelta",
    "StreamEvent",
    "UnknownProviderError",
    "UpstreamAuthError",
    "UpstreamConnectError",
    "UpstreamHTTPError",
    "UpstreamIdleError",
    "UpstreamMalformedError",
    "UpstreamStreamError",
    "UpstreamTimeoutError",
    "UpstreamTruncatedError",
    "Usage",
    "adapter_class",
    "get_adapter",
    "is_retryable",
]

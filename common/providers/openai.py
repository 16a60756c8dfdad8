"""OpenAI-compatible chat completions (OpenAI, vLLM, llama.cpp, LM Studio, DeepSeek, ...) and Azure OpenAI.

Streaming: ``POST {base_url}/chat/completions`` with ``stream: true`` and
``stream_options: {include_usage: true}``; SSE frames (LF or CRLF) ending with ``data: [DONE]``. A
``finish_reason`` also counts as the end marker when the server closes without ``[DONE]``.
Reasoning comes from ``delta.reasoning_content`` / ``delta.reasoning`` or from a leading
``<think>...</think>`` block in the content.

Azure: ``{base_url}/openai/deployments/{deployment}/chat/completions?api-version=...`` with the key in
the ``api-key`` header; the model id is the deployment name.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlencode

from .base import (
    ChatRequest,
    CompletionResult,
    ContentDelta,
    Finish,
    HTTPClient,
    ModelInfo,
    ProviderConfig,
    ReasoningDelta,
    StreamEvent,
    Usage,
)
from .errors import UpstreamHTTPError, UpstreamMalformedError
from .http_adapter import HTTPAdapter, SSEJSONDecoder
from .think import ThinkTagSplitter
from .transport import (
    int_or_none,
    join_url,
    make_usage,
    merge_body,
    raise_stream_error,
)

DEFAULT_AZURE_API_VERSION = "2024-10-21"
# Azure's deployments listing only exists in older data-plane API versions.
AZURE_DEPLOYMENTS_API_VERSION = "2022-12-01"
PROTECTED_BODY_KEYS = {"model", "messages", "stream", "stream_options"}
# OpenAI reasoning models refuse `temperature` and `max_tokens` (they want `max_completion_tokens`).
_OPENAI_REASONING_MODEL = re.compile(r"^(o\d+|gpt-5)\b", re.IGNORECASE)


def usage_from_openai(usage: Any) -> Usage | None:
    """OpenAI's ``usage`` object as :class:`Usage`."""
    if not isinstance(usage, dict):
        return None
    return make_usage(usage.get("prompt_tokens"), usage.get("completion_tokens"), usage.get("total_tokens"))


def _reasoning_of(obj: dict[str, Any]) -> str:
    for key in ("reasoning_content", "reasoning"):
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


class OpenAIStreamDecoder(SSEJSONDecoder):
    """Decodes OpenAI chat-completion SSE chunks into events."""

    def __init__(self, label: str) -> None:
        super().__init__(label)
        self._think = ThinkTagSplitter()

    def flush_partial(self) -> list[StreamEvent]:
        """Text held back by the ``<think>`` splitter."""
        return list(self._think.flush())

    def _handle_data(self, data: str) -> list[StreamEvent]:
        if data.strip() == "[DONE]":
            self.done = True
            return self.flush_partial()
        return super()._handle_data(data)

    def handle(self, obj: Any) -> list[StreamEvent]:
        """Handle one ``chat.completion.chunk``."""
        if not isinstance(obj, dict):
            raise UpstreamMalformedError(f"{self.label}: stream frame is not an object: {str(obj)[:120]!r}")
        raise_stream_error(obj, self.label)
        usage = usage_from_openai(obj.get("usage"))
        if usage is not None:
            self.usage = usage
        choices = obj.get("choices")
        if choices is None:
            return []
        if not isinstance(choices, list):
            raise UpstreamMalformedError(f"{self.label}: 'choices' is not a list")
        events: list[StreamEvent] = []
        for choice in choices:
            if not isinstance(choice, dict):
                raise UpstreamMalformedError(f"{self.label}: a choice is not an object")
            if choice.get("index", 0) not in (0, None):
                continue
            delta = choice.get("delta")
            if delta is None:
                delta = choice.get("message") or {}
            if not isinstance(delta, dict):
                raise UpstreamMalformedError(f"{self.label}: 'delta' is not an object")
            reasoning = _reasoning_of(delta)
            if reasoning:
                events.append(ReasoningDelta(reasoning))
            content = delta.get("content")
            if isinstance(content, str) and content:
                events += self._think.feed(content)
            reason = choice.get("finish_reason")
            if reason and not self.finished:
                events += self._think.flush()
                events.append(Finish(str(reason)))
                self.finished = True
        return events


def completion_from_openai(body: Any, label: str) -> CompletionResult:
    """Parse a non-streaming ``chat.completion`` body."""
    if not isinstance(body, dict):
        raise UpstreamMalformedError(f"{label}: the answer is not a JSON object")
    raise_stream_error(body, label)
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamMalformedError(f"{label}: the answer has no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise UpstreamMalformedError(f"{label}: the answer has no message")
    reasoning = _reasoning_of(message)
    content = message.get("content") if isinstance(message.get("content"), str) else ""
    splitter = ThinkTagSplitter()
    events = splitter.feed(content) + splitter.flush()
    think = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    content = "".join(e.text for e in events if isinstance(e, ContentDelta))
    reason = choice.get("finish_reason")
    return CompletionResult(
        content=content,
        reasoning=reasoning + think,
        finish_reason=str(reason) if reason else None,
        usage=usage_from_openai(body.get("usage")),
    )


def _model_info_from_openai(item: dict[str, Any]) -> ModelInfo | None:
    raw_id = item.get("id")
    if not isinstance(raw_id, str) or not raw_id:
        return None
    context = None
    for key in ("context_window", "context_length", "max_model_len", "max_context_length"):
        context = int_or_none(item.get(key))
        if context:
            break
    if not context and isinstance(item.get("meta"), dict):  # llama.cpp server
        context = int_or_none(item["meta"].get("n_ctx_train"))
    max_out = int_or_none(item.get("max_output_tokens")) or int_or_none(item.get("max_completion_tokens"))
    top = item.get("top_provider")
    if not max_out and isinstance(top, dict):  # OpenRouter
        max_out = int_or_none(top.get("max_completion_tokens"))
    capabilities: dict[str, Any] = {}
    arch = item.get("architecture")
    if isinstance(arch, dict) and isinstance(arch.get("input_modalities"), list):
        capabilities["vision"] = "image" in arch["input_modalities"]
    name = item.get("name") if isinstance(item.get("name"), str) and item.get("name") else raw_id
    return ModelInfo(
        raw_id=raw_id,
        name=name,
        context_window=context or None,
        max_output_tokens=max_out or None,
        capabilities=capabilities,
    )


class OpenAIAdapter(HTTPAdapter):
    """OpenAI-compatible ``/chat/completions`` servers."""

    provider = "openai"
    label = "OpenAI-compatible provider"

    # -- request building --------------------------------------------------------------------------

    def _chat_url(self, cfg: ProviderConfig, req: ChatRequest, *, stream: bool) -> str:
        return join_url(cfg.base_url, "chat/completions")

    def _body(self, req: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": req.model, "messages": req.messages, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        reasoning_model = bool(_OPENAI_REASONING_MODEL.match(req.model or ""))
        if req.temperature is not None and not reasoning_model:
            body["temperature"] = req.temperature
        if req.max_tokens is not None:
            body["max_completion_tokens" if reasoning_model else "max_tokens"] = req.max_tokens
        if req.reasoning_effort:
            body["reasoning_effort"] = req.reasoning_effort
        return merge_body(body, req.extra_body, PROTECTED_BODY_KEYS)

    # -- answers ---------------------------------------------------------------------------------

    def _stream_decoder(self) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder(self.label)

    def _completion(self, body: Any) -> CompletionResult:
        return completion_from_openai(body, self.label)

    def _list_models(self, http: HTTPClient, cfg: ProviderConfig, timeout: float) -> list[ModelInfo]:
        """``GET {base_url}/models``."""
        body = self._request_json(http, cfg, "GET", join_url(cfg.base_url, "models"), timeout=timeout)
        return self._parse_models(body)

    def _parse_models(self, body: Any) -> list[ModelInfo]:
        items = body.get("data") if isinstance(body, dict) else body
        if isinstance(body, dict) and items is None:
            items = body.get("models")
        if not isinstance(items, list):
            raise UpstreamMalformedError(f"{self.label}: the model list is not a list")
        models = [m for m in (_model_info_from_openai(i) for i in items if isinstance(i, dict)) if m]
        return sorted(models, key=lambda m: m.raw_id)


class AzureOpenAIAdapter(OpenAIAdapter):
    """Azure OpenAI: deployments addressed by name, key in the ``api-key`` header."""

    provider = "azure_openai"
    label = "Azure OpenAI"
    auth_header = "api-key"
    auth_prefix = ""

    @staticmethod
    def _base(cfg: ProviderConfig) -> str:
        base = cfg.base_url.rstrip("/")
        if base.endswith("/openai"):
            base = base[: -len("/openai")]
        return base

    @staticmethod
    def _api_version(cfg: ProviderConfig) -> str:
        return cfg.azure_api_version or DEFAULT_AZURE_API_VERSION

    def _chat_url(self, cfg: ProviderConfig, req: ChatRequest, *, stream: bool) -> str:
        deployment = quote(req.model, safe="")
        query = urlencode({"api-version": self._api_version(cfg)})
        return f"{self._base(cfg)}/openai/deployments/{deployment}/chat/completions?{query}"

    def _body(self, req: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body = super()._body(req, stream=stream)
        body.pop("model", None)  # the deployment in the URL selects the model
        return body

    def _list_models(self, http: HTTPClient, cfg: ProviderConfig, timeout: float) -> list[ModelInfo]:
        """The resource's deployments (the names chat requests use); when the deployments listing is
        not served (404, newer resources), the models of ``/openai/models`` that can chat."""
        base = self._base(cfg)
        try:
            body = self._request_json(
                http,
                cfg,
                "GET",
                f"{base}/openai/deployments",
                timeout=timeout,
                params={"api-version": AZURE_DEPLOYMENTS_API_VERSION},
            )
        except UpstreamHTTPError as exc:
            if exc.status not in (400, 404):
                raise
        else:
            items = body.get("data") if isinstance(body, dict) else None
            if isinstance(items, list):
                models = []
                for item in items:
                    if isinstance(item, dict) and isinstance(item.get("id"), str):
                        label = item.get("model") if isinstance(item.get("model"), str) else item["id"]
                        models.append(ModelInfo(raw_id=item["id"], name=label))
                return sorted(models, key=lambda m: m.raw_id)
        body = self._request_json(
            http, cfg, "GET", f"{base}/openai/models", timeout=timeout, params={"api-version": self._api_version(cfg)}
        )
        items = body.get("data") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise UpstreamMalformedError(f"{self.label}: the model list is not a list")
        models = []
        for item in items:
            if not isinstance(item, dict):
                continue
            caps = item.get("capabilities")
            if isinstance(caps, dict) and caps.get("chat_completion") is False:
                continue
            info = _model_info_from_openai(item)
            if info is not None:
                models.append(info)
        return sorted(models, key=lambda m: m.raw_id)

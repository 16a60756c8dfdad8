"""Google Gemini (Generative Language API).

Streaming: ``POST {base_url}/models/{model}:streamGenerateContent?alt=sse`` with the key in the
``x-goog-api-key`` header; SSE frames (Google sends CRLF) each holding a ``GenerateContentResponse``.
Text is in ``candidates[0].content.parts[].text``; parts with ``thought: true`` are reasoning. The
end marker is a candidate's ``finishReason``; ``usageMetadata`` carries the token counts (the last one
wins). System prompts go in ``systemInstruction``; roles are ``user`` and ``model``.
Non-streaming: ``:generateContent``. Catalog: ``GET {base_url}/models`` (paginated by ``nextPageToken``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

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
from .errors import UpstreamMalformedError
from .http_adapter import HTTPAdapter, SSEJSONDecoder, merge_body_section
from .transport import (
    data_url_parts,
    int_or_none,
    join_url,
    make_usage,
    message_text_and_images,
    raise_stream_error,
    split_reasoning_events,
)

LABEL = "Google Gemini"
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"
PROTECTED_BODY_KEYS = {"model", "stream"}
MAX_MODEL_PAGES = 50
_FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
_THINKING_BUDGETS = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576}


def normalize_finish_reason(reason: str) -> str:
    """Gemini's ``finishReason`` in OpenAI's vocabulary (``stop``, ``length``, ``content_filter``, ...)."""
    return _FINISH_REASONS.get(reason, reason.lower())


def gemini_contents(messages: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    """OpenAI-style messages to ``(system instruction text, contents)``; consecutive turns of the same
    role are merged (Gemini wants alternating turns), images become ``inlineData`` parts."""
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    for message in messages:
        text, image_urls = message_text_and_images(message.get("content"))
        role = message.get("role")
        if role == "system":
            if text:
                system.append(text)
            continue
        parts: list[dict[str, Any]] = []
        if text:
            parts.append({"text": text})
        for url in image_urls:
            data = data_url_parts(url)
            if data:
                parts.append({"inlineData": {"mimeType": data[0], "data": data[1]}})
        if not parts:
            continue
        gemini_role = "model" if role == "assistant" else "user"
        if contents and contents[-1]["role"] == gemini_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": gemini_role, "parts": parts})
    return ("\n\n".join(system) or None), contents


def usage_from_gemini(meta: Any) -> Usage | None:
    """``usageMetadata`` as :class:`Usage`; thinking tokens count as completion tokens."""
    if not isinstance(meta, dict):
        return None
    candidates = int_or_none(meta.get("candidatesTokenCount"))
    thoughts = int_or_none(meta.get("thoughtsTokenCount"))
    completion = None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0)
    return make_usage(meta.get("promptTokenCount"), completion, meta.get("totalTokenCount"))


class GeminiStreamDecoder(SSEJSONDecoder):
    """Decodes ``streamGenerateContent?alt=sse`` frames (``done`` stays false: Gemini has no marker after
    ``finishReason``, the body simply ends)."""

    def __init__(self) -> None:
        super().__init__(LABEL)

    def handle(self, obj: Any) -> list[StreamEvent]:
        """Handle one ``GenerateContentResponse``."""
        if not isinstance(obj, dict):
            raise UpstreamMalformedError(f"{LABEL}: stream frame is not an object")
        raise_stream_error(obj, LABEL)
        usage = usage_from_gemini(obj.get("usageMetadata"))
        if usage is not None:
            self.usage = usage
        candidates = obj.get("candidates")
        events: list[StreamEvent] = []
        if candidates is None:
            feedback = obj.get("promptFeedback")
            if isinstance(feedback, dict) and feedback.get("blockReason") and not self.finished:
                events.append(Finish("content_filter"))
                self.finished = True
            return events
        if not isinstance(candidates, list):
            raise UpstreamMalformedError(f"{LABEL}: 'candidates' is not a list")
        if not candidates:
            return events
        candidate = candidates[0]
        if not isinstance(candidate, dict):
            raise UpstreamMalformedError(f"{LABEL}: a candidate is not an object")
        content = candidate.get("content") or {}
        if not isinstance(content, dict):
            raise UpstreamMalformedError(f"{LABEL}: 'content' is not an object")
        parts = content.get("parts") or []
        if not isinstance(parts, list):
            raise UpstreamMalformedError(f"{LABEL}: 'content.parts' is not a list")
        for part in parts:
            if not isinstance(part, dict):
                continue
            text = part.get("text")
            if isinstance(text, str) and text:
                events.append(ReasoningDelta(text) if part.get("thought") is True else ContentDelta(text))
        reason = candidate.get("finishReason")
        if reason and reason != "FINISH_REASON_UNSPECIFIED" and not self.finished:
            events.append(Finish(normalize_finish_reason(str(reason))))
            self.finished = True
        return events


class GeminiAdapter(HTTPAdapter):
    """Google Gemini ``generateContent`` / ``streamGenerateContent``."""

    provider = "google_genai"
    label = LABEL
    auth_header = "x-goog-api-key"
    auth_prefix = ""

    @staticmethod
    def _base(cfg: ProviderConfig) -> str:
        return (cfg.base_url or DEFAULT_BASE_URL).rstrip("/")

    def _model_url(self, cfg: ProviderConfig, model: str, method: str) -> str:
        path = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
        return join_url(self._base(cfg), quote(path, safe="/") + ":" + method)

    def _chat_url(self, cfg: ProviderConfig, req: ChatRequest, *, stream: bool) -> str:
        if stream:
            return self._model_url(cfg, req.model, "streamGenerateContent") + "?alt=sse"
        return self._model_url(cfg, req.model, "generateContent")

    def _body(self, req: ChatRequest, *, stream: bool) -> dict[str, Any]:
        system, contents = gemini_contents(req.messages)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        generation: dict[str, Any] = {}
        if req.temperature is not None:
            generation["temperature"] = req.temperature
        if req.max_tokens is not None:
            generation["maxOutputTokens"] = req.max_tokens
        effort = (req.reasoning_effort or "").lower()
        if effort in ("none", "off", "disabled"):
            generation["thinkingConfig"] = {"thinkingBudget": 0}
        elif effort:
            generation["thinkingConfig"] = {
                "includeThoughts": True,
                "thinkingBudget": _THINKING_BUDGETS.get(effort, -1),
            }
        return merge_body_section(
            body, req.extra_body, PROTECTED_BODY_KEYS, section="generationConfig", values=generation
        )

    def _stream_decoder(self) -> GeminiStreamDecoder:
        return GeminiStreamDecoder()

    def _completion(self, body: Any) -> CompletionResult:
        decoder = GeminiStreamDecoder()
        events = decoder.handle(body)
        content, reasoning = split_reasoning_events(events)
        finish = next((e.reason for e in events if isinstance(e, Finish)), None)
        return CompletionResult(content=content, reasoning=reasoning, finish_reason=finish, usage=decoder.usage)

    def _list_models(self, http: HTTPClient, cfg: ProviderConfig, timeout: float) -> list[ModelInfo]:
        """All pages of ``GET /models``, keeping models that can ``generateContent``."""
        url = join_url(self._base(cfg), "models")
        models: list[ModelInfo] = []
        token = ""
        for _ in range(MAX_MODEL_PAGES):
            params = {"pageSize": "1000"}
            if token:
                params["pageToken"] = token
            body = self._request_json(http, cfg, "GET", url, timeout=timeout, params=params)
            if not isinstance(body, dict):
                raise UpstreamMalformedError(f"{LABEL}: the model list is not an object")
            items = body.get("models") or []
            if not isinstance(items, list):
                raise UpstreamMalformedError(f"{LABEL}: the model list is not a list")
            models.extend(m for m in (_model_info_from_gemini(i) for i in items) if m)
            token = body.get("nextPageToken") or ""
            if not isinstance(token, str) or not token:
                break
        return sorted(models, key=lambda m: m.raw_id)


def _model_info_from_gemini(item: Any) -> ModelInfo | None:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return None
    methods = item.get("supportedGenerationMethods")
    if isinstance(methods, list) and "generateContent" not in methods:
        return None  # embedding, AQA, ... models cannot chat
    raw_id = item["name"].removeprefix("models/")
    name = item.get("displayName") if isinstance(item.get("displayName"), str) else raw_id
    capabilities: dict[str, Any] = {}
    if item.get("thinking") is True:
        capabilities["reasoning"] = True
    return ModelInfo(
        raw_id=raw_id,
        name=name or raw_id,
        context_window=int_or_none(item.get("inputTokenLimit")),
        max_output_tokens=int_or_none(item.get("outputTokenLimit")),
        capabilities=capabilities,
    )

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
    ProviderAdapter,
    ProviderConfig,
    ProviderStream,
    ReasoningDelta,
    StreamEvent,
    UpstreamMalformedError,
    UpstreamTruncatedError,
    Usage,
)
from .transport import (
    HTTPEventStream,
    SSEParser,
    build_headers,
    data_url_parts,
    int_or_none,
    join_url,
    make_usage,
    merge_body,
    message_text_and_images,
    parse_json_payloads,
    raise_stream_error,
    request_json,
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


class GeminiStreamDecoder:
    """Decodes ``streamGenerateContent?alt=sse`` frames."""

    def __init__(self) -> None:
        self.finished = False
        self.done = False  # Gemini has no marker after finishReason: the body simply ends
        self.usage: Usage | None = None
        self._sse = SSEParser()

    def feed_line(self, line: str) -> list[StreamEvent]:
        """Feed one SSE line."""
        data = self._sse.feed(line)
        if data is None:
            return []
        events: list[StreamEvent] = []
        for obj in parse_json_payloads(data, LABEL):
            events += self.handle(obj)
        return events

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

    def eof(self, rest: str) -> list[StreamEvent]:
        """The body ended: handle an unterminated last frame."""
        events: list[StreamEvent] = []
        if rest:
            events += self.feed_line(rest)
        data = self._sse.flush()
        if data is not None:
            try:
                for obj in parse_json_payloads(data, LABEL):
                    events += self.handle(obj)
            except UpstreamMalformedError:
                if not self.finished:
                    raise UpstreamTruncatedError(f"{LABEL}: the stream ended inside a frame") from None
        return events

    def flush_partial(self) -> list[StreamEvent]:
        """Nothing is held back."""
        return []


class GeminiAdapter(ProviderAdapter):
    """Google Gemini ``generateContent`` / ``streamGenerateContent``."""

    provider = "google_genai"

    @staticmethod
    def _base(cfg: ProviderConfig) -> str:
        return (cfg.base_url or DEFAULT_BASE_URL).rstrip("/")

    @staticmethod
    def _headers(cfg: ProviderConfig, req: ChatRequest | None, *, accept: str) -> dict[str, str]:
        auth = {} if cfg.auth_type == "none" or not cfg.api_key else {"x-goog-api-key": cfg.api_key}
        return build_headers(cfg.headers, req.extra_headers if req else None, auth, accept=accept)

    def _model_url(self, cfg: ProviderConfig, model: str, method: str) -> str:
        path = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
        return join_url(self._base(cfg), quote(path, safe="/") + ":" + method)

    @staticmethod
    def _body(req: ChatRequest) -> dict[str, Any]:
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
        extra = dict(req.extra_body or {})
        if isinstance(extra.get("generationConfig"), dict):
            generation.update(extra.pop("generationConfig"))
        if generation:
            body["generationConfig"] = generation
        return merge_body(body, extra, PROTECTED_BODY_KEYS)

    def stream_chat(
        self,
        req: ChatRequest,
        *,
        http: HTTPClient | None,
        idle_timeout: float,
        first_byte_timeout: float,
        config: ProviderConfig | None = None,
    ) -> ProviderStream:
        """Stream ``:streamGenerateContent?alt=sse`` as normalized events."""
        cfg = self._config(config)
        if http is None:
            raise ValueError("an HTTP client is required")
        return HTTPEventStream(
            http=http,
            method="POST",
            url=self._model_url(cfg, req.model, "streamGenerateContent") + "?alt=sse",
            headers=self._headers(cfg, req, accept="text/event-stream"),
            json_body=self._body(req),
            decoder_factory=lambda _resp: GeminiStreamDecoder(),
            idle_timeout=idle_timeout,
            first_byte_timeout=first_byte_timeout,
            label=LABEL,
        )

    def complete_chat(
        self,
        req: ChatRequest,
        *,
        http: HTTPClient | None,
        timeout: float,
        config: ProviderConfig | None = None,
    ) -> CompletionResult:
        """``:generateContent``."""
        cfg = self._config(config)
        if http is None:
            raise ValueError("an HTTP client is required")
        body = request_json(
            http,
            "POST",
            self._model_url(cfg, req.model, "generateContent"),
            label=LABEL,
            timeout=timeout,
            headers=self._headers(cfg, req, accept="application/json"),
            json_body=self._body(req),
        )
        decoder = GeminiStreamDecoder()
        events = decoder.handle(body)
        content, reasoning = split_reasoning_events(events)
        finish = next((e.reason for e in events if isinstance(e, Finish)), None)
        return CompletionResult(content=content, reasoning=reasoning, finish_reason=finish, usage=decoder.usage)

    def list_models(
        self,
        *,
        http: HTTPClient | None,
        timeout: float,
        config: ProviderConfig | None = None,
    ) -> list[ModelInfo]:
        """All pages of ``GET /models``, keeping models that can ``generateContent``."""
        cfg = self._config(config)
        if http is None:
            raise ValueError("an HTTP client is required")
        headers = self._headers(cfg, None, accept="application/json")
        models: list[ModelInfo] = []
        token = ""
        for _ in range(MAX_MODEL_PAGES):
            params = {"pageSize": "1000"}
            if token:
                params["pageToken"] = token
            body = request_json(
                http,
                "GET",
                join_url(self._base(cfg), "models"),
                label=LABEL,
                timeout=timeout,
                headers=headers,
                params=params,
            )
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

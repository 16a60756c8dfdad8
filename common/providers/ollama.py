"""Ollama's native chat API.

``POST {base_url}/api/chat`` streams NDJSON: ``{"message": {"content", "thinking"?}, "done": false}`` lines,
then ``{"done": true, "done_reason", "prompt_eval_count", "eval_count"}`` (the end marker). Images go in
``message.images`` as bare base64; ``think`` switches reasoning models' thinking on or off; sampling
options go in ``options`` (``temperature``, ``num_predict``). The catalog is ``GET /api/tags`` plus one
``POST /api/show`` per model for its context window (``num_ctx`` from the model's parameters when set,
since that is what Ollama really uses, else ``model_info["<arch>.context_length"]``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from .base import (
    ChatRequest,
    CompletionResult,
    Finish,
    HTTPClient,
    ModelInfo,
    ProviderConfig,
    ReasoningDelta,
    StreamEvent,
    Usage,
)
from .errors import ProviderError, UpstreamMalformedError, UpstreamTruncatedError
from .http_adapter import HTTPAdapter, merge_body_section
from .think import ThinkTagSplitter
from .transport import (
    data_url_parts,
    int_or_none,
    join_url,
    make_usage,
    message_text_and_images,
    raise_stream_error,
    split_reasoning_events,
)

log = logging.getLogger(__name__)
PROTECTED_BODY_KEYS = {"model", "messages", "stream"}
LABEL = "Ollama"


def ollama_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI-style messages to Ollama's: text content plus ``images`` (bare base64)."""
    out: list[dict[str, Any]] = []
    for message in messages:
        text, image_urls = message_text_and_images(message.get("content"))
        item: dict[str, Any] = {"role": message.get("role", "user"), "content": text}
        images = [parts[1] for parts in (data_url_parts(url) for url in image_urls) if parts]
        if images:
            item["images"] = images
        out.append(item)
    return out


def _usage_of(obj: dict[str, Any]) -> Usage | None:
    return make_usage(obj.get("prompt_eval_count"), obj.get("eval_count"))


class OllamaStreamDecoder:
    """Decodes Ollama's NDJSON chat stream."""

    def __init__(self) -> None:
        self.finished = False
        self.done = False
        self.usage: Usage | None = None
        self._think = ThinkTagSplitter()

    def feed_line(self, line: str) -> list[StreamEvent]:
        """Feed one NDJSON line."""
        if not line.strip():
            return []
        try:
            obj = json.loads(line)
        except ValueError:
            raise UpstreamMalformedError(f"{LABEL}: malformed stream line: {line[:120]!r}") from None
        if not isinstance(obj, dict):
            raise UpstreamMalformedError(f"{LABEL}: stream line is not an object: {line[:120]!r}")
        return self.handle(obj)

    def handle(self, obj: dict[str, Any]) -> list[StreamEvent]:
        """Handle one decoded chunk (or a whole non-streaming answer)."""
        raise_stream_error(obj, LABEL)
        message = obj.get("message") or {}
        if not isinstance(message, dict):
            raise UpstreamMalformedError(f"{LABEL}: 'message' is not an object")
        events: list[StreamEvent] = []
        thinking = message.get("thinking")
        if isinstance(thinking, str) and thinking:
            events.append(ReasoningDelta(thinking))
        content = message.get("content")
        if isinstance(content, str) and content:
            events += self._think.feed(content)
        if obj.get("done") is True:
            events += self._think.flush()
            events.append(Finish(str(obj.get("done_reason") or "stop")))
            self.usage = _usage_of(obj)
            self.finished = self.done = True
        return events

    def eof(self, rest: str) -> list[StreamEvent]:
        """An unterminated last line is parsed if complete, else the stream was cut."""
        if not rest.strip() or self.done:
            return []
        try:
            return self.feed_line(rest)
        except UpstreamMalformedError:
            raise UpstreamTruncatedError(f"{LABEL}: the stream ended inside a line") from None

    def flush_partial(self) -> list[StreamEvent]:
        """Text held back by the ``<think>`` splitter."""
        return list(self._think.flush())


class OllamaAdapter(HTTPAdapter):
    """Ollama ``/api/chat``."""

    provider = "ollama"
    label = LABEL
    stream_accept = "application/x-ndjson"

    @staticmethod
    def _base(cfg: ProviderConfig) -> str:
        base = cfg.base_url.rstrip("/")
        return base[: -len("/api")] if base.endswith("/api") else base

    def _chat_url(self, cfg: ProviderConfig, req: ChatRequest, *, stream: bool) -> str:
        return join_url(self._base(cfg), "api/chat")

    def _body(self, req: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": req.model, "messages": ollama_messages(req.messages), "stream": stream}
        options: dict[str, Any] = {}
        if req.temperature is not None:
            options["temperature"] = req.temperature
        if req.max_tokens is not None:
            options["num_predict"] = req.max_tokens
        if req.ollama_think is not None:
            body["think"] = bool(req.ollama_think)
        return merge_body_section(body, req.extra_body, PROTECTED_BODY_KEYS, section="options", values=options)

    def _stream_decoder(self) -> OllamaStreamDecoder:
        return OllamaStreamDecoder()

    def _completion(self, body: Any) -> CompletionResult:
        if not isinstance(body, dict):
            raise UpstreamMalformedError(f"{LABEL}: the answer is not a JSON object")
        decoder = OllamaStreamDecoder()
        content, reasoning = split_reasoning_events(decoder.handle({**body, "done": True}))
        return CompletionResult(
            content=content,
            reasoning=reasoning,
            finish_reason=str(body.get("done_reason") or "stop"),
            usage=decoder.usage,
        )

    def _list_models(self, http: HTTPClient, cfg: ProviderConfig, timeout: float) -> list[ModelInfo]:
        """``GET /api/tags``, then ``POST /api/show`` per model for context window and capabilities."""
        base = self._base(cfg)
        body = self._request_json(http, cfg, "GET", join_url(base, "api/tags"), timeout=timeout)
        items = body.get("models") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise UpstreamMalformedError(f"{LABEL}: the model list is not a list")
        models: list[ModelInfo] = []
        for item in items:
            if not isinstance(item, dict):
                continue
            name = item.get("name") or item.get("model")
            if not isinstance(name, str) or not name:
                continue
            info = ModelInfo(raw_id=name, name=name)
            families = (item.get("details") or {}).get("families") if isinstance(item.get("details"), dict) else None
            if isinstance(families, list) and any(f in ("clip", "mllama") for f in families):
                info.capabilities["vision"] = True
            try:
                show = self._request_json(
                    http, cfg, "POST", join_url(base, "api/show"), timeout=timeout, json_body={"model": name}
                )
            except ProviderError as exc:  # one broken model must not hide the others
                log.info("ollama /api/show failed for %s: %s", name, exc.message)
            else:
                self._apply_show(info, show)
            models.append(info)
        return sorted(models, key=lambda m: m.raw_id)

    @staticmethod
    def _apply_show(info: ModelInfo, show: Any) -> None:
        if not isinstance(show, dict):
            return
        info.context_window = context_window_from_show(show)
        caps = show.get("capabilities")
        if isinstance(caps, list):
            info.capabilities["vision"] = "vision" in caps
            info.capabilities["reasoning"] = "thinking" in caps
            info.capabilities["tools"] = "tools" in caps


def context_window_from_show(show: dict[str, Any]) -> int | None:
    """``num_ctx`` from the parameters when set, else ``model_info["<arch>.context_length"]``."""
    params = show.get("parameters")
    if isinstance(params, str):
        for line in params.splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0] == "num_ctx":
                value = int_or_none(fields[1])
                if value:
                    return value
    model_info = show.get("model_info")
    if isinstance(model_info, dict):
        arch = model_info.get("general.architecture")
        if isinstance(arch, str):
            value = int_or_none(model_info.get(f"{arch}.context_length"))
            if value:
                return value
        for key, raw in model_info.items():
            if isinstance(key, str) and key.endswith(".context_length"):
                value = int_or_none(raw)
                if value:
                    return value
    return None

"""The fake upstream server: OpenAI, Azure OpenAI, Ollama and Gemini wire formats over real HTTP.

Run it with ``python -m tests.fake_provider --port N`` (``--port 0`` picks a free port and prints
``FAKE_PROVIDER_PORT=<port>``). It is a WSGI app served by ``gevent.pywsgi`` after
``gevent.monkey.patch_all()``, so it holds hundreds of concurrent streams in one process.

Endpoints (see ``scenario.py`` for what the model name / ``X-Fake-Scenario`` header do):

- OpenAI:  ``POST /v1/chat/completions`` (SSE or JSON), ``GET /v1/models``
- Azure:   ``POST /openai/deployments/<deployment>/chat/completions?api-version=...`` (``api-key``
  header required), ``GET /openai/models?api-version=...``; ``/openai/deployments`` answers 404
  (like newer Azure API versions)
- Ollama:  ``POST /api/chat`` (NDJSON or JSON), ``GET /api/tags``, ``POST /api/show``
- Gemini:  ``POST /v1beta/models/<model>:streamGenerateContent?alt=sse`` (CRLF frames),
  ``POST /v1beta/models/<model>:generateContent``, ``GET /v1beta/models`` (2 models per page)
- Control: ``GET /_fake/health``, ``GET /_fake/log[?model=&path=&since=<id>]``, ``POST /_fake/reset``

Each provider request is logged with its path, model, headers (authentication values removed, but
``auth_present``, ``auth_header`` and ``auth_key_last4`` kept), JSON body, status, ``chunks_sent``,
``completed``, timestamps (``started_at``, ``headers_at``, ``ended_at``) and, when the client went
away mid-stream, ``disconnected_at_chunk`` / ``disconnected_at``. Disconnects are noticed while the
server waits (between chunks, during stalls and slow first bytes, by watching the socket for EOF) and
when a write fails.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import socket
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

import gevent
from gevent import socket as gsocket
from gevent.pywsgi import WSGIHandler, WSGIServer

from .scenario import (
    Scenario,
    answer_text,
    base_model_name,
    count_words,
    parse_scenario,
    plan,
    reasoning_text,
    usage_numbers,
)

MAX_LOG_ENTRIES = 20000
MAX_LOGGED_BODY = 1024 * 1024
GEMINI_PAGE_SIZE = 2
AUTH_HEADERS = ("authorization", "api-key", "x-goog-api-key")
StartResponse = Callable[..., Any]

OPENAI_MODELS = [
    {"id": "fake-chat", "object": "model", "owned_by": "fake", "max_model_len": 8192},
    {"id": "fake-reasoning", "object": "model", "owned_by": "fake", "context_window": 32768},
    {"id": "fake-think", "object": "model", "owned_by": "fake"},
    {"id": "fake-vision", "object": "model", "owned_by": "fake", "context_length": 128000},
]
AZURE_MODELS = [
    {"id": "fake-chat", "capabilities": {"chat_completion": True, "embeddings": False}, "status": "succeeded"},
    {"id": "fake-reasoning", "capabilities": {"chat_completion": True, "embeddings": False}},
    {"id": "fake-embedding", "capabilities": {"chat_completion": False, "embeddings": True}},
]
OLLAMA_MODELS = {
    "fake-chat:latest": {
        "families": ["llama"],
        "show": {
            "parameters": 'num_ctx                        8192\nstop                           "<|eot_id|>"',
            "model_info": {"general.architecture": "llama", "llama.context_length": 131072},
            "capabilities": ["completion", "tools"],
        },
    },
    "fake-reasoning:latest": {
        "families": ["qwen3"],
        "show": {
            "model_info": {"general.architecture": "qwen3", "qwen3.context_length": 40960},
            "capabilities": ["completion", "thinking"],
        },
    },
    "fake-vision:latest": {
        "families": ["mllama", "clip"],
        "show": {
            "model_info": {"general.architecture": "mllama", "mllama.context_length": 131072},
            "capabilities": ["completion", "vision"],
        },
    },
}
GEMINI_MODELS = [
    {
        "name": "models/fake-chat",
        "displayName": "Fake Chat",
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 8192,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
    },
    {
        "name": "models/fake-embedding",
        "displayName": "Fake Embedding",
        "inputTokenLimit": 2048,
        "outputTokenLimit": 1,
        "supportedGenerationMethods": ["embedContent"],
    },
    {
        "name": "models/fake-reasoning",
        "displayName": "Fake Reasoning",
        "inputTokenLimit": 1048576,
        "outputTokenLimit": 65536,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
        "thinking": True,
    },
    {
        "name": "models/fake-vision",
        "displayName": "Fake Vision",
        "inputTokenLimit": 32768,
        "outputTokenLimit": 4096,
        "supportedGenerationMethods": ["generateContent"],
    },
    {
        "name": "models/fake-pro",
        "displayName": "Fake Pro",
        "inputTokenLimit": 2097152,
        "outputTokenLimit": 8192,
        "supportedGenerationMethods": ["generateContent"],
    },
]
GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
HTTP_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class _CloseConnection(Exception):
    """Raised from a streaming body to abort the TCP connection (hard cut, or the client is gone)."""


class FakeHandler(WSGIHandler):
    """pywsgi handler that exposes the client socket to the app and can abort a response mid-body."""

    def handle(self) -> None:
        try:  # stream chunks go out at once (no Nagle delay), like a real provider's
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        super().handle()

    def get_environ(self) -> dict[str, Any]:
        env = super().get_environ()
        env["fake.socket"] = self.socket
        return env

    def process_result(self) -> None:
        try:
            super().process_result()
        except _CloseConnection:
            self.close_connection = True
            try:
                self.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class State:
    """Request log and scenario counters (one process, one event loop: no locking needed)."""

    def __init__(self) -> None:
        self.log: list[dict[str, Any]] = []
        self.counters: dict[str, int] = defaultdict(int)
        self.ids = itertools.count(1)
        self.completion_ids = itertools.count(1)

    def reset(self) -> None:
        self.log.clear()
        self.counters.clear()


STATE = State()


# --------------------------------------------------------------------------------------------------
# Request context
# --------------------------------------------------------------------------------------------------


class Ctx:
    """One provider request."""

    def __init__(self, env: dict[str, Any], provider: str) -> None:
        self.env = env
        self.sock = env.get("fake.socket")
        self.method = env["REQUEST_METHOD"]
        self.path = env.get("PATH_INFO", "")
        self.query = {k: v[0] for k, v in parse_qs(env.get("QUERY_STRING", "")).items()}
        self.headers: dict[str, str] = {}
        for key, value in env.items():
            if key.startswith("HTTP_"):
                self.headers[key[5:].replace("_", "-").lower()] = value
        if env.get("CONTENT_TYPE"):
            self.headers["content-type"] = env["CONTENT_TYPE"]
        raw = env["wsgi.input"].read() if self.method in ("POST", "PUT", "PATCH") else b""
        self.body: Any = None
        self.body_error: str | None = None
        if raw:
            try:
                self.body = json.loads(raw)
            except ValueError as exc:
                self.body_error = str(exc)
        self.auth_header, self.api_key = self._auth()
        self.entry: dict[str, Any] = {
            "id": next(STATE.ids),
            "provider": provider,
            "method": self.method,
            "path": self.path,
            "client": f"{env.get('REMOTE_ADDR', '')}:{env.get('REMOTE_PORT', '')}",
            "query": self.query if "key" not in self.query else {**self.query, "key": "***"},
            "model": None,
            "scenario_header": self.headers.get("x-fake-scenario"),
            "headers": {k: v for k, v in self.headers.items() if k not in AUTH_HEADERS and k != "cookie"},
            "auth_present": self.api_key is not None,
            "auth_header": self.auth_header,
            "auth_key_last4": self.api_key[-4:] if self.api_key else None,
            "body": _loggable(self.body, len(raw)),
            "stream": False,
            "status": None,
            "chunks_sent": 0,
            "completed": False,
            "disconnected_at_chunk": None,
            "disconnected_at": None,
            "started_at": time.time(),
            "headers_at": None,
            "ended_at": None,
        }
        STATE.log.append(self.entry)
        if len(STATE.log) > MAX_LOG_ENTRIES:
            del STATE.log[: len(STATE.log) - MAX_LOG_ENTRIES]

    def _auth(self) -> tuple[str | None, str | None]:
        for name in AUTH_HEADERS:
            value = self.headers.get(name)
            if value is not None:
                if name == "authorization" and " " in value:
                    value = value.split(" ", 1)[1]
                return name, value.strip()
        if "key" in self.query:
            return "query:key", self.query["key"]
        return None, None

    def scenario(self, model: str) -> Scenario:
        self.entry["model"] = model
        return parse_scenario(model, self.headers.get("x-fake-scenario"))

    def mark_disconnected(self) -> None:
        if self.entry["disconnected_at"] is None and not self.entry["completed"]:
            self.entry["disconnected_at_chunk"] = self.entry["chunks_sent"]
            self.entry["disconnected_at"] = time.time()

    def wait(self, seconds: float) -> bool:
        """Sleep, watching the client socket; True when the client disconnected meanwhile."""
        if seconds <= 0:
            gevent.sleep(0)
            return False
        sock = self.sock
        if sock is None:
            gevent.sleep(seconds)
            return False
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                gsocket.wait_read(sock.fileno(), timeout=remaining)
            except TimeoutError:
                return False
            except OSError:
                return True
            try:
                data = sock.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                continue
            except OSError:
                return True
            if not data:
                return True
            gevent.sleep(max(deadline - time.monotonic(), 0))  # unexpected bytes: just wait
            return False


def _loggable(body: Any, size: int) -> Any:
    if size <= MAX_LOGGED_BODY:
        return body

    def shrink(value: Any) -> Any:
        if isinstance(value, str) and len(value) > 4096:
            return value[:64] + f"...<{len(value)} chars>"
        if isinstance(value, list):
            return [shrink(v) for v in value]
        if isinstance(value, dict):
            return {k: shrink(v) for k, v in value.items()}
        return value

    return shrink(body)


# --------------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------------


def _status_line(status: int) -> str:
    return f"{status} {HTTP_REASONS.get(status, 'Status')}"


def json_response(
    ctx: Ctx | None, start_response: StartResponse, status: int, obj: Any, headers: Iterable[tuple[str, str]] = ()
) -> list[bytes]:
    data = json.dumps(obj).encode()
    start_response(
        _status_line(status),
        [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers],
    )
    if ctx is not None:
        ctx.entry["status"] = status
        ctx.entry["headers_at"] = time.time()
        ctx.entry["ended_at"] = time.time()
        ctx.entry["completed"] = 200 <= status < 300
    return [data]


def error_response(
    ctx: Ctx,
    start_response: StartResponse,
    provider: str,
    status: int,
    message: str,
    headers: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    if provider == "ollama":
        body: Any = {"error": message}
    elif provider == "gemini":
        body = {"error": {"code": status, "message": message, "status": GOOGLE_STATUS.get(status, "UNKNOWN")}}
    else:
        kind = {401: "invalid_request_error", 429: "rate_limit_exceeded"}.get(status, "server_error")
        body = {"error": {"message": message, "type": kind, "code": str(status)}}
    return json_response(ctx, start_response, status, body, headers)


def precheck(ctx: Ctx, start_response: StartResponse, sc: Scenario, provider: str) -> list[bytes] | None:
    """Slow first byte, then the HTTP-level failures; None when the request should be answered."""
    if sc.first_byte_ms and ctx.wait(sc.first_byte_ms / 1000.0):
        ctx.mark_disconnected()
        return error_response(ctx, start_response, provider, 499, "client went away")
    if ctx.api_key and ctx.api_key.lower().startswith(("bad", "invalid")):
        return error_response(ctx, start_response, provider, 401, "Incorrect API key provided")
    if sc.fail_status:
        return error_response(ctx, start_response, provider, sc.fail_status, f"fake failure {sc.fail_status}")
    if sc.fail_429:
        key = "429:" + sc.counter_key
        if STATE.counters[key] < sc.fail_429:
            STATE.counters[key] += 1
            return error_response(
                ctx,
                start_response,
                provider,
                429,
                "Rate limit reached, slow down",
                headers=[("Retry-After", sc.retry_after)],
            )
    if sc.fail_500_once:
        key = "500:" + sc.counter_key
        if STATE.counters[key] == 0:
            STATE.counters[key] += 1
            return error_response(ctx, start_response, provider, 500, "fake failure 500 (once)")
    return None


class Encoder:
    """Frames of one provider's stream."""

    def preamble(self) -> list[bytes]:
        return []

    def chunk(self, kind: str, text: str) -> bytes:
        raise NotImplementedError

    def finish(self) -> list[bytes]:
        raise NotImplementedError

    def malformed(self) -> bytes:
        raise NotImplementedError


def stream_response(
    ctx: Ctx,
    start_response: StartResponse,
    sc: Scenario,
    content_type: str,
    encoder: Encoder,
    items: list[tuple[str, str]],
) -> Iterator[bytes]:
    """Send the headers now, then stream the items with the scenario's delays and failures."""
    write = start_response("200 OK", [("Content-Type", content_type), ("Cache-Control", "no-cache")])
    ctx.entry["status"] = 200
    ctx.entry["stream"] = True
    write(b"")  # flush the headers at once: "stall" means headers sent, then silence
    ctx.entry["headers_at"] = time.time()
    return _stream_body(ctx, sc, encoder, items)


def _stream_body(ctx: Ctx, sc: Scenario, encoder: Encoder, items: list[tuple[str, str]]) -> Iterator[bytes]:
    entry = ctx.entry
    try:
        yield from encoder.preamble()
        for index in range(len(items) + 1):
            sent = entry["chunks_sent"]
            if sc.malformed_after is not None and sent >= sc.malformed_after:
                yield encoder.malformed()
                entry["malformed_sent"] = True
                if ctx.wait(0.2):  # give the client time to read it; then end without marker
                    ctx.mark_disconnected()
                return
            if sc.cut_after is not None and sent >= sc.cut_after:
                entry["cut"] = True
                if sc.hard_cut:
                    raise _CloseConnection()
                return
            if sc.stall_after is not None and sent >= sc.stall_after:
                entry["stalled"] = True
                if ctx.wait(sc.stall_ms / 1000.0):
                    ctx.mark_disconnected()
                    raise _CloseConnection()
                return
            if index == len(items):
                break
            if index > 0 and sc.delay_ms and ctx.wait(sc.delay_ms / 1000.0):
                ctx.mark_disconnected()
                raise _CloseConnection()
            kind, text = items[index]
            yield encoder.chunk(kind, text)
            entry["chunks_sent"] = sent + 1
        yield from encoder.finish()
        entry["completed"] = True
    except GeneratorExit:
        ctx.mark_disconnected()
        raise
    finally:
        entry["ended_at"] = time.time()


# --------------------------------------------------------------------------------------------------
# OpenAI / Azure
# --------------------------------------------------------------------------------------------------


def _openai_texts(messages: Any) -> tuple[str, list[str]]:
    """(last user text, all message texts)."""
    last_user = ""
    texts: list[str] = []
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, list):
            text = "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        else:
            text = content if isinstance(content, str) else ""
        texts.append(text)
        if message.get("role") == "user":
            last_user = text
    return last_user, texts


class OpenAIEncoder(Encoder):
    def __init__(self, sc: Scenario, model: str, usage: tuple[int, int, int], include_usage: bool) -> None:
        self.sc = sc
        self.model = model
        self.usage = usage
        self.include_usage = include_usage and not sc.no_usage
        self.sep = b"\r\n\r\n" if sc.crlf else b"\n\n"
        self.id = f"chatcmpl-fake{next(STATE.completion_ids)}"
        self.created = int(time.time())

    def _frame(self, choices: list[Any], **extra: Any) -> bytes:
        obj = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }
        return b"data: " + json.dumps(obj).encode() + self.sep

    def preamble(self) -> list[bytes]:
        return [self._frame([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]

    def chunk(self, kind: str, text: str) -> bytes:
        delta = {self.sc.reasoning_field: text} if kind == "reasoning" else {"content": text}
        return self._frame([{"index": 0, "delta": delta, "finish_reason": None}])

    def finish(self) -> list[bytes]:
        frames = [self._frame([{"index": 0, "delta": {}, "finish_reason": self.sc.finish}])]
        if self.include_usage:
            prompt, completion, total = self.usage
            frames.append(
                self._frame([], usage={"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total})
            )
        if not self.sc.no_done:
            frames.append(b"data: [DONE]" + self.sep)
        return frames

    def malformed(self) -> bytes:
        return b"data: {this is not json" + self.sep


def openai_chat(ctx: Ctx, start_response: StartResponse, provider: str, model: str) -> Iterable[bytes]:
    if ctx.body_error or not isinstance(ctx.body, dict):
        return error_response(ctx, start_response, provider, 400, "invalid JSON body")
    sc = ctx.scenario(model)
    failed = precheck(ctx, start_response, sc, provider)
    if failed is not None:
        return failed
    body = ctx.body
    user_text, texts = _openai_texts(body.get("messages"))
    stream = body.get("stream") is True
    with_reasoning = sc.reasoning or sc.think
    usage = usage_numbers(sc, count_words(texts), user_text, with_reasoning=with_reasoning)
    if not stream:
        if sc.fallback_fail:
            return error_response(ctx, start_response, provider, 500, "fake non-streaming failure")
        answer = answer_text(sc, user_text)
        message: dict[str, Any] = {"role": "assistant", "content": answer}
        if sc.think:
            message["content"] = f"<think>{reasoning_text(user_text)}</think>\n\n{answer}"
        elif sc.reasoning:
            message[sc.reasoning_field] = reasoning_text(user_text)
        prompt, completion, total = usage
        return json_response(
            ctx,
            start_response,
            200,
            {
                "id": f"chatcmpl-fake{next(STATE.completion_ids)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": sc.finish}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total},
            },
        )
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    encoder = OpenAIEncoder(sc, model, usage, include_usage)
    items = plan(sc, user_text, native_reasoning=True)
    return stream_response(ctx, start_response, sc, "text/event-stream; charset=utf-8", encoder, items)


def azure_precheck(ctx: Ctx, start_response: StartResponse) -> list[bytes] | None:
    if not ctx.query.get("api-version"):
        return error_response(ctx, start_response, "azure", 404, "Resource not found (api-version missing)")
    if ctx.auth_header != "api-key" or not ctx.api_key:
        return error_response(ctx, start_response, "azure", 401, "Access denied due to missing api-key header")
    return None


# --------------------------------------------------------------------------------------------------
# Ollama
# --------------------------------------------------------------------------------------------------


class OllamaEncoder(Encoder):
    def __init__(self, sc: Scenario, model: str, usage: tuple[int, int, int]) -> None:
        self.sc = sc
        self.model = model
        self.usage = usage
        self.sep = b"\r\n" if sc.crlf else b"\n"

    def _line(self, obj: dict[str, Any]) -> bytes:
        obj = {"model": self.model, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **obj}
        return json.dumps(obj).encode() + self.sep

    def chunk(self, kind: str, text: str) -> bytes:
        if kind == "reasoning":
            message = {"role": "assistant", "content": "", "thinking": text}
        else:
            message = {"role": "assistant", "content": text}
        return self._line({"message": message, "done": False})

    def finish(self) -> list[bytes]:
        obj: dict[str, Any] = {
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": self.sc.finish,
            "total_duration": 1000000,
        }
        if not self.sc.no_usage:
            obj["prompt_eval_count"] = self.usage[0]
            obj["eval_count"] = self.usage[1]
        return [self._line(obj)]

    def malformed(self) -> bytes:
        return b"{this is not json" + self.sep


def ollama_chat(ctx: Ctx, start_response: StartResponse) -> Iterable[bytes]:
    if ctx.body_error or not isinstance(ctx.body, dict) or not isinstance(ctx.body.get("model"), str):
        return error_response(ctx, start_response, "ollama", 400, "invalid request")
    model = ctx.body["model"]
    sc = ctx.scenario(model)
    failed = precheck(ctx, start_response, sc, "ollama")
    if failed is not None:
        return failed
    user_text, texts = _openai_texts(ctx.body.get("messages"))
    native = sc.reasoning and ctx.body.get("think") is not False
    usage = usage_numbers(sc, count_words(texts), user_text, with_reasoning=native or sc.think)
    if ctx.body.get("stream", True) is False:
        if sc.fallback_fail:
            return error_response(ctx, start_response, "ollama", 500, "fake non-streaming failure")
        answer = answer_text(sc, user_text)
        message: dict[str, Any] = {"role": "assistant", "content": answer}
        if sc.think:
            message["content"] = f"<think>{reasoning_text(user_text)}</think>\n\n{answer}"
        elif native:
            message["thinking"] = reasoning_text(user_text)
        obj: dict[str, Any] = {
            "model": model,
            "created_at": "2025-01-01T00:00:00Z",
            "message": message,
            "done": True,
            "done_reason": sc.finish,
        }
        if not sc.no_usage:
            obj.update(prompt_eval_count=usage[0], eval_count=usage[1])
        return json_response(ctx, start_response, 200, obj)
    items = plan(sc, user_text, native_reasoning=native)
    return stream_response(ctx, start_response, sc, "application/x-ndjson", OllamaEncoder(sc, model, usage), items)


def ollama_tags(ctx: Ctx, start_response: StartResponse) -> list[bytes]:
    models = [
        {
            "name": name,
            "model": name,
            "modified_at": "2025-01-01T00:00:00Z",
            "size": 1000000,
            "digest": "0" * 64,
            "details": {
                "format": "gguf",
                "family": spec["families"][0],
                "families": spec["families"],
                "parameter_size": "1B",
                "quantization_level": "Q4_0",
            },
        }
        for name, spec in OLLAMA_MODELS.items()
    ]
    return json_response(ctx, start_response, 200, {"models": models})


def ollama_show(ctx: Ctx, start_response: StartResponse) -> list[bytes]:
    body = ctx.body if isinstance(ctx.body, dict) else {}
    name = body.get("model") or body.get("name") or ""
    ctx.entry["model"] = name
    key = name if ":" in name else f"{name}:latest"
    spec = OLLAMA_MODELS.get(key)
    if spec is None:
        return error_response(ctx, start_response, "ollama", 404, f"model '{name}' not found")
    return json_response(
        ctx,
        start_response,
        200,
        {
            "modelfile": "# fake",
            "template": "{{ .Prompt }}",
            "details": {"family": spec["families"][0]},
            **spec["show"],
        },
    )


# --------------------------------------------------------------------------------------------------
# Gemini
# --------------------------------------------------------------------------------------------------

_GEMINI_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY"}


class GeminiEncoder(Encoder):
    sep = b"\r\n\r\n"

    def __init__(self, sc: Scenario, model: str, usage: tuple[int, int, int], thoughts: int) -> None:
        self.sc = sc
        self.model = model
        self.usage = usage
        self.thoughts = thoughts

    def _frame(self, obj: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(obj).encode() + self.sep

    def chunk(self, kind: str, text: str) -> bytes:
        part: dict[str, Any] = {"text": text}
        if kind == "reasoning":
            part["thought"] = True
        obj: dict[str, Any] = {
            "candidates": [{"content": {"parts": [part], "role": "model"}, "index": 0}],
            "modelVersion": self.model,
        }
        if not self.sc.no_usage:
            obj["usageMetadata"] = {"promptTokenCount": self.usage[0], "totalTokenCount": self.usage[0]}
        return self._frame(obj)

    def finish(self) -> list[bytes]:
        reason = _GEMINI_FINISH.get(self.sc.finish, self.sc.finish.upper())
        obj: dict[str, Any] = {
            "candidates": [{"content": {"parts": [{"text": ""}], "role": "model"}, "finishReason": reason, "index": 0}],
            "modelVersion": self.model,
        }
        if not self.sc.no_usage:
            obj["usageMetadata"] = gemini_usage(self.usage, self.thoughts)
        return [self._frame(obj)]

    def malformed(self) -> bytes:
        return b"data: {this is not json" + self.sep


def gemini_usage(usage: tuple[int, int, int], thoughts: int) -> dict[str, int]:
    prompt, completion, total = usage
    meta = {"promptTokenCount": prompt, "candidatesTokenCount": completion - thoughts, "totalTokenCount": total}
    if thoughts:
        meta["thoughtsTokenCount"] = thoughts
    return meta


def _gemini_texts(body: dict[str, Any]) -> tuple[str, list[str]]:
    last_user = ""
    texts: list[str] = []
    system = body.get("systemInstruction")
    if isinstance(system, dict):
        texts += [p.get("text", "") for p in system.get("parts") or [] if isinstance(p, dict)]
    for content in body.get("contents") or []:
        if not isinstance(content, dict):
            continue
        text = "\n".join(p.get("text", "") for p in content.get("parts") or [] if isinstance(p, dict) and "text" in p)
        texts.append(text)
        if content.get("role", "user") == "user":
            last_user = text
    return last_user, texts


def gemini_generate(ctx: Ctx, start_response: StartResponse, model: str, method: str) -> Iterable[bytes]:
    if ctx.api_key is None:
        return error_response(
            ctx, start_response, "gemini", 403, "Method doesn't allow unregistered callers. Please use an API Key."
        )
    if ctx.body_error or not isinstance(ctx.body, dict) or not isinstance(ctx.body.get("contents"), list):
        return error_response(ctx, start_response, "gemini", 400, "Invalid JSON payload: contents required")
    sc = ctx.scenario(model)
    failed = precheck(ctx, start_response, sc, "gemini")
    if failed is not None:
        return failed
    user_text, texts = _gemini_texts(ctx.body)
    generation = ctx.body.get("generationConfig") or {}
    thinking = generation.get("thinkingConfig") if isinstance(generation, dict) else None
    include_thoughts = isinstance(thinking, dict) and thinking.get("includeThoughts") is True
    native = (sc.reasoning or sc.think) and include_thoughts
    sc_plain = dataclasses.replace(sc, think=False, reasoning=sc.reasoning or sc.think)
    usage = usage_numbers(sc_plain, count_words(texts), user_text, with_reasoning=native)
    thoughts = len(reasoning_text(user_text).split()) if native else 0
    if method == "generateContent":
        if sc.fallback_fail:
            return error_response(ctx, start_response, "gemini", 500, "fake non-streaming failure")
        parts: list[dict[str, Any]] = []
        if native:
            parts.append({"text": reasoning_text(user_text), "thought": True})
        parts.append({"text": answer_text(sc, user_text)})
        obj: dict[str, Any] = {
            "candidates": [
                {
                    "content": {"parts": parts, "role": "model"},
                    "finishReason": _GEMINI_FINISH.get(sc.finish, sc.finish.upper()),
                    "index": 0,
                }
            ],
            "modelVersion": model,
        }
        if not sc.no_usage:
            obj["usageMetadata"] = gemini_usage(usage, thoughts)
        return json_response(ctx, start_response, 200, obj)
    items = plan(sc_plain, user_text, native_reasoning=native)
    encoder = GeminiEncoder(sc, model, usage, thoughts)
    return stream_response(ctx, start_response, sc, "text/event-stream", encoder, items)


def gemini_models(ctx: Ctx, start_response: StartResponse) -> list[bytes]:
    if ctx.api_key is None:
        return error_response(ctx, start_response, "gemini", 403, "Method doesn't allow unregistered callers.")
    if ctx.api_key.lower().startswith(("bad", "invalid")):
        return error_response(ctx, start_response, "gemini", 400, "API key not valid. Please pass a valid API key.")
    try:
        start = int(ctx.query.get("pageToken") or 0)
    except ValueError:
        return error_response(ctx, start_response, "gemini", 400, "invalid page token")
    try:
        size = min(int(ctx.query.get("pageSize") or GEMINI_PAGE_SIZE), GEMINI_PAGE_SIZE)
    except ValueError:
        size = GEMINI_PAGE_SIZE
    page = GEMINI_MODELS[start : start + size]
    body: dict[str, Any] = {"models": page}
    if start + size < len(GEMINI_MODELS):
        body["nextPageToken"] = str(start + size)
    return json_response(ctx, start_response, 200, body)


# --------------------------------------------------------------------------------------------------
# Routing
# --------------------------------------------------------------------------------------------------

_AZURE_CHAT = re.compile(r"^/openai/deployments/([^/]+)/chat/completions$")
_GEMINI_CALL = re.compile(r"^/v1beta/models/([^/:]+):(streamGenerateContent|generateContent)$")


def control(env: dict[str, Any], start_response: StartResponse) -> list[bytes]:
    method = env["REQUEST_METHOD"]
    path = env.get("PATH_INFO", "")
    query = {k: v[0] for k, v in parse_qs(env.get("QUERY_STRING", "")).items()}
    if path == "/_fake/health":
        return json_response(None, start_response, 200, {"ok": True, "pid": os.getpid(), "requests": len(STATE.log)})
    if path == "/_fake/log" and method == "GET":
        entries = STATE.log
        if "model" in query:
            entries = [e for e in entries if e["model"] == query["model"]]
        if "path" in query:
            entries = [e for e in entries if query["path"] in e["path"]]
        if "since" in query:
            since = int(query["since"])
            entries = [e for e in entries if e["id"] > since]
        return json_response(None, start_response, 200, entries)
    if path == "/_fake/reset" and method == "POST":
        STATE.reset()
        return json_response(None, start_response, 200, {"ok": True})
    return json_response(None, start_response, 404, {"error": f"unknown control endpoint {method} {path}"})


def app(env: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """The WSGI application."""
    method = env["REQUEST_METHOD"]
    path = env.get("PATH_INFO", "")
    if path.startswith("/_fake/"):
        return control(env, start_response)
    if path.startswith("/v1beta/"):
        provider = "gemini"
    elif path.startswith("/openai/"):
        provider = "azure"
    elif path.startswith("/api/"):
        provider = "ollama"
    else:
        provider = "openai"
    ctx = Ctx(env, provider)
    if method == "POST" and path == "/v1/chat/completions":
        model = ctx.body.get("model") if isinstance(ctx.body, dict) else None
        if not isinstance(model, str) or not model:
            return error_response(ctx, start_response, "openai", 400, "you must provide a model parameter")
        return openai_chat(ctx, start_response, "openai", model)
    if method == "GET" and path == "/v1/models":
        if ctx.api_key and ctx.api_key.lower().startswith(("bad", "invalid")):
            return error_response(ctx, start_response, "openai", 401, "Incorrect API key provided")
        return json_response(ctx, start_response, 200, {"object": "list", "data": OPENAI_MODELS})
    match = _AZURE_CHAT.match(path)
    if method == "POST" and match:
        failed = azure_precheck(ctx, start_response)
        return failed if failed is not None else openai_chat(ctx, start_response, "azure", match.group(1))
    if method == "GET" and path == "/openai/models":
        failed = azure_precheck(ctx, start_response)
        if failed is not None:
            return failed
        if ctx.api_key and ctx.api_key.lower().startswith(("bad", "invalid")):
            return error_response(ctx, start_response, "azure", 401, "Access denied due to invalid subscription key")
        return json_response(ctx, start_response, 200, {"data": AZURE_MODELS, "object": "list"})
    if method == "POST" and path == "/api/chat":
        return ollama_chat(ctx, start_response)
    if method == "GET" and path == "/api/tags":
        return ollama_tags(ctx, start_response)
    if method == "POST" and path == "/api/show":
        return ollama_show(ctx, start_response)
    match = _GEMINI_CALL.match(path)
    if method == "POST" and match:
        return gemini_generate(ctx, start_response, match.group(1), match.group(2))
    if method == "GET" and path == "/v1beta/models":
        return gemini_models(ctx, start_response)
    return error_response(ctx, start_response, provider, 404, f"Route {method} {path} not found")


def serve(host: str, port: int) -> None:
    """Serve forever; prints ``FAKE_PROVIDER_PORT=<port>`` once listening. Call after monkey-patching."""
    server = WSGIServer((host, port), app, handler_class=FakeHandler, log=None, backlog=2048)
    server.start()
    print(f"FAKE_PROVIDER_PORT={server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sys.stdout.flush()


__all__ = ["app", "serve", "STATE", "base_model_name"]

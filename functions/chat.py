"""/api/chat: send a message and stream the answer, re-attach, cancel, regenerate, complete.

The stream protocol is in shared/spec/stream.md. The generation lives on the server: a closed tab
only removes a subscriber.
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, request
from marshmallow import ValidationError, fields, validate, validates

from common import quota, sse
from common.auth.actors import current_actor
from common.auth.ownership import owned_message, owned_session
from common.chat import service
from common.chat.live import sse_frames
from common.db import fetch_all, fetch_one, get_db
from common.errors import ApiError, BadRequest, ok
from common.request_hooks import accepts_body
from common.validation import IdField, RequestSchema, StrictBoolean, StrictString, load_body

bp = Blueprint("chat", __name__, url_prefix="/api/chat")

MAX_CONTENT_CHARS = 200_000
MAX_CUSTOM_BODY_BYTES = 16 * 1024
RESERVED_BODY_KEYS = {"model", "messages", "stream", "stream_options", "contents"}
RESERVED_HEADERS = {"authorization", "api-key", "x-goog-api-key", "host", "cookie", "content-length",
                    "content-type", "transfer-encoding", "connection"}


class StreamSchema(RequestSchema):
    sessionId = IdField(required=True)
    content = StrictString(load_default=None, allow_none=True, validate=validate.Length(max=MAX_CONTENT_CHARS))
    clientMessageId = StrictString(load_default=None, allow_none=True, validate=validate.Length(min=1, max=128))
    replyToMessageId = IdField(load_default=None, allow_none=True)
    replyToClientMessageId = StrictString(load_default=None, allow_none=True, validate=validate.Length(max=128))
    reasoningEnabled = StrictBoolean(load_default=None, allow_none=True)
    reasoningEffort = StrictString(load_default=None, allow_none=True,
                                   validate=validate.OneOf(("minimal", "low", "medium", "high")))
    ollamaThink = StrictBoolean(load_default=None, allow_none=True)
    contextEnabled = StrictBoolean(load_default=None, allow_none=True)
    custom_body = fields.Dict(keys=StrictString(), load_default=None, allow_none=True)
    custom_headers = fields.Dict(keys=StrictString(validate=validate.Length(min=1, max=100)),
                                 values=StrictString(validate=validate.Length(max=2000)),
                                 load_default=None, allow_none=True, validate=validate.Length(max=20))
    images = fields.Raw(load_default=None, allow_none=True)  # [{data, mime}]: checked by common.images at admission

    @validates("custom_body")
    def _custom_body(self, value: dict | None, **_kwargs) -> None:
        if value is None:
            return
        if RESERVED_BODY_KEYS & set(value):
            raise ValidationError(f"custom_body may not set {', '.join(sorted(RESERVED_BODY_KEYS & set(value)))}.")
        if len(json.dumps(value)) > MAX_CUSTOM_BODY_BYTES:
            raise ValidationError(f"custom_body must be at most {MAX_CUSTOM_BODY_BYTES} bytes.")

    @validates("custom_headers")
    def _custom_headers(self, value: dict | None, **_kwargs) -> None:
        if value and RESERVED_HEADERS & {k.lower() for k in value}:
            raise ValidationError("custom_headers may not set authentication, host or transport headers.")


class RegenerateSchema(RequestSchema):
    sessionId = IdField(required=True)
    messageId = IdField(required=True)


class CancelSchema(RequestSchema):
    sessionId = IdField(required=True)
    clientMessageId = StrictString(load_default=None, allow_none=True, validate=validate.Length(min=1, max=160))
    messageId = IdField(load_default=None, allow_none=True)


def _event_stream(source, since: int) -> Response:
    frames = sse_frames(source, since, service.heartbeat_seconds())
    return Response(frames, headers=sse.HEADERS)


@bp.post("/stream")
@accepts_body(large=True)  # images
def stream():
    actor = current_actor()
    body = load_body(StreamSchema)
    started = service.start(current_app._get_current_object(), actor, body)
    return _event_stream(started.source, 0)


@bp.post("/regenerate")
def regenerate():
    actor = current_actor()
    data = load_body(RegenerateSchema)
    body = {"sessionId": data["sessionId"], "replyToMessageId": data["messageId"]}
    started = service.start(current_app._get_current_object(), actor, body)
    return _event_stream(started.source, 0)


@bp.get("/stream/<int:message_id>")
def reattach(message_id: int):
    actor = current_actor()
    message = owned_message(get_db(), actor, message_id)
    if message["role"] != "assistant":
        raise BadRequest("Only answers can be followed", code="not_an_answer")
    since_raw = request.args.get("since", request.headers.get("Last-Event-ID", "0"))
    if not since_raw.isdigit() or len(since_raw) > 9:
        raise BadRequest("since / Last-Event-ID must be a non-negative integer", code="validation_error")
    return _event_stream(service.follow(current_app._get_current_object(), message_id), int(since_raw))


def _cancel_targets(db, actor, data: dict) -> list[int]:
    session_id = data["sessionId"]
    owned_session(db, actor, session_id)
    if data.get("messageId") is not None:
        message = owned_message(db, actor, data["messageId"], session_id)
        if message["role"] == "assistant":
            return [message["id"]]
        rows = fetch_all(db, "SELECT id FROM messages WHERE parent_message_id = :p", p=message["id"])
        return [r["id"] for r in rows]
    if data.get("clientMessageId"):
        rows = fetch_all(
            db,
            "SELECT id, role FROM messages WHERE session_id = :s AND client_message_id = :c",
            s=session_id, c=data["clientMessageId"],
        )
        ids = [r["id"] for r in rows if r["role"] == "assistant"]
        for row in rows:
            if row["role"] == "user":
                ids += [r["id"] for r in fetch_all(db, "SELECT id FROM messages WHERE parent_message_id = :p",
                                                   p=row["id"])]
        return ids
    return service.running_in_session(db, session_id)


@bp.post("/stream/cancel")
def cancel():
    actor = current_actor()
    data = load_body(CancelSchema)
    db = get_db()
    cancelled = service.cancel(current_app._get_current_object(), data["sessionId"], _cancel_targets(db, actor, data))
    return ok({"cancelled": cancelled}, "Cancelled" if cancelled else "Nothing was running")


@bp.post("/stop")
def stop():
    return cancel()


@bp.post("/completion")
@accepts_body(large=True)  # images
def completion():
    actor = current_actor()
    body = load_body(StreamSchema)
    app = current_app._get_current_object()
    started = service.start(app, actor, body)
    cursor = 0
    while not started.source.is_complete(cursor):
        ready = started.source.wait_after(cursor, 30)
        if ready:
            cursor = ready[-1][0]
    db = get_db()
    message = fetch_one(db, "SELECT * FROM messages WHERE id = :id", id=started.assistant_message_id)
    metrics = json.loads(message["metrics"]) if message.get("metrics") else {}
    usage = {"prompt_tokens": metrics.get("promptTokens"), "completion_tokens": metrics.get("completionTokens"),
             "total_tokens": metrics.get("totalTokens"), "usage_source": metrics.get("usageSource")}
    ids = {"messageId": message["parent_message_id"], "assistantMessageId": message["id"]}
    if message["stream_status"] in ("error", "interrupted"):
        raise ApiError(message.get("stream_error") or "The model failed to answer", status=502,
                       code="upstream_error", data=ids | {"content": message["content"]})
    result = {"content": message["content"], "usage": usage, "quota": quota.snapshot(db, actor), **ids,
              "streamStatus": message["stream_status"]}
    if message.get("reasoning"):
        result["reasoning"] = message["reasoning"]
    return ok(result)

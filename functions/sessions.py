"""/api/sessions: the actor's chat sessions (anonymous visitors included; only the owner's)."""

from __future__ import annotations

import json

from flask import Blueprint, current_app
from marshmallow import ValidationError, fields, validate, validates

from common.auth.actors import current_actor
from common.auth.ownership import owned_session, owner_clause, owner_values
from common.chat import service
from common.chat.shapes import message_shape, session_shape
from common.db import execute, fetch_all, fetch_one, get_db, insert, utcnow
from common.errors import ok
from common.model_access import resolve_model
from common.validation import (
    IdField,
    QueryInteger,
    RequestSchema,
    StrictBoolean,
    StrictString,
    load_args,
    load_body,
    pagination,
)

bp = Blueprint("sessions", __name__, url_prefix="/api/sessions")

EFFORTS = ("minimal", "low", "medium", "high")
DEFAULT_TITLE = "New Chat"


class SystemPromptField(StrictString):
    """A system prompt, limited to SYSTEM_PROMPT_MAX_LENGTH characters."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        limit = current_app.config["PARLEY"].system_prompt_max_length
        if value is not None and len(value) > limit:
            raise ValidationError(f"System prompt must be at most {limit} characters.")
        return value


class ModelChoice(RequestSchema):
    modelId = StrictString(required=True, validate=validate.Length(min=1, max=400))
    connectionId = IdField(load_default=None, allow_none=True)
    rawId = StrictString(load_default=None, allow_none=True, validate=validate.Length(max=300))


class SessionOptions(RequestSchema):
    title = StrictString(validate=validate.Length(max=200))
    systemPrompt = SystemPromptField(allow_none=True)
    reasoningEnabled = StrictBoolean(allow_none=True)
    reasoningEffort = StrictString(allow_none=True, validate=validate.OneOf(EFFORTS))
    ollamaThink = StrictBoolean(allow_none=True)


class CreateSchema(ModelChoice, SessionOptions):
    pass


class UpdateSchema(SessionOptions):
    pinned = StrictBoolean()
    tags = fields.List(StrictString(validate=validate.Length(min=1, max=50)), validate=validate.Length(max=20))

    @validates("title")
    def _title(self, value: str, **_kwargs) -> None:
        if not value.strip():
            raise ValidationError("Title must not be blank.")


class ListSchema(RequestSchema):
    page = QueryInteger(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    limit = QueryInteger(load_default=50, validate=validate.Range(min=1, max=200))


class DeleteManySchema(RequestSchema):
    excludePinned = StrictBoolean(load_default=False)


OPTION_COLUMNS = {
    "title": "title", "systemPrompt": "system_prompt", "reasoningEnabled": "reasoning_enabled",
    "reasoningEffort": "reasoning_effort", "ollamaThink": "ollama_think",
}


def _model_columns(db, actor, data: dict) -> dict:
    model = resolve_model(db, actor, data["modelId"], data.get("connectionId"), data.get("rawId"))
    return {"connection_id": model.connection_id, "model_raw_id": model.raw_id, "model_label": model.model_id}


def _get(db, session_id: int) -> dict:
    return session_shape(fetch_one(db, "SELECT * FROM chat_sessions WHERE id = :id", id=session_id))


@bp.get("/")
def list_sessions():
    actor = current_actor()
    args = load_args(ListSchema)
    db = get_db()
    clause, params = owner_clause(actor)
    total = fetch_one(db, f"SELECT COUNT(*) AS n FROM chat_sessions WHERE {clause}", **params)["n"]
    rows = fetch_all(
        db,
        f"SELECT * FROM chat_sessions WHERE {clause} ORDER BY CASE WHEN pinned_at IS NULL THEN 1 ELSE 0 END, "
        "pinned_at DESC, updated_at DESC, id DESC LIMIT :limit OFFSET :offset",
        limit=args["limit"], offset=(args["page"] - 1) * args["limit"], **params,
    )
    return ok({"sessions": [session_shape(r) for r in rows],
               "pagination": pagination(args["page"], args["limit"], total)})


@bp.post("/")
def create_session():
    actor = current_actor()
    data = load_body(CreateSchema)
    db = get_db()
    now = utcnow()
    row = owner_values(actor) | _model_columns(db, actor, data) | {
        column: data.get(key) for key, column in OPTION_COLUMNS.items()
    } | {"tags": "[]", "message_count": 0, "created_at": now, "updated_at": now}
    row["title"] = (data.get("title") or "").strip() or DEFAULT_TITLE
    with db as tx:
        session_id = insert(tx, "chat_sessions", row)
    return ok(_get(db, session_id), "Session created", 201)


@bp.get("/<int:session_id>")
def get_session(session_id: int):
    actor = current_actor()
    db = get_db()
    session = owned_session(db, actor, session_id)
    messages = fetch_all(db, "SELECT * FROM messages WHERE session_id = :s ORDER BY id", s=session_id)
    return ok(session_shape(session) | {"messages": [message_shape(m) for m in messages]})


@bp.put("/<int:session_id>")
def update_session(session_id: int):
    actor = current_actor()
    data = load_body(UpdateSchema)
    db = get_db()
    owned_session(db, actor, session_id)
    changes = {column: data[key] for key, column in OPTION_COLUMNS.items() if key in data}
    if "title" in changes:
        changes["title"] = changes["title"].strip()
    if "pinned" in data:
        changes["pinned_at"] = utcnow() if data["pinned"] else None
    if "tags" in data:
        changes["tags"] = json.dumps(sorted(set(data["tags"])))
    if changes:
        changes["updated_at"] = utcnow()
        assignments = ", ".join(f"{column} = :{column}" for column in changes)
        with db as tx:
            execute(tx, f"UPDATE chat_sessions SET {assignments} WHERE id = :sid", sid=session_id, **changes)
    return ok(_get(db, session_id))


@bp.put("/<int:session_id>/model")
def switch_model(session_id: int):
    actor = current_actor()
    data = load_body(ModelChoice)
    db = get_db()
    owned_session(db, actor, session_id)
    columns = _model_columns(db, actor, data) | {"updated_at": utcnow()}
    assignments = ", ".join(f"{column} = :{column}" for column in columns)
    with db as tx:
        execute(tx, f"UPDATE chat_sessions SET {assignments} WHERE id = :sid", sid=session_id, **columns)
    return ok(_get(db, session_id))


def _stop_generations(db, session_id: int) -> None:
    service.cancel(current_app, session_id, service.running_in_session(db, session_id))


@bp.delete("/<int:session_id>")
def delete_session(session_id: int):
    actor = current_actor()
    db = get_db()
    owned_session(db, actor, session_id)
    _stop_generations(db, session_id)
    with db as tx:
        execute(tx, "DELETE FROM chat_sessions WHERE id = :id", id=session_id)
    return ok({"id": session_id}, "Session deleted")


@bp.delete("/")
def delete_sessions():
    actor = current_actor()
    data = load_body(DeleteManySchema, required=False)
    db = get_db()
    clause, params = owner_clause(actor)
    if data["excludePinned"]:
        clause += " AND pinned_at IS NULL"
    ids = [r["id"] for r in fetch_all(db, f"SELECT id FROM chat_sessions WHERE {clause}", **params)]
    for session_id in ids:
        _stop_generations(db, session_id)
    deleted = 0
    with db as tx:
        for session_id in ids:
            deleted += execute(tx, "DELETE FROM chat_sessions WHERE id = :id", id=session_id)
    return ok({"deletedCount": deleted})


@bp.delete("/<int:session_id>/messages")
def clear_messages(session_id: int):
    actor = current_actor()
    db = get_db()
    owned_session(db, actor, session_id)
    _stop_generations(db, session_id)
    with db as tx:
        # Counted first: a DELETE's row count leaves out the answers removed by the cascade.
        deleted = fetch_one(tx, "SELECT COUNT(*) AS n FROM messages WHERE session_id = :s", s=session_id)["n"]
        execute(tx, "DELETE FROM messages WHERE session_id = :s", s=session_id)
        execute(
            tx, "UPDATE chat_sessions SET message_count = 0, last_message_preview = NULL, last_message_at = NULL, "
            "updated_at = :now WHERE id = :s", now=utcnow(), s=session_id,
        )
    return ok({"deletedCount": deleted})

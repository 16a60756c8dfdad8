"""/api/chat/sessions/:sid/messages: list, edit the last user message, progress, lookup by client id."""

from __future__ import annotations

from flask import Blueprint
from marshmallow import validate

from common.auth.actors import current_actor
from common.auth.ownership import owned_message, owned_session
from common.chat import service
from common.chat.shapes import message_shape
from common.db import execute, fetch_all, fetch_one, get_db, utcnow
from common.errors import BadRequest, Conflict, NotFound, ok
from common.validation import RequestSchema, StrictString, load_args, load_body, pagination

bp = Blueprint("chat_messages", __name__, url_prefix="/api/chat/sessions")


class PageSchema(RequestSchema):
    page = StrictString(load_default="latest", validate=validate.Regexp(r"^(latest|[1-9][0-9]{0,6})$"))
    limit = StrictString(load_default="50", validate=validate.Regexp(r"^([1-9][0-9]?|1[0-9]{2}|200)$",
                                                                     error="limit must be 1-200"))


class EditSchema(RequestSchema):
    content = StrictString(required=True, validate=validate.Length(min=1, max=200_000))


@bp.get("/<int:session_id>/messages")
def list_messages(session_id: int):
    actor = current_actor()
    args = load_args(PageSchema)
    db = get_db()
    owned_session(db, actor, session_id)
    limit = int(args["limit"])
    total = fetch_one(db, "SELECT COUNT(*) AS n FROM messages WHERE session_id = :s", s=session_id)["n"]
    pages = max((total + limit - 1) // limit, 1)
    page = pages if args["page"] == "latest" else int(args["page"])
    rows = fetch_all(
        db, "SELECT * FROM messages WHERE session_id = :s ORDER BY id LIMIT :limit OFFSET :offset",
        s=session_id, limit=limit, offset=(page - 1) * limit,
    )
    return ok({"messages": [message_shape(r) for r in rows], "pagination": pagination(page, limit, total)})


@bp.put("/<int:session_id>/messages/<int:message_id>")
def edit_message(session_id: int, message_id: int):
    actor = current_actor()
    data = load_body(EditSchema)
    db = get_db()
    owned_session(db, actor, session_id)
    message = owned_message(db, actor, message_id, session_id)
    if service.running_in_session(db, session_id):
        raise Conflict("An answer is being generated in this session; wait or cancel it first",
                       code="generation_running")
    last_user = fetch_one(db, "SELECT MAX(id) AS id FROM messages WHERE session_id = :s AND role = 'user'",
                          s=session_id)["id"]
    if message["role"] != "user" or message["id"] != last_user:
        raise BadRequest("Only the last user message can be edited", code="not_last_user_message")
    now = utcnow()
    with db as tx:
        execute(tx, "DELETE FROM messages WHERE parent_message_id = :id", id=message_id)
        execute(tx, "UPDATE messages SET content = :c, updated_at = :now WHERE id = :id",
                c=data["content"], now=now, id=message_id)
        count = fetch_one(tx, "SELECT COUNT(*) AS n FROM messages WHERE session_id = :s", s=session_id)["n"]
        execute(tx, "UPDATE chat_sessions SET message_count = :n, last_message_preview = :p, updated_at = :now "
                "WHERE id = :s", n=count, p=data["content"][:120], now=now, s=session_id)
    return ok({"message": message_shape(fetch_one(db, "SELECT * FROM messages WHERE id = :id", id=message_id))})


@bp.get("/<int:session_id>/messages/<int:message_id>/progress")
def progress(session_id: int, message_id: int):
    actor = current_actor()
    return ok({"message": message_shape(owned_message(get_db(), actor, message_id, session_id))})


@bp.get("/<int:session_id>/messages/by-client/<client_message_id>")
def by_client_id(session_id: int, client_message_id: str):
    actor = current_actor()
    db = get_db()
    owned_session(db, actor, session_id)
    row = fetch_one(db, "SELECT * FROM messages WHERE session_id = :s AND client_message_id = :c",
                    s=session_id, c=client_message_id[:160])
    if row is None:
        raise NotFound("Message not found", code="message_not_found")
    return ok({"message": message_shape(row)})

"""/api/shares: snapshot links to some messages of a session (see common/shares.py).

Owners (users and anonymous visitors) create, list, retitle, re-time and revoke their shares. Anyone
with the token reads a share (JSON only: nothing here renders HTML), and follows a shared answer
that is still generating over SSE.
"""

from __future__ import annotations

import json
from datetime import timedelta

from flask import Blueprint, Response, current_app, request
from marshmallow import fields, validate

from common import shares, sse
from common.auth.actors import current_actor
from common.auth.ownership import owned_row, owned_session, owner_clause, owner_values
from common.chat import service
from common.chat.live import sse_frames
from common.db import execute, fetch_all, fetch_one, get_db, insert, utcnow
from common.errors import BadRequest, Conflict, NotFound, ValidationFailed, ok
from common.validation import (
    IdField,
    QueryId,
    QueryInteger,
    RequestSchema,
    StrictInteger,
    StrictString,
    load_args,
    load_body,
    pagination,
)

bp = Blueprint("shares", __name__, url_prefix="/api/shares")

MAX_MESSAGES = 50
MAX_HOURS = 720


class CreateSchema(RequestSchema):
    sessionId = IdField(required=True)
    messageIds = fields.List(IdField(), required=True, validate=validate.Length(min=1, max=MAX_MESSAGES))
    title = StrictString(load_default=None, allow_none=True, validate=validate.Length(max=200))
    expiresInHours = StrictInteger(load_default=None, allow_none=True, validate=validate.Range(min=1, max=MAX_HOURS))


class UpdateSchema(RequestSchema):
    title = StrictString(validate=validate.Length(max=200))
    expiresInHours = StrictInteger(allow_none=True, validate=validate.Range(min=1, max=MAX_HOURS))


class ListSchema(RequestSchema):
    sessionId = QueryId(load_default=None)
    page = QueryInteger(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    limit = QueryInteger(load_default=50, validate=validate.Range(min=1, max=200))


def _key() -> str:
    return current_app.config["PARLEY"].encryption_key


def _base_url() -> str:
    """Where share links point: the `site_base_url` setting, else the address this request came to."""
    return current_app.extensions["parley.settings"].get("site_base_url") or request.host_url


def _owner_view(db, share_id: int) -> dict:
    row = fetch_one(db, "SELECT * FROM shares WHERE id = :id", id=share_id)
    return shares.owner_share(row, _key(), _base_url())


def _active_or_404(db, token: str) -> dict:
    share = shares.find_active(db, token)
    if share is None:  # missing, expired and revoked look the same
        raise NotFound("Share not found", code="share_not_found")
    return share


@bp.post("/")
def create_share():
    actor = current_actor()
    data = load_body(CreateSchema)
    db = get_db()
    session = owned_session(db, actor, data["sessionId"])
    wanted = sorted(set(data["messageIds"]))
    params = {f"m{n}": mid for n, mid in enumerate(wanted)}
    rows = fetch_all(
        db,
        f"SELECT * FROM messages WHERE session_id = :sid AND id IN ({', '.join(':' + k for k in params)})",
        sid=session["id"], **params,
    )
    missing = sorted(set(wanted) - {row["id"] for row in rows})
    if missing:
        raise BadRequest("Some messages are not in this session", code="messages_not_in_session",
                         data={"messageIds": missing})
    token = shares.new_token()
    now = utcnow()
    hours = data.get("expiresInHours")
    title = (data.get("title") or "").strip() or session["title"]
    with db as tx:
        share_id = insert(tx, "shares", owner_values(actor) | {
            "session_id": session["id"], "token_hash": shares.token_hash(token),
            "token_sealed": shares.seal_token(token, _key()), "title": title[:200],
            "message_ids": json.dumps(wanted), "snapshot": json.dumps(shares.build_snapshot(rows)),
            "created_at": now, "updated_at": now, "expires_at": now + timedelta(hours=hours) if hours else None,
        })
    return ok(_owner_view(db, share_id), "Share created", 201)


@bp.get("/")
def list_shares():
    actor = current_actor()
    args = load_args(ListSchema)
    db = get_db()
    clause, params = owner_clause(actor)
    if args.get("sessionId") is not None:
        owned_session(db, actor, args["sessionId"])
        clause += " AND session_id = :sid"
        params["sid"] = args["sessionId"]
    total = fetch_one(db, f"SELECT COUNT(*) AS n FROM shares WHERE {clause}", **params)["n"]
    rows = fetch_all(db, f"SELECT * FROM shares WHERE {clause} ORDER BY id DESC LIMIT :limit OFFSET :offset",
                     limit=args["limit"], offset=(args["page"] - 1) * args["limit"], **params)
    key, base = _key(), _base_url()
    return ok({"shares": [shares.owner_share(row, key, base) for row in rows],
               "pagination": pagination(args["page"], args["limit"], total)})


@bp.get("/<token>")
def read_share(token: str):
    db = get_db()
    share = _active_or_404(db, token)
    return ok(shares.public_share(share, shares.current_messages(db, share)))


@bp.get("/<token>/messages")
def read_share_messages(token: str):
    db = get_db()
    share = _active_or_404(db, token)
    entries = shares.current_messages(db, share)
    return ok({"messages": [shares.public_message(entry) for entry in entries]})


@bp.get("/<token>/stream")
def stream_share(token: str):
    db = get_db()
    share = _active_or_404(db, token)
    since_raw = request.args.get("since", request.headers.get("Last-Event-ID", "0"))
    if not since_raw.isdigit() or len(since_raw) > 9:
        raise BadRequest("since / Last-Event-ID must be a non-negative integer", code="validation_error")
    source, _followed = shares.stream_source(current_app._get_current_object(), db, share)
    frames = sse_frames(source, int(since_raw), service.heartbeat_seconds())
    return Response(frames, headers=sse.HEADERS)


@bp.patch("/<int:share_id>")
def update_share(share_id: int):
    actor = current_actor()
    data = load_body(UpdateSchema)
    db = get_db()
    share = owned_row(db, "shares", share_id, actor, "Share")
    if share["revoked_at"] is not None:
        raise Conflict("This share was revoked", code="share_revoked")
    now = utcnow()
    changes: dict = {}
    if "title" in data:
        if not data["title"].strip():
            raise ValidationFailed({"title": ["Title must not be blank."]})
        changes["title"] = data["title"].strip()
    if "expiresInHours" in data:
        hours = data["expiresInHours"]
        changes["expires_at"] = now + timedelta(hours=hours) if hours else None
    if changes:
        sets = ", ".join(f"{column} = :{column}" for column in changes)
        with db as tx:
            execute(tx, f"UPDATE shares SET {sets}, updated_at = :now WHERE id = :id", now=now, id=share_id,
                    **changes)
    return ok(_owner_view(db, share_id), "Share updated")


@bp.post("/<int:share_id>/revoke")
def revoke_share(share_id: int):
    actor = current_actor()
    db = get_db()
    owned_row(db, "shares", share_id, actor, "Share")
    now = utcnow()
    with db as tx:  # idempotent: a second revoke keeps the first time
        execute(tx, "UPDATE shares SET revoked_at = :now, updated_at = :now WHERE id = :id AND revoked_at IS NULL",
                now=now, id=share_id)
    return ok(_owner_view(db, share_id), "Share revoked")

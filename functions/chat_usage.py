"""/api/chat/usage: token usage per session, per day, and the current context of a session."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from flask import Blueprint, current_app
from marshmallow import ValidationError, validate, validates_schema

from common.auth.actors import current_actor, require_user
from common.auth.ownership import owned_session, owner_clause
from common.chat.prompt import build_prompt, conversation_before, system_prompt_for
from common.db import fetch_all, fetch_one, get_db, iso
from common.errors import ApiError, ok
from common.model_access import resolve_model
from common.validation import QueryId, RequestSchema, StrictString, load_args

bp = Blueprint("chat_usage", __name__, url_prefix="/api/chat")

TOTALS_SQL = ("COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens, COALESCE(SUM(completion_tokens), 0) AS "
              "completion_tokens, COALESCE(SUM(total_tokens), 0) AS total_tokens")
MAX_DAYS = 366


class UsageSchema(RequestSchema):
    sessionId = QueryId(load_default=None)
    includeContext = StrictString(load_default="0", validate=validate.OneOf(("0", "1", "true", "false")))


class DailySchema(RequestSchema):
    sessionId = QueryId(load_default=None)
    from_ = StrictString(data_key="from", load_default=None, validate=validate.Regexp(r"^\d{4}-\d{2}-\d{2}$"))
    to = StrictString(load_default=None, validate=validate.Regexp(r"^\d{4}-\d{2}-\d{2}$"))

    @validates_schema
    def _range(self, data: dict, **_kwargs) -> None:
        try:
            end = date.fromisoformat(data["to"]) if data.get("to") else datetime.now(UTC).date()
            start = date.fromisoformat(data["from_"]) if data.get("from_") else end - timedelta(days=29)
        except ValueError as exc:
            raise ValidationError("Not a valid date.", "from") from exc
        if start > end:
            raise ValidationError("from must not be after to.", "from")
        if (end - start).days >= MAX_DAYS:
            raise ValidationError(f"The range may cover at most {MAX_DAYS} days.", "from")
        data["from_"], data["to"] = start, end


def _current_context(db, actor, session: dict, last: dict | None) -> dict:
    settings = current_app.extensions["parley.settings"].all()
    try:
        model = resolve_model(db, actor, session.get("model_label"), session.get("connection_id"),
                              session.get("model_raw_id"))
        window, output, raw_id = model.context_window, model.max_output_tokens, model.raw_id
    except ApiError:  # the model is gone or no longer allowed: estimate with the last known limit
        window = (last or {}).get("context_limit") or settings["max_context_tokens"]
        output, raw_id = None, session.get("model_raw_id") or ""
    history = conversation_before(db, session["id"])
    if not history:
        return {"prompt_tokens": 0, "context_limit": window, "context_remaining": window}
    prompt = build_prompt(history=history[:-1], current=history[-1], model=raw_id, context_window=window,
                          system=system_prompt_for(db, actor, session, settings["chat_system_prompt"]),
                          max_output_tokens=output)
    return {"prompt_tokens": prompt.prompt_tokens, "context_limit": window,
            "context_remaining": max(window - prompt.prompt_tokens, 0)}


@bp.get("/usage")
def usage():
    actor = current_actor()
    args = load_args(UsageSchema)
    db = get_db()
    clause, params = owner_clause(actor)
    session = None
    if args["sessionId"] is not None:
        session = owned_session(db, actor, args["sessionId"])
        clause += " AND session_id = :sid"
        params["sid"] = session["id"]
    totals = fetch_one(db, f"SELECT {TOTALS_SQL} FROM usage_records WHERE {clause}", **params)
    last = fetch_one(db, f"SELECT * FROM usage_records WHERE {clause} ORDER BY id DESC LIMIT 1", **params)
    last_round = None
    if last is not None:
        last_round = {key: last[key] for key in ("prompt_tokens", "completion_tokens", "total_tokens",
                                                 "context_limit", "model", "provider", "usage_source")}
        last_round["createdAt"] = iso(last["created_at"])
    result = {"totals": {k: int(v) for k, v in totals.items()}, "last_round": last_round}
    if session is not None and args["includeContext"] in ("1", "true"):
        result["current"] = _current_context(db, actor, session, last)
    return ok(result)


@bp.get("/sessions/usage")
def sessions_usage():
    actor = current_actor()
    db = get_db()
    clause, params = owner_clause(actor, "s")
    rows = fetch_all(
        db,
        f"SELECT s.id AS session_id, {TOTALS_SQL.replace('SUM(', 'SUM(u.')} FROM chat_sessions s "
        f"LEFT JOIN usage_records u ON u.session_id = s.id WHERE {clause} GROUP BY s.id ORDER BY s.id",
        **params,
    )
    return ok([{"sessionId": r["session_id"], "totals": {k: int(r[k]) for k in
                ("prompt_tokens", "completion_tokens", "total_tokens")}} for r in rows])


@bp.get("/usage/daily")
def daily_usage():
    actor = require_user()
    args = load_args(DailySchema)
    db = get_db()
    clause, params = owner_clause(actor)
    if args["sessionId"] is not None:
        owned_session(db, actor, args["sessionId"])
        clause += " AND session_id = :sid"
        params["sid"] = args["sessionId"]
    rows = fetch_all(
        db,
        f"SELECT day, {TOTALS_SQL} FROM usage_records WHERE {clause} AND day >= :start AND day <= :end "
        "GROUP BY day ORDER BY day",
        start=args["from_"].isoformat(), end=args["to"].isoformat(), **params,
    )
    return ok({"from": args["from_"].isoformat(), "to": args["to"].isoformat(),
               "rows": [{"date": r["day"], "prompt_tokens": int(r["prompt_tokens"]),
                         "completion_tokens": int(r["completion_tokens"]), "total_tokens": int(r["total_tokens"])}
                        for r in rows]})

"""/api/task-trace (admin): the recorded lifecycles of chat generations (see common/task_trace.py)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app
from marshmallow import validate

from common import task_trace
from common.auth.actors import require_admin
from common.db import execute, fetch_all, fetch_one, get_db
from common.errors import NotFound, ok
from common.validation import (
    QueryId,
    QueryInteger,
    RequestSchema,
    StrictInteger,
    StrictString,
    load_args,
    load_body,
    pagination,
)

bp = Blueprint("task_trace", __name__, url_prefix="/api/task-trace")

DETAIL_EVENTS_LIMIT = 2000  # what the detail view returns (a trace holds at most task_trace.MAX_EVENTS)


class ListSchema(RequestSchema):
    page = QueryInteger(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    pageSize = QueryInteger(load_default=20, validate=validate.Range(min=1, max=200))
    sessionId = QueryId(load_default=None)
    status = StrictString(load_default=None, validate=validate.OneOf(task_trace.STATUSES))


class CleanupSchema(RequestSchema):
    retentionDays = StrictInteger(load_default=None, allow_none=True, validate=validate.Range(min=0, max=3650))


def _trace_or_404(db, trace_id: int) -> dict:
    row = task_trace.get_trace(db, trace_id)
    if row is None:
        raise NotFound("Trace not found", code="trace_not_found")
    return row


@bp.get("/")
def list_traces():
    require_admin()
    args = load_args(ListSchema)
    db = get_db()
    where, params = [], {}
    if args.get("sessionId") is not None:
        where.append("session_id = :sid")
        params["sid"] = args["sessionId"]
    if args.get("status"):
        where.append("status = :status")
        params["status"] = args["status"]
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    total = fetch_one(db, f"SELECT COUNT(*) AS n FROM task_traces {clause}", **params)["n"]
    size = args["pageSize"]
    rows = fetch_all(db, f"SELECT * FROM task_traces {clause} ORDER BY id DESC LIMIT :limit OFFSET :offset",
                     limit=size, offset=(args["page"] - 1) * size, **params)
    block = pagination(args["page"], size, total) | {"pageSize": size}
    return ok({"traces": [task_trace.trace_shape(r) for r in rows], "pagination": block,
               "enabled": current_app.extensions["parley.settings"].get("task_trace_enabled")})


@bp.get("/<int:trace_id>")
def get_trace(trace_id: int):
    require_admin()
    db = get_db()
    trace = _trace_or_404(db, trace_id)
    events = task_trace.trace_events(db, trace_id)[:DETAIL_EVENTS_LIMIT]
    return ok({"trace": task_trace.trace_shape(trace), "events": [task_trace.event_shape(e) for e in events]})


@bp.get("/<int:trace_id>/export")
def export_trace(trace_id: int):
    require_admin()
    db = get_db()
    trace = _trace_or_404(db, trace_id)
    text = task_trace.export_text(trace, task_trace.trace_events(db, trace_id))
    return Response(text, mimetype="text/plain", headers={
        "Content-Disposition": f'attachment; filename="task-trace-{trace_id}.txt"',
        "Cache-Control": "no-store",
    })


@bp.delete("/<int:trace_id>")
def delete_trace(trace_id: int):
    require_admin()
    db = get_db()
    _trace_or_404(db, trace_id)
    with db as tx:
        execute(tx, "DELETE FROM task_traces WHERE id = :id", id=trace_id)
    return ok({"id": trace_id, "deleted": True}, "Trace deleted")


@bp.post("/cleanup")
def cleanup():
    require_admin()
    data = load_body(CleanupSchema, required=False)
    days = data.get("retentionDays")
    if days is None:
        days = current_app.extensions["parley.settings"].get("task_trace_retention_days")
    deleted = task_trace.delete_older_than(get_db(), days)
    return ok({"deleted": deleted, "retentionDays": days})

"""/api/catalog: the models an actor may use, and the admin's catalog tools (refresh, per-model
overrides of tags, capabilities, limits, temperature and access policy)."""

from __future__ import annotations

from flask import Blueprint, current_app, request
from marshmallow import validate

from common.auth.actors import current_actor, require_admin
from common.catalog import refresh_connections
from common.connection_schema import MAX_ID
from common.connections import key_material, manageable_connection
from common.db import fetch_all, get_db
from common.errors import NotFound, ok
from common.model_access import list_models
from common.model_overrides import (
    ModelRefSchema,
    OverrideSchema,
    delete_override,
    list_overrides,
    override_shape,
    save_override,
)
from common.validation import RequestSchema, StrictInteger, json_body, load, load_body

bp = Blueprint("catalog", __name__, url_prefix="/api/catalog")


class RefreshSchema(RequestSchema):
    connection_id = StrictInteger(data_key="connectionId", allow_none=True, validate=validate.Range(min=1, max=MAX_ID))


@bp.get("/models")
def models():
    return ok(list_models(get_db(), current_actor()))


@bp.post("/models/refresh")
def refresh():
    actor = require_admin()
    data = load_body(RefreshSchema, required=False)
    db = get_db()
    if data.get("connection_id") is not None:
        rows = [manageable_connection(db, actor, data["connection_id"])]
    else:
        rows = fetch_all(
            db, "SELECT * FROM connections WHERE owner_user_id IS NULL AND enable = :t ORDER BY id", t=True
        )
    allow_hosts = current_app.extensions["parley.settings"].get("outbound_allow_hosts") or ""
    results = refresh_connections(db, rows, material=key_material(), allow_hosts=allow_hosts)
    failed = sum(1 for r in results if r.error)
    return ok(
        {
            "refreshed": len(results) - failed,
            "failed": failed,
            "results": [
                {"connectionId": r.connection_id, "success": r.error is None, "error": r.error, "models": len(r.models)}
                for r in results
            ],
        },
        "Catalog refreshed",
    )


@bp.put("/models/tags")
def put_override():
    actor = require_admin()
    data = load_body(OverrideSchema)
    db = get_db()
    connection = manageable_connection(db, actor, data["connection_id"])
    return ok(override_shape(save_override(db, data), connection.get("prefix_id")), "Model override saved")


@bp.delete("/models/tags")
def remove_override():
    actor = require_admin()
    body = json_body(required=False) or request.args.to_dict(flat=True)
    text = body.get("connectionId")
    if isinstance(text, str) and text.isdigit() and len(text) <= 12:  # from the query string
        body = {**body, "connectionId": int(body["connectionId"])}
    data = load(ModelRefSchema, body)
    db = get_db()
    manageable_connection(db, actor, data["connection_id"])
    if not delete_override(db, data["connection_id"], data["raw_id"]):
        raise NotFound("No override for this model", code="override_not_found")
    return ok({"connectionId": data["connection_id"], "rawId": data["raw_id"], "deleted": True}, "Override removed")


@bp.get("/models/overrides")
def overrides():
    actor = require_admin()
    return ok([override_shape(row) for row in list_overrides(get_db(), actor.user_id)])

"""/api/connections: provider connections. Admins manage system connections; users manage their own
personal connections while the setting `personal_connections_enabled` is on (else 403). Anyone
else's connection is 404. Keys are returned masked only."""

from __future__ import annotations

from flask import Blueprint, current_app, request

from common.auth.actors import Actor, require_user
from common.connection_ops import create_from_body, update_from_body, verify_from_body
from common.connection_transfer import export_connections, import_connections
from common.connections import (
    connection_shape,
    delete_connection,
    key_material,
    keys_for,
    list_manageable,
    manageable_connection,
    require_manager,
)
from common.db import get_db
from common.errors import ok
from common.validation import json_body

bp = Blueprint("connections", __name__, url_prefix="/api/connections")


def _manager() -> Actor:
    actor = require_user()
    require_manager(actor, current_app.extensions["parley.settings"])
    return actor


@bp.get("/")
def list_connections():
    actor = _manager()
    db = get_db()
    rows = list_manageable(db, actor)
    keys = keys_for(db, [r["id"] for r in rows])
    return ok([connection_shape(r, keys[r["id"]]) for r in rows])


@bp.post("/")
def create():
    actor = _manager()
    owner = None if actor.is_admin else actor.user_id
    return ok(create_from_body(get_db(), json_body(), owner, key_material()), "Connection created", status=201)


@bp.get("/<int:connection_id>")
def get_one(connection_id: int):
    actor = _manager()
    db = get_db()
    row = manageable_connection(db, actor, connection_id)
    return ok(connection_shape(row, keys_for(db, [row["id"]])[row["id"]]))


@bp.put("/<int:connection_id>")
def update(connection_id: int):
    actor = _manager()
    db = get_db()
    row = manageable_connection(db, actor, connection_id)
    return ok(update_from_body(db, row, json_body(), key_material()), "Connection saved")


@bp.delete("/<int:connection_id>")
def delete(connection_id: int):
    actor = _manager()
    db = get_db()
    delete_connection(db, manageable_connection(db, actor, connection_id))
    return ok({"id": connection_id, "deleted": True}, "Connection deleted")


@bp.post("/verify")
def verify():
    actor = _manager()
    return ok(verify_from_body(get_db(), actor, json_body(), key_material()))


@bp.get("/export")
def export():
    actor = _manager()
    include = request.args.get("includeSecrets", "").strip().lower() in {"1", "true", "yes"}
    return ok(export_connections(get_db(), actor, include, key_material()))


@bp.post("/import")
def import_():
    actor = _manager()
    return ok(import_connections(get_db(), actor, json_body(), key_material()), "Connections imported")

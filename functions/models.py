"""/api/models: the seed 000/001/003 model routes, served on top of connections and the catalog.

- `GET /` lists the models the actor may use (the catalog shape plus `context_limit`,
  `pricing_per_1k_tokens` and `is_active` for seed-003 clients);
- `POST /`, `GET|PUT|DELETE /:id` are personal model configurations = personal connections (owner
  only, 404 for anyone else; 403 while `personal_connections_enabled` is off);
- `POST /system` (admin) creates a system connection.
"""

from __future__ import annotations

from flask import Blueprint, current_app

from common.auth.actors import Actor, current_actor, require_admin, require_user
from common.connection_ops import create_from_body, shape_one, update_from_body
from common.connections import delete_connection, key_material, manageable_connection
from common.db import get_db
from common.errors import Forbidden, ok
from common.model_access import list_models
from common.validation import json_body

bp = Blueprint("models", __name__, url_prefix="/api/models")


def _personal_actor() -> Actor:
    actor = require_user()
    if not current_app.extensions["parley.settings"].get("personal_connections_enabled"):
        raise Forbidden("Personal connections are disabled by the administrator", code="personal_connections_disabled")
    return actor


@bp.get("/")
def index():
    models = list_models(get_db(), current_actor())
    for model in models:
        model.update(context_limit=model["contextWindow"], pricing_per_1k_tokens=None, is_active=True)
    return ok(models)


@bp.post("/")
def create_personal():
    actor = _personal_actor()
    shape = create_from_body(get_db(), json_body(), actor.user_id, key_material())
    return ok(shape, "Model configuration created", status=201)


@bp.post("/system")
def create_system():
    require_admin()
    return ok(create_from_body(get_db(), json_body(), None, key_material()), "Connection created", status=201)


@bp.get("/<int:connection_id>")
def get_personal(connection_id: int):
    actor = _personal_actor()
    db = get_db()
    return ok(shape_one(db, manageable_connection(db, actor, connection_id, personal_only=True)))


@bp.put("/<int:connection_id>")
def update_personal(connection_id: int):
    actor = _personal_actor()
    db = get_db()
    row = manageable_connection(db, actor, connection_id, personal_only=True)
    return ok(update_from_body(db, row, json_body(), key_material()), "Model configuration saved")


@bp.delete("/<int:connection_id>")
def delete_personal(connection_id: int):
    actor = _personal_actor()
    db = get_db()
    delete_connection(db, manageable_connection(db, actor, connection_id, personal_only=True))
    return ok({"id": connection_id, "deleted": True}, "Model configuration deleted")

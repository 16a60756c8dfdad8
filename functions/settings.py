"""/api/settings: health, app info, branding, system settings (admin) and personal settings."""

from __future__ import annotations

import json

from flask import Blueprint, current_app
from marshmallow import ValidationError, fields, validate, validates

from common import images, quota
from common.auth.actors import optional_actor, require_admin, require_user
from common.config import VERSION
from common.db import fetch_one, get_db, iso, utcnow
from common.errors import Conflict, ServiceUnavailable, ValidationFailed, ok
from common.request_hooks import accepts_body
from common.settings import SettingsInvalid
from common.users import USERNAME_PATTERN, get_user, preferred_model, update_user, username_taken
from common.validation import RequestSchema, StrictInteger, StrictString, json_body, load_body

bp = Blueprint("settings", __name__, url_prefix="/api/settings")


def _settings():
    return current_app.extensions["parley.settings"]


@bp.get("/health")
def health():
    try:
        fetch_one(get_db(), "SELECT 1 AS ok")
    except Exception as exc:  # any driver error means the database is unreachable
        current_app.logger.warning("health check: database unreachable: %s", type(exc).__name__)
        raise ServiceUnavailable(
            "Database is unreachable",
            code="database_unavailable",
            data={"status": "unhealthy", "timestamp": iso(utcnow()), "version": VERSION, "database": "disconnected"},
        ) from exc
    return ok({"status": "healthy", "timestamp": iso(utcnow()), "version": VERSION, "database": "connected"})


@bp.get("/app-info")
def app_info():
    settings = _settings().all()
    config = current_app.config["PARLEY"]
    return ok(
        {
            "name": settings["brand_text"],
            "version": VERSION,
            "mode": config.app_env,
            "features": {
                "registration": settings["registration_enabled"],
                "streaming": True,
                "anonymous": settings["anonymous_daily_quota"] > 0,
                "file_upload": True,
            },
        }
    )


@bp.get("/branding")
def branding():
    settings = _settings().all()
    return ok({key: value for key, value in settings.items() if key.startswith("brand_")})


@bp.get("/system")
def get_system():
    actor = optional_actor()
    settings = _settings()
    return ok(settings.all() if actor is not None and actor.is_admin else settings.public())


@bp.put("/system")
def put_system():
    require_admin()
    changes = json_body()
    try:
        return ok(_settings().update(changes), "Settings saved")
    except SettingsInvalid as exc:
        raise ValidationFailed(exc.errors) from exc


@bp.post("/system/anonymous-quota/reset")
def reset_anonymous_quota():
    """Zero today's visitor and per-address counters; `{reset: n}` counters had units used."""
    require_admin()
    return ok({"reset": quota.reset_used(get_db(), (quota.ANON, quota.ADDRESS))}, "Anonymous quotas reset")


class PreferredModelSchema(RequestSchema):
    modelId = StrictString(required=True, validate=validate.Length(min=1, max=300))
    connectionId = StrictInteger(load_default=None, allow_none=True)
    rawId = StrictString(load_default=None, allow_none=True, validate=validate.Length(max=300))


class PersonalSchema(RequestSchema):
    preferred_model = fields.Nested(PreferredModelSchema, allow_none=True)
    avatar_url = StrictString(allow_none=True, validate=validate.Length(max=2000))
    username = StrictString(
        validate=validate.Regexp(USERNAME_PATTERN, error="Username must be 3-20 letters, digits or underscores.")
    )
    personal_prompt = StrictString(allow_none=True, validate=validate.Length(max=12000))
    avatar = fields.Raw(allow_none=True)  # {data, mime}: an uploaded avatar (common.images); null removes it

    @validates("avatar_url")
    def _avatar(self, value: str | None, **_kwargs) -> None:
        if value and not (value.startswith("https://") or value.startswith("http://") or value.startswith("/")):
            raise ValidationError("Avatar URL must be an http(s) URL or a path on this site.")


def _personal(row: dict) -> dict:
    return {
        "preferred_model": preferred_model(row),
        "avatar_url": row.get("avatar_url"),
        "username": row["username"],
        "personal_prompt": row.get("personal_prompt") or "",
    }


@bp.get("/personal")
def get_personal():
    actor = require_user()
    return ok(_personal(get_user(get_db(), actor.user_id)))


@bp.put("/personal")
@accepts_body(large=True)  # avatar uploads
def put_personal():
    actor = require_user()
    data = load_body(PersonalSchema)
    upload = None
    if data.get("avatar") is not None:
        upload = images.parse_upload(data["avatar"], max_bytes=images.MAX_AVATAR_BYTES, field="avatar")
    db = get_db()
    changes: dict = {}
    if "preferred_model" in data:
        changes["preferred_model"] = json.dumps(data["preferred_model"]) if data["preferred_model"] else None
    if "avatar_url" in data:
        changes["avatar_url"] = data["avatar_url"]
    if "personal_prompt" in data:
        changes["personal_prompt"] = data["personal_prompt"]
    if "username" in data:
        if username_taken(db, data["username"], except_id=actor.user_id):
            raise Conflict("Username is already taken", code="username_taken")
        changes["username"] = data["username"]
    if upload is not None:
        changes["avatar_url"] = images.save_avatar(db, actor.user_id, upload)
    elif "avatar" in data:
        changes["avatar_url"] = None
    row = update_user(db, actor.user_id, **changes) if changes else get_user(db, actor.user_id)
    images.prune_avatars(db, actor.user_id, keep_url=row.get("avatar_url"))  # the replaced one, if any
    return ok(_personal(row), "Personal settings saved")

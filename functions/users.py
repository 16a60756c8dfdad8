"""/api/users: the admin's user management (list, create, approve, reject, status, role, password,
username, delete, quota). An admin cannot demote, disable or delete themself, and the last active
admin is protected."""

from __future__ import annotations

from flask import Blueprint, current_app
from marshmallow import ValidationError, validate, validates

from common import quota
from common.auth import throttle
from common.auth.actors import Actor, require_admin
from common.auth.passwords import hash_password, password_problem
from common.db import fetch_all, fetch_one, get_db, utcnow
from common.errors import Conflict, Forbidden, NotFound, ok
from common.users import (
    ACTIVE,
    ADMIN,
    DISABLED,
    PENDING,
    ROLES,
    USERNAME_PATTERN,
    admin_user,
    count_active_admins,
    create_user,
    delete_user_keeping_an_admin,
    get_user,
    revoke_all_tokens,
    update_user,
    update_user_keeping_an_admin,
    username_taken,
)
from common.validation import (
    OptionalEmail,
    QueryInteger,
    RequestSchema,
    StrictBoolean,
    StrictInteger,
    StrictString,
    load_args,
    load_body,
    pagination,
)

bp = Blueprint("users", __name__, url_prefix="/api/users")

USERNAME_FIELD = {
    "validate": validate.Regexp(USERNAME_PATTERN, error="Username must be 3-20 letters, digits or underscores.")
}


class NewPasswordMixin:
    @validates("password")
    def _password(self, value: str, **_kwargs) -> None:
        problem = password_problem(value)
        if problem:
            raise ValidationError(problem)


class ListSchema(RequestSchema):
    page = QueryInteger(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    limit = QueryInteger(load_default=20, validate=validate.Range(min=1, max=100))
    search = StrictString(load_default="", validate=validate.Length(max=100))
    status = StrictString(load_default=None, validate=validate.OneOf((PENDING, ACTIVE, DISABLED)))


class CreateSchema(NewPasswordMixin, RequestSchema):
    username = StrictString(required=True, **USERNAME_FIELD)
    password = StrictString(required=True)
    email = OptionalEmail(load_default=None, allow_none=True)
    role = StrictString(load_default="USER", validate=validate.OneOf(ROLES))
    status = StrictString(load_default=ACTIVE, validate=validate.OneOf((PENDING, ACTIVE, DISABLED)))


class UsernameSchema(RequestSchema):
    username = StrictString(required=True, **USERNAME_FIELD)


class RoleSchema(RequestSchema):
    role = StrictString(required=True, validate=validate.OneOf(ROLES))


class RejectSchema(RequestSchema):
    reason = StrictString(load_default=None, allow_none=True, validate=validate.Length(max=500))


class StatusSchema(RequestSchema):
    status = StrictString(required=True, validate=validate.OneOf((ACTIVE, DISABLED)))
    reason = StrictString(load_default=None, allow_none=True, validate=validate.Length(max=500))


class PasswordSchema(NewPasswordMixin, RequestSchema):
    password = StrictString(required=True)


class QuotaSchema(RequestSchema):
    dailyLimit = StrictInteger(allow_none=True, validate=validate.Range(min=0, max=10_000_000))  # null = default
    resetUsed = StrictBoolean(load_default=False)


def _target(user_id: int) -> dict:
    user = get_user(get_db(), user_id)
    if user is None:
        raise NotFound("User not found", code="user_not_found")
    return user


def _protect_admins(admin: Actor, target: dict, *, removes_admin: bool) -> None:
    """Refuse changes that would lock the site out: acting on oneself, or the last active admin.

    The count here gives the clear early answer; the write itself re-checks atomically
    (`update_user_keeping_an_admin`), because two admins may remove each other at the same moment."""
    if not removes_admin:
        return
    if target["id"] == admin.user_id:
        raise Forbidden("You cannot demote, disable or delete your own account", code="self_protection")
    if target["role"] == ADMIN and target["status"] == ACTIVE and count_active_admins(get_db()) <= 1:
        raise Conflict("The last active administrator cannot be removed", code="last_admin")


@bp.get("/")
def list_users():
    require_admin()
    args = load_args(ListSchema)
    where, params = ["1 = 1"], {}
    if args["search"]:
        where.append("(lower(username) LIKE :q OR lower(COALESCE(email, '')) LIKE :q)")
        escaped = args["search"].lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params["q"] = f"%{escaped}%"
    if args["status"]:
        where.append("status = :status")
        params["status"] = args["status"]
    clause = " AND ".join(where).replace("LIKE :q", "LIKE :q ESCAPE '\\'")
    db = get_db()
    total = fetch_one(db, f"SELECT COUNT(*) AS n FROM users WHERE {clause}", **params)["n"]
    rows = fetch_all(
        db,
        f"SELECT * FROM users WHERE {clause} ORDER BY id LIMIT :limit OFFSET :offset",
        limit=args["limit"],
        offset=(args["page"] - 1) * args["limit"],
        **params,
    )
    return ok({"users": [admin_user(r) for r in rows], "pagination": pagination(args["page"], args["limit"], total)})


@bp.post("/")
def create():
    require_admin()
    data = load_body(CreateSchema)
    user = create_user(
        get_db(),
        username=data["username"],
        password_hash=hash_password(data["password"], current_app.config["PARLEY"].bcrypt_rounds),
        email=data.get("email"),
        role=data["role"],
        status=data["status"],
    )
    return ok(admin_user(user), "User created", 201)


@bp.get("/<int:user_id>")
def get_one(user_id: int):
    require_admin()
    return ok(admin_user(_target(user_id)))


@bp.put("/<int:user_id>/username")
def rename(user_id: int):
    require_admin()
    data = load_body(UsernameSchema)
    _target(user_id)
    if username_taken(get_db(), data["username"], except_id=user_id):
        raise Conflict("Username is already taken", code="username_taken")
    return ok(admin_user(update_user(get_db(), user_id, username=data["username"])))


@bp.put("/<int:user_id>/role")
def set_role(user_id: int):
    admin = require_admin()
    data = load_body(RoleSchema)
    target = _target(user_id)
    removes_admin = target["role"] == ADMIN and data["role"] != ADMIN
    _protect_admins(admin, target, removes_admin=removes_admin)
    write = update_user_keeping_an_admin if removes_admin else update_user
    return ok(admin_user(write(get_db(), user_id, role=data["role"])))


@bp.post("/<int:user_id>/approve")
def approve(user_id: int):
    require_admin()
    _target(user_id)
    user = update_user(get_db(), user_id, status=ACTIVE, rejection_reason=None, approved_at=utcnow())
    return ok(admin_user(user), "User approved")


@bp.post("/<int:user_id>/reject")
def reject(user_id: int):
    admin = require_admin()
    data = load_body(RejectSchema, required=False)
    target = _target(user_id)
    _protect_admins(admin, target, removes_admin=True)
    user = update_user_keeping_an_admin(get_db(), user_id, status=DISABLED, rejection_reason=data.get("reason"))
    revoke_all_tokens(get_db(), user_id)
    return ok(admin_user(user), "User rejected")


@bp.post("/<int:user_id>/status")
def set_status(user_id: int):
    admin = require_admin()
    data = load_body(StatusSchema)
    target = _target(user_id)
    disabling = data["status"] == DISABLED
    _protect_admins(admin, target, removes_admin=disabling)
    changes = {"status": data["status"], "rejection_reason": data.get("reason") if disabling else None}
    if not disabling and target.get("approved_at") is None:
        changes["approved_at"] = utcnow()
    write = update_user_keeping_an_admin if disabling else update_user
    user = write(get_db(), user_id, **changes)
    if disabling:
        revoke_all_tokens(get_db(), user_id)
    return ok(admin_user(user))


@bp.put("/<int:user_id>/password")
def reset_password(user_id: int):
    require_admin()
    data = load_body(PasswordSchema)
    _target(user_id)
    rounds = current_app.config["PARLEY"].bcrypt_rounds
    update_user(get_db(), user_id, password_hash=hash_password(data["password"], rounds))
    revoke_all_tokens(get_db(), user_id)
    throttle.clear(get_db(), throttle.account_key(user_id))  # the new password works at once
    return ok(admin_user(get_user(get_db(), user_id)), "Password reset")


@bp.delete("/<int:user_id>")
def delete(user_id: int):
    admin = require_admin()
    target = _target(user_id)
    _protect_admins(admin, target, removes_admin=True)
    delete_user_keeping_an_admin(get_db(), user_id)
    return ok({"id": user_id}, "User deleted")


def _quota_of(user: dict) -> dict:
    """The QuotaSnapshot of a user, as they would see it."""
    target = Actor("user", user_id=user["id"], username=user["username"], role=user["role"])
    return quota.snapshot(get_db(), target)


@bp.get("/<int:user_id>/quota")
def get_quota(user_id: int):
    require_admin()
    return ok(_quota_of(_target(user_id)))


@bp.put("/<int:user_id>/quota")
def set_quota(user_id: int):
    require_admin()
    data = load_body(QuotaSchema)
    user = _target(user_id)
    if "dailyLimit" in data:
        user = update_user(get_db(), user_id, daily_quota=data["dailyLimit"])
    if data["resetUsed"]:
        quota.reset_used(get_db(), (quota.USER,), str(user_id))
    return ok(_quota_of(user), "Quota saved")

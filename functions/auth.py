"""/api/auth: register, login, logout, the actor bootstrap, /me and password change."""

from __future__ import annotations

from flask import Blueprint, current_app, request
from marshmallow import ValidationError, validate, validates, validates_schema

from common import anonymous, quota
from common.auth import throttle
from common.auth.actors import TOKEN_COOKIE, check_user_may_act, optional_actor, require_user
from common.auth.cookies import clear_token_cookie, set_token_cookie
from common.auth.passwords import hash_password, password_problem, verify_password
from common.auth.tokens import InvalidToken, decode_token, issue_token, revoke
from common.db import fetch_one, get_db, utcnow
from common.errors import Forbidden, TooManyRequests, Unauthorized, ok
from common.users import (
    ACTIVE,
    PENDING,
    USERNAME_PATTERN,
    create_user,
    find_by_login,
    get_user,
    preferred_model,
    public_user,
    revoke_all_tokens,
    update_user,
)
from common.validation import OptionalEmail, RequestSchema, StrictString, load_body

bp = Blueprint("auth", __name__, url_prefix="/api/auth")


class RegisterSchema(RequestSchema):
    username = StrictString(
        required=True,
        validate=validate.Regexp(USERNAME_PATTERN, error="Username must be 3-20 letters, digits or underscores."),
    )
    password = StrictString(required=True)
    email = OptionalEmail(load_default=None, allow_none=True)

    @validates("password")
    def _password(self, value: str, **_kwargs) -> None:
        problem = password_problem(value)
        if problem:
            raise ValidationError(problem)


class LoginSchema(RequestSchema):
    username = StrictString(load_default=None, validate=validate.Length(min=1, max=320))
    email = StrictString(load_default=None, validate=validate.Length(min=1, max=320))
    password = StrictString(required=True, validate=validate.Length(min=1, max=1024))

    @validates_schema
    def _login_given(self, data: dict, **_kwargs) -> None:
        if not data.get("username") and not data.get("email"):
            raise ValidationError("Give a username or an email.", "username")


class PasswordChangeSchema(RequestSchema):
    currentPassword = StrictString(required=True, validate=validate.Length(min=1, max=1024))
    newPassword = StrictString(required=True)

    @validates("newPassword")
    def _new_password(self, value: str, **_kwargs) -> None:
        problem = password_problem(value)
        if problem:
            raise ValidationError(problem)


def _config():
    return current_app.config["PARLEY"]


def _settings():
    return current_app.extensions["parley.settings"]


def _login_response(user: dict, status: int = 200, message: str | None = None, *, claim: bool = False):
    """The token in the body and the cookie; with `claim`, the visitor cookie's data becomes the user's."""
    config = _config()
    if claim:
        anonymous.claim_request_visitor(get_db(), user["id"])
    token, expires = issue_token(user, config.jwt_secret, config.jwt_expires_hours)
    response, code = ok({"user": public_user(user), "token": token}, message, status)
    set_token_cookie(response, token, expires)
    anonymous.clear_visitor_cookie(response)
    return response, code


@bp.post("/register")
def register():
    data = load_body(RegisterSchema)
    db = get_db()
    settings = _settings()
    first_account = fetch_one(db, "SELECT COUNT(*) AS n FROM users")["n"] == 0
    if not first_account and not settings.get("registration_enabled"):
        raise Forbidden("Registration is disabled", code="registration_disabled")
    status = PENDING if settings.get("registration_approval_required") else ACTIVE
    user = create_user(
        db,
        username=data["username"],
        password_hash=hash_password(data["password"], _config().bcrypt_rounds),
        email=data.get("email"),
        status=status,
    )
    if user["status"] != ACTIVE:
        return ok({"user": public_user(user)}, "Registration received: awaiting approval")
    return _login_response(user, message="Registered", claim=True)


@bp.post("/login")
def login():
    data = load_body(LoginSchema)
    config = _config()
    db = get_db()
    login_name = (data.get("username") or data.get("email") or "").strip().lower()
    user = find_by_login(db, login_name)
    # Per account, not per login string: the username, the email and their case variants share one
    # counter (an unknown name gets its own, so the answer does not reveal whether an account exists).
    account_key = throttle.account_key(user["id"]) if user else throttle.unknown_login_key(login_name)
    keys = [account_key, throttle.address_key(request.remote_addr)]
    wait = throttle.retry_after_seconds(db, keys)
    if wait:
        raise TooManyRequests(
            "Too many failed logins; try again later",
            code="login_throttled",
            headers={"Retry-After": str(wait)},
        )
    if not verify_password(data["password"], user["password_hash"] if user else None, config.bcrypt_rounds):
        throttle.record_failure(db, keys[0], config.login_max_failures_per_account, config.login_lockout_seconds)
        throttle.record_failure(db, keys[1], config.login_max_failures_per_address, config.login_lockout_seconds)
        raise Unauthorized("Invalid username or password", code="invalid_credentials")
    assert user is not None
    throttle.clear(db, keys[0])
    check_user_may_act(user)
    user = update_user(db, user["id"], last_login_at=utcnow())
    return _login_response(user, claim=True)


@bp.post("/logout")
def logout():
    token = request.headers.get("Authorization", "").partition(" ")[2].strip() or request.cookies.get(TOKEN_COOKIE)
    if token:
        try:
            revoke(get_db(), decode_token(token, _config().jwt_secret))
        except InvalidToken:
            pass  # an expired or foreign token needs no revocation; the cookie is cleared anyway
    response, status = ok(None, "Logged out")
    clear_token_cookie(response)
    return response, status


@bp.get("/actor")
def actor():
    current = optional_actor()
    user = None
    preferred = None
    if current is not None and current.is_user:
        row = get_user(get_db(), current.user_id)
        user = public_user(row)
        preferred = preferred_model(row)
    return ok(
        {
            "actor": current.describe() if current else None,
            "user": user,
            "quota": quota.snapshot(get_db(), current) if current else None,
            "preferredModel": preferred,
        }
    )


@bp.get("/me")
def me():
    current = require_user()
    return ok(public_user(get_user(get_db(), current.user_id)))


@bp.put("/password")
def change_password():
    current = require_user()
    data = load_body(PasswordChangeSchema)
    db = get_db()
    row = get_user(db, current.user_id)
    if not verify_password(data["currentPassword"], row["password_hash"], _config().bcrypt_rounds):
        raise Unauthorized("Current password is wrong", code="invalid_credentials")
    update_user(db, current.user_id, password_hash=hash_password(data["newPassword"], _config().bcrypt_rounds))
    revoke_all_tokens(db, current.user_id)
    # The password change revoked every token, this one included: hand the caller a fresh one.
    return _login_response(get_user(db, current.user_id), message="Password changed")

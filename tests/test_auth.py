"""Accounts and authentication (/api/auth): api.md sections A and B, security.md item 7."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from common.db import fetch_all, fetch_one, release
from tests.api_client import ApiClient, assert_failure, assert_no_secret_keys
from tests.conftest import PASSWORD, make_app

ANON_KEY = re.compile(r"^[A-Za-z0-9_-]{10,128}$")


# --- helpers -------------------------------------------------------------------------------------


def one(app, sql: str, **params) -> dict | None:
    """One row straight from the app's database (not through the API)."""
    db = app.extensions["parley.db"]
    try:
        return fetch_one(db, sql, **params)
    finally:
        release(db)


def count(app, table: str) -> int:
    return one(app, f"SELECT COUNT(*) AS n FROM {table}")["n"]


def register(api, username: str, password: str = PASSWORD, **extra):
    return api.with_token(None).post("/api/auth/register", {"username": username, "password": password, **extra})


def login(api, username: str, password: str = PASSWORD):
    return api.with_token(None).post("/api/auth/login", {"username": username, "password": password})


def set_settings(admin, **values) -> None:
    reply = admin.put("/api/settings/system", values)
    assert reply.status == 200, reply.body


def cookie_value(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0].split("=", 1)[1]


def cookie_attrs(set_cookie: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in set_cookie.split(";")[1:]}






def pending_user(api, admin, username: str = "pending1"):
    """A registered account still awaiting approval (the admin fixture exists, so it is not the first)."""
    reply = register(api, username)
    assert reply.status == 200 and reply.data["user"]["status"] == "PENDING"
    return reply


# --- registration --------------------------------------------------------------------------------


def test_first_account_becomes_active_admin_and_is_logged_in(api, app):
    reply = api.post("/api/auth/register", {"username": "founder", "password": PASSWORD, "email": "F@Example.com"})

    assert reply.status == 200 and reply.body["success"] is True
    user = reply.data["user"]
    assert user["role"] == "ADMIN" and user["status"] == "ACTIVE"
    assert user["email"] == "f@example.com"
    assert isinstance(reply.data["token"], str) and reply.data["token"]
    cookie = reply.cookies["token"]
    assert cookie_value(cookie) == reply.data["token"]
    assert {"httponly", "samesite", "path"} <= cookie_attrs(cookie)
    assert "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # COOKIE_SECURE is off by default
    row = one(app, "SELECT role, status, approved_at FROM users WHERE username = 'founder'")
    assert row["role"] == "ADMIN" and row["status"] == "ACTIVE" and row["approved_at"] is not None


def test_token_cookie_is_secure_when_cookie_secure_is_set(tmp_path):
    app = make_app(tmp_path / "secure", cookie_secure=True)
    try:
        reply = register(ApiClient(app), "founder")
        assert reply.status == 200
        assert "Secure" in reply.cookies["token"]
    finally:
        app.extensions["parley.db"].close()


def test_second_account_waits_for_approval(api, admin, app):
    reply = register(api, "second")

    assert reply.status == 200 and reply.body["success"] is True
    assert "awaiting approval" in reply.body["message"]
    assert reply.data["user"]["role"] == "USER" and reply.data["user"]["status"] == "PENDING"
    assert "token" not in reply.data
    assert "token" not in reply.cookies
    assert one(app, "SELECT status FROM users WHERE username = 'second'")["status"] == "PENDING"


def test_second_account_is_active_when_approval_is_off(api, admin):
    set_settings(admin, registration_approval_required=False)

    reply = register(api, "second")

    assert reply.status == 200
    assert reply.data["user"]["status"] == "ACTIVE" and reply.data["user"]["role"] == "USER"
    assert reply.data["token"]
    assert api.get("/api/auth/me", token=reply.data["token"]).data["username"] == "second"


def test_registration_disabled_refuses_new_accounts(api, admin, app):
    set_settings(admin, registration_enabled=False)
    before = count(app, "users")

    reply = register(api, "latecomer")

    assert_failure(reply, 403, "registration_disabled")
    assert count(app, "users") == before


def test_registration_disabled_still_allows_the_first_account(tmp_path, monkeypatch):
    monkeypatch.setenv("REGISTRATION_ENABLED", "false")
    app = make_app(tmp_path / "closed")
    try:
        reply = register(ApiClient(app), "founder")
        assert reply.status == 200 and reply.data["user"]["role"] == "ADMIN"
        assert_failure(register(ApiClient(app), "second"), 403, "registration_disabled")
    finally:
        app.extensions["parley.db"].close()


def test_duplicate_username_is_a_conflict_whatever_the_case(api, admin, app):
    reply = register(api, "ADMIN")

    assert_failure(reply, 409, "username_taken")
    assert count(app, "users") == 1


def test_duplicate_email_is_a_conflict_whatever_the_case(api, admin, app):
    assert register(api, "first_mail", email="same@example.com").status == 200

    reply = register(api, "second_mail", email="Same@Example.COM")

    assert_failure(reply, 409, "email_taken")
    assert one(app, "SELECT COUNT(*) AS n FROM users WHERE username = 'second_mail'")["n"] == 0


def test_blank_email_is_treated_as_no_email(api, admin, app):
    reply = register(api, "no_mail", email="")

    assert reply.status == 200, reply.body
    assert reply.data["user"]["email"] is None


@pytest.mark.parametrize(
    "username",
    ["ab", "a" * 21, "with space", "dash-name", "dot.name", "émile", "x@y", "", "<script>"],
)
def test_username_outside_the_rules_is_a_validation_error(api, app, username):
    reply = register(api, username)

    assert_failure(reply, 400, "validation_error")
    assert "username" in reply.data["fields"]
    assert count(app, "users") == 0


@pytest.mark.parametrize("username", ["abc", "A" * 20, "under_score_9"])
def test_username_inside_the_rules_is_accepted(api, username):
    assert register(api, username).status == 200


@pytest.mark.parametrize(
    "password",
    [
        "short1a",  # 7 bytes
        "a" * 8,  # no digit
        "12345678",  # no letter
        "a1" * 36 + "b",  # 73 bytes: bcrypt would refuse it, so must we (400, never 500)
        "é1" * 24 + "a",  # 49 characters but 73 bytes
        "",
    ],
)
def test_password_outside_the_rules_is_a_validation_error(api, app, password):
    reply = register(api, "someone", password)

    assert_failure(reply, 400, "validation_error")
    assert "password" in reply.data["fields"]
    assert count(app, "users") == 0


def test_password_of_exactly_72_bytes_is_accepted(api):
    password = "a1" * 36
    assert register(api, "longpass", password).status == 200
    assert login(api, "longpass", password).status == 200


def test_password_may_be_non_ascii(api):
    password = "пароль123"
    assert register(api, "unicode", password).status == 200
    assert login(api, "unicode", password).status == 200


def test_stored_password_is_a_bcrypt_hash(api, admin, app):
    row = one(app, "SELECT password_hash FROM users WHERE username = 'admin'")
    assert row["password_hash"].startswith("$2") and PASSWORD not in row["password_hash"]


# --- login ---------------------------------------------------------------------------------------


def test_login_by_username_returns_token_and_cookie(api, admin, app):
    reply = login(api, "admin")

    assert reply.status == 200 and reply.body["success"] is True
    assert reply.data["user"]["username"] == "admin"
    assert cookie_value(reply.cookies["token"]) == reply.data["token"]
    assert "HttpOnly" in reply.cookies["token"] and "SameSite=Lax" in reply.cookies["token"]
    assert one(app, "SELECT last_login_at FROM users WHERE username = 'admin'")["last_login_at"] is not None


def test_login_username_is_case_insensitive(api, admin):
    assert login(api, "ADMIN").status == 200


def test_login_by_email_in_the_username_field(api, admin):
    admin.post("/api/users", {"username": "mailer", "password": PASSWORD, "email": "mailer@example.com"})

    reply = login(api, "Mailer@Example.com")

    assert reply.status == 200 and reply.data["user"]["username"] == "mailer"


def test_login_with_email_field(api, admin):
    admin.post("/api/users", {"username": "mailer", "password": PASSWORD, "email": "mailer@example.com"})

    reply = api.post("/api/auth/login", {"email": "mailer@example.com", "password": PASSWORD})

    assert reply.status == 200 and reply.data["user"]["username"] == "mailer"


def test_login_without_username_or_email_is_a_validation_error(api, admin):
    assert_failure(api.post("/api/auth/login", {"password": PASSWORD}), 400, "validation_error")


def test_unknown_user_and_wrong_password_get_the_same_401(api, admin):
    unknown = login(api, "nobody_here")
    wrong = login(api, "admin", "wrong-password-1")

    assert_failure(unknown, 401, "invalid_credentials")
    assert_failure(wrong, 401, "invalid_credentials")
    assert unknown.body == wrong.body
    assert "token" not in unknown.cookies and "token" not in wrong.cookies


def test_overlong_password_at_login_is_a_plain_401(api, admin):
    assert_failure(login(api, "admin", "a1" * 100), 401, "invalid_credentials")


def test_pending_account_cannot_log_in(api, admin):
    pending_user(api, admin)

    reply = login(api, "pending1")

    assert_failure(reply, 423, "account_pending")
    assert reply.data == {"status": "PENDING", "rejectionReason": None}
    assert "token" not in reply.cookies


def test_wrong_password_for_pending_account_is_still_401(api, admin):
    pending_user(api, admin)
    assert_failure(login(api, "pending1", "wrong-password-1"), 401, "invalid_credentials")


def test_disabled_account_cannot_log_in(api, admin):
    created = admin.post("/api/users", {"username": "gone", "password": PASSWORD})
    admin.post(f"/api/users/{created.data['id']}/status", {"status": "DISABLED", "reason": "spam"})

    reply = login(api, "gone")

    assert_failure(reply, 403, "account_disabled")
    assert reply.data == {"status": "DISABLED", "rejectionReason": "spam"}


def test_five_failures_lock_the_account_with_retry_after(api, admin):
    for _ in range(5):
        assert login(api, "admin", "wrong-password-1").status == 401

    reply = login(api, "admin")  # even the right password is refused while locked

    assert_failure(reply, 429, "login_throttled")
    assert int(reply.headers["Retry-After"]) > 0


def test_lock_applies_to_the_account_whichever_login_name_is_used(api, admin):
    admin.post("/api/users", {"username": "target", "password": PASSWORD, "email": "target@example.com"})
    for _ in range(5):
        login(api, "target", "wrong-password-1")

    assert_failure(api.post("/api/auth/login", {"email": "target@example.com", "password": PASSWORD}), 429)
    assert_failure(login(api, "TARGET"), 429)


def test_four_failures_do_not_lock_and_success_resets_the_count(api, admin):
    for _ in range(4):
        login(api, "admin", "wrong-password-1")
    assert login(api, "admin").status == 200
    for _ in range(4):
        login(api, "admin", "wrong-password-1")
    assert login(api, "admin").status == 200


def test_lock_is_stored_in_the_database_and_seen_by_another_worker(api, admin, app, tmp_path):
    for _ in range(5):
        login(api, "admin", "wrong-password-1")
    assert one(app, "SELECT locked_until FROM login_throttle WHERE locked_until IS NOT NULL") is not None

    other_worker = make_app(tmp_path / "data")  # same data dir, same SQLite file
    try:
        reply = login(ApiClient(other_worker), "admin")
        assert_failure(reply, 429, "login_throttled")
        assert "Retry-After" in reply.headers
    finally:
        other_worker.extensions["parley.db"].close()


def test_lock_expires_after_the_lockout_period(api, admin, app):
    for _ in range(5):
        login(api, "admin", "wrong-password-1")
    db = app.extensions["parley.db"]
    past = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1)
    with db as tx:
        tx.query(
            "UPDATE login_throttle SET locked_until = :p, window_started_at = :w", p=past, w=past - timedelta(days=1)
        )
    release(db)

    assert login(api, "admin").status == 200


# --- logout --------------------------------------------------------------------------------------


def test_logout_revokes_the_bearer_token(api, admin):
    token = admin.token
    reply = api.post("/api/auth/logout", token=token)

    assert reply.status == 200 and reply.body["success"] is True
    assert_failure(api.get("/api/auth/me", token=token), 401, "invalid_token")


def test_logout_clears_the_cookie_and_revokes_the_cookie_token(api, admin):
    other_session = login(api, "admin").data["token"]
    browser = api.with_token(None)
    cookie_token = browser.post("/api/auth/login", {"username": "admin", "password": PASSWORD}).data["token"]
    assert browser.get("/api/auth/me").status == 200  # authenticated by cookie only

    reply = browser.post("/api/auth/logout")

    assert reply.status == 200
    cleared = reply.cookies["token"]
    assert cookie_value(cleared) == "" and ("Max-Age=0" in cleared or "Expires=Thu, 01 Jan 1970" in cleared)
    assert browser.get("/api/auth/me").status == 401
    assert_failure(api.get("/api/auth/me", token=cookie_token), 401, "invalid_token")  # revoked, not just forgotten
    assert api.get("/api/auth/me", token=other_session).status == 200  # another session is untouched


def test_logout_only_revokes_that_token(api, admin):
    other = login(api, "admin").data["token"]
    api.post("/api/auth/logout", token=admin.token)

    assert api.get("/api/auth/me", token=other).status == 200


def test_logout_without_a_token_succeeds(api):
    assert api.post("/api/auth/logout").status == 200


# --- password change -----------------------------------------------------------------------------


def test_password_change_with_wrong_current_password_is_401_and_changes_nothing(api, admin, app):
    before = one(app, "SELECT password_hash, token_version FROM users WHERE username = 'admin'")

    reply = admin.put("/api/auth/password", {"currentPassword": "wrong-password-1", "newPassword": "new-pass-2"})

    assert_failure(reply, 401, "invalid_credentials")
    assert one(app, "SELECT password_hash, token_version FROM users WHERE username = 'admin'") == before
    assert admin.get("/api/auth/me").status == 200


def test_password_change_revokes_old_tokens_and_returns_a_working_one(api, admin):
    other_session = login(api, "admin").data["token"]

    reply = admin.put("/api/auth/password", {"currentPassword": PASSWORD, "newPassword": "new-pass-2"})

    assert reply.status == 200
    assert_no_secret_keys(reply.body)
    new_token = reply.data["token"]
    assert cookie_value(reply.cookies["token"]) == new_token
    assert api.get("/api/auth/me", token=new_token).status == 200
    assert_failure(api.get("/api/auth/me", token=admin.token), 401)
    assert_failure(api.get("/api/auth/me", token=other_session), 401)
    assert login(api, "admin", "new-pass-2").status == 200
    assert login(api, "admin", PASSWORD).status == 401


def test_new_password_must_follow_the_rules(api, admin):
    reply = admin.put("/api/auth/password", {"currentPassword": PASSWORD, "newPassword": "short"})

    assert_failure(reply, 400, "validation_error")
    assert "newPassword" in reply.data["fields"]


def test_password_change_needs_a_user(api):
    assert_failure(api.put("/api/auth/password", {"currentPassword": "a", "newPassword": "new-pass-2"}), 401)


# --- tokens and cookies --------------------------------------------------------------------------


def test_cookie_alone_authenticates(api, admin):
    browser = api.with_token(None)
    browser.post("/api/auth/login", {"username": "admin", "password": PASSWORD})

    reply = browser.get("/api/auth/me")

    assert reply.status == 200 and reply.data["username"] == "admin"


def test_bearer_token_wins_over_cookie(api, admin):
    admin.post("/api/users", {"username": "bob", "password": PASSWORD})
    bob_token = login(api, "bob").data["token"]
    browser = api.with_token(None)
    browser.post("/api/auth/login", {"username": "admin", "password": PASSWORD})

    reply = browser.get("/api/auth/me", token=bob_token)

    assert reply.data["username"] == "bob"


def _expired_token(app, user_id: int) -> str:
    secret = app.config["PARLEY"].jwt_secret
    past = datetime.now(UTC) - timedelta(hours=1)
    return jwt.encode({"sub": str(user_id), "jti": "x" * 16, "tv": 0, "iat": past, "exp": past}, secret, "HS256")


@pytest.mark.parametrize("kind", ["garbage", "expired", "foreign_signature", "empty_claims"])
def test_invalid_bearer_token_is_401_never_anonymous(api, admin, app, kind):
    tokens = {
        "garbage": "not-a-jwt",
        "expired": _expired_token(app, 1),
        "foreign_signature": jwt.encode({"sub": "1", "jti": "j", "tv": 0, "exp": 9999999999}, "x" * 40, "HS256"),
        "empty_claims": jwt.encode({"exp": 9999999999}, app.config["PARLEY"].jwt_secret, "HS256"),
    }

    for path in ("/api/auth/me", "/api/auth/actor", "/api/settings/system"):
        assert_failure(api.get(path, token=tokens[kind]), 401, "invalid_token")


def test_a_token_accepted_before_is_refused_once_it_expires(api, admin, app, monkeypatch):
    import common.auth.tokens as tokens

    secret = app.config["PARLEY"].jwt_secret
    soon = datetime.now(UTC) + timedelta(seconds=30)
    token = jwt.encode({"sub": "1", "jti": "soon" * 4, "tv": 0, "exp": soon}, secret, "HS256")  # the admin
    assert api.get("/api/auth/me", token=token).status == 200  # verified, and remembered

    later = tokens.utcnow() + timedelta(seconds=31)
    monkeypatch.setattr(tokens, "utcnow", lambda: later)

    assert_failure(api.get("/api/auth/me", token=token), 401, "invalid_token")


def test_invalid_cookie_token_is_401_and_the_cookie_is_cleared(api, admin):
    browser = api.with_token(None)
    browser.client.set_cookie("token", "garbage.token.value")

    reply = browser.get("/api/auth/actor")

    assert_failure(reply, 401, "invalid_token")
    assert cookie_value(reply.cookies["token"]) == ""
    assert "anon_key" not in reply.cookies


def test_expired_cookie_token_is_401(api, admin, app):
    browser = api.with_token(None)
    browser.client.set_cookie("token", _expired_token(app, 1))

    assert_failure(browser.get("/api/auth/me"), 401, "invalid_token")


def test_token_of_a_disabled_user_is_401(api, admin):
    bob = api.user(admin, "bob", PASSWORD)
    bob_id = bob.get("/api/auth/me").data["id"]

    admin.post(f"/api/users/{bob_id}/status", {"status": "DISABLED"})

    assert_failure(bob.get("/api/auth/me"), 401)
    assert_failure(bob.get("/api/auth/actor"), 401)


def test_role_changes_apply_to_existing_tokens_at_once(api, admin):
    second = api.user(admin, "second_admin", PASSWORD, role="ADMIN")
    second_id = second.get("/api/auth/me").data["id"]
    assert second.get("/api/users").status == 200

    admin.put(f"/api/users/{second_id}/role", {"role": "USER"})

    assert_failure(second.get("/api/users"), 403, "admin_required")
    assert second.get("/api/auth/me").data["role"] == "USER"


def test_promotion_applies_to_existing_tokens_at_once(api, admin):
    bob = api.user(admin, "bob", PASSWORD)
    bob_id = bob.get("/api/auth/me").data["id"]
    assert bob.get("/api/users").status == 403

    admin.put(f"/api/users/{bob_id}/role", {"role": "ADMIN"})

    assert bob.get("/api/users").status == 200


# --- /me and /actor ------------------------------------------------------------------------------


def test_me_returns_the_public_user_without_any_password_or_hash(api, admin):
    reply = admin.get("/api/auth/me")

    assert reply.status == 200
    assert set(reply.data) == {"id", "username", "email", "role", "status", "avatarUrl", "createdAt"}
    assert reply.data["createdAt"].endswith("Z")
    assert_no_secret_keys(reply.body)


def test_no_auth_response_contains_a_password_or_hash(api, admin):
    replies = [
        register(api, "newbie"),
        login(api, "admin"),
        admin.get("/api/auth/actor"),
        admin.get("/api/auth/me"),
        admin.put("/api/auth/password", {"currentPassword": PASSWORD, "newPassword": "new-pass-2"}),
    ]
    for reply in replies:
        assert reply.status == 200, reply.body
        assert_no_secret_keys(reply.body)


def test_me_needs_a_user(api):
    assert_failure(api.get("/api/auth/me"), 401)


def test_anonymous_actor_gets_an_anon_key_cookie(api):
    reply = api.get("/api/auth/actor")

    assert reply.status == 200
    assert reply.data["actor"]["type"] == "anonymous"
    assert reply.data["user"] is None and reply.data["preferredModel"] is None
    cookie = reply.cookies["anon_key"]
    key = cookie_value(cookie)
    assert ANON_KEY.match(key)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Max-Age=1296000" in cookie  # 15 days of retention
    assert reply.data["actor"]["identifier"] == f"anon:{key}"


def test_anonymous_actor_keeps_a_valid_anon_key(api):
    browser = api.with_token(None)
    browser.client.set_cookie("anon_key", "my-visitor_key-123")

    reply = browser.get("/api/auth/actor")

    assert reply.data["actor"]["identifier"] == "anon:my-visitor_key-123"
    assert cookie_value(reply.cookies["anon_key"]) == "my-visitor_key-123"  # refreshed (sliding expiry)


@pytest.mark.parametrize("bad", ["short", "x" * 129, "has space in it", "semi;colon!!", "ünïcödé-key"])
def test_anonymous_actor_replaces_an_invalid_anon_key(api, bad):
    browser = api.with_token(None)
    browser.client.set_cookie("anon_key", bad)

    reply = browser.get("/api/auth/actor")

    new_key = cookie_value(reply.cookies["anon_key"])
    assert new_key != bad and ANON_KEY.match(new_key)
    assert reply.data["actor"]["identifier"] == f"anon:{new_key}"


def test_user_actor_describes_the_user(api, admin):
    reply = admin.get("/api/auth/actor")

    me = admin.get("/api/auth/me").data
    assert reply.data["actor"] == {
        "type": "user",
        "id": me["id"],
        "username": "admin",
        "role": "ADMIN",
        "identifier": f"user:{me['id']}",
    }
    assert reply.data["user"] == me
    assert "anon_key" not in reply.cookies
    assert_no_secret_keys(reply.body)


def test_actor_shows_the_preferred_model(api, admin):
    preferred = {"modelId": "7:gpt-4o", "connectionId": 7, "rawId": "gpt-4o"}
    admin.put("/api/settings/personal", {"preferred_model": preferred})

    assert admin.get("/api/auth/actor").data["preferredModel"] == preferred


def test_actor_is_null_when_anonymous_access_is_off(api, admin):
    set_settings(admin, anonymous_daily_quota=0)

    reply = api.with_token(None).get("/api/auth/actor")

    assert reply.status == 200
    assert reply.data["actor"] is None and reply.data["user"] is None
    assert "anon_key" not in reply.cookies


def test_registration_needs_no_actor_even_with_a_stale_cookie(api, admin):
    browser = api.with_token(None)
    browser.client.set_cookie("token", "stale.garbage.token")

    reply = browser.post("/api/auth/register", {"username": "fresh", "password": PASSWORD})
    assert reply.status == 200
    reply = browser.post("/api/auth/login", {"username": "admin", "password": PASSWORD})
    assert reply.status == 200


def test_revoked_tokens_table_records_logout(api, admin, app):
    api.post("/api/auth/logout", token=admin.token)
    rows = fetch_all(app.extensions["parley.db"], "SELECT jti FROM revoked_tokens")
    release(app.extensions["parley.db"])
    assert len(rows) == 1


# --- the same on PostgreSQL ----------------------------------------------------------------------


def test_register_login_and_throttle_on_every_database(any_db_app):
    api = ApiClient(any_db_app)

    first = register(api, "founder", email="founder@example.com")
    second = register(api, "second")

    assert first.status == 200 and first.data["user"]["role"] == "ADMIN" and first.data["token"]
    assert second.status == 200 and second.data["user"]["status"] == "PENDING" and "token" not in second.data
    assert_failure(register(api, "FOUNDER"), 409, "username_taken")
    assert login(api, "founder").status == 200
    assert api.post("/api/auth/login", {"email": "FOUNDER@example.com", "password": PASSWORD}).status == 200
    assert_failure(login(api, "second"), 423, "account_pending")
    for _ in range(5):
        assert_failure(login(api, "founder", "wrong-password-1"), 401, "invalid_credentials")
    locked = login(api, "founder")
    assert_failure(locked, 429, "login_throttled")
    assert int(locked.headers["Retry-After"]) > 0
    token = first.data["token"]
    assert api.post("/api/auth/logout", token=token).status == 200
    assert_failure(api.get("/api/auth/me", token=token), 401)

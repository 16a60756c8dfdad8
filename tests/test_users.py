"""User management by admins (/api/users): api.md section B "Users"."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from common import db as db_module
from common.db import fetch_one, release
from tests.api_client import ApiClient, assert_failure, assert_no_secret_keys
from tests.conftest import PASSWORD

NEW_PASSWORD = "fresh-pass-9"


# --- helpers -------------------------------------------------------------------------------------


def one(app, sql: str, **params) -> dict | None:
    db = app.extensions["parley.db"]
    try:
        return fetch_one(db, sql, **params)
    finally:
        release(db)


def user_row(app, user_id: int) -> dict | None:
    return one(app, "SELECT * FROM users WHERE id = :id", id=user_id)






def create(admin, username: str, **extra) -> dict:
    reply = admin.post("/api/users", {"username": username, "password": PASSWORD, **extra})
    assert reply.status == 201, reply.body
    return reply.data


def login(api, username: str, password: str = PASSWORD):
    return api.with_token(None).post("/api/auth/login", {"username": username, "password": password})


def admin_id(admin) -> int:
    return admin.get("/api/auth/me").data["id"]


def register_pending(api, username: str) -> int:
    reply = api.with_token(None).post("/api/auth/register", {"username": username, "password": PASSWORD})
    assert reply.data["user"]["status"] == "PENDING"
    return reply.data["user"]["id"]


# --- listing -------------------------------------------------------------------------------------


def test_list_shows_users_with_pagination(api, admin):
    for i in range(4):
        create(admin, f"member{i}")

    reply = admin.get("/api/users?page=2&limit=2")

    assert reply.status == 200 and reply.body["success"] is True
    assert reply.data["pagination"] == {"page": 2, "limit": 2, "total": 5, "totalPages": 3}
    assert [u["username"] for u in reply.data["users"]] == ["member1", "member2"]
    assert_no_secret_keys(reply.body)


def test_list_defaults_to_first_page_of_twenty(api, admin):
    reply = admin.get("/api/users")

    assert reply.data["pagination"] == {"page": 1, "limit": 20, "total": 1, "totalPages": 1}
    user = reply.data["users"][0]
    assert {"id", "username", "email", "role", "status", "rejectionReason", "createdAt"} <= set(user)


def test_list_page_past_the_end_is_empty(api, admin):
    reply = admin.get("/api/users?page=9")

    assert reply.status == 200 and reply.data["users"] == []


@pytest.mark.parametrize(
    "query", ["page=0", "limit=0", "limit=101", "page=abc", "status=BANNED", "search=" + "x" * 101]
)
def test_list_with_bad_query_is_a_validation_error(api, admin, query):
    assert_failure(admin.get(f"/api/users?{query}"), 400, "validation_error")


def test_list_search_matches_username_and_email_case_insensitively(api, admin):
    create(admin, "alice", email="wonder@example.com")
    create(admin, "bob")

    by_name = admin.get("/api/users?search=ALI").data["users"]
    by_email = admin.get("/api/users?search=wonder").data["users"]

    assert [u["username"] for u in by_name] == ["alice"]
    assert [u["username"] for u in by_email] == ["alice"]


@pytest.mark.parametrize(("search", "expected"), [("%", []), ("_", ["a_b"]), ("a_b", ["a_b"]), ("\\", [])])
def test_list_search_wildcards_are_literal(api, admin, search, expected):
    create(admin, "a_b")
    create(admin, "axb")

    reply = admin.get(f"/api/users?search={quote(search, safe='')}")

    assert [u["username"] for u in reply.data["users"]] == expected


def test_list_treats_blank_filters_as_absent(api, admin):
    """Admin screens send every filter, empty when unset."""
    reply = admin.get("/api/users?status=&search=&page=&limit=")

    assert reply.status == 200, reply.body
    assert reply.data["pagination"]["page"] == 1 and reply.data["pagination"]["total"] == 1


def test_list_filters_by_status(api, admin):
    register_pending(api, "waiting")
    create(admin, "working")

    pending = admin.get("/api/users?status=PENDING").data
    active = admin.get("/api/users?status=ACTIVE").data

    assert [u["username"] for u in pending["users"]] == ["waiting"] and pending["pagination"]["total"] == 1
    assert {u["username"] for u in active["users"]} == {"admin", "working"}


# --- create and get ------------------------------------------------------------------------------


def test_admin_creates_an_active_user_who_can_log_in(api, admin, app):
    reply = admin.post("/api/users", {"username": "carol", "password": PASSWORD, "email": "Carol@Example.com"})

    assert reply.status == 201 and reply.body["success"] is True
    assert reply.data["role"] == "USER" and reply.data["status"] == "ACTIVE"
    assert reply.data["email"] == "carol@example.com"
    assert_no_secret_keys(reply.body)
    assert user_row(app, reply.data["id"])["password_hash"].startswith("$2")
    assert login(api, "carol").status == 200


def test_admin_creates_an_admin_or_a_pending_user(api, admin):
    assert create(admin, "boss", role="ADMIN")["role"] == "ADMIN"
    assert create(admin, "later", status="PENDING")["status"] == "PENDING"


def test_create_with_taken_username_is_a_conflict(api, admin, app):
    assert_failure(admin.post("/api/users", {"username": "Admin", "password": PASSWORD}), 409, "username_taken")
    assert one(app, "SELECT COUNT(*) AS n FROM users")["n"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "x", "password": PASSWORD}, "username"),
        ({"username": "carol", "password": "weak"}, "password"),
        ({"username": "carol", "password": PASSWORD, "role": "ROOT"}, "role"),
        ({"username": "carol", "password": PASSWORD, "status": "BANNED"}, "status"),
        ({"username": "carol", "password": PASSWORD, "email": "not-an-email"}, "email"),
        ({"password": PASSWORD}, "username"),
    ],
)
def test_create_with_invalid_fields_is_a_validation_error(api, admin, app, body, field):
    reply = admin.post("/api/users", body)

    assert_failure(reply, 400, "validation_error")
    assert field in reply.data["fields"]
    assert one(app, "SELECT COUNT(*) AS n FROM users")["n"] == 1


def test_get_one_user(api, admin):
    carol = create(admin, "carol")

    reply = admin.get(f"/api/users/{carol['id']}")

    assert reply.status == 200 and reply.data["username"] == "carol"
    assert_no_secret_keys(reply.body)


# --- rename, role, approve, reject, status -------------------------------------------------------


def test_rename_user(api, admin, app):
    carol = create(admin, "carol")

    reply = admin.put(f"/api/users/{carol['id']}/username", {"username": "caroline"})

    assert reply.status == 200 and reply.data["username"] == "caroline"
    assert user_row(app, carol["id"])["username"] == "caroline"
    assert login(api, "caroline").status == 200


def test_rename_to_a_taken_name_is_a_conflict(api, admin, app):
    carol = create(admin, "carol")

    assert_failure(admin.put(f"/api/users/{carol['id']}/username", {"username": "ADMIN"}), 409, "username_taken")
    assert user_row(app, carol["id"])["username"] == "carol"


def test_rename_changing_only_the_case_of_ones_own_name_is_allowed(api, admin):
    carol = create(admin, "carol")

    assert admin.put(f"/api/users/{carol['id']}/username", {"username": "Carol"}).status == 200


def test_set_role(api, admin, app):
    carol = create(admin, "carol")

    reply = admin.put(f"/api/users/{carol['id']}/role", {"role": "ADMIN"})

    assert reply.status == 200 and reply.data["role"] == "ADMIN"
    assert user_row(app, carol["id"])["role"] == "ADMIN"


def test_approve_pending_user_who_can_then_log_in(api, admin, app):
    user_id = register_pending(api, "waiting")
    assert login(api, "waiting").status == 423

    reply = admin.post(f"/api/users/{user_id}/approve")

    assert reply.status == 200 and reply.data["status"] == "ACTIVE"
    assert reply.data["approvedAt"] is not None
    assert login(api, "waiting").status == 200


def test_reject_with_reason_then_login_is_403_with_the_reason(api, admin, app):
    user_id = register_pending(api, "waiting")

    reply = admin.post(f"/api/users/{user_id}/reject", {"reason": "Not a member of the team"})

    assert reply.status == 200
    assert reply.data["status"] == "DISABLED" and reply.data["rejectionReason"] == "Not a member of the team"
    refused = login(api, "waiting")
    assert_failure(refused, 403, "account_disabled")
    assert refused.data == {"status": "DISABLED", "rejectionReason": "Not a member of the team"}


def test_reject_without_a_body(api, admin):
    user_id = register_pending(api, "waiting")

    reply = admin.post(f"/api/users/{user_id}/reject")

    assert reply.status == 200 and reply.data["status"] == "DISABLED" and reply.data["rejectionReason"] is None


def test_disable_revokes_tokens_and_enable_restores_login(api, admin, app):
    carol = create(admin, "carol")
    token = login(api, "carol").data["token"]

    disabled = admin.post(f"/api/users/{carol['id']}/status", {"status": "DISABLED", "reason": "abuse"})

    assert disabled.status == 200 and disabled.data["status"] == "DISABLED"
    assert_failure(api.get("/api/auth/me", token=token), 401)
    assert_failure(login(api, "carol"), 403, "account_disabled")

    enabled = admin.post(f"/api/users/{carol['id']}/status", {"status": "ACTIVE"})

    assert enabled.status == 200 and enabled.data["status"] == "ACTIVE" and enabled.data["rejectionReason"] is None
    assert api.get("/api/auth/me", token=token).status == 401  # the old token stays revoked
    assert login(api, "carol").status == 200


def test_status_only_accepts_active_or_disabled(api, admin):
    carol = create(admin, "carol")
    reply = admin.post(f"/api/users/{carol['id']}/status", {"status": "PENDING"})

    assert_failure(reply, 400, "validation_error")
    assert "status" in reply.data["fields"]


def test_password_reset_revokes_old_tokens_and_sets_the_new_password(api, admin, app):
    carol = create(admin, "carol")
    token = login(api, "carol").data["token"]

    reply = admin.put(f"/api/users/{carol['id']}/password", {"password": NEW_PASSWORD})

    assert reply.status == 200
    assert_no_secret_keys(reply.body)
    assert_failure(api.get("/api/auth/me", token=token), 401)
    assert login(api, "carol", NEW_PASSWORD).status == 200
    assert login(api, "carol", PASSWORD).status == 401


def test_password_reset_unlocks_a_throttled_account(api, admin):
    create(admin, "carol")
    for _ in range(5):
        login(api, "carol", "wrong-password-1")
    assert login(api, "carol").status == 429
    carol_id = admin.get("/api/users?search=carol").data["users"][0]["id"]

    admin.put(f"/api/users/{carol_id}/password", {"password": NEW_PASSWORD})

    assert login(api, "carol", NEW_PASSWORD).status == 200


def test_password_reset_follows_the_password_rules(api, admin):
    carol = create(admin, "carol")
    reply = admin.put(f"/api/users/{carol['id']}/password", {"password": "a1" * 40})

    assert_failure(reply, 400, "validation_error")
    assert "password" in reply.data["fields"]


def test_delete_removes_the_user_and_their_token_stops_working(api, admin, app):
    carol = create(admin, "carol")
    token = login(api, "carol").data["token"]

    reply = admin.delete(f"/api/users/{carol['id']}")

    assert reply.status == 200 and reply.body["success"] is True
    assert user_row(app, carol["id"]) is None
    assert_failure(api.get("/api/auth/me", token=token), 401)
    assert_failure(admin.get(f"/api/users/{carol['id']}"), 404, "user_not_found")


# --- protecting the site's administrators --------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("PUT", "/role", {"role": "USER"}),
        ("POST", "/status", {"status": "DISABLED"}),
        ("POST", "/reject", {"reason": "oops"}),
        ("DELETE", "", None),
    ],
)
def test_admin_cannot_demote_disable_or_delete_themself(api, admin, app, method, suffix, body):
    me = admin_id(admin)
    create(admin, "second", role="ADMIN")  # even with another admin around
    before = user_row(app, me)

    reply = admin.call(method, f"/api/users/{me}{suffix}", body)

    assert_failure(reply, 403, "self_protection")
    assert user_row(app, me) == before


def test_admin_may_demote_another_admin(api, admin, app):
    second = create(admin, "second", role="ADMIN")

    assert admin.put(f"/api/users/{second['id']}/role", {"role": "USER"}).status == 200
    assert user_row(app, second["id"])["role"] == "USER"


def test_admin_may_keep_their_own_role(api, admin):
    assert admin.put(f"/api/users/{admin_id(admin)}/role", {"role": "ADMIN"}).status == 200


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("PUT", "/role", {"role": "USER"}),
        ("POST", "/status", {"status": "DISABLED"}),
        ("POST", "/reject", None),
        ("DELETE", "", None),
    ],
)
def test_last_active_admin_survives_two_admins_removing_each_other(api, admin, app, method, suffix, body,
                                                                  monkeypatch):
    """Admins A and B remove each other at the same moment: one request must lose with 409.

    B's request commits right before A's write (injected at the database), which is exactly the
    interleaving two workers produce; a check-then-write guard lets both through and leaves no admin.
    """
    me = admin_id(admin)
    other = create(admin, "second", role="ADMIN")
    engine = app.extensions["parley.db"].engine
    fired = []

    real_cursor = db_module._cursor

    def concurrent_demotion(db, statement, params):
        if not fired and re.match(r"\s*(UPDATE|DELETE FROM) users\b", statement):
            fired.append(statement)
            with engine.connect() as other_conn:  # the other admin's request, on another connection
                other_conn.execute(sa.text("UPDATE users SET role = 'USER' WHERE id = :id"), {"id": me})
                other_conn.commit()
        return real_cursor(db, statement, params)

    monkeypatch.setattr(db_module, "_cursor", concurrent_demotion)
    reply = admin.call(method, f"/api/users/{other['id']}{suffix}", body)

    assert fired, "the request never wrote to users"
    assert_failure(reply, 409, "last_admin")
    survivor = user_row(app, other["id"])
    assert survivor is not None and survivor["role"] == "ADMIN" and survivor["status"] == "ACTIVE"


def test_disabling_a_pending_admin_is_not_blocked_by_the_last_admin_rule(api, admin, app):
    pending_admin = create(admin, "later_boss", role="ADMIN", status="PENDING")

    assert admin.post(f"/api/users/{pending_admin['id']}/status", {"status": "DISABLED"}).status == 200


# --- who may call it -----------------------------------------------------------------------------


def _users_routes(app) -> list[tuple[str, str]]:
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/users"):
            continue
        path = re.sub(r"<(?:\w+:)?\w+>", "1", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((method, path))
    return routes


def test_every_users_route_refuses_non_admins_and_anonymous(api, admin, app):
    bob = api.user(admin, "bob", PASSWORD)
    routes = _users_routes(app)
    assert len(routes) >= 10, routes  # list, create, get, username, role, approve, reject, status, password, delete
    before = one(app, "SELECT COUNT(*) AS n, MAX(updated_at) AS changed FROM users")
    body = {"username": "hacked", "password": NEW_PASSWORD, "role": "ADMIN", "status": "ACTIVE", "dailyLimit": 5}

    for method, path in routes:
        as_user = bob.call(method, path, body if method != "GET" else None)
        assert_failure(as_user, 403, "admin_required")
        anonymous = ApiClient(app).call(method, path, body if method != "GET" else None)
        assert_failure(anonymous, 401)

    assert one(app, "SELECT COUNT(*) AS n, MAX(updated_at) AS changed FROM users") == before


def test_unknown_user_id_is_a_404_envelope_on_every_id_route(api, admin, app):
    body = {"username": "ghost", "password": NEW_PASSWORD, "role": "USER", "status": "ACTIVE", "dailyLimit": 5}
    for method, path in _users_routes(app):
        if "/1" not in path:
            continue
        path = path.replace("/1", "/999999", 1)
        reply = admin.call(method, path, body if method != "GET" else None)
        assert_failure(reply, 404, "user_not_found")


def test_pending_users_token_cannot_reach_users_routes(api, admin, app):
    carol = create(admin, "carol")
    token = login(api, "carol").data["token"]
    # Back to pending (e.g. imported data): role and status are read from the database on each request.
    db = app.extensions["parley.db"]
    with db as tx:
        tx.query("UPDATE users SET status = 'PENDING', role = 'ADMIN' WHERE id = :id", id=carol["id"])
    release(db)

    assert_failure(api.get("/api/users", token=token), 423, "account_pending")


# --- the same on PostgreSQL ----------------------------------------------------------------------


def test_user_management_on_every_database(any_db_app):
    api = ApiClient(any_db_app)
    admin = api.register_admin("admin", PASSWORD)
    me = admin_id(admin)
    second = create(admin, "second", role="ADMIN")
    create(admin, "a_b")
    create(admin, "axb")

    assert [u["username"] for u in admin.get("/api/users?search=a_b").data["users"]] == ["a_b"]
    assert admin.get(f"/api/users?search={quote('%')}").data["users"] == []
    assert_failure(admin.put(f"/api/users/{me}/role", {"role": "USER"}), 403, "self_protection")
    assert admin.put(f"/api/users/{second['id']}/role", {"role": "USER"}).status == 200
    assert admin.post(f"/api/users/{second['id']}/status", {"status": "DISABLED"}).status == 200
    assert admin.delete(f"/api/users/{second['id']}").status == 200
    assert_failure(admin.get(f"/api/users/{second['id']}"), 404, "user_not_found")
    assert_failure(admin.delete(f"/api/users/{me}"), 403, "self_protection")

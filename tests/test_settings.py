"""Settings (/api/settings): health, app info, branding, system settings, personal settings."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
import sqlalchemy as sa

from common.db import fetch_all, release
from common.settings import DEFINITIONS
from tests.api_client import ApiClient, assert_failure
from tests.conftest import PASSWORD, make_app

PUBLIC_KEYS = {
    "registration_enabled",
    "registration_approval_required",
    "anonymous_daily_quota",
    "anonymous_retention_days",
    "default_user_daily_quota",
    "model_access_default_anonymous",
    "model_access_default_user",
    "brand_text",
    "brand_primary",
}
ADMIN_ONLY_KEYS = {"provider_timeout_ms", "provider_max_idle_ms", "chat_system_prompt", "outbound_allow_hosts"}


# --- helpers -------------------------------------------------------------------------------------


def stored_settings(app) -> dict:
    db = app.extensions["parley.db"]
    try:
        return {row["key"]: json.loads(row["value"]) for row in fetch_all(db, "SELECT key, value FROM settings")}
    finally:
        release(db)




def is_iso_utc(value: str) -> bool:
    return value.endswith("Z") and datetime.fromisoformat(value[:-1]) is not None


# --- health, app info, branding ------------------------------------------------------------------


def test_health_reports_a_connected_database(api):
    reply = api.get("/api/settings/health")

    assert reply.status == 200 and reply.body["success"] is True
    assert reply.data["status"] == "healthy" and reply.data["database"] == "connected"
    assert reply.data["version"] and is_iso_utc(reply.data["timestamp"])


@pytest.mark.parametrize("url", ["sqlite:///{tmp}/no/such/dir/parley.db", "postgresql+psycopg://nobody@127.0.0.1:1/x"])
def test_health_is_503_when_the_database_cannot_be_reached(api, app, monkeypatch, tmp_path, url):
    db = app.extensions["parley.db"]
    release(db)
    broken = sa.create_engine(url.format(tmp=tmp_path))
    monkeypatch.setattr(db, "engine", broken)

    reply = api.get("/api/settings/health")

    assert_failure(reply, 503, "database_unavailable")
    assert reply.data["database"] == "disconnected" and reply.data["status"] == "unhealthy"
    assert "sqlite" not in reply.body["error"].lower() and "nobody" not in reply.body["error"]  # no internals
    broken.dispose()


def test_health_needs_no_auth_even_with_a_bad_token(api):
    assert api.get("/api/settings/health", token="garbage").status == 200


def test_app_info(api, admin):
    reply = api.get("/api/settings/app-info")

    assert reply.status == 200
    assert reply.data["name"] == "Parley" and reply.data["version"] and reply.data["mode"] == "development"
    assert reply.data["features"] == {"registration": True, "streaming": True, "anonymous": True, "file_upload": True}


def test_app_info_follows_the_settings(api, admin):
    admin.put("/api/settings/system", {"registration_enabled": False, "anonymous_daily_quota": 0, "brand_text": "Acme"})

    reply = api.get("/api/settings/app-info")

    assert reply.data["name"] == "Acme"
    assert reply.data["features"]["registration"] is False and reply.data["features"]["anonymous"] is False


def test_branding(api):
    reply = api.get("/api/settings/branding")

    assert reply.status == 200
    assert reply.data["brand_text"] == "Parley" and reply.data["brand_primary"].startswith("#")
    assert set(reply.data) == {name for name in DEFINITIONS if name.startswith("brand_")}


# --- system settings -----------------------------------------------------------------------------


def test_admin_sees_every_setting(api, admin):
    reply = admin.get("/api/settings/system")

    assert reply.status == 200
    assert set(reply.data) == set(DEFINITIONS)
    assert reply.data["provider_timeout_ms"] == 300000 and reply.data["anonymous_retention_days"] == 15


def test_spec_defaults(api, admin):
    values = admin.get("/api/settings/system").data

    assert values["registration_enabled"] is True and values["registration_approval_required"] is True
    assert values["anonymous_daily_quota"] == 20 and values["default_user_daily_quota"] == 200
    assert values["model_access_default_anonymous"] == "deny" and values["model_access_default_user"] == "allow"
    assert values["sse_heartbeat_interval_ms"] == 15000 and values["chat_max_concurrent_streams"] == 2
    assert values["temperature_default"] == 0.7 and values["max_context_tokens"] == 4000
    assert values["brand_text"] == "Parley" and values["site_base_url"] == ""


@pytest.mark.parametrize("who", ["user", "anonymous"])
def test_non_admins_see_only_the_public_subset(api, admin, who):
    client = api.user(admin, "bob", PASSWORD) if who == "user" else ApiClient(api.app)

    reply = client.get("/api/settings/system")

    assert reply.status == 200
    assert PUBLIC_KEYS <= set(reply.data)
    assert not (ADMIN_ONLY_KEYS & set(reply.data))
    assert set(reply.data) < set(DEFINITIONS)


def test_public_subset_is_readable_with_anonymous_access_off(api, admin):
    admin.put("/api/settings/system", {"anonymous_daily_quota": 0})

    reply = ApiClient(api.app).get("/api/settings/system")

    assert reply.status == 200 and "provider_timeout_ms" not in reply.data


def test_partial_update_persists_and_leaves_other_keys_alone(api, admin, app):
    reply = admin.put("/api/settings/system", {"anonymous_daily_quota": 5, "brand_text": "Acme"})

    assert reply.status == 200 and reply.body["success"] is True
    assert reply.data["anonymous_daily_quota"] == 5 and reply.data["brand_text"] == "Acme"
    assert stored_settings(app) == {"anonymous_daily_quota": 5, "brand_text": "Acme"}
    again = admin.get("/api/settings/system").data
    assert again["anonymous_daily_quota"] == 5 and again["default_user_daily_quota"] == 200

    admin.put("/api/settings/system", {"anonymous_daily_quota": 7})

    assert stored_settings(app) == {"anonymous_daily_quota": 7, "brand_text": "Acme"}


def test_update_is_seen_by_another_worker(api, admin, tmp_path):
    admin.put("/api/settings/system", {"brand_text": "Shared"})

    other = make_app(tmp_path / "data")
    try:
        assert ApiClient(other).get("/api/settings/branding").data["brand_text"] == "Shared"
    finally:
        other.extensions["parley.db"].close()


def test_unknown_key_is_refused_and_nothing_is_saved(api, admin, app):
    reply = admin.put("/api/settings/system", {"brand_text": "Acme", "no_such_setting": 1})

    assert_failure(reply, 400, "validation_error")
    assert list(reply.data["fields"]) == ["no_such_setting"]
    assert all(isinstance(m, str) for m in reply.data["fields"]["no_such_setting"])
    assert stored_settings(app) == {}
    assert admin.get("/api/settings/branding").data["brand_text"] == "Parley"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("anonymous_daily_quota", True),
        ("anonymous_daily_quota", 1.5),
        ("anonymous_daily_quota", "20"),
        ("anonymous_daily_quota", None),
        ("anonymous_daily_quota", -1),
        ("anonymous_retention_days", 16),
        ("anonymous_retention_days", -1),
        ("brand_primary", "blue"),
        ("brand_primary", "#12345g"),
        ("registration_enabled", "true"),
        ("registration_enabled", 1),
        ("temperature_default", 2.5),
        ("temperature_default", "0.5"),
        ("temperature_default", 10**400),
        ("temperature_default", -(10**400)),
        ("provider_timeout_ms", 10**400),
        ("provider_timeout_ms", {"ms": 1000}),
        ("model_access_default_user", "maybe"),
        ("chat_system_prompt", 5),
        ("chat_system_prompt", ["a"]),
        ("brand_text", "x" * 101),
        ("brand_text", "a\x00b"),
    ],
    ids=lambda v: repr(v)[:20],
)
def test_wrong_type_or_out_of_range_is_refused(api, admin, app, key, value):
    reply = admin.put(
        "/api/settings/system", {key: value, "brand_text": "Acme"} if key != "brand_text" else {key: value}
    )

    assert_failure(reply, 400, "validation_error")
    assert key in reply.data["fields"]
    assert stored_settings(app) == {}


def test_boundaries_are_accepted(api, admin, app):
    reply = admin.put(
        "/api/settings/system",
        {"anonymous_retention_days": 0, "temperature_default": 2, "brand_primary": "#ABC", "anonymous_daily_quota": 0},
    )

    assert reply.status == 200, reply.body
    assert reply.data["temperature_default"] == 2.0 and reply.data["anonymous_retention_days"] == 0


@pytest.mark.parametrize("body", [[{"brand_text": "x"}], "brand_text", 5, None])
def test_update_body_must_be_an_object(api, admin, app, body):
    reply = admin.call("PUT", "/api/settings/system", data=json.dumps(body), content_type="application/json")

    assert_failure(reply, 400)
    assert stored_settings(app) == {}


def test_empty_update_changes_nothing(api, admin, app):
    reply = admin.put("/api/settings/system", {})

    assert reply.status == 200 and stored_settings(app) == {}


def test_only_admins_update_system_settings(api, admin, app):
    bob = api.user(admin, "bob", PASSWORD)

    assert_failure(bob.put("/api/settings/system", {"brand_text": "Bob"}), 403, "admin_required")
    assert_failure(ApiClient(app).put("/api/settings/system", {"brand_text": "Anon"}), 401)
    assert stored_settings(app) == {}


def test_environment_gives_first_run_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("REGISTRATION_APPROVAL_REQUIRED", "false")
    monkeypatch.setenv("BRAND_TEXT", "From Env")
    monkeypatch.setenv("DEFAULT_CONTEXT_TOKEN_LIMIT", "8192")
    monkeypatch.setenv("ANONYMOUS_RETENTION_DAYS", "99")  # out of range: the built-in default stays
    app = make_app(tmp_path / "env")
    try:
        api = ApiClient(app)
        admin = api.register_admin("admin", PASSWORD)

        second = api.post("/api/auth/register", {"username": "second", "password": PASSWORD})

        assert second.status == 200 and second.data["user"]["status"] == "ACTIVE" and second.data["token"]
        values = admin.get("/api/settings/system").data
        assert values["brand_text"] == "From Env" and values["max_context_tokens"] == 8192
        assert values["anonymous_retention_days"] == 15
        # A value the admin saves wins over the environment.
        admin.put("/api/settings/system", {"registration_approval_required": True})
        third = api.post("/api/auth/register", {"username": "third", "password": PASSWORD})
        assert third.data["user"]["status"] == "PENDING"
    finally:
        app.extensions["parley.db"].close()


# --- personal settings ---------------------------------------------------------------------------


def test_personal_settings_defaults(api, admin):
    reply = admin.get("/api/settings/personal")

    assert reply.status == 200
    assert reply.data == {"preferred_model": None, "avatar_url": None, "username": "admin", "personal_prompt": ""}


def test_personal_settings_update(api, admin):
    preferred = {"modelId": "3:llama3", "connectionId": 3, "rawId": "llama3"}

    reply = admin.put(
        "/api/settings/personal",
        {"preferred_model": preferred, "personal_prompt": "Answer briefly.", "avatar_url": "https://x.test/a.png"},
    )

    assert reply.status == 200
    expected = {
        "preferred_model": preferred,
        "avatar_url": "https://x.test/a.png",
        "username": "admin",
        "personal_prompt": "Answer briefly.",
    }
    assert reply.data == expected
    assert admin.get("/api/settings/personal").data == expected
    assert admin.get("/api/auth/me").data["avatarUrl"] == "https://x.test/a.png"


def test_personal_update_is_partial_and_null_clears(api, admin):
    admin.put("/api/settings/personal", {"preferred_model": {"modelId": "m"}, "personal_prompt": "Be kind."})

    admin.put("/api/settings/personal", {"preferred_model": None})

    data = admin.get("/api/settings/personal").data
    assert data["preferred_model"] is None and data["personal_prompt"] == "Be kind."


def test_personal_username_change(api, admin):
    reply = admin.put("/api/settings/personal", {"username": "chief"})

    assert reply.status == 200 and reply.data["username"] == "chief"
    assert api.post("/api/auth/login", {"username": "chief", "password": PASSWORD}).status == 200


def test_personal_username_taken_is_a_conflict(api, admin):
    bob = api.user(admin, "bob", PASSWORD)

    reply = bob.put("/api/settings/personal", {"username": "Admin", "personal_prompt": "changed"})

    assert_failure(reply, 409, "username_taken")
    assert bob.get("/api/settings/personal").data == {
        "preferred_model": None,
        "avatar_url": None,
        "username": "bob",
        "personal_prompt": "",
    }


@pytest.mark.parametrize(
    "body",
    [
        {"username": "no spaces"},
        {"avatar_url": "javascript:alert(1)"},
        {"avatar_url": "data:text/html,hi"},
        {"preferred_model": "gpt-4o"},
        {"preferred_model": {"connectionId": 1}},
        {"preferred_model": {"modelId": 5}},
        {"personal_prompt": "x" * 12001},
        {"personal_prompt": 42},
    ],
)
def test_personal_update_validates(api, admin, body):
    reply = admin.put("/api/settings/personal", body)

    assert_failure(reply, 400, "validation_error")
    field = next(iter(body))
    assert any(name == field or name.startswith(field + ".") for name in reply.data["fields"])
    assert admin.get("/api/settings/personal").data["username"] == "admin"


def test_personal_settings_need_a_user(api, admin):
    assert_failure(ApiClient(api.app).get("/api/settings/personal"), 401)
    assert_failure(ApiClient(api.app).put("/api/settings/personal", {"personal_prompt": "x"}), 401)


# --- the same on PostgreSQL ----------------------------------------------------------------------


def test_settings_update_and_public_subset_on_every_database(any_db_app):
    api = ApiClient(any_db_app)
    admin = api.register_admin("admin", PASSWORD)

    assert admin.put("/api/settings/system", {"anonymous_daily_quota": 3, "brand_text": "Pg"}).status == 200
    refused = admin.put("/api/settings/system", {"anonymous_daily_quota": 4, "nope": 1})

    assert refused.status == 400 and "nope" in refused.data["fields"]
    assert stored_settings(any_db_app) == {"anonymous_daily_quota": 3, "brand_text": "Pg"}
    public = ApiClient(any_db_app).get("/api/settings/system").data
    assert public["anonymous_daily_quota"] == 3 and "provider_timeout_ms" not in public
    assert api.get("/api/settings/health").data["database"] == "connected"

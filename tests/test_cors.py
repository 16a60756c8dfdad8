"""CORS headers and the refusal of cross-site cookie-authenticated writes (api.md A, security.md item 7)."""

from __future__ import annotations

import json

import pytest

from common.db import fetch_all, release
from tests.api_client import ApiClient
from tests.conftest import PASSWORD, make_app

EVIL = "https://evil.example"
APP_ORIGIN = "https://chat.example"


@pytest.fixture
def configured(tmp_path):
    """Build apps with CORS settings; closed at the end of the test."""
    made = []

    def build(**overrides):
        app = make_app(tmp_path / f"data{len(made)}", **overrides)
        made.append(app)
        return app

    yield build
    for app in made:
        app.extensions["parley.db"].close()


def browser_logged_in_as_admin(app) -> ApiClient:
    """A client that registers the first account and then authenticates only by its cookie."""
    browser = ApiClient(app)
    reply = browser.post("/api/auth/register", {"username": "admin", "password": PASSWORD})
    assert reply.status == 200 and "token" in reply.cookies
    return browser


def stored_settings(app) -> dict:
    db = app.extensions["parley.db"]
    try:
        return {row["key"]: json.loads(row["value"]) for row in fetch_all(db, "SELECT key, value FROM settings")}
    finally:
        release(db)


def preflight(api, path: str, origin: str, method: str = "POST", headers: str = "Content-Type"):
    return api.call(
        "OPTIONS",
        path,
        headers={"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers},
    )


def header_items(value: str | None) -> set[str]:
    return {part.strip().lower() for part in (value or "").split(",") if part.strip()}


# --- response headers ----------------------------------------------------------------------------


def test_default_allows_any_origin_without_credentials(api):
    reply = api.get("/api/settings/health", headers={"Origin": EVIL})

    assert reply.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in reply.headers
    assert "retry-after" in header_items(reply.headers.get("Access-Control-Expose-Headers"))


def test_no_cors_headers_without_an_origin(api):
    reply = api.get("/api/settings/health")

    assert "Access-Control-Allow-Origin" not in reply.headers


def test_error_responses_carry_cors_headers_too(api):
    reply = api.get("/api/nope", headers={"Origin": EVIL})

    assert reply.status == 404 and reply.headers["Access-Control-Allow-Origin"] == "*"


def test_configured_origin_is_echoed_with_credentials(configured):
    api = ApiClient(configured(cors_origin=APP_ORIGIN))

    reply = api.get("/api/settings/health", headers={"Origin": APP_ORIGIN})

    assert reply.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert reply.headers["Access-Control-Allow-Credentials"] == "true"
    assert "origin" in header_items(reply.headers.get("Vary"))


def test_other_origins_get_no_cors_headers_when_an_origin_is_configured(configured):
    api = ApiClient(configured(cors_origin=APP_ORIGIN))

    reply = api.get("/api/settings/health", headers={"Origin": EVIL})

    assert reply.status == 200
    assert "Access-Control-Allow-Origin" not in reply.headers
    assert "Access-Control-Allow-Credentials" not in reply.headers


def test_several_configured_origins(configured):
    api = ApiClient(configured(cors_origin=f"{APP_ORIGIN}, https://admin.example/"))

    for origin in (APP_ORIGIN, "https://admin.example"):
        assert api.get("/api/settings/health", headers={"Origin": origin}).headers["Access-Control-Allow-Origin"] == (
            origin
        )
    assert "Access-Control-Allow-Origin" not in api.get("/api/settings/health", headers={"Origin": EVIL}).headers


def test_cors_can_be_turned_off(configured):
    api = ApiClient(configured(enable_cors=False))

    reply = api.get("/api/settings/health", headers={"Origin": EVIL})

    assert "Access-Control-Allow-Origin" not in reply.headers


def test_cors_origin_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CORS_ORIGIN", APP_ORIGIN)
    app = make_app(tmp_path / "env")
    try:
        reply = ApiClient(app).get("/api/settings/health", headers={"Origin": APP_ORIGIN})
        assert reply.headers["Access-Control-Allow-Credentials"] == "true"
    finally:
        app.extensions["parley.db"].close()


# --- preflight -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/auth/login", "/api/users/1/role", "/api/settings/system"])
def test_preflight_allows_the_methods_and_headers_clients_use(api, path):
    reply = preflight(api, path, EVIL, "PUT", "Content-Type, Authorization, Last-Event-ID, Idempotency-Key")

    assert reply.status in (200, 204)
    assert reply.headers["Access-Control-Allow-Origin"] == "*"
    assert {"get", "post", "put", "patch", "delete", "options"} <= header_items(
        reply.headers["Access-Control-Allow-Methods"]
    )
    assert {"content-type", "authorization", "cache-control", "last-event-id", "idempotency-key"} <= header_items(
        reply.headers["Access-Control-Allow-Headers"]
    )


def test_preflight_for_a_configured_origin_allows_credentials(configured):
    api = ApiClient(configured(cors_origin=APP_ORIGIN))

    allowed = preflight(api, "/api/auth/login", APP_ORIGIN)
    refused = preflight(api, "/api/auth/login", EVIL)

    assert allowed.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert allowed.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert "Access-Control-Allow-Methods" not in refused.headers


def test_preflight_needs_no_auth_and_changes_nothing(api, app):
    browser = browser_logged_in_as_admin(app)

    reply = preflight(browser, "/api/settings/system", EVIL, "PUT")

    assert reply.status in (200, 204)
    assert stored_settings(app) == {}


# --- cross-site writes authenticated by cookie ---------------------------------------------------


def test_cookie_authenticated_write_from_a_foreign_origin_is_refused(api, app):
    browser = browser_logged_in_as_admin(app)

    reply = browser.put("/api/settings/system", {"brand_text": "Pwned"}, headers={"Origin": EVIL})

    assert reply.status == 403 and reply.body["success"] is False and reply.code == "cross_site_request"
    assert isinstance(reply.body["error"], str)
    assert stored_settings(app) == {}
    assert browser.get("/api/auth/me").status == 200  # the session itself is untouched


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/users", {"username": "mallory", "password": PASSWORD, "role": "ADMIN"}),
        ("PUT", "/api/auth/password", {"currentPassword": PASSWORD, "newPassword": "hijacked-1"}),
        ("PUT", "/api/settings/personal", {"username": "renamed"}),
        ("POST", "/api/auth/logout", None),
        ("DELETE", "/api/users/1", None),
    ],
)
def test_every_kind_of_cross_site_cookie_write_is_refused(api, app, method, path, body):
    browser = browser_logged_in_as_admin(app)
    before = fetch_all(app.extensions["parley.db"], "SELECT * FROM users")
    release(app.extensions["parley.db"])

    reply = browser.call(method, path, body, headers={"Origin": EVIL})

    assert reply.status == 403 and reply.code == "cross_site_request"
    assert fetch_all(app.extensions["parley.db"], "SELECT * FROM users") == before
    release(app.extensions["parley.db"])
    assert browser.get("/api/auth/me").status == 200


@pytest.mark.parametrize(
    "origin", ["null", "http://localhost:8080", "https://localhost.evil.example", "http://127.0.0.1"]
)
def test_lookalike_origins_are_foreign(api, app, origin):
    browser = browser_logged_in_as_admin(app)

    reply = browser.put("/api/settings/system", {"brand_text": "x"}, headers={"Origin": origin})

    assert reply.status == 403 and stored_settings(app) == {}


def test_anonymous_cookie_write_from_a_foreign_origin_is_refused(api, app):
    browser = ApiClient(app)
    browser.get("/api/auth/actor")  # receives an anon_key cookie

    reply = browser.post("/api/auth/logout", headers={"Origin": EVIL})

    assert reply.status == 403 and reply.code == "cross_site_request"


def test_same_origin_cookie_write_is_allowed(api, app):
    browser = browser_logged_in_as_admin(app)

    reply = browser.put("/api/settings/system", {"brand_text": "Ours"}, headers={"Origin": "http://localhost"})

    assert reply.status == 200 and stored_settings(app) == {"brand_text": "Ours"}


def test_same_host_behind_a_tls_proxy_is_same_origin(api, app):
    """TLS ends at the proxy: the app sees http while the browser's Origin says https."""
    browser = browser_logged_in_as_admin(app)

    reply = browser.put("/api/settings/system", {"brand_text": "Proxied"}, headers={"Origin": "https://localhost"})

    assert reply.status == 200 and stored_settings(app) == {"brand_text": "Proxied"}


def test_cookie_write_without_origin_is_allowed(api, app):
    """Browsers send Origin on cross-site writes; a request without one is not a browser's cross-site write."""
    browser = browser_logged_in_as_admin(app)

    assert browser.put("/api/settings/system", {"brand_text": "NoOrigin"}).status == 200


def test_bearer_authenticated_write_from_any_origin_is_allowed(api, app):
    admin = api.register_admin("admin", PASSWORD)

    reply = admin.put("/api/settings/system", {"brand_text": "Bearer"}, headers={"Origin": EVIL})

    assert reply.status == 200 and stored_settings(app) == {"brand_text": "Bearer"}


@pytest.mark.parametrize("authorization", ["Basic YWRtaW46eA==", "Bearer", "Token abc"])
def test_a_non_bearer_authorization_header_does_not_bypass_the_check(api, app, authorization):
    browser = browser_logged_in_as_admin(app)

    reply = browser.put(
        "/api/settings/system", {"brand_text": "x"}, headers={"Origin": EVIL, "Authorization": authorization}
    )

    assert reply.status == 403 and stored_settings(app) == {}


def test_configured_origin_may_write_with_cookies(configured):
    app = configured(cors_origin=APP_ORIGIN)
    browser = browser_logged_in_as_admin(app)

    reply = browser.put("/api/settings/system", {"brand_text": "Frontend"}, headers={"Origin": APP_ORIGIN})

    assert reply.status == 200
    assert reply.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert stored_settings(app) == {"brand_text": "Frontend"}


def test_foreign_origin_may_still_log_in_without_a_cookie(api, admin):
    """No cookie yet means nothing to ride on: a cross-origin client may log in (and gets its cookie)."""
    reply = ApiClient(api.app).post(
        "/api/auth/login", {"username": "admin", "password": PASSWORD}, headers={"Origin": EVIL}
    )

    assert reply.status == 200


def test_cross_site_refusal_carries_cors_headers(configured):
    app = configured(cors_origin=APP_ORIGIN)
    browser = browser_logged_in_as_admin(app)

    reply = browser.put("/api/settings/system", {"brand_text": "x"}, headers={"Origin": EVIL})

    assert reply.status == 403 and "Access-Control-Allow-Origin" not in reply.headers

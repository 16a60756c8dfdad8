"""Malformed and hostile input (security.md item 4): always a 4xx envelope, never a 500.

The write-route tests walk the app's URL map, so a route added later is covered without being listed
here. Every request is sent as an admin (the most privileged caller reaches the deepest code).
"""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.api_client import ApiClient
from tests.conftest import PASSWORD, make_app

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# Field names the primary API reads somewhere; the "semantic" bodies below fill every one of them.
FIELDS = [
    "username", "password", "email", "role", "status", "reason", "currentPassword", "newPassword",
    "preferred_model", "avatar_url", "personal_prompt", "dailyLimit", "resetUsed", "sessionId", "content",
    "clientMessageId", "messageId", "title", "modelId", "connectionId", "rawId", "systemPrompt", "messageIds",
    "displayName", "provider", "baseUrl", "apiKey", "headers", "tags", "images", "pinned", "expiresInHours",
    "retentionDays", "brand_text", "anonymous_daily_quota",
]  # fmt: skip


# --- a shared app: these tests only read the URL map and send refused requests --------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        for name in ("DATABASE_URL", "JWT_SECRET", "ENCRYPTION_KEY", "APP_ENV", "CORS_ORIGIN", "ENABLE_CORS"):
            mp.delenv(name, raising=False)
        base = tmp_path_factory.mktemp("bad_input")
        mp.chdir(base)
        app = make_app(base / "data")
        ApiClient(app).register_admin("admin", PASSWORD)
        yield app
        app.extensions["parley.db"].close()


def fresh_admin(app) -> ApiClient:
    """A new admin session per request: a refused request must not depend on an earlier one's effects."""
    reply = ApiClient(app).post("/api/auth/login", {"username": "admin", "password": PASSWORD})
    assert reply.status == 200, reply.body
    return ApiClient(app, reply.data["token"])


def routes(app, methods=WRITE_METHODS) -> list[tuple[str, str]]:
    """(method, path) for every /api route, path parameters filled with 1."""
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<(?:\w+(?:\([^)]*\))?:)?\w+>", "1", rule.rule)
        for method in sorted(rule.methods & set(methods)):
            found.append((method, path))
    return sorted(set(found))


def envelope_problem(reply) -> str | None:
    """Why the reply is not a proper failure envelope, or None."""
    body = reply.body
    if not isinstance(body, dict):
        return f"not a JSON object: {body!r}"
    if body.get("success") is not False:
        return f"success is {body.get('success')!r}"
    if not isinstance(body.get("error"), str) or not body["error"]:
        return f"error is {body.get('error')!r}"
    return None


def send_everywhere(app, *, data: bytes, content_type: str | None, methods=WRITE_METHODS):
    """Send the same raw body to every write route; yield (method, path, reply)."""
    for method, path in routes(app, methods):
        reply = fresh_admin(app).call(method, path, data=data, content_type=content_type)
        yield method, path, reply


# --- bodies that are not a JSON object: refused on every write route ------------------------------

MALFORMED = {
    "invalid_json": (b'{"username": "admin", ', "application/json", 400),
    "invalid_utf8": (b'{"username": "\xff\xfe\xfd"}', "application/json", 400),
    "latin1_declared_json": ('{"username": "café"}'.encode("latin-1"), "application/json", 400),
    "json_array": (b'[{"username": "admin"}]', "application/json", 400),
    "json_string": (b'"admin"', "application/json", 400),
    "json_number": (b"42", "application/json", 400),
    "json_null": (b"null", "application/json", 400),
    "nan_literal": (b'{"dailyLimit": NaN}', "application/json", 400),
    "infinity_literal": (b'{"dailyLimit": Infinity}', "application/json", 400),
    "deeply_nested_arrays": (b"[" * 200_000 + b"]" * 200_000, "application/json", 400),
    "deeply_nested_object": (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "application/json", 400),
    "integer_of_5000_digits": (b'{"dailyLimit": ' + b"9" * 5000 + b"}", "application/json", 400),
    "duplicate_garbage_after_object": (b'{"username": "a"} trailing', "application/json", 400),
    "text_plain": (b'{"username": "admin"}', "text/plain", 415),
    "form_urlencoded": (b"username=admin&password=x", "application/x-www-form-urlencoded", 415),
    "multipart": (b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--x--\r\n",
                  "multipart/form-data; boundary=x", 415),
    "no_content_type": (b'{"username": "admin"}', None, 415),
}  # fmt: skip


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_body_is_refused_on_every_write_route(shared, case):
    data, content_type, expected = MALFORMED[case]
    problems = []

    for method, path, reply in send_everywhere(shared, data=data, content_type=content_type):
        if reply.status != expected or envelope_problem(reply):
            problems.append(f"{method} {path}: {reply.status} {envelope_problem(reply) or reply.body}")

    assert not problems, "\n".join(problems)


def accepts_large_bodies(app, method: str, path: str) -> bool:
    """Whether the route opted into MAX_UPLOAD_BODY_BYTES (`@accepts_body(large=True)`, e.g. chat with images)."""
    endpoint, _args = app.url_map.bind("localhost").match(path, method)
    return getattr(app.view_functions[endpoint], "parley_large_body", False)


def test_two_megabyte_body_is_413_before_it_is_parsed(shared):
    # Invalid JSON on purpose: a 413 (not a 400) proves the size is checked before any parsing.
    huge = b'{"content": "' + b"x" * (2 * 1024 * 1024)
    problems = []

    for content_type in ("application/json", "text/plain"):
        for method, path, reply in send_everywhere(shared, data=huge, content_type=content_type):
            if accepts_large_bodies(shared, method, path):
                continue  # their limit is MAX_UPLOAD_BODY_BYTES (tests/test_images.py)
            if reply.status != 413 or envelope_problem(reply) or reply.code != "payload_too_large":
                problems.append(f"{method} {path} ({content_type}): {reply.status} {reply.body}")

    assert not problems, "\n".join(problems)


def test_body_just_under_the_limit_is_parsed(shared):
    limit = shared.config["PARLEY"].max_body_bytes
    body = json.dumps({"username": "x" * (limit - 100), "password": PASSWORD}).encode()
    assert len(body) < limit

    reply = fresh_admin(shared).call("POST", "/api/users", data=body, content_type="application/json")

    assert reply.status == 400 and reply.code == "validation_error" and "username" in reply.data["fields"]


# --- JSON objects with the wrong things inside: never a 500 ---------------------------------------

SEMANTIC = {
    "numbers_for_strings": {name: 12345 for name in FIELDS},
    "floats_and_negative": {name: -1.5e308 for name in FIELDS},
    "booleans": {name: True for name in FIELDS},
    "nulls": {name: None for name in FIELDS},
    "nul_characters": {name: "ok\x00<script>" for name in FIELDS},
    "objects_for_scalars": {name: {"$gt": "", "__proto__": {"admin": True}} for name in FIELDS},
    "arrays_for_scalars": {name: [1, "two", None] for name in FIELDS},
    "huge_strings": {name: "x" * 25_000 for name in FIELDS},
    "huge_integers": {name: 10**300 for name in FIELDS},
    "unicode_edge_cases": {name: "\ud7ff\ue000\U0010ffff\u202e\ufeff" for name in FIELDS},
    "empty_object": {},
}


@pytest.mark.parametrize("case", SEMANTIC)
def test_wrong_values_never_cause_a_server_error(shared, case):
    data = json.dumps(SEMANTIC[case]).encode()
    problems = []

    for method, path, reply in send_everywhere(shared, data=data, content_type="application/json"):
        if reply.status >= 500 or not isinstance(reply.body, dict) or not isinstance(reply.body.get("success"), bool):
            problems.append(f"{method} {path}: {reply.status} {reply.body}")
        elif reply.status >= 400 and envelope_problem(reply):
            problems.append(f"{method} {path}: {reply.status} {envelope_problem(reply)}")

    assert not problems, "\n".join(problems)


def test_no_body_at_all_never_causes_a_server_error(shared):
    problems = []
    for method, path in routes(shared):
        reply = fresh_admin(shared).call(method, path)
        if reply.status >= 500 or not isinstance(reply.body, dict):
            problems.append(f"{method} {path}: {reply.status} {reply.body}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/auth/register", {"username": 12345, "password": PASSWORD}, "username"),
        ("/api/auth/register", {"username": "n\x00l", "password": PASSWORD}, "username"),
        ("/api/auth/register", {"username": "nul_pass", "password": "abc\x00defg1"}, "password"),
        ("/api/auth/login", {"username": ["admin"], "password": PASSWORD}, "username"),
        ("/api/auth/login", {"username": "admin", "password": 12345678}, "password"),
        ("/api/users", {"username": "bob", "password": PASSWORD, "role": ["ADMIN"]}, "role"),
        ("/api/users", {"username": {"$ne": None}, "password": PASSWORD}, "username"),
    ],
)
def test_wrong_types_are_validation_errors_naming_the_field(shared, path, body, field):
    reply = fresh_admin(shared).post(path, body)

    assert reply.status == 400 and reply.code == "validation_error", reply.body
    assert field in reply.data["fields"]
    assert all(isinstance(m, str) for messages in reply.data["fields"].values() for m in messages)


# --- query strings and ids ------------------------------------------------------------------------


def test_junk_query_strings_never_cause_a_server_error(shared):
    query = "?page=1e999&limit=-5&search=%00%25_&status=%3Cscript%3E&sessionId=abc&from=not-a-date&to=%FF"
    problems = []
    for _, path in routes(shared, methods=("GET",)):
        if "stream" in path:  # SSE routes are covered by the chat suite
            continue
        reply = fresh_admin(shared).get(path + query)
        if reply.status >= 500 or not isinstance(reply.body, dict):
            problems.append(f"GET {path}: {reply.status} {reply.body}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("user_id", ["99999999999999999999999", "2147483648", "-1", "0x10", "1.5"])
def test_ids_no_column_can_hold_are_404(shared, user_id):
    reply = fresh_admin(shared).get(f"/api/users/{user_id}")

    assert reply.status == 404 and envelope_problem(reply) is None


def test_largest_id_is_a_plain_404_on_every_database(any_db_app):
    admin = ApiClient(any_db_app).register_admin("admin", PASSWORD)

    largest = admin.get("/api/users/2147483647")
    beyond = admin.get("/api/users/2147483648")  # PostgreSQL: "integer out of range" if it reached SQL

    assert largest.status == 404 and largest.code == "user_not_found"
    assert beyond.status == 404 and envelope_problem(beyond) is None


def test_oversized_bearer_token_is_401(shared):
    reply = ApiClient(shared).get("/api/auth/me", token="x" * 10_000)

    assert reply.status == 401 and envelope_problem(reply) is None


# --- unknown routes and methods -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_unknown_route_is_a_404_envelope(shared, method):
    reply = ApiClient(shared).call(method, "/api/nope")

    assert reply.status == 404
    assert reply.body["success"] is False and reply.body["error"] == f"Route {method} /api/nope not found"
    assert set(reply.body) <= {"success", "error", "code"}


def test_unknown_route_with_a_malformed_body_is_still_404(shared):
    reply = ApiClient(shared).call("POST", "/api/nope", data=b"{not json", content_type="application/json")

    assert reply.status == 404 and reply.body["error"] == "Route POST /api/nope not found"


def test_unknown_route_outside_the_api_is_a_404_envelope(shared):
    reply = ApiClient(shared).get("/definitely/not/here")

    assert reply.status == 404 and reply.body == {
        "success": False,
        "error": "Route GET /definitely/not/here not found",
        "code": "route_not_found",
    }


def test_wrong_method_is_a_405_envelope_with_allow(shared):
    reply = ApiClient(shared).call("DELETE", "/api/settings/health")

    assert reply.status == 405 and envelope_problem(reply) is None
    assert reply.code == "method_not_allowed"
    assert "GET" in reply.headers["Allow"]


def test_every_api_route_answers_json_on_wrong_methods(shared):
    allowed: dict[str, set[str]] = {}
    for method, path in routes(shared, methods=WRITE_METHODS + ("GET",)):
        allowed.setdefault(path, set()).add(method)
    problems = []
    for path, methods in sorted(allowed.items()):
        for method in sorted(set(WRITE_METHODS + ("GET",)) - methods):
            reply = ApiClient(shared).call(method, path)
            if reply.status >= 500 or envelope_problem(reply):
                problems.append(f"{method} {path}: {reply.status} {reply.body}")
    assert not problems, "\n".join(problems)


def test_the_app_survives_all_of_it(shared):
    """After everything above, the same process still answers (no dead worker, no leaked lock)."""
    assert ApiClient(shared).get("/api/settings/health").status == 200
    assert fresh_admin(shared).get("/api/auth/me").data["username"] == "admin"
    assert os.path.exists(shared.config["PARLEY"].data_dir)


def test_a_reused_request_schema_keeps_no_state_between_requests(api, admin):
    # Schemas given as classes are instantiated once per process; one request's errors or values
    # must not leak into the next.
    from tests.chat_support import new_session

    bad = admin.post("/api/chat/stream", {"sessionId": "x", "content": 5})
    assert bad.status == 400 and set(bad.data["fields"]) == {"sessionId", "content"}
    session_id = new_session(admin, "demo-chat")
    bad_again = admin.post("/api/chat/stream", {"sessionId": session_id, "content": 7})
    assert bad_again.status == 400 and set(bad_again.data["fields"]) == {"content"}

"""Ownership across the whole URL map (security.md item 1).

Every route that takes an id, a token or a path in its URL must be in ROUTES below, which says how to
make an object owned by actor A and what everybody else gets: 404 for another user (by bearer token and
by cookie) and for an anonymous visitor (their own cookie), and the same for a visitor's objects against
a user and another visitor. Admin-only routes are 403 for a non-admin (401 for a visitor). A new id route
without an entry fails `test_every_id_route_has_a_cross_actor_case`: add it to ROUTES. Routes that take
their id in the body or the query string are in BODY_ROUTES.
"""

from __future__ import annotations

import base64
import os
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import pytest

from tests.api_client import ApiClient, Reply
from tests.chat_support import fake_connection, new_session, send
from tests.conftest import PASSWORD, close_app, make_app

USER, VISITOR = "alice", "visitor"


@dataclass(frozen=True)
class Owned:
    """An object of `kind` owned by a user (and, with `visitors_own`, one owned by a visitor)."""

    kind: str
    body: dict | None = None
    visitors_own: bool = True
    visitor_status: int = 404  # 401 where visitors cannot have such objects at all (sign in first)


@dataclass(frozen=True)
class AdminOnly:
    """403 for a non-admin user (bearer and cookie), 401 for a visitor, before any lookup."""

    body: dict | None = None


@dataclass(frozen=True)
class Public:
    """Readable by anyone holding an unguessable token or generated path (by design); unknown ones 404."""

    kind: str
    why: str


@dataclass(frozen=True)
class Exempt:
    why: str


ROUTES: dict[tuple[str, str], Owned | AdminOnly | Public | Exempt] = {
    # sessions
    ("GET", "/api/sessions/<int:session_id>"): Owned("session"),
    ("PUT", "/api/sessions/<int:session_id>"): Owned("session", {"title": "mine now"}),
    ("DELETE", "/api/sessions/<int:session_id>"): Owned("session"),
    ("PUT", "/api/sessions/<int:session_id>/model"): Owned("session", {"modelId": "fake-chat"}),
    ("DELETE", "/api/sessions/<int:session_id>/messages"): Owned("session"),
    # messages and generations
    ("GET", "/api/chat/sessions/<int:session_id>/messages"): Owned("session"),
    ("PUT", "/api/chat/sessions/<int:session_id>/messages/<int:message_id>"): Owned("message", {"content": "x"}),
    ("GET", "/api/chat/sessions/<int:session_id>/messages/<int:message_id>/progress"): Owned("message"),
    ("GET", "/api/chat/sessions/<int:session_id>/messages/by-client/<client_message_id>"): Owned("message"),
    ("GET", "/api/chat/stream/<int:message_id>"): Owned("answer"),
    # personal connections (visitors cannot have any: 401)
    ("GET", "/api/connections/<int:connection_id>"): Owned("connection", visitors_own=False, visitor_status=401),
    ("PUT", "/api/connections/<int:connection_id>"): Owned(
        "connection", {"displayName": "stolen"}, visitors_own=False, visitor_status=401),
    ("DELETE", "/api/connections/<int:connection_id>"): Owned("connection", visitors_own=False, visitor_status=401),
    ("GET", "/api/models/<int:connection_id>"): Owned("connection", visitors_own=False, visitor_status=401),
    ("PUT", "/api/models/<int:connection_id>"): Owned(
        "connection", {"displayName": "stolen"}, visitors_own=False, visitor_status=401),
    ("DELETE", "/api/models/<int:connection_id>"): Owned("connection", visitors_own=False, visitor_status=401),
    # shares: managed by id (owner only), read by token (anyone with the link)
    ("PATCH", "/api/shares/<int:share_id>"): Owned("share", {"title": "stolen"}),
    ("POST", "/api/shares/<int:share_id>/revoke"): Owned("share"),
    ("GET", "/api/shares/<token>"): Public("share", "a share link is public to whoever holds its token"),
    ("GET", "/api/shares/<token>/messages"): Public("share", "a share link is public to whoever holds its token"),
    ("GET", "/api/shares/<token>/stream"): Public("share", "a share link is public to whoever holds its token"),
    # images
    ("GET", "/chat-images/<path:path>"): Owned("chat_image"),
    ("GET", "/avatars/<path:path>"): Public("avatar", "avatars are shown to everyone next to their owner's name"),
    # admin only
    ("GET", "/api/users/<int:user_id>"): AdminOnly(),
    ("DELETE", "/api/users/<int:user_id>"): AdminOnly(),
    ("PUT", "/api/users/<int:user_id>/username"): AdminOnly({"username": "taken_over"}),
    ("PUT", "/api/users/<int:user_id>/role"): AdminOnly({"role": "ADMIN"}),
    ("POST", "/api/users/<int:user_id>/approve"): AdminOnly(),
    ("POST", "/api/users/<int:user_id>/reject"): AdminOnly(),
    ("POST", "/api/users/<int:user_id>/status"): AdminOnly({"status": "DISABLED"}),
    ("PUT", "/api/users/<int:user_id>/password"): AdminOnly({"password": "another-pass-1"}),
    ("GET", "/api/users/<int:user_id>/quota"): AdminOnly(),
    ("PUT", "/api/users/<int:user_id>/quota"): AdminOnly({"dailyLimit": 100000}),
    ("GET", "/api/task-trace/<int:trace_id>"): AdminOnly(),
    ("GET", "/api/task-trace/<int:trace_id>/export"): AdminOnly(),
    ("DELETE", "/api/task-trace/<int:trace_id>"): AdminOnly(),
    # no owner
    ("GET", "/static/<path:filename>"): Exempt("Flask's static folder (the app ships none)"),
}

# Routes whose ids travel in the body or the query string: (method, path, body, kind, visitor_status).
BODY_ROUTES: list[tuple[str, str, dict | None, str, int]] = [
    ("POST", "/api/chat/stream", {"sessionId": "{session_id}", "content": "hi"}, "session", 404),
    ("POST", "/api/chat/stream", {"sessionId": "{session_id}", "replyToMessageId": "{message_id}"}, "message", 404),
    ("POST", "/api/chat/completion", {"sessionId": "{session_id}", "content": "hi"}, "session", 404),
    ("POST", "/api/chat/regenerate", {"sessionId": "{session_id}", "messageId": "{message_id}"}, "message", 404),
    ("POST", "/api/chat/stream/cancel", {"sessionId": "{session_id}"}, "session", 404),
    ("POST", "/api/chat/stream/cancel", {"sessionId": "{session_id}", "messageId": "{answer_id}"}, "answer", 404),
    ("POST", "/api/chat/stop", {"sessionId": "{session_id}"}, "session", 404),
    ("GET", "/api/chat/usage?sessionId={session_id}", None, "session", 404),
    ("POST", "/api/shares", {"sessionId": "{session_id}", "messageIds": ["{message_id}"]}, "message", 404),
    ("GET", "/api/shares?sessionId={session_id}", None, "session", 404),
    ("POST", "/api/connections/verify", {"connectionId": "{connection_id}"}, "connection", 401),
]

PLACEHOLDER = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


class World:
    """Users alice (owner), bob (another user) and the admin; visitors V (owner) and W (a stranger).
    Objects are made on first use and kept for the module."""

    def __init__(self, app, fake) -> None:
        self.app = app
        api = ApiClient(app)
        self.admin = api.register_admin("admin", PASSWORD)
        connection_id = fake_connection(self.admin, fake, ["fake-chat", "fake-vision"])
        self.admin.put("/api/catalog/models/tags", {"connectionId": connection_id, "rawId": "fake-vision",
                                                    "capabilities": {"vision": True}})
        reply = self.admin.put("/api/settings/system", {
            "model_access_default_anonymous": "allow", "personal_connections_enabled": True,
            "outbound_allow_hosts": "127.0.0.1", "chat_max_concurrent_streams": 100,
            "default_user_daily_quota": 100000, "anonymous_daily_quota": 100000, "anonymous_address_daily_quota": 0,
        })
        assert reply.status == 200, reply.body
        self.fake = fake
        self.alice = api.user(self.admin, "alice", PASSWORD)
        self.bob = api.user(self.admin, "bob", PASSWORD)
        self.visitor = ApiClient(app)
        self.stranger = ApiClient(app)
        self.stranger.get("/api/auth/actor")  # W has a cookie of their own
        self._made: dict[tuple[str, str], dict] = {}

    def client(self, who: str) -> ApiClient:
        return self.alice if who == USER else self.visitor

    def bob_by_cookie(self) -> ApiClient:
        client = ApiClient(self.app)
        client.client.set_cookie("token", self.bob.token)
        return client

    def attackers(self, owner: str, visitor_status: int) -> list[tuple[str, ApiClient, int]]:
        """Everybody but the owner, with the status each must get."""
        if owner == USER:
            return [("bob/bearer", self.bob, 404), ("bob/cookie", self.bob_by_cookie(), 404),
                    ("visitor W", self.stranger, visitor_status)]
        return [("alice/bearer", self.alice, 404), ("bob/cookie", self.bob_by_cookie(), 404),
                ("visitor W", self.stranger, 404)]

    def values(self, kind: str, owner: str) -> dict[str, Any]:
        if (kind, owner) not in self._made:
            self._made[(kind, owner)] = getattr(self, f"_make_{kind}")(self.client(owner), owner)
        return self._made[(kind, owner)]

    def _make_session(self, client: ApiClient, owner: str) -> dict:
        return {"session_id": new_session(client, "fake-chat")}

    def _make_message(self, client: ApiClient, owner: str) -> dict:
        session_id = new_session(client, "fake-chat")
        stream = send(client, session_id, "hello", clientMessageId=f"cm-{owner}")
        start = stream.events[0].data
        return {"session_id": session_id, "message_id": start["messageId"], "client_message_id": f"cm-{owner}",
                "answer_id": start["assistantMessageId"]}

    def _make_answer(self, client: ApiClient, owner: str) -> dict:
        made = self.values("message", owner)
        return {"session_id": made["session_id"], "message_id": made["answer_id"], "answer_id": made["answer_id"]}

    def _make_connection(self, client: ApiClient, owner: str) -> dict:
        reply = client.post("/api/connections", {"provider": "openai", "displayName": "Mine",
                                                 "baseUrl": self.fake.base_url("openai"), "apiKey": "sk-own-12345678",
                                                 "prefixId": f"own{owner}"})
        assert reply.status == 201, reply.body
        return {"connection_id": reply.data["id"]}

    def _make_share(self, client: ApiClient, owner: str) -> dict:
        made = self.values("message", owner)
        reply = client.post("/api/shares", {"sessionId": made["session_id"], "messageIds": [made["message_id"]]})
        assert reply.status == 201, reply.body
        return {"share_id": reply.data["id"], "token": reply.data["token"], "session_id": made["session_id"]}

    def _make_chat_image(self, client: ApiClient, owner: str) -> dict:
        session_id = new_session(client, "fake-vision")
        image = {"data": base64.b64encode(_png()).decode(), "mime": "image/png"}
        stream = send(client, session_id, "what is this?", images=[image])
        assert stream.status == 200, stream.json
        message = client.get(f"/api/sessions/{session_id}").data["messages"][0]
        url = message["images"][0]
        return {"path": url.split("?", 1)[0].removeprefix("/chat-images/")}

    def _make_avatar(self, client: ApiClient, owner: str) -> dict:
        return {"path": "2000/01/" + "0" * 32 + ".png"}  # avatars are public: only an unknown one is checked


PROBES = {  # how the owner checks the object is still there and still theirs
    "session": "/api/sessions/{session_id}",
    "message": "/api/chat/sessions/{session_id}/messages/{message_id}/progress",
    "answer": "/api/chat/sessions/{session_id}/messages/{message_id}/progress",
    "connection": "/api/connections/{connection_id}",
    "share": "/api/shares/{token}",  # 404 once revoked
    "chat_image": "/chat-images/{path}",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory, fake):
    with pytest.MonkeyPatch.context() as patch:
        for name in ("DATABASE_URL", "JWT_SECRET", "ENCRYPTION_KEY", "APP_ENV", "CORS_ORIGIN", "ENABLE_CORS"):
            if name in os.environ:
                patch.delenv(name)
        app = make_app(tmp_path_factory.mktemp("ownership") / "data")
        try:
            yield World(app, fake)
        finally:
            close_app(app)


def _rules(app) -> dict[tuple[str, str], Any]:
    found = {}
    for rule in app.url_map.iter_rules():
        if rule.arguments:
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                found[(method, rule.rule)] = rule
    return found


def _path(rule: str, values: dict) -> str:
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), rule)


def _fill(template: Any, values: dict) -> Any:
    if isinstance(template, str):
        whole = re.fullmatch(r"\{([a-z_]+)\}", template)
        return values[whole.group(1)] if whole else template.format(**values)
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, values) for v in template]
    return template


def _call(client: ApiClient, method: str, path: str, body: dict | None) -> Reply:
    return client.call(method, path, body)


def _missing(app) -> list[tuple[str, str]]:
    return sorted(key for key in _rules(app) if key not in ROUTES)


def test_every_id_route_has_a_cross_actor_case(world):
    missing = _missing(world.app)
    assert not missing, f"routes with ids but no ownership case (add them to ROUTES): {missing}"


def test_a_new_id_route_without_a_case_is_reported(tmp_path):
    app = make_app(tmp_path / "data")
    try:
        app.add_url_rule("/api/widgets/<int:widget_id>", "widget", lambda widget_id: "", methods=["GET", "DELETE"])
        assert _missing(app) == [("DELETE", "/api/widgets/<int:widget_id>"), ("GET", "/api/widgets/<int:widget_id>")]
    finally:
        close_app(app)


@pytest.mark.parametrize("route", sorted(ROUTES), ids=[f"{m} {r}" for m, r in sorted(ROUTES)])
def test_another_actor_cannot_reach_the_object(world, route):
    method, rule = route
    if route not in _rules(world.app):
        pytest.skip("route not registered in this build")
    case = ROUTES[route]
    if isinstance(case, Exempt):
        return
    if isinstance(case, AdminOnly):
        path = _path(rule, {"user_id": world.bob.get("/api/auth/me").data["id"], "trace_id": 1})
        for name, client, status in [("bob/bearer", world.bob, 403), ("bob/cookie", world.bob_by_cookie(), 403),
                                     ("visitor W", world.stranger, 401)]:
            reply = _call(client, method, path, case.body)
            assert reply.status == status, (name, reply.status, reply.body)
        return
    if isinstance(case, Public):
        unknown = {"token": "x" * 43, "path": "2000/01/" + "f" * 32 + ".png"}
        for client in (world.bob, world.stranger):
            assert _call(client, method, _path(rule, unknown), None).status == 404
        if case.kind == "share":
            known = world.values("share", USER)
            assert _call(world.stranger, method, _path(rule, known), None).status == 200
            assert _call(world.stranger, method, _path(rule, {"token": known["share_id"]}), None).status == 404
        return
    owners = [USER, VISITOR] if case.visitors_own else [USER]
    for owner in owners:
        values = world.values(case.kind, owner)
        path = _path(rule, values)
        for name, client, status in world.attackers(owner, case.visitor_status):
            reply = _call(client, method, path, case.body)
            assert reply.status == status, (owner, name, reply.status, reply.body)
        if method == "GET":
            assert _call(world.client(owner), method, path, None).status == 200, (owner, "the owner")
        probe = PROBES[case.kind].format(**values)
        assert world.client(owner).get(probe).status == 200, (owner, "object gone after the attempts", probe)


@pytest.mark.parametrize("method,path,body,kind,visitor_status", BODY_ROUTES,
                         ids=[f"{m} {p.split('?')[0]} {k}" for m, p, _b, k, _s in BODY_ROUTES])
def test_another_actor_cannot_reach_the_object_by_body_or_query_id(world, method, path, body, kind, visitor_status):
    owners = [USER] if kind == "connection" else [USER, VISITOR]
    for owner in owners:
        values = world.values(kind, owner)
        target = _fill(path, values)
        if not any(target.split("?")[0] == rule for (_m, rule) in _rules_plain(world.app)):
            pytest.skip("route not registered in this build")
        for name, client, status in world.attackers(owner, visitor_status):
            reply = _call(client, method, target, _fill(body, values))
            assert reply.status == status, (owner, name, reply.status, reply.body)
        probe = PROBES[kind].format(**values)
        assert world.client(owner).get(probe).status == 200, (owner, "object gone after the attempts", probe)


def _rules_plain(app) -> set[tuple[str, str]]:
    return {(m, rule.rule.rstrip("/") or "/") for rule in app.url_map.iter_rules() for m in rule.methods}

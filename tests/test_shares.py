"""/api/shares: snapshot links, their tokens, who may manage them, and following a shared answer live."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from common.db import execute, fetch_one, insert, utcnow
from tests.api_client import ApiClient
from tests.chat_support import fake_connection, message, new_session, open_stream, send, wait_until
from tests.sse_reader import events_only, joined

PASSWORD = "correct-horse-1"
SLOW = "fake-slow@chunks=40,delay=50"


@pytest.fixture
def chat(api, admin, fake):
    fake_connection(admin, fake, ["fake-chat", SLOW])
    return admin


def _turn(client: ApiClient, content: str = "hello there", model: str = "fake-chat") -> tuple[int, list[int]]:
    """A session with one question and its answer; returns (session id, [user id, answer id])."""
    session_id = new_session(client, model)
    start = send(client, session_id, content).events[0].data
    return session_id, [start["messageId"], start["assistantMessageId"]]


def _share(client: ApiClient, session_id: int, message_ids: list[int], **extra) -> dict:
    reply = client.post("/api/shares", {"sessionId": session_id, "messageIds": message_ids, **extra})
    assert reply.status == 201, reply.body
    return reply.data


def _sql(app, sql: str, **params) -> None:
    db = app.extensions["parley.db"]
    with db as tx:
        execute(tx, sql, **params)


def _keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


# --- creating and reading ------------------------------------------------------------------------


def test_creating_a_share_returns_its_link(app, chat):
    session_id, ids = _turn(chat)
    share = _share(chat, session_id, ids, title="My chat", expiresInHours=24)
    assert share["token"] and share["url"].endswith(f"/share/{share['token']}")
    assert share["sessionId"] == session_id and share["messageIds"] == ids
    assert share["title"] == "My chat" and share["expiresAt"] and share["revokedAt"] is None
    assert share["active"] is True


def test_a_share_is_readable_without_any_credentials(app, chat):
    session_id, ids = _turn(chat, "read me")
    token = _share(chat, session_id, ids)["token"]
    reply = ApiClient(app).get(f"/api/shares/{token}")
    assert reply.status == 200, reply.body
    assert [(m["role"], m["content"]) for m in reply.data["messages"]] == [
        ("user", "read me"), ("assistant", "Echo: read me")]
    assert reply.data["title"] == "New Chat" and reply.data["live"] is False


def test_a_share_is_readable_with_anonymous_access_turned_off(app, chat):
    session_id, ids = _turn(chat)
    token = _share(chat, session_id, ids)["token"]
    chat.put("/api/settings/system", {"anonymous_daily_quota": 0})
    assert ApiClient(app).get(f"/api/shares/{token}").status == 200


def test_share_messages_route_lists_the_snapshot(app, chat):
    session_id, ids = _turn(chat, "listed")
    token = _share(chat, session_id, ids[1:])["token"]
    reply = ApiClient(app).get(f"/api/shares/{token}/messages")
    assert reply.status == 200
    assert [(m["id"], m["content"], m["streamStatus"]) for m in reply.data["messages"]] == [
        (ids[1], "Echo: listed", "done")]


def test_a_public_share_reveals_no_owner_or_session(app, chat):
    session_id, ids = _turn(chat)
    token = _share(chat, session_id, ids)["token"]
    body = ApiClient(app).get(f"/api/shares/{token}").data
    assert not _keys(body) & {"userId", "user_id", "anonKey", "anon_key", "sessionId", "session_id", "owner",
                              "clientMessageId", "parentMessageId"}


def test_tokens_are_long_random_and_unique(app, chat):
    session_id, ids = _turn(chat)
    tokens = [_share(chat, session_id, ids)["token"] for _ in range(20)]
    assert len(set(tokens)) == 20
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43,}", t) for t in tokens)  # >= 43 base64 chars = 256 bits
    assert len(set("".join(tokens))) > 40  # the whole URL-safe alphabet is in use


def test_the_database_keeps_only_a_hash_and_a_sealed_copy_of_the_token(app, chat):
    session_id, ids = _turn(chat)
    share = _share(chat, session_id, ids)
    row = fetch_one(app.extensions["parley.db"], "SELECT * FROM shares WHERE id = :id", id=share["id"])
    assert row["token_hash"] == hashlib.sha256(share["token"].encode()).hexdigest()
    assert share["token"] not in json.dumps({k: str(v) for k, v in row.items()})


def test_an_unknown_token_is_404(app, chat):
    for token in ("A" * 43, "short", "x" * 300, "%00"):
        reply = ApiClient(app).get(f"/api/shares/{token}")
        assert reply.status == 404 and reply.body["success"] is False


# --- expiry and revocation -----------------------------------------------------------------------


def test_an_expired_share_is_404(app, chat):
    session_id, ids = _turn(chat)
    share = _share(chat, session_id, ids, expiresInHours=1)
    _sql(app, "UPDATE shares SET expires_at = '2000-01-01 00:00:00' WHERE id = :id", id=share["id"])
    for suffix in ("", "/messages", "/stream"):
        reply = ApiClient(app).get(f"/api/shares/{share['token']}{suffix}")
        assert reply.status == 404 and reply.code == "share_not_found"


def test_a_revoked_share_is_404(app, chat):
    session_id, ids = _turn(chat)
    share = _share(chat, session_id, ids)
    assert chat.post(f"/api/shares/{share['id']}/revoke").status == 200
    assert ApiClient(app).get(f"/api/shares/{share['token']}").status == 404


def test_revoking_twice_keeps_the_first_revocation(app, chat):
    session_id, ids = _turn(chat)
    share = _share(chat, session_id, ids)
    first = chat.post(f"/api/shares/{share['id']}/revoke")
    second = chat.post(f"/api/shares/{share['id']}/revoke")
    assert first.status == second.status == 200
    assert first.data["revokedAt"] == second.data["revokedAt"] is not None
    assert second.data["active"] is False


def test_patch_changes_the_title_and_the_expiry(app, chat):
    session_id, ids = _turn(chat)
    share = _share(chat, session_id, ids, expiresInHours=1)
    reply = chat.patch(f"/api/shares/{share['id']}", {"title": "Renamed", "expiresInHours": None})
    assert reply.status == 200, reply.body
    assert reply.data["title"] == "Renamed" and reply.data["expiresAt"] is None
    assert ApiClient(app).get(f"/api/shares/{share['token']}").data["title"] == "Renamed"


def test_patch_of_a_revoked_share_is_409(app, chat):
    session_id, ids = _turn(chat)
    share = _share(chat, session_id, ids)
    chat.post(f"/api/shares/{share['id']}/revoke")
    reply = chat.patch(f"/api/shares/{share['id']}", {"expiresInHours": 5})
    assert reply.status == 409 and reply.code == "share_revoked"


# --- ownership -----------------------------------------------------------------------------------


def test_another_actors_share_is_404_on_patch_and_revoke(app, api, chat):
    session_id, ids = _turn(chat)
    share = _share(chat, session_id, ids)
    stranger = api.user(chat, "stranger", PASSWORD)
    visitor = ApiClient(app)
    for client in (stranger, visitor):
        assert client.patch(f"/api/shares/{share['id']}", {"title": "mine now"}).status == 404
        assert client.post(f"/api/shares/{share['id']}/revoke").status == 404
    assert ApiClient(app).get(f"/api/shares/{share['token']}").data["title"] == "New Chat"


def test_sharing_another_actors_session_is_404(app, api, chat):
    session_id, ids = _turn(chat)
    stranger = api.user(chat, "stranger", PASSWORD)
    reply = stranger.post("/api/shares", {"sessionId": session_id, "messageIds": ids})
    assert reply.status == 404 and reply.code == "session_not_found"


def test_messages_of_another_session_are_refused(app, api, chat):
    mine, my_ids = _turn(chat, "one")
    _other, other_ids = _turn(chat, "two")
    stranger = api.user(chat, "stranger", PASSWORD)
    _theirs, their_ids = _turn(stranger, "three")
    for foreign in (other_ids[0], their_ids[0], 999_999):
        reply = chat.post("/api/shares", {"sessionId": mine, "messageIds": [my_ids[0], foreign]})
        assert reply.status == 400 and reply.code == "messages_not_in_session"
        assert reply.data["messageIds"] == [foreign]


def test_the_list_shows_only_the_actors_shares(app, api, chat):
    first, ids = _turn(chat)
    second, other_ids = _turn(chat)
    mine = [_share(chat, first, ids)["id"], _share(chat, second, other_ids)["id"]]
    stranger = api.user(chat, "stranger", PASSWORD)
    _share(stranger, *_turn(stranger))
    assert [s["id"] for s in chat.get("/api/shares").data["shares"]] == mine[::-1]
    assert [s["id"] for s in chat.get(f"/api/shares?sessionId={first}").data["shares"]] == mine[:1]
    assert stranger.get(f"/api/shares?sessionId={first}").status == 404


def test_an_anonymous_visitor_can_share_their_session(app, chat):
    chat.put("/api/settings/system", {"model_access_default_anonymous": "allow"})
    visitor = ApiClient(app)
    session_id, ids = _turn(visitor, "anonymous hello")
    share = _share(visitor, session_id, ids)
    assert [s["id"] for s in visitor.get("/api/shares").data["shares"]] == [share["id"]]
    public = ApiClient(app).get(f"/api/shares/{share['token']}").data
    assert public["messages"][1]["content"] == "Echo: anonymous hello"
    assert ApiClient(app).post(f"/api/shares/{share['id']}/revoke").status == 404  # another visitor
    assert visitor.post(f"/api/shares/{share['id']}/revoke").status == 200


def test_a_visitor_who_logs_in_keeps_their_shares(app, api, chat):
    chat.put("/api/settings/system", {"model_access_default_anonymous": "allow"})
    api.user(chat, "olga", PASSWORD)
    visitor = ApiClient(app)
    share = _share(visitor, *_turn(visitor))
    login = visitor.post("/api/auth/login", {"username": "olga", "password": PASSWORD})
    assert login.status == 200, login.body
    olga = visitor.with_token(login.data["token"])
    assert [s["id"] for s in olga.get("/api/shares").data["shares"]] == [share["id"]]
    assert olga.post(f"/api/shares/{share['id']}/revoke").status == 200


def test_deleting_the_session_deletes_its_shares(app, chat):
    session_id, ids = _turn(chat)
    share = _share(chat, session_id, ids)
    assert chat.delete(f"/api/sessions/{session_id}").status == 200
    assert ApiClient(app).get(f"/api/shares/{share['token']}").status == 404
    assert chat.get("/api/shares").data["shares"] == []


# --- the snapshot --------------------------------------------------------------------------------


def test_the_snapshot_is_unaffected_by_later_edits(app, chat):
    session_id, ids = _turn(chat, "original question")
    token = _share(chat, session_id, ids)["token"]
    edit = chat.put(f"/api/chat/sessions/{session_id}/messages/{ids[0]}", {"content": "edited question"})
    assert edit.status == 200, edit.body
    assert message(app, ids[1]) is None  # the edit deleted the answer
    shared = ApiClient(app).get(f"/api/shares/{token}/messages").data["messages"]
    assert [m["content"] for m in shared] == ["original question", "Echo: original question"]


def test_shared_images_are_signed_urls_anyone_with_the_link_can_load(app, chat, fake):
    from tests.test_images import PNG, VISION, upload

    connection_id = fake_connection(chat, fake, [VISION])
    chat.put("/api/catalog/models/tags", {"connectionId": connection_id, "rawId": VISION,
                                          "capabilities": {"vision": True}})
    session_id = new_session(chat, VISION)
    start = send(chat, session_id, "look", images=[upload(PNG)]).events[0].data
    token = _share(chat, session_id, [start["messageId"]])["token"]
    [url] = ApiClient(app).get(f"/api/shares/{token}").data["messages"][0]["images"]
    assert url.startswith("/chat-images/") and "&sig=" in url
    assert app.test_client().get(url).data == PNG  # no credentials: the signature is the permission
    stored = fetch_one(app.extensions["parley.db"], "SELECT snapshot FROM shares WHERE session_id = :s", s=session_id)
    assert "sig=" not in stored["snapshot"]  # signed when read, so the links never go stale


def test_a_shared_answer_still_generating_is_followed_live(app, chat):
    session_id = new_session(chat, SLOW)
    owner = open_stream(chat, "/api/chat/stream", {"sessionId": session_id, "content": "live share"})
    start = owner.until("start").data
    owner.until("content")
    token = _share(chat, session_id, [start["messageId"], start["assistantMessageId"]])["token"]
    viewer = open_stream(ApiClient(app), f"/api/shares/{token}/stream", method="GET")
    assert viewer.status == 200
    assert viewer.response.headers["Content-Type"].startswith("text/event-stream")
    events = viewer.read_all()
    owner.read_all()
    assert events[-1].data == "[DONE]"
    final = message(app, start["assistantMessageId"])
    assert final["stream_status"] == "done" and joined(events) == final["content"] != ""
    assert "quota" not in [e.type for e in events]  # the owner's quota is not the viewer's business


def test_a_shared_answer_reads_as_it_is_now_and_freezes_when_done(app, chat):
    session_id = new_session(chat, SLOW)
    owner = open_stream(chat, "/api/chat/stream", {"sessionId": session_id, "content": "freeze me"})
    start = owner.until("start").data
    token = _share(chat, session_id, [start["assistantMessageId"]])["token"]
    during = ApiClient(app).get(f"/api/shares/{token}").data
    assert during["live"] is True and during["messages"][0]["streamStatus"] == "streaming"
    owner.read_all()
    final = message(app, start["assistantMessageId"])
    after = ApiClient(app).get(f"/api/shares/{token}").data["messages"][0]
    assert (after["streamStatus"], after["content"]) == ("done", final["content"])
    row = fetch_one(app.extensions["parley.db"], "SELECT snapshot FROM shares WHERE session_id = :s", s=session_id)
    assert json.loads(row["snapshot"])[0]["content"] == final["content"]  # frozen into the snapshot


def test_the_stream_of_a_finished_share_replays_the_snapshot(app, chat):
    session_id, ids = _turn(chat, "replay")
    token = _share(chat, session_id, ids)["token"]
    events = events_only(open_stream(ApiClient(app), f"/api/shares/{token}/stream", method="GET").read_all())
    assert [e.type for e in events[:-1]] == ["message", "message"]
    assert [e.data["message"]["content"] for e in events[:-1]] == ["replay", "Echo: replay"]
    assert [e.id for e in events[:-1]] == [1, 2] and events[-1].data == "[DONE]"


def test_the_live_stream_resumes_after_last_event_id(app, chat):
    session_id = new_session(chat, SLOW)
    owner = open_stream(chat, "/api/chat/stream", {"sessionId": session_id, "content": "resume share"})
    start = owner.until("start").data
    token = _share(chat, session_id, [start["assistantMessageId"]])["token"]
    first = open_stream(ApiClient(app), f"/api/shares/{token}/stream", method="GET")
    seen = [first.until("content"), first.until("content")]
    first.close()
    rest = open_stream(ApiClient(app), f"/api/shares/{token}/stream", method="GET",
                       headers={"Last-Event-ID": str(seen[-1].id)}).read_all()
    owner.read_all()
    wait_until(lambda: message(app, start["assistantMessageId"])["stream_status"] == "done")
    assert joined(seen) + joined(rest) == message(app, start["assistantMessageId"])["content"]


# --- bad input -----------------------------------------------------------------------------------

BAD_CREATE = [
    {}, {"sessionId": 1}, {"messageIds": [1]}, {"sessionId": "1", "messageIds": [1]},
    {"sessionId": 1, "messageIds": []}, {"sessionId": 1, "messageIds": list(range(1, 52))},
    {"sessionId": 1, "messageIds": "1"}, {"sessionId": 1, "messageIds": [0]}, {"sessionId": 1, "messageIds": [True]},
    {"sessionId": 1, "messageIds": [2**40]}, {"sessionId": 1, "messageIds": [1], "expiresInHours": 0},
    {"sessionId": 1, "messageIds": [1], "expiresInHours": 721}, {"sessionId": 1, "messageIds": [1], "title": 5},
    {"sessionId": 1, "messageIds": [1], "expiresInHours": "5"}, {"sessionId": 1, "messageIds": [1], "title": "x" * 201},
]  # fmt: skip


@pytest.mark.parametrize("body", BAD_CREATE)
def test_bad_create_bodies_are_validation_errors(app, chat, body):
    reply = chat.post("/api/shares", body)
    assert reply.status == 400 and reply.code == "validation_error", reply.body


@pytest.mark.parametrize("body", [{"title": ""}, {"title": 1}, {"expiresInHours": 0}, {"expiresInHours": [1]},
                                  {"title": "a\x00b"}])
def test_bad_patch_bodies_are_validation_errors(app, chat, body):
    share = _share(chat, *_turn(chat))
    reply = chat.patch(f"/api/shares/{share['id']}", body)
    assert reply.status == 400 and reply.code == "validation_error", reply.body


@pytest.mark.parametrize("query", ["sessionId=abc", "sessionId=0", "page=0", "limit=1000", "sessionId=99999999999"])
def test_bad_list_queries_are_400(app, chat, query):
    reply = chat.get(f"/api/shares?{query}")
    assert reply.status == 400 and reply.body["success"] is False


@pytest.mark.parametrize("since", ["abc", "-1", "1" * 12])
def test_a_bad_stream_cursor_is_400(app, chat, since):
    share = _share(chat, *_turn(chat))
    reply = ApiClient(app).get(f"/api/shares/{share['token']}/stream?since={since}")
    assert reply.status == 400 and reply.body["success"] is False


def test_unknown_share_ids_are_404_envelopes(app, chat):
    for method, path in (("PATCH", "/api/shares/999999"), ("POST", "/api/shares/999999/revoke"),
                         ("PATCH", "/api/shares/99999999999"), ("GET", "/api/shares/nope/messages")):
        reply = chat.call(method, path, {"title": "x"})
        assert reply.status == 404 and reply.body["success"] is False, (method, path, reply.body)



def test_a_share_lives_through_its_whole_life_on_every_database(any_db_app, fake):
    # The rows are written directly: this test is about the shares' own SQL on each database.
    admin = ApiClient(any_db_app).register_admin("admin", PASSWORD)
    fake_connection(admin, fake, ["fake-chat"])
    session_id = new_session(admin, "fake-chat")
    now = utcnow()
    db = any_db_app.extensions["parley.db"]
    with db as tx:
        ids = [insert(tx, "messages", {"session_id": session_id, "role": role, "content": text, "images": "[]",
                                       "stream_status": status, "stream_cursor": 0, "created_at": now,
                                       "updated_at": now})
               for role, text, status in (("user", "question", None), ("assistant", "part", "streaming"))]
    share = _share(admin, session_id, ids, expiresInHours=2)
    during = ApiClient(any_db_app).get(f"/api/shares/{share['token']}").data
    assert during["live"] is True and during["messages"][1]["content"] == "part"
    _sql(any_db_app, "UPDATE messages SET content = 'partial answer', stream_status = 'done' WHERE id = :id",
         id=ids[1])
    after = ApiClient(any_db_app).get(f"/api/shares/{share['token']}/messages").data["messages"]
    assert (after[1]["content"], after[1]["streamStatus"]) == ("partial answer", "done")
    _sql(any_db_app, "UPDATE messages SET content = 'changed later' WHERE id = :id", id=ids[1])
    assert ApiClient(any_db_app).get(f"/api/shares/{share['token']}").data["messages"][1]["content"] == \
        "partial answer"  # frozen once done
    assert admin.get(f"/api/shares?sessionId={session_id}").data["pagination"]["total"] == 1
    assert admin.patch(f"/api/shares/{share['id']}", {"title": "Renamed"}).data["title"] == "Renamed"
    assert admin.post(f"/api/shares/{share['id']}/revoke").data["active"] is False
    assert ApiClient(any_db_app).get(f"/api/shares/{share['token']}").status == 404

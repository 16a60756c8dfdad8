"""/api/sessions and the message endpoints: the owner's sessions only, anonymous visitors included."""

import pytest

from tests.chat_support import fake_connection, messages, new_session, open_stream, send

PASSWORD = "correct-horse-1"


@pytest.fixture
def chat(api, admin, fake):
    fake_connection(admin, fake, ["fake-chat", "fake-slow@chunks=60,delay=50"])
    return admin


def test_a_new_session_has_the_default_title_and_its_model(chat):
    reply = chat.post("/api/sessions", {"modelId": "fake-chat"})
    assert reply.status == 201
    assert reply.data["title"] == "New Chat" and reply.data["modelRawId"] == "fake-chat"
    assert reply.data["_count"] == {"messages": 0}


def test_an_unknown_model_is_refused_and_nothing_is_created(chat):
    reply = chat.post("/api/sessions", {"modelId": "no-such-model"})
    assert 400 <= reply.status < 500 and reply.code == "model_not_found"
    assert chat.get("/api/sessions").data["pagination"]["total"] == 0


def test_the_list_shows_pinned_first_then_newest(chat):
    first, second, third = (new_session(chat, "fake-chat", title=t) for t in ("a", "b", "c"))
    chat.put(f"/api/sessions/{first}", {"pinned": True})
    listed = [s["id"] for s in chat.get("/api/sessions").data["sessions"]]
    assert listed[0] == first and listed[1:] == [third, second]


def test_the_list_is_paginated(chat):
    for _ in range(5):
        new_session(chat, "fake-chat")
    page = chat.get("/api/sessions?page=2&limit=2").data
    assert len(page["sessions"]) == 2 and page["pagination"] == {"page": 2, "limit": 2, "total": 5, "totalPages": 3}
    assert chat.get("/api/sessions?limit=201").status == 400


def test_update_changes_title_prompt_tags_and_reasoning(chat):
    session_id = new_session(chat, "fake-chat")
    reply = chat.put(f"/api/sessions/{session_id}", {"title": "Renamed", "systemPrompt": "Be kind.",
                                                     "tags": ["work", "work", "ideas"], "reasoningEffort": "high"})
    assert reply.status == 200
    assert (reply.data["title"], reply.data["systemPrompt"], reply.data["tags"], reply.data["reasoningEffort"]) == (
        "Renamed", "Be kind.", ["ideas", "work"], "high")


def test_a_system_prompt_over_the_limit_is_refused(chat):
    session_id = new_session(chat, "fake-chat")
    reply = chat.put(f"/api/sessions/{session_id}", {"systemPrompt": "x" * 12001})
    assert reply.status == 400 and "systemPrompt" in reply.body["data"]["fields"]


def test_switching_the_model_checks_it(chat):
    session_id = new_session(chat, "fake-chat")
    assert chat.put(f"/api/sessions/{session_id}/model", {"modelId": "nope"}).status in (400, 404)
    reply = chat.put(f"/api/sessions/{session_id}/model", {"modelId": "demo-chat"})
    assert reply.status == 200 and reply.data["modelRawId"] == "demo-chat"


def test_get_returns_the_messages_oldest_first(chat):
    session_id = new_session(chat, "fake-chat")
    send(chat, session_id, "hi")
    data = chat.get(f"/api/sessions/{session_id}").data
    assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
    assert data["messages"][1]["streamStatus"] == "done" and data["messages"][1]["metrics"]["totalTokens"] > 0


def test_delete_many_can_keep_pinned_sessions(chat):
    keep = new_session(chat, "fake-chat")
    chat.put(f"/api/sessions/{keep}", {"pinned": True})
    new_session(chat, "fake-chat")
    new_session(chat, "fake-chat")
    assert chat.delete("/api/sessions", {"excludePinned": True}).data == {"deletedCount": 2}
    assert [s["id"] for s in chat.get("/api/sessions").data["sessions"]] == [keep]


def test_clearing_messages_empties_the_session(app, chat):
    session_id = new_session(chat, "fake-chat")
    send(chat, session_id, "hi")
    assert chat.delete(f"/api/sessions/{session_id}/messages").data == {"deletedCount": 2}
    assert messages(app, session_id) == []
    assert chat.get(f"/api/sessions/{session_id}").data["_count"]["messages"] == 0


def test_another_users_session_is_404_on_every_route(api, chat):
    session_id = new_session(chat, "fake-chat")
    stranger = api.user(chat, "eve", PASSWORD)
    for method, path, body in [
        ("GET", f"/api/sessions/{session_id}", None),
        ("PUT", f"/api/sessions/{session_id}", {"title": "mine now"}),
        ("PUT", f"/api/sessions/{session_id}/model", {"modelId": "fake-chat"}),
        ("DELETE", f"/api/sessions/{session_id}", None),
        ("DELETE", f"/api/sessions/{session_id}/messages", None),
        ("POST", "/api/chat/stream", {"sessionId": session_id, "content": "hi"}),
        ("POST", "/api/chat/stream/cancel", {"sessionId": session_id}),
        ("GET", f"/api/chat/sessions/{session_id}/messages", None),
        ("GET", f"/api/chat/usage?sessionId={session_id}", None),
    ]:
        assert stranger.call(method, path, body).status == 404, (method, path)
    assert chat.get(f"/api/sessions/{session_id}").status == 200


def test_anonymous_visitors_own_their_sessions(app, api):
    visitor = api.with_token(None)
    session_id = new_session(visitor, "demo-chat")
    assert [s["id"] for s in visitor.get("/api/sessions").data["sessions"]] == [session_id]
    other_visitor = api.with_token(None)
    assert other_visitor.get(f"/api/sessions/{session_id}").status == 404
    assert other_visitor.get("/api/sessions").data["sessions"] == []


def test_an_anonymous_visitor_can_chat_with_the_demo_model(app, api):
    app.extensions["parley.settings"].update({"stream_progress_persist_interval_ms": 100})
    visitor = api.with_token(None)
    session_id = new_session(visitor, "demo-chat")
    stream = send(visitor, session_id, "Hello demo")
    text = "".join(e.data.get("content", "") for e in stream.events if e.type == "content")
    assert text.startswith("[demo-chat] ")


def test_messages_page_latest_is_the_last_page(chat):
    session_id = new_session(chat, "fake-chat")
    for word in ("a", "b", "c"):
        send(chat, session_id, word)
    page = chat.get(f"/api/chat/sessions/{session_id}/messages?page=latest&limit=4").data
    assert [m["content"] for m in page["messages"]] == ["c", "Echo: c"]
    assert page["pagination"]["page"] == 2


def test_editing_the_last_user_message_deletes_its_answers(app, chat):
    session_id = new_session(chat, "fake-chat")
    first = send(chat, session_id, "first").events[0].data["messageId"]
    last = send(chat, session_id, "second").events[0].data["messageId"]
    reply = chat.put(f"/api/chat/sessions/{session_id}/messages/{last}", {"content": "second, edited"})
    assert reply.status == 200 and reply.data["message"]["content"] == "second, edited"
    assert [m["content"] for m in messages(app, session_id)] == ["first", "Echo: first", "second, edited"]
    older = chat.put(f"/api/chat/sessions/{session_id}/messages/{first}", {"content": "nope"})
    assert older.status == 400


def test_editing_while_generating_is_a_conflict(chat):
    session_id = new_session(chat, "fake-slow@chunks=60,delay=50")
    stream = open_stream(chat, "/api/chat/stream", {"sessionId": session_id, "content": "busy"})
    user_id = stream.until("start").data["messageId"]
    reply = chat.put(f"/api/chat/sessions/{session_id}/messages/{user_id}", {"content": "changed"})
    assert reply.status == 409
    chat.post("/api/chat/stop", {"sessionId": session_id})
    stream.read_all()


def test_progress_and_by_client_id_return_the_message(chat):
    session_id = new_session(chat, "fake-chat")
    stream = send(chat, session_id, "find me", clientMessageId="client-42")
    assistant_id = stream.events[0].data["assistantMessageId"]
    progress = chat.get(f"/api/chat/sessions/{session_id}/messages/{assistant_id}/progress").data["message"]
    assert progress["streamStatus"] == "done"
    by_client = chat.get(f"/api/chat/sessions/{session_id}/messages/by-client/client-42").data["message"]
    assert by_client["content"] == "find me"
    assert chat.get(f"/api/chat/sessions/{session_id}/messages/by-client/nope").status == 404


def test_usage_totals_and_last_round(chat):
    session_id = new_session(chat, "fake-chat")
    send(chat, session_id, "count me")
    usage = chat.get(f"/api/chat/usage?sessionId={session_id}&includeContext=1").data
    assert usage["totals"]["total_tokens"] > 0
    assert usage["last_round"]["usage_source"] == "provider"
    assert usage["current"]["prompt_tokens"] > 0
    assert usage["current"]["context_remaining"] == usage["current"]["context_limit"] - usage["current"][
        "prompt_tokens"]
    per_session = chat.get("/api/chat/sessions/usage").data
    assert per_session == [{"sessionId": session_id, "totals": usage["totals"]}]


def test_daily_usage_is_for_users_only_and_grouped_by_day(api, chat):
    send(chat, new_session(chat, "fake-chat"), "today")
    daily = chat.get("/api/chat/usage/daily").data
    assert len(daily["rows"]) == 1 and daily["rows"][0]["total_tokens"] > 0
    assert chat.get("/api/chat/usage/daily?from=2026-02-30").status == 400
    assert api.with_token(None).get("/api/chat/usage/daily").status == 401

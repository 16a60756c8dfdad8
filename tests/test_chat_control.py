"""Cancel, regenerate, idempotent re-sends, refusals that write nothing, and the prompt sent."""

import time

import gevent
import pytest

from common.db import fetch_one
from tests.chat_support import (
    fake_connection,
    message,
    messages,
    new_session,
    open_stream,
    send,
    wait_until,
)
from tests.conftest import close_app, make_app
from tests.sse_reader import events_only, joined, parse

SLOW = "fake-slow@chunks=60,delay=50"


@pytest.fixture
def chat(api, admin, fake):
    fake_connection(admin, fake, ["fake-chat", SLOW, "fake-429@key=ctl,times=1", "fake-500-once@key=ctl5"])
    return admin


def _quota_used(app, scope="USER") -> int:
    row = fetch_one(app.extensions["parley.db"], "SELECT used FROM quota_counters WHERE scope = :s", s=scope)
    return row["used"] if row else 0


def test_cancel_closes_the_upstream_and_saves_the_partial_answer(app, chat, fake):
    session_id = new_session(chat, SLOW)
    stream = open_stream(chat, "/api/chat/stream", {"sessionId": session_id, "content": "stop me"})
    assistant_id = stream.until("start").data["assistantMessageId"]
    stream.until("content")
    asked = time.monotonic()
    reply = chat.post("/api/chat/stream/cancel", {"sessionId": session_id, "messageId": assistant_id})
    assert reply.status == 200 and reply.data["cancelled"] == [assistant_id]
    assert fake.wait_for_disconnect(SLOW, timeout=1.0) is not None
    assert time.monotonic() - asked < 1.0
    rest = stream.read_all()
    complete = next(e.data for e in rest if e.type == "complete")
    assert complete["streamStatus"] == "cancelled"
    saved = message(app, assistant_id)
    assert saved["stream_status"] == "cancelled"
    assert saved["content"] == joined(stream.events) and saved["content"]


def test_cancel_is_idempotent_and_harmless_after_the_end(app, chat):
    session_id = new_session(chat, "fake-chat")
    stream = send(chat, session_id, "done already")
    assistant_id = stream.events[0].data["assistantMessageId"]
    for _ in range(2):
        reply = chat.post("/api/chat/stream/cancel", {"sessionId": session_id, "messageId": assistant_id})
        assert reply.status == 200 and reply.data["cancelled"] == []
    assert message(app, assistant_id)["stream_status"] == "done"


def test_stop_really_stops(app, chat):
    session_id = new_session(chat, SLOW)
    stream = open_stream(chat, "/api/chat/stream", {"sessionId": session_id, "content": "stop"})
    assistant_id = stream.until("start").data["assistantMessageId"]
    assert chat.post("/api/chat/stop", {"sessionId": session_id}).data["cancelled"] == [assistant_id]
    stream.read_all()
    assert message(app, assistant_id)["stream_status"] == "cancelled"


def test_deleting_the_session_stops_its_generation(app, chat, fake):
    session_id = new_session(chat, SLOW)
    stream = open_stream(chat, "/api/chat/stream", {"sessionId": session_id, "content": "delete me"})
    stream.until("content")
    assert chat.delete(f"/api/sessions/{session_id}").status == 200
    assert fake.wait_for_disconnect(SLOW, timeout=1.0) is not None
    assert messages(app, session_id) == []


def test_a_cancel_reaches_a_generation_running_in_another_worker(app, chat, tmp_path, fake):
    other = make_app(tmp_path / "data")  # a second worker process on the same database
    try:
        session_id = new_session(chat, SLOW)
        stream = open_stream(chat, "/api/chat/stream", {"sessionId": session_id, "content": "far away"})
        assistant_id = stream.until("start").data["assistantMessageId"]
        other_client = other.test_client()
        reply = other_client.post("/api/chat/stream/cancel", json={"sessionId": session_id},
                                  headers={"Authorization": f"Bearer {chat.token}"})
        assert reply.get_json()["data"]["cancelled"] == [assistant_id]
        assert fake.wait_for_disconnect(SLOW, timeout=1.5) is not None
        stream.read_all()
        assert message(app, assistant_id)["stream_status"] == "cancelled"
    finally:
        close_app(other)


def test_another_worker_can_follow_a_running_generation(app, chat, tmp_path):
    other = make_app(tmp_path / "data")
    try:
        session_id = new_session(chat, SLOW)
        stream = open_stream(chat, "/api/chat/stream", {"sessionId": session_id, "content": "follow me"})
        assistant_id = stream.until("start").data["assistantMessageId"]
        follower = other.test_client().get(f"/api/chat/stream/{assistant_id}",
                                           headers={"Authorization": f"Bearer {chat.token}"}, buffered=False)
        followed = events_only(parse(follower.response))
        stream.read_all()
        assert joined(followed) == message(app, assistant_id)["content"]
        assert followed[-1].data == "[DONE]"
    finally:
        close_app(other)


def test_regenerate_adds_a_variant_to_the_same_question(app, chat):
    session_id = new_session(chat, "fake-chat")
    first = send(chat, session_id, "again please")
    user_id = first.events[0].data["messageId"]
    again = open_stream(chat, "/api/chat/regenerate", {"sessionId": session_id, "messageId": user_id})
    again.read_all()
    variants = [m for m in messages(app, session_id) if m["role"] == "assistant"]
    assert [(m["parent_message_id"], m["variant_index"]) for m in variants] == [(user_id, 1), (user_id, 2)]
    assert len([m for m in messages(app, session_id) if m["role"] == "user"]) == 1


def test_regenerating_from_an_answer_answers_its_question(app, chat):
    session_id = new_session(chat, "fake-chat")
    first = send(chat, session_id, "question")
    answer_id = first.events[0].data["assistantMessageId"]
    stream = open_stream(chat, "/api/chat/stream", {"sessionId": session_id, "replyToMessageId": answer_id})
    stream.read_all()
    assert joined(stream.events) == "Echo: question"
    assert stream.events[0].data["messageId"] == first.events[0].data["messageId"]


def test_old_variants_beyond_the_history_limit_are_deleted(app, chat):
    chat.put("/api/settings/system", {"assistant_reply_history_limit": 2})
    session_id = new_session(chat, "fake-chat")
    user_id = send(chat, session_id, "vary").events[0].data["messageId"]
    for _ in range(3):
        open_stream(chat, "/api/chat/regenerate", {"sessionId": session_id, "messageId": user_id}).read_all()
    variants = [m["variant_index"] for m in messages(app, session_id) if m["role"] == "assistant"]
    assert variants == [3, 4]


def test_an_idempotent_resend_reattaches_and_is_not_charged_again(app, api, chat):
    user = api.user(chat, "alice", "correct-horse-1")
    session_id = new_session(user, "fake-chat")
    first = send(user, session_id, "once", clientMessageId="c-1")
    second = send(user, session_id, "once", clientMessageId="c-1")
    assert second.events[0].data["assistantMessageId"] == first.events[0].data["assistantMessageId"]
    assert joined(second.events) == joined(first.events)
    assert len(messages(app, session_id)) == 2
    assert _quota_used(app) == 1


def test_a_refused_request_over_the_concurrency_limit_writes_nothing(app, api, chat):
    chat.put("/api/settings/system", {"chat_max_concurrent_streams": 1})
    user = api.user(chat, "bob", "correct-horse-1")
    session_id = new_session(user, SLOW)
    running = open_stream(user, "/api/chat/stream", {"sessionId": session_id, "content": "long"})
    running.until("start")
    before = len(messages(app, session_id))
    refused = user.post("/api/chat/stream", {"sessionId": session_id, "content": "second"})
    assert refused.status == 429 and refused.code == "too_many_streams"
    assert len(messages(app, session_id)) == before
    assert _quota_used(app) == 1
    running.close()


def test_a_refused_request_over_quota_writes_nothing(app, api, chat):
    chat.put("/api/settings/system", {"default_user_daily_quota": 1})
    user = api.user(chat, "carol", "correct-horse-1")
    session_id = new_session(user, "fake-chat")
    send(user, session_id, "the only one")
    refused = user.post("/api/chat/stream", {"sessionId": session_id, "content": "one more"})
    assert refused.status == 429 and refused.code == "quota_exceeded"
    assert refused.data["quota"]["remaining"] == 0 and refused.data["requiredLogin"] is False
    assert "Retry-After" in refused.headers
    assert len(messages(app, session_id)) == 2


def test_model_access_is_checked_on_every_message(app, api, chat):
    user = api.user(chat, "dave", "correct-horse-1")
    session_id = new_session(user, "fake-chat")
    connection_id = chat.get("/api/connections").data[-1]["id"]
    deny = chat.put("/api/catalog/models/tags", {"connectionId": connection_id, "rawId": "fake-chat",
                                                 "access_policy": {"user": "deny"}})
    assert deny.status == 200, deny.body
    refused = user.post("/api/chat/stream", {"sessionId": session_id, "content": "still allowed?"})
    assert refused.status == 403
    assert messages(app, session_id) == []
    assert _quota_used(app) == 0


def test_a_429_is_retried_once_after_retry_after(app, chat, fake):
    stream = send(chat, new_session(chat, "fake-429@key=ctl,times=1"), "rate limited")
    assert joined(stream.events) == "Echo: rate limited"
    assert len(fake.requests_log(model="fake-429@key=ctl,times=1")) == 2


def test_a_500_is_retried_once(app, chat, fake):
    stream = send(chat, new_session(chat, "fake-500-once@key=ctl5"), "server error")
    assert joined(stream.events) == "Echo: server error"


def test_completion_answers_without_streaming(app, chat):
    session_id = new_session(chat, "fake-chat")
    reply = chat.post("/api/chat/completion", {"sessionId": session_id, "content": "plain"})
    assert reply.status == 200, reply.body
    assert reply.data["content"] == "Echo: plain"
    assert reply.data["usage"]["total_tokens"] > 0
    assert reply.data["assistantMessageId"] == message(app, reply.data["assistantMessageId"])["id"]


def test_context_disabled_sends_only_the_current_message(app, chat, fake):
    session_id = new_session(chat, "fake-chat")
    send(chat, session_id, "earlier")
    fake.reset()
    send(chat, session_id, "alone", contextEnabled=False)
    sent = fake.last_request(model="fake-chat")["body"]["messages"]
    assert [m["content"] for m in sent if m["role"] != "system"] == ["alone"]


def test_history_is_sent_in_order(app, chat, fake):
    session_id = new_session(chat, "fake-chat", systemPrompt="Be brief.")
    send(chat, session_id, "one")
    fake.reset()
    send(chat, session_id, "two")
    sent = fake.last_request(model="fake-chat")["body"]["messages"]
    assert [(m["role"], m["content"]) for m in sent] == [
        ("system", "Be brief."), ("user", "one"), ("assistant", "Echo: one"), ("user", "two")]


def test_history_is_truncated_to_the_context_window(app, chat, fake):
    connection_id = chat.get("/api/connections").data[-1]["id"]
    chat.put("/api/catalog/models/tags", {"connectionId": connection_id, "rawId": "fake-chat",
                                          "context_window": 300})
    session_id = new_session(chat, "fake-chat")
    for index in range(6):
        send(chat, session_id, f"message {index} " + "word " * 20)
    fake.reset()
    send(chat, session_id, "latest")
    sent = fake.last_request(model="fake-chat")["body"]["messages"]
    assert sent[-1]["content"] == "latest"
    assert 1 < len(sent) < 13


def test_system_prompt_falls_back_from_session_to_personal_to_site(app, chat, fake):
    chat.put("/api/settings/system", {"chat_system_prompt": "Site prompt."})
    plain = new_session(chat, "fake-chat")
    send(chat, plain, "a")
    assert fake.last_request(model="fake-chat")["body"]["messages"][0]["content"] == "Site prompt."
    chat.put("/api/settings/personal", {"personal_prompt": "Personal prompt."})
    send(chat, plain, "b")
    assert fake.last_request(model="fake-chat")["body"]["messages"][0]["content"] == "Personal prompt."
    own = new_session(chat, "fake-chat", systemPrompt="Session prompt.")
    send(chat, own, "c")
    assert fake.last_request(model="fake-chat")["body"]["messages"][0]["content"] == "Session prompt."


def test_parallel_streams_all_complete(app, chat):
    chat.put("/api/settings/system", {"chat_max_concurrent_streams": 10})
    sessions = [new_session(chat, "fake-chat") for _ in range(8)]
    greenlets = [gevent.spawn(send, chat, s, f"parallel {i}") for i, s in enumerate(sessions)]
    gevent.joinall(greenlets, raise_error=True)
    assert [joined(g.value.events) for g in greenlets] == [f"Echo: parallel {i}" for i in range(8)]
    assert all(message(app, m["id"])["stream_status"] == "done" for s in sessions for m in messages(app, s)
               if m["role"] == "assistant")
    wait_until(lambda: not app.extensions["parley.generations"].live)

"""POST /api/chat/stream: the event protocol, persistence, and answers that outlive the client."""

import pytest

from tests.chat_support import (
    fake_connection,
    final_events,
    message,
    messages,
    new_session,
    open_stream,
    send,
    wait_until,
)
from tests.sse_reader import joined

PASSWORD = "correct-horse-1"


@pytest.fixture
def chat(api, admin, fake):
    """An admin with a connection to the fake provider serving the scenario models used below."""
    fake_connection(admin, fake, [
        "fake-chat", "fake-slow@chunks=40,delay=50", "fake-reasoning", "fake-no-usage", "fake-think",
        "fake-cut@after=3", "fake-cut@after=0", "fake-stall@after=2,stall_ms=5000",
    ])
    return admin


def test_events_arrive_in_protocol_order_with_sequential_ids(app, chat):
    session_id = new_session(chat, "fake-chat")
    stream = send(chat, session_id, "hello there")
    assert stream.status == 200
    assert stream.response.headers["Content-Type"].startswith("text/event-stream")
    assert stream.response.headers["Cache-Control"] == "no-cache, no-transform"
    kinds = final_events(stream)
    assert kinds[:3] == ["start", "quota", "usage"]
    assert kinds[-5:] == ["stop", "usage", "end", "complete", "[DONE]"]
    assert set(kinds[3:-5]) == {"content"}
    ids = [e.id for e in stream.events if e.data != "[DONE]"]
    assert ids == list(range(1, len(ids) + 1))


def test_the_answer_is_streamed_and_saved_as_done(app, chat):
    session_id = new_session(chat, "fake-chat")
    stream = send(chat, session_id, "hello there")
    assert joined(stream.events) == "Echo: hello there"
    start = stream.events[0].data
    saved = message(app, start["assistantMessageId"])
    assert saved["content"] == "Echo: hello there"
    assert saved["stream_status"] == "done"
    assert saved["parent_message_id"] == start["messageId"]
    complete = next(e.data for e in stream.events if e.type == "complete")
    assert complete["streamStatus"] == "done"
    assert complete["metrics"]["responseTimeMs"] >= 0


def test_final_usage_is_the_providers_when_it_sends_it(app, chat):
    stream = send(chat, new_session(chat, "fake-chat"), "one two three")
    final = [e.data["usage"] for e in stream.events if e.type == "usage"][-1]
    assert final["usage_source"] == "provider"
    assert final["completion_tokens"] == 4  # "Echo: one two three" is four words for the fake
    assert final["total_tokens"] == final["prompt_tokens"] + final["completion_tokens"]


def test_final_usage_is_estimated_when_the_provider_sends_none(app, chat):
    stream = send(chat, new_session(chat, "fake-no-usage"), "hello")
    final = [e.data["usage"] for e in stream.events if e.type == "usage"][-1]
    assert final["usage_source"] == "estimated"
    assert final["completion_tokens"] > 0


def test_reasoning_streams_before_the_answer_and_closes_with_a_duration(app, chat):
    stream = send(chat, new_session(chat, "fake-reasoning"), "why?")
    kinds = final_events(stream)
    first_content = kinds.index("content")
    assert "reasoning" in kinds[:first_content]
    done = [e.data for e in stream.events if e.type == "reasoning" and e.data.get("done")]
    assert len(done) == 1 and done[0]["duration"] >= 0
    saved = message(app, stream.events[0].data["assistantMessageId"])
    assert saved["reasoning"] and saved["content"].startswith("Echo")


def test_think_tags_in_the_text_become_reasoning(app, chat):
    stream = send(chat, new_session(chat, "fake-think"), "hi")
    assert "<think>" not in joined(stream.events)
    assert joined(stream.events, "reasoning")


def test_closing_the_tab_does_not_stop_the_generation(app, chat, fake):
    session_id = new_session(chat, "fake-slow@chunks=40,delay=50")
    stream = open_stream(chat, "/api/chat/stream", {"sessionId": session_id, "content": "keep going"})
    start = stream.until("start").data
    stream.until("content")
    stream.close()  # the client goes away mid-answer
    saved = wait_until(lambda: (m := message(app, start["assistantMessageId"]))["stream_status"] == "done" and m)
    assert saved["content"].startswith("Echo: keep going")
    assert len(saved["content"].split()) >= 30


def test_the_partial_answer_is_checkpointed_while_it_streams(app, chat):
    session_id = new_session(chat, "fake-slow@chunks=40,delay=50")
    stream = open_stream(chat, "/api/chat/stream", {"sessionId": session_id, "content": "checkpoint me"})
    assistant_id = stream.until("start").data["assistantMessageId"]
    row = wait_until(lambda: (m := message(app, assistant_id))["content"] and m, timeout=5)
    assert row["stream_status"] == "streaming"
    assert row["stream_cursor"] > 0
    stream.read_all()


def test_reattach_from_an_event_id_reproduces_the_final_text_exactly(app, chat):
    session_id = new_session(chat, "fake-slow@chunks=40,delay=50")
    first = open_stream(chat, "/api/chat/stream", {"sessionId": session_id, "content": "resume me"})
    assistant_id = first.until("start").data["assistantMessageId"]
    seen = [first.until("content"), first.until("content")]
    first.close()
    last_id = seen[-1].id
    again = open_stream(chat, f"/api/chat/stream/{assistant_id}", method="GET",
                        headers={"Last-Event-ID": str(last_id)})
    rest = again.read_all()
    ids = [e.id for e in rest if e.data != "[DONE]"]
    assert ids == list(range(last_id + 1, last_id + 1 + len(ids)))  # no gap, no duplicate
    text = joined(seen) + joined(rest)
    assert text == message(app, assistant_id)["content"]
    assert rest[-1].data == "[DONE]"


def test_reattach_after_the_end_replays_the_whole_answer(app, chat):
    stream = send(chat, new_session(chat, "fake-chat"), "replay")
    assistant_id = stream.events[0].data["assistantMessageId"]
    replay = open_stream(chat, f"/api/chat/stream/{assistant_id}?since=0", method="GET").read_all()
    assert [e.data for e in replay] == [e.data for e in stream.events]


def test_reattach_to_another_actors_answer_is_404(app, api, chat):
    stream = send(chat, new_session(chat, "fake-chat"), "mine")
    stranger = api.user(chat, "stranger", PASSWORD)
    reply = stranger.get(f"/api/chat/stream/{stream.events[0].data['assistantMessageId']}")
    assert reply.status == 404


def test_a_truncated_stream_after_content_keeps_the_partial_text_as_error(app, chat, fake):
    stream = send(chat, new_session(chat, "fake-cut@after=3"), "cut me")
    error = [e.data for e in stream.events if e.type == "error"]
    assert error and error[0]["code"] == "upstream_truncated"
    saved = message(app, stream.events[0].data["assistantMessageId"])
    assert saved["stream_status"] == "error" and saved["content"] == joined(stream.events) != ""
    assert len(fake.requests_log(model="fake-cut@after=3")) == 1  # content went out: never retried


def test_a_stream_that_fails_before_content_falls_back_to_one_plain_request(app, chat):
    stream = send(chat, new_session(chat, "fake-cut@after=0"), "fallback please")
    complete = next(e.data for e in stream.events if e.type == "complete")
    assert complete["origin"] == "fallback"
    assert joined(stream.events) == "Echo: fallback please"


def test_an_idle_provider_ends_the_answer_with_upstream_idle(app, chat):
    chat.put("/api/settings/system", {"provider_max_idle_ms": 1000})
    stream = send(chat, new_session(chat, "fake-stall@after=2,stall_ms=5000"), "stall")
    error = [e.data for e in stream.events if e.type == "error"]
    assert error and error[0]["code"] == "upstream_idle"
    assert message(app, stream.events[0].data["assistantMessageId"])["content"] == joined(stream.events)


def test_heartbeats_are_sent_while_nothing_else_is(app, chat):
    chat.put("/api/settings/system", {"sse_heartbeat_interval_ms": 1000})
    stream = send(chat, new_session(chat, "fake-stall@after=2,stall_ms=5000"), "quiet")
    assert ": ping" in stream.comments


def test_messages_keep_their_order_and_session_counts(app, chat):
    session_id = new_session(chat, "fake-chat")
    send(chat, session_id, "first")
    send(chat, session_id, "second")
    rows = messages(app, session_id)
    assert [(r["role"], r["content"]) for r in rows] == [
        ("user", "first"), ("assistant", "Echo: first"), ("user", "second"), ("assistant", "Echo: second")]
    session = chat.get(f"/api/sessions/{session_id}").data
    assert session["_count"]["messages"] == 4 and session["lastMessagePreview"] == "second"


def test_a_chat_turn_works_the_same_on_postgresql_and_sqlite(any_db_app, fake):
    from tests.api_client import ApiClient

    admin = ApiClient(any_db_app).register_admin("admin", PASSWORD)
    fake_connection(admin, fake, ["fake-chat"])
    session_id = new_session(admin, "fake-chat")
    first = send(admin, session_id, "hello there")
    second = send(admin, session_id, "and again")
    assert joined(first.events) == "Echo: hello there" and joined(second.events) == "Echo: and again"
    assert message(any_db_app, second.events[0].data["assistantMessageId"])["stream_status"] == "done"
    usage = admin.get(f"/api/chat/usage?sessionId={session_id}").data
    assert usage["totals"]["total_tokens"] > 0


def test_pieces_that_arrive_together_reach_the_client_as_fewer_content_events(app, chat):
    # 40 pieces 50 ms apart with the default 50 ms batch interval would be ~40 events; at 200 ms
    # the pieces of each pause go out as one event, and the text is the same.
    chat.put("/api/settings/system", {"stream_batch_interval_ms": 200})
    stream = send(chat, new_session(chat, "fake-slow@chunks=40,delay=50"), "hello")
    contents = [e for e in stream.events if e.type == "content"]
    saved = message(app, stream.events[0].data["assistantMessageId"])
    assert len(contents) <= 15
    assert joined(stream.events) == saved["content"] and saved["stream_status"] == "done"

"""Task trace: what a generation records when tracing is on, the admin API, cleanup and the prune job."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest

from common import task_trace
from common.db import execute, fetch_all, fetch_one, insert, utcnow
from jobs import task_trace_prune
from tests.api_client import ApiClient
from tests.chat_support import fake_connection, message, new_session, open_stream, send, wait_until
from tests.sse_reader import joined

PASSWORD = "correct-horse-1"
SLOW = "fake-slow@chunks=60,delay=50"


@pytest.fixture
def chat(api, admin, fake):
    """An admin with tracing on and a connection to the fake provider."""
    fake_connection(admin, fake, ["fake-chat", SLOW])
    assert admin.put("/api/settings/system", {"task_trace_enabled": True}).status == 200
    return admin


def _answer(client: ApiClient, model: str = "fake-chat", content: str = "trace me") -> int:
    """Send one message and read the whole answer; returns the answer's id."""
    stream = send(client, new_session(client, model), content)
    return stream.events[0].data["assistantMessageId"]


def _trace_of(app, message_id: int) -> dict:
    return wait_until(lambda: fetch_one(app.extensions["parley.db"], "SELECT * FROM task_traces WHERE "
                                        "message_id = :m AND status <> 'running'", m=message_id))


def _kinds(admin: ApiClient, trace_id: int) -> list[str]:
    return [e["kind"] for e in admin.get(f"/api/task-trace/{trace_id}").data["events"]]


def _sql(app, sql: str, **params) -> None:
    db = app.extensions["parley.db"]
    with db as tx:
        execute(tx, sql, **params)


# --- what is recorded ----------------------------------------------------------------------------


def test_a_normal_answer_records_its_lifecycle_in_order(app, chat):
    answer = _answer(chat)
    trace = _trace_of(app, answer)
    detail = chat.get(f"/api/task-trace/{trace['id']}").data
    assert [e["kind"] for e in detail["events"]] == ["request_received", "provider_request", "first_chunk",
                                                      "final_persist"]
    assert [e["seq"] for e in detail["events"]] == [1, 2, 3, 4]
    assert detail["trace"] | {"startedAt": None, "finishedAt": None, "durationMs": None, "id": None} == {
        "id": None, "messageId": answer, "sessionId": message(app, answer)["session_id"], "actor": "user:1",
        "model": "fake-chat", "provider": "openai", "status": "done", "startedAt": None, "finishedAt": None,
        "durationMs": None, "eventCount": 4,
    }
    assert detail["events"][-1]["detail"] == {"status": "done", "code": None}
    assert detail["events"][1]["detail"]["attempt"] == 1


def test_a_429_then_success_records_the_retry(app, chat, fake):
    model = f"fake-429@key=trace-{uuid.uuid4().hex[:8]},times=1"
    fake_connection(chat, fake, [model])
    answer = _answer(chat, model)
    trace = _trace_of(app, answer)
    events = chat.get(f"/api/task-trace/{trace['id']}").data["events"]
    assert [e["kind"] for e in events] == ["request_received", "provider_request", "provider_error", "retry",
                                           "provider_request", "first_chunk", "final_persist"]
    assert events[2]["detail"]["status"] == 429 and events[4]["detail"]["attempt"] == 2
    assert trace["status"] == "done"


def test_a_cancelled_answer_records_the_cancel(app, chat):
    session_id = new_session(chat, SLOW)
    stream = open_stream(chat, "/api/chat/stream", {"sessionId": session_id, "content": "stop me"})
    answer = stream.until("start").data["assistantMessageId"]
    stream.until("content")
    assert chat.post("/api/chat/stream/cancel", {"sessionId": session_id}).data["cancelled"] == [answer]
    stream.read_all()
    trace = _trace_of(app, answer)
    assert _kinds(chat, trace["id"])[-3:] == ["first_chunk", "cancelled", "final_persist"]
    assert trace["status"] == "cancelled"


def test_nothing_is_recorded_when_tracing_is_off(app, chat):
    chat.put("/api/settings/system", {"task_trace_enabled": False})
    answer = _answer(chat)
    assert message(app, answer)["stream_status"] == "done"
    assert fetch_all(app.extensions["parley.db"], "SELECT id FROM task_traces") == []


def test_the_request_keeps_only_a_short_preview_of_the_message(app, chat):
    text = "secret plans " * 100
    trace = _trace_of(app, _answer(chat, content=text))
    received = chat.get(f"/api/task-trace/{trace['id']}").data["events"][0]["detail"]
    assert received["preview"] == text[: task_trace.PREVIEW_CHARS] and received["chars"] == len(text)
    rows = fetch_all(app.extensions["parley.db"], "SELECT detail FROM task_trace_events")
    assert all(text[:200] not in row["detail"] for row in rows)


def test_an_anonymous_visitor_is_recorded_without_their_cookie(app, chat):
    chat.put("/api/settings/system", {"model_access_default_anonymous": "allow"})
    visitor = ApiClient(app)
    answer = _answer(visitor)
    trace = _trace_of(app, answer)
    anon_key = visitor.client.get_cookie("anon_key").value
    assert re.fullmatch(r"anon:[0-9a-f]{12}", trace["actor"])
    export = chat.client.get(f"/api/task-trace/{trace['id']}/export", headers={"Authorization": f"Bearer {chat.token}"})
    assert anon_key not in export.get_data(as_text=True)
    assert anon_key not in str(chat.get(f"/api/task-trace/{trace['id']}").body)


def test_keys_and_tokens_in_details_are_masked():
    detail = task_trace.clean_detail({
        "message": "bad key sk-abcdef1234567890 for Bearer eyJhbGciOi.x.y at https://h/v1?key=AIzaSyXXXXXXXXXXXXXXXXXXXXXX",
        "huge": "x" * 5000, "n": 3, "none": None,
    })
    assert "abcdef1234567890" not in detail["message"] and "eyJhbGciOi" not in detail["message"]
    assert "AIzaSyXXXX" not in detail["message"]
    assert len(detail["huge"]) == task_trace.MAX_STRING and detail["n"] == 3 and detail["none"] is None


def test_a_trace_keeps_at_most_max_events_and_always_its_end(app, chat):
    session_id = new_session(chat, "fake-chat")
    answer = send(chat, session_id, "seed").events[0].data["assistantMessageId"]
    with app.app_context():
        recorder = task_trace.TraceRecorder(app, message_id=answer, session_id=session_id, actor="user:1",
                                            model="fake-chat", provider="openai", request_detail={})
        for attempt in range(task_trace.MAX_EVENTS * 2):
            recorder("provider_request", attempt=attempt)
        recorder("final_persist", status="done", code=None)
    events = fetch_all(app.extensions["parley.db"], "SELECT kind, detail FROM task_trace_events WHERE trace_id = :t "
                       "ORDER BY seq", t=recorder.trace_id)
    assert len(events) == task_trace.MAX_EVENTS
    assert events[-1]["kind"] == "final_persist" and '"dropped_events":' in events[-1]["detail"]


def test_a_trace_deleted_while_running_does_not_break_the_answer(app, chat):
    session_id = new_session(chat, SLOW)
    stream = open_stream(chat, "/api/chat/stream", {"sessionId": session_id, "content": "keep going"})
    answer = stream.until("start").data["assistantMessageId"]
    stream.until("content")
    trace_id = wait_until(lambda: fetch_one(app.extensions["parley.db"], "SELECT id FROM task_traces WHERE "
                                            "message_id = :m", m=answer))["id"]
    assert chat.delete(f"/api/task-trace/{trace_id}").status == 200
    stream.read_all()
    assert message(app, answer)["stream_status"] == "done"
    assert joined(stream.events) == message(app, answer)["content"]
    assert fetch_all(app.extensions["parley.db"], "SELECT id FROM task_trace_events WHERE trace_id = :t",
                     t=trace_id) == []


# --- the admin API -------------------------------------------------------------------------------


def test_the_export_is_a_text_download_with_one_line_per_event(app, chat):
    trace = _trace_of(app, _answer(chat))
    reply = chat.client.get(f"/api/task-trace/{trace['id']}/export",
                            headers={"Authorization": f"Bearer {chat.token}"})
    assert reply.status_code == 200 and reply.mimetype == "text/plain"
    assert reply.headers["Content-Disposition"] == f'attachment; filename="task-trace-{trace["id"]}.txt"'
    lines = reply.get_data(as_text=True).splitlines()
    assert lines[0] == f"Task trace #{trace['id']}"
    event_lines = [line for line in lines if re.match(r"^\d{4}-\d\d-\d\dT", line)]
    assert [line.split()[3] for line in event_lines] == ["request_received", "provider_request", "first_chunk",
                                                         "final_persist"]
    assert "status=done" in event_lines[-1]


def test_the_list_filters_by_session_and_status_and_pages(app, chat):
    first = new_session(chat, "fake-chat")
    for text in ("a", "b"):
        send(chat, first, text)
    _answer(chat)
    wait_until(lambda: fetch_one(app.extensions["parley.db"], "SELECT COUNT(*) AS n FROM task_traces "
                                 "WHERE status = 'done'")["n"] == 3)
    listing = chat.get("/api/task-trace?pageSize=2&page=1").data
    assert listing["pagination"] | {} == {"page": 1, "limit": 2, "total": 3, "totalPages": 2, "pageSize": 2}
    assert len(listing["traces"]) == 2 and listing["enabled"] is True
    by_session = chat.get(f"/api/task-trace?sessionId={first}").data["traces"]
    assert [t["sessionId"] for t in by_session] == [first, first]
    assert chat.get("/api/task-trace?status=error").data["traces"] == []
    assert len(chat.get("/api/task-trace?status=done").data["traces"]) == 3


def test_deleting_a_trace_removes_its_events(app, chat):
    trace = _trace_of(app, _answer(chat))
    assert chat.delete(f"/api/task-trace/{trace['id']}").status == 200
    assert chat.get(f"/api/task-trace/{trace['id']}").status == 404
    assert fetch_all(app.extensions["parley.db"], "SELECT id FROM task_trace_events") == []


def test_cleanup_deletes_traces_older_than_the_retention(app, chat):
    old = _trace_of(app, _answer(chat))
    recent = _trace_of(app, _answer(chat))
    _sql(app, "UPDATE task_traces SET started_at = :t WHERE id = :id", t=utcnow() - timedelta(days=10), id=old["id"])
    reply = chat.post("/api/task-trace/cleanup", {"retentionDays": 5})
    assert reply.status == 200 and reply.data["deleted"] == 1
    assert [t["id"] for t in chat.get("/api/task-trace").data["traces"]] == [recent["id"]]
    assert chat.post("/api/task-trace/cleanup", {}).data == {"deleted": 0, "retentionDays": 7}


def test_the_prune_job_deletes_old_traces_once(app, chat):
    old = _trace_of(app, _answer(chat))
    _sql(app, "UPDATE task_traces SET started_at = :t WHERE id = :id", t=utcnow() - timedelta(days=8), id=old["id"])
    _trace_of(app, _answer(chat))
    with app.app_context():
        first = task_trace_prune.run(app)
        second = task_trace_prune.run(app)
    assert first == {"retention_days": 7, "traces_pruned": 1, "traces_interrupted": 0}
    assert second == {"retention_days": 7, "traces_pruned": 0, "traces_interrupted": 0}
    assert len(chat.get("/api/task-trace").data["traces"]) == 1


def test_the_prune_job_marks_traces_left_running_as_interrupted(app, chat):
    trace = _trace_of(app, _answer(chat))
    _sql(app, "UPDATE task_traces SET status = 'running', finished_at = NULL, started_at = :t WHERE id = :id",
         t=utcnow() - timedelta(hours=2), id=trace["id"])
    with app.app_context():
        assert task_trace_prune.run(app)["traces_interrupted"] == 1
    assert chat.get(f"/api/task-trace/{trace['id']}").data["trace"]["status"] == "interrupted"


def test_the_prune_job_is_discovered():
    from jobs.registry import all_jobs

    job = all_jobs()["task_trace_prune"]
    assert job.period_seconds == 86400 and job.offset_seconds > 0


# --- who may call it, and bad input --------------------------------------------------------------

ROUTES = [("GET", "/api/task-trace"), ("GET", "/api/task-trace/{id}"), ("GET", "/api/task-trace/{id}/export"),
          ("DELETE", "/api/task-trace/{id}"), ("POST", "/api/task-trace/cleanup")]


def test_every_route_is_in_the_list_above(app):
    found = {(m, re.sub(r"<(?:\w+:)?\w+>", "{id}", r.rule).rstrip("/")) for r in app.url_map.iter_rules()
             if r.rule.startswith("/api/task-trace") for m in r.methods - {"HEAD", "OPTIONS"}}
    assert found == set(ROUTES)


def test_non_admins_get_403_and_visitors_401(app, api, chat):
    trace = _trace_of(app, _answer(chat))
    user = api.user(chat, "bob", PASSWORD)
    for method, path in ROUTES:
        path = path.format(id=trace["id"])
        assert user.call(method, path, {}).status == 403, path
        assert ApiClient(app).call(method, path, {}).status == 401, path
    assert chat.get(f"/api/task-trace/{trace['id']}").status == 200  # nothing was deleted


def test_unknown_ids_are_404_envelopes(app, chat):
    for method, path in ROUTES:
        if "{id}" not in path:
            continue
        reply = chat.call(method, path.format(id=999999))
        assert reply.status == 404 and reply.code == "trace_not_found", (method, path)


@pytest.mark.parametrize("query", ["status=bogus", "pageSize=0", "pageSize=201", "page=0", "sessionId=abc",
                                   "sessionId=99999999999", "page=1e9"])
def test_bad_list_queries_are_400(app, chat, query):
    reply = chat.get(f"/api/task-trace?{query}")
    assert reply.status == 400 and reply.code == "validation_error", reply.body


@pytest.mark.parametrize("body", [{"retentionDays": -1}, {"retentionDays": "7"}, {"retentionDays": True},
                                  {"retentionDays": 1.5}, {"retentionDays": 10**6}])
def test_bad_cleanup_bodies_are_400(app, chat, body):
    reply = chat.post("/api/task-trace/cleanup", body)
    assert reply.status == 400 and reply.code == "validation_error", reply.body



def test_traces_are_recorded_listed_and_pruned_on_every_database(any_db_app, fake):
    # The recorder is driven directly: this test is about the traces' own SQL on each database.
    admin = ApiClient(any_db_app).register_admin("admin", PASSWORD)
    fake_connection(admin, fake, ["fake-chat"])
    session_id = new_session(admin, "fake-chat")
    db = any_db_app.extensions["parley.db"]
    with db as tx:
        answer = insert(tx, "messages", {"session_id": session_id, "role": "assistant", "content": "", "images": "[]",
                                         "stream_status": "done", "stream_cursor": 0, "created_at": utcnow(),
                                         "updated_at": utcnow()})
    with any_db_app.app_context():
        recorder = task_trace.TraceRecorder(any_db_app, message_id=answer, session_id=session_id, actor="user:1",
                                            model="fake-chat", provider="openai", request_detail={"n": 1})
        for kind in ("provider_request", "first_chunk", "cancelled"):
            recorder(kind)
        recorder("final_persist", status="cancelled", code=None)
    trace_id = recorder.trace_id
    assert _kinds(admin, trace_id) == ["request_received", "provider_request", "first_chunk", "cancelled",
                                       "final_persist"]
    listing = admin.get(f"/api/task-trace?sessionId={session_id}&status=cancelled").data
    assert [t["id"] for t in listing["traces"]] == [trace_id]
    _sql(any_db_app, "UPDATE task_traces SET status = 'running', started_at = :t WHERE id = :id",
         t=utcnow() - timedelta(days=30), id=trace_id)
    with any_db_app.app_context():
        assert task_trace_prune.run(any_db_app) == {"retention_days": 7, "traces_pruned": 1, "traces_interrupted": 1}
    assert admin.get("/api/task-trace").data["traces"] == []

"""Anonymous visitors: access on and off, activity (throttled), the claim of their data at login and
registration, and the retention cleanup."""

from datetime import UTC, datetime, timedelta

import pytest

from common.db import as_datetime, execute, fetch_all, fetch_one, insert
from jobs.registry import all_jobs, run_claimed
from tests.api_client import ApiClient
from tests.chat_support import fake_connection, new_session, send
from tests.conftest import PASSWORD, close_app, make_app


@pytest.fixture
def chat(api, admin, fake):
    fake_connection(admin, fake, ["fake-chat"])
    admin.put("/api/settings/system", {"model_access_default_anonymous": "allow"})
    return admin


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _key(client: ApiClient) -> str:
    cookie = client.client.get_cookie("anon_key")
    assert cookie is not None
    return cookie.value


def _visitor_row(app, key: str) -> dict | None:
    row = fetch_one(app.extensions["parley.db"], "SELECT * FROM anonymous_visitors WHERE anon_key = :k", k=key)
    if row is not None:
        row["last_seen_at"] = as_datetime(row["last_seen_at"])
    return row


def _sessions_of(app, key: str) -> list[int]:
    rows = fetch_all(app.extensions["parley.db"], "SELECT id FROM chat_sessions WHERE anon_key = :k ORDER BY id",
                     k=key)
    return [r["id"] for r in rows]


def _count(app, sql: str, **params) -> int:
    return fetch_one(app.extensions["parley.db"], f"SELECT COUNT(*) AS n FROM {sql}", **params)["n"]


def _set(app, sql: str, **params) -> None:
    db = app.extensions["parley.db"]
    with db as tx:
        execute(tx, sql, **params)


def _expire(app, key: str, days: int = 20) -> None:
    """The visitor was last active `days` ago, and so were their rows."""
    old = _now() - timedelta(days=days)
    _set(app, "UPDATE anonymous_visitors SET last_seen_at = :t WHERE anon_key = :k", t=old, k=key)
    _set(app, "UPDATE chat_sessions SET updated_at = :t WHERE anon_key = :k", t=old, k=key)
    _set(app, "UPDATE usage_records SET created_at = :t WHERE anon_key = :k", t=old, k=key)


def _cleanup(app, slot: str = "s1") -> dict:
    return run_claimed(app, all_jobs()["anonymous_cleanup"], slot)


def _visitor_with_a_chat(api: ApiClient) -> tuple[ApiClient, int]:
    visitor = ApiClient(api.app)
    session_id = new_session(visitor, "fake-chat")
    assert send(visitor, session_id, "hello").status == 200
    return visitor, session_id


# ---- access ------------------------------------------------------------------------------------------


def test_a_visitor_is_refused_when_the_anonymous_quota_is_zero(app, api, chat):
    visitor = ApiClient(app)
    assert visitor.get("/api/sessions").status == 200
    chat.put("/api/settings/system", {"anonymous_daily_quota": 0})
    refused = visitor.get("/api/sessions")
    assert refused.status == 401 and refused.code == "auth_required"
    assert visitor.post("/api/sessions", {"modelId": "fake-chat"}).status == 401
    actor = visitor.get("/api/auth/actor").data
    assert actor["actor"] is None and actor["quota"] is None
    assert visitor.get("/api/settings/app-info").data["features"]["anonymous"] is False


# ---- activity ----------------------------------------------------------------------------------------


def test_a_returning_visitor_is_recorded_with_their_address(app, api):
    visitor = ApiClient(app)
    visitor.get("/api/auth/actor")
    key = _key(visitor)
    assert _visitor_row(app, key) is None  # a first read with a brand-new key is not recorded
    visitor.get("/api/auth/actor")
    row = _visitor_row(app, key)
    assert row is not None and row["address"] == "127.0.0.1"


def test_clients_without_cookies_leave_no_visitor_rows(app, api):
    for _ in range(3):
        assert ApiClient(app).get("/api/sessions").status == 200
    assert _count(app, "anonymous_visitors") == 0


def test_a_new_visitor_who_writes_is_recorded_at_once(app, api):
    visitor = ApiClient(app)
    new_session(visitor, "demo-chat")
    assert _visitor_row(app, _key(visitor)) is not None


def test_activity_is_written_at_most_once_per_five_minutes(app, api, tmp_path):
    visitor = ApiClient(app)
    visitor.get("/api/auth/actor")
    visitor.get("/api/auth/actor")
    key = _key(visitor)
    ten_minutes_ago = _now() - timedelta(minutes=10)
    _set(app, "UPDATE anonymous_visitors SET last_seen_at = :t", t=ten_minutes_ago)
    visitor.get("/api/auth/actor")  # this worker wrote it less than 5 minutes ago: no write
    assert _visitor_row(app, key)["last_seen_at"] == ten_minutes_ago
    other_worker = make_app(tmp_path / "data")
    try:
        client = ApiClient(other_worker)
        client.client.set_cookie("anon_key", key)
        client.get("/api/auth/actor")  # another worker, and the row is old enough: written
        refreshed = _visitor_row(app, key)["last_seen_at"]
        assert refreshed > ten_minutes_ago
        one_minute_ago = _now() - timedelta(minutes=1)
        _set(app, "UPDATE anonymous_visitors SET last_seen_at = :t", t=one_minute_ago)
        third_worker = make_app(tmp_path / "data")
        try:
            client = ApiClient(third_worker)
            client.client.set_cookie("anon_key", key)
            client.get("/api/auth/actor")  # the row is fresh: no worker writes it again
        finally:
            close_app(third_worker)
        assert _visitor_row(app, key)["last_seen_at"] == one_minute_ago
    finally:
        close_app(other_worker)


# ---- claim -------------------------------------------------------------------------------------------


def _cleared(reply) -> bool:
    header = reply.cookies.get("anon_key", "")
    return "anon_key=;" in header and ("Max-Age=0" in header or "1970" in header)


def test_login_claims_the_visitors_sessions_and_clears_the_cookie(app, api, chat):
    api.user(chat, "olga", PASSWORD)
    visitor, session_id = _visitor_with_a_chat(api)
    bystander, other_session = _visitor_with_a_chat(api)
    key = _key(visitor)
    reply = visitor.post("/api/auth/login", {"username": "olga", "password": PASSWORD})
    assert reply.status == 200 and _cleared(reply)
    assert visitor.client.get_cookie("anon_key") is None
    user_id = reply.data["user"]["id"]
    mine = visitor.with_token(reply.data["token"]).get("/api/sessions").data["sessions"]
    assert [s["id"] for s in mine] == [session_id]
    assert _count(app, "usage_records WHERE user_id = :u AND anon_key IS NULL", u=user_id) == 1
    assert _sessions_of(app, key) == [] and _visitor_row(app, key) is None
    assert _sessions_of(app, _key(bystander)) == [other_session]


def test_registration_claims_the_visitors_sessions(app, api, chat):
    chat.put("/api/settings/system", {"registration_approval_required": False})
    visitor, session_id = _visitor_with_a_chat(api)
    reply = visitor.post("/api/auth/register", {"username": "pavel", "password": PASSWORD})
    assert reply.status == 200 and reply.data["token"] and _cleared(reply)
    sessions = visitor.with_token(reply.data["token"]).get("/api/sessions").data["sessions"]
    assert [s["id"] for s in sessions] == [session_id]


def test_a_registration_awaiting_approval_claims_nothing(app, api, chat):
    visitor, session_id = _visitor_with_a_chat(api)
    key = _key(visitor)
    reply = visitor.post("/api/auth/register", {"username": "quinn", "password": PASSWORD})
    assert reply.status == 200 and "token" not in reply.data
    assert _sessions_of(app, key) == [session_id]
    assert visitor.get(f"/api/sessions/{session_id}").status == 200  # still the visitor's


def test_a_failed_login_claims_nothing(app, api, chat):
    api.user(chat, "rita", PASSWORD)
    visitor, session_id = _visitor_with_a_chat(api)
    assert visitor.post("/api/auth/login", {"username": "rita", "password": "wrong-pass-1"}).status == 401
    assert _sessions_of(app, _key(visitor)) == [session_id]


# ---- retention cleanup -------------------------------------------------------------------------------


def test_cleanup_deletes_an_expired_visitors_sessions_messages_usage_and_row(app, api, chat):
    visitor, session_id = _visitor_with_a_chat(api)
    key = _key(visitor)
    _expire(app, key)
    summary = _cleanup(app)
    assert summary["chat_sessions_deleted"] == 1 and summary["usage_records_deleted"] == 1
    assert summary["visitors_deleted"] == 1
    assert _count(app, "messages WHERE session_id = :s", s=session_id) == 0
    assert _count(app, "usage_records WHERE anon_key = :k", k=key) == 0
    assert _visitor_row(app, key) is None


def test_cleanup_keeps_an_active_visitors_data(app, api, chat):
    expired, _ = _visitor_with_a_chat(api)
    active, active_session = _visitor_with_a_chat(api)
    _expire(app, _key(expired))
    _expire(app, _key(active), days=14)  # within the 15 days of retention
    summary = _cleanup(app)
    assert summary["chat_sessions_deleted"] == 1
    assert _sessions_of(app, _key(active)) == [active_session]
    assert active.get(f"/api/sessions/{active_session}").status == 200


def test_activity_extends_the_retention(app, api, chat):
    visitor, session_id = _visitor_with_a_chat(api)
    _expire(app, _key(visitor))
    app.extensions["parley.visitors_seen"].seen.clear()  # as if this worker's throttle window had passed
    assert visitor.get("/api/sessions").status == 200  # the visitor comes back
    assert _cleanup(app)["chat_sessions_deleted"] == 0
    assert visitor.get(f"/api/sessions/{session_id}").status == 200


def test_cleanup_never_deletes_a_session_with_a_running_generation(app, api, chat):
    visitor, finished_session = _visitor_with_a_chat(api)
    running_session = new_session(visitor, "fake-chat")
    key = _key(visitor)
    db = app.extensions["parley.db"]
    with db as tx:
        now = _now()
        message_id = insert(tx, "messages", {
            "session_id": running_session, "role": "assistant", "content": "partial", "stream_status": "streaming",
            "stream_cursor": 0, "images": "[]", "created_at": now, "updated_at": now,
        })
        execute(tx, "INSERT INTO generations (message_id, session_id, owner, worker, state, cancel_requested, "
                    "last_seq, created_at) VALUES (:m, :s, :o, 'elsewhere:1:x', 'running', :f, 0, :now)",
                m=message_id, s=running_session, o=f"anon:{key}", f=False, now=now)
    _expire(app, key)
    summary = _cleanup(app)
    assert summary["chat_sessions_deleted"] == 1 and summary["visitors_deleted"] == 0
    assert _sessions_of(app, key) == [running_session]
    assert _count(app, "messages WHERE session_id = :s", s=running_session) == 1
    assert _count(app, "messages WHERE session_id = :s", s=finished_session) == 0
    _set(app, "UPDATE generations SET state = 'done' WHERE message_id = :m", m=message_id)
    later = _cleanup(app, "s2")
    assert later["chat_sessions_deleted"] == 1 and later["visitors_deleted"] == 1


def test_cleanup_is_idempotent(app, api, chat):
    visitor, _ = _visitor_with_a_chat(api)
    _expire(app, _key(visitor))
    _cleanup(app, "s1")
    again = _cleanup(app, "s2")
    assert all(count == 0 for count in again.values()), again


def test_cleanup_adopts_data_without_a_visitor_row_and_keeps_it(app, api, chat):
    visitor, session_id = _visitor_with_a_chat(api)
    key = _key(visitor)
    _expire(app, key)
    _set(app, "DELETE FROM anonymous_visitors")  # data from before visitors were recorded
    summary = _cleanup(app)
    assert summary["visitors_adopted"] == 1 and summary["chat_sessions_deleted"] == 0
    assert _sessions_of(app, key) == [session_id]
    assert _visitor_row(app, key)["last_seen_at"] > _now() - timedelta(minutes=1)


def test_retention_zero_still_keeps_a_visitor_active_within_the_hour(app, api, chat):
    chat.put("/api/settings/system", {"anonymous_retention_days": 0})
    visitor, session_id = _visitor_with_a_chat(api)
    assert _cleanup(app)["chat_sessions_deleted"] == 0
    _expire(app, _key(visitor), days=1)
    assert _cleanup(app, "s2")["chat_sessions_deleted"] == 1


def test_activity_claim_and_cleanup_work_on_each_database(any_db_app):
    app = any_db_app
    admin = ApiClient(app).register_admin("admin", PASSWORD)
    admin.put("/api/settings/system", {"registration_approval_required": False})
    leaving, staying = ApiClient(app), ApiClient(app)
    gone_session, kept_session = new_session(leaving, "demo-chat"), new_session(staying, "demo-chat")
    assert _visitor_row(app, _key(leaving)) is not None
    _expire(app, _key(leaving))
    summary = _cleanup(app)
    assert summary["chat_sessions_deleted"] == 1 and summary["visitors_deleted"] == 1
    assert leaving.get(f"/api/sessions/{gone_session}").status == 404
    reply = staying.post("/api/auth/register", {"username": "sam", "password": PASSWORD})
    assert reply.status == 200 and _cleared(reply)
    sessions = staying.with_token(reply.data["token"]).get("/api/sessions").data["sessions"]
    assert [s["id"] for s in sessions] == [kept_session]
    assert run_claimed(app, all_jobs()["quota_reset"], "s1")["counters_reset"] == 0

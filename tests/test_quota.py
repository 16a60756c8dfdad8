"""Daily quotas: atomic under a race, per visitor plus per address, lazy and scheduled resets, the admin's
controls, what is charged (one unit per request, regenerations too) and what is not (refusals, re-sends)."""

import time
from datetime import UTC, datetime, timedelta

import gevent
import pytest

from common import quota
from common.auth.actors import Actor
from common.chat import service
from common.db import execute, fetch_all, fetch_one, release
from common.errors import TooManyRequests
from jobs.registry import all_jobs, run_claimed
from tests.api_client import ApiClient
from tests.chat_support import fake_connection, messages, new_session, open_stream, send, wait_until
from tests.conftest import PASSWORD

SLOW = "fake-slow@chunks=60,delay=50"


@pytest.fixture
def chat(api, admin, fake):
    fake_connection(admin, fake, ["fake-chat", SLOW])
    admin.put("/api/settings/system", {"model_access_default_anonymous": "allow"})
    return admin


def _counter(app, scope: str, identifier: str | None = None) -> dict | None:
    sql = "SELECT * FROM quota_counters WHERE scope = :s" + (" AND identifier = :i" if identifier else "")
    return fetch_one(app.extensions["parley.db"], sql, s=scope, i=identifier)


def _used(app, scope: str = "USER", identifier: str | None = None) -> int:
    row = _counter(app, scope, identifier)
    return row["used"] if row else 0


def _yesterday() -> str:
    return (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")


def _visitor(api: ApiClient) -> ApiClient:
    """A new anonymous visitor (its own cookie jar, no token)."""
    return ApiClient(api.app)


def _user_id(client: ApiClient) -> int:
    return client.get("/api/auth/me").data["id"]


def _assistant_rows(app) -> list[dict]:
    return fetch_all(app.extensions["parley.db"], "SELECT id FROM messages WHERE role = 'assistant'")


def test_fifty_parallel_reservations_against_a_limit_of_ten_take_exactly_ten_units(any_db_app):
    app = any_db_app
    admin = ApiClient(app).register_admin("admin", PASSWORD)
    user = ApiClient(app).user(admin, "racer", PASSWORD)
    user_id = _user_id(user)
    admin.put(f"/api/users/{user_id}/quota", {"dailyLimit": 10})
    db = app.extensions["parley.db"]
    actor = Actor("user", user_id=user_id, username="racer", role="USER")

    def one() -> bool:
        with app.test_request_context():
            try:
                quota.reserve(db, actor)
                return True
            except TooManyRequests:
                return False
            finally:
                release(db)

    greenlets = [gevent.spawn(one) for _ in range(50)]
    gevent.joinall(greenlets, raise_error=True)
    assert sum(g.value for g in greenlets) == 10
    assert _used(app) == 10


def test_fifty_parallel_requests_against_a_limit_of_ten_make_exactly_ten_generations(any_db_app, fake):
    app = any_db_app
    admin = ApiClient(app).register_admin("admin", PASSWORD)
    fake_connection(admin, fake, ["fake-chat"])
    admin.put("/api/settings/system", {"chat_max_concurrent_streams": 100})
    user = ApiClient(app).user(admin, "racer", PASSWORD)
    assert admin.put(f"/api/users/{_user_id(user)}/quota", {"dailyLimit": 10}).status == 200
    session_id = new_session(user, "fake-chat")

    def one(i: int) -> tuple[int, str | None]:
        reply = user.with_token(user.token).post("/api/chat/stream", {"sessionId": session_id, "content": f"r{i}"})
        return reply.status, reply.code

    started = time.monotonic()
    greenlets = [gevent.spawn(one, i) for i in range(50)]
    gevent.joinall(greenlets, raise_error=True)
    elapsed = time.monotonic() - started
    results = [g.value for g in greenlets]
    assert results.count((200, None)) == 10, results
    assert results.count((429, "quota_exceeded")) == 40, results
    assert len(_assistant_rows(app)) == 10
    assert _used(app) == 10
    print(f"\n50 parallel requests, limit 10 on {app.extensions['parley.db'].engine.dialect.name}: {elapsed:.2f}s")


def test_each_visitor_has_a_counter_of_their_own(app, api, chat):
    chat.put("/api/settings/system", {"anonymous_daily_quota": 1, "anonymous_address_daily_quota": 0})
    first, second = _visitor(api), _visitor(api)
    assert send(first, new_session(first, "fake-chat"), "mine").status == 200
    refused = first.post("/api/chat/stream", {"sessionId": new_session(first, "fake-chat"), "content": "again"})
    assert refused.status == 429 and refused.code == "quota_exceeded"
    assert refused.data["requiredLogin"] is True and refused.data["quota"]["scope"] == "ANON"
    assert send(second, new_session(second, "fake-chat"), "mine too").status == 200


def test_the_address_cap_stops_a_second_visitor_from_the_same_address(app, api, chat):
    chat.put("/api/settings/system", {"anonymous_daily_quota": 5, "anonymous_address_daily_quota": 3})
    first, second = _visitor(api), _visitor(api)
    first_session, second_session = new_session(first, "fake-chat"), new_session(second, "fake-chat")
    assert [send(first, first_session, f"a{i}").status for i in range(2)] == [200, 200]
    assert send(second, second_session, "b0").status == 200
    refused = second.post("/api/chat/stream", {"sessionId": second_session, "content": "b1"})
    assert refused.status == 429 and refused.code == "quota_exceeded"
    assert "address" in refused.error and refused.data["requiredLogin"] is True
    assert refused.data["quota"]["usedCount"] == 1  # the visitor's own counter is not exhausted
    assert _used(app, "ADDR") == 3


def test_a_counter_of_yesterday_is_reset_by_the_next_request(app, api, chat):
    user = api.user(chat, "dora", PASSWORD)
    chat.put(f"/api/users/{_user_id(user)}/quota", {"dailyLimit": 1})
    session_id = new_session(user, "fake-chat")
    send(user, session_id, "today")
    assert user.post("/api/chat/stream", {"sessionId": session_id, "content": "no"}).status == 429
    db = app.extensions["parley.db"]
    with db as tx:
        execute(tx, "UPDATE quota_counters SET day = :d", d=_yesterday())
    assert send(user, session_id, "a new day").status == 200
    assert _used(app) == 1
    assert _counter(app, "USER")["day"] == quota.today()


def test_the_scheduled_reset_zeroes_counters_of_past_days_once(app):
    db = app.extensions["parley.db"]
    now = datetime.now(UTC).replace(tzinfo=None)
    with db as tx:
        for scope, ident, day in [("USER", "1", _yesterday()), ("ANON", "k" * 20, _yesterday()),
                                  ("ADDR", "10.0.0.1", quota.today())]:
            execute(tx, "INSERT INTO quota_counters (scope, identifier, day, used, last_reset_at, updated_at) "
                        "VALUES (:s, :i, :d, 7, :now, :now)", s=scope, i=ident, d=day, now=now)
        execute(tx, "INSERT INTO anonymous_visitors (anon_key, first_seen_at, last_seen_at) VALUES (:k, :n, :n)",
                k="k" * 20, n=now)
    job = all_jobs()["quota_reset"]
    summary = run_claimed(app, job, "2026-01-02T00:00:00")
    assert summary["counters_reset"] == 1 and summary["counters_pruned"] == 1  # user 1 does not exist
    anon = _counter(app, "ANON")
    assert (anon["used"], anon["day"]) == (0, quota.today())
    assert _used(app, "ADDR") == 7  # today's counter is untouched
    again = run_claimed(app, job, "2026-01-03T00:00:00")
    assert again["counters_reset"] == 0 and again["counters_pruned"] == 0


def test_the_reset_job_prunes_counters_of_visitors_gone_past_the_retention(app):
    db = app.extensions["parley.db"]
    old = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=20)
    with db as tx:
        for ident in ("gone-visitor-key", "kept-visitor-key"):
            execute(tx, "INSERT INTO quota_counters (scope, identifier, day, used, last_reset_at, updated_at) "
                        "VALUES ('ANON', :i, '2020-01-01', 3, :t, :t)", i=ident, t=old)
        execute(tx, "INSERT INTO anonymous_visitors (anon_key, first_seen_at, last_seen_at) VALUES (:k, :t, :n)",
                k="kept-visitor-key", t=old, n=datetime.now(UTC).replace(tzinfo=None))
        execute(tx, "INSERT INTO quota_counters (scope, identifier, day, used, last_reset_at, updated_at) "
                    "VALUES ('ADDR', '10.9.9.9', '2020-01-01', 3, :t, :t)", t=old)
    summary = run_claimed(app, all_jobs()["quota_reset"], "s1")
    assert summary["counters_pruned"] == 2
    assert [r["identifier"] for r in fetch_all(db, "SELECT identifier FROM quota_counters")] == ["kept-visitor-key"]


def test_the_admin_resets_todays_anonymous_counters(app, api, chat):
    visitor = _visitor(api)
    send(visitor, new_session(visitor, "fake-chat"), "spend one")
    assert (_used(app, "ANON"), _used(app, "ADDR")) == (1, 1)
    user = api.user(chat, "erin", PASSWORD)
    assert user.post("/api/settings/system/anonymous-quota/reset").status == 403
    assert _visitor(api).post("/api/settings/system/anonymous-quota/reset").status == 401
    reply = chat.post("/api/settings/system/anonymous-quota/reset")
    assert reply.status == 200 and reply.data == {"reset": 2}
    assert (_used(app, "ANON"), _used(app, "ADDR")) == (0, 0)
    assert chat.post("/api/settings/system/anonymous-quota/reset").data == {"reset": 0}


def test_an_admin_reads_and_sets_a_users_quota(app, api, chat):
    user = api.user(chat, "fred", PASSWORD)
    user_id = _user_id(user)
    default = chat.get(f"/api/users/{user_id}/quota").data
    assert default["scope"] == "USER" and default["identifier"] == str(user_id)
    assert (default["dailyLimit"], default["usingDefaultLimit"], default["customDailyLimit"]) == (200, True, None)
    custom = chat.put(f"/api/users/{user_id}/quota", {"dailyLimit": 3}).data
    assert (custom["dailyLimit"], custom["remaining"], custom["usingDefaultLimit"]) == (3, 3, False)
    assert custom["customDailyLimit"] == 3
    assert user.get("/api/auth/actor").data["quota"]["dailyLimit"] == 3
    back = chat.put(f"/api/users/{user_id}/quota", {"dailyLimit": None}).data
    assert (back["dailyLimit"], back["usingDefaultLimit"]) == (200, True)


def test_a_users_quota_is_validated_and_admin_only(api, chat):
    user = api.user(chat, "gina", PASSWORD)
    user_id = _user_id(user)
    bad_bodies = [{"dailyLimit": -1}, {"dailyLimit": "5"}, {"dailyLimit": 1.5}, {"dailyLimit": True},
                  {"resetUsed": "yes"}, {"dailyLimit": None, "resetUsed": 1}]
    for bad in bad_bodies:
        reply = chat.put(f"/api/users/{user_id}/quota", bad)
        assert reply.status == 400 and reply.code == "validation_error", bad
    assert user.get(f"/api/users/{user_id}/quota").status == 403
    assert user.put(f"/api/users/{user_id}/quota", {"dailyLimit": 1000}).status == 403
    assert chat.get("/api/users/999999/quota").status == 404


def test_reset_used_gives_a_user_todays_quota_back(app, api, chat):
    user = api.user(chat, "hank", PASSWORD)
    user_id = _user_id(user)
    chat.put(f"/api/users/{user_id}/quota", {"dailyLimit": 1})
    session_id = new_session(user, "fake-chat")
    send(user, session_id, "one")
    assert user.post("/api/chat/stream", {"sessionId": session_id, "content": "two"}).status == 429
    snapshot = chat.put(f"/api/users/{user_id}/quota", {"resetUsed": True}).data
    assert (snapshot["usedCount"], snapshot["remaining"], snapshot["dailyLimit"]) == (0, 1, 1)
    assert send(user, session_id, "two").status == 200


def test_admins_are_unlimited(app, chat):
    chat.put("/api/settings/system", {"default_user_daily_quota": 1})
    session_id = new_session(chat, "fake-chat")
    assert [send(chat, session_id, f"m{i}").status for i in range(3)] == [200, 200, 200]
    snapshot = chat.get("/api/auth/actor").data["quota"]
    assert snapshot["unlimited"] is True and snapshot["remaining"] is None and snapshot["dailyLimit"] is None
    assert snapshot["usedCount"] == 3


def test_a_request_refused_by_model_access_is_not_charged(app, api, chat):
    user = api.user(chat, "ivan", PASSWORD)
    session_id = new_session(user, "fake-chat")
    connection_id = chat.get("/api/connections").data[-1]["id"]
    chat.put("/api/catalog/models/tags", {"connectionId": connection_id, "rawId": "fake-chat",
                                          "access_policy": {"user": "deny"}})
    assert user.post("/api/chat/stream", {"sessionId": session_id, "content": "denied"}).status == 403
    assert _used(app) == 0


def test_a_request_over_the_concurrency_limit_is_not_charged(app, api, chat):
    chat.put("/api/settings/system", {"chat_max_concurrent_streams": 1})
    user = api.user(chat, "jane", PASSWORD)
    session_id = new_session(user, SLOW)
    running = open_stream(user, "/api/chat/stream", {"sessionId": session_id, "content": "long"})
    running.until("start")
    refused = user.post("/api/chat/stream", {"sessionId": session_id, "content": "second"})
    assert refused.status == 429 and refused.code == "too_many_streams"
    assert _used(app) == 1
    running.close()


def test_a_unit_goes_back_when_the_generation_never_starts(app, api, chat, monkeypatch):
    """Two requests pass the early concurrency check together; the loser is refused inside the write
    transaction, after its unit was taken: the unit is released."""
    chat.put("/api/settings/system", {"chat_max_concurrent_streams": 1})
    user = api.user(chat, "kate", PASSWORD)
    session_id = new_session(user, SLOW)
    running = open_stream(user, "/api/chat/stream", {"sessionId": session_id, "content": "long"})
    running.until("start")
    monkeypatch.setattr(service, "check_concurrency", lambda *args: None)
    refused = user.post("/api/chat/stream", {"sessionId": session_id, "content": "raced"})
    assert refused.status == 429 and refused.code == "too_many_streams"
    assert _used(app) == 1
    assert len(messages(app, session_id)) == 2
    running.close()


def test_an_idempotent_resend_is_not_charged(app, api, chat):
    user = api.user(chat, "liam", PASSWORD)
    session_id = new_session(user, "fake-chat")
    send(user, session_id, "once", clientMessageId="same-1")
    send(user, session_id, "once", clientMessageId="same-1")
    assert _used(app) == 1


def test_a_regeneration_is_charged(app, api, chat):
    user = api.user(chat, "mona", PASSWORD)
    session_id = new_session(user, "fake-chat")
    first = send(user, session_id, "question")
    user_message_id = first.events[0].data["messageId"]
    open_stream(user, "/api/chat/regenerate", {"sessionId": session_id, "messageId": user_message_id}).read_all()
    send(user, session_id, "", replyToMessageId=user_message_id)
    assert _used(app) == 3
    wait_until(lambda: not app.extensions["parley.generations"].live)


def test_the_actor_shows_a_users_quota(api, chat):
    chat.put("/api/settings/system", {"default_user_daily_quota": 50})
    user = api.user(chat, "nina", PASSWORD)
    send(user, new_session(user, "fake-chat"), "count me")
    snapshot = user.get("/api/auth/actor").data["quota"]
    assert snapshot["scope"] == "USER" and snapshot["identifier"] == str(_user_id(user))
    assert (snapshot["dailyLimit"], snapshot["usedCount"], snapshot["remaining"]) == (50, 1, 49)
    assert snapshot["unlimited"] is False and snapshot["usingDefaultLimit"] is True
    assert snapshot["lastResetAt"].endswith("Z")


def test_the_actor_shows_a_visitors_quota(api, chat):
    chat.put("/api/settings/system", {"anonymous_daily_quota": 7})
    visitor = _visitor(api)
    send(visitor, new_session(visitor, "fake-chat"), "count me")
    reply = visitor.get("/api/auth/actor").data
    key = visitor.client.get_cookie("anon_key").value
    assert reply["actor"] == {"type": "anonymous", "identifier": f"anon:{key}"}
    snapshot = reply["quota"]
    assert snapshot["scope"] == "ANON" and snapshot["identifier"] == key
    assert (snapshot["dailyLimit"], snapshot["usedCount"], snapshot["remaining"]) == (7, 1, 6)

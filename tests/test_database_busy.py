"""A database that stays locked past its busy timeout answers 503 with Retry-After, not a 500."""

import sqlite3

import pytest

import common.db
from tests.conftest import close_app, make_app

PASSWORD = "correct-horse-1"


@pytest.fixture
def quick_app(tmp_path, monkeypatch):
    # The same app, waiting 0.2 s instead of 10 s for a lock, so that the test does not take long.
    pragmas = [p if not p.startswith("PRAGMA busy_timeout") else "PRAGMA busy_timeout=200"
               for p in common.db.SQLITE_PRAGMAS]
    monkeypatch.setattr(common.db, "SQLITE_PRAGMAS", pragmas)
    application = make_app(tmp_path / "data")
    yield application, tmp_path / "data" / "parley.db"
    close_app(application)


def _locked(path):
    """Another process's writer holding the database's write lock."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_a_write_while_the_database_stays_locked_is_503_with_retry_after(quick_app):
    from tests.api_client import ApiClient

    app, path = quick_app
    api = ApiClient(app)
    admin = api.register_admin("admin", PASSWORD)
    other = _locked(path)
    try:
        reply = admin.post("/api/sessions", {"modelId": "demo-chat"})
    finally:
        other.rollback()
        other.close()
    assert reply.status == 503
    assert reply.body["success"] is False and reply.body["code"] == "database_busy"
    assert reply.headers["Retry-After"] == "1"


def test_the_same_write_succeeds_once_the_lock_is_gone(quick_app):
    from tests.api_client import ApiClient

    app, path = quick_app
    admin = ApiClient(app).register_admin("admin", PASSWORD)
    other = _locked(path)
    assert admin.post("/api/sessions", {"modelId": "demo-chat"}).status == 503
    other.rollback()
    other.close()
    created = admin.post("/api/sessions", {"modelId": "demo-chat"})
    assert created.status == 201
    assert len(admin.get("/api/sessions").data["sessions"]) == 1  # the refused write left nothing


def test_a_database_error_that_is_a_bug_stays_a_500(quick_app, monkeypatch):
    from tests.api_client import ApiClient

    app, _path = quick_app
    admin = ApiClient(app).register_admin("admin", PASSWORD)
    real_cursor = common.db._cursor

    def broken(db, sql, params):
        return real_cursor(db, sql.replace("chat_sessions", "no_such_table", 1), params)

    monkeypatch.setattr(common.db, "_cursor", broken)
    reply = admin.get("/api/sessions")
    assert reply.status == 500 and reply.body["code"] == "internal_error"


def test_postgresql_connection_errors_count_as_transient_and_sql_errors_do_not():
    import psycopg
    import sqlalchemy as sa

    from common.db import is_transient_error

    lost = sa.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("server closed the connection"))
    shutdown = sa.exc.OperationalError("SELECT 1", {}, psycopg.errors.AdminShutdown("terminating connection"))
    bad_sql = sa.exc.ProgrammingError("SELEC 1", {}, psycopg.errors.SyntaxError("syntax error"))
    assert is_transient_error(lost) and is_transient_error(shutdown)
    assert not is_transient_error(bad_sql)


@pytest.fixture
def quick_chat(quick_app, fake):
    from tests.api_client import ApiClient
    from tests.chat_support import fake_connection

    app, path = quick_app
    admin = ApiClient(app).register_admin("admin", PASSWORD)
    fake_connection(admin, fake, ["fake-slow@chunks=30,delay=50"])
    return app, path, admin


def _answer_to(app, stream) -> dict:
    from tests.chat_support import message, wait_until

    assistant_id = stream.events[0].data["assistantMessageId"]
    return wait_until(lambda: (m := message(app, assistant_id)) and m["stream_status"] != "streaming" and m)


def test_an_answer_survives_a_database_locked_during_its_checkpoints(quick_chat):
    import gevent

    from tests.chat_support import new_session, open_stream

    app, path, admin = quick_chat
    stream = open_stream(admin, "/api/chat/stream",
                         {"sessionId": new_session(admin, "fake-slow@chunks=30,delay=50"), "content": "hi"})
    stream.until("content")
    other = _locked(path)  # the next checkpoints meet a locked database
    gevent.sleep(0.8)
    other.rollback()
    other.close()
    stream.read_all()
    saved = _answer_to(app, stream)
    assert saved["stream_status"] == "done"
    assert saved["content"] == "".join(e.data["content"] for e in stream.events if e.type == "content")


def test_the_final_write_is_tried_again_until_the_database_is_free(quick_chat):
    import gevent

    from tests.chat_support import new_session, open_stream

    app, path, admin = quick_chat
    stream = open_stream(admin, "/api/chat/stream",
                         {"sessionId": new_session(admin, "fake-slow@chunks=30,delay=50"), "content": "hi"})
    stream.until("content")
    gevent.sleep(1.2)  # the answer ends ~1.5 s after it started: lock across its end
    other = _locked(path)
    gevent.sleep(1.2)
    other.rollback()
    other.close()
    stream.read_all()
    saved = _answer_to(app, stream)
    assert saved["stream_status"] == "done" and saved["content"]
    assert [e.type for e in stream.events if e.type in ("complete", "error")] == ["complete"]


def test_a_follower_in_another_worker_polls_again_after_a_transient_database_error(quick_chat, tmp_path,
                                                                                  monkeypatch):
    import sqlalchemy as sa

    from common.chat.live import DbEventSource
    from tests.chat_support import new_session, open_stream

    app, _path, admin = quick_chat
    other = make_app(tmp_path / "data")  # a second worker on the same database
    try:
        stream = open_stream(admin, "/api/chat/stream",
                             {"sessionId": new_session(admin, "fake-slow@chunks=30,delay=50"), "content": "hi"})
        assistant_id = stream.until("start").data["assistantMessageId"]
        busy = sqlite3.OperationalError("database is locked")
        busy.sqlite_errorcode = 5
        real_fetch_all, failures = common.db.fetch_all, []

        def fails_once(*args, **kwargs):
            if not failures:
                failures.append(1)
                raise sa.exc.OperationalError("SELECT events ...", {}, busy)
            return real_fetch_all(*args, **kwargs)

        monkeypatch.setattr(common.db, "fetch_all", fails_once)
        with other.app_context():
            events = DbEventSource(other, assistant_id).wait_after(0, timeout=5)
        stream.read_all()
        assert failures and events and events[0][1]["type"] == "start"
    finally:
        close_app(other)

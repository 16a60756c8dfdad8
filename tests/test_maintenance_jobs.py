"""The maintenance jobs: their schedule, one run per slot across clock processes, `python -m jobs run`,
and what stream_sweep and catalog_refresh change."""

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import gevent
import pytest

from common.db import execute, fetch_all, fetch_one, insert
from jobs.registry import all_jobs, run_claimed
from tests.api_client import ApiClient
from tests.chat_support import fake_connection
from tests.conftest import PASSWORD, close_app, make_app
from tests.live_server import REPO

MAINTENANCE = {
    # name: (period, offset, a key of its summary)
    "quota_reset": (86400, 0, "counters_reset"),
    "anonymous_cleanup": (3600, 900, "visitors_deleted"),
    "catalog_refresh": (600, 120, "refreshed"),
    "stream_sweep": (60, 30, "interrupted"),
}


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _run(app, name: str, slot: str = "s1") -> dict:
    return run_claimed(app, all_jobs()[name], slot)


def _generation(app, *, worker: str, created_at: datetime, state: str = "running",
                finished_at: datetime | None = None) -> int:
    """An assistant message and its generation row, as a worker would have written them."""
    db = app.extensions["parley.db"]
    with db as tx:
        session_id = insert(tx, "chat_sessions", {
            "anon_key": "sweep-visitor-key", "title": "t", "tags": "[]", "message_count": 1,
            "created_at": created_at, "updated_at": created_at,
        })
        message_id = insert(tx, "messages", {
            "session_id": session_id, "role": "assistant", "content": "half an ans",
            "stream_status": "streaming" if state == "running" else "done", "stream_cursor": 0, "images": "[]",
            "created_at": created_at, "updated_at": created_at,
        })
        execute(tx, "INSERT INTO generations (message_id, session_id, owner, worker, state, cancel_requested, "
                    "last_seq, created_at, finished_at) VALUES (:m, :s, 'anon:sweep-visitor-key', :w, :st, :f, 3, "
                    ":c, :fin)", m=message_id, s=session_id, w=worker, st=state, f=False, c=created_at,
                fin=finished_at)
        insert(tx, "generation_events", {"message_id": message_id, "first_seq": 1, "last_seq": 3,
                                         "events": "[]", "created_at": created_at})
    return message_id


def _worker(app, worker_id: str, heartbeat_at: datetime) -> None:
    db = app.extensions["parley.db"]
    with db as tx:
        execute(tx, "INSERT INTO workers (id, host, pid, started_at, heartbeat_at) VALUES (:id, 'other-host', 1, "
                    ":t, :t)", id=worker_id, t=heartbeat_at)


def _state(app, message_id: int) -> tuple[str, str]:
    db = app.extensions["parley.db"]
    generation = fetch_one(db, "SELECT state FROM generations WHERE message_id = :m", m=message_id)
    message = fetch_one(db, "SELECT stream_status FROM messages WHERE id = :m", m=message_id)
    return generation["state"], message["stream_status"]


def _event_batches(app, message_id: int) -> int:
    return fetch_one(app.extensions["parley.db"], "SELECT COUNT(*) AS n FROM generation_events WHERE message_id = :m",
                     m=message_id)["n"]


def test_the_maintenance_jobs_are_scheduled_as_documented():
    jobs = all_jobs()
    for name, (period, offset, _key) in MAINTENANCE.items():
        assert (jobs[name].period_seconds, jobs[name].offset_seconds) == (period, offset), name
    assert jobs["quota_reset"].slot_for(datetime(2026, 3, 4, 23, 59, 59)) == "2026-03-04T00:00:00"
    assert jobs["quota_reset"].slot_for(datetime(2026, 3, 5, 0, 0, 0)) == "2026-03-05T00:00:00"


@pytest.mark.parametrize("name", sorted(MAINTENANCE))
def test_two_clock_processes_run_one_slot_of_the_job_exactly_once(tmp_path, name):
    first = make_app(tmp_path / "data")
    second = make_app(tmp_path / "data")  # a second clock on the same database
    try:
        job = all_jobs()[name]
        greenlets = [gevent.spawn(run_claimed, app, job, "2026-01-01T00:00:00") for app in (first, second)]
        gevent.joinall(greenlets, raise_error=True)
        summaries = [g.value for g in greenlets]
        assert sorted(s is None for s in summaries) == [False, True]
        summary = next(s for s in summaries if s is not None)
        assert MAINTENANCE[name][2] in summary and "error" not in summary, summary
        rows = fetch_all(first.extensions["parley.db"], "SELECT status FROM job_runs WHERE job = :j", j=name)
        assert [r["status"] for r in rows] == ["done"]
    finally:
        close_app(first)
        close_app(second)


@pytest.mark.parametrize("name", sorted(MAINTENANCE))
def test_python_m_jobs_run_runs_the_job(tmp_path, name):
    env = {"DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin", "LOG_LEVEL": "WARNING"}
    result = subprocess.run([sys.executable, "-m", "jobs", "run", name], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"'{MAINTENANCE[name][2]}':" in result.stdout and "'error'" not in result.stdout, result.stdout


def test_stream_sweep_marks_a_generation_of_a_silent_worker_interrupted(app):
    message_id = _generation(app, worker="gone-host:4242:abc", created_at=_now() - timedelta(minutes=5))
    _worker(app, "gone-host:4242:abc", _now() - timedelta(minutes=2))
    summary = _run(app, "stream_sweep")
    assert summary["interrupted"] == 1
    assert _state(app, message_id) == ("interrupted", "interrupted")
    saved = fetch_one(app.extensions["parley.db"], "SELECT content FROM messages WHERE id = :m", m=message_id)
    assert saved["content"] == "half an ans"  # the partial answer is kept
    assert _run(app, "stream_sweep", "s2")["interrupted"] == 0


def test_stream_sweep_leaves_a_live_workers_generation_running(app):
    message_id = _generation(app, worker="live-host:4242:abc", created_at=_now() - timedelta(minutes=5))
    _worker(app, "live-host:4242:abc", _now() - timedelta(seconds=3))
    assert _run(app, "stream_sweep")["interrupted"] == 0
    assert _state(app, message_id) == ("running", "streaming")


def test_stream_sweep_prunes_replay_logs_of_generations_finished_over_ten_minutes_ago(app):
    old = _generation(app, worker="w:1:a", created_at=_now() - timedelta(hours=1), state="done",
                      finished_at=_now() - timedelta(minutes=11))
    recent = _generation(app, worker="w:1:a", created_at=_now() - timedelta(hours=1), state="done",
                         finished_at=_now() - timedelta(minutes=9))
    running = _generation(app, worker="live-host:1:a", created_at=_now())
    _worker(app, "live-host:1:a", _now())
    assert _run(app, "stream_sweep")["event_batches_pruned"] == 1
    assert (_event_batches(app, old), _event_batches(app, recent), _event_batches(app, running)) == (0, 1, 1)
    assert _run(app, "stream_sweep", "s2")["event_batches_pruned"] == 0


def test_stream_sweep_prunes_rows_of_long_gone_workers(app):
    _worker(app, "old-host:1:idle", _now() - timedelta(days=2))
    _worker(app, "new-host:1:idle", _now() - timedelta(minutes=1))
    assert _run(app, "stream_sweep")["workers_pruned"] == 1
    ids = [r["id"] for r in fetch_all(app.extensions["parley.db"], "SELECT id FROM workers ORDER BY id")]
    assert "old-host:1:idle" not in ids and "new-host:1:idle" in ids


def test_catalog_refresh_refetches_expired_catalogs_only(app, fake):
    admin = ApiClient(app).register_admin("admin", PASSWORD)
    fake_connection(admin, fake, ["fake-chat"])
    db = app.extensions["parley.db"]
    enabled = fetch_one(db, "SELECT COUNT(*) AS n FROM connections WHERE enable = :t AND owner_user_id IS NULL",
                        t=True)["n"]
    with db as tx:
        execute(tx, "DELETE FROM catalog_state")
    first = _run(app, "catalog_refresh")
    assert first == {"refreshed": enabled, "failed": 0, "skipped": 0}
    second = _run(app, "catalog_refresh", "s2")
    assert second == {"refreshed": 0, "failed": 0, "skipped": enabled}

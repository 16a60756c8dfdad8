"""The clock process: job discovery, slots, claims, and the command that runs a job now."""

import subprocess
import sys
from datetime import datetime, timedelta

import gevent

from common.db import fetch_all
from jobs.registry import Job, all_jobs, run_claimed
from tests.conftest import make_app
from tests.live_server import REPO


def _counting_job(counter: list) -> Job:
    def run(app):
        counter.append(1)
        gevent.sleep(0.05)  # long enough for a racing clock to try the same slot meanwhile
        return {"counted": len(counter)}

    return Job("counting", 60, run)


def test_every_job_module_is_discovered():
    names = set(all_jobs())
    assert {"heartbeat", "auth_cleanup"} <= names


def test_slot_is_the_aligned_scheduled_time():
    job = Job("x", 3600, lambda app: {}, offset_seconds=300)
    assert job.slot_for(datetime(2026, 1, 2, 10, 4, 59)) == "2026-01-02T09:05:00"
    assert job.slot_for(datetime(2026, 1, 2, 10, 5, 0)) == "2026-01-02T10:05:00"


def test_two_clocks_run_one_slot_exactly_once(tmp_path):
    first = make_app(tmp_path / "data")
    second = make_app(tmp_path / "data")  # a second clock process on the same database
    counter: list = []
    job = _counting_job(counter)
    results = gevent.joinall([gevent.spawn(run_claimed, app, job, "2026-01-01T00:00:00") for app in (first, second)])
    assert counter == [1]
    assert sorted(g.value is None for g in results) == [False, True]
    with first.app_context():
        rows = fetch_all(first.extensions["parley.db"], "SELECT * FROM job_runs WHERE job = 'counting'")
    assert len(rows) == 1 and rows[0]["status"] == "done"


def test_a_restarted_clock_does_not_rerun_a_finished_slot(tmp_path):
    app = make_app(tmp_path / "data")
    counter: list = []
    job = _counting_job(counter)
    run_claimed(app, job, "2026-01-01T00:00:00")
    restarted = make_app(tmp_path / "data")
    assert run_claimed(restarted, job, "2026-01-01T00:00:00") is None
    assert counter == [1]


def test_a_failing_job_is_recorded_as_error_and_does_not_raise(tmp_path):
    app = make_app(tmp_path / "data")

    def broken(_app):
        raise RuntimeError("boom")

    assert run_claimed(app, Job("broken", 60, broken), "s1") == {"error": "RuntimeError: boom"}
    rows = fetch_all(app.extensions["parley.db"], "SELECT status, summary FROM job_runs WHERE job = 'broken'")
    assert rows[0]["status"] == "error" and "boom" in rows[0]["summary"]


def test_auth_cleanup_prunes_expired_revocations(tmp_path):
    app = make_app(tmp_path / "data")
    db = app.extensions["parley.db"]
    with db as tx:
        tx["revoked_tokens"].insert({"jti": "old", "expires_at": datetime(2000, 1, 1)})
        tx["revoked_tokens"].insert({"jti": "live", "expires_at": datetime.now() + timedelta(days=1)})
    summary = run_claimed(app, all_jobs()["auth_cleanup"], "s1")
    assert summary["revoked_tokens_pruned"] == 1
    assert [r["jti"] for r in fetch_all(db, "SELECT jti FROM revoked_tokens")] == ["live"]


def test_python_m_jobs_run_runs_a_job_now(tmp_path):
    env = {"DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin", "LOG_LEVEL": "WARNING"}
    result = subprocess.run([sys.executable, "-m", "jobs", "run", "heartbeat"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "'alive': True" in result.stdout


def test_python_m_jobs_run_refuses_an_unknown_job(tmp_path):
    env = {"DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "jobs", "run", "nope"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "unknown job" in result.stderr

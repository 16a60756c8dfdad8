"""Heartbeat: proves the clock is alive (its job_runs rows show when it last ran) and prunes old rows."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask

from common.db import execute, utcnow
from jobs.registry import Job

KEEP_RUNS_DAYS = 14


def run(app: Flask) -> dict:
    db = app.extensions["parley.db"]
    with db as tx:
        pruned = execute(
            tx,
            "DELETE FROM job_runs WHERE started_at < :cutoff AND status <> 'running'",
            cutoff=utcnow() - timedelta(days=KEEP_RUNS_DAYS),
        )
    return {"alive": True, "pruned_job_runs": pruned}


JOB = Job("heartbeat", 60, run, description="clock liveness; prunes job_runs older than 14 days")

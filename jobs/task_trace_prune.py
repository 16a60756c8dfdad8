"""Task trace prune: delete traces older than `task_trace_retention_days`, and mark traces left
`running` by a process that died as `interrupted`. Idempotent: a second run finds nothing to do."""

from __future__ import annotations

from flask import Flask

from common import task_trace
from jobs.registry import Job


def run(app: Flask) -> dict:
    """Prune old traces; returns what changed."""
    db = app.extensions["parley.db"]
    days = app.extensions["parley.settings"].get("task_trace_retention_days")
    interrupted = task_trace.mark_interrupted(db)
    pruned = task_trace.delete_older_than(db, days)
    return {"retention_days": days, "traces_pruned": pruned, "traces_interrupted": interrupted}


JOB = Job(
    "task_trace_prune",
    86400,
    run,
    offset_seconds=3 * 3600 + 1200,
    description="deletes task traces older than task_trace_retention_days",
)

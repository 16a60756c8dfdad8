"""Stream sweep: generations whose worker died or went silent (on any machine) become `interrupted`;
replay logs of generations finished more than 10 minutes ago and rows of long-gone workers are pruned
(a re-attach to such an answer gets a snapshot of the saved message instead of the replay)."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask

from common.chat.recovery import recover_orphans
from common.db import execute, utcnow
from jobs.registry import Job

KEEP_EVENTS_AFTER_FINISH = timedelta(minutes=10)
KEEP_IDLE_WORKERS = timedelta(days=1)


def run(app: Flask) -> dict:
    db = app.extensions["parley.db"]
    interrupted = recover_orphans(db.engine)
    now = utcnow()
    with db as tx:
        events = execute(
            tx,
            "DELETE FROM generation_events WHERE message_id IN (SELECT message_id FROM generations "
            "WHERE state <> 'running' AND finished_at IS NOT NULL AND finished_at < :cutoff)",
            cutoff=now - KEEP_EVENTS_AFTER_FINISH,
        )
        workers = execute(
            tx,
            "DELETE FROM workers WHERE heartbeat_at < :cutoff AND NOT EXISTS "
            "(SELECT 1 FROM generations g WHERE g.worker = workers.id AND g.state = 'running')",
            cutoff=now - KEEP_IDLE_WORKERS,
        )
    return {"interrupted": interrupted, "event_batches_pruned": events, "workers_pruned": workers}


JOB = Job("stream_sweep", 60, run, offset_seconds=30, description="interrupts orphaned generations; prunes replay logs")

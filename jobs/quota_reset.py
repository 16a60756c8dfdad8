"""Quota reset, at 00:00 UTC: counters of a past day start the new day at 0 (requests reset them lazily
too; this keeps snapshots and reports exact), and counters nobody will use again are pruned: visitors
gone longer than the retention, addresses not seen as long, and deleted users."""

from __future__ import annotations

from flask import Flask

from common.anonymous import retention_cutoff
from common.db import execute, utcnow
from common.quota import ADDRESS, ANON, USER, today
from jobs.registry import Job


def run(app: Flask) -> dict:
    db = app.extensions["parley.db"]
    cutoff = retention_cutoff(app.extensions["parley.settings"].get("anonymous_retention_days"))
    day, now = today(), utcnow()
    with db as tx:
        pruned = execute(
            tx,
            "DELETE FROM quota_counters WHERE day < :day AND ("
            "(scope = :anon AND updated_at < :cutoff AND NOT EXISTS (SELECT 1 FROM anonymous_visitors v "
            " WHERE v.anon_key = quota_counters.identifier AND v.last_seen_at >= :cutoff)) "
            "OR (scope = :addr AND updated_at < :cutoff) "
            "OR (scope = :user AND NOT EXISTS (SELECT 1 FROM users u "
            " WHERE CAST(u.id AS VARCHAR(20)) = quota_counters.identifier)))",
            day=day, cutoff=cutoff, anon=ANON, addr=ADDRESS, user=USER,
        )
        reset = execute(
            tx, "UPDATE quota_counters SET used = 0, day = :day, last_reset_at = :now WHERE day < :day",
            day=day, now=now,
        )
    return {"day": day, "counters_reset": reset, "counters_pruned": pruned}


JOB = Job("quota_reset", 86400, run, offset_seconds=0, description="daily quota counters start at 0 (00:00 UTC)")

"""Auth cleanup: forget revocations of tokens that have expired anyway, and stale login throttles."""

from __future__ import annotations

from flask import Flask

from common.auth import throttle
from common.auth.tokens import prune_revoked
from jobs.registry import Job


def run(app: Flask) -> dict:
    db = app.extensions["parley.db"]
    window = app.config["PARLEY"].login_lockout_seconds
    return {"revoked_tokens_pruned": prune_revoked(db), "login_throttles_pruned": throttle.prune(db, window)}


JOB = Job("auth_cleanup", 3600, run, offset_seconds=300, description="prunes expired revocations and throttles")

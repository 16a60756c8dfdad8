"""Anonymous retention: deletes the data (sessions and messages, usage, shares, every owned table) of
visitors inactive for longer than `anonymous_retention_days`, and their visitor rows."""

from __future__ import annotations

from flask import Flask

from common.anonymous import cleanup
from jobs.registry import Job


def run(app: Flask) -> dict:
    retention = app.extensions["parley.settings"].get("anonymous_retention_days")
    return cleanup(app.extensions["parley.db"], retention)


JOB = Job("anonymous_cleanup", 3600, run, offset_seconds=900, description="deletes expired anonymous visitors' data")

"""The Job type, job discovery, slot computation and the claimed run."""

from __future__ import annotations

import importlib
import json
import logging
import os
import pkgutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import dataset
from flask import Flask
from sqlalchemy.exc import IntegrityError

from common.db import execute, release, utcnow

log = logging.getLogger("parley.jobs")
EPOCH = datetime(1970, 1, 1)
NOT_JOB_MODULES = {"registry", "clock", "__main__"}


@dataclass(frozen=True)
class Job:
    """A maintenance job that runs every `period_seconds`, aligned to the epoch plus `offset_seconds`.

    `run(app)` does the work inside an app context and returns a summary of what it changed.
    """

    name: str
    period_seconds: int
    run: Callable[[Flask], dict]
    offset_seconds: int = 0
    description: str = ""

    def slot_for(self, moment: datetime) -> str:
        """The scheduled slot a run at `moment` belongs to (the same for every clock process)."""
        elapsed = (moment - EPOCH).total_seconds() - self.offset_seconds
        start = EPOCH + timedelta(seconds=self.offset_seconds + (elapsed // self.period_seconds) * self.period_seconds)
        return start.isoformat(timespec="seconds")


def all_jobs() -> dict[str, Job]:
    """Every job module's JOB, by name."""
    import jobs

    found = {}
    for info in pkgutil.iter_modules(jobs.__path__):
        if info.name in NOT_JOB_MODULES:
            continue
        module = importlib.import_module(f"jobs.{info.name}")
        job = getattr(module, "JOB", None)
        if isinstance(job, Job):
            found[job.name] = job
    return found


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(db: dataset.Database, job: Job, slot: str) -> bool:
    """Record that this process runs `job` for `slot`; False when another process already did."""
    try:
        with db as tx:
            execute(
                tx,
                "INSERT INTO job_runs (job, slot, owner, started_at, status) VALUES (:j, :s, :o, :now, 'running')",
                j=job.name,
                s=slot,
                o=owner_id(),
                now=utcnow(),
            )
        return True
    except IntegrityError:
        release(db)
        return False


def run_claimed(app: Flask, job: Job, slot: str) -> dict | None:
    """Run `job` for `slot` unless another process claimed it; returns the summary or None."""
    db = app.extensions["parley.db"]
    try:
        if not claim(db, job, slot):
            log.info("job %s slot %s already claimed elsewhere: skipped", job.name, slot)
            return None
        status, summary = "done", {}
        try:
            with app.app_context():
                summary = job.run(app) or {}
        except Exception as exc:
            status, summary = "error", {"error": f"{type(exc).__name__}: {exc}"}
            log.exception("job %s slot %s failed", job.name, slot)
        with db as tx:
            execute(
                tx,
                "UPDATE job_runs SET finished_at = :now, status = :st, summary = :sum WHERE job = :j AND slot = :s",
                now=utcnow(),
                st=status,
                sum=json.dumps(summary, default=str)[:4000],
                j=job.name,
                s=slot,
            )
        log.info("job %s slot %s %s: %s", job.name, slot, status, json.dumps(summary, default=str))
        return summary
    finally:
        release(db)

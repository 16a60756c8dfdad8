"""The clock: a BlockingScheduler in UTC that fires each job at its aligned slots."""

from __future__ import annotations

import logging
from datetime import UTC, timedelta

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger
from flask import Flask

from common.db import utcnow
from jobs.registry import EPOCH, Job, all_jobs, run_claimed

log = logging.getLogger("parley.jobs")


def _fire(app: Flask, job: Job) -> None:
    run_claimed(app, job, job.slot_for(utcnow()))


def build_scheduler(app: Flask) -> BlockingScheduler:
    """A scheduler with one trigger per job, aligned to the epoch so every clock agrees on slots."""
    scheduler = BlockingScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1})
    for job in all_jobs().values():
        start = (EPOCH + timedelta(seconds=job.offset_seconds)).replace(tzinfo=UTC)
        trigger = IntervalTrigger(seconds=job.period_seconds, start_date=start, timezone="UTC")
        scheduler.add_job(_fire, trigger, args=[app, job], id=job.name, name=job.name, misfire_grace_time=300)
    return scheduler


def run_clock(app: Flask) -> None:
    """Run the scheduler until interrupted."""
    scheduler = build_scheduler(app)
    log.info("clock starting with jobs: %s", ", ".join(job.id for job in scheduler.get_jobs()))
    scheduler.start()

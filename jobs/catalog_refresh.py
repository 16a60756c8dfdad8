"""Catalog refresh: re-fetches the model lists of connections whose cached catalog expired."""

from __future__ import annotations

from flask import Flask

from common.catalog import refresh_all
from jobs.registry import Job


def run(app: Flask) -> dict:
    return refresh_all(app)


JOB = Job("catalog_refresh", 600, run, offset_seconds=120, description="refreshes expired model catalogs")

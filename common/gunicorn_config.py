"""gunicorn settings (`gunicorn -c python:common.gunicorn_config wsgi:app`).

Defaults come from `common.config` (PORT, WEB_CONCURRENCY, WORKER_CONNECTIONS); command-line flags,
as in the Procfile, override them. The master migrates the database once before forking workers.
"""

from __future__ import annotations

import logging
from pathlib import Path

from common.config import load_config

_config = load_config()  # fails fast, in the master, on a missing production secret

bind = f"0.0.0.0:{_config.port}"
workers = _config.web_concurrency
worker_class = "gevent"
worker_connections = _config.worker_connections  # a hard cap of connections (SSE streams) per worker
keepalive = 5
graceful_timeout = 30
timeout = 120
control_socket_disable = True
accesslog = None  # the app writes one line per request itself
loglevel = _config.log_level.lower()


def on_starting(server) -> None:  # noqa: ARG001 - gunicorn hook signature
    """Apply migrations once in the master, so workers start on an up-to-date schema."""
    import sqlalchemy as sa

    from common.migrations import migrate

    Path(_config.data_dir).mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(_config.effective_database_url)
    try:
        applied = migrate(engine)
        if applied:
            logging.getLogger("parley").info("migrations applied: %s", applied)
    finally:
        engine.dispose()

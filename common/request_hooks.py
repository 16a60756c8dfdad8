"""What runs around every request: timing and the one log line, cookie upkeep, releasing the
database connection."""

from __future__ import annotations

import logging
import time

from flask import Flask, current_app, g, request

from common.auth.cookies import clear_token_cookie, set_anon_cookie
from common.db import release

log = logging.getLogger("parley.request")


def _start_timer() -> None:
    g.started_at = time.perf_counter()


def _finish(response):
    if g.get("clear_token_cookie"):
        clear_token_cookie(response)
    anon_key = g.get("anon_cookie")
    if anon_key and not g.get("anon_cookie_cleared"):
        retention = current_app.extensions["parley.settings"].get("anonymous_retention_days")
        set_anon_cookie(response, anon_key, retention)
    actor = g.get("actor")
    elapsed_ms = (time.perf_counter() - g.get("started_at", time.perf_counter())) * 1000
    # Path only: query strings can carry signed-URL tokens. Never headers or bodies.
    log.info(
        "%s %s %s %.1fms actor=%s",
        request.method,
        request.path,
        response.status_code,
        elapsed_ms,
        actor.identifier if actor and actor.is_user else ("anon" if actor else "-"),
    )
    return response


def _release_connection(_exc: BaseException | None) -> None:
    release(current_app.extensions["parley.db"])


def register_request_hooks(app: Flask) -> None:
    """Install the timing, logging, cookie and connection-release hooks."""
    app.before_request(_start_timer)
    app.after_request(_finish)
    app.teardown_request(_release_connection)

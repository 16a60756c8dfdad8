"""What runs around every request: timing and the one log line, the body gate, cookie upkeep,
releasing the database connection.

The body gate (security.md item 4): every `/api` body is a JSON object. Before any handler runs, a
state-changing `/api` request with a body over the size limit is refused (413, without reading it),
and a body that is not a JSON object (wrong content type 415, invalid UTF-8 or JSON, an array, a
string, null: 400) is refused on every route, also on routes that ignore their body. Browsers can
send text/plain and form bodies across origins without a preflight, so refusing them also closes
that door. A view that needs more marks itself with `@accepts_body(large=True)` (MAX_UPLOAD_BODY_BYTES,
e.g. chat with images) or `@accepts_body(form=True)` (multipart or urlencoded forms).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from flask import Flask, current_app, g, request
from werkzeug.routing import IntegerConverter

from common.anonymous import note_request_activity
from common.auth.cookies import clear_token_cookie, set_anon_cookie
from common.db import release
from common.errors import TooLarge
from common.validation import MAX_ID, json_body

log = logging.getLogger("parley.request")
F = TypeVar("F", bound=Callable)
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class IdConverter(IntegerConverter):
    """`<int:id>` that only matches ids a database column can hold, so `/api/users/99999999999999999999`
    is a 404 instead of an overflow error (500) in the driver."""

    def __init__(self, map, *args, **kwargs) -> None:
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def accepts_body(*, large: bool = False, form: bool = False) -> Callable[[F], F]:
    """Mark a view whose body may be larger (up to MAX_UPLOAD_BODY_BYTES) or a form instead of JSON."""

    def mark(view: F) -> F:
        view.parley_large_body = large  # type: ignore[attr-defined]
        view.parley_form_body = form  # type: ignore[attr-defined]
        return view

    return mark


def _gate_body() -> None:
    if request.method not in UNSAFE_METHODS or request.routing_exception is not None:
        return  # unknown routes answer 404/405 first
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, "parley_large_body", False):
        request.max_content_length = current_app.config["PARLEY"].max_upload_body_bytes
    limit = request.max_content_length
    if limit is not None and request.content_length is not None and request.content_length > limit:
        raise TooLarge("Request body is too large", code="payload_too_large")
    if request.path.startswith("/api/") and not getattr(view, "parley_form_body", False):
        json_body(required=False)  # parsed once here; handlers get the cached value


def _start_timer() -> None:
    g.started_at = time.perf_counter()


def _finish(response):
    if g.get("clear_token_cookie"):
        clear_token_cookie(response)
    anon_key = g.get("anon_cookie")
    if anon_key and not g.get("anon_cookie_cleared"):
        retention = current_app.extensions["parley.settings"].get("anonymous_retention_days")
        set_anon_cookie(response, anon_key, retention)
    note_request_activity()  # extends the visitor's retention (throttled)
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
    """Install the timing, logging, body gate, cookie and connection-release hooks.

    Also bounds `<int:...>` route ids (the rules are compiled when blueprints are registered, which
    the app factory does after this)."""
    app.url_map.converters["int"] = IdConverter
    app.before_request(_start_timer)
    app.before_request(_gate_body)
    app.after_request(_finish)
    app.teardown_request(_release_connection)

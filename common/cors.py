"""CORS headers and the cross-site check for cookie-authenticated writes.

`ENABLE_CORS` (default on) and `CORS_ORIGIN` (comma-separated origins; empty means `*`, and then
credentials are not allowed). A state-changing request that authenticates by cookie and comes from
an origin that is neither this site nor an allowed one is refused (security.md item 7).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, current_app, request

from common.auth.actors import bearer_token
from common.errors import Forbidden

ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = "Content-Type, Authorization, Cache-Control, Last-Event-ID, Idempotency-Key"
EXPOSE_HEADERS = "Retry-After, Content-Disposition"
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def allowed_origins() -> list[str]:
    """The configured origins ([] means any origin, without credentials)."""
    raw = current_app.config["PARLEY"].cors_origin
    return [o.strip().rstrip("/") for o in raw.split(",") if o.strip()]


def _add_cors_headers(response: Response) -> Response:
    config = current_app.config["PARLEY"]
    origin = request.headers.get("Origin")
    if not config.enable_cors or not origin:
        return response
    origins = allowed_origins()
    if not origins:
        response.headers["Access-Control-Allow-Origin"] = "*"
    elif origin.rstrip("/") in origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers.add("Vary", "Origin")
    else:
        return response
    response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
        response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
    return response


def _is_same_site(origin: str) -> bool:
    """True when the Origin names this host (and port). The scheme is not compared: behind a proxy that
    ends TLS the app sees http while the browser's Origin says https."""
    try:
        theirs = urlsplit(origin)
        ours = urlsplit("//" + request.host)
        their_port, our_port = theirs.port, ours.port
    except ValueError:
        return False
    if theirs.scheme not in ("http", "https") or not theirs.hostname or theirs.hostname != ours.hostname:
        return False
    return their_port == our_port  # both None: the default port of the scheme the browser used


def _check_cross_site_write() -> None:
    # A bearer token authenticates the request by itself (cookies are then ignored); any other
    # Authorization header leaves the cookie in charge, so it must not skip the check.
    if request.method not in UNSAFE_METHODS or bearer_token() is not None:
        return None
    if not (request.cookies.get("token") or request.cookies.get("anon_key")):
        return None
    origin = request.headers.get("Origin")
    if origin is None:  # not a browser cross-site request (browsers send Origin on cross-site writes)
        return None
    if _is_same_site(origin) or origin.rstrip("/") in allowed_origins():
        return None
    raise Forbidden("Cross-site request refused", code="cross_site_request")


def register_cors(app: Flask) -> None:
    """Install the preflight answer, the cross-site check and the CORS response headers."""
    app.before_request(_check_cross_site_write)
    app.after_request(_add_cors_headers)

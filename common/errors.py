"""The response envelope and the errors every handler raises.

Success: `{"success": true, "data": ..., "message"?: ...}`.
Failure: `{"success": false, "error": "<text>", "code"?: "<machine code>", "data"?: ...}`.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from common.db import is_transient_error

log = logging.getLogger(__name__)
DATABASE_RETRY_AFTER_SECONDS = 1


class ApiError(Exception):
    """An error with an HTTP status that is shown to the client in the envelope."""

    status = 400
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.data = data
        self.headers = headers or {}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class TooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class Locked(ApiError):
    status, code = 423, "account_pending"


class TooManyRequests(ApiError):
    status, code = 429, "rate_limited"


class ServiceUnavailable(ApiError):
    status, code = 503, "service_unavailable"


class ValidationFailed(ApiError):
    status, code = 400, "validation_error"

    def __init__(self, fields: dict[str, list[str]], message: str = "Validation failed") -> None:
        first = next(iter(fields.items()), None)
        if first:
            message = f"{message}: {first[0]}: {first[1][0]}"
        super().__init__(message, data={"fields": fields})


def ok(data: Any = None, message: str | None = None, status: int = 200):
    """A success envelope response."""
    body: dict[str, Any] = {"success": True, "data": data}
    if message:
        body["message"] = message
    return jsonify(body), status


def error_body(message: str, code: str | None = None, data: Any = None) -> dict[str, Any]:
    """The failure envelope as a dict (also used inside SSE error frames)."""
    body: dict[str, Any] = {"success": False, "error": message}
    if code:
        body["code"] = code
    if data is not None:
        body["data"] = data
    return body


def _error_response(status: int, message: str, code: str | None = None, data: Any = None, headers=None):
    response = jsonify(error_body(message, code, data))
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def register_error_handlers(app: Flask) -> None:
    """Turn every error, including Werkzeug's and unexpected ones, into the envelope."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return _error_response(exc.status, exc.message, exc.code, exc.data, exc.headers)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge):
        return _error_response(413, "Request body is too large", "payload_too_large")

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        if status == 404:
            return _error_response(404, f"Route {request.method} {request.path} not found", "route_not_found")
        if status == 405:
            allow = {name: value for name, value in exc.get_headers() if name == "Allow"}
            message = f"Method {request.method} not allowed for {request.path}"
            return _error_response(405, message, "method_not_allowed", headers=allow)
        return _error_response(status, exc.description or exc.name, exc.name.lower().replace(" ", "_"))

    @app.errorhandler(sa.exc.DBAPIError)
    def _database_error(exc: sa.exc.DBAPIError):
        if not is_transient_error(exc):
            return _unexpected(exc)
        log.warning("database busy or unreachable on %s %s: %s", request.method, request.path, exc.orig)
        return _error_response(503, "The database is busy; try again in a moment", "database_busy",
                               headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)})

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error_response(500, "Internal server error", "internal_error")

"""Request parsing and marshmallow validation that always ends in a 4xx envelope, never a 500."""

from __future__ import annotations

import functools
import json
from typing import Any

from flask import g, request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from common.errors import BadRequest, UnsupportedMediaType, ValidationFailed


def json_body(*, required: bool = True) -> dict[str, Any]:
    """The request's JSON object body.

    415 for a non-JSON content type, 400 for invalid UTF-8 or JSON or a top level that is not an
    object. With required=False an empty body is read as `{}`.
    """
    cached = g.get("parley_json_body")
    if cached is not None:  # already parsed by the body gate (common.request_hooks)
        return cached
    raw = request.get_data(cache=True)  # bounded by MAX_CONTENT_LENGTH before it is read
    if not raw.strip():
        if required:
            raise BadRequest("Request body must be a JSON object", code="invalid_json")
        return {}
    if not request.mimetype or request.mimetype.split(";")[0] not in ("application/json",):
        if not request.mimetype.endswith("+json"):
            raise UnsupportedMediaType("Content-Type must be application/json")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("Request body is not valid UTF-8", code="invalid_json") from exc
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequest("Request body is not valid JSON", code="invalid_json") from exc
    if not isinstance(value, dict):
        raise BadRequest("Request body must be a JSON object", code="invalid_json")
    g.parley_json_body = value
    return value


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def flatten_errors(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested error dict as `{"a.b": ["message", ...]}`."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == "_schema" and prefix:
                name = prefix
            out.update(flatten_errors(value, name))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        out[prefix or "_schema"] = list(messages)
    elif isinstance(messages, list):
        for index, value in enumerate(messages):
            out.update(flatten_errors(value, f"{prefix}.{index}" if prefix else str(index)))
    else:
        out[prefix or "_schema"] = [str(messages)]
    return out


@functools.cache
def _shared_instance(schema_class: type[Schema]) -> Schema:
    return schema_class()


def load(schema: type[Schema] | Schema, data: Any) -> dict[str, Any]:
    """Validate `data` with a marshmallow schema; 400 `validation_error` with per-field messages.

    Given a schema class, one instance per class is kept and reused: building a schema deep-copies
    its fields, which cost more than the validation itself (loading keeps no state on the instance)."""
    if isinstance(schema, type):
        schema = _shared_instance(schema)
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise ValidationFailed(flatten_errors(exc.messages)) from exc


def load_body(schema: type[Schema] | Schema, *, required: bool = True) -> dict[str, Any]:
    """Parse the JSON body and validate it with `schema`."""
    return load(schema, json_body(required=required))


def load_args(schema: type[Schema] | Schema) -> dict[str, Any]:
    """Validate the query string with `schema` (repeated keys: the first value; a blank value counts as
    absent, since client screens send every filter, empty when unset)."""
    return load(schema, {key: value for key, value in request.args.items() if value.strip()})


class RequestSchema(Schema):
    """Base for request bodies: unknown keys are ignored (clients send extra fields freely)."""

    class Meta:
        unknown = EXCLUDE


class StrictString(fields.String):
    """A string that is really a string (no numbers coerced), without NUL characters."""

    default_error_messages = {"invalid": "Not a valid string.", "nul": "Must not contain NUL characters."}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise self.make_error("invalid")
        if "\x00" in value:
            raise self.make_error("nul")
        return super()._deserialize(value, attr, data, **kwargs)


class OptionalEmail(StrictString):
    """An optional email address: blank means none (forms send ""), otherwise a valid address, lowercased."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not text:
            return None
        validate.Length(max=320)(text)
        validate.Email()(text)
        return text.lower()


class StrictInteger(fields.Integer):
    """An integer that rejects booleans and numeric strings in JSON bodies."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


MAX_ID = 2**31 - 1  # ids are INTEGER columns: larger values are refused before they reach the database


class IdField(StrictInteger):
    """A row id in a JSON body: a strict integer from 1 to MAX_ID."""

    def __init__(self, **kwargs):
        super().__init__(validate=validate.Range(min=1, max=MAX_ID), **kwargs)


class QueryId(fields.Integer):
    """A row id in the query string."""

    def __init__(self, **kwargs):
        super().__init__(validate=validate.Range(min=1, max=MAX_ID), **kwargs)


class StrictBoolean(fields.Boolean):
    """A JSON boolean only: no "yes", 1 or "true" strings."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class QueryInteger(fields.Integer):
    """An integer from the query string (where every value is text)."""


def page_args(max_limit: int = 100, default_limit: int = 20) -> Schema:
    """A schema for `?page&limit` pagination."""
    return RequestSchema.from_dict(
        {
            "page": QueryInteger(load_default=1, validate=validate.Range(min=1, max=1_000_000)),
            "limit": QueryInteger(load_default=default_limit, validate=validate.Range(min=1, max=max_limit)),
        }
    )()


def pagination(page: int, limit: int, total: int) -> dict[str, int]:
    """The pagination block used by every listing."""
    return {"page": page, "limit": limit, "total": total, "totalPages": (total + limit - 1) // limit}

"""Admin overrides per model (``connection_id`` + ``raw_id``): tags, capabilities, context window, max
output tokens, temperature and the access policy (anonymous / user: allow | deny | inherit).

An override may exist before the model appears in the catalog (configure first, fetch later).
Only the fields a request sends are changed; ``null`` clears a field back to "not overridden".
"""

from __future__ import annotations

import json
from typing import Any

import dataset
from marshmallow import ValidationError, fields, pre_load, validate

from common.catalog import public_model_id
from common.connection_schema import MAX_ID, CapabilityMap, TagList
from common.db import execute, fetch_all, fetch_one, iso, utcnow
from common.validation import RequestSchema, StrictInteger, StrictString

ACCESS = ("allow", "deny", "inherit")
_CAMEL = {
    "contextWindow": "context_window",
    "maxOutputTokens": "max_output_tokens",
    "accessPolicy": "access_policy",
}


class StrictNumber(fields.Float):
    """A JSON number (no booleans, no numeric strings)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError("Not a valid number.")
        try:
            return float(value)
        except OverflowError:
            raise ValidationError("Number out of range.") from None


class AccessPolicySchema(RequestSchema):
    anonymous = StrictString(validate=validate.OneOf(ACCESS))
    user = StrictString(validate=validate.OneOf(ACCESS))


class ModelRefSchema(RequestSchema):
    """Which model: ``{connectionId, rawId}``."""

    connection_id = StrictInteger(data_key="connectionId", required=True, validate=validate.Range(min=1, max=MAX_ID))
    raw_id = StrictString(data_key="rawId", required=True, validate=validate.Length(min=1, max=300))


class OverrideSchema(ModelRefSchema):
    """PUT /api/catalog/models/tags."""

    tags = TagList(allow_none=True)
    capabilities = CapabilityMap(allow_none=True)
    context_window = StrictInteger(allow_none=True, validate=validate.Range(min=1, max=100_000_000))
    max_output_tokens = StrictInteger(allow_none=True, validate=validate.Range(min=1, max=100_000_000))
    temperature = StrictNumber(allow_none=True, validate=validate.Range(min=0.0, max=2.0))
    access_policy = fields.Nested(AccessPolicySchema)

    @pre_load
    def _camel(self, data: Any, **_kwargs: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for camel, snake in _CAMEL.items():
                if camel in data and snake not in data:
                    data[snake] = data.pop(camel)
        return data


def get_override(db: dataset.Database, connection_id: int, raw_id: str) -> dict | None:
    """The override row of one model, or None."""
    return fetch_one(
        db, "SELECT * FROM model_overrides WHERE connection_id = :c AND raw_id = :r", c=connection_id, r=raw_id
    )


def save_override(db: dataset.Database, data: dict) -> dict:
    """Create or change one model's override with the fields present in ``data``; returns the row."""
    now = utcnow()
    values: dict[str, Any] = {}
    for name in ("context_window", "max_output_tokens", "temperature"):
        if name in data:
            values[name] = data[name]
    for name in ("tags", "capabilities"):
        if name in data:
            values[name] = None if data[name] is None else json.dumps(data[name])
    policy = data.get("access_policy") or {}
    if "anonymous" in policy:
        values["access_anonymous"] = policy["anonymous"]
    if "user" in policy:
        values["access_user"] = policy["user"]
    key = {"c": data["connection_id"], "r": data["raw_id"]}
    with db as tx:
        execute(
            tx,
            "INSERT INTO model_overrides (connection_id, raw_id, access_anonymous, access_user, created_at, "
            "updated_at) VALUES (:c, :r, 'inherit', 'inherit', :n, :n) ON CONFLICT (connection_id, raw_id) DO NOTHING",
            n=now,
            **key,
        )
        assignments = ", ".join(f"{name} = :v_{name}" for name in values)
        execute(
            tx,
            f"UPDATE model_overrides SET {assignments + ', ' if assignments else ''}updated_at = :n "
            "WHERE connection_id = :c AND raw_id = :r",
            n=now,
            **key,
            **{f"v_{name}": value for name, value in values.items()},
        )
    row = get_override(db, data["connection_id"], data["raw_id"])
    assert row is not None
    return row


def delete_override(db: dataset.Database, connection_id: int, raw_id: str) -> bool:
    """Remove one model's override; False when there was none."""
    with db as tx:
        count = execute(
            tx, "DELETE FROM model_overrides WHERE connection_id = :c AND raw_id = :r", c=connection_id, r=raw_id
        )
    return count > 0


def list_overrides(db: dataset.Database, user_id: int | None) -> list[dict]:
    """Overrides of system connections (and of ``user_id``'s own personal ones), with the connection."""
    return fetch_all(
        db,
        "SELECT o.*, c.prefix_id AS c_prefix_id, c.display_name AS c_display_name, c.provider AS c_provider "
        "FROM model_overrides o JOIN connections c ON c.id = o.connection_id "
        "WHERE c.owner_user_id IS NULL OR c.owner_user_id = :uid ORDER BY o.connection_id, o.raw_id",
        uid=user_id or -1,
    )


def _json(text: Any) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def override_shape(row: dict, prefix_id: str | None = None) -> dict:
    """An override as the admin API returns it (snake_case keys, as the request uses)."""
    tags = _json(row.get("tags"))
    return {
        "id": public_model_id(row.get("c_prefix_id", prefix_id), row["raw_id"]),
        "connectionId": row["connection_id"],
        "rawId": row["raw_id"],
        "channelName": row.get("c_display_name"),
        "tags": None if tags is None else [{"name": t} for t in tags if isinstance(t, str)],
        "capabilities": _json(row.get("capabilities")),
        "context_window": row.get("context_window"),
        "max_output_tokens": row.get("max_output_tokens"),
        "temperature": row.get("temperature"),
        "access_policy": {"anonymous": row["access_anonymous"], "user": row["access_user"]},
        "updatedAt": iso(row.get("updated_at")),
    }

"""Export and import of connections (``GET /api/connections/export``, ``POST /api/connections/import``).

Export: admins export the system connections, users their own personal ones. Keys are masked;
only an admin asking for ``includeSecrets=1`` gets the decrypted secrets (a key that cannot be
decrypted is exported masked and counted in ``skippedKeys``).

Import: every entry is validated and its base URL checked before anything is written. An entry
whose (owner, provider, base URL) matches an existing connection adds its new keys there (a
secret already stored is skipped as a duplicate; a key without a secret is skipped); otherwise a
connection is created (keys without secrets are created without one so their labels and model ids
survive; ``keysWithoutSecret`` counts them).
"""

from __future__ import annotations

from typing import Any

import dataset
from marshmallow import fields, validate

from common.auth.actors import Actor
from common.connection_ops import load_payload
from common.connection_schema import ConnectionSchema
from common.connections import (
    check_base_url,
    connection_shape,
    create_connection,
    invalidate_catalog,
    keys_for,
    new_key_values,
    outbound_policy_for,
)
from common.crypto import SecretDecryptError, decrypt_secret
from common.db import fetch_all, insert, iso, update, utcnow
from common.errors import Forbidden
from common.validation import RequestSchema, StrictInteger, load

SCHEMA_VERSION = 1
MAX_IMPORT = 200


class ImportSchema(RequestSchema):
    schema_version = StrictInteger(
        data_key="schemaVersion", load_default=SCHEMA_VERSION, validate=validate.Equal(SCHEMA_VERSION)
    )
    connections = fields.List(fields.Raw(), required=True, validate=validate.Length(max=MAX_IMPORT))


def _scope_rows(db: dataset.Database, owner: int | None) -> list[dict]:
    if owner is None:
        return fetch_all(db, "SELECT * FROM connections WHERE owner_user_id IS NULL ORDER BY id")
    return fetch_all(db, "SELECT * FROM connections WHERE owner_user_id = :o ORDER BY id", o=owner)


def export_connections(db: dataset.Database, actor: Actor, include_secrets: bool, material: str) -> dict:
    """The export document for ``actor`` (admins: system connections; users: their own)."""
    if include_secrets and not actor.is_admin:
        raise Forbidden("Only administrators can export API keys", code="admin_required")
    rows = _scope_rows(db, None if actor.is_admin else actor.user_id)
    keys = keys_for(db, [r["id"] for r in rows])
    skipped, reasons, out = 0, [], []
    for row in rows:
        shape = connection_shape(row, keys[row["id"]])
        for name in ("id", "ownerUserId", "createdAt", "updatedAt"):
            shape.pop(name, None)
        for key_row, key in zip(keys[row["id"]], shape["apiKeys"], strict=True):
            for name in ("id", "createdAt", "updatedAt"):
                key.pop(name, None)
            if include_secrets and key_row.get("secret_encrypted"):
                try:
                    key["apiKey"] = decrypt_secret(key_row["secret_encrypted"], material)
                except SecretDecryptError:
                    skipped += 1
                    reasons.append(f"{row['display_name']}: a key could not be decrypted")
        out.append(shape)
    return {
        "schemaVersion": SCHEMA_VERSION,
        "exportedAt": iso(utcnow()),
        "includesSecrets": bool(include_secrets),
        "connections": out,
        "skippedKeys": skipped,
        "skippedReasons": reasons,
    }


def _stored_secrets(keys: list[dict], material: str) -> set[str]:
    found = set()
    for key in keys:
        if key.get("secret_encrypted"):
            try:
                found.add(decrypt_secret(key["secret_encrypted"], material))
            except SecretDecryptError:
                continue
    return found


def import_connections(db: dataset.Database, actor: Actor, body: Any, material: str) -> dict:
    """Import an export document into ``actor``'s scope (admins: system; users: personal)."""
    document = load(ImportSchema, body)
    owner = None if actor.is_admin else actor.user_id
    entries = [
        load_payload(ConnectionSchema(), item, prefix=f"connections.{i}.", create=True)
        for i, item in enumerate(document["connections"])
    ]
    policy = outbound_policy_for({"owner_user_id": owner})
    for data in entries:
        check_base_url({**data, "owner_user_id": owner}, policy)
    result = {
        "createdGroups": 0,
        "updatedGroups": 0,
        "addedKeys": 0,
        "skippedKeys": 0,
        "keysWithoutSecret": 0,
        "skippedReasons": [],
    }
    for data in entries:
        existing = next(
            (
                r
                for r in _scope_rows(db, owner)
                if r["provider"] == data["provider"] and r["base_url"] == data["base_url"]
            ),
            None,
        )
        if existing is None:
            data = {**data, "prefix_id": _free_prefix(db, owner, data.get("prefix_id"))}
            create_connection(db, owner, data, material)
            result["createdGroups"] += 1
            result["addedKeys"] += sum(1 for k in data["api_keys"] if k.get("api_key"))
            result["keysWithoutSecret"] += sum(1 for k in data["api_keys"] if not k.get("api_key"))
            continue
        _merge_keys(db, existing, data, material, result)
    return result


def _free_prefix(db: dataset.Database, owner: int | None, prefix: str | None) -> str | None:
    """The prefix if still free in the owner's scope, else None (imports never fail on a clash)."""
    if not prefix:
        return None
    taken = {(r["prefix_id"] or "").lower() for r in _scope_rows(db, None)}
    if owner is not None:
        taken |= {(r["prefix_id"] or "").lower() for r in _scope_rows(db, owner)}
    return None if prefix.lower() in taken else prefix


def _merge_keys(db: dataset.Database, row: dict, data: dict, material: str, result: dict) -> None:
    present = _stored_secrets(keys_for(db, [row["id"]])[row["id"]], material)
    now = utcnow()
    new_keys = []
    for entry in data["api_keys"]:
        label = entry.get("label") or "(unlabelled)"
        if not entry.get("api_key"):
            result["skippedKeys"] += 1
            result["skippedReasons"].append(f"{row['display_name']}: key {label} has no secret")
        elif entry["api_key"] in present:
            result["skippedKeys"] += 1
            result["skippedReasons"].append(f"{row['display_name']}: key {label} is already stored")
        else:
            present.add(entry["api_key"])
            new_keys.append(new_key_values(entry, row["base_url"], material, now))
    result["updatedGroups"] += 1
    if not new_keys:
        return
    with db as tx:
        for key in new_keys:
            insert(tx, "connection_keys", {**key, "connection_id": row["id"]})
        update(tx, "connections", row["id"], {"updated_at": now})
        invalidate_catalog(tx, row["id"])
    result["addedKeys"] += len(new_keys)

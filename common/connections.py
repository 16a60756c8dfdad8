"""Connections (provider endpoints) and their API keys: storage, ownership, output shapes, and what a
request to a connection needs (a :class:`ProviderConfig` with the decrypted key, an outbound policy
and a shared guarded HTTP client).

Rules kept here:
- secrets are stored encrypted (``common.crypto``), returned only as masks (``sk-...3f9a``);
- a stored secret is bound to the normalized base URL it was saved for (``bound_base_url``) and is
  never used with another one: changing a connection's base URL while keeping a stored secret is
  refused (400 ``api_key_required``) - the client must enter the key again;
- system connections (``owner_user_id`` NULL) are managed by admins; personal connections only by
  their owner; everyone else gets 404.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any

import dataset
from flask import current_app, has_app_context

from common.auth.actors import Actor
from common.connection_schema import MAX_ID, normalize_base_url
from common.crypto import decrypt_secret, encrypt_secret, mask_parts, secret_last4, secret_prefix
from common.db import execute, fetch_all, fetch_one, insert, iso, update, utcnow
from common.errors import ApiError, Conflict, Forbidden, NotFound, ValidationFailed
from common.outbound import (
    OutboundBlocked,
    OutboundClient,
    OutboundPolicy,
    OutboundUnresolvable,
    check_url,
)
from common.providers import ProviderConfig

log = logging.getLogger(__name__)

__all__ = [
    "check_base_url",
    "connection_shape",
    "create_connection",
    "delete_connection",
    "get_connection",
    "http_client_for",
    "invalidate_catalog",
    "key_material",
    "keys_for",
    "list_manageable",
    "loads_json",
    "manageable_connection",
    "new_key_values",
    "normalize_base_url",
    "outbound_policy_for",
    "provider_config",
    "require_manager",
    "update_connection",
]

MAX_PERSONAL_CONNECTIONS = 20
FETCH_FIELDS = ("provider", "base_url", "auth_type", "headers", "azure_api_version")


def loads_json(text: Any, default: Any) -> Any:
    if text is None or text == "":
        return default
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return default
    return value if isinstance(value, type(default)) else default


def key_material() -> str:
    """The server's ENCRYPTION_KEY (inside an app context)."""
    return current_app.config["PARLEY"].encryption_key


# --------------------------------------------------------------------------------------------------
# Reading and ownership


def get_connection(db: dataset.Database, connection_id: int) -> dict | None:
    """A connection row by id, or None."""
    if not isinstance(connection_id, int) or not 0 < connection_id <= MAX_ID:
        return None
    return fetch_one(db, "SELECT * FROM connections WHERE id = :id", id=connection_id)


def keys_for(db: dataset.Database, connection_ids: list[int]) -> dict[int, list[dict]]:
    """The key rows of some connections, by connection id, oldest first."""
    out: dict[int, list[dict]] = {cid: [] for cid in connection_ids}
    if not connection_ids:
        return out
    marks = ", ".join(f":c{i}" for i in range(len(connection_ids)))
    params = {f"c{i}": cid for i, cid in enumerate(connection_ids)}
    for row in fetch_all(db, f"SELECT * FROM connection_keys WHERE connection_id IN ({marks}) ORDER BY id", **params):
        out.setdefault(row["connection_id"], []).append(row)
    return out


def require_manager(actor: Actor, settings: Any) -> None:
    """Admins manage system connections; users only their own, and only when personal connections are on."""
    if actor.is_admin:
        return
    if not actor.is_user:
        raise ApiError("Sign in to manage connections", status=401, code="auth_required")
    if not settings.get("personal_connections_enabled"):
        raise Forbidden("Personal connections are disabled by the administrator", code="personal_connections_disabled")


def manageable_connection(
    db: dataset.Database, actor: Actor, connection_id: int, *, personal_only: bool = False
) -> dict:
    """The connection if ``actor`` may manage it (admin: system ones; anyone: their own), else 404."""
    row = get_connection(db, connection_id)
    if row is not None:
        owner = row["owner_user_id"]
        system_ok = owner is None and actor.is_admin and not personal_only
        if system_ok or (owner is not None and actor.is_user and owner == actor.user_id):
            return row
    raise NotFound("Connection not found", code="connection_not_found")


def list_manageable(db: dataset.Database, actor: Actor, *, personal_only: bool = False) -> list[dict]:
    """The connections ``actor`` manages: admins the system ones (and their own), users their own."""
    if actor.is_admin and not personal_only:
        sql = "SELECT * FROM connections WHERE owner_user_id IS NULL OR owner_user_id = :uid ORDER BY id"
    else:
        sql = "SELECT * FROM connections WHERE owner_user_id = :uid ORDER BY id"
    return fetch_all(db, sql, uid=actor.user_id or -1)


# --------------------------------------------------------------------------------------------------
# Output


def key_shape(key: dict) -> dict:
    """One key as clients see it: never the secret, only its mask."""
    stored = bool(key.get("secret_encrypted"))
    return {
        "id": key["id"],
        "apiKeyLabel": key.get("label"),
        "apiKeyMasked": mask_parts(key.get("secret_prefix"), key.get("secret_last4")) if stored else None,
        "hasStoredApiKey": stored,
        "modelIds": loads_json(key.get("model_ids"), []),
        "enable": bool(key["enable"]),
        "createdAt": iso(key.get("created_at")),
        "updatedAt": iso(key.get("updated_at")),
    }


def connection_shape(row: dict, keys: list[dict]) -> dict:
    """A connection as api.md describes it (keys masked)."""
    return {
        "id": row["id"],
        "displayName": row["display_name"],
        "provider": row["provider"],
        "baseUrl": row["base_url"],
        "authType": row["auth_type"],
        "headers": loads_json(row.get("headers"), {}),
        "azureApiVersion": row.get("azure_api_version"),
        "prefixId": row.get("prefix_id"),
        "tags": [{"name": name} for name in loads_json(row.get("tags"), [])],
        "defaultCapabilities": loads_json(row.get("default_capabilities"), {}),
        "enable": bool(row["enable"]),
        "ownerUserId": row.get("owner_user_id"),
        "apiKeys": [key_shape(k) for k in keys],
        "createdAt": iso(row.get("created_at")),
        "updatedAt": iso(row.get("updated_at")),
    }


# --------------------------------------------------------------------------------------------------
# Writing


def _sealed_key(api_key: str, base_url: str, material: str) -> dict:
    return {
        "secret_encrypted": encrypt_secret(api_key, material),
        "secret_prefix": secret_prefix(api_key),
        "secret_last4": secret_last4(api_key),
        "bound_base_url": base_url,
    }


def _check_prefix(db: dataset.Database, prefix: str | None, owner: int | None, except_id: int | None) -> None:
    if not prefix:
        return
    scope = "owner_user_id IS NULL" if owner is None else "(owner_user_id IS NULL OR owner_user_id = :owner)"
    clash = fetch_one(
        db,
        f"SELECT id FROM connections WHERE lower(prefix_id) = :prefix AND {scope} AND id <> :except_id",
        prefix=prefix.lower(),
        owner=owner,
        except_id=except_id or -1,
    )
    if clash is not None:
        raise Conflict(f"Prefix '{prefix}' is already used by another connection", code="prefix_taken")


def _connection_values(data: dict) -> dict:
    values: dict[str, Any] = {}
    for name in ("display_name", "provider", "base_url", "auth_type", "azure_api_version", "prefix_id", "enable"):
        if name in data:
            values[name] = data[name]
    for name in ("headers", "tags", "default_capabilities"):
        if name in data:
            values[name] = json.dumps(data[name])
    return values


def create_connection(db: dataset.Database, owner_user_id: int | None, data: dict, material: str) -> int:
    """Insert a connection (data from ``complete_for_create``) and its keys; returns the new id."""
    if owner_user_id is not None:
        count = fetch_one(db, "SELECT COUNT(*) AS n FROM connections WHERE owner_user_id = :o", o=owner_user_id)
        if count and count["n"] >= MAX_PERSONAL_CONNECTIONS:
            raise Conflict(f"At most {MAX_PERSONAL_CONNECTIONS} personal connections", code="too_many_connections")
    _check_prefix(db, data.get("prefix_id"), owner_user_id, None)
    now = utcnow()
    keys = [new_key_values(entry, data["base_url"], material, now) for entry in data["api_keys"]]
    with db as tx:
        values = _connection_values(data)
        values.update(owner_user_id=owner_user_id, created_at=now, updated_at=now)
        connection_id = insert(tx, "connections", values)
        for key in keys:
            insert(tx, "connection_keys", {**key, "connection_id": connection_id})
    return int(connection_id)


def new_key_values(entry: dict, base_url: str, material: str, now: Any) -> dict:
    values: dict[str, Any] = {
        "label": entry.get("label"),
        "model_ids": json.dumps(entry.get("model_ids") or []),
        "enable": bool(entry.get("enable", True)),
        "secret_encrypted": None,
        "secret_prefix": None,
        "secret_last4": None,
        "bound_base_url": None,
        "created_at": now,
        "updated_at": now,
    }
    if entry.get("api_key"):
        values.update(_sealed_key(entry["api_key"], base_url, material))
    return values


def _plan_keys(existing: list[dict], data: dict) -> tuple[list[tuple[dict, dict]], list[dict], list[int]]:
    """(updates as (existing row, entry), new entries, ids to delete) for an update payload."""
    by_id = {k["id"]: k for k in existing}
    if "api_keys" in data:
        updates, inserts, seen = [], [], set()
        errors: dict[str, list[str]] = {}
        for index, entry in enumerate(data["api_keys"]):
            if entry.get("id") is None:
                inserts.append(entry)
            elif entry["id"] in by_id and entry["id"] not in seen:
                seen.add(entry["id"])
                updates.append((by_id[entry["id"]], entry))
            else:
                errors[f"apiKeys.{index}.id"] = ["Unknown or repeated API key id for this connection."]
        if errors:
            raise ValidationFailed(errors)
        return updates, inserts, [k["id"] for k in existing if k["id"] not in seen]
    if any(name in data for name in ("api_key", "model_ids", "api_key_label")):
        entry = {"api_key": data.get("api_key")}
        if "model_ids" in data:
            entry["model_ids"] = data["model_ids"]
        if "api_key_label" in data:
            entry["label"] = data["api_key_label"]
        if existing:
            return [(existing[0], entry)], [], []
        return [], [{"label": None, "model_ids": [], "enable": True, **entry}], []
    return [], [], []


def update_connection(db: dataset.Database, row: dict, data: dict, material: str) -> None:
    """Apply a partial update (an empty ``apiKey`` keeps the stored secret).

    Raises 400 ``api_key_required`` when a stored secret would be kept for a different base URL
    than the one it was saved for, and 400 ``validation_error`` for unknown key ids.
    """
    base_url = data.get("base_url", row["base_url"])
    existing = keys_for(db, [row["id"]])[row["id"]]
    updates, inserts, deletes = _plan_keys(existing, data)
    replaced = {key["id"] for key, entry in updates if entry.get("api_key")}
    stranded = [
        k["id"]
        for k in existing
        if k["id"] not in deletes
        and k["id"] not in replaced
        and k.get("secret_encrypted")
        and k.get("bound_base_url") != base_url
    ]
    if stranded:
        raise ApiError(
            "A stored API key is only sent to the base URL it was saved for. Enter the API key again "
            "(or remove it) to use this base URL.",
            status=400,
            code="api_key_required",
            data={"keyIds": stranded},
        )
    if "prefix_id" in data:
        _check_prefix(db, data["prefix_id"], row["owner_user_id"], row["id"])
    now = utcnow()
    key_changes: list[tuple[int, dict]] = []
    for key, entry in updates:
        values: dict[str, Any] = {"updated_at": now}
        if "label" in entry:
            values["label"] = entry["label"]
        if "model_ids" in entry:
            values["model_ids"] = json.dumps(entry["model_ids"])
        if "enable" in entry:
            values["enable"] = bool(entry["enable"])
        if entry.get("api_key"):
            values.update(_sealed_key(entry["api_key"], base_url, material))
        key_changes.append((key["id"], values))
    new_keys = [new_key_values(entry, base_url, material, now) for entry in inserts]
    fetch_relevant = bool(updates or inserts or deletes) or any(
        name in data and data[name] != _current(row, name) for name in FETCH_FIELDS
    )
    with db as tx:
        values = _connection_values(data)
        values.update(updated_at=now)
        update(tx, "connections", row["id"], values)
        for key_id in deletes:
            execute(tx, "DELETE FROM connection_keys WHERE id = :id", id=key_id)
        for key_id, key_values in key_changes:
            update(tx, "connection_keys", key_id, key_values)
        for key in new_keys:
            insert(tx, "connection_keys", {**key, "connection_id": row["id"]})
        if fetch_relevant:
            invalidate_catalog(tx, row["id"])


def _current(row: dict, name: str) -> Any:
    return loads_json(row.get(name), {}) if name == "headers" else row.get(name)


def invalidate_catalog(tx: dataset.Database, connection_id: int) -> None:
    """Forget a connection's cached catalog (inside ``with db:``); the next read fetches it again."""
    execute(tx, "DELETE FROM catalog_models WHERE connection_id = :c", c=connection_id)
    execute(tx, "DELETE FROM catalog_state WHERE connection_id = :c", c=connection_id)


def delete_connection(db: dataset.Database, row: dict) -> None:
    """Delete a connection; keys, catalog rows and overrides go with it (sessions keep a NULL link)."""
    with db as tx:
        execute(tx, "DELETE FROM connections WHERE id = :id", id=row["id"])


# --------------------------------------------------------------------------------------------------
# Talking to a connection


def provider_config(connection: dict, key: dict | None, material: str | None = None) -> ProviderConfig:
    """The adapter configuration for ``connection`` with ``key``'s decrypted secret.

    The secret is used only when the connection's base URL is the one it was saved for; otherwise
    the request goes without it (and a warning without the secret is logged). Raises
    :class:`common.crypto.SecretDecryptError` when the secret cannot be decrypted.
    """
    secret = None
    if key is not None and key.get("secret_encrypted") and connection["auth_type"] != "none":
        if key.get("bound_base_url") != connection["base_url"]:
            log.warning(
                "connection %s key %s: base URL changed since the key was saved; key not sent",
                connection["id"],
                key["id"],
            )
        else:
            secret = decrypt_secret(key["secret_encrypted"], material if material is not None else key_material())
    return ProviderConfig(
        provider=connection["provider"],
        base_url=connection["base_url"],
        api_key=secret,
        auth_type="none" if connection["auth_type"] == "none" else "bearer",
        headers=loads_json(connection.get("headers"), {}),
        azure_api_version=connection.get("azure_api_version"),
    )


def _allow_hosts_setting() -> str:
    if has_app_context():
        return current_app.extensions["parley.settings"].get("outbound_allow_hosts") or ""
    return ""


@functools.lru_cache(maxsize=64)
def _policy(system: bool, allow_hosts: str) -> OutboundPolicy:
    valid: list[str] = []
    for entry in allow_hosts.replace("\n", ",").split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            OutboundPolicy(allow_hosts=(entry,))
        except ValueError:
            log.warning("outbound_allow_hosts: ignoring invalid entry %r", entry[:100])
            continue
        valid.append(entry)
    return OutboundPolicy(allow_private=system, allow_hosts=tuple(valid))


def outbound_policy_for(connection: dict, allow_hosts: str | None = None) -> OutboundPolicy:
    """The SSRF policy for a connection: system connections may reach private addresses (never
    metadata ones); personal connections only public ones. Both add the admin allow-list
    (setting ``outbound_allow_hosts``, comma-separated; read from the app when not given)."""
    hosts = _allow_hosts_setting() if allow_hosts is None else allow_hosts
    return _policy(connection.get("owner_user_id") is None, hosts)


@functools.lru_cache(maxsize=64)
def http_client_for(policy: OutboundPolicy) -> OutboundClient:
    """One shared guarded HTTP client per policy in this process."""
    return OutboundClient(policy)


def check_base_url(connection: dict, policy: OutboundPolicy) -> None:
    """Check a base URL against the policy before saving or verifying; 400 ``outbound_blocked``.

    Resolves the host (network I/O: call it outside any write transaction). A system connection
    whose host does not resolve yet is accepted (it is checked again on every request).
    """
    if connection.get("provider") == "demo" or not connection.get("base_url"):
        return
    try:
        check_url(connection["base_url"], policy)
    except OutboundUnresolvable as exc:
        if connection.get("owner_user_id") is None:
            return
        raise ApiError(f"Base URL not allowed: {exc.reason}", status=400, code="outbound_blocked") from None
    except OutboundBlocked as exc:
        raise ApiError(
            f"Base URL not allowed: {exc.reason} Ask an administrator to allow-list the host if it is intended.",
            status=400,
            code="outbound_blocked",
        ) from None

"""The model catalog: each connection's models, fetched from the provider (or taken from its keys'
``modelIds``), cached in ``catalog_models`` with an expiry, and read stale-while-revalidate.

- A connection never fetched is fetched synchronously, with a short timeout, on first read.
- An expired one is served from the cache while a background greenlet refreshes it (once per
  process at a time); the jobs process refreshes everything with :func:`refresh_all`.
- A failed fetch keeps the previous rows and records ``last_error``; it is retried after
  :data:`ERROR_RETRY_SECONDS`.
- Network I/O never happens inside a ``with db:`` block: fetch first, then store in one short
  transaction per connection.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import dataset
import gevent
import gevent.event
import sqlalchemy as sa
from flask import Flask, current_app, has_app_context

from common.connections import http_client_for, keys_for, outbound_policy_for, provider_config
from common.crypto import SecretDecryptError, mask_secret
from common.db import as_datetime, execute, fetch_all, fetch_one, insert, is_postgres, release, utcnow
from common.outbound import OutboundError
from common.providers import ModelInfo, ProviderError, get_adapter
from common.tokenizer import context_window_for, max_output_tokens_for

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 600
ERROR_RETRY_SECONDS = 60
FIRST_FETCH_TIMEOUT = 8.0
REFRESH_TIMEOUT = 20.0
_in_flight: set[int] = set()
_first_fetches: dict[int, gevent.event.Event] = {}
_background: list[gevent.Greenlet] = []


@dataclass(frozen=True)
class FetchResult:
    """The outcome of fetching one connection's models (no database involved)."""

    connection_id: int
    models: list[tuple[ModelInfo, int | None]]  # (model, id of the key that serves it)
    error: str | None = None


def _scrub(message: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            message = message.replace(secret, mask_secret(secret))
    return message[:1000]


# --------------------------------------------------------------------------------------------------
# Fetching (network; no database)


def fetch_models(connection: dict, keys: list[dict], *, material: str, allow_hosts: str, timeout: float) -> FetchResult:
    """Fetch one connection's models: keys with ``modelIds`` give those, keys without list the
    provider's catalog with that key (a connection without keys lists once without a key)."""
    enabled = [k for k in keys if k["enable"]]
    if keys and not enabled:
        return FetchResult(connection["id"], [], None)
    found: dict[str, tuple[ModelInfo, int | None]] = {}
    errors: list[str] = []
    secrets: list[str | None] = []
    http = http_client_for(outbound_policy_for(connection, allow_hosts))
    for key in enabled or [None]:
        listed = json.loads(key["model_ids"] or "[]") if key is not None else []
        key_id = key["id"] if key is not None else None
        if listed:
            for raw_id in listed:
                found.setdefault(raw_id, (ModelInfo(raw_id=raw_id, name=raw_id), key_id))
            continue
        try:
            config = provider_config(connection, key, material)
            secrets.append(config.api_key)
            adapter = get_adapter(config)
            models = adapter.list_models(http=None if config.provider == "demo" else http, timeout=timeout)
        except (ProviderError, OutboundError, SecretDecryptError, ValueError) as exc:
            errors.append(str(getattr(exc, "message", None) or exc) or type(exc).__name__)
            continue
        for model in models:
            found.setdefault(model.raw_id, (model, key_id))
    if errors and not found:
        return FetchResult(connection["id"], [], _scrub("; ".join(errors), secrets))
    return FetchResult(connection["id"], list(found.values()), None)


# --------------------------------------------------------------------------------------------------
# Storing (short transactions)


def _lock_state(tx: dataset.Database, connection_id: int) -> None:
    execute(
        tx,
        "INSERT INTO catalog_state (connection_id) VALUES (:c) ON CONFLICT (connection_id) DO NOTHING",
        c=connection_id,
    )
    if is_postgres(tx):
        execute(tx, "SELECT connection_id FROM catalog_state WHERE connection_id = :c FOR UPDATE", c=connection_id)


def store_result(db: dataset.Database, result: FetchResult, ttl: int = DEFAULT_TTL_SECONDS) -> None:
    """Save a fetch result: replace the rows on success, keep them and record the error on failure."""
    if not get_connection_exists(db, result.connection_id):
        return
    try:
        _store(db, result, ttl)
    except sa.exc.IntegrityError:  # the connection was deleted while we fetched
        log.info("catalog of connection %s not stored: it is gone", result.connection_id)


def _store(db: dataset.Database, result: FetchResult, ttl: int) -> None:
    now = utcnow()
    with db as tx:
        _lock_state(tx, result.connection_id)
        if result.error is not None:
            execute(
                tx,
                "UPDATE catalog_state SET last_error = :e, expires_at = :x, last_fetched_at = "
                "COALESCE(last_fetched_at, :n) WHERE connection_id = :c",
                e=result.error,
                x=now + timedelta(seconds=ERROR_RETRY_SECONDS),
                n=now,
                c=result.connection_id,
            )
            return
        expires = now + timedelta(seconds=ttl)
        execute(tx, "DELETE FROM catalog_models WHERE connection_id = :c", c=result.connection_id)
        for model, key_id in result.models:
            insert(
                tx,
                "catalog_models",
                {
                    "connection_id": result.connection_id,
                    "key_id": key_id,
                    "raw_id": model.raw_id[:300],
                    "name": (model.name or model.raw_id)[:300],
                    "context_window": model.context_window,
                    "max_output_tokens": model.max_output_tokens,
                    "capabilities": json.dumps(model.capabilities or {}),
                    "fetched_at": now,
                    "expires_at": expires,
                }
            )
        execute(
            tx,
            "UPDATE catalog_state SET last_fetched_at = :n, expires_at = :x, last_error = NULL "
            "WHERE connection_id = :c",
            n=now,
            x=expires,
            c=result.connection_id,
        )


def get_connection_exists(db: dataset.Database, connection_id: int) -> bool:
    """Whether the connection still exists (it may have been deleted while we fetched)."""
    return fetch_one(db, "SELECT id FROM connections WHERE id = :c", c=connection_id) is not None


# --------------------------------------------------------------------------------------------------
# Refreshing


def _app_values(app: Flask) -> tuple[str, str]:
    return app.config["PARLEY"].encryption_key, app.extensions["parley.settings"].get("outbound_allow_hosts") or ""


def refresh_connections(
    db: dataset.Database,
    connections: list[dict],
    *,
    material: str,
    allow_hosts: str,
    timeout: float = REFRESH_TIMEOUT,
    ttl: int = DEFAULT_TTL_SECONDS,
) -> list[FetchResult]:
    """Fetch several connections concurrently (greenlets doing network only), then store each."""
    if db.in_transaction:
        raise RuntimeError("refresh_connections() does network I/O: call it outside `with db:`")
    if not connections:
        return []
    all_keys = keys_for(db, [c["id"] for c in connections])
    jobs = [
        gevent.spawn(fetch_models, c, all_keys[c["id"]], material=material, allow_hosts=allow_hosts, timeout=timeout)
        for c in connections
    ]
    gevent.joinall(jobs, timeout=timeout * 3 + 5)
    results: list[FetchResult] = []
    for connection, job in zip(connections, jobs, strict=True):
        if job.successful():
            result = job.value
        else:
            job.kill(block=False)
            reason = "timed out" if not job.ready() else f"failed ({type(job.exception).__name__})"
            result = FetchResult(connection["id"], [], f"Fetching the model list {reason}")
        store_result(db, result, ttl)
        results.append(result)
    return results


def _refresh_in_background(app: Flask, connection_ids: list[int]) -> None:
    db = app.extensions["parley.db"]
    try:
        material, allow_hosts = _app_values(app)
        rows = [r for r in (fetch_one(db, "SELECT * FROM connections WHERE id = :c", c=c) for c in connection_ids) if r]
        refresh_connections(db, rows, material=material, allow_hosts=allow_hosts)
    except Exception:
        log.exception("background catalog refresh failed")
    finally:
        for cid in connection_ids:
            _in_flight.discard(cid)
        release(db)


def schedule_refresh(app: Flask, connection_ids: list[int]) -> gevent.Greenlet | None:
    """Refresh these connections in a background greenlet (skipping ones already being refreshed)."""
    todo = [c for c in connection_ids if c not in _in_flight]
    if not todo:
        return None
    _in_flight.update(todo)
    job = gevent.spawn(_refresh_in_background, app, todo)
    _background[:] = [g for g in _background if not g.dead] + [job]
    return job


def wait_for_background(timeout: float = 30.0) -> None:
    """Wait for scheduled background refreshes (tests and shutdown)."""
    gevent.joinall(list(_background), timeout=timeout)


def refresh_all(app: Flask, *, force: bool = False, timeout: float = REFRESH_TIMEOUT) -> dict:
    """Refresh every enabled connection whose cache expired (all of them with ``force``).

    For the jobs process; returns ``{"refreshed": n, "failed": n, "skipped": n}``. Personal
    connections are included only while personal connections are enabled.
    """
    db = app.extensions["parley.db"]
    try:
        material, allow_hosts = _app_values(app)
        personal = bool(app.extensions["parley.settings"].get("personal_connections_enabled"))
        rows = fetch_all(
            db,
            "SELECT c.*, s.expires_at AS catalog_expires_at FROM connections c "
            "LEFT JOIN catalog_state s ON s.connection_id = c.id WHERE c.enable = :t"
            + ("" if personal else " AND c.owner_user_id IS NULL")
            + " ORDER BY c.id",
            t=True,
        )
        now = utcnow()
        due = [r for r in rows if force or _expired(r.get("catalog_expires_at"), now)]
        results = refresh_connections(db, due, material=material, allow_hosts=allow_hosts, timeout=timeout)
        failed = sum(1 for r in results if r.error)
        return {"refreshed": len(results) - failed, "failed": failed, "skipped": len(rows) - len(due)}
    finally:
        release(db)


def _expired(value: Any, now: datetime) -> bool:
    moment = as_datetime(value)
    return moment is None or moment <= now


def _first_fetch(app: Flask, db: dataset.Database, connections: list[dict], timeout: float) -> None:
    mine = [c for c in connections if c["id"] not in _first_fetches]
    waits = [_first_fetches[c["id"]] for c in connections if c["id"] in _first_fetches]
    for connection in mine:
        _first_fetches[connection["id"]] = gevent.event.Event()
    try:
        material, allow_hosts = _app_values(app)
        refresh_connections(db, mine, material=material, allow_hosts=allow_hosts, timeout=timeout)
    finally:
        for connection in mine:
            _first_fetches.pop(connection["id"]).set()
    for event in waits:
        event.wait(timeout * 2)


def ensure_fresh(
    db: dataset.Database, connections: list[dict], *, first_fetch_timeout: float = FIRST_FETCH_TIMEOUT
) -> None:
    """Stale-while-revalidate for :func:`usable_connections` rows (``catalog_state_id``,
    ``catalog_expires_at``).

    Never-fetched connections are fetched now (short timeout; skipped inside a transaction; a
    greenlet finding another one already fetching it waits for that one); expired ones are
    refreshed in the background. Needs an app context for both.
    """
    if not has_app_context():
        return
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    now = utcnow()
    never = [c for c in connections if c.get("catalog_state_id") is None]
    if never and not db.in_transaction:
        _first_fetch(app, db, never, first_fetch_timeout)
    stale = [
        c["id"]
        for c in connections
        if c.get("catalog_state_id") is not None and _expired(c.get("catalog_expires_at"), now)
    ]
    if stale:
        schedule_refresh(app, stale)


# --------------------------------------------------------------------------------------------------
# Entries: catalog rows with the connection's defaults and the admin's overrides applied


@dataclass(frozen=True)
class CatalogEntry:
    """One usable model as the catalog knows it (overrides applied)."""

    model_id: str
    raw_id: str
    name: str
    connection: dict
    key_id: int | None
    capabilities: dict
    tags: list[str]
    context_window: int
    max_output_tokens: int | None
    temperature: float | None
    access_anonymous: str
    access_user: str
    has_override: bool


def public_model_id(prefix_id: str | None, raw_id: str) -> str:
    """The id clients use: ``prefixId.rawId``, or ``rawId`` when the connection has no prefix."""
    return f"{prefix_id}.{raw_id}" if prefix_id else raw_id


def usable_connections(db: dataset.Database, user_id: int | None, personal_enabled: bool) -> list[dict]:
    """Enabled connections an actor can reach: system ones, plus the user's own personal ones while
    personal connections are enabled; each with its catalog state (``catalog_state_id`` is NULL
    when never fetched)."""
    owned = " OR c.owner_user_id = :uid" if (personal_enabled and user_id is not None) else ""
    return fetch_all(
        db,
        "SELECT c.*, s.connection_id AS catalog_state_id, s.expires_at AS catalog_expires_at, "
        "s.last_error AS catalog_last_error FROM connections c "
        "LEFT JOIN catalog_state s ON s.connection_id = c.id "
        f"WHERE c.enable = :t AND (c.owner_user_id IS NULL{owned}) ORDER BY c.id",
        t=True,
        uid=user_id,
    )


def catalog_rows(db: dataset.Database, connection_ids: list[int], raw_ids: list[str] | None = None) -> list[dict]:
    """Cached models of some connections (optionally only some raw ids), with their override columns."""
    if not connection_ids or raw_ids == []:
        return []
    params: dict[str, Any] = {f"c{i}": c for i, c in enumerate(connection_ids)}
    where = f"m.connection_id IN ({', '.join(f':c{i}' for i in range(len(connection_ids)))})"
    if raw_ids is not None:
        params.update({f"r{i}": r for i, r in enumerate(raw_ids)})
        where += f" AND m.raw_id IN ({', '.join(f':r{i}' for i in range(len(raw_ids)))})"
    return fetch_all(
        db,
        "SELECT m.*, o.id AS o_id, o.tags AS o_tags, o.capabilities AS o_capabilities, "
        "o.context_window AS o_context_window, o.max_output_tokens AS o_max_output_tokens, "
        "o.temperature AS o_temperature, o.access_anonymous AS o_access_anonymous, "
        "o.access_user AS o_access_user FROM catalog_models m "
        "LEFT JOIN model_overrides o ON o.connection_id = m.connection_id AND o.raw_id = m.raw_id "
        f"WHERE {where} ORDER BY m.connection_id, m.raw_id",
        **params,
    )


def _json(text: Any, default: Any) -> Any:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return default
    return value if isinstance(value, type(default)) else default


def make_entry(connection: dict, row: dict, default_context: int) -> CatalogEntry:
    """A :class:`CatalogEntry` from a connection and a :func:`catalog_rows` row."""
    raw_id = row["raw_id"]
    capabilities = dict(_json(connection.get("default_capabilities"), {}) or {})
    capabilities.update(_json(row.get("capabilities"), {}) or {})
    capabilities.update(_json(row.get("o_capabilities"), {}) or {})
    capabilities.setdefault("vision", False)
    tags = _json(row.get("o_tags"), [])
    if tags is None:
        tags = _json(connection.get("tags"), []) or []
    return CatalogEntry(
        model_id=public_model_id(connection.get("prefix_id"), raw_id),
        raw_id=raw_id,
        name=row.get("name") or raw_id,
        connection=connection,
        key_id=row.get("key_id"),
        capabilities=capabilities,
        tags=[t for t in tags if isinstance(t, str)],
        context_window=context_window_for(
            raw_id, row.get("o_context_window"), row.get("context_window"), default=default_context
        ),
        max_output_tokens=max_output_tokens_for(raw_id, row.get("o_max_output_tokens") or row.get("max_output_tokens")),
        temperature=row.get("o_temperature"),
        access_anonymous=row.get("o_access_anonymous") or "inherit",
        access_user=row.get("o_access_user") or "inherit",
        has_override=row.get("o_id") is not None,
    )

"""Anonymous visitors: their activity (throttled), the retention cleanup of their data, and the claim of
a visitor's data by the account they register or sign in with.

A visitor's data (every table of `OWNED_TABLES`: sessions with their messages, usage rows, shares, ...)
is kept `anonymous_retention_days` after their last activity; every request of a returning visitor
extends it (one write per visitor per ACTIVITY_WRITE_SECONDS at most). The cleanup never touches a
session with a running generation, nor rows written after the cutoff (a visitor who came back a moment
ago), and adopts owners it has no visitor row for (data older than this table) as seen now.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

import dataset
import sqlalchemy as sa
from flask import Flask, Response, current_app, g, request

from common.auth.actors import ANON_COOKIE, ANON_KEY_PATTERN
from common.auth.cookies import clear_anon_cookie
from common.auth.ownership import OWNED_TABLES
from common.db import execute, fetch_all, utcnow

log = logging.getLogger("parley.anonymous")
ACTIVITY_WRITE_SECONDS = 300  # at most one last_seen_at write per visitor per 5 minutes
MIN_IDLE_SECONDS = 3600  # retention 0 days: data goes once the visitor has been idle for an hour
SEEN_CACHE_MAX = 50_000
CLEANUP_BATCH = 200
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


class _SeenCache:
    """When this process last wrote each visitor's activity (monotonic seconds)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: dict[str, float] = {}

    def due(self, key: str, now: float) -> bool:
        """True (and remembered) when the visitor's activity was not written in the last window."""
        with self.lock:
            last = self.seen.get(key)
            if last is not None and now - last < ACTIVITY_WRITE_SECONDS:
                return False
            if len(self.seen) >= SEEN_CACHE_MAX:
                self.seen.clear()
            self.seen[key] = now
            return True


def _cache(app: Flask) -> _SeenCache:
    return app.extensions.setdefault("parley.visitors_seen", _SeenCache())


def record_activity(db: dataset.Database, anon_key: str, address: str | None, now: datetime | None = None) -> bool:
    """Note that a visitor was active now. The row is written only when its last_seen_at is older than
    the throttle window, so several workers cannot write it more often either. True if a write ran."""
    now = now or utcnow()
    with db as tx:
        execute(
            tx,
            "INSERT INTO anonymous_visitors (anon_key, first_seen_at, last_seen_at, address) "
            "VALUES (:k, :now, :now, :a) ON CONFLICT (anon_key) DO UPDATE SET last_seen_at = excluded.last_seen_at, "
            "address = excluded.address WHERE anonymous_visitors.last_seen_at < :fresh",
            k=anon_key, now=now, a=(address or "")[:64] or None, fresh=now - timedelta(seconds=ACTIVITY_WRITE_SECONDS),
        )
    return True


def note_request_activity() -> None:
    """After a request of an anonymous visitor: record their activity (throttled per process).

    A brand-new key on a read-only request (a crawler without cookies) is not recorded: it owns nothing
    yet and will come back with its cookie if it is a real visitor."""
    actor = g.get("actor")
    if actor is None or actor.is_user or g.get("anon_cookie_cleared") or not actor.anon_key:
        return
    returning = request.cookies.get(ANON_COOKIE) == actor.anon_key
    if not returning and request.method in SAFE_METHODS:
        return
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if not _cache(app).due(actor.anon_key, time.monotonic()):
        return
    try:
        record_activity(app.extensions["parley.db"], actor.anon_key, request.remote_addr)
    except Exception:  # never fail a request over bookkeeping; the next request retries
        log.exception("could not record visitor activity")
        _cache(app).seen.pop(actor.anon_key, None)


# ---- claim ------------------------------------------------------------------------------------------


def claim(db: dataset.Database, anon_key: str, user_id: int) -> dict[str, int]:
    """Move everything the visitor owns to the account; returns the rows moved per table."""
    moved: dict[str, int] = {}
    with db as tx:
        for table in sorted(OWNED_TABLES):
            moved[table] = execute(
                tx,
                f"UPDATE {table} SET user_id = :uid, anon_key = NULL WHERE user_id IS NULL AND anon_key = :key",
                uid=user_id, key=anon_key,
            )
        # Running generations count against their owner's concurrency limit and are cancelled by it.
        execute(tx, "UPDATE generations SET owner = :new WHERE owner = :old AND state = 'running'",
                new=f"user:{user_id}", old=f"anon:{anon_key}")
        execute(tx, "DELETE FROM anonymous_visitors WHERE anon_key = :key", key=anon_key)
    return moved


def claim_request_visitor(db: dataset.Database, user_id: int) -> dict[str, int] | None:
    """At register/login: claim the data of the request's `anon_key` cookie, if any, for `user_id`,
    and arrange for the cookie to be cleared. None when the request has no visitor cookie."""
    key = request.cookies.get(ANON_COOKIE, "")
    if not ANON_KEY_PATTERN.match(key):
        return None
    moved = claim(db, key, user_id)
    g.anon_cookie_cleared = True
    if any(moved.values()):
        log.info("user %s claimed visitor data: %s", user_id, moved)
    return moved


def clear_visitor_cookie(response: Response) -> None:
    """Remove the visitor cookie if the request came with one (after a claim)."""
    if g.get("anon_cookie_cleared"):
        clear_anon_cookie(response)


# ---- retention cleanup ------------------------------------------------------------------------------


def retention_cutoff(retention_days: int, now: datetime | None = None) -> datetime:
    """Visitors last active before this moment are gone (their data may be deleted)."""
    now = now or utcnow()
    return now - max(timedelta(days=retention_days), timedelta(seconds=MIN_IDLE_SECONDS))


def _columns(db: dataset.Database, table: str) -> set[str]:
    return {column["name"] for column in sa.inspect(db.executable).get_columns(table)}


def _adopt_unknown_owners(db: dataset.Database, tables: list[str], now: datetime) -> int:
    """Give a visitor row (seen now) to anonymous owners without one, so their retention starts now."""
    adopted = 0
    with db as tx:
        for table in tables:
            adopted += execute(
                tx,
                "INSERT INTO anonymous_visitors (anon_key, first_seen_at, last_seen_at) "
                f"SELECT DISTINCT t.anon_key, :now, :now FROM {table} t WHERE t.user_id IS NULL "
                "AND t.anon_key IS NOT NULL AND NOT EXISTS "
                "(SELECT 1 FROM anonymous_visitors v WHERE v.anon_key = t.anon_key) "
                "ON CONFLICT (anon_key) DO NOTHING",
                now=now,
            )
    return adopted


def _delete_condition(table: str, columns: set[str]) -> str:
    """Rows of `table` owned by an expired visitor of the batch, older than the cutoff, not in a session
    with a running generation."""
    running = "(SELECT session_id FROM generations WHERE state = 'running')"
    expired = "(SELECT anon_key FROM anonymous_visitors WHERE last_seen_at < :cutoff AND anon_key IN :keys)"
    parts = [f"user_id IS NULL AND anon_key IN {expired}"]
    if table == "chat_sessions":
        parts.append(f"id NOT IN {running}")
    elif "session_id" in columns:
        parts.append(f"(session_id IS NULL OR session_id NOT IN {running})")
    stamp = "updated_at" if "updated_at" in columns else "created_at" if "created_at" in columns else None
    if stamp:
        parts.append(f"{stamp} < :cutoff")
    return " AND ".join(parts)


def cleanup(db: dataset.Database, retention_days: int, now: datetime | None = None) -> dict[str, int]:
    """Delete the data and visitor rows of visitors gone longer than the retention; returns counts."""
    now = now or utcnow()
    cutoff = retention_cutoff(retention_days, now)
    tables = sorted(OWNED_TABLES - {"chat_sessions"}) + ["chat_sessions"]  # sessions last: rows may point at them
    columns = {table: _columns(db, table) for table in tables}
    summary = {"visitors_adopted": _adopt_unknown_owners(db, tables, now), "visitors_deleted": 0}
    summary.update({f"{table}_deleted": 0 for table in tables})
    after = ""
    while True:
        rows = fetch_all(
            db, "SELECT anon_key FROM anonymous_visitors WHERE last_seen_at < :cutoff AND anon_key > :after "
            "ORDER BY anon_key LIMIT :n", cutoff=cutoff, after=after, n=CLEANUP_BATCH,
        )
        keys = [row["anon_key"] for row in rows]
        if not keys:
            return summary
        after = keys[-1]
        with db as tx:
            for table in tables:
                condition = _delete_condition(table, columns[table])
                summary[f"{table}_deleted"] += _execute_with_keys(tx, f"DELETE FROM {table} WHERE {condition}",
                                                                 keys, cutoff)
            # A visitor keeps their row while anything of theirs remains (a running generation, fresh rows).
            remaining = " ".join(
                f"AND NOT EXISTS (SELECT 1 FROM {table} t WHERE t.user_id IS NULL "
                "AND t.anon_key = anonymous_visitors.anon_key)" for table in tables
            )
            summary["visitors_deleted"] += _execute_with_keys(
                tx, f"DELETE FROM anonymous_visitors WHERE anon_key IN :keys AND last_seen_at < :cutoff {remaining}",
                keys, cutoff,
            )


def _execute_with_keys(tx: dataset.Database, sql: str, keys: list[str], cutoff: datetime) -> int:
    statement = sa.text(sql).bindparams(sa.bindparam("keys", expanding=True))
    return tx.executable.execute(statement, {"keys": keys, "cutoff": cutoff}).rowcount

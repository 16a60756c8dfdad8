"""Login throttling shared by every worker process (the counters live in the database).

A key (`acct:id:<user id>`, `acct:name:<unknown login>` or `addr:<ip>`) that collects `max_failures`
failed logins within the lockout window is locked for `lockout_seconds` from the last failure that
crossed the limit.
"""

from __future__ import annotations

import math
from datetime import timedelta

import dataset

from common.db import as_datetime, execute, fetch_one, utcnow


def account_key(user_id: int) -> str:
    """The counter of an existing account, whichever login name (username, email) was typed."""
    return f"acct:id:{user_id}"


def unknown_login_key(login: str) -> str:
    """The counter of a login name that matches no account."""
    return f"acct:name:{login}"


def address_key(address: str | None) -> str:
    """The counter of a client address."""
    return f"addr:{address}"


def retry_after_seconds(db: dataset.Database, keys: list[str]) -> int | None:
    """Seconds until every given key is unlocked, or None when none is locked."""
    now = utcnow()
    worst = None
    for key in keys:
        row = fetch_one(db, "SELECT locked_until FROM login_throttle WHERE key = :k", k=key)
        locked_until = as_datetime(row["locked_until"]) if row else None
        if locked_until and locked_until > now:
            remaining = math.ceil((locked_until - now).total_seconds())
            worst = max(worst or 0, remaining)
    return worst



def record_failure(db: dataset.Database, key: str, max_failures: int, lockout_seconds: int) -> None:
    """Count one failed login for `key`, atomically, and lock the key when it reaches the limit."""
    now = utcnow()
    window_start = now - timedelta(seconds=lockout_seconds)
    with db as tx:
        execute(
            tx,
            "INSERT INTO login_throttle (key, failures, window_started_at) VALUES (:k, 1, :now) "
            "ON CONFLICT (key) DO UPDATE SET "
            "failures = CASE WHEN login_throttle.window_started_at < :ws THEN 1 "
            "ELSE login_throttle.failures + 1 END, "
            "window_started_at = CASE WHEN login_throttle.window_started_at < :ws THEN :now "
            "ELSE login_throttle.window_started_at END",
            k=key,
            now=now,
            ws=window_start,
        )
        execute(
            tx,
            "UPDATE login_throttle SET locked_until = :until WHERE key = :k AND failures >= :max",
            k=key,
            until=now + timedelta(seconds=lockout_seconds),
            max=max_failures,
        )


def clear(db: dataset.Database, key: str) -> None:
    """Forget the failures of a key (after a successful login)."""
    with db as tx:
        execute(tx, "DELETE FROM login_throttle WHERE key = :k", k=key)


def prune(db: dataset.Database, older_than_seconds: int) -> int:
    """Remove counters whose window and lock have both passed; returns how many."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    with db as tx:
        return execute(
            tx,
            "DELETE FROM login_throttle WHERE window_started_at < :c AND (locked_until IS NULL OR locked_until < :now)",
            c=cutoff,
            now=utcnow(),
        )

"""Daily quotas: one unit per chat request, reserved atomically at admission, released if the
generation never starts. Counters reset at UTC midnight, lazily when read or reserved (and by the
jobs process). Users have the default or their own limit; admins are unlimited; each anonymous visitor
has a counter of their own plus a per-address cap, so clearing cookies does not reset a quota.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import dataset
from flask import current_app, request

from common.auth.actors import Actor
from common.db import execute, fetch_all, fetch_one, iso, utcnow
from common.errors import TooManyRequests
from common.users import get_user

USER, ANON, ADDRESS = "USER", "ANON", "ADDR"


@dataclass(frozen=True)
class Counter:
    scope: str
    identifier: str
    limit: int | None  # None = unlimited


@dataclass
class Reservation:
    """Units taken at admission; `release` gives them back if the generation never starts."""

    day: str
    counters: list[Counter] = field(default_factory=list)
    used: int = 0  # the actor's own counter right after the reservation
    last_reset_at: datetime | None = None


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def _seconds_to_midnight() -> int:
    now = datetime.now(UTC)
    return 86400 - (now.hour * 3600 + now.minute * 60 + now.second)


def counters_for(db: dataset.Database, actor: Actor) -> list[Counter]:
    """The counters a chat request by `actor` is charged to (the first one is the actor's own)."""
    settings = current_app.extensions["parley.settings"]
    if actor.is_user:
        if actor.is_admin:
            return [Counter(USER, str(actor.user_id), None)]
        user = actor.user or get_user(db, actor.user_id)
        custom = user.get("daily_quota") if user else None
        limit = custom if custom is not None else settings.get("default_user_daily_quota")
        return [Counter(USER, str(actor.user_id), limit)]
    counters = [Counter(ANON, actor.anon_key or "", settings.get("anonymous_daily_quota"))]
    address_limit = settings.get("anonymous_address_daily_quota")
    if address_limit > 0 and request:
        counters.append(Counter(ADDRESS, request.remote_addr or "unknown", address_limit))
    return counters


def _used_today(db: dataset.Database, counter: Counter, day: str) -> tuple[int, datetime | None]:
    row = fetch_one(
        db, "SELECT day, used, last_reset_at FROM quota_counters WHERE scope = :s AND identifier = :i",
        s=counter.scope, i=counter.identifier,
    )
    if row is None or row["day"] != day:
        return 0, None
    return int(row["used"]), row["last_reset_at"]


def snapshot(db: dataset.Database, actor: Actor, reservation: Reservation | None = None) -> dict:
    """The QuotaSnapshot of api.md for the actor's own counter (as `reservation` left it, when given:
    no need to read it again)."""
    if reservation is not None:
        counter, day = reservation.counters[0], reservation.day
        used, reset_at = reservation.used, reservation.last_reset_at
    else:
        counter, day = counters_for(db, actor)[0], today()
        used, reset_at = _used_today(db, counter, day)
    custom = None
    if actor.is_user and not actor.is_admin:
        user = actor.user or get_user(db, actor.user_id)
        custom = user.get("daily_quota") if user else None
    unlimited = counter.limit is None
    return {
        "scope": "USER" if actor.is_user else "ANON",
        "identifier": counter.identifier,
        "dailyLimit": counter.limit,
        "usedCount": used,
        "remaining": None if unlimited else max(counter.limit - used, 0),
        "lastResetAt": iso(reset_at or datetime.strptime(day, "%Y-%m-%d")),
        "unlimited": unlimited,
        "customDailyLimit": custom,
        "usingDefaultLimit": custom is None,
    }


def reserve(db: dataset.Database, actor: Actor) -> Reservation:
    """Take one unit from each of the actor's counters, atomically, or raise 429 and take nothing."""
    counters = counters_for(db, actor)
    day, now = today(), utcnow()
    try:
        with db as tx:
            taken = [_take_one(tx, counter, day, now) for counter in counters]
    except _Exhausted as exc:  # the transaction rolled back: nothing is charged
        _raise_exhausted(db, actor, exc.counter)
    return Reservation(day, counters, used=int(taken[0]["used"]), last_reset_at=taken[0]["last_reset_at"])


class _Exhausted(Exception):
    def __init__(self, counter: Counter) -> None:
        super().__init__(counter.scope)
        self.counter = counter


def _take_one(tx: dataset.Database, counter: Counter, day: str, now: datetime) -> dict:
    """Take a unit from the counter (a new day starts it again at 1); returns its `used` and
    `last_reset_at` afterwards. A counter seen for the first time is created, then taken from."""
    taken = _increment(tx, counter, day, now)
    if taken is None:  # no row yet, or no unit left: make sure the row exists and try once more
        execute(
            tx,
            "INSERT INTO quota_counters (scope, identifier, day, used, last_reset_at, updated_at) "
            "VALUES (:s, :i, :day, 0, :now, :now) ON CONFLICT (scope, identifier) DO NOTHING",
            s=counter.scope, i=counter.identifier, day=day, now=now,
        )
        taken = _increment(tx, counter, day, now)
    if taken is None:
        raise _Exhausted(counter)
    return taken


def _increment(tx: dataset.Database, counter: Counter, day: str, now: datetime) -> dict | None:
    limit_clause = "" if counter.limit is None else " AND (day <> :day OR used < :limit)"
    rows = fetch_all(
        tx,
        "UPDATE quota_counters SET used = CASE WHEN day = :day THEN used + 1 ELSE 1 END, "
        "last_reset_at = CASE WHEN day = :day THEN last_reset_at ELSE :now END, day = :day, "
        f"updated_at = :now WHERE scope = :s AND identifier = :i{limit_clause} RETURNING used, last_reset_at",
        s=counter.scope, i=counter.identifier, day=day, now=now, limit=counter.limit,
    )
    return rows[0] if rows else None


def _raise_exhausted(db: dataset.Database, actor: Actor, counter: Counter) -> None:
    which = "for this address" if counter.scope == ADDRESS else ""
    message = f"Daily quota reached{(' ' + which) if which else ''}; it resets at midnight UTC"
    if not actor.is_user:
        message += ". Sign in for a larger quota"
    raise TooManyRequests(
        message,
        code="quota_exceeded",
        data={"quota": snapshot(db, actor), "requiredLogin": not actor.is_user},
        headers={"Retry-After": str(_seconds_to_midnight())},
    )


def release(db: dataset.Database, reservation: Reservation) -> None:
    """Give back the units of a reservation whose generation never started."""
    with db as tx:
        for counter in reservation.counters:
            execute(
                tx,
                "UPDATE quota_counters SET used = used - 1, updated_at = :now "
                "WHERE scope = :s AND identifier = :i AND day = :day AND used > 0",
                s=counter.scope, i=counter.identifier, day=reservation.day, now=utcnow(),
            )


def reset_used(db: dataset.Database, scopes: tuple[str, ...], identifier: str | None = None) -> int:
    """Set today's counters of these scopes (optionally one identifier) back to 0; returns how many
    counters had units used. The admin's anonymous reset and a user's `resetUsed`."""
    now = utcnow()
    params: dict = {f"s{i}": scope for i, scope in enumerate(scopes)}
    which = ", ".join(f":s{i}" for i in range(len(scopes)))
    one = "" if identifier is None else " AND identifier = :i"
    with db as tx:
        return execute(
            tx,
            f"UPDATE quota_counters SET used = 0, last_reset_at = :now, updated_at = :now "
            f"WHERE scope IN ({which}) AND day = :day AND used > 0{one}",
            now=now, day=today(), i=identifier, **params,
        )

"""The database: dataset on SQLite (default) or PostgreSQL, used the way gevent needs.

Rules (stack-notes "dataset under gevent"), enforced here once:
- a pool big enough for many greenlets (`max_overflow=-1`), one connection per greenlet;
- every request and background unit releases its greenlet's connection when it ends (`release`);
- writes happen inside `with db:` (short transactions; never yield to gevent inside one);
- the schema is explicit (migrations) and dataset never creates columns (`ensure_schema=False`).
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import dataset
import sqlalchemy as sa
from flask import current_app, g

SQLITE_PRAGMAS = [
    "PRAGMA busy_timeout=10000",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
]


def connect(url: str) -> dataset.Database:
    """Open a dataset database with the pool and connection settings this project relies on."""
    is_sqlite = url.startswith("sqlite")
    engine_kwargs: dict = {"pool_size": 10, "max_overflow": -1, "pool_pre_ping": not is_sqlite}
    return dataset.connect(
        url,
        ensure_schema=False,
        engine_kwargs=engine_kwargs,
        on_connect_statements=list(SQLITE_PRAGMAS) if is_sqlite else None,
        sqlite_wal_mode=True,
    )


def maintenance_engine(url: str) -> sa.Engine:
    """A pool-less engine for the processes that migrate or recover outside a worker (gunicorn's
    master, the CLI). On SQLite it applies the workers' pragmas and switches the file to WAL first:
    several workers opening a file still in rollback-journal mode at once each try to switch it, and
    that switch fails with "database is locked" without waiting (a worker then fails to boot)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_con, _record) -> None:
            for statement in [*SQLITE_PRAGMAS, "PRAGMA journal_mode=WAL"]:
                dbapi_con.execute(statement)

    return engine


SQLITE_BUSY, SQLITE_LOCKED = 5, 6


def is_transient_error(exc: BaseException) -> bool:
    """Whether a database error is worth retrying later rather than a bug: SQLite busy or locked
    past its busy timeout, or PostgreSQL's operational errors (a lost or refused connection, a
    shutdown, too many connections: psycopg's OperationalError and its subclasses)."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    original = getattr(exc, "orig", None) or exc
    if isinstance(original, sqlite3.OperationalError):
        return getattr(original, "sqlite_errorcode", None) in (SQLITE_BUSY, SQLITE_LOCKED)
    try:
        import psycopg  # installed only where PostgreSQL is used
    except ImportError:
        return False
    return isinstance(original, psycopg.OperationalError)


def release(db: dataset.Database) -> None:
    """Return the current greenlet's connection to the pool, rolling back anything uncommitted.

    Safe to call more than once (Flask runs teardown twice for streamed responses).
    """
    if getattr(db.local, "tx", None):
        db.local.tx = []
    db._release_connection()


def get_db() -> dataset.Database:
    """The application's database (inside an app context)."""
    g.db_used = True
    return current_app.extensions["parley.db"]


@contextmanager
def transaction() -> Iterator[dataset.Database]:
    """A short write transaction on the app's database; commits on success, rolls back on error."""
    db = get_db()
    with db as tx:
        yield tx


def utcnow() -> datetime:
    """Now, as a naive UTC datetime (the form stored in the database on every backend)."""
    return datetime.now(UTC).replace(tzinfo=None)


def as_datetime(value: datetime | str | None) -> datetime | None:
    """A timestamp read by raw SQL (a datetime on PostgreSQL, ISO text on SQLite) as naive UTC."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        try:
            value = datetime.fromisoformat(str(value))
        except ValueError:
            return None
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


def iso(value: datetime | str | None) -> str | None:
    """Render a stored timestamp as ISO 8601 UTC with a `Z` suffix."""
    value = as_datetime(value)
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds") + "Z"


def is_postgres(db: dataset.Database) -> bool:
    """True when the database is PostgreSQL (some statements differ, e.g. locking)."""
    return db.is_postgres


@functools.lru_cache(maxsize=1024)
def _pg_statement(sql: str) -> str:
    """`:name` placeholders in psycopg's `%(name)s` style (a literal `%` doubled)."""
    return _PLACEHOLDER.sub(r"%(\1)s", sql.replace("%", "%%"))


_PLACEHOLDER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def _cursor(db: dataset.Database, sql: str, params: dict):
    """Run `sql` on the driver connection under the greenlet's SQLAlchemy connection.

    The hot path: SQLAlchemy's execution layer costs ~100 us a statement, the driver ~10 us. The
    connection and its transaction are the ones dataset and SQLAlchemy manage, so `with db:` commits
    and rolls these statements back like any other.
    """
    raw = db.executable.connection.driver_connection
    dbapi = db.engine.dialect.dbapi
    try:
        if db.is_postgres:
            from psycopg.rows import dict_row  # psycopg is only installed where PostgreSQL is used

            cursor = raw.cursor(row_factory=dict_row)
            cursor.execute(_pg_statement(sql), params)
            return cursor
        return raw.execute(sql, params)
    except dbapi.Error as exc:
        # The same exception classes SQLAlchemy raises (IntegrityError, OperationalError, ...).
        raise sa.exc.DBAPIError.instance(sql, params, exc, dbapi.Error, dialect=db.engine.dialect) from exc


def _rows(cursor, limit: int | None = None) -> list[dict]:
    if cursor.description is None:
        return []
    fetched = cursor.fetchall() if limit is None else cursor.fetchmany(limit)
    if isinstance(cursor, sqlite3.Cursor):
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in fetched]
    return list(fetched)


def execute(db: dataset.Database, sql: str, **params: object) -> int:
    """Run a write statement inside the caller's `with db:` block; returns the affected row count."""
    if not db.in_transaction:
        raise RuntimeError("execute() writes must run inside `with db:` (stack-notes trap 3)")
    return _cursor(db, sql, params).rowcount


def fetch_one(db: dataset.Database, sql: str, **params: object) -> dict | None:
    """The first row of a query as a dict, or None."""
    rows = _rows(_cursor(db, sql, params), limit=1)
    return rows[0] if rows else None


def fetch_all(db: dataset.Database, sql: str, **params: object) -> list[dict]:
    """All rows of a query as dicts."""
    return _rows(_cursor(db, sql, params))


def insert(db: dataset.Database, table: str, row: dict) -> int:
    """Insert one row inside the caller's `with db:` block and return its id.

    Plain SQL with RETURNING (SQLite >= 3.35 and PostgreSQL): no table reflection, so a table with
    foreign keys does not make SQLAlchemy reflect (and warn about) the tables it points to.
    """
    columns = list(row)
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)}) RETURNING id"
    )
    if not db.in_transaction:
        raise RuntimeError("insert() must run inside `with db:`")
    return int(_cursor(db, sql, row).fetchone()[0 if not db.is_postgres else "id"])


def update(db: dataset.Database, table: str, row_id: int, changes: dict) -> int:
    """Set some columns of the row `row_id` inside the caller's `with db:` block; returns the row count.

    Like insert(), plain SQL: no table reflection (and its warnings about expression indexes).
    """
    columns = [column for column in changes if column != "id"]
    if not columns:
        return 0
    assignments = ", ".join(f"{column} = :{column}" for column in columns)
    return execute(db, f"UPDATE {table} SET {assignments} WHERE id = :id", **{**changes, "id": row_id})

"""Versioned schema migrations, applied once, in order, under a lock.

Each migration is a module `mNNN_<name>.py` with `upgrade(conn)` (a SQLAlchemy connection inside a
transaction). The runner is safe when several workers start together: on PostgreSQL it takes an
advisory lock inside the transaction, on SQLite `BEGIN IMMEDIATE` makes the run exclusive, and
versions already recorded in `schema_migrations` are skipped.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)
ADVISORY_LOCK_ID = 7_214_001


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    upgrade: Callable[[Connection], None]


def all_migrations() -> list[Migration]:
    """Every migration module in this package, ordered by version."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if not (info.name.startswith("m") and info.name[1:4].isdigit()):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.append(Migration(int(info.name[1:4]), info.name[5:], module.upgrade))
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise RuntimeError(f"duplicate migration versions: {sorted(versions)}")
    return sorted(found, key=lambda m: m.version)


def _ensure_version_table(conn: Connection) -> sa.Table:
    meta = sa.MetaData()
    table = sa.Table(
        "schema_migrations",
        meta,
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("applied_at", sa.DateTime, nullable=False, server_default=sa.func.current_timestamp()),
    )
    meta.create_all(conn, checkfirst=True)
    return table


def migrate(engine: Engine) -> list[int]:
    """Apply the migrations that are missing; return the versions applied by this call."""
    applied_now: list[int] = []
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.begin()
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_ID})
        try:
            table = _ensure_version_table(conn)
            done = {row[0] for row in conn.execute(sa.select(table.c.version))}
            for migration in all_migrations():
                if migration.version in done:
                    continue
                migration.upgrade(conn)
                conn.execute(table.insert().values(version=migration.version, name=migration.name))
                applied_now.append(migration.version)
                log.info("applied migration %03d_%s", migration.version, migration.name)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    return applied_now


def current_version(engine: Engine) -> int:
    """The highest applied migration version (0 for an empty database)."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("schema_migrations"):
            return 0
        value = conn.execute(sa.text("SELECT MAX(version) FROM schema_migrations")).scalar()
        return int(value or 0)

"""gunicorn's master prepares the database before it forks the workers."""

import importlib
import sqlite3

from common.db import fetch_one
from tests.conftest import make_app


def _master_hooks(monkeypatch, data_dir):
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    import common.gunicorn_config as config

    return importlib.reload(config)  # the module reads its configuration when imported


def _journal_mode(path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA journal_mode").fetchone()[0]


def test_the_master_leaves_a_fresh_sqlite_file_migrated_and_in_wal_mode(tmp_path, monkeypatch):
    # Workers opening a rollback-journal file together each try to switch it to WAL, and a
    # concurrent switch fails at once with "database is locked": a worker then fails to boot.
    _master_hooks(monkeypatch, tmp_path / "data").on_starting(None)
    assert _journal_mode(tmp_path / "data" / "parley.db") == "wal"
    app = make_app(tmp_path / "data")
    assert fetch_one(app.extensions["parley.db"], "SELECT COUNT(*) AS n FROM schema_migrations")["n"] > 0



def test_a_booted_worker_moves_its_start_up_objects_out_of_the_collectors_way(tmp_path, monkeypatch):
    import gc

    hooks = _master_hooks(monkeypatch, tmp_path / "data")
    try:
        hooks.post_worker_init(None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()  # this test process is no worker

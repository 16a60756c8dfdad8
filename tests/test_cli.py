"""The `parley` command line."""

import json

from click.testing import CliRunner

from common.cli import main
from common.db import fetch_one
from tests.conftest import make_app


def _run(tmp_path, monkeypatch, *args, input=None):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BCRYPT_ROUNDS", "4")
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_init_db_creates_the_schema(tmp_path, monkeypatch):
    result = _run(tmp_path, monkeypatch, "init-db")
    assert result.exit_code == 0 and "schema at version" in result.output
    assert (tmp_path / "data" / "parley.db").exists()


def test_create_admin_makes_an_active_admin(tmp_path, monkeypatch):
    result = _run(tmp_path, monkeypatch, "create-admin", "--username", "boss", "--password", "s3cret-pass")
    assert result.exit_code == 0, result.output
    app = make_app(tmp_path / "data")
    row = fetch_one(app.extensions["parley.db"], "SELECT role, status FROM users WHERE username = 'boss'")
    assert row == {"role": "ADMIN", "status": "ACTIVE"}


def test_create_admin_refuses_a_weak_password(tmp_path, monkeypatch):
    result = _run(tmp_path, monkeypatch, "create-admin", "--username", "boss", "--password", "short")
    assert result.exit_code != 0 and "at least 8" in result.output


def test_reset_password_lets_the_user_log_in_with_the_new_one(tmp_path, monkeypatch):
    _run(tmp_path, monkeypatch, "create-admin", "--username", "boss", "--password", "s3cret-pass")
    result = _run(tmp_path, monkeypatch, "reset-password", "boss", "--password", "n3w-password")
    assert result.exit_code == 0, result.output
    app = make_app(tmp_path / "data")
    client = app.test_client()
    assert client.post("/api/auth/login", json={"username": "boss", "password": "n3w-password"}).status_code == 200
    assert client.post("/api/auth/login", json={"username": "boss", "password": "s3cret-pass"}).status_code == 401


def test_config_prints_masked_secrets(tmp_path, monkeypatch):
    result = _run(tmp_path, monkeypatch, "config")
    assert result.exit_code == 0
    shown = json.loads(result.output)
    secrets = json.loads((tmp_path / "data" / "secrets.json").read_text())
    assert secrets["jwt_secret"] not in result.output
    assert shown["config"]["jwt_secret"].startswith("***")
    assert shown["settings"]["registration_enabled"] is True


def test_init_db_leaves_the_sqlite_file_in_wal_mode(tmp_path, monkeypatch):
    import sqlite3

    _run(tmp_path, monkeypatch, "init-db")
    with sqlite3.connect(tmp_path / "data" / "parley.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

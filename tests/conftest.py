"""Shared fixtures: the real app on a real SQLite file (and PostgreSQL where a test asks for it).

gevent has patched the standard library before this file is imported (tests/gevent_patch.py), exactly
as the gunicorn gevent worker does in production, so greenlets, sockets and requests behave as there.
"""

import hashlib
import os
import uuid

import pytest
import sqlalchemy as sa

from common.config import load_config
from tests.api_client import ApiClient
from tests.fake_provider import FakeProvider

PG_ADMIN_URL = os.environ.get("PARLEY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PASSWORD = "correct-horse-1"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path):
    """Tests never read the developer's .env or environment settings."""
    for name in list(os.environ):
        if name in {"DATABASE_URL", "JWT_SECRET", "ENCRYPTION_KEY", "APP_ENV", "CORS_ORIGIN", "ENABLE_CORS"}:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def make_app(data_dir, database_url: str = "", **overrides):
    from wsgi import create_app

    config = load_config(
        data_dir=str(data_dir),
        database_url=database_url,
        # Two apps on one data dir are two workers of one deployment: they share their secrets.
        jwt_secret=hashlib.sha256(f"jwt:{data_dir}".encode()).hexdigest(),
        encryption_key=hashlib.sha256(f"enc:{data_dir}".encode()).hexdigest(),
        bcrypt_rounds=4,
        log_level="WARNING",
        **overrides,
    )
    return create_app(config)


def close_app(application) -> None:
    """Stop the app's generations and close its database (the end of a worker)."""
    application.extensions["parley.generations"].shutdown()
    application.extensions["parley.db"].close()


@pytest.fixture
def app(tmp_path):
    application = make_app(tmp_path / "data")
    yield application
    close_app(application)


@pytest.fixture(scope="session")
def fake():
    """The fake provider server (OpenAI, Azure, Ollama, Gemini wire formats), one per test session."""
    server = FakeProvider().start()
    yield server
    server.stop()


@pytest.fixture
def api(app):
    return ApiClient(app)


@pytest.fixture
def admin(api):
    """The first account: an active admin, logged in."""
    return api.register_admin("admin", PASSWORD)


def _postgres_available() -> bool:
    try:
        engine = sa.create_engine(PG_ADMIN_URL)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh PostgreSQL database for this test session (skipped, visibly, when none is reachable)."""
    if not _postgres_available():
        pytest.skip("PostgreSQL is not reachable at " + PG_ADMIN_URL)
    name = f"parley_test_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_app(request, tmp_path):
    """The app on each supported database: SQLite, then PostgreSQL (a fresh schema each test)."""
    if request.param == "sqlite":
        application = make_app(tmp_path / "data")
    else:
        url = request.getfixturevalue("postgres_url")
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        engine.dispose()
        application = make_app(tmp_path / "data", database_url=url)
    yield application
    close_app(application)

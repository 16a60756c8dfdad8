"""Shared helpers for the connection, catalog and model-access tests (no test functions here)."""

from __future__ import annotations

import pytest

from common.db import fetch_all, fetch_one, release
from tests.api_client import ApiClient
from tests.conftest import PASSWORD
from tests.fake_provider import FakeProvider

SECRET = "sk-test-SECRET-123456"


@pytest.fixture(scope="module")
def fake():
    """One fake upstream (OpenAI, Azure, Ollama, Gemini wire formats) per test module."""
    with FakeProvider() as server:
        yield server


def create(client: ApiClient, fake: FakeProvider | None = None, provider: str = "openai", **fields) -> dict:
    """Create a connection through the API (asserting 201) and return its shape."""
    body = {"provider": provider, "displayName": fields.pop("displayName", f"My {provider}")}
    if fake is not None:
        body["baseUrl"] = fake.base_url(provider)
    if provider == "azure_openai":
        body["azureApiVersion"] = "2024-10-21"
    body.update(fields)
    reply = client.post("/api/connections", body)
    assert reply.status == 201, reply.body
    return reply.data


def settings(admin: ApiClient, **values) -> None:
    """Change system settings as the admin."""
    reply = admin.put("/api/settings/system", values)
    assert reply.status == 200, reply.body


def user(api: ApiClient, admin: ApiClient, name: str) -> ApiClient:
    """A new active user, logged in."""
    return api.user(admin, name, PASSWORD)


def models_of(client: ApiClient) -> dict[str, dict]:
    """GET /api/catalog/models as {id: model}."""
    reply = client.get("/api/catalog/models")
    assert reply.status == 200, reply.body
    return {m["id"]: m for m in reply.data}


def db_rows(app, sql: str, **params) -> list[dict]:
    """Rows of a raw query on the app's database."""
    db = app.extensions["parley.db"]
    try:
        return fetch_all(db, sql, **params)
    finally:
        release(db)


def db_row(app, sql: str, **params) -> dict | None:
    """One row of a raw query on the app's database."""
    db = app.extensions["parley.db"]
    try:
        return fetch_one(db, sql, **params)
    finally:
        release(db)


def db_write(app, sql: str, **params) -> None:
    """Run one write statement on the app's database."""
    from common.db import execute

    db = app.extensions["parley.db"]
    try:
        with db as tx:
            execute(tx, sql, **params)
    finally:
        release(db)

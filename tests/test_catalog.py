"""The model catalog: caching with expiry, stale-while-revalidate, refresh, and admin overrides."""

from __future__ import annotations

from datetime import timedelta

import pytest

from common import catalog
from common.catalog import refresh_all
from common.crypto import encrypt_secret
from common.db import as_datetime, utcnow
from tests.connection_helpers import create, db_row, db_rows, db_write, fake, models_of, settings, user

__all__ = ["fake"]


def model_requests(fake) -> int:
    return len(fake.requests_log(path="/v1/models"))


def test_a_new_connection_is_fetched_on_first_read_then_served_from_the_cache(api, admin, fake, app):
    conn = create(admin, fake, "openai", prefixId="oa")
    fake.reset()
    assert "oa.fake-chat" in models_of(admin)
    assert model_requests(fake) == 1
    for _ in range(3):
        assert "oa.fake-chat" in models_of(admin)
        assert "oa.fake-chat" in models_of(user(api, admin, f"user{_}"))
    assert model_requests(fake) == 1
    state = db_row(app, "SELECT * FROM catalog_state WHERE connection_id = :c", c=conn["id"])
    fetched, expires = as_datetime(state["last_fetched_at"]), as_datetime(state["expires_at"])
    assert timedelta(seconds=590) <= expires - fetched <= timedelta(seconds=610)
    assert state["last_error"] is None


def test_concurrent_first_reads_fetch_once_per_process(api, admin, fake):
    import gevent

    create(admin, fake, "openai", prefixId="oa")
    fake.reset()
    jobs = [gevent.spawn(models_of, admin) for _ in range(5)]
    gevent.joinall(jobs, timeout=30)
    assert all("oa.fake-chat" in job.value for job in jobs)
    assert model_requests(fake) == 1


def test_an_expired_cache_is_served_and_refreshed_in_the_background(api, admin, fake, app):
    conn = create(admin, fake, "openai", prefixId="oa")
    models_of(admin)
    past = utcnow() - timedelta(seconds=5)
    db_write(app, "UPDATE catalog_state SET expires_at = :p WHERE connection_id = :c", p=past, c=conn["id"])
    db_write(app, "DELETE FROM catalog_models WHERE connection_id = :c AND raw_id = 'fake-think'", c=conn["id"])
    fake.reset()
    stale = models_of(admin)
    assert "oa.fake-chat" in stale and "oa.fake-think" not in stale  # the cached rows, at once
    catalog.wait_for_background(10)
    assert model_requests(fake) == 1
    assert "oa.fake-think" in models_of(admin)
    state = db_row(app, "SELECT * FROM catalog_state WHERE connection_id = :c", c=conn["id"])
    assert as_datetime(state["expires_at"]) > utcnow() + timedelta(seconds=500)


def test_a_failed_fetch_keeps_the_cached_models_and_records_the_error(api, admin, fake, app):
    conn = create(admin, fake, "openai", prefixId="oa", apiKey="sk-good-12345678")
    assert "oa.fake-chat" in models_of(admin)
    # the key goes bad upstream (written directly, so nothing invalidates the cache)
    bad = encrypt_secret("bad-0000000000", app.config["PARLEY"].encryption_key)
    db_write(app, "UPDATE connection_keys SET secret_encrypted = :s WHERE connection_id = :c", s=bad, c=conn["id"])
    reply = admin.post("/api/catalog/models/refresh", {"connectionId": conn["id"]})
    assert reply.status == 200 and reply.data["failed"] == 1
    assert "401" in reply.data["results"][0]["error"]
    state = db_row(app, "SELECT * FROM catalog_state WHERE connection_id = :c", c=conn["id"])
    assert "401" in state["last_error"]
    assert as_datetime(state["expires_at"]) <= utcnow() + timedelta(seconds=catalog.ERROR_RETRY_SECONDS + 1)
    assert "oa.fake-chat" in models_of(admin)  # the last good catalog is still served


def test_an_unreachable_connection_does_not_hide_the_others(api, admin, fake):
    create(admin, None, "openai", baseUrl="http://127.0.0.1:9/v1", prefixId="dead")
    create(admin, fake, "openai", prefixId="live")
    models = models_of(admin)
    assert "live.fake-chat" in models and "demo-chat" in models
    assert not any(m.startswith("dead.") for m in models)


def test_the_refresh_endpoint(api, admin, fake):
    create(admin, fake, "openai", prefixId="oa")
    create(admin, fake, "ollama", prefixId="ol")
    fake.reset()
    reply = admin.post("/api/catalog/models/refresh")
    assert reply.status == 200, reply.body
    assert reply.data["refreshed"] == 3 and reply.data["failed"] == 0  # demo, openai, ollama
    assert model_requests(fake) == 1 and fake.requests_log(path="/api/tags")
    alice = user(api, admin, "alice")
    assert alice.post("/api/catalog/models/refresh").status == 403
    assert api.with_token(None).post("/api/catalog/models/refresh").status == 401
    assert admin.post("/api/catalog/models/refresh", {"connectionId": 999}).status == 404
    assert admin.post("/api/catalog/models/refresh", {"connectionId": "1"}).status == 400


def test_refresh_all_for_the_jobs_process(api, admin, fake, app):
    create(admin, fake, "openai", prefixId="oa")
    first = refresh_all(app)
    assert first["refreshed"] == 2 and first["failed"] == 0
    assert refresh_all(app) == {"refreshed": 0, "failed": 0, "skipped": 2}
    assert refresh_all(app, force=True)["refreshed"] == 2


def test_changing_model_ids_updates_the_catalog_at_once(api, admin, fake):
    conn = create(admin, fake, "openai", prefixId="ids", apiKeys=[{"apiKey": "sk-1234567890ab", "modelIds": ["a"]}])
    assert "ids.a" in models_of(admin)
    key_id = conn["apiKeys"][0]["id"]
    admin.put(f"/api/connections/{conn['id']}", {"apiKeys": [{"id": key_id, "modelIds": ["b", "c"]}]})
    models = models_of(admin)
    assert "ids.a" not in models and {"ids.b", "ids.c"} <= set(models)


# --- overrides ---------------------------------------------------------------------------------------


def test_a_context_window_override_wins(api, admin, fake):
    conn = create(admin, fake, "google_genai", prefixId="gm", apiKey="gemini-key-abcdef")
    assert models_of(admin)["gm.fake-chat"]["contextWindow"] == 1048576
    reply = admin.put(
        "/api/catalog/models/tags",
        {
            "connectionId": conn["id"],
            "rawId": "fake-chat",
            "context_window": 4096,
            "max_output_tokens": 512,
            "temperature": 0.2,
            "tags": [{"name": "cheap"}],
            "capabilities": {"vision": True},
        },
    )
    assert reply.status == 200, reply.body
    assert reply.data["context_window"] == 4096 and reply.data["id"] == "gm.fake-chat"
    model = models_of(admin)["gm.fake-chat"]
    assert model["contextWindow"] == 4096 and model["maxOutputTokens"] == 512
    assert model["temperature"] == 0.2 and model["tags"] == [{"name": "cheap"}]
    assert model["capabilities"]["vision"] is True
    # a partial update changes only what it sends; null clears
    admin.put("/api/catalog/models/tags", {"connectionId": conn["id"], "rawId": "fake-chat", "contextWindow": None})
    model = models_of(admin)["gm.fake-chat"]
    assert model["contextWindow"] == 1048576 and model["maxOutputTokens"] == 512
    listed = admin.get("/api/catalog/models/overrides").data
    assert [(o["connectionId"], o["rawId"]) for o in listed if o["connectionId"] == conn["id"]] == [
        (conn["id"], "fake-chat")
    ]
    deleted = admin.delete("/api/catalog/models/tags", {"connectionId": conn["id"], "rawId": "fake-chat"})
    assert deleted.status == 200
    assert models_of(admin)["gm.fake-chat"]["maxOutputTokens"] == 8192
    again = admin.delete(f"/api/catalog/models/tags?connectionId={conn['id']}&rawId=fake-chat")
    assert again.status == 404


def test_without_any_window_the_setting_is_the_default(api, admin, fake):
    settings(admin, max_context_tokens=5000)
    create(admin, fake, "openai", prefixId="x", apiKeys=[{"apiKey": "sk-1234567890ab", "modelIds": ["mystery-model"]}])
    assert models_of(admin)["x.mystery-model"]["contextWindow"] == 5000
    create(admin, fake, "openai", prefixId="y", apiKeys=[{"apiKey": "sk-1234567890ab", "modelIds": ["gpt-4o-mini"]}])
    assert models_of(admin)["y.gpt-4o-mini"]["contextWindow"] == 128000  # the built-in table


def test_the_demo_seed_overrides_are_listed(api, admin):
    listed = admin.get("/api/catalog/models/overrides").data
    demo = {o["rawId"]: o for o in listed if o["connectionId"] == 1}
    assert set(demo) == {"demo-chat", "demo-reasoner"}
    assert demo["demo-chat"]["access_policy"] == {"anonymous": "allow", "user": "inherit"}


def test_seeded_overrides_cover_every_demo_model():
    from common.migrations.m002_providers import DEMO_MODEL_IDS
    from common.providers.demo import DemoAdapter

    assert {m.raw_id for m in DemoAdapter().list_models()} == set(DEMO_MODEL_IDS)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"connectionId": 1},
        {"connectionId": "1", "rawId": "demo-chat"},
        {"connectionId": 1, "rawId": ""},
        {"connectionId": 1, "rawId": "demo-chat", "context_window": 0},
        {"connectionId": 1, "rawId": "demo-chat", "context_window": "big"},
        {"connectionId": 1, "rawId": "demo-chat", "temperature": 3},
        {"connectionId": 1, "rawId": "demo-chat", "temperature": True},
        {"connectionId": 1, "rawId": "demo-chat", "temperature": 10**400},
        {"connectionId": 1, "rawId": "demo-chat", "access_policy": {"user": "maybe"}},
        {"connectionId": 1, "rawId": "demo-chat", "access_policy": ["allow"]},
        {"connectionId": 1, "rawId": "demo-chat", "tags": [{"name": ""}]},
        {"connectionId": 2**80, "rawId": "demo-chat"},
    ],
)
def test_bad_override_bodies_are_400(api, admin, body):
    reply = admin.put("/api/catalog/models/tags", body)
    assert reply.status == 400 and reply.code == "validation_error", reply.body


def test_overrides_are_for_admins_and_known_connections(api, admin):
    alice = user(api, admin, "alice")
    body = {"connectionId": 1, "rawId": "demo-chat", "context_window": 10}
    assert alice.put("/api/catalog/models/tags", body).status == 403
    assert alice.get("/api/catalog/models/overrides").status == 403
    assert alice.delete("/api/catalog/models/tags", {"connectionId": 1, "rawId": "demo-chat"}).status == 403
    assert admin.put("/api/catalog/models/tags", {**body, "connectionId": 4242}).status == 404
    assert admin.delete("/api/catalog/models/tags", {"connectionId": 1}).status == 400
    assert admin.delete("/api/catalog/models/tags?connectionId=" + "9" * 5000 + "&rawId=x").status == 400


def test_an_override_may_precede_the_model(api, admin, app):
    reply = admin.put("/api/catalog/models/tags", {"connectionId": 1, "rawId": "future-model", "tags": []})
    assert reply.status == 200
    assert db_rows(app, "SELECT raw_id FROM model_overrides WHERE raw_id = 'future-model'")


# --- every database ----------------------------------------------------------------------------------


def test_catalog_and_overrides_on_every_database(any_db_app, fake):
    import gevent

    from tests.api_client import ApiClient
    from tests.conftest import PASSWORD

    app = any_db_app
    root = ApiClient(app).register_admin("root", PASSWORD)
    conn = create(root, fake, "openai", prefixId="pg", apiKey="sk-every-db-1234")
    anon = ApiClient(app)
    assert {"demo-chat", "demo-reasoner"} <= set(models_of(anon))
    assert "pg.fake-chat" in models_of(root)
    # concurrent refreshes of the same connection serialize on the catalog_state row
    jobs = [gevent.spawn(root.post, "/api/catalog/models/refresh", {"connectionId": conn["id"]}) for _ in range(4)]
    gevent.joinall(jobs, timeout=30)
    assert all(j.value.status == 200 and j.value.data["failed"] == 0 for j in jobs)
    rows = db_rows(app, "SELECT raw_id FROM catalog_models WHERE connection_id = :c", c=conn["id"])
    assert len(rows) == len({r["raw_id"] for r in rows}) == 4
    body = {
        "connectionId": conn["id"],
        "rawId": "fake-chat",
        "context_window": 1234,
        "access_policy": {"anonymous": "allow"},
    }
    puts = [gevent.spawn(root.put, "/api/catalog/models/tags", body) for _ in range(3)]
    gevent.joinall(puts, timeout=30)
    assert all(j.value.status == 200 for j in puts)
    assert models_of(anon)["pg.fake-chat"]["contextWindow"] == 1234
    assert root.put(f"/api/connections/{conn['id']}", {"baseUrl": fake.url + "/x/v1"}).code == "api_key_required"
    assert root.delete(f"/api/connections/{conn['id']}").status == 200
    assert db_rows(app, "SELECT * FROM model_overrides WHERE connection_id = :c", c=conn["id"]) == []
    assert "pg.fake-chat" not in models_of(anon)

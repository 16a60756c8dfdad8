"""/api/models: the seed 000/001/003 model routes on top of connections and the catalog."""

from __future__ import annotations

import pytest

from tests.connection_helpers import SECRET, fake, models_of, settings, user

__all__ = ["fake"]


def personal_body(fake, **extra) -> dict:
    return {"name": "My model", "provider": "openai", "baseUrl": fake.openai_base_url, "apiKey": SECRET, **extra}


def test_the_list_has_the_seed_003_fields(api, admin):
    for client in (api.with_token(None), admin):
        reply = client.get("/api/models")
        assert reply.status == 200
        demo = next(m for m in reply.data if m["id"] == "demo-chat")
        assert demo["context_limit"] == demo["contextWindow"] == 8192
        assert demo["pricing_per_1k_tokens"] is None and demo["is_active"] is True
        assert demo["name"] == "Demo Chat" and demo["provider"] == "demo"


def test_the_list_follows_the_access_policy(api, admin):
    settings(admin, model_access_default_user="deny")
    alice = user(api, admin, "alice")
    assert alice.get("/api/models").data == []


def test_personal_model_configurations_are_off_by_default(api, admin, fake):
    alice = user(api, admin, "alice")
    reply = alice.post("/api/models", personal_body(fake))
    assert reply.status == 403 and reply.code == "personal_connections_disabled"
    assert alice.get("/api/models/1").status == 403
    assert api.with_token(None).post("/api/models", personal_body(fake)).status == 401


def test_personal_model_configurations_belong_to_their_owner(api, admin, fake):
    settings(admin, personal_connections_enabled=True, outbound_allow_hosts="127.0.0.1")
    alice, bob = user(api, admin, "alice"), user(api, admin, "bob")
    created = alice.post("/api/models", personal_body(fake, prefixId="mine"))
    assert created.status == 201, created.body
    conn = created.data
    assert conn["displayName"] == "My model" and conn["ownerUserId"] is not None
    assert conn["apiKeys"][0]["apiKeyMasked"] == "sk-...3456" and SECRET not in str(created.body)
    cid = conn["id"]
    assert alice.get(f"/api/models/{cid}").data["id"] == cid
    renamed = alice.put(f"/api/models/{cid}", {"displayName": "Renamed", "apiKey": ""})
    assert renamed.status == 200 and renamed.data["displayName"] == "Renamed"
    assert renamed.data["apiKeys"][0]["hasStoredApiKey"] is True
    assert "mine.fake-chat" in models_of(alice) and "mine.fake-chat" not in models_of(bob)
    for other in (bob, admin):
        assert other.get(f"/api/models/{cid}").status == 404
        assert other.put(f"/api/models/{cid}", {"displayName": "x"}).status == 404
        assert other.delete(f"/api/models/{cid}").status == 404
    assert alice.delete(f"/api/models/{cid}").status == 200
    assert alice.get(f"/api/models/{cid}").status == 404


def test_system_connections_are_not_personal_model_configurations(api, admin):
    settings(admin, personal_connections_enabled=True)
    for method in (admin.get, admin.delete):
        assert method("/api/models/1").status == 404  # the demo connection
    assert admin.put("/api/models/1", {"displayName": "x"}).status == 404


def test_personal_base_urls_are_checked(api, admin, fake):
    settings(admin, personal_connections_enabled=True)
    alice = user(api, admin, "alice")
    for url in (fake.openai_base_url, "http://169.254.169.254/v1"):
        reply = alice.post("/api/models", personal_body(fake, baseUrl=url))
        assert reply.status == 400 and reply.code == "outbound_blocked"


def test_admins_create_system_connections(api, admin, fake):
    reply = admin.post("/api/models/system", {"provider": "openai", "baseUrl": fake.openai_base_url, "prefixId": "sys"})
    assert reply.status == 201, reply.body
    assert reply.data["ownerUserId"] is None
    assert "sys.fake-chat" in {m["id"] for m in admin.get("/api/models").data}
    alice = user(api, admin, "alice")
    assert alice.post("/api/models/system", {"provider": "demo"}).status == 403
    assert alice.get("/api/models").status == 200


@pytest.mark.parametrize("path", ["/api/models", "/api/models/system"])
@pytest.mark.parametrize(
    "body",
    [
        [],
        "x",
        3,
        {},
        {"provider": "openai"},
        {"provider": ["openai"]},
        {"provider": "openai", "baseUrl": 5},
        {"provider": "openai", "baseUrl": "javascript:alert(1)"},
        {"name": 7, "provider": "demo"},
    ],
)
def test_bad_bodies_are_4xx(api, admin, path, body):
    settings(admin, personal_connections_enabled=True)
    reply = admin.post(path, body)
    assert 400 <= reply.status < 500, reply.body
    assert reply.body["success"] is False and isinstance(reply.body["error"], str)


def test_bad_update_bodies_are_4xx(api, admin, fake):
    settings(admin, personal_connections_enabled=True, outbound_allow_hosts="127.0.0.1")
    created = admin.post("/api/models", personal_body(fake))
    cid = created.data["id"]
    for body in (
        [],
        {"baseUrl": ""},
        {"baseUrl": "ftp://x"},
        {"apiKeys": [{"id": 999}]},
        {"enable": "no"},
        {"provider": "nope"},
    ):
        reply = admin.put(f"/api/models/{cid}", body)
        assert 400 <= reply.status < 500, (body, reply.body)

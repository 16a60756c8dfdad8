"""/api/connections: system and personal connections, keys at rest, verify, export/import, SSRF rules."""

from __future__ import annotations

import json
import logging

import pytest

from tests.api_client import ApiClient
from tests.conftest import make_app
from tests.connection_helpers import SECRET, create, db_row, db_rows, fake, models_of, settings, user

__all__ = ["fake"]

PROVIDERS = ["openai", "azure_openai", "ollama", "google_genai"]


# --- system connections against the fake upstream ------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_admin_creates_verifies_and_lists_each_provider(api, admin, fake, provider):
    conn = create(admin, fake, provider, apiKey="sk-fake-key-0001", prefixId=provider[:3])
    assert conn["provider"] == provider and conn["ownerUserId"] is None
    assert conn["apiKeys"][0]["hasStoredApiKey"] is True
    assert conn["apiKeys"][0]["apiKeyMasked"] == "sk-...0001"

    verified = admin.post("/api/connections/verify", {"connectionId": conn["id"]})
    assert verified.status == 200, verified.body
    result = verified.data["results"][0]
    assert result["success"] is True, result
    assert verified.data["successCount"] == 1 and verified.data["totalModels"] >= 2
    raw_ids = {m["rawId"] for m in result["models"]}
    assert any(r.startswith("fake-chat") for r in raw_ids)

    models = models_of(admin)
    mine = {m["rawId"]: m for m in models.values() if m["connectionId"] == conn["id"]}
    assert set(mine) == raw_ids
    for model in mine.values():
        assert model["id"] == f"{provider[:3]}.{model['rawId']}"
        assert isinstance(model["contextWindow"], int) and model["contextWindow"] > 0
        assert model["channelName"] == f"My {provider}"


def test_context_windows_come_from_the_provider_when_it_tells(api, admin, fake):
    gemini = create(admin, fake, "google_genai", apiKey="gemini-key-abcdef")
    ollama = create(admin, fake, "ollama")
    models = {(m["connectionId"], m["rawId"]): m for m in models_of(admin).values()}
    assert models[(gemini["id"], "fake-chat")]["contextWindow"] == 1048576
    assert models[(gemini["id"], "fake-chat")]["maxOutputTokens"] == 8192
    assert models[(ollama["id"], "fake-chat:latest")]["contextWindow"] in (8192, 131072)
    assert models[(ollama["id"], "fake-vision:latest")]["capabilities"]["vision"] is True


def test_the_key_is_sent_to_the_provider(api, admin, fake):
    fake.reset()
    conn = create(admin, fake, "openai", apiKey=SECRET)
    assert admin.post("/api/connections/verify", {"connectionId": conn["id"]}).data["successCount"] == 1
    entry = fake.last_request(path="/v1/models")
    assert entry["auth_present"] and entry["auth_key_last4"] == "3456"


def test_a_bad_key_fails_verification_with_a_readable_error(api, admin, fake):
    conn = create(admin, fake, "openai", apiKey="bad-key-0000000000")
    result = admin.post("/api/connections/verify", {"connectionId": conn["id"]}).data["results"][0]
    assert result["success"] is False and "401" in result["error"]


def test_verify_a_payload_before_saving(api, admin, fake):
    reply = admin.post(
        "/api/connections/verify",
        {
            "provider": "openai",
            "baseUrl": fake.openai_base_url,
            "apiKeys": [{"apiKey": "sk-a-1111111111"}, {"apiKey": "bad-b-22222222"}],
        },
    )
    assert reply.status == 200
    assert [r["success"] for r in reply.data["results"]] == [True, False]
    assert reply.data["successCount"] == 1 and reply.data["failureCount"] == 1


def test_model_ids_on_a_key_are_the_catalog(api, admin, fake):
    conn = create(admin, fake, "openai", apiKeys=[{"apiKey": "sk-x-1234567890", "modelIds": ["only-this", "and-that"]}])
    mine = sorted(m["rawId"] for m in models_of(admin).values() if m["connectionId"] == conn["id"])
    assert mine == ["and-that", "only-this"]


# --- secrets ---------------------------------------------------------------------------------------


def test_the_secret_never_appears_in_logs_or_responses(api, admin, fake, caplog, app):
    caplog.set_level(logging.DEBUG)
    bodies = []

    def record(reply):
        bodies.append(json.dumps(reply.body))
        return reply

    conn = record(
        admin.post(
            "/api/connections",
            {"provider": "openai", "baseUrl": fake.openai_base_url, "apiKey": SECRET, "displayName": "Leaky?"},
        )
    )
    cid = conn.data["id"]
    record(admin.put(f"/api/connections/{cid}", {"displayName": "Renamed", "apiKey": ""}))
    record(admin.put(f"/api/connections/{cid}", {"apiKeys": [{"id": conn.data["apiKeys"][0]["id"], "apiKey": SECRET}]}))
    record(admin.post("/api/connections/verify", {"connectionId": cid}))
    record(
        admin.post("/api/connections/verify", {"provider": "openai", "baseUrl": fake.openai_base_url, "apiKey": SECRET})
    )
    record(admin.get("/api/connections"))
    record(admin.get(f"/api/connections/{cid}"))
    record(admin.get("/api/connections/export"))
    record(admin.get("/api/catalog/models"))
    record(admin.post("/api/catalog/models/refresh", {}))
    # an upstream that echoes the key in its error must not leak it either
    bad = record(
        admin.post(
            "/api/connections", {"provider": "openai", "baseUrl": fake.openai_base_url, "apiKey": "bad-" + SECRET}
        )
    )
    record(admin.post("/api/connections/verify", {"connectionId": bad.data["id"]}))
    text = "\n".join(bodies) + "\n" + caplog.text + "\n" + "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET not in text
    assert "SECRET-123456" not in text
    assert "sk-...3456" in text


def test_the_key_is_stored_encrypted(api, admin, app):
    conn = create(admin, None, "openai", baseUrl="https://api.example.com/v1", apiKey=SECRET)
    row = db_row(app, "SELECT * FROM connection_keys WHERE connection_id = :c", c=conn["id"])
    stored = " ".join(str(v) for v in row.values())
    assert SECRET not in stored and "123456" not in stored
    assert row["secret_encrypted"].startswith("v1:")
    assert row["bound_base_url"] == "https://api.example.com/v1"


def test_an_empty_api_key_on_update_keeps_the_stored_secret(api, admin, fake):
    conn = create(admin, fake, "openai", apiKey=SECRET)
    key_id = conn["apiKeys"][0]["id"]
    reply = admin.put(
        f"/api/connections/{conn['id']}", {"apiKeys": [{"id": key_id, "apiKey": "", "apiKeyLabel": "main"}]}
    )
    assert reply.status == 200, reply.body
    key = reply.data["apiKeys"][0]
    assert key["hasStoredApiKey"] and key["apiKeyMasked"] == "sk-...3456" and key["apiKeyLabel"] == "main"
    fake.reset()
    assert admin.post("/api/connections/verify", {"connectionId": conn["id"]}).data["successCount"] == 1
    assert fake.last_request(path="/v1/models")["auth_key_last4"] == "3456"


def test_keys_not_listed_in_an_update_are_removed(api, admin, fake):
    conn = create(admin, fake, "openai", apiKeys=[{"apiKey": "sk-one-11111111"}, {"apiKey": "sk-two-22222222"}])
    first = conn["apiKeys"][0]["id"]
    reply = admin.put(f"/api/connections/{conn['id']}", {"apiKeys": [{"id": first}, {"apiKey": "sk-new-33333333"}]})
    assert [k["apiKeyMasked"] for k in reply.data["apiKeys"]] == ["sk-...1111", "sk-...3333"]
    bogus = admin.put(f"/api/connections/{conn['id']}", {"apiKeys": [{"id": 999999}]})
    assert bogus.status == 400 and bogus.code == "validation_error"


def test_updating_a_key_changes_only_what_is_sent(api, admin, fake):
    conn = create(
        admin, fake, "openai", apiKeys=[{"apiKey": SECRET, "apiKeyLabel": "prod", "modelIds": ["m1"], "enable": False}]
    )
    key_id = conn["apiKeys"][0]["id"]
    reply = admin.put(f"/api/connections/{conn['id']}", {"apiKeys": [{"id": key_id}]})
    key = reply.data["apiKeys"][0]
    assert (key["apiKeyLabel"], key["modelIds"], key["enable"], key["hasStoredApiKey"]) == ("prod", ["m1"], False, True)
    reply = admin.put(f"/api/connections/{conn['id']}", {"apiKeys": [{"id": key_id, "enable": True, "modelIds": []}]})
    key = reply.data["apiKeys"][0]
    assert (key["apiKeyLabel"], key["modelIds"], key["enable"]) == ("prod", [], True)
    demo_to_openai = admin.put("/api/connections/1", {"provider": "openai"})
    assert demo_to_openai.status == 400 and "baseUrl" in demo_to_openai.data["fields"]


def test_changing_the_base_url_without_a_new_key_is_refused(api, admin, fake):
    conn = create(admin, fake, "openai", apiKey=SECRET)
    moved = fake.url + "/elsewhere/v1"
    reply = admin.put(f"/api/connections/{conn['id']}", {"baseUrl": moved})
    assert reply.status == 400 and reply.code == "api_key_required"
    assert reply.data["keyIds"] == [conn["apiKeys"][0]["id"]]
    # a trailing slash or upper-case host is the same URL
    same = admin.put(
        f"/api/connections/{conn['id']}",
        {"baseUrl": fake.openai_base_url.upper().replace("HTTP", "http").replace("/V1", "/v1") + "/"},
    )
    assert same.status == 200, same.body
    renewed = admin.put(f"/api/connections/{conn['id']}", {"baseUrl": moved, "apiKey": "sk-renewed-99999999"})
    assert renewed.status == 200 and renewed.data["baseUrl"] == moved
    assert renewed.data["apiKeys"][0]["apiKeyMasked"] == "sk-...9999"


def test_verify_never_sends_a_stored_key_to_another_base_url(api, admin, fake):
    conn = create(admin, fake, "openai", apiKey=SECRET)
    fake.reset()
    reply = admin.post("/api/connections/verify", {"connectionId": conn["id"], "baseUrl": fake.url + "/attacker/v1"})
    assert reply.status == 400 and reply.code == "api_key_required"
    listed = admin.post(
        "/api/connections/verify",
        {
            "connectionId": conn["id"],
            "baseUrl": fake.url + "/attacker/v1",
            "apiKeys": [{"id": conn["apiKeys"][0]["id"]}],
        },
    )
    assert listed.status == 400 and listed.code == "api_key_required"
    assert fake.requests_log() == []
    # with a key typed in again, it is that key that goes out
    typed = admin.post(
        "/api/connections/verify",
        {"connectionId": conn["id"], "baseUrl": fake.openai_base_url, "apiKey": "sk-typed-77777777"},
    )
    assert typed.status == 200
    assert fake.last_request(path="/v1/models")["auth_key_last4"] == "7777"


# --- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"provider": "openai"}, "baseUrl"),
        ({"baseUrl": "https://x.example/v1"}, "provider"),
        ({"provider": "martian", "baseUrl": "https://x.example"}, "provider"),
        ({"provider": "openai", "baseUrl": "ftp://x.example"}, "baseUrl"),
        ({"provider": "openai", "baseUrl": "https://user:pw@x.example/v1"}, "baseUrl"),
        ({"provider": "openai", "baseUrl": "https://x.example/v1?key=1"}, "baseUrl"),
        ({"provider": "openai", "baseUrl": "https://x.example", "headers": {"Authorization": "Bearer x"}}, "headers"),
        ({"provider": "openai", "baseUrl": "https://x.example", "headers": {"X-A": "a\r\nb"}}, "headers"),
        ({"provider": "openai", "baseUrl": "https://x.example", "headers": ["x"]}, "headers"),
        ({"provider": "openai", "baseUrl": "https://x.example", "prefixId": "has space"}, "prefixId"),
        ({"provider": "openai", "baseUrl": "https://x.example", "tags": "oops"}, "tags"),
        ({"provider": "openai", "baseUrl": "https://x.example", "apiKeys": {"apiKey": "x"}}, "apiKeys"),
        ({"provider": "openai", "baseUrl": "https://x.example", "apiKeys": [{"modelIds": "x"}]}, "apiKeys.0.modelIds"),
        ({"provider": "openai", "baseUrl": "https://x.example", "enable": "yes"}, "enable"),
        ({"provider": "openai", "baseUrl": "https://x.example", "authType": "basic"}, "authType"),
        (
            {"provider": "openai", "baseUrl": "https://x.example", "defaultCapabilities": {"vision": "yes"}},
            "defaultCapabilities",
        ),
        ({"provider": 5, "baseUrl": "https://x.example"}, "provider"),
    ],
)
def test_invalid_payloads_are_validation_errors(api, admin, body, field):
    reply = admin.post("/api/connections", body)
    assert reply.status == 400 and reply.code == "validation_error", reply.body
    assert field in reply.data["fields"], reply.data


@pytest.mark.parametrize(
    "path", ["/api/connections", "/api/connections/verify", "/api/connections/import", "/api/connections/1"]
)
@pytest.mark.parametrize(
    "body",
    [
        [],
        "text",
        7,
        None,
        {"apiKeys": [[]]},
        {"connections": {}},
        {"connectionId": 2**70},
        {"id": "1"},
        {"provider": None, "baseUrl": None},
    ],
)
def test_garbage_never_causes_a_server_error(api, admin, path, body):
    method = admin.put if path.endswith("/1") else admin.post
    reply = method(path, body) if body is not None else method(path, data=b"{bad json", content_type="application/json")
    assert reply.status < 500, reply.body
    if reply.status >= 400:
        assert reply.body["success"] is False and isinstance(reply.body["error"], str)
    else:  # unknown keys are ignored: a harmless no-op update
        assert path.endswith("/1") and reply.body["success"] is True


def test_ids_no_column_can_hold_are_404(api, admin):
    for big in (2**31, 2**63):
        assert admin.get(f"/api/connections/{big}").status == 404
        # non-GET methods: the shared IdConverter refuses the id, and werkzeug then answers 405
        assert admin.delete(f"/api/connections/{big}").status in (404, 405)
        assert admin.put(f"/api/connections/{big}", {"displayName": "x"}).status in (404, 405)
        assert admin.post("/api/connections/verify", {"connectionId": big}).status in (400, 404)


def test_prefix_ids_are_unique_among_system_connections(api, admin):
    create(admin, None, "openai", baseUrl="https://a.example/v1", prefixId="team")
    clash = admin.post(
        "/api/connections", {"provider": "openai", "baseUrl": "https://b.example/v1", "prefixId": "TEAM"}
    )
    assert clash.status == 409 and clash.code == "prefix_taken"


def test_anonymous_and_plain_users_cannot_manage_system_connections(api, admin):
    anon = api.with_token(None)
    assert anon.get("/api/connections").status == 401
    alice = user(api, admin, "alice")
    assert alice.get("/api/connections").status == 403
    assert alice.post("/api/connections", {"provider": "demo"}).status == 403
    assert alice.put("/api/connections/1", {"displayName": "mine"}).status == 403
    settings(admin, personal_connections_enabled=True)
    assert alice.get("/api/connections").data == []
    for method in (alice.get, alice.delete):
        assert method("/api/connections/1").status == 404  # the demo connection is not hers
    assert alice.put("/api/connections/1", {"displayName": "mine"}).status == 404
    assert alice.post("/api/connections/verify", {"connectionId": 1}).status == 404


# --- personal connections ----------------------------------------------------------------------------


def test_personal_connections_are_off_by_default(api, admin, fake):
    alice = user(api, admin, "alice")
    reply = alice.post("/api/connections", {"provider": "openai", "baseUrl": fake.openai_base_url})
    assert reply.status == 403 and reply.code == "personal_connections_disabled"
    assert alice.post("/api/connections/verify", {"provider": "demo"}).status == 403
    assert alice.get("/api/connections/export").status == 403


def test_personal_connections_to_private_or_metadata_addresses_are_refused(api, admin, fake):
    settings(admin, personal_connections_enabled=True)
    alice = user(api, admin, "alice")
    for url in (
        fake.openai_base_url,
        "http://169.254.169.254/latest",
        "http://[::1]:8080",
        "http://0x7f.1/v1",
        "http://localhost./v1",
        "http://10.0.0.1/v1",
    ):
        for path in ("/api/connections", "/api/connections/verify"):
            reply = alice.post(path, {"provider": "openai", "baseUrl": url, "apiKey": SECRET})
            assert reply.status == 400 and reply.code == "outbound_blocked", (url, reply.body)
            assert "allow-list" in reply.error or "not allowed" in reply.error


def test_admin_allow_list_opens_a_host_for_personal_connections(api, admin, fake):
    settings(admin, personal_connections_enabled=True, outbound_allow_hosts="127.0.0.1")
    alice = user(api, admin, "alice")
    conn = create(alice, fake, "openai", apiKey="sk-alice-44444444")
    assert conn["ownerUserId"] is not None
    assert alice.post("/api/connections/verify", {"connectionId": conn["id"]}).data["successCount"] == 1
    assert any(m["connectionId"] == conn["id"] for m in models_of(alice).values())
    # the metadata address stays refused even with the loopback allow-listed
    blocked = alice.post("/api/connections", {"provider": "openai", "baseUrl": "http://169.254.169.254/v1"})
    assert blocked.code == "outbound_blocked"


def test_system_connections_may_reach_private_but_never_metadata_addresses(api, admin):
    ok_reply = admin.post("/api/connections", {"provider": "ollama", "baseUrl": "http://10.1.2.3:11434"})
    assert ok_reply.status == 201
    for url in ("http://169.254.169.254/v1", "http://metadata.google.internal/v1", "http://0.0.0.0:11434"):
        reply = admin.post("/api/connections", {"provider": "ollama", "baseUrl": url})
        assert reply.status == 400 and reply.code == "outbound_blocked", url


def test_personal_connections_belong_to_their_owner_only(api, admin, fake):
    settings(admin, personal_connections_enabled=True, outbound_allow_hosts="127.0.0.1")
    alice, bob = user(api, admin, "alice"), user(api, admin, "bob")
    conn = create(alice, fake, "openai", apiKey="sk-alice-44444444", prefixId="mine")
    cid = conn["id"]
    assert [c["id"] for c in alice.get("/api/connections").data] == [cid]
    assert bob.get("/api/connections").data == []
    assert cid not in [c["id"] for c in admin.get("/api/connections").data]
    for client in (bob, admin):
        assert client.get(f"/api/connections/{cid}").status == 404
        assert client.put(f"/api/connections/{cid}", {"displayName": "stolen"}).status == 404
        assert client.post("/api/connections/verify", {"connectionId": cid}).status == 404
        assert client.delete(f"/api/connections/{cid}").status == 404
    assert "mine.fake-chat" in models_of(alice)
    assert "mine.fake-chat" not in models_of(bob)
    assert "mine.fake-chat" not in models_of(admin)
    assert alice.delete(f"/api/connections/{cid}").status == 200
    assert "mine.fake-chat" not in models_of(alice)


def test_turning_personal_connections_off_hides_them(api, admin, fake):
    settings(admin, personal_connections_enabled=True, outbound_allow_hosts="127.0.0.1")
    alice = user(api, admin, "alice")
    create(alice, fake, "openai", prefixId="mine")
    assert "mine.fake-chat" in models_of(alice)
    settings(admin, personal_connections_enabled=False)
    assert "mine.fake-chat" not in models_of(alice)
    assert alice.get("/api/connections").status == 403


# --- export / import ---------------------------------------------------------------------------------


def test_export_masks_keys_unless_an_admin_asks_for_secrets(api, admin, fake):
    create(admin, fake, "openai", apiKey=SECRET, displayName="Exported")
    masked = admin.get("/api/connections/export")
    assert masked.status == 200 and masked.data["includesSecrets"] is False
    entry = next(c for c in masked.data["connections"] if c["displayName"] == "Exported")
    assert entry["apiKeys"][0]["apiKeyMasked"] == "sk-...3456" and "apiKey" not in entry["apiKeys"][0]
    assert SECRET not in json.dumps(masked.body)
    full = admin.get("/api/connections/export?includeSecrets=1")
    entry = next(c for c in full.data["connections"] if c["displayName"] == "Exported")
    assert entry["apiKeys"][0]["apiKey"] == SECRET


def test_users_cannot_export_secrets(api, admin):
    settings(admin, personal_connections_enabled=True)
    alice = user(api, admin, "alice")
    assert alice.get("/api/connections/export").status == 200
    assert alice.get("/api/connections/export?includeSecrets=1").status == 403


def test_import_round_trip(api, admin, fake, tmp_path):
    create(admin, fake, "openai", apiKey=SECRET, displayName="Round trip", prefixId="rt", tags=[{"name": "fast"}])
    document = admin.get("/api/connections/export?includeSecrets=1").data
    other = ApiClient(make_app(tmp_path / "other")).register_admin("root", "correct-horse-1")
    reply = other.post("/api/connections/import", document)
    assert reply.status == 200, reply.body
    assert reply.data["createdGroups"] == 1 and reply.data["addedKeys"] == 1  # the demo one already exists
    assert reply.data["updatedGroups"] == 1
    imported = next(c for c in other.get("/api/connections").data if c["displayName"] == "Round trip")
    assert imported["prefixId"] == "rt" and imported["tags"] == [{"name": "fast"}]
    assert imported["apiKeys"][0]["apiKeyMasked"] == "sk-...3456"
    fake.reset()
    assert other.post("/api/connections/verify", {"connectionId": imported["id"]}).data["successCount"] == 1
    assert fake.last_request(path="/v1/models")["auth_key_last4"] == "3456"
    again = other.post("/api/connections/import", document)
    assert again.data["createdGroups"] == 0 and again.data["addedKeys"] == 0 and again.data["skippedKeys"] == 1


def test_importing_a_masked_export_keeps_labels_without_secrets(api, admin, fake):
    create(admin, fake, "openai", apiKeys=[{"apiKey": SECRET, "apiKeyLabel": "prod", "modelIds": ["m1"]}])
    document = admin.get("/api/connections/export").data
    for conn in admin.get("/api/connections").data:
        admin.delete(f"/api/connections/{conn['id']}")
    reply = admin.post("/api/connections/import", document)
    assert reply.data["createdGroups"] == 2 and reply.data["keysWithoutSecret"] == 1
    conn = next(c for c in admin.get("/api/connections").data if c["provider"] == "openai")
    assert conn["apiKeys"][0]["apiKeyLabel"] == "prod" and conn["apiKeys"][0]["hasStoredApiKey"] is False


def test_import_validates_everything_before_writing(api, admin, app):
    before = db_rows(app, "SELECT id FROM connections")
    reply = admin.post(
        "/api/connections/import",
        {"connections": [{"provider": "openai", "baseUrl": "https://a.example"}, {"provider": "openai"}]},
    )
    assert reply.status == 400 and "connections.1.baseUrl" in reply.data["fields"]
    assert db_rows(app, "SELECT id FROM connections") == before


# --- the demo seed -----------------------------------------------------------------------------------


def test_fresh_install_lets_everyone_chat_with_the_demo_model(api, admin):
    anon = api.with_token(None)
    alice = user(api, admin, "alice")
    for client in (anon, alice, admin):
        assert {"demo-chat", "demo-reasoner"} <= set(models_of(client)), client


def test_a_deleted_demo_connection_does_not_come_back(tmp_path):
    first = make_app(tmp_path / "data")
    root = ApiClient(first).register_admin("root", "correct-horse-1")
    demo = next(c for c in root.get("/api/connections").data if c["provider"] == "demo")
    assert root.delete(f"/api/connections/{demo['id']}").status == 200
    first.extensions["parley.db"].close()
    second = make_app(tmp_path / "data")
    try:
        client = ApiClient(second)
        token = client.post("/api/auth/login", {"username": "root", "password": "correct-horse-1"}).data["token"]
        assert [c for c in client.with_token(token).get("/api/connections").data if c["provider"] == "demo"] == []
        assert models_of(client.with_token(None)) == {}
    finally:
        second.extensions["parley.db"].close()


def test_a_disabled_demo_connection_hides_its_models(api, admin):
    assert admin.put("/api/connections/1", {"enable": False}).status == 200
    assert models_of(api.with_token(None)) == {}
    assert "demo-chat" not in models_of(admin)


def test_an_upstream_echoing_the_key_does_not_leak_it(api, admin, fake, monkeypatch):
    from common import catalog, connection_ops
    from common.providers import UpstreamAuthError

    class Echo:
        def __init__(self, config):
            self.config = config

        def list_models(self, **_kwargs):
            raise UpstreamAuthError(f"Incorrect API key provided: {self.config.api_key}", status=401)

        verify = list_models

    monkeypatch.setattr(connection_ops, "get_adapter", Echo)
    monkeypatch.setattr(catalog, "get_adapter", Echo)
    conn = create(admin, fake, "openai", apiKey=SECRET)
    verified = admin.post("/api/connections/verify", {"connectionId": conn["id"]})
    refreshed = admin.post("/api/catalog/models/refresh", {"connectionId": conn["id"]})
    text = json.dumps(verified.body) + json.dumps(refreshed.body)
    assert "Incorrect API key provided: sk-...3456" in text
    assert SECRET not in text

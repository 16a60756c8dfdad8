"""The model access policy and model resolution (what the chat engine calls on every message)."""

from __future__ import annotations

import pytest

from common.auth.actors import Actor
from common.db import release
from common.errors import ApiError
from common.model_access import access_decision, resolve_model
from tests.connection_helpers import create, fake, models_of, settings, user

__all__ = ["fake"]

ADMIN = Actor("user", user_id=1, role="ADMIN")
ALICE = Actor("user", user_id=2, role="USER")
BOB = Actor("user", user_id=3, role="USER")
ANON = Actor("anonymous", anon_key="visitor-key-123456")
SYSTEM = {"id": 1, "owner_user_id": None}
ALICES = {"id": 2, "owner_user_id": 2}
DEFAULTS = {"model_access_default_anonymous": "deny", "model_access_default_user": "allow"}


# --- the decision ----------------------------------------------------------------------------------


def test_admins_are_always_allowed_on_system_connections():
    deny_all = {"access_anonymous": "deny", "access_user": "deny"}
    assert access_decision(ADMIN, SYSTEM, deny_all, DEFAULTS) == "allow"


def test_personal_connections_are_for_their_owner_only():
    deny_all = {"access_anonymous": "deny", "access_user": "deny"}
    assert access_decision(ALICE, ALICES, deny_all, DEFAULTS) == "allow"  # the policy does not apply
    assert access_decision(BOB, ALICES, None, DEFAULTS) == "deny"
    assert access_decision(ADMIN, ALICES, None, DEFAULTS) == "deny"
    assert access_decision(ANON, ALICES, None, DEFAULTS) == "deny"


@pytest.mark.parametrize(
    ("actor", "override", "defaults", "expected"),
    [
        (ANON, None, DEFAULTS, "deny"),
        (ANON, {"access_anonymous": "inherit"}, {**DEFAULTS, "model_access_default_anonymous": "allow"}, "allow"),
        (ANON, {"access_anonymous": "allow"}, DEFAULTS, "allow"),
        (ANON, {"access_anonymous": "deny", "access_user": "allow"}, DEFAULTS, "deny"),
        (ALICE, None, DEFAULTS, "allow"),
        (ALICE, {"access_user": "inherit"}, {**DEFAULTS, "model_access_default_user": "deny"}, "deny"),
        (ALICE, {"access_user": "deny"}, DEFAULTS, "deny"),
        (ALICE, {"access_user": "allow", "access_anonymous": "deny"}, {"model_access_default_user": "deny"}, "allow"),
    ],
)
def test_overrides_win_and_inherit_follows_the_setting(actor, override, defaults, expected):
    assert access_decision(actor, SYSTEM, override, defaults) == expected


# --- the listing -----------------------------------------------------------------------------------


def deny(admin, connection_id, raw_id, **policy):
    reply = admin.put(
        "/api/catalog/models/tags", {"connectionId": connection_id, "rawId": raw_id, "access_policy": policy}
    )
    assert reply.status == 200, reply.body


def test_users_see_only_allowed_models_and_admins_see_all(api, admin, fake):
    conn = create(admin, fake, "openai", prefixId="oa")
    alice = user(api, admin, "alice")
    anon = api.with_token(None)
    assert "oa.fake-chat" in models_of(alice)
    assert "oa.fake-chat" not in models_of(anon)  # anonymous default: deny
    deny(admin, conn["id"], "fake-chat", user="deny", anonymous="allow")
    assert "oa.fake-chat" not in models_of(alice)
    assert "oa.fake-chat" in models_of(anon)
    assert "oa.fake-reasoning" in models_of(alice)  # untouched models follow the default
    settings(admin, model_access_default_user="deny")
    assert not [m for m in models_of(alice) if m.startswith("oa.")]
    admin_view = models_of(admin)
    assert {"oa.fake-chat", "oa.fake-reasoning"} <= set(admin_view)
    assert admin_view["oa.fake-chat"]["accessPolicy"] == {"anonymous": "allow", "user": "deny"}
    assert admin_view["oa.fake-chat"]["accessEffective"] == {"anonymous": "allow", "user": "deny"}
    assert admin_view["oa.fake-chat"]["accessDecision"] == "allow"
    for model in models_of(anon).values():
        assert model["accessDecision"] == "allow"


def test_demo_models_follow_the_user_default_for_users(api, admin):
    alice = user(api, admin, "alice")
    settings(admin, model_access_default_user="deny")
    assert "demo-chat" not in models_of(alice)
    assert "demo-chat" in models_of(api.with_token(None))  # the seed allows anonymous visitors explicitly


# --- resolution ------------------------------------------------------------------------------------


@pytest.fixture
def resolve(app):
    """resolve_model in a short app context of its own (an app context held across test-client
    requests would be shared by them, with its `g`)."""

    def call(*args, **kwargs):
        with app.app_context():
            db = app.extensions["parley.db"]
            try:
                return resolve_model(db, *args, **kwargs)
            finally:
                release(db)

    return call


def actor_of(app, client) -> Actor:
    reply = client.get("/api/auth/me")
    return Actor("user", user_id=reply.data["id"], role=reply.data["role"], username=reply.data["username"])


def test_resolve_by_prefixed_id_raw_id_and_connection(api, admin, fake, app, resolve):
    conn = create(admin, fake, "openai", prefixId="oa", apiKey="sk-resolve-12345678")
    me = actor_of(app, admin)
    by_prefix = resolve(me, "oa.fake-chat")
    assert (by_prefix.model_id, by_prefix.raw_id, by_prefix.connection_id) == ("oa.fake-chat", "fake-chat", conn["id"])
    assert by_prefix.provider == "openai" and by_prefix.provider_config.api_key == "sk-resolve-12345678"
    assert by_prefix.provider_config.base_url == fake.openai_base_url
    assert by_prefix.policy.allow_private is True
    assert by_prefix.context_window == 8192  # the fake lists max_model_len 8192 (else the table/the setting)
    assert by_prefix.capabilities["vision"] is False and by_prefix.temperature is None
    assert "sk-resolve" not in repr(by_prefix)
    by_raw = resolve(me, "fake-chat")
    assert by_raw.connection_id == conn["id"]
    pinned = resolve(me, None, connection_id=conn["id"], raw_id="fake-chat")
    assert pinned.model_id == "oa.fake-chat"
    assert resolve(me, "oa.fake-chat", connection_id=conn["id"]).raw_id == "fake-chat"
    demo = resolve(ANON, "demo-chat")
    assert demo.provider == "demo" and demo.provider_config.api_key is None


def expect_error(status, code, fn, *args, **kwargs):
    with pytest.raises(ApiError) as info:
        fn(*args, **kwargs)
    assert (info.value.status, info.value.code) == (status, code), info.value.message
    return info.value


def test_unknown_denied_disabled_and_ambiguous_models(api, admin, fake, app, resolve):
    first = create(admin, fake, "openai", displayName="First")
    second = create(admin, fake, "openai", displayName="Second", prefixId="two")
    me = actor_of(app, admin)
    expect_error(400, "model_not_found", resolve, me, "no-such-model")
    expect_error(400, "model_not_found", resolve, me, None)
    expect_error(400, "model_not_found", resolve, me, "   ")
    expect_error(400, "model_not_found", resolve, me, "fake-chat", connection_id=4242)
    # "fake-chat" is the public id of First's model, and only the raw id of Second's: First wins
    assert resolve(me, "fake-chat").connection_id == first["id"]
    # a raw id that is nobody's public id but is served by two connections is ambiguous
    admin.put(f"/api/connections/{first['id']}", {"prefixId": "one"})
    error = expect_error(409, "model_ambiguous", resolve, me, "fake-chat")
    assert {c["connectionId"] for c in error.data["candidates"]} == {first["id"], second["id"]}
    assert resolve(me, "fake-chat", connection_id=second["id"]).model_id == "two.fake-chat"
    # denied -> 403, also when asked by raw id; never routed to the other connection silently
    deny(admin, second["id"], "fake-chat", anonymous="allow")
    deny(admin, first["id"], "fake-chat", anonymous="deny")
    expect_error(403, "model_access_denied", resolve, ANON, "one.fake-chat")
    assert resolve(ANON, "fake-chat").connection_id == second["id"]
    expect_error(403, "model_access_denied", resolve, ANON, "one.fake-reasoning")
    # a disabled connection counts as not found
    admin.put(f"/api/connections/{second['id']}", {"enable": False})
    expect_error(400, "model_not_found", resolve, me, "two.fake-chat")
    expect_error(400, "model_not_found", resolve, me, "fake-chat", connection_id=second["id"])
    assert resolve(me, "fake-chat").connection_id == first["id"]


def test_personal_models_resolve_for_their_owner_only(api, admin, fake, app, resolve):
    settings(admin, personal_connections_enabled=True, outbound_allow_hosts="127.0.0.1")
    alice, bob = user(api, admin, "alice"), user(api, admin, "bob")
    conn = create(alice, fake, "openai", prefixId="mine", apiKey="sk-alice-99998888")
    got = resolve(actor_of(app, alice), "mine.fake-chat")
    assert got.connection_id == conn["id"] and got.provider_config.api_key == "sk-alice-99998888"
    assert got.policy.allow_private is False and "127.0.0.1" in got.policy.allow_hosts
    for other in (actor_of(app, bob), actor_of(app, admin), ANON):
        expect_error(400, "model_not_found", resolve, other, "mine.fake-chat")
        expect_error(400, "model_not_found", resolve, other, "fake-chat", connection_id=conn["id"])


def test_the_key_that_serves_the_model_is_used(api, admin, fake, app, resolve):
    conn = create(
        admin,
        fake,
        "openai",
        prefixId="k",
        apiKeys=[
            {"apiKey": "sk-only-for-a-1111", "modelIds": ["model-a"]},
            {"apiKey": "sk-disabled-2222", "enable": False},
            {"apiKey": "sk-everything-3333"},
        ],
    )
    me = actor_of(app, admin)
    assert resolve(me, "k.model-a").provider_config.api_key == "sk-only-for-a-1111"
    chat = resolve(me, "k.fake-chat")
    assert chat.provider_config.api_key == "sk-everything-3333" and chat.key_id == conn["apiKeys"][2]["id"]


def test_overrides_reach_the_resolved_model(api, admin, fake, app, resolve):
    conn = create(admin, fake, "openai", prefixId="ov")
    admin.put(
        "/api/catalog/models/tags",
        {
            "connectionId": conn["id"],
            "rawId": "fake-chat",
            "context_window": 2048,
            "max_output_tokens": 256,
            "temperature": 1.1,
            "tags": [{"name": "t"}],
            "capabilities": {"vision": True},
        },
    )
    got = resolve(actor_of(app, admin), "ov.fake-chat")
    assert (got.context_window, got.max_output_tokens, got.temperature) == (2048, 256, 1.1)
    assert got.tags == ["t"] and got.capabilities["vision"] is True


def test_resolution_reads_only_the_database_once_cached(api, admin, fake, app, resolve):
    create(admin, fake, "openai", prefixId="c")
    me = actor_of(app, admin)
    resolve(me, "c.fake-chat")
    fake.reset()
    for _ in range(5):
        resolve(me, "c.fake-chat")
    assert fake.requests_log() == []


def test_a_new_connection_is_resolvable_before_anyone_listed_it(api, admin, fake, app, resolve):
    create(admin, fake, "ollama", prefixId="ol")
    assert resolve(actor_of(app, admin), "ol.fake-chat:latest").provider == "ollama"

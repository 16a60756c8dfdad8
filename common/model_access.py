"""Who may use which model, the catalog listing per actor, and model resolution for the chat engine.

Access policy (per model, set by admins through overrides; checked on every message):
- a personal connection's models: only its owner (the policy does not apply to them);
- admins: every system model;
- anonymous visitors / users: the override's ``access_anonymous`` / ``access_user`` when it is
  ``allow`` or ``deny``; ``inherit`` (or no override) follows the settings
  ``model_access_default_anonymous`` (deny) / ``model_access_default_user`` (allow).

:func:`resolve_model` turns a client's ``modelId`` (``prefixId.rawId`` or ``rawId``), or
``connectionId`` + ``rawId``, into a :class:`ResolvedModel` with everything a request needs. It only
reads the database while the catalog is cached (a connection never fetched is fetched once).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dataset
from flask import current_app

from common.auth.actors import Actor
from common.catalog import (
    CatalogEntry,
    catalog_rows,
    ensure_fresh,
    make_entry,
    public_model_id,
    usable_connections,
)
from common.connections import keys_for, outbound_policy_for, provider_config
from common.crypto import SecretDecryptError
from common.errors import ApiError
from common.outbound import OutboundPolicy
from common.providers import ProviderConfig

ALLOW, DENY, INHERIT = "allow", "deny", "inherit"
ACCESS_CHOICES = (ALLOW, DENY, INHERIT)


@dataclass(frozen=True)
class ResolvedModel:
    """A model an actor may use right now, with the connection details a request needs."""

    model_id: str
    raw_id: str
    name: str
    connection_id: int
    provider: str
    provider_config: ProviderConfig = field(repr=False)
    policy: OutboundPolicy = field(repr=False)
    context_window: int = 4000
    max_output_tokens: int | None = None
    capabilities: dict = field(default_factory=dict)
    temperature: float | None = None
    tags: list = field(default_factory=list)
    connection_name: str = ""
    key_id: int | None = None


def _settings(settings: Any) -> Any:
    return settings if settings is not None else current_app.extensions["parley.settings"]


def access_decision(actor: Actor, connection: Mapping, override: Mapping | None, settings: Any) -> str:
    """``"allow"`` or ``"deny"`` for ``actor`` using a model of ``connection`` with ``override``
    (a mapping with ``access_anonymous`` / ``access_user``, or None); ``settings`` has ``get``."""
    owner = connection.get("owner_user_id")
    if owner is not None:
        return ALLOW if actor.is_user and actor.user_id == owner else DENY
    if actor.is_admin:
        return ALLOW
    if actor.is_user:
        choice, default = (override or {}).get("access_user"), settings.get("model_access_default_user")
    else:
        choice, default = (override or {}).get("access_anonymous"), settings.get("model_access_default_anonymous")
    if choice in (ALLOW, DENY):
        return choice
    return ALLOW if default == ALLOW else DENY


def entry_decision(actor: Actor, entry: CatalogEntry, settings: Any) -> str:
    """:func:`access_decision` for a catalog entry."""
    override = {"access_anonymous": entry.access_anonymous, "access_user": entry.access_user}
    return access_decision(actor, entry.connection, override, settings)


def _anonymous() -> Actor:
    return Actor("anonymous", anon_key="policy-preview")


def _user() -> Actor:
    return Actor("user", user_id=-1, role="USER")


def model_shape(entry: CatalogEntry, decision: str, *, admin_view: bool = False, settings: Any = None) -> dict:
    """A model as ``GET /api/catalog/models`` returns it."""
    connection = entry.connection
    shape = {
        "id": entry.model_id,
        "rawId": entry.raw_id,
        "name": entry.name,
        "provider": connection["provider"],
        "connectionId": connection["id"],
        "channelName": connection["display_name"],
        "tags": [{"name": t} for t in entry.tags],
        "capabilities": entry.capabilities,
        "contextWindow": entry.context_window,
        "maxOutputTokens": entry.max_output_tokens,
        "temperature": entry.temperature,
        "personal": connection.get("owner_user_id") is not None,
        "accessPolicy": {"anonymous": entry.access_anonymous, "user": entry.access_user},
        "accessDecision": decision,
    }
    if admin_view and settings is not None and connection.get("owner_user_id") is None:
        shape["accessEffective"] = {
            "anonymous": entry_decision(_anonymous(), entry, settings),
            "user": entry_decision(_user(), entry, settings),
        }
    return shape


def visible_entries(db: dataset.Database, actor: Actor, settings: Any = None) -> list[tuple[CatalogEntry, str]]:
    """Every catalog entry ``actor`` may use, with its decision (always ``allow``), refreshing stale
    connections as a side effect (see :func:`common.catalog.ensure_fresh`)."""
    settings = _settings(settings)
    connections = usable_connections(
        db, actor.user_id if actor.is_user else None, bool(settings.get("personal_connections_enabled"))
    )
    ensure_fresh(db, connections)
    by_id = {c["id"]: c for c in connections}
    default_context = int(settings.get("max_context_tokens"))
    out = []
    for row in catalog_rows(db, list(by_id)):
        entry = make_entry(by_id[row["connection_id"]], row, default_context)
        decision = entry_decision(actor, entry, settings)
        if decision == ALLOW:
            out.append((entry, decision))
    return out


def list_models(db: dataset.Database, actor: Actor, settings: Any = None) -> list[dict]:
    """The models ``actor`` may use, shaped for ``GET /api/catalog/models``."""
    settings = _settings(settings)
    return [
        model_shape(entry, decision, admin_view=actor.is_admin, settings=settings)
        for entry, decision in visible_entries(db, actor, settings)
    ]


# --------------------------------------------------------------------------------------------------
# Resolution


def _not_found(model: str | None) -> ApiError:
    shown = f" '{model[:200]}'" if model else ""
    return ApiError(f"Model{shown} is not available", status=400, code="model_not_found")


def _pick(actor: Actor, entries: list[CatalogEntry], settings: Any, model: str) -> CatalogEntry | None:
    """The one allowed entry among candidates; 403 when all are denied, 409 when several are allowed."""
    if not entries:
        return None
    allowed = [e for e in entries if entry_decision(actor, e, settings) == ALLOW]
    if not allowed:
        raise ApiError("You are not allowed to use this model", status=403, code="model_access_denied")
    if len(allowed) > 1:
        raise ApiError(
            f"Model '{model[:200]}' is served by several connections; choose one with connectionId",
            status=409,
            code="model_ambiguous",
            data={
                "candidates": [
                    {"id": e.model_id, "connectionId": e.connection["id"], "channelName": e.connection["display_name"]}
                    for e in allowed
                ]
            },
        )
    return allowed[0]


def _strip_prefix(connection: Mapping, model_id: str) -> str:
    prefix = connection.get("prefix_id")
    if prefix and model_id.startswith(prefix + "."):
        return model_id[len(prefix) + 1 :]
    return model_id


def resolve_model(
    db: dataset.Database,
    actor: Actor,
    model_id: str | None,
    connection_id: int | None = None,
    raw_id: str | None = None,
    *,
    settings: Any = None,
    material: str | None = None,
) -> ResolvedModel:
    """Resolve a client's model choice for ``actor``.

    ``model_id`` is ``prefixId.rawId`` or a raw id; ``connection_id`` + ``raw_id`` (or + ``model_id``)
    pin the connection. Errors: 400 ``model_not_found`` (unknown, disabled connection, someone
    else's personal connection, no enabled key serves it), 403 ``model_access_denied``, 409
    ``model_ambiguous`` (a raw id served by several connections and no ``connection_id``), 503
    ``api_key_unreadable`` (the stored key cannot be decrypted with this ENCRYPTION_KEY).
    ``settings`` and ``material`` (ENCRYPTION_KEY) default to the current app's.
    """
    settings = _settings(settings)
    model_id = model_id.strip() if isinstance(model_id, str) and model_id.strip() else None
    raw_id = raw_id.strip() if isinstance(raw_id, str) and raw_id.strip() else None
    wanted = model_id or raw_id
    if wanted is None:
        raise ApiError("A model is required", status=400, code="model_not_found")
    connections = usable_connections(
        db, actor.user_id if actor.is_user else None, bool(settings.get("personal_connections_enabled"))
    )
    if connection_id is not None:
        connections = [c for c in connections if c["id"] == connection_id]
    if not connections:
        raise _not_found(wanted)
    ensure_fresh(db, connections)
    by_id = {c["id"]: c for c in connections}
    if connection_id is not None:
        raws = [raw_id or _strip_prefix(connections[0], wanted)]
    else:
        raws = sorted({wanted} | {_strip_prefix(c, wanted) for c in connections})
    default_context = int(settings.get("max_context_tokens"))
    entries = [make_entry(by_id[r["connection_id"]], r, default_context) for r in catalog_rows(db, list(by_id), raws)]
    if connection_id is not None:
        chosen = _pick(actor, entries, settings, wanted)
    else:
        chosen = _pick(actor, [e for e in entries if e.model_id == wanted], settings, wanted) or _pick(
            actor, [e for e in entries if e.raw_id == wanted], settings, wanted
        )
    if chosen is None:
        raise _not_found(wanted)
    return _resolved(db, chosen, settings, material)


def _resolved(db: dataset.Database, entry: CatalogEntry, settings: Any, material: str | None) -> ResolvedModel:
    connection = entry.connection
    keys = keys_for(db, [connection["id"]])[connection["id"]]
    key = None
    if keys:
        serving = [k for k in keys if k["enable"] and _serves(k, entry.raw_id)]
        if not serving:
            raise ApiError("No enabled API key serves this model", status=400, code="model_not_found")
        key = serving[0]
    if material is None:
        material = current_app.config["PARLEY"].encryption_key
    try:
        config = provider_config(connection, key, material)
    except SecretDecryptError:
        raise ApiError(
            "The connection's API key cannot be decrypted (was ENCRYPTION_KEY changed?)",
            status=503,
            code="api_key_unreadable",
        ) from None
    return ResolvedModel(
        model_id=public_model_id(connection.get("prefix_id"), entry.raw_id),
        raw_id=entry.raw_id,
        name=entry.name,
        connection_id=connection["id"],
        provider=connection["provider"],
        provider_config=config,
        policy=outbound_policy_for(connection, settings.get("outbound_allow_hosts") or ""),
        context_window=entry.context_window,
        max_output_tokens=entry.max_output_tokens,
        capabilities=dict(entry.capabilities),
        temperature=entry.temperature,
        tags=list(entry.tags),
        connection_name=connection["display_name"],
        key_id=key["id"] if key else None,
    )


def _serves(key: Mapping, raw_id: str) -> bool:
    try:
        listed = json.loads(key.get("model_ids") or "[]")
    except ValueError:
        listed = []
    return not listed or raw_id in listed

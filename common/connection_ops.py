"""What the connection routes do, between validation and storage: create/update from a request
body (with the outbound check), verify, export and import.

Network I/O (DNS checks of base URLs, provider calls in verify) happens here, always outside any
write transaction.
"""

from __future__ import annotations

from typing import Any

import dataset
import gevent
from marshmallow import Schema, ValidationError

from common.auth.actors import Actor
from common.catalog import public_model_id
from common.connection_schema import ConnectionSchema, VerifySchema, complete_for_create
from common.connections import (
    check_base_url,
    connection_shape,
    create_connection,
    get_connection,
    http_client_for,
    keys_for,
    loads_json,
    manageable_connection,
    outbound_policy_for,
    update_connection,
)
from common.crypto import SecretDecryptError, decrypt_secret, mask_parts, mask_secret
from common.errors import ApiError, ValidationFailed
from common.outbound import OutboundError
from common.providers import ModelInfo, ProviderConfig, ProviderError, UpstreamHTTPError, get_adapter
from common.validation import flatten_errors

VERIFY_TIMEOUT = 15.0


def load_payload(schema: Schema, body: Any, *, prefix: str = "", create: bool = False) -> dict:
    """Validate a connection payload (400 ``validation_error`` with field paths)."""
    try:
        data = schema.load(body)
        return complete_for_create(data) if create else data
    except ValidationError as exc:
        fields = flatten_errors(exc.messages)
        raise ValidationFailed({f"{prefix}{k}": v for k, v in fields.items()}) from exc


def shape_one(db: dataset.Database, row: dict) -> dict:
    """One connection's output shape (re-read, keys masked)."""
    fresh = get_connection(db, row["id"]) or row
    return connection_shape(fresh, keys_for(db, [fresh["id"]])[fresh["id"]])


def create_from_body(db: dataset.Database, body: Any, owner_user_id: int | None, material: str) -> dict:
    """Validate, check the base URL against the owner's outbound policy, and create."""
    data = load_payload(ConnectionSchema(), body, create=True)
    check_base_url({**data, "owner_user_id": owner_user_id}, outbound_policy_for({"owner_user_id": owner_user_id}))
    connection_id = create_connection(db, owner_user_id, data, material)
    return shape_one(db, {"id": connection_id})


def update_from_body(db: dataset.Database, row: dict, body: Any, material: str) -> dict:
    """Validate a partial update, check a changed base URL, and apply it."""
    data = load_payload(ConnectionSchema(partial=True), body)
    if data.get("provider", row["provider"]) != "demo" and not data.get("base_url", row["base_url"]):
        raise ApiError(
            "A base URL is required",
            status=400,
            code="validation_error",
            data={"fields": {"baseUrl": ["A base URL is required."]}},
        )
    merged = {**row, **data}
    if "base_url" in data or "provider" in data:
        check_base_url(merged, outbound_policy_for(row))
    update_connection(db, row, data, material)
    return shape_one(db, row)


# --------------------------------------------------------------------------------------------------
# Verify


def _verify_plan(db: dataset.Database, actor: Actor, body: Any, material: str) -> tuple[dict, list[dict]]:
    """(the connection as it would be, key attempts) for a verify body; stored secrets only for
    their bound base URL (else 400 ``api_key_required``)."""
    data = load_payload(VerifySchema(partial=True), body)
    connection_id = data.pop("connection_id", None) or data.pop("id", None)
    data.pop("id", None)
    if connection_id is None:
        data = load_payload(ConnectionSchema(), body, create=True)
        owner = None if actor.is_admin else actor.user_id
        connection = {**data, "id": None, "owner_user_id": owner}
        return connection, [{**k, "stored": None} for k in data["api_keys"]] or [{"api_key": None, "stored": None}]
    row = manageable_connection(db, actor, connection_id)
    connection = {
        **row,
        **data,
        "headers": data.get("headers", loads_json(row["headers"], {})),
        "tags": data.get("tags", loads_json(row["tags"], [])),
        "default_capabilities": data.get("default_capabilities", loads_json(row["default_capabilities"], {})),
    }
    stored = {k["id"]: k for k in keys_for(db, [row["id"]])[row["id"]]}
    if "api_keys" in data:
        entries = data["api_keys"]
    elif "api_key" in data or "model_ids" in data:
        first = next(iter(stored.values()), None)
        entries = [
            {
                "id": first["id"] if first and not data.get("api_key") else None,
                "api_key": data.get("api_key"),
                "model_ids": data.get("model_ids", []),
                "label": None,
                "enable": True,
            }
        ]
    else:
        entries = [
            {
                "id": k["id"],
                "api_key": None,
                "model_ids": loads_json(k["model_ids"], []),
                "label": k["label"],
                "enable": bool(k["enable"]),
            }
            for k in stored.values()
        ]
    attempts, stranded = [], []
    for entry in entries:
        key = stored.get(entry.get("id")) if entry.get("id") is not None else None
        if entry.get("id") is not None and key is None:
            raise ApiError(
                "Unknown API key id for this connection",
                status=400,
                code="validation_error",
                data={"fields": {"apiKeys.id": ["Unknown API key id for this connection."]}},
            )
        attempt = {**entry, "stored": key}
        if key is not None and not entry.get("api_key") and key.get("secret_encrypted"):
            if key.get("bound_base_url") != connection["base_url"]:
                stranded.append(key["id"])
                continue
            try:
                attempt["api_key"] = decrypt_secret(key["secret_encrypted"], material)
            except SecretDecryptError:
                attempt["error"] = "The stored API key cannot be decrypted (was ENCRYPTION_KEY changed?)"
        attempts.append(attempt)
    if stranded:
        raise ApiError(
            "A stored API key is only sent to the base URL it was saved for. Enter the API key again to verify "
            "this base URL.",
            status=400,
            code="api_key_required",
            data={"keyIds": stranded},
        )
    return connection, attempts or [{"api_key": None, "stored": None}]


def _verify_one(connection: dict, attempt: dict, http: Any) -> dict:
    secret = attempt.get("api_key")
    stored = attempt.get("stored")
    if secret:
        masked = mask_secret(secret)
    elif stored and stored.get("secret_encrypted"):
        masked = mask_parts(stored.get("secret_prefix"), stored.get("secret_last4"))
    else:
        masked = None
    result = {
        "id": stored["id"] if stored else None,
        "apiKeyLabel": attempt["label"] if "label" in attempt else (stored or {}).get("label"),
        "apiKeyMasked": masked,
        "hasStoredApiKey": bool(stored and stored.get("secret_encrypted")),
        "enable": bool(attempt.get("enable", True)),
        "success": False,
        "warning": None,
        "error": attempt.get("error"),
        "models": [],
    }
    if result["error"]:
        return result
    config = ProviderConfig(
        provider=connection["provider"],
        base_url=connection["base_url"],
        api_key=secret,
        auth_type="none" if connection.get("auth_type") == "none" else "bearer",
        headers=dict(connection.get("headers") or {}),
        azure_api_version=connection.get("azure_api_version"),
    )
    listed = attempt.get("model_ids") or []
    source = "provider"
    try:
        models = get_adapter(config).verify(http=None if config.provider == "demo" else http, timeout=VERIFY_TIMEOUT)
    except (ProviderError, OutboundError, ValueError) as exc:
        message = str(getattr(exc, "message", None) or exc) or type(exc).__name__
        if secret:
            message = message.replace(secret, mask_secret(secret))
        if listed and isinstance(exc, UpstreamHTTPError) and exc.status in (404, 405):
            models, result["warning"] = [], "The provider does not list its models; the configured model ids are used."
        else:
            result["error"] = message[:1000]
            return result
    if listed:
        models, source = [ModelInfo(raw_id=m, name=m) for m in listed], "configured"
    result["success"] = True
    result["models"] = [_verified_model(connection, m, source) for m in models]
    return result


def _verified_model(connection: dict, model: ModelInfo, source: str) -> dict:
    capabilities = {**(connection.get("default_capabilities") or {}), **(model.capabilities or {})}
    return {
        "id": public_model_id(connection.get("prefix_id"), model.raw_id),
        "rawId": model.raw_id,
        "name": model.name or model.raw_id,
        "provider": connection["provider"],
        "channelName": connection.get("display_name"),
        "connectionBaseUrl": connection["base_url"],
        "tags": [{"name": t} for t in connection.get("tags") or []],
        "capabilities": capabilities,
        "capabilitySource": source,
        "contextWindow": model.context_window,
    }


def verify_from_body(db: dataset.Database, actor: Actor, body: Any, material: str) -> dict:
    """Verify a connection payload (or a stored connection, ``connectionId``) key by key."""
    connection, attempts = _verify_plan(db, actor, body, material)
    policy = outbound_policy_for(connection)
    check_base_url(connection, policy)
    http = http_client_for(policy)
    jobs = [gevent.spawn(_verify_one, connection, attempt, http) for attempt in attempts]
    gevent.joinall(jobs, timeout=VERIFY_TIMEOUT * 4)
    results = []
    for attempt, job in zip(attempts, jobs, strict=True):
        if job.successful():
            results.append(job.value)
        else:
            job.kill(block=False)
            failed = _verify_one(connection, {**attempt, "error": "Verification timed out or failed"}, http)
            results.append(failed)
    ok_count = sum(1 for r in results if r["success"])
    return {
        "results": results,
        "successCount": ok_count,
        "failureCount": len(results) - ok_count,
        "totalModels": sum(len(r["models"]) for r in results),
    }

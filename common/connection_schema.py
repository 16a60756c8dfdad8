"""Request schemas for connection payloads (create, update, verify, import), shared by the routes.

Input is camelCase (the aichat clients' payload): ``{displayName, provider, baseUrl, authType, headers,
azureApiVersion, prefixId, tags: [{name}], defaultCapabilities, enable, apiKeys: [{id?, apiKeyLabel?,
apiKey?, modelIds, enable}]}``. The single-key shorthand ``apiKey`` / ``apiKeyLabel`` / ``modelIds`` at
the top level is accepted too (seed 000/001 "personal model configuration" forms). Loaded data uses
snake_case keys and holds only the keys the client sent (updates are partial).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from marshmallow import ValidationError, fields, post_load, pre_load, validate

from common.validation import MAX_ID, RequestSchema, StrictBoolean, StrictInteger, StrictString

PROVIDERS = ("openai", "azure_openai", "ollama", "google_genai", "demo")
PROVIDER_ALIASES = {"azure": "azure_openai", "gemini": "google_genai", "google": "google_genai"}
AUTH_TYPES = ("bearer", "none")
MAX_KEYS = 50
MAX_MODEL_IDS = 500
PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
CAPABILITY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")
#: Credentials go in API keys (encrypted); transport headers are the HTTP client's business.
FORBIDDEN_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api-key",
        "x-api-key",
        "x-goog-api-key",
        "cookie",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
    }
)


def normalize_base_url(url: str) -> str:
    """The canonical form of a base URL, used to bind stored keys to it.

    Lower-case scheme and host, no default port, no trailing slash. Only http/https; no user-info,
    query or fragment (credentials belong in API keys). Raises ValueError with a readable reason.
    """
    text = (url or "").strip()
    if any(ord(c) < 0x20 or c in "\\ " for c in text):
        raise ValueError("The base URL must not contain spaces, backslashes or control characters.")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError("The base URL is malformed.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError("The base URL must start with http:// or https://.")
    if not parts.hostname:
        raise ValueError("The base URL has no host.")
    if "@" in parts.netloc:
        raise ValueError("The base URL must not contain user names or passwords.")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise ValueError("The base URL must not contain a query or fragment.")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        host = f"{host}:{port}"
    path = parts.path.rstrip("/")
    return urlunsplit((scheme, host, path, "", ""))


class TagList(fields.Field):
    """``[{name}]`` (or plain strings): a list of distinct tag names, 1-50 characters, at most 30."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str]:
        if not isinstance(value, list):
            raise ValidationError("Must be a list of {name} objects.")
        if len(value) > 30:
            raise ValidationError("At most 30 tags.")
        names: list[str] = []
        for item in value:
            name = item.get("name") if isinstance(item, dict) else item
            if not isinstance(name, str) or not name.strip() or len(name.strip()) > 50 or "\x00" in name:
                raise ValidationError("Each tag needs a name of 1-50 characters.")
            if name.strip() not in names:
                names.append(name.strip())
        return names


class HeaderMap(fields.Field):
    """Extra static HTTP headers: at most 30, no credentials or transport headers, no line breaks."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValidationError("Must be an object of header names to values.")
        if len(value) > 30:
            raise ValidationError("At most 30 headers.")
        out: dict[str, str] = {}
        for name, text in value.items():
            if not isinstance(name, str) or not HEADER_NAME.match(name):
                raise ValidationError("Invalid header name.")
            if name.lower() in FORBIDDEN_HEADERS:
                raise ValidationError(f"Header {name} is not allowed here; put credentials in an API key.")
            if not isinstance(text, str) or len(text) > 2000 or any(c in text for c in "\r\n\x00"):
                raise ValidationError(f"Header {name} needs a single-line string value.")
            out[name] = text
        return out


class CapabilityMap(fields.Field):
    """``{vision: true, ...}``: capability names to booleans, at most 20."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict[str, bool]:
        if value is None:
            return {}
        if not isinstance(value, dict) or len(value) > 20:
            raise ValidationError("Must be an object of at most 20 capability names to booleans.")
        for name, flag in value.items():
            if not isinstance(name, str) or not CAPABILITY_NAME.match(name) or not isinstance(flag, bool):
                raise ValidationError("Capabilities map names to true or false.")
        return dict(value)


def _model_ids() -> fields.List:
    return fields.List(
        StrictString(validate=validate.Length(min=1, max=300)),
        data_key="modelIds",
        validate=validate.Length(max=MAX_MODEL_IDS),
    )


class ApiKeySchema(RequestSchema):
    """One API key entry. On an existing key (``id``) only the fields sent change, and an empty
    ``apiKey`` keeps its stored secret; new keys default to enabled, no label, no model ids."""

    id = StrictInteger(allow_none=True, validate=validate.Range(min=1, max=MAX_ID))
    label = StrictString(data_key="apiKeyLabel", allow_none=True, validate=validate.Length(max=200))
    api_key = StrictString(data_key="apiKey", allow_none=True, validate=validate.Length(max=4000))
    model_ids = _model_ids()
    enable = StrictBoolean()

    @post_load
    def _clean(self, data: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
        data["api_key"] = (data.get("api_key") or "").strip() or None
        if "model_ids" in data:
            data["model_ids"] = _dedupe(data["model_ids"] or [])
        data.setdefault("id", None)
        return data


def _dedupe(items: list[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        text = item.strip()
        if text and text not in seen:
            seen.append(text)
    return seen


class ConnectionSchema(RequestSchema):
    """A connection payload (create: use :func:`load_create`; update: partial)."""

    display_name = StrictString(data_key="displayName", validate=validate.Length(min=1, max=200))
    provider = StrictString(validate=validate.OneOf(PROVIDERS + tuple(PROVIDER_ALIASES)))
    base_url = StrictString(data_key="baseUrl", allow_none=True, validate=validate.Length(max=2000))
    auth_type = StrictString(data_key="authType", validate=validate.OneOf(AUTH_TYPES))
    headers = HeaderMap(allow_none=True)
    azure_api_version = StrictString(data_key="azureApiVersion", allow_none=True, validate=validate.Length(max=40))
    prefix_id = StrictString(data_key="prefixId", allow_none=True, validate=validate.Length(max=40))
    tags = TagList(allow_none=True)
    default_capabilities = CapabilityMap(data_key="defaultCapabilities", allow_none=True)
    enable = StrictBoolean()
    api_keys = fields.List(fields.Nested(ApiKeySchema), data_key="apiKeys", validate=validate.Length(max=MAX_KEYS))
    api_key = StrictString(data_key="apiKey", allow_none=True, validate=validate.Length(max=4000))
    api_key_label = StrictString(data_key="apiKeyLabel", allow_none=True, validate=validate.Length(max=200))
    model_ids = _model_ids()

    @pre_load
    def _aliases(self, data: Any, **_kwargs: Any) -> Any:
        # seed 000/001 forms call the display name "name"
        if isinstance(data, dict) and "displayName" not in data and "name" in data:
            data = {**data, "displayName": data["name"]}
        return data

    @post_load
    def _clean(self, data: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
        if "provider" in data:
            data["provider"] = PROVIDER_ALIASES.get(data["provider"], data["provider"])
        if "base_url" in data:
            raw = (data["base_url"] or "").strip()
            if raw:
                try:
                    data["base_url"] = normalize_base_url(raw)
                except ValueError as exc:
                    raise ValidationError({"baseUrl": [str(exc)]}) from None
            else:
                data["base_url"] = ""
        if "prefix_id" in data:
            prefix = (data["prefix_id"] or "").strip() or None
            if prefix is not None and not PREFIX_PATTERN.match(prefix):
                raise ValidationError({"prefixId": ["Use 1-40 letters, digits, '_' or '-'."]})
            data["prefix_id"] = prefix
        if "azure_api_version" in data:
            data["azure_api_version"] = (data["azure_api_version"] or "").strip() or None
        if "api_key" in data:
            data["api_key"] = (data["api_key"] or "").strip() or None
        if "model_ids" in data:
            data["model_ids"] = _dedupe(data["model_ids"])
        for name, empty in (("headers", {}), ("tags", []), ("default_capabilities", {})):
            if name in data and data[name] is None:
                data[name] = empty
        if "display_name" in data:
            data["display_name"] = data["display_name"].strip()
            if not data["display_name"]:
                raise ValidationError({"displayName": ["Must not be blank."]})
        return data


class VerifySchema(ConnectionSchema):
    """POST /verify: a payload, optionally for a stored connection (``connectionId`` or ``id``)."""

    connection_id = StrictInteger(data_key="connectionId", allow_none=True, validate=validate.Range(min=1, max=MAX_ID))
    id = StrictInteger(allow_none=True, validate=validate.Range(min=1, max=MAX_ID))


def complete_for_create(data: dict[str, Any]) -> dict[str, Any]:
    """Fill the defaults of a new connection; raises ValidationError for missing required fields."""
    errors: dict[str, list[str]] = {}
    if "provider" not in data:
        errors["provider"] = ["Missing data for required field."]
    elif data["provider"] != "demo" and not data.get("base_url"):
        errors["baseUrl"] = ["A base URL is required."]
    if errors:
        raise ValidationError(errors)
    out = dict(data)
    out.setdefault("base_url", "")
    out.setdefault("display_name", out["provider"] if not out["base_url"] else _host_of(out["base_url"]))
    out.setdefault("auth_type", "none" if out["provider"] == "demo" else "bearer")
    out.setdefault("headers", {})
    out.setdefault("azure_api_version", None)
    out.setdefault("prefix_id", None)
    out.setdefault("tags", [])
    out.setdefault("default_capabilities", {})
    out.setdefault("enable", True)
    if "api_keys" not in out and any(k in out for k in ("api_key", "model_ids", "api_key_label")):
        out["api_keys"] = [
            {
                "id": None,
                "label": out.get("api_key_label"),
                "api_key": out.get("api_key"),
                "model_ids": out.get("model_ids") or [],
                "enable": True,
            }
        ]
    out.setdefault("api_keys", [])
    for entry in out["api_keys"]:
        entry["id"] = None  # ids only refer to existing keys on update
    return out


def _host_of(url: str) -> str:
    return (urlsplit(url).hostname or url)[:200]

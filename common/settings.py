"""Run-time settings an admin can change: their one definition, defaults, checks and storage.

A setting's default lives here only. The environment variable of the same name in upper case gives
the first-run default; a value an admin saved in the `settings` table wins over both.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import dataset

from common.db import execute, utcnow

HEX_COLOUR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
CACHE_SECONDS = 2.0  # other workers see an admin's change within this time


@dataclass(frozen=True)
class SettingDef:
    """One setting: its type, default, allowed range and whether non-admins may read it."""

    name: str
    kind: type
    default: Any
    public: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    max_length: int = 2000
    pattern: re.Pattern | None = None
    env: str | None = None

    def check(self, value: Any) -> Any:
        """Return the value if valid for this setting, else raise ValueError with a reason."""
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ValueError("must be true or false")
            return value
        if self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError("must be an integer")
        elif self.kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError("must be a number")
            try:
                value = float(value)
            except OverflowError as exc:  # a JSON integer with hundreds of digits
                raise ValueError("is out of range") from exc
        elif self.kind is str:
            if not isinstance(value, str):
                raise ValueError("must be a string")
            if len(value) > self.max_length:
                raise ValueError(f"must be at most {self.max_length} characters")
            if "\x00" in value:
                raise ValueError("must not contain NUL characters")
            if self.choices and value not in self.choices:
                raise ValueError(f"must be one of {', '.join(self.choices)}")
            if self.pattern and value and not self.pattern.match(value):
                raise ValueError("has an invalid format")
            return value
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"must be at least {self._fmt(self.minimum)}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"must be at most {self._fmt(self.maximum)}")
        return value

    @staticmethod
    def _fmt(number: float) -> str:
        return str(int(number)) if float(number).is_integer() else str(number)

    def env_default(self) -> Any:
        """The built-in default, unless the environment gives a valid first-run value."""
        raw = os.environ.get(self.env or self.name.upper())
        if raw is None or raw == "":
            return self.default
        try:
            if self.kind is bool:
                parsed: Any = raw.strip().lower() in {"1", "true", "yes", "on"}
            elif self.kind is int:
                parsed = int(raw)
            elif self.kind is float:
                parsed = float(raw)
            else:
                parsed = raw
            return self.check(parsed)
        except ValueError:
            return self.default


ACCESS = ("allow", "deny")


def _colour(name: str, default: str) -> SettingDef:
    return SettingDef(name, str, default, public=True, max_length=7, pattern=HEX_COLOUR)


DEFINITIONS: dict[str, SettingDef] = {
    d.name: d
    for d in [
        SettingDef("registration_enabled", bool, True, public=True),
        SettingDef("registration_approval_required", bool, True, public=True),
        SettingDef("anonymous_daily_quota", int, 20, public=True, minimum=0, maximum=1_000_000),
        SettingDef("anonymous_address_daily_quota", int, 100, public=True, minimum=0, maximum=10_000_000),
        SettingDef("anonymous_retention_days", int, 15, public=True, minimum=0, maximum=15),
        SettingDef("default_user_daily_quota", int, 200, public=True, minimum=0, maximum=10_000_000),
        SettingDef("model_access_default_anonymous", str, "deny", public=True, choices=ACCESS),
        SettingDef("model_access_default_user", str, "allow", public=True, choices=ACCESS),
        SettingDef("personal_connections_enabled", bool, False, public=True),
        SettingDef("outbound_allow_hosts", str, "", max_length=4000),
        SettingDef("sse_heartbeat_interval_ms", int, 15000, minimum=1000, maximum=600_000),
        SettingDef("provider_max_idle_ms", int, 60000, minimum=1000, maximum=3_600_000),
        SettingDef("provider_timeout_ms", int, 300000, minimum=1000, maximum=3_600_000),
        SettingDef("stream_progress_persist_interval_ms", int, 500, minimum=100, maximum=10_000),
        # Once an answer flows, relay what arrived at most this often (0: every piece as it comes).
        # 100 ms is the limit under which an update still reads as immediate; fewer, larger frames
        # cost the server, the network and the client's renderer less. The first words never wait.
        SettingDef("stream_batch_interval_ms", int, 100, minimum=0, maximum=1000),
        SettingDef("usage_emit", bool, True),
        SettingDef("usage_provider_only", bool, False),
        SettingDef("chat_max_concurrent_streams", int, 2, minimum=1, maximum=1000),
        SettingDef("chat_system_prompt", str, "", max_length=100_000),
        SettingDef("assistant_reply_history_limit", int, 5, minimum=1, maximum=50),
        SettingDef("temperature_default", float, 0.7, minimum=0.0, maximum=2.0),
        SettingDef("max_context_tokens", int, 4000, minimum=256, maximum=10_000_000, env="DEFAULT_CONTEXT_TOKEN_LIMIT"),
        SettingDef("task_trace_enabled", bool, False),
        SettingDef("task_trace_retention_days", int, 7, minimum=1, maximum=365),
        SettingDef("chat_image_retention_days", int, 30, minimum=1, maximum=3650),
        SettingDef("site_base_url", str, "", public=True, max_length=500),
        SettingDef("brand_text", str, "Parley", public=True, max_length=100),
        _colour("brand_primary", "#4f46e5"),
        _colour("brand_secondary", "#0ea5e9"),
        _colour("brand_background", "#ffffff"),
        _colour("brand_foreground", "#111827"),
    ]
}


class SettingsStore:
    """Reads and writes settings in the database, with a short per-process cache."""

    def __init__(self, db: dataset.Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._cache: dict[str, Any] | None = None
        self._loaded_at = 0.0

    def all(self) -> dict[str, Any]:
        """Every setting's effective value."""
        with self._lock:
            if self._cache is not None and time.monotonic() - self._loaded_at < CACHE_SECONDS:
                return dict(self._cache)
        values = {name: d.env_default() for name, d in DEFINITIONS.items()}
        for row in self.db.query("SELECT key, value FROM settings"):
            definition = DEFINITIONS.get(row["key"])
            if definition is None:
                continue
            try:
                values[row["key"]] = definition.check(json.loads(row["value"]))
            except ValueError:
                continue  # a value stored by an older version that no longer passes keeps the default
        with self._lock:
            self._cache, self._loaded_at = values, time.monotonic()
        return dict(values)

    def get(self, name: str) -> Any:
        """One setting's effective value."""
        return self.all()[name]

    def public(self) -> dict[str, Any]:
        """The subset non-admins may read."""
        return {k: v for k, v in self.all().items() if DEFINITIONS[k].public}

    def update(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Check every key and value, then save them together; returns all effective values.

        Raises ValueError-carrying `SettingsInvalid` with per-key messages and saves nothing when any
        key is unknown or any value is out of range.
        """
        errors: dict[str, list[str]] = {}
        checked: dict[str, Any] = {}
        for key, value in changes.items():
            definition = DEFINITIONS.get(key)
            if definition is None:
                errors[key] = ["Unknown setting."]
                continue
            try:
                checked[key] = definition.check(value)
            except ValueError as exc:
                errors[key] = [f"{key} {exc}."]
        if errors:
            raise SettingsInvalid(errors)
        now = utcnow()
        with self.db as tx:
            for key, value in checked.items():
                # One statement per key: two admins (or workers) saving the same key at once cannot
                # both insert it (dataset's upsert is a find, then an insert).
                execute(
                    tx,
                    "INSERT INTO settings (key, value, updated_at) VALUES (:k, :v, :now) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    k=key,
                    v=json.dumps(value),
                    now=now,
                )
        self.invalidate()
        return self.all()

    def invalidate(self) -> None:
        """Forget the cached values (after a write in this process)."""
        with self._lock:
            self._cache = None


class SettingsInvalid(ValueError):
    """Some keys of a settings update were unknown or out of range."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("invalid settings")
        self.errors = errors

"""Process configuration, read once from the environment (and an optional `.env` file).

Settings that an admin may change at run time live in `common.settings`; this module only holds what
is fixed for the life of a process: where the data lives, secrets, network and cookie behaviour.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from dataclasses import dataclass, fields, replace
from pathlib import Path

from dotenv import load_dotenv

log = logging.getLogger(__name__)

VERSION = "0.1.0"
WEAK_SECRETS = {"", "secret", "changeme", "change-me", "dev", "development", "jwt_secret", "your-secret"}
MIN_SECRET_LENGTH = 32
SYSTEM_PROMPT_HARD_CAP = 100_000


class ConfigError(RuntimeError):
    """The configuration cannot run (for example a missing secret in production)."""


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


@dataclass(frozen=True)
class Config:
    """Everything a process needs to know before it opens the database."""

    data_dir: str = "./data"
    database_url: str = ""
    port: int = 8001
    app_env: str = "development"
    jwt_secret: str = ""
    encryption_key: str = ""
    jwt_expires_hours: int = 24 * 7
    enable_cors: bool = True
    cors_origin: str = ""
    cookie_secure: bool = False
    log_level: str = "INFO"
    bcrypt_rounds: int = 12
    max_body_bytes: int = 1024 * 1024
    max_upload_body_bytes: int = 96 * 1024 * 1024
    trusted_proxy_count: int = 0
    login_max_failures_per_account: int = 5
    login_max_failures_per_address: int = 20
    login_lockout_seconds: int = 900
    web_concurrency: int = 2
    worker_connections: int = 4000
    system_prompt_max_length: int = 12000

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return "sqlite:///" + str(Path(self.data_dir).resolve() / "parley.db")

    def masked(self) -> dict:
        """The configuration as a dict with secrets masked, for `parley config`."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in {"jwt_secret", "encryption_key"}:
                value = mask_secret(value)
            elif f.name == "database_url" and value:
                value = _mask_url_password(value)
            out[f.name] = value
        out["effective_database_url"] = _mask_url_password(self.effective_database_url)
        return out


def mask_secret(value: str) -> str:
    """Show that a secret is set without showing it."""
    if not value:
        return "(unset)"
    return f"***{len(value)} chars"


def _mask_url_password(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def load_config(**overrides: object) -> Config:
    """Read the configuration from the environment (and `.env`), then apply keyword overrides.

    Secrets are resolved here: in production a missing or weak secret raises ConfigError; in
    development one is generated once and kept in DATA_DIR so tokens survive restarts.
    """
    load_dotenv(Path.cwd() / ".env", override=False)  # the working directory's .env, if any
    cfg = Config(
        data_dir=os.environ.get("DATA_DIR", "./data"),
        database_url=os.environ.get("DATABASE_URL", ""),
        port=_env_int("PORT", 8001),
        app_env=os.environ.get("APP_ENV", "development").strip().lower() or "development",
        jwt_secret=os.environ.get("JWT_SECRET", ""),
        encryption_key=os.environ.get("ENCRYPTION_KEY", ""),
        jwt_expires_hours=_env_int("JWT_EXPIRES_HOURS", 24 * 7),
        enable_cors=_env_bool("ENABLE_CORS", True),
        cors_origin=os.environ.get("CORS_ORIGIN", "").strip(),
        cookie_secure=_env_bool("COOKIE_SECURE", False),
        log_level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        bcrypt_rounds=_env_int("BCRYPT_ROUNDS", 12),
        max_body_bytes=_env_int("MAX_BODY_BYTES", 1024 * 1024),
        trusted_proxy_count=_env_int("TRUSTED_PROXY_COUNT", 0),
        login_max_failures_per_account=_env_int("LOGIN_MAX_FAILURES_PER_ACCOUNT", 5),
        login_max_failures_per_address=_env_int("LOGIN_MAX_FAILURES_PER_ADDRESS", 20),
        login_lockout_seconds=_env_int("LOGIN_LOCKOUT_SECONDS", 900),
        web_concurrency=_env_int("WEB_CONCURRENCY", 2),
        worker_connections=_env_int("WORKER_CONNECTIONS", 4000),
        system_prompt_max_length=min(_env_int("SYSTEM_PROMPT_MAX_LENGTH", 12000), SYSTEM_PROMPT_HARD_CAP),
    )
    cfg = replace(cfg, **overrides)  # type: ignore[arg-type]
    if cfg.app_env not in {"development", "production"}:
        raise ConfigError(f"APP_ENV must be development or production, got {cfg.app_env!r}")
    return _resolve_secrets(cfg)


def _resolve_secrets(cfg: Config) -> Config:
    if cfg.is_production:
        for name, value in (("JWT_SECRET", cfg.jwt_secret), ("ENCRYPTION_KEY", cfg.encryption_key)):
            if value.strip().lower() in WEAK_SECRETS or len(value) < MIN_SECRET_LENGTH:
                raise ConfigError(
                    f"{name} is missing or weak: production needs a random value of at least "
                    f"{MIN_SECRET_LENGTH} characters (for example: python -c 'import secrets; "
                    f"print(secrets.token_urlsafe(48))')"
                )
        return cfg
    if cfg.jwt_secret and cfg.encryption_key:
        return cfg
    stored = _development_secrets(Path(cfg.data_dir))
    return replace(
        cfg,
        jwt_secret=cfg.jwt_secret or stored["jwt_secret"],
        encryption_key=cfg.encryption_key or stored["encryption_key"],
    )


def _development_secrets(data_dir: Path) -> dict:
    """Generate development secrets once, atomically, so parallel workers agree on them."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "secrets.json"
    if not path.exists():
        generated = {"jwt_secret": secrets.token_urlsafe(48), "encryption_key": secrets.token_urlsafe(48)}
        tmp = data_dir / f".secrets.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        tmp.write_text(json.dumps(generated))
        os.chmod(tmp, 0o600)
        try:
            # link() fails if another process won the race: then everybody reads the winner's file.
            os.link(tmp, path)
            log.warning("development secrets generated in %s", path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return json.loads(path.read_text())

"""The application factory, and `app` for gunicorn (`gunicorn wsgi:app`)."""

from __future__ import annotations

import importlib
import logging
import pkgutil
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

import functions
from common import tokenizer
from common.chat.recovery import recover_orphans
from common.chat.registry import GenerationRegistry
from common.config import VERSION, Config, load_config
from common.cors import register_cors
from common.db import connect, release
from common.errors import register_error_handlers
from common.migrations import migrate
from common.request_hooks import register_request_hooks
from common.settings import SettingsStore


def configure_logging(level: str) -> None:
    """One plain line per record on stderr (gunicorn and PaaS logs collect it)."""
    root = logging.getLogger()
    if not any(getattr(h, "_parley", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._parley = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)


def register_functions(app: Flask) -> None:
    """Register the blueprint (`bp`) of every module in `functions/`."""
    for info in sorted(pkgutil.iter_modules(functions.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"functions.{info.name}")
        blueprint = getattr(module, "bp", None)
        if blueprint is not None:
            app.register_blueprint(blueprint)


def create_app(config: Config | None = None) -> Flask:
    """Build the Flask app: configuration, database (migrated), settings, hooks and blueprints."""
    config = config or load_config()
    configure_logging(config.log_level)
    app = Flask("parley")
    app.config["PARLEY"] = config
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.strict_slashes = False
    if config.trusted_proxy_count:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=config.trusted_proxy_count, x_proto=config.trusted_proxy_count
        )

    Path(config.data_dir).mkdir(parents=True, exist_ok=True)
    db = connect(config.effective_database_url)
    migrate(db.engine)
    app.extensions["parley.db"] = db
    app.extensions["parley.settings"] = SettingsStore(db)
    app.extensions["parley.version"] = VERSION
    registry = GenerationRegistry(app)
    app.extensions["parley.generations"] = registry
    tokenizer.configure(cache_dir=str(Path(config.data_dir) / "tiktoken"))
    recover_orphans(db.engine, keep_workers={registry.worker_id})

    register_error_handlers(app)
    register_cors(app)
    register_request_hooks(app)
    register_functions(app)
    release(db)
    return app


def __getattr__(name: str):
    # `app` is built on first access, so importing this module (tests, the CLI) has no side effects.
    if name == "app":
        globals()["app"] = create_app()
        return globals()["app"]
    raise AttributeError(name)

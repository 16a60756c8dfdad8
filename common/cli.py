"""The `parley` command: serve, migrate, create an admin, reset a password, show the configuration."""

from __future__ import annotations

import json
import os
import sys

import click

from common.config import ConfigError, load_config


def _app():
    from wsgi import create_app

    try:
        return create_app()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def main() -> None:
    """Parley, a self-hosted AI chat platform backend."""


@main.command()
def serve() -> None:
    """Start the web server (gunicorn, gevent workers) on PORT (default 8001)."""
    try:
        load_config()  # refuse early, with a clear message, on a bad configuration
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    argv = ["gunicorn", "--config", "python:common.gunicorn_config", "wsgi:app"]
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    os.execv(gunicorn, argv)


@main.command("init-db")
def init_db() -> None:
    """Create or upgrade the database schema (also done automatically at start-up)."""
    from common.db import maintenance_engine
    from common.migrations import current_version, migrate

    config = load_config()
    os.makedirs(config.data_dir, exist_ok=True)
    engine = maintenance_engine(config.effective_database_url)
    applied = migrate(engine)
    click.echo(f"schema at version {current_version(engine)}; applied now: {applied or 'nothing'}")
    engine.dispose()


@main.command("create-admin")
@click.option("--username", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, envvar="PARLEY_ADMIN_PASSWORD")
@click.option("--email", default=None)
def create_admin(username: str, password: str, email: str | None) -> None:
    """Create an active admin account."""
    from common.auth.passwords import hash_password, password_problem
    from common.errors import ApiError
    from common.users import ACTIVE, ADMIN, create_user

    problem = password_problem(password)
    if problem:
        raise click.ClickException(problem)
    app = _app()
    with app.app_context():
        try:
            user = create_user(
                app.extensions["parley.db"],
                username=username,
                password_hash=hash_password(password, app.config["PARLEY"].bcrypt_rounds),
                email=email,
                role=ADMIN,
                status=ACTIVE,
            )
        except ApiError as exc:
            raise click.ClickException(exc.message) from exc
    click.echo(f"admin {user['username']} created (id {user['id']})")


@main.command("reset-password")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, envvar="PARLEY_NEW_PASSWORD")
def reset_password(username: str, password: str) -> None:
    """Set a new password for a user and revoke their tokens."""
    from common.auth.passwords import hash_password, password_problem
    from common.users import find_by_login, revoke_all_tokens, update_user

    problem = password_problem(password)
    if problem:
        raise click.ClickException(problem)
    app = _app()
    with app.app_context():
        db = app.extensions["parley.db"]
        user = find_by_login(db, username)
        if user is None:
            raise click.ClickException(f"no user {username!r}")
        update_user(db, user["id"], password_hash=hash_password(password, app.config["PARLEY"].bcrypt_rounds))
        revoke_all_tokens(db, user["id"])
    click.echo(f"password of {user['username']} reset; their sessions were signed out")


@main.command("config")
def show_config() -> None:
    """Print the effective configuration (secrets masked) and run-time settings."""
    config = load_config()
    app = _app()
    with app.app_context():
        settings = app.extensions["parley.settings"].all()
    click.echo(json.dumps({"config": config.masked(), "settings": settings}, indent=2, default=str))


if __name__ == "__main__":  # pragma: no cover
    main()

"""User accounts: lookups, creation, and the public shape of a user (never with its hash)."""

from __future__ import annotations

import json

import dataset
from sqlalchemy.exc import IntegrityError

from common.db import execute, fetch_all, fetch_one, is_postgres, iso, utcnow
from common.errors import Conflict, NotFound

ADMIN, USER = "ADMIN", "USER"
ROLES = (ADMIN, USER)
PENDING, ACTIVE, DISABLED = "PENDING", "ACTIVE", "DISABLED"
STATUSES = (PENDING, ACTIVE, DISABLED)
USERNAME_PATTERN = r"^[A-Za-z0-9_]{3,20}$"


def public_user(row: dict) -> dict:
    """The user as clients see it."""
    return {
        "id": row["id"],
        "username": row["username"],
        "email": row.get("email"),
        "role": row["role"],
        "status": row["status"],
        "avatarUrl": row.get("avatar_url"),
        "createdAt": iso(row["created_at"]),
    }


def admin_user(row: dict) -> dict:
    """The user as admins see it in the users API."""
    return public_user(row) | {
        "rejectionReason": row.get("rejection_reason"),
        "approvedAt": iso(row.get("approved_at")),
        "lastLoginAt": iso(row.get("last_login_at")),
        "updatedAt": iso(row.get("updated_at")),
        "dailyQuota": row.get("daily_quota"),
    }


def get_user(db: dataset.Database, user_id: int) -> dict | None:
    """A user row by id."""
    return fetch_one(db, "SELECT * FROM users WHERE id = :id", id=user_id)


def find_by_login(db: dataset.Database, login: str) -> dict | None:
    """A user by username or email, case-insensitively."""
    key = login.strip().lower()
    return fetch_one(
        db, "SELECT * FROM users WHERE lower(username) = :k OR lower(email) = :k ORDER BY id LIMIT 1", k=key
    )


def username_taken(db: dataset.Database, username: str, *, except_id: int | None = None) -> bool:
    row = fetch_one(db, "SELECT id FROM users WHERE lower(username) = :u", u=username.lower())
    return row is not None and row["id"] != except_id


def email_taken(db: dataset.Database, email: str, *, except_id: int | None = None) -> bool:
    row = fetch_one(db, "SELECT id FROM users WHERE lower(email) = :e", e=email.lower())
    return row is not None and row["id"] != except_id


def create_user(
    db: dataset.Database,
    *,
    username: str,
    password_hash: str,
    email: str | None = None,
    role: str | None = None,
    status: str | None = None,
) -> dict:
    """Insert a user. With role/status None the first account ever becomes an active admin.

    The first-account decision is made inside the INSERT itself, so two racing registrations
    cannot both become admin on SQLite (the write lock serialises them).
    """
    if username_taken(db, username):
        raise Conflict("Username is already taken", code="username_taken")
    if email and email_taken(db, email):
        raise Conflict("Email is already registered", code="email_taken")
    now = utcnow()
    role_sql = ":role" if role else f"CASE WHEN EXISTS (SELECT 1 FROM users) THEN '{USER}' ELSE '{ADMIN}' END"
    status_sql = ":status" if role else f"CASE WHEN EXISTS (SELECT 1 FROM users) THEN :status ELSE '{ACTIVE}' END"
    try:
        with db as tx:
            execute(
                tx,
                "INSERT INTO users (username, email, password_hash, role, status, token_version, created_at,"
                f" updated_at) VALUES (:username, :email, :hash, {role_sql}, {status_sql}, 0, :now, :now)",
                username=username,
                email=email.lower() if email else None,
                hash=password_hash,
                role=role,
                status=status or PENDING,
                now=now,
            )
            execute(
                tx,
                "UPDATE users SET approved_at = created_at WHERE lower(username) = :u AND status = :active",
                u=username.lower(),
                active=ACTIVE,
            )
            row = fetch_one(tx, "SELECT * FROM users WHERE lower(username) = :u", u=username.lower())
    except IntegrityError as exc:
        raise Conflict("Username or email is already taken", code="username_taken") from exc
    assert row is not None
    return row


def update_user(db: dataset.Database, user_id: int, **changes: object) -> dict:
    """Write some columns of a user (and updated_at); returns the fresh row."""
    changes["updated_at"] = utcnow()
    assignments = ", ".join(f"{column} = :{column}" for column in changes)
    with db as tx:
        execute(tx, f"UPDATE users SET {assignments} WHERE id = :user_id", user_id=user_id, **changes)
        row = get_user(tx, user_id)
    assert row is not None
    return row


def revoke_all_tokens(db: dataset.Database, user_id: int) -> None:
    """Invalidate every token issued to the user so far (password change, disable, delete)."""
    with db as tx:
        execute(
            tx,
            "UPDATE users SET token_version = token_version + 1, updated_at = :now WHERE id = :id",
            id=user_id,
            now=utcnow(),
        )


# True for a row whose change cannot leave the site without an active admin: it is not an active admin,
# or another active admin exists. Evaluated inside the writing statement, so check and write are one step.
_KEEPS_AN_ADMIN = (
    "(role <> :admin_role OR status <> :active_status OR EXISTS (SELECT 1 FROM users other"
    " WHERE other.id <> :user_id AND other.role = :admin_role AND other.status = :active_status))"
)


def _lock_active_admins(tx: dataset.Database) -> None:
    """On PostgreSQL, serialise admin removals: two of them at once would each still see the other
    admin in their snapshot. (SQLite runs one writer at a time, so the statement alone is enough.)"""
    if is_postgres(tx):
        fetch_all(tx, "SELECT id FROM users WHERE role = :r AND status = :s FOR UPDATE", r=ADMIN, s=ACTIVE)


def _last_admin_or_gone(tx: dataset.Database, user_id: int) -> Exception:
    if get_user(tx, user_id) is None:
        return NotFound("User not found", code="user_not_found")
    return Conflict("The last active administrator cannot be removed", code="last_admin")


def update_user_keeping_an_admin(db: dataset.Database, user_id: int, **changes: object) -> dict:
    """`update_user` for a change that may remove an admin (demote, disable, reject): 409 `last_admin`
    when it would leave no active admin, checked atomically with the write."""
    changes["updated_at"] = utcnow()
    assignments = ", ".join(f"{column} = :{column}" for column in changes)
    with db as tx:
        _lock_active_admins(tx)
        written = execute(
            tx,
            f"UPDATE users SET {assignments} WHERE id = :user_id AND {_KEEPS_AN_ADMIN}",
            user_id=user_id,
            admin_role=ADMIN,
            active_status=ACTIVE,
            **changes,
        )
        if not written:
            raise _last_admin_or_gone(tx, user_id)
        row = get_user(tx, user_id)
    assert row is not None
    return row


def delete_user_keeping_an_admin(db: dataset.Database, user_id: int) -> None:
    """Delete a user; 409 `last_admin` when it is the last active admin (checked atomically)."""
    with db as tx:
        _lock_active_admins(tx)
        deleted = execute(
            tx,
            f"DELETE FROM users WHERE id = :user_id AND {_KEEPS_AN_ADMIN}",
            user_id=user_id,
            admin_role=ADMIN,
            active_status=ACTIVE,
        )
        if not deleted:
            raise _last_admin_or_gone(tx, user_id)


def count_active_admins(db: dataset.Database) -> int:
    row = fetch_one(db, "SELECT COUNT(*) AS n FROM users WHERE role = :r AND status = :s", r=ADMIN, s=ACTIVE)
    return int(row["n"]) if row else 0


def preferred_model(row: dict) -> dict | None:
    """The user's stored preferred model `{modelId, connectionId, rawId}`, or None."""
    raw = row.get("preferred_model")
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None

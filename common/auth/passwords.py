"""Password rules and bcrypt hashing, run off the event loop.

bcrypt is CPU work that would stall every stream of the worker (stack-notes): under gevent it runs in
the hub's threadpool, where it releases the GIL.
"""

from __future__ import annotations

import re
import secrets

import bcrypt

MIN_BYTES, MAX_BYTES = 8, 72
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
_DIGIT = re.compile(r"\d")
_dummy_hashes: dict[int, bytes] = {}


def _dummy_hash(rounds: int) -> bytes:
    """A hash of a random password at the configured cost: unknown users are checked against it so
    that the time taken does not tell whether an account exists."""
    if rounds not in _dummy_hashes:
        _dummy_hashes[rounds] = bcrypt.hashpw(secrets.token_hex(16).encode(), bcrypt.gensalt(rounds))
    return _dummy_hashes[rounds]


def password_problem(password: str) -> str | None:
    """Why a new password is not acceptable, or None when it is."""
    size = len(password.encode("utf-8"))
    if size < MIN_BYTES:
        return f"Password must be at least {MIN_BYTES} characters."
    if size > MAX_BYTES:
        return f"Password must be at most {MAX_BYTES} bytes."
    if not _LETTER.search(password) or not _DIGIT.search(password):
        return "Password must contain a letter and a digit."
    return None


def _offload(func, *args):
    try:
        import gevent

        hub = gevent.get_hub()
        return hub.threadpool.apply(func, args)
    except ImportError:  # pragma: no cover - gevent is a hard dependency
        return func(*args)


def hash_password(password: str, rounds: int) -> str:
    """bcrypt hash of a password that passed `password_problem`."""
    salt = bcrypt.gensalt(rounds=rounds)
    return _offload(bcrypt.hashpw, password.encode("utf-8"), salt).decode("ascii")


def verify_password(password: str, stored_hash: str | None, rounds: int) -> bool:
    """Constant-time check; a missing hash costs the same time (at `rounds`) and fails."""
    candidate = password.encode("utf-8")
    if len(candidate) > MAX_BYTES:
        # bcrypt 5 refuses long inputs; such a password can never have been set.
        _offload(bcrypt.checkpw, b"x", _dummy_hash(rounds))
        return False
    target = stored_hash.encode("ascii") if stored_hash else _dummy_hash(rounds)
    try:
        matched = _offload(bcrypt.checkpw, candidate, target)
    except ValueError:
        return False
    return bool(matched) and stored_hash is not None

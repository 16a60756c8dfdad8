"""Share links: a snapshot of some messages of a session, readable by anyone who has the token.

- The token is `secrets.token_urlsafe(32)` (256 bits). Lookups use its SHA-256 (the database never
  holds a usable token in the clear); the token itself is kept AES-GCM sealed so that its owner can
  copy the link again.
- The messages are copied when the share is made, so later edits and deletions do not change it. An
  answer that was still generating is the exception: readers follow it live until it finishes, and its
  final text is then frozen into the snapshot.
- Readers never see owner ids, quota snapshots or anything else about the owner.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from datetime import datetime

import dataset
from flask import Flask

from common import images
from common.chat import service
from common.chat.live import Event, EventSource
from common.crypto import SecretDecryptError, decrypt_secret, encrypt_secret
from common.db import as_datetime, execute, fetch_all, fetch_one, iso, utcnow

TOKEN_BYTES = 32
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
HIDDEN_EVENT_TYPES = {"quota"}  # the owner's quota snapshot names the owner


def new_token() -> str:
    """A fresh, unguessable share token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """What the database stores and looks tokens up by."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def seal_token(token: str, key: str) -> str:
    """The token, encrypted for its owner's later listing."""
    return encrypt_secret(token, key)


def unseal_token(sealed: str, key: str) -> str | None:
    """The owner's token again, or None when it cannot be decrypted (another ENCRYPTION_KEY)."""
    try:
        return decrypt_secret(sealed, key)
    except SecretDecryptError:
        return None


def copy_message(row: dict) -> dict:
    """The public copy of one message kept in a snapshot (no owner, session or client ids)."""
    copied = {
        "id": row["id"],
        "role": row["role"],
        "content": row.get("content") or "",
        "reasoning": row.get("reasoning"),
        "reasoningDurationSeconds": row.get("reasoning_duration_seconds"),
        "createdAt": iso(row["created_at"]),
        "images": images.stored_paths(row.get("images")),  # stored paths; signed when read
        "streamStatus": row.get("stream_status"),
        "model": row.get("model"),
    }
    if row.get("sender_name"):
        copied["senderName"] = row["sender_name"]
    return copied


def build_snapshot(rows: list[dict]) -> list[dict]:
    """Snapshot entries for these messages, in conversation order; answers still generating are marked
    `_live` so that readers follow them."""
    entries = []
    for row in sorted(rows, key=lambda r: r["id"]):
        entry = copy_message(row)
        if row.get("stream_status") == "streaming":
            entry["_live"] = True
        entries.append(entry)
    return entries


def is_active(share: dict, now: datetime | None = None) -> bool:
    """Neither revoked nor expired."""
    now = now or utcnow()
    expires = as_datetime(share.get("expires_at"))
    return share.get("revoked_at") is None and (expires is None or expires > now)


def find_active(db: dataset.Database, token: str) -> dict | None:
    """The share with this token if it exists and is neither revoked nor expired, else None."""
    if not isinstance(token, str) or not TOKEN_PATTERN.match(token):
        return None
    digest = token_hash(token)
    row = fetch_one(db, "SELECT * FROM shares WHERE token_hash = :h", h=digest)
    if row is None or not hmac.compare_digest(row["token_hash"], digest) or not is_active(row):
        return None
    return row


def current_messages(db: dataset.Database, share: dict) -> list[dict]:
    """The share's messages: the snapshot, with answers that were generating read as they are now.
    Answers that have finished since are frozen into the snapshot (one short write)."""
    stored = share["snapshot"]
    entries: list[dict] = json.loads(stored)
    live = {entry["id"]: entry for entry in entries if entry.get("_live")}
    if not live:
        return entries
    params = {f"m{n}": mid for n, mid in enumerate(live)}
    rows = fetch_all(
        db,
        f"SELECT * FROM messages WHERE session_id = :sid AND id IN ({', '.join(':' + k for k in params)})",
        sid=share["session_id"], **params,
    )
    found = {row["id"]: row for row in rows}
    changed = False
    for mid, entry in live.items():
        row = found.get(mid)
        if row is None:  # deleted while it was generating: keep what the snapshot had
            entry.update(streamStatus="interrupted")
            entry.pop("_live")
            changed = True
            continue
        entry.update(copy_message(row))
        if row.get("stream_status") != "streaming":
            entry.pop("_live")
            changed = True
    if changed:
        with db as tx:  # only if nobody froze it first
            execute(tx, "UPDATE shares SET snapshot = :new WHERE id = :id AND snapshot = :old",
                    new=json.dumps(entries), id=share["id"], old=stored)
    return entries


def public_message(entry: dict) -> dict:
    """A snapshot entry as readers see it (images as signed URLs, which need no owner credentials)."""
    shown = {key: value for key, value in entry.items() if not key.startswith("_")}
    shown["images"] = images.message_image_urls(entry.get("images") or [])
    return shown


def public_share(share: dict, entries: list[dict]) -> dict:
    """The share as anyone with the token sees it: no owner, no session id."""
    return {
        "title": share["title"],
        "createdAt": iso(share["created_at"]),
        "updatedAt": iso(share["updated_at"]),
        "expiresAt": iso(share.get("expires_at")),
        "messageCount": len(entries),
        "live": any(entry.get("streamStatus") == "streaming" for entry in entries),
        "messages": [public_message(entry) for entry in entries],
    }


def owner_share(share: dict, key: str, base_url: str) -> dict:
    """The share as its owner sees it, with the token and link."""
    token = unseal_token(share["token_sealed"], key)
    now = utcnow()
    expires = as_datetime(share.get("expires_at"))
    return {
        "id": share["id"],
        "token": token,
        "url": f"{base_url.rstrip('/')}/share/{token}" if token else None,
        "title": share["title"],
        "sessionId": share["session_id"],
        "messageIds": json.loads(share["message_ids"]),
        "createdAt": iso(share["created_at"]),
        "updatedAt": iso(share["updated_at"]),
        "expiresAt": iso(expires),
        "revokedAt": iso(share.get("revoked_at")),
        "expired": expires is not None and expires <= now,
        "active": is_active(share, now),
    }


class PublicEvents:
    """A generation's events for share readers: the owner's quota snapshot is left out (sequence
    numbers stay those of the generation, so re-attaching with Last-Event-ID works)."""

    def __init__(self, source: EventSource) -> None:
        self.source = source
        self.skipped_to = 0

    def wait_after(self, seq: int, timeout: float) -> list[Event]:
        deadline = time.monotonic() + timeout
        while True:
            ready = self.source.wait_after(max(seq, self.skipped_to), max(deadline - time.monotonic(), 0))
            if ready:
                self.skipped_to = max(self.skipped_to, ready[-1][0])
            visible = [(n, payload) for n, payload in ready if payload.get("type") not in HIDDEN_EVENT_TYPES]
            if visible or not ready or self.is_complete(seq) or time.monotonic() >= deadline:
                return visible

    def is_complete(self, seq: int) -> bool:
        return self.source.is_complete(max(seq, self.skipped_to))


class SnapshotEvents:
    """A finished share replayed as one `message` event per message, numbered from 1."""

    def __init__(self, entries: list[dict]) -> None:
        self.events: list[Event] = [
            (n + 1, {"type": "message", "message": public_message(entry)}) for n, entry in enumerate(entries)
        ]

    def wait_after(self, seq: int, timeout: float) -> list[Event]:
        return self.events[max(seq, 0):]

    def is_complete(self, seq: int) -> bool:
        return True


def stream_source(app: Flask, db: dataset.Database, share: dict) -> tuple[EventSource, int | None]:
    """What a share's stream follows: the first shared answer still generating (live), else the snapshot.
    Returns the source and the id of the answer followed (None for the snapshot)."""
    entries = current_messages(db, share)
    generating = [entry["id"] for entry in entries if entry.get("_live")]
    if generating:
        return PublicEvents(service.follow(app, generating[0])), generating[0]
    return SnapshotEvents(entries), None

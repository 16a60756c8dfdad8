"""Images: uploads checked by their content, stored under generated names, served to their owner or
through a signed URL (security.md item 6).

- An upload is `{data: base64 (a `data:` URL is accepted too), mime}`. The declared mime is ignored:
  the type is sniffed from the magic bytes (PNG, JPEG, WebP, GIF only), so a PNG declared as
  image/gif is stored and served as PNG, and a text file declared as image/png is refused.
- Files live at `DATA_DIR/images/<yyyy>/<mm>/<32 random hex>.<ext>` (chat) and
  `DATA_DIR/avatars/<yyyy>/<mm>/...` (avatars), never under a client's name. The `images` table
  records each file: kind, owner (user_id / anon_key), message, sha256, size, mime.
- A row is written before its file and deleted after it, so a crash never leaves an untracked file
  (an unattached row is cleaned up by the `image_retention` job).
- Signed URLs: `/chat-images/<path>?exp=<unix>&sig=<HMAC-SHA256(path, exp)>` with a key derived
  (HKDF) from JWT_SECRET, compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dataset
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

from common.db import execute, fetch_all, insert, utcnow
from common.errors import BadRequest, TooLarge, ValidationFailed

log = logging.getLogger("parley.images")

MAX_IMAGES_PER_MESSAGE = 4
MAX_IMAGE_BYTES = 15 * 1024 * 1024
MAX_AVATAR_BYTES = 2 * 1024 * 1024
CHAT, AVATAR = "chat", "avatar"
DIRECTORIES = {CHAT: "images", AVATAR: "avatars"}
URL_PREFIXES = {CHAT: "/chat-images/", AVATAR: "/avatars/"}
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
MIME_OF_EXTENSION = {ext: mime for mime, ext in EXTENSIONS.items()}
PATH_PATTERN = re.compile(r"[0-9]{4}/[0-9]{2}/[0-9a-f]{32}\.(?:png|jpg|webp|gif)")
SIGNED_URL_TTL = 7 * 24 * 3600  # a signed URL stays valid 7 to 8 days ...
SIGNED_URL_STEP = 24 * 3600  # ... and is the same string for a day (browsers can cache it)
_HKDF_INFO = b"parley signed image urls v1"


@dataclass(frozen=True)
class Upload:
    """A decoded upload whose type was sniffed from its content."""

    data: bytes
    mime: str

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.mime]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def sniff(data: bytes) -> str | None:
    """The image type of `data` by its magic bytes, or None when it is not an accepted image."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _too_large(field: str, max_bytes: int) -> TooLarge:
    return TooLarge(f"{field}: image is larger than {max_bytes // (1024 * 1024)} MB", code="image_too_large",
                    data={"field": field, "maxBytes": max_bytes})


def _decode_base64(text: str, max_bytes: int, field: str) -> bytes:
    invalid = BadRequest(f"{field}: data is not valid base64", code="invalid_base64", data={"field": field})
    if text.startswith("data:"):
        head, comma, text = text.partition(",")
        if not comma or not head.endswith(";base64"):
            raise invalid
    compact = "".join(text.split())  # MIME-style line breaks are tolerated
    if len(compact) > 4 * ((max_bytes + 2) // 3) + 4:
        raise _too_large(field, max_bytes)
    compact += "=" * (-len(compact) % 4)  # missing padding is tolerated
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise invalid from None
    if len(data) > max_bytes:
        raise _too_large(field, max_bytes)
    return data


def parse_upload(value: Any, *, max_bytes: int, field: str) -> Upload:
    """Decode and check one `{data, mime}` upload: 400 (validation_error, invalid_base64,
    invalid_image) or 413 (image_too_large); never anything else."""
    if not isinstance(value, dict):
        raise ValidationFailed({field: ["Must be an object {data, mime}."]})
    data, mime = value.get("data"), value.get("mime")
    if not isinstance(data, str) or not data:
        raise ValidationFailed({f"{field}.data": ["Must be a non-empty base64 string."]})
    if mime is not None and not isinstance(mime, str):
        raise ValidationFailed({f"{field}.mime": ["Not a valid string."]})
    decoded = _decode_base64(data, max_bytes, field)
    sniffed = sniff(decoded)
    if sniffed is None:
        raise BadRequest(f"{field}: not a PNG, JPEG, WebP or GIF image (checked by content)", code="invalid_image",
                         data={"field": field})
    return Upload(decoded, sniffed)


def parse_uploads(value: Any, field: str = "images") -> list[Upload]:
    """The `images` of a chat message: at most MAX_IMAGES_PER_MESSAGE, each at most MAX_IMAGE_BYTES."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationFailed({field: ["Must be a list of {data, mime} objects."]})
    if len(value) > MAX_IMAGES_PER_MESSAGE:
        raise BadRequest(f"At most {MAX_IMAGES_PER_MESSAGE} images per message", code="too_many_images",
                         data={"limit": MAX_IMAGES_PER_MESSAGE})
    return [parse_upload(item, max_bytes=MAX_IMAGE_BYTES, field=f"{field}.{i}") for i, item in enumerate(value)]


# --- storage ---------------------------------------------------------------------------------------


def file_path(kind: str, path: str) -> Path | None:
    """Where a stored image lives, or None for anything that is not a generated name (no traversal)."""
    if not isinstance(path, str) or not PATH_PATTERN.fullmatch(path):
        return None
    return Path(current_app.config["PARLEY"].data_dir) / DIRECTORIES[kind] / path


def save(db: dataset.Database, kind: str, owner: dict, uploads: list[Upload]) -> list[dict]:
    """Record and write these uploads (rows first, then files); returns the rows (with `id`, `path`).
    On failure nothing is left behind."""
    if not uploads:
        return []
    now = utcnow()
    rows = [
        {"kind": kind, "user_id": owner.get("user_id"), "anon_key": owner.get("anon_key"), "message_id": None,
         "path": f"{now:%Y}/{now:%m}/{secrets.token_hex(16)}.{upload.extension}", "mime": upload.mime,
         "size": len(upload.data), "sha256": upload.sha256, "created_at": now}
        for upload in uploads
    ]
    with db as tx:
        for row in rows:
            row["id"] = insert(tx, "images", dict(row))
    try:
        for row, upload in zip(rows, uploads, strict=True):
            target = file_path(kind, row["path"])
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as handle:
                handle.write(upload.data)
    except BaseException:
        discard(db, rows)
        raise
    return rows


def attach(db: dataset.Database, rows: list[dict], message_id: int) -> None:
    """Link stored chat images to the user message that carries them."""
    if rows:
        ids = ",".join(str(int(row["id"])) for row in rows)
        with db as tx:
            execute(tx, f"UPDATE images SET message_id = :m WHERE id IN ({ids})", m=message_id)


def attach_quietly(db: dataset.Database, rows: list[dict], message_id: int) -> None:
    """attach(), logging a failure instead of failing a turn that already exists (the retention job
    re-attaches an unlinked row whose path a message lists)."""
    try:
        attach(db, rows, message_id)
    except Exception:
        log.exception("could not link %d image(s) to message %s", len(rows), message_id)


def discard_quietly(db: dataset.Database, rows: list[dict]) -> None:
    """discard(), logging a failure (the caller is already handling another error)."""
    try:
        discard(db, rows)
    except Exception:
        log.exception("could not discard %d image(s); the retention job will", len(rows))


def delete_files(rows: list[dict]) -> int:
    """Remove the files of these rows (missing ones are fine); returns how many were removed."""
    removed = 0
    for row in rows:
        target = file_path(row["kind"], row["path"])
        if target is not None and target.is_file():
            target.unlink(missing_ok=True)
            removed += 1
    return removed


def discard(db: dataset.Database, rows: list[dict]) -> int:
    """Delete these images: files first, then rows (a crash in between leaves a row, never a file)."""
    if not rows:
        return 0
    removed = delete_files(rows)
    ids = ",".join(str(int(row["id"])) for row in rows)
    with db as tx:
        execute(tx, f"DELETE FROM images WHERE id IN ({ids})")
    return removed


def stored_paths(raw: Any) -> list[str]:
    """The stored image paths of a `messages.images` value (JSON text or a list)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return []
    return [p for p in raw if isinstance(p, str) and PATH_PATTERN.fullmatch(p)] if isinstance(raw, list) else []


# --- signed URLs -----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _signing_key(secret: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret.encode("utf-8"))


def signature(path: str, expires: int) -> str:
    """HMAC-SHA256 over the path and expiry (URL-safe base64, no padding)."""
    key = _signing_key(current_app.config["PARLEY"].jwt_secret)
    digest = hmac.new(key, f"chat-images/{path}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def signed_url(path: str, now: float | None = None) -> str:
    """`/chat-images/<path>?exp=...&sig=...`, valid for SIGNED_URL_TTL (plus up to a day)."""
    now = time.time() if now is None else now
    expires = (int(now) // SIGNED_URL_STEP + 1) * SIGNED_URL_STEP + SIGNED_URL_TTL
    return f"{URL_PREFIXES[CHAT]}{path}?exp={expires}&sig={signature(path, expires)}"


def verify_signature(path: str, expires: str | None, sig: str | None) -> bool:
    """True for an unexpired URL signed by this server (constant-time comparison)."""
    if not expires or not sig or not expires.isdigit() or len(expires) > 12 or int(expires) < time.time():
        return False
    expected = signature(path, int(expires)).encode("ascii")
    return hmac.compare_digest(expected, sig.encode("utf-8", "replace"))


def message_image_urls(raw: Any) -> list[str]:
    """Message.images for the API: signed URLs of the stored images."""
    return [signed_url(path) for path in stored_paths(raw)]


# --- prompts ---------------------------------------------------------------------------------------


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def stored_data_url(path: str) -> str | None:
    """A stored chat image as a data URL, or None when its file is gone."""
    target = file_path(CHAT, path)
    try:
        return data_url(MIME_OF_EXTENSION[path.rsplit(".", 1)[1]], target.read_bytes()) if target else None
    except OSError:
        return None


def user_content(text: str, urls: list[str]) -> str | list[dict]:
    """A user message's content: plain text, or OpenAI-style parts (text, then image_url parts)."""
    if not urls:
        return text
    parts: list[dict] = [{"type": "text", "text": text}] if text else []
    return parts + [{"type": "image_url", "image_url": {"url": url}} for url in urls]


# --- avatars ---------------------------------------------------------------------------------------


def save_avatar(db: dataset.Database, user_id: int, upload: Upload) -> str:
    """Store a user's new avatar; returns its public URL (`/avatars/<path>`)."""
    row = save(db, AVATAR, {"user_id": user_id}, [upload])[0]
    return URL_PREFIXES[AVATAR] + row["path"]


def prune_avatars(db: dataset.Database, user_id: int, keep_url: str | None) -> int:
    """Delete the user's stored avatars other than the one at `keep_url`."""
    rows = fetch_all(db, "SELECT id, kind, path FROM images WHERE kind = :k AND user_id = :u", k=AVATAR, u=user_id)
    return discard(db, [row for row in rows if URL_PREFIXES[AVATAR] + row["path"] != keep_url])

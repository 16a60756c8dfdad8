"""Admission of a chat request, before anything is written: the session (owner only), the message
being answered, the model (access checked on every message), the concurrency limit and the quota.

Any refusal here is a plain JSON error and leaves no trace: no message row, no quota used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dataset

from common import images
from common.auth.actors import Actor
from common.auth.ownership import owned_message, owned_session
from common.chat.store import ConcurrencyLimitReached
from common.db import fetch_one
from common.errors import BadRequest, ValidationFailed
from common.model_access import ResolvedModel, resolve_model


@dataclass(frozen=True)
class Admission:
    """What an admitted request will answer."""

    session: dict
    model: ResolvedModel
    reply_to: dict | None  # the user message to answer again (regenerate), or None for a new message
    content: str | None
    options: dict[str, Any]
    images: list[images.Upload] = field(default_factory=list)  # decoded and checked, not stored yet


def existing_turn(db: dataset.Database, session_id: int, client_message_id: str | None) -> dict | None:
    """The newest answer to the user message with this clientMessageId (an idempotent re-send)."""
    if not client_message_id:
        return None
    return fetch_one(
        db,
        "SELECT a.* FROM messages u JOIN messages a ON a.parent_message_id = u.id WHERE u.session_id = :s "
        "AND u.client_message_id = :c AND u.role = 'user' ORDER BY a.variant_index DESC LIMIT 1",
        s=session_id,
        c=client_message_id,
    )


def reply_target(db: dataset.Database, actor: Actor, session: dict, body: dict) -> dict | None:
    """The user message a regeneration answers (an assistant id means the question it answered)."""
    if body.get("replyToMessageId") is not None:
        message = owned_message(db, actor, body["replyToMessageId"], session["id"])
    elif body.get("replyToClientMessageId"):
        message = fetch_one(
            db, "SELECT * FROM messages WHERE session_id = :s AND client_message_id = :c",
            s=session["id"], c=body["replyToClientMessageId"],
        )
        if message is None:
            raise BadRequest("No message with that replyToClientMessageId in this session", code="message_not_found")
    else:
        return None
    if message["role"] == "assistant":
        message = fetch_one(db, "SELECT * FROM messages WHERE id = :id", id=message["parent_message_id"])
        if message is None:
            raise BadRequest("That answer has no question to regenerate", code="message_not_found")
    return message


def check_concurrency(db: dataset.Database, actor: Actor, limit: int) -> None:
    """Refuse early (before quota) when the actor already runs `limit` generations."""
    running = fetch_one(
        db, "SELECT COUNT(*) AS n FROM generations WHERE owner = :o AND state = 'running'", o=actor.identifier
    )["n"]
    if running >= limit:
        raise ConcurrencyLimitReached(
            f"Too many answers are being generated at once (limit {limit}); wait for one to finish",
            data={"limit": limit},
        )


def admit(db: dataset.Database, actor: Actor, body: dict) -> Admission:
    """Check everything that can refuse the request, without writing."""
    session = owned_session(db, actor, body["sessionId"])
    reply_to = reply_target(db, actor, session, body)
    content = body.get("content")
    uploads = images.parse_uploads(body.get("images"))
    if uploads and reply_to is not None:
        raise ValidationFailed({"images": ["Images can only be sent with a new message, not with a reply."]})
    if reply_to is None and not (content and content.strip()) and not uploads:
        raise BadRequest("Either non-blank content or a reply reference is required", code="validation_error")
    if not session.get("model_label") and not session.get("model_raw_id"):
        raise BadRequest("This session has no model; choose one first", code="model_not_found")
    model = resolve_model(db, actor, session.get("model_label"), session.get("connection_id"),
                          session.get("model_raw_id"))
    if (uploads or (reply_to and images.stored_paths(reply_to.get("images")))) and not model.capabilities.get("vision"):
        raise BadRequest(f"The model {model.model_id} does not accept images; choose a vision model",
                         code="model_no_vision")
    options = {
        "reasoning_enabled": _pick(body, "reasoningEnabled", session.get("reasoning_enabled")),
        "reasoning_effort": _pick(body, "reasoningEffort", session.get("reasoning_effort")),
        "ollama_think": _pick(body, "ollamaThink", session.get("ollama_think")),
        "context_enabled": body.get("contextEnabled", True) is not False,
        "custom_body": body.get("custom_body"),
        "custom_headers": body.get("custom_headers"),
    }
    return Admission(session, model, reply_to, content, options, uploads)


def _pick(body: dict, key: str, default: Any) -> Any:
    value = body.get(key)
    return default if value is None else value

"""How sessions and messages look to clients (camelCase, as the existing clients parse them)."""

from __future__ import annotations

import json

from common.db import iso
from common.images import message_image_urls


def _json(raw: str | None, default):
    if not raw:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        return default


def session_shape(row: dict) -> dict:
    """A chat session for the API."""
    return {
        "id": row["id"],
        "title": row["title"],
        "connectionId": row.get("connection_id"),
        "modelRawId": row.get("model_raw_id"),
        "modelLabel": row.get("model_label"),
        "pinnedAt": iso(row.get("pinned_at")),
        "pinned": row.get("pinned_at") is not None,
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
        "systemPrompt": row.get("system_prompt"),
        "reasoningEnabled": row.get("reasoning_enabled"),
        "reasoningEffort": row.get("reasoning_effort"),
        "ollamaThink": row.get("ollama_think"),
        "tags": _json(row.get("tags"), []),
        "lastMessagePreview": row.get("last_message_preview"),
        "lastMessageAt": iso(row.get("last_message_at")),
        "_count": {"messages": row.get("message_count") or 0},
    }


def message_shape(row: dict) -> dict:
    """A message for the API."""
    shaped = {
        "id": row["id"],
        "sessionId": row["session_id"],
        "role": row["role"],
        "content": row.get("content") or "",
        "parentMessageId": row.get("parent_message_id"),
        "variantIndex": row.get("variant_index"),
        "clientMessageId": row.get("client_message_id"),
        "reasoning": row.get("reasoning"),
        "reasoningDurationSeconds": row.get("reasoning_duration_seconds"),
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
        "streamStatus": row.get("stream_status"),
        "streamCursor": row.get("stream_cursor") or 0,
        "streamError": row.get("stream_error"),
        "images": message_image_urls(row.get("images")),  # signed /chat-images/ URLs
        "metrics": _json(row.get("metrics"), None),
        "model": row.get("model"),
    }
    if row.get("sender_name"):
        shaped["senderName"] = row["sender_name"]
    if row.get("bot_id"):
        shaped["botId"] = row["bot_id"]
    return shaped

"""Building what the model is sent: system prompt, history truncated to the context window, the
current message, and the output budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dataset

from common import images, tokenizer
from common.auth.actors import Actor
from common.db import fetch_all
from common.users import get_user

DEFAULT_OUTPUT_RESERVE = 1024  # kept free for the answer when the model's output limit is unknown
MAX_HISTORY_IMAGES = 4  # images of earlier messages sent again to vision models (the newest ones)


@dataclass(frozen=True)
class Prompt:
    """The messages to send, their token count, the context limit and the max_tokens to ask for."""

    messages: list[dict[str, Any]]
    prompt_tokens: int
    context_limit: int
    max_tokens: int | None


def system_prompt(session: dict, personal_prompt: str | None, default_prompt: str) -> str:
    """Session prompt, else the user's personal prompt, else the site's chat_system_prompt."""
    for candidate in (session.get("system_prompt"), personal_prompt, default_prompt):
        if candidate and candidate.strip():
            return candidate
    return ""


def system_prompt_for(db: dataset.Database, actor: Actor, session: dict, default_prompt: str) -> str:
    """`system_prompt` with the actor's personal prompt (users only; read once per request)."""
    personal = None
    if actor.is_user:
        personal = (actor.user or get_user(db, actor.user_id)).get("personal_prompt")
    return system_prompt(session, personal, default_prompt)


def conversation_before(
    db: dataset.Database, session_id: int, before_message_id: int | None = None, *, with_images: bool = False
) -> list[dict]:
    """The conversation path before a message (the whole conversation when None): each user message
    followed by its newest answer that has text (regenerated variants are alternatives, only one of them
    is history). With `with_images` (vision models) user messages carry their newest MAX_HISTORY_IMAGES
    stored images as parts."""
    rows = fetch_all(
        db,
        "SELECT id, role, content, images, parent_message_id, variant_index, stream_status FROM messages "
        "WHERE session_id = :s AND (CAST(:before AS INTEGER) IS NULL OR id < :before) ORDER BY id",
        s=session_id,
        before=before_message_id,
    )
    answers: dict[int, dict] = {}
    for row in rows:
        if row["role"] == "assistant" and row["content"] and row["stream_status"] != "streaming":
            best = answers.get(row["parent_message_id"])
            if best is None or (row["variant_index"] or 0) > (best["variant_index"] or 0):
                answers[row["parent_message_id"]] = row
    path: list[dict] = []
    with_stored: list[tuple[dict, list[str]]] = []
    for row in rows:
        if row["role"] == "user":
            path.append({"role": "user", "content": row["content"]})
            if with_images and images.stored_paths(row.get("images")):
                with_stored.append((path[-1], images.stored_paths(row["images"])))
            if row["id"] in answers:
                path.append({"role": "assistant", "content": answers[row["id"]]["content"]})
    left = MAX_HISTORY_IMAGES
    for message, paths in reversed(with_stored):  # newest first; older images go as text only
        urls = [url for url in map(images.stored_data_url, paths[:left]) if url]
        left -= len(paths[:left])
        message["content"] = images.user_content(message["content"], urls)
        if left <= 0:
            break
    return path


def build_prompt(
    *,
    history: list[dict],
    current: dict[str, Any],
    system: str,
    model: str,
    context_window: int,
    max_output_tokens: int | None,
) -> Prompt:
    """Fit history into `context_window - system - output reserve`, newest first by whole messages;
    the current message is always kept."""
    system_messages = [{"role": "system", "content": system}] if system else []
    system_tokens = tokenizer.count_message(system_messages[0], model) if system_messages else 0
    reserve = max_output_tokens or min(DEFAULT_OUTPUT_RESERVE, context_window // 4)
    budget = max(context_window - system_tokens - reserve, 0)
    kept, kept_tokens = tokenizer.fit_history([*history, current], budget, model)
    messages = [*system_messages, *kept]
    prompt_tokens = system_tokens + kept_tokens  # = count_messages(messages), counted once
    max_tokens = None
    if max_output_tokens:
        max_tokens = max(1, min(max_output_tokens, context_window - prompt_tokens))
    return Prompt(messages, prompt_tokens, context_window, max_tokens)

"""Starting, following and cancelling generations: what the chat endpoints call."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

import dataset
from flask import Flask, current_app

from common import images, quota, task_trace
from common.auth.actors import Actor
from common.auth.ownership import owner_values
from common.chat import store
from common.chat.admission import Admission, admit, check_concurrency, existing_turn
from common.chat.live import DbEventSource, EventSource, Generation, SnapshotSource
from common.chat.prompt import build_prompt, conversation_before, system_prompt_for
from common.chat.runner import Plan, run
from common.connections import http_client_for
from common.db import fetch_all, fetch_one, release
from common.providers import ChatRequest, get_adapter

log = logging.getLogger("parley.chat")


@dataclass(frozen=True)
class Started:
    """A generation to follow: a new one, or the first one again for an idempotent re-send."""

    assistant_message_id: int
    source: EventSource
    user_message_id: int | None = None
    reattached: bool = False


def _trace_to_log(message_id: int):
    def trace(kind: str, **data) -> None:
        log.debug("generation %s %s %s", message_id, kind, data)

    return trace


def _chat_request(admission: Admission, messages: list[dict], max_tokens: int | None, settings: dict) -> ChatRequest:
    options = admission.options
    model = admission.model
    temperature = model.temperature if model.temperature is not None else settings["temperature_default"]
    return ChatRequest(
        model=model.raw_id,
        messages=messages,
        temperature=temperature,
        max_tokens=max_tokens,
        reasoning_effort=options["reasoning_effort"] if options["reasoning_enabled"] else None,
        ollama_think=options["ollama_think"],
        extra_body=options["custom_body"],
        extra_headers=options["custom_headers"],
    )


def _prompt_for(db: dataset.Database, actor: Actor, admission: Admission, settings: dict):
    session = admission.session
    vision = bool(admission.model.capabilities.get("vision"))  # else admission refused any image
    if admission.reply_to is not None:
        paths = images.stored_paths(admission.reply_to.get("images")) if vision else []
        urls = [url for url in map(images.stored_data_url, paths) if url]
        current = {"role": "user", "content": images.user_content(admission.reply_to["content"], urls)}
        before = admission.reply_to["id"]
    else:
        urls = [images.data_url(upload.mime, upload.data) for upload in admission.images]
        current = {"role": "user", "content": images.user_content(admission.content or "", urls)}
        before = None
    history = (conversation_before(db, session["id"], before, with_images=vision)
               if admission.options["context_enabled"] else [])
    return build_prompt(
        history=history,
        current=current,
        system=system_prompt_for(db, actor, session, settings["chat_system_prompt"]),
        model=admission.model.raw_id,
        context_window=admission.model.context_window,
        max_output_tokens=admission.model.max_output_tokens,
    )


def start(app: Flask, actor: Actor, body: dict) -> Started:
    """Admit, charge, persist and launch a generation; or re-attach to the one this re-send started."""
    db = app.extensions["parley.db"]
    settings = app.extensions["parley.settings"].all()
    registry = app.extensions["parley.generations"]
    admission = admit(db, actor, body)
    previous = existing_turn(db, admission.session["id"], body.get("clientMessageId"))
    if previous is not None:
        return Started(previous["id"], follow(app, previous["id"]), previous["parent_message_id"], reattached=True)
    check_concurrency(db, actor, settings["chat_max_concurrent_streams"])
    reservation = quota.reserve(db, actor)
    stored: list[dict] = []
    try:
        prompt = _prompt_for(db, actor, admission, settings)
        stored = images.save(db, images.CHAT, owner_values(actor), admission.images)  # only once admitted
        turn = store.create_turn(
            db, session=admission.session, owner=actor.identifier, worker=registry.worker_id,
            content=admission.content, client_message_id=body.get("clientMessageId"), reply_to=admission.reply_to,
            assistant_client_id=f"a-{secrets.token_hex(8)}", model_label=admission.model.model_id,
            images=[row["path"] for row in stored],
            max_concurrent=settings["chat_max_concurrent_streams"],
            variants_kept=settings["assistant_reply_history_limit"],
        )
    except BaseException:
        release(db)
        quota.release(db, reservation)  # the generation never started: the unit goes back
        images.discard_quietly(db, stored)  # ... and its images are not kept
        raise
    images.attach_quietly(db, stored, turn.user_message["id"])
    assistant = turn.assistant_message
    gen = Generation(assistant["id"], admission.session["id"], actor.identifier, assistant["client_message_id"])
    gen.log.append({"type": "start", "messageId": turn.user_message["id"], "assistantMessageId": assistant["id"],
                    "assistantClientMessageId": assistant["client_message_id"]})
    gen.log.append({"type": "quota", "quota": quota.snapshot(db, actor, reservation)})
    model = admission.model
    plan = Plan(
        app=app, gen=gen, session_id=admission.session["id"],
        request=_chat_request(admission, prompt.messages, prompt.max_tokens, settings), prompt=prompt,
        adapter=get_adapter(model.provider), provider_config=model.provider_config,
        http=http_client_for(model.policy), provider=model.provider, connection_id=model.connection_id,
        model_label=model.model_id, owner_columns=owner_values(actor), settings=settings,
        trace=task_trace.for_generation(app, settings, actor, admission, assistant["id"], _trace_to_log),
    )
    release(db)  # the request's connection is not needed while it streams
    registry.start(gen, run, plan)
    return Started(assistant["id"], gen.log, turn.user_message["id"])


def follow(app: Flask, message_id: int) -> EventSource:
    """Where to read a generation's events: this process's live log, the database's copy of another
    process's log, or (once the log has been pruned) a snapshot of the saved answer."""
    live = app.extensions["parley.generations"].get(message_id)
    if live is not None:
        return live.log
    db = app.extensions["parley.db"]
    row = fetch_one(db, "SELECT * FROM messages WHERE id = :id", id=message_id)
    if row is not None and (row["stream_status"] == "streaming" or store.stored_events(db, message_id)):
        return DbEventSource(app, message_id)
    return SnapshotSource(row)


def cancel(app: Flask, session_id: int, message_ids: list[int]) -> list[int]:
    """Cancel these generations wherever they run; returns the ids that were still running."""
    db = app.extensions["parley.db"]
    registry = app.extensions["parley.generations"]
    running = store.request_cancel(db, message_ids)
    for row in running:
        registry.cancel_local(row["message_id"])  # others: their worker's watcher sees the flag
    return [row["message_id"] for row in running]


def running_in_session(db: dataset.Database, session_id: int) -> list[int]:
    """Assistant message ids of the session's running generations."""
    rows = fetch_all(db, "SELECT message_id FROM generations WHERE session_id = :s AND state = 'running'",
                     s=session_id)
    return [row["message_id"] for row in rows]


def heartbeat_seconds() -> float:
    return current_app.extensions["parley.settings"].get("sse_heartbeat_interval_ms") / 1000


"""One generation's life, in its own greenlet: provider events in, sequence-numbered events out,
checkpoints while it runs, one final transaction at the end."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import gevent
import sqlalchemy as sa
from flask import Flask

from common import tokenizer
from common.chat import store
from common.chat.live import Event, Generation
from common.chat.prompt import Prompt
from common.chat.upstream import FallbackAnswer, Trace, provider_events
from common.db import is_transient_error, release
from common.providers import ChatRequest, ContentDelta, EndOfStream, Finish, ProviderError, ReasoningDelta, Usage

log = logging.getLogger("parley.chat")
FINAL_WRITE_PAUSES = (0.5, 1.0, 2.0, 4.0)  # seconds between attempts of the final write


@dataclass
class Plan:
    """Everything a generation needs, prepared by admission before the greenlet starts."""

    app: Flask
    gen: Generation
    session_id: int
    request: ChatRequest
    prompt: Prompt
    adapter: Any
    provider_config: Any
    http: Any
    provider: str
    connection_id: int | None
    model_label: str
    owner_columns: dict
    settings: dict
    trace: Trace


@dataclass
class Progress:
    """What has arrived so far, and what has not been checkpointed yet."""

    started: float = field(default_factory=time.monotonic)
    content: str = ""
    reasoning: str = ""
    reasoning_started: float | None = None
    reasoning_seconds: float | None = None
    first_token: float | None = None
    finish_reason: str | None = None
    provider_usage: Usage | None = None
    ended: bool = False
    fallback: bool = False
    pending: list[Event] = field(default_factory=list)
    last_checkpoint: float = field(default_factory=time.monotonic)


def run(plan: Plan) -> None:
    """The greenlet body: generate, and always leave the message in a final state."""
    db = plan.app.extensions["parley.db"]
    progress = Progress(pending=list(plan.gen.log.events))  # start and quota are persisted with the first batch
    with plan.app.app_context():
        try:
            _generate(plan, db, progress)
        except Exception as exc:  # a bug must not leave the answer "streaming" forever
            log.exception("generation %s failed unexpectedly", plan.gen.message_id)
            release(db)
            _finish(plan, db, progress, "error", f"Internal error: {type(exc).__name__}", "internal_error")
        finally:
            plan.gen.log.finish()
            plan.app.extensions["parley.generations"].forget(plan.gen.message_id)
            release(db)


def _emit(plan: Plan, progress: Progress, payload: dict) -> None:
    seq = plan.gen.log.append(payload)
    progress.pending.append((seq, payload))


def _close_reasoning(plan: Plan, progress: Progress) -> None:
    if progress.reasoning_started is not None and progress.reasoning_seconds is None:
        progress.reasoning_seconds = round(time.monotonic() - progress.reasoning_started, 2)
        _emit(plan, progress, {"type": "reasoning", "done": True, "duration": progress.reasoning_seconds})


def _on_event(plan: Plan, progress: Progress, event: Any) -> None:
    now = time.monotonic()
    if isinstance(event, ReasoningDelta) and event.text:
        progress.first_token = progress.first_token or now
        progress.reasoning_started = progress.reasoning_started or now
        progress.reasoning += event.text
        _emit(plan, progress, {"type": "reasoning", "content": event.text})
    elif isinstance(event, ContentDelta) and event.text:
        progress.first_token = progress.first_token or now
        _close_reasoning(plan, progress)
        progress.content += event.text
        _emit(plan, progress, {"type": "content", "content": event.text})
    elif isinstance(event, Finish):
        progress.finish_reason = event.reason
        _emit(plan, progress, {"type": "stop", "reason": event.reason})
    elif isinstance(event, Usage):
        progress.provider_usage = event
    elif isinstance(event, EndOfStream):
        progress.ended = True
    elif isinstance(event, FallbackAnswer):
        progress.fallback = True
        result = event.result
        for delta in (ReasoningDelta(result.reasoning), ContentDelta(result.content)):
            _on_event(plan, progress, delta)
        if result.finish_reason:
            _on_event(plan, progress, Finish(result.finish_reason))
        progress.provider_usage = result.usage
        progress.ended = True


def _checkpoint_if_due(plan: Plan, db, progress: Progress) -> None:
    interval = plan.settings["stream_progress_persist_interval_ms"] / 1000
    if progress.pending and time.monotonic() - progress.last_checkpoint >= interval:
        try:
            store.checkpoint(db, plan.gen.message_id, progress.content, progress.reasoning, progress.pending)
        except sa.exc.DBAPIError as exc:
            if not is_transient_error(exc):
                raise
            # A busy database must not cost the answer: keep the events and write them next time.
            log.warning("generation %s: checkpoint skipped (%s)", plan.gen.message_id, exc.orig)
            release(db)
        else:
            progress.pending = []
        progress.last_checkpoint = time.monotonic()


def _persist_final(db, message_id: int, **final) -> None:
    """store.finalize, tried again after a pause while the database is busy or unreachable: the
    answer is complete in memory and only this write saves it."""
    for pause in (*FINAL_WRITE_PAUSES, None):
        try:
            store.finalize(db, message_id, **final)
            return
        except sa.exc.DBAPIError as exc:
            if pause is None or not is_transient_error(exc):
                raise
            log.warning("generation %s: final write failed (%s); again in %g s", message_id, exc.orig, pause)
            release(db)
            gevent.sleep(pause)


def _generate(plan: Plan, db, progress: Progress) -> None:
    settings = plan.settings
    if settings["usage_emit"] and not settings["usage_provider_only"]:
        prompt = plan.prompt
        _emit(plan, progress, {"type": "usage", "usage": {
            "prompt_tokens": prompt.prompt_tokens, "total_tokens": prompt.prompt_tokens,
            "context_limit": prompt.context_limit,
            "context_remaining": max(prompt.context_limit - prompt.prompt_tokens, 0),
        }})
    status, error, code = "done", None, None
    try:
        for event in provider_events(
            plan.gen, plan.adapter, plan.provider_config, plan.request, plan.http,
            first_byte_timeout=settings["provider_timeout_ms"] / 1000,
            idle_timeout=settings["provider_max_idle_ms"] / 1000,
            batch_interval=settings["stream_batch_interval_ms"] / 1000,
            trace=plan.trace,
        ):
            if plan.gen.cancelled:
                break
            if progress.first_token is None and isinstance(event, ContentDelta | ReasoningDelta):
                plan.trace("first_chunk")
            _on_event(plan, progress, event)
            _checkpoint_if_due(plan, db, progress)
    except ProviderError as exc:
        status, error, code = "error", exc.message, exc.code
    if plan.gen.cancelled:
        status, error, code = "cancelled", None, None
        plan.trace("cancelled")
    _finish(plan, db, progress, status, error, code)


def _usage(plan: Plan, progress: Progress) -> dict | None:
    """The usage numbers: the provider's when it sent them, else local estimates."""
    if progress.provider_usage is not None:
        u = progress.provider_usage
        prompt_tokens, completion, total, source = u.prompt_tokens, u.completion_tokens, u.total_tokens, "provider"
    elif progress.content or progress.reasoning or progress.ended:
        prompt_tokens = plan.prompt.prompt_tokens
        completion = tokenizer.count_text(progress.reasoning + progress.content, plan.request.model)
        total, source = prompt_tokens + completion, "estimated"
    else:
        return None  # the provider produced nothing: there is nothing to account for
    limit = plan.prompt.context_limit
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": total,
            "context_limit": limit, "context_remaining": max(limit - total, 0), "usage_source": source}


def _metrics(progress: Progress, usage: dict | None) -> dict:
    end = time.monotonic()
    first = progress.first_token
    completion = usage["completion_tokens"] if usage else 0
    generating = end - first if first is not None else 0
    return {
        "firstTokenLatencyMs": round((first - progress.started) * 1000) if first is not None else None,
        "responseTimeMs": round((end - progress.started) * 1000),
        "tokensPerSecond": round(completion / generating, 2) if generating > 0 and completion else None,
    }


def _finish(plan: Plan, db, progress: Progress, status: str, error: str | None, code: str | None) -> None:
    """Persist the final state and the closing events in one transaction, then publish the events."""
    if status != "error" or progress.content or progress.reasoning:
        _close_reasoning(plan, progress)
    usage = _usage(plan, progress)
    metrics = _metrics(progress, usage)
    closing: list[dict] = []
    emit_usage = plan.settings["usage_emit"] and (usage is not None) and (
        usage["usage_source"] == "provider" or not plan.settings["usage_provider_only"])
    if emit_usage:
        closing.append({"type": "usage", "usage": usage})
    if status == "error":
        closing.append({"type": "error", "error": error or "The model failed to answer", "code": code})
    else:
        if progress.ended:
            closing.append({"type": "end"})
        complete = {"type": "complete", "metrics": metrics, "streamStatus": status}
        if progress.fallback:
            complete["origin"] = "fallback"
        closing.append(complete)
    first_seq = plan.gen.log.last_seq + 1
    final_events = [(first_seq + i, payload) for i, payload in enumerate(closing)]
    record = None
    if usage is not None:
        record = plan.owner_columns | {
            "connection_id": plan.connection_id, "model": plan.model_label, "provider": plan.provider,
            "prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
            "total_tokens": usage["total_tokens"], "context_limit": usage["context_limit"],
            "usage_source": usage["usage_source"],
        }
    _persist_final(
        db, plan.gen.message_id, session_id=plan.session_id, status=status, content=progress.content,
        reasoning=progress.reasoning, reasoning_seconds=progress.reasoning_seconds, error=error,
        metrics=metrics | {"promptTokens": usage["prompt_tokens"] if usage else None,
                           "completionTokens": usage["completion_tokens"] if usage else None,
                           "totalTokens": usage["total_tokens"] if usage else None,
                           "usageSource": usage["usage_source"] if usage else None},
        events=progress.pending + final_events, usage=record,
    )
    plan.trace("final_persist", status=status, code=code)
    for _seq, payload in final_events:
        plan.gen.log.append(payload)

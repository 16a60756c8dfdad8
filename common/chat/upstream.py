"""Talking to the provider with the resilience rules of stream.md.

- Before anything was sent downstream: a 429 waits `Retry-After` (or 15 s) and retries once; a 5xx,
  connection error or timeout waits 2 s and retries once.
- After anything was sent downstream: never retry (no duplicated text); the error ends the answer.
- If the stream fails before any visible content: one non-streaming request to the same model; its
  answer is delivered whole (`origin: "fallback"`).
- A cancel closes the upstream connection at once, also during a back-off wait or the fallback request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import gevent

from common.chat.live import Generation
from common.providers import (
    ChatRequest,
    CompletionResult,
    ContentDelta,
    ProviderAdapter,
    ProviderConfig,
    ProviderError,
    ReasoningDelta,
    StreamEvent,
)
from common.providers.errors import is_retryable

RATE_LIMIT_WAIT = 15.0
ERROR_WAIT = 2.0
MAX_RETRY_AFTER = 60.0  # a provider asking for a longer wait gets no retry: the error is shown instead
NO_FALLBACK_STATUSES = {400, 401, 403, 404, 413, 422}

Trace = Callable[..., None]


@dataclass(frozen=True)
class FallbackAnswer:
    """The whole answer of the non-streaming fallback request."""

    result: CompletionResult


class Cancelled(Exception):
    """The generation was cancelled while waiting on the provider."""


def _retry_wait(error: ProviderError) -> float | None:
    """Seconds to wait before the one retry, or None when this error gets no retry."""
    if not is_retryable(error):
        return None
    if error.status == 429:
        wait = error.retry_after if error.retry_after is not None else RATE_LIMIT_WAIT
        return wait if wait <= MAX_RETRY_AFTER else None
    return ERROR_WAIT


def _fallback_allowed(error: ProviderError) -> bool:
    return error.code not in {"upstream_auth"} and error.status not in NO_FALLBACK_STATUSES


def _fallback(gen: Generation, adapter: ProviderAdapter, config: ProviderConfig, req: ChatRequest, http,
              timeout: float) -> CompletionResult:
    """The non-streaming request, in a child greenlet that a cancel kills (closing its socket)."""
    call = gevent.spawn(adapter.complete_chat, req, http=http, timeout=timeout, config=config)
    gevent.wait([call, gen.cancel_event], count=1)
    if not call.ready():
        call.kill(block=True, timeout=2)
        raise Cancelled()
    return call.get()


def provider_events(
    gen: Generation,
    adapter: ProviderAdapter,
    config: ProviderConfig,
    req: ChatRequest,
    http,
    *,
    first_byte_timeout: float,
    idle_timeout: float,
    batch_interval: float = 0.0,
    trace: Trace,
) -> Iterator[StreamEvent | FallbackAnswer]:
    """The provider's normalized events for one generation, with retries and the fallback applied.

    Ends quietly when cancelled; raises ProviderError when the provider finally failed.
    """
    retried = False
    while True:
        sent_downstream = False
        stream = adapter.stream_chat(
            req, http=http, idle_timeout=idle_timeout, first_byte_timeout=first_byte_timeout, config=config,
            batch_interval=batch_interval,
        )
        gen.upstream = stream
        trace("provider_request", attempt=2 if retried else 1, model=req.model)
        try:
            if gen.cancelled:
                return
            for event in stream:
                if isinstance(event, ContentDelta | ReasoningDelta):
                    sent_downstream = True
                yield event
            return
        except ProviderError as error:
            if gen.cancelled:
                return
            trace("provider_error", code=error.code, status=error.status, message=error.message[:300])
            if sent_downstream:
                raise
            wait = None if retried else _retry_wait(error)
            if wait is not None:
                retried = True
                trace("retry", wait_seconds=wait, reason=error.code)
                if gen.cancel_event.wait(wait):
                    return
                continue
            if not _fallback_allowed(error):
                raise
            trace("fallback_request")
            try:
                result = _fallback(gen, adapter, config, req, http, first_byte_timeout)
            except Cancelled:
                return
            except ProviderError as fallback_error:
                trace("fallback_error", code=fallback_error.code, status=fallback_error.status)
                raise error from fallback_error
            yield FallbackAnswer(result)
            return
        finally:
            gen.upstream = None
            stream.close()

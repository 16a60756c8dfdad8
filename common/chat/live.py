"""Live generations: the sequence-numbered event log that subscribers follow.

A generation runs in its own greenlet, owned by the process. Every event it produces gets the next
sequence number and is appended to its `EventLog`; the HTTP response that started it, re-attached
clients and live shares all read from there. A subscriber that goes away (closed tab) only stops
reading: the generation goes on.

Subscribers in another worker process read the same events from the database (`DbEventSource`),
which the generation writes in batches at every checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import gevent
import gevent.event
import sqlalchemy as sa

from common import sse

Event = tuple[int, dict[str, Any]]


class EventSource(Protocol):
    """Something a subscriber can follow: new events after a sequence number, and an end."""

    def wait_after(self, seq: int, timeout: float) -> list[Event]:
        """Events with a sequence number above `seq`, waiting up to `timeout` for the first one."""

    def is_complete(self, seq: int) -> bool:
        """True when the generation ended and nothing follows `seq`."""


class EventLog:
    """The in-memory event log of one generation (sequence numbers start at 1, without gaps)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.finished = False
        self._wake = gevent.event.Event()

    @property
    def last_seq(self) -> int:
        return self.events[-1][0] if self.events else 0

    def append(self, payload: dict[str, Any]) -> int:
        """Add one event; wake every waiting subscriber; return its sequence number."""
        seq = self.last_seq + 1
        self.events.append((seq, payload))
        self._notify()
        return seq

    def finish(self) -> None:
        """No more events will come."""
        self.finished = True
        self._notify()

    def after(self, seq: int) -> list[Event]:
        # Sequence numbers are contiguous from 1, so event n sits at index n - 1.
        return self.events[max(seq, 0):]

    def wait_after(self, seq: int, timeout: float) -> list[Event]:
        waiter = self._wake  # taken before looking, so no wake-up can be missed in between
        ready = self.after(seq)
        if ready or self.finished:
            return ready
        waiter.wait(timeout)
        return self.after(seq)

    def is_complete(self, seq: int) -> bool:
        return self.finished and seq >= self.last_seq

    def _notify(self) -> None:
        waiter, self._wake = self._wake, gevent.event.Event()
        waiter.set()


class DbEventSource:
    """Follows a generation that runs in another process, through its persisted event batches."""

    POLL_SECONDS = 0.25

    def __init__(self, app, message_id: int) -> None:
        self.app = app
        self.message_id = message_id
        self._finished = False
        self._last_known = 0

    def _read(self, seq: int) -> list[Event]:
        from common.db import fetch_all, fetch_one, is_transient_error, release

        db = self.app.extensions["parley.db"]
        try:
            with db:
                batches = fetch_all(
                    db,
                    "SELECT events FROM generation_events WHERE message_id = :m AND last_seq > :s ORDER BY first_seq",
                    m=self.message_id,
                    s=seq,
                )
                row = fetch_one(db, "SELECT stream_status FROM messages WHERE id = :m", m=self.message_id)
        except sa.exc.DBAPIError as exc:
            if not is_transient_error(exc):
                raise
            release(db)
            return []  # a busy database: nothing new this time, the next poll tries again
        events = [(s, p) for batch in batches for s, p in json.loads(batch["events"]) if s > seq]
        if events:
            self._last_known = max(self._last_known, events[-1][0])
        # Finished only once the final batch is visible: it is written with the final status.
        self._finished = row is None or row["stream_status"] != "streaming"
        return events

    def wait_after(self, seq: int, timeout: float) -> list[Event]:
        waited = 0.0
        while True:
            events = self._read(seq)
            if events or self._finished or waited >= timeout:
                return events
            gevent.sleep(self.POLL_SECONDS)
            waited += self.POLL_SECONDS

    def is_complete(self, seq: int) -> bool:
        return self._finished and seq >= self._last_known


class SnapshotSource:
    """A finished answer whose event log is no longer kept: replayed as start, reasoning, content
    and the closing event, numbered from 1."""

    def __init__(self, message: dict | None) -> None:
        self.events: list[Event] = []
        if message is None:
            return
        payloads: list[dict[str, Any]] = [{
            "type": "start", "messageId": message.get("parent_message_id"), "assistantMessageId": message["id"],
            "assistantClientMessageId": message.get("client_message_id"),
        }]
        if message.get("reasoning"):
            payloads.append({"type": "reasoning", "content": message["reasoning"]})
        if message.get("content"):
            payloads.append({"type": "content", "content": message["content"]})
        status = message.get("stream_status")
        if status in ("error", "interrupted"):
            payloads.append({"type": "error", "error": message.get("stream_error") or "The answer failed",
                             "code": "interrupted" if status == "interrupted" else "upstream_error"})
        else:
            metrics = json.loads(message["metrics"]) if message.get("metrics") else None
            payloads.append({"type": "complete", "metrics": metrics, "streamStatus": status})
        self.events = [(index + 1, payload) for index, payload in enumerate(payloads)]

    def wait_after(self, seq: int, timeout: float) -> list[Event]:
        return self.events[max(seq, 0):]

    def is_complete(self, seq: int) -> bool:
        return True


@dataclass
class Generation:
    """One running generation in this process: its log, its upstream stream and its cancel switch."""

    message_id: int
    session_id: int
    owner: str
    client_message_id: str | None = None
    log: EventLog = field(default_factory=EventLog)
    cancel_event: gevent.event.Event = field(default_factory=gevent.event.Event)
    upstream: Any = None  # the ProviderStream being read, closed at once by cancel()
    greenlet: gevent.Greenlet | None = None

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def cancel(self) -> None:
        """Stop the generation: close the upstream connection now; the runner saves what arrived."""
        self.cancel_event.set()
        stream = self.upstream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # closing a half-dead socket may fail; the flag is what matters
                pass


def sse_frames(source: EventSource, since: int, heartbeat_seconds: float) -> Iterator[str]:
    """The SSE body for a subscriber: events after `since`, heartbeats, then `data: [DONE]`."""
    cursor = since
    done = False

    def wait_next(timeout: float) -> list[str] | None:
        nonlocal cursor, done
        if done:
            return None
        ready = source.wait_after(cursor, timeout)
        frames = [sse.frame(payload, seq=seq) for seq, payload in ready]
        if ready:
            cursor = ready[-1][0]
        if source.is_complete(cursor):
            frames.append(sse.DONE)
            done = True
        return frames

    return sse.with_heartbeats(wait_next, heartbeat_seconds)

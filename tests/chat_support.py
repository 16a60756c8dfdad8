"""Helpers for chat tests: a connection to the fake provider, sessions, and streamed requests."""

from __future__ import annotations

import time
from typing import Any

from common.db import fetch_all, fetch_one
from tests.api_client import ApiClient
from tests.sse_reader import SseEvent, events_only, parse


def fake_connection(admin: ApiClient, fake, model_ids: list[str], *, provider: str = "openai") -> int:
    """A system connection to the fake provider serving exactly these model ids."""
    reply = admin.post("/api/connections", {
        "displayName": f"Fake {provider}", "provider": provider, "baseUrl": fake.base_url(provider),
        "authType": "bearer", "apiKey": "sk-fake-test-key-0001", "modelIds": model_ids,
        **({"azureApiVersion": "2024-10-21"} if provider == "azure_openai" else {}),
    })
    assert reply.status in (200, 201), reply.body
    return reply.data["id"]


def new_session(client: ApiClient, model_id: str, **options: Any) -> int:
    reply = client.post("/api/sessions", {"modelId": model_id, **options})
    assert reply.status == 201, reply.body
    return reply.data["id"]


class Stream:
    """A streamed chat response being read incrementally (closing it = the client went away)."""

    def __init__(self, response) -> None:
        self.response = response
        self.status = response.status_code
        self._items = parse(response.response) if response.status_code == 200 else iter(())
        self.events: list[SseEvent] = []
        self.comments: list[str] = []

    def next_event(self) -> SseEvent | None:
        for item in self._items:
            if isinstance(item, str):
                self.comments.append(item)
                continue
            self.events.append(item)
            return item
        return None

    def until(self, kind: str) -> SseEvent | None:
        """Read until an event of this type (or `[DONE]`) arrives."""
        while True:
            event = self.next_event()
            if event is None or event.type == kind or (kind == "[DONE]" and event.data == "[DONE]"):
                return event

    def read_all(self) -> list[SseEvent]:
        while self.next_event() is not None:
            pass
        return self.events

    def close(self) -> None:
        self.response.close()

    @property
    def json(self) -> Any:
        return self.response.get_json(silent=True)


def open_stream(client: ApiClient, path: str, body: dict | None = None, *, method: str = "POST",
                headers: dict | None = None) -> Stream:
    hdrs = dict(headers or {})
    if client.token:
        hdrs["Authorization"] = f"Bearer {client.token}"
    response = client.client.open(path, method=method, json=body, headers=hdrs, buffered=False)
    return Stream(response)


def send(client: ApiClient, session_id: int, content: str, **extra: Any) -> Stream:
    """POST /api/chat/stream and read the whole stream."""
    stream = open_stream(client, "/api/chat/stream", {"sessionId": session_id, "content": content, **extra})
    stream.read_all()
    return stream


def message(app, message_id: int) -> dict:
    return fetch_one(app.extensions["parley.db"], "SELECT * FROM messages WHERE id = :id", id=message_id)


def messages(app, session_id: int) -> list[dict]:
    return fetch_all(app.extensions["parley.db"], "SELECT * FROM messages WHERE session_id = :s ORDER BY id",
                     s=session_id)


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll until predicate() is truthy; return its value (or fail after timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def final_events(stream: Stream) -> list[str]:
    return [e.type or e.data for e in events_only(stream.events)]

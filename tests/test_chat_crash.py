"""A real gunicorn gevent server killed mid-answer: the answer is kept, up to its last checkpoint."""

import os
import signal

import pytest
import requests

from tests.chat_support import wait_until
from tests.live_server import LiveServer
from tests.sse_reader import parse

PASSWORD = "correct-horse-1"
MODEL = "fake-slow@chunks=200,delay=50"  # 10 seconds of answer: plenty of time to kill it
CHUNKS_PER_HALF_SECOND = 10


def _prepare(server: LiveServer, fake) -> tuple[dict, int]:
    token = requests.post(server.url + "/api/auth/register", json={"username": "root", "password": PASSWORD},
                          timeout=10).json()["data"]["token"]
    headers = {"Authorization": f"Bearer {token}"}
    created = requests.post(server.url + "/api/connections", headers=headers, timeout=10, json={
        "displayName": "Fake", "provider": "openai", "baseUrl": fake.base_url("openai"), "authType": "bearer",
        "apiKey": "sk-fake-crash-0001", "modelIds": [MODEL]})
    assert created.status_code in (200, 201), created.text
    session = requests.post(server.url + "/api/sessions", headers=headers, json={"modelId": MODEL}, timeout=10)
    assert session.status_code == 201, session.text
    return headers, session.json()["data"]["id"]


def _start_answer(server: LiveServer, headers: dict, session_id: int, min_chunks: int):
    response = requests.post(server.url + "/api/chat/stream", headers=headers, stream=True, timeout=30,
                             json={"sessionId": session_id, "content": "tell me a long story"})
    assert response.status_code == 200
    events = parse(response.iter_content(chunk_size=None))
    assistant_id, received = None, ""
    chunks = 0
    for event in events:
        if isinstance(event, str):
            continue
        if event.type == "start":
            assistant_id = event.data["assistantMessageId"]
        if event.type == "content":
            received += event.data["content"]
            chunks += 1
            if chunks >= min_chunks:
                break
    return response, assistant_id, received


def _progress(server: LiveServer, headers: dict, session_id: int, assistant_id: int) -> dict:
    reply = requests.get(f"{server.url}/api/chat/sessions/{session_id}/messages/{assistant_id}/progress",
                         headers=headers, timeout=10)
    assert reply.status_code == 200, reply.text
    return reply.json()["data"]["message"]


@pytest.fixture
def server(tmp_path):
    live = LiveServer(tmp_path / "data", workers=1)
    live.start()
    yield live
    live.stop()


def test_kill_9_of_the_whole_server_leaves_the_answer_interrupted_with_its_text(server, fake, tmp_path):
    headers, session_id = _prepare(server, fake)
    response, assistant_id, received = _start_answer(server, headers, session_id, min_chunks=40)
    server.kill_hard()
    response.close()
    restarted = LiveServer(server.data_dir, workers=1, port=server.port)
    restarted.start()
    try:
        saved = _progress(restarted, headers, session_id, assistant_id)
        assert saved["streamStatus"] == "interrupted"
        assert received.startswith(saved["content"]) or saved["content"].startswith(received)
        lost_words = len(received.split()) - len(saved["content"].split())
        assert lost_words <= CHUNKS_PER_HALF_SECOND + 2  # at most ~half a second of text
        replay = requests.get(f"{restarted.url}/api/chat/stream/{assistant_id}", headers=headers, timeout=10)
        kinds = [e.type for e in parse([replay.content]) if not isinstance(e, str) and e.type]
        assert kinds[-1] == "error"
    finally:
        restarted.stop()


def test_a_killed_worker_is_replaced_and_its_answer_marked_interrupted(server, fake):
    headers, session_id = _prepare(server, fake)
    response, assistant_id, _received = _start_answer(server, headers, session_id, min_chunks=10)
    (worker,) = server.worker_pids()
    os.kill(worker, signal.SIGKILL)
    response.close()
    saved = wait_until(lambda: (m := _progress_or_none(server, headers, session_id, assistant_id))
                       and m["streamStatus"] == "interrupted" and m, timeout=15)
    assert saved["content"]


def _progress_or_none(server, headers, session_id, assistant_id):
    try:
        return _progress(server, headers, session_id, assistant_id)
    except (requests.RequestException, AssertionError):
        return None

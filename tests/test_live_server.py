"""The real gunicorn gevent server over HTTP, as operators run it."""

import pytest
import requests

from tests.live_server import LiveServer

PASSWORD = "correct-horse-1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    live = LiveServer(tmp_path_factory.mktemp("live") / "data", workers=2)
    live.start()
    yield live
    live.stop()


def test_health_answers_over_http(server):
    reply = requests.get(server.url + "/api/settings/health", timeout=5)
    assert reply.status_code == 200
    assert reply.json()["data"]["database"] == "connected"


def test_register_login_and_me_across_two_workers(server):
    session = requests.Session()
    first = session.post(server.url + "/api/auth/register", json={"username": "root", "password": PASSWORD},
                         timeout=5)
    assert first.status_code == 200
    token = first.json()["data"]["token"]
    assert "token" in session.cookies
    # Many calls so that both workers answer some: tokens and the database are shared.
    for _ in range(20):
        me = requests.get(server.url + "/api/auth/me", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert me.status_code == 200 and me.json()["data"]["username"] == "root"
    cookie_me = session.get(server.url + "/api/auth/me", timeout=5)
    assert cookie_me.status_code == 200


def test_logout_revokes_the_token_in_every_worker(server):
    login = requests.post(server.url + "/api/auth/login", json={"username": "root", "password": PASSWORD}, timeout=5)
    token = login.json()["data"]["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.post(server.url + "/api/auth/logout", headers=headers, timeout=5).status_code == 200
    statuses = {requests.get(server.url + "/api/auth/me", headers=headers, timeout=5).status_code for _ in range(10)}
    assert statuses == {401}


def test_malformed_body_over_http_is_a_4xx_and_the_worker_survives(server):
    reply = requests.post(server.url + "/api/auth/login", data=b"\xff\xfe{not json", timeout=5,
                          headers={"Content-Type": "application/json"})
    assert reply.status_code == 400
    assert reply.json()["success"] is False
    huge = requests.post(server.url + "/api/auth/login", data=b"x" * (3 * 1024 * 1024), timeout=10,
                         headers={"Content-Type": "application/json"})
    assert huge.status_code == 413
    assert requests.get(server.url + "/api/settings/health", timeout=5).status_code == 200


def test_unknown_route_is_the_404_envelope(server):
    reply = requests.get(server.url + "/api/nope", timeout=5)
    assert reply.status_code == 404
    assert reply.json() == {"success": False, "error": "Route GET /api/nope not found", "code": "route_not_found"}

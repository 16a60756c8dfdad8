"""A thin test client: JSON in, envelope out, with an optional bearer token per call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any
    cookies: dict

    @property
    def data(self) -> Any:
        return self.body.get("data") if isinstance(self.body, dict) else None

    @property
    def error(self) -> str | None:
        return self.body.get("error") if isinstance(self.body, dict) else None

    @property
    def code(self) -> str | None:
        return self.body.get("code") if isinstance(self.body, dict) else None


def assert_failure(reply: Reply, status: int, code: str | None = None) -> None:
    """The reply is the failure envelope with this status (and machine code, when given)."""
    assert reply.status == status, (reply.status, reply.body)
    assert reply.body["success"] is False
    assert isinstance(reply.body["error"], str) and reply.body["error"]
    if code is not None:
        assert reply.code == code, reply.body


def assert_no_secret_keys(value: Any) -> None:
    """No key of any object, at any depth, mentions a password or a hash."""
    if isinstance(value, dict):
        for key, inner in value.items():
            assert "password" not in key.lower() and "hash" not in key.lower(), key
            assert_no_secret_keys(inner)
    elif isinstance(value, list):
        for inner in value:
            assert_no_secret_keys(inner)


class ApiClient:
    """Calls the app like a client would; each instance has its own cookie jar."""

    def __init__(self, app, token: str | None = None) -> None:
        self.app = app
        self.client = app.test_client()
        self.token = token

    def with_token(self, token: str | None) -> ApiClient:
        """A fresh client (empty cookie jar) that sends this bearer token."""
        return ApiClient(self.app, token)

    def call(self, method: str, path: str, json: Any = None, *, token: str | None = None, headers=None,
             data: Any = None, content_type: str | None = None) -> Reply:
        hdrs = dict(headers or {})
        bearer = token if token is not None else self.token
        if bearer:
            hdrs["Authorization"] = f"Bearer {bearer}"
        kwargs: dict = {"headers": hdrs}
        if data is not None:
            kwargs["data"] = data
            if content_type:
                kwargs["content_type"] = content_type
        elif json is not None:
            kwargs["json"] = json
        response = self.client.open(path, method=method, **kwargs)
        body = response.get_json(silent=True)
        cookies = {}
        for header in response.headers.getlist("Set-Cookie"):
            name, _, rest = header.partition("=")
            cookies[name] = header
        return Reply(response.status_code, body, response.headers, cookies)

    def get(self, path: str, **kw) -> Reply:
        return self.call("GET", path, **kw)

    def post(self, path: str, json: Any = None, **kw) -> Reply:
        return self.call("POST", path, json, **kw)

    def put(self, path: str, json: Any = None, **kw) -> Reply:
        return self.call("PUT", path, json, **kw)

    def patch(self, path: str, json: Any = None, **kw) -> Reply:
        return self.call("PATCH", path, json, **kw)

    def delete(self, path: str, json: Any = None, **kw) -> Reply:
        return self.call("DELETE", path, json, **kw)

    def register_admin(self, username: str, password: str) -> ApiClient:
        """Register the first account (an admin) and return a client that uses its token."""
        reply = self.post("/api/auth/register", {"username": username, "password": password})
        assert reply.status == 200, reply.body
        assert reply.data["user"]["role"] == "ADMIN"
        return self.with_token(reply.data["token"])

    def user(self, admin: ApiClient, username: str, password: str, role: str = "USER") -> ApiClient:
        """Create an active user through the admin API and return a client logged in as them."""
        created = admin.post("/api/users", {"username": username, "password": password, "role": role})
        assert created.status == 201, created.body
        login = self.with_token(None).post("/api/auth/login", {"username": username, "password": password})
        assert login.status == 200, login.body
        return self.with_token(login.data["token"])

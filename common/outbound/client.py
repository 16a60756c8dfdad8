"""The outbound client: checks, sends through the pinned adapter, follows redirects, bounds sizes."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.structures import CaseInsensitiveDict
from requests.utils import default_headers
from urllib3.exceptions import MaxRetryError

from common.outbound.addresses import ResolvedTarget, check_url
from common.outbound.errors import (
    OutboundBlocked,
    OutboundConnectionError,
    OutboundError,
    OutboundTimeout,
    OutboundTooLarge,
)
from common.outbound.policy import USER_POLICY, OutboundPolicy
from common.outbound.transport import _TARGET_ATTR, PinnedHTTPAdapter

# The package's logger name, kept from before the split (tests and log config refer to it).
log = logging.getLogger("common.outbound")

MAX_REDIRECTS = 3
_READ_CHUNK = 64 * 1024
_SAFE_CROSS_ORIGIN_HEADERS = frozenset(
    {"accept", "accept-encoding", "accept-language", "user-agent", "content-type", "connection"}
)


def _translate(exc: requests.RequestException, hostname: str) -> OutboundError:
    """Turn a requests error into an OutboundError whose message carries no URL, query or header."""
    detail = ""
    inner = exc.args[0] if exc.args else None
    if isinstance(inner, MaxRetryError) and inner.reason is not None:
        detail = f": {inner.reason}"
    elif isinstance(exc, requests.exceptions.Timeout | requests.exceptions.SSLError):
        detail = f": {inner}" if inner is not None and not isinstance(inner, str) else ""
    kind = type(exc).__name__
    if isinstance(exc, requests.exceptions.Timeout):
        return OutboundTimeout(f"Request to {hostname} timed out ({kind}{detail}).")
    return OutboundConnectionError(f"Request to {hostname} failed ({kind}{detail}).")


def read_limited(response: requests.Response, limit: int) -> bytes:
    """Read the (decoded) body of ``response`` but no more than ``limit`` bytes.

    Meant for streamed responses. Raises :class:`OutboundTooLarge` (and closes the response) as soon
    as the body exceeds ``limit``; network errors become :class:`OutboundTimeout` /
    :class:`OutboundConnectionError`.
    """
    if limit < 0:
        raise ValueError("limit must not be negative")
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit and not response.headers.get("Content-Encoding"):
        response.close()
        raise OutboundTooLarge(f"The response body ({declared} bytes) exceeds the limit of {limit} bytes.")
    body = bytearray()
    hostname = urlsplit(response.url or "").hostname or "the server"
    try:
        for chunk in response.iter_content(chunk_size=min(_READ_CHUNK, limit + 1)):
            body += chunk
            if len(body) > limit:
                response.close()
                raise OutboundTooLarge(f"The response body exceeds the limit of {limit} bytes.")
    except requests.RequestException as exc:
        response.close()
        raise _translate(exc, hostname) from None
    return bytes(body)


class OutboundClient:
    """Makes HTTP requests through the SSRF guard with one :class:`OutboundPolicy`.

    Thread- and greenlet-safe; create one per policy and share it. Connections are pooled per
    (scheme, hostname, port, pinned addresses), ``pool_maxsize`` connections per pool.
    """

    def __init__(
        self,
        policy: OutboundPolicy = USER_POLICY,
        pool_maxsize: int = 256,
        *,
        pool_connections: int = 64,
        verify: bool | str = True,
    ) -> None:
        """Create a client; ``verify`` is ``requests``' TLS setting (True or a CA bundle path)."""
        self.policy = policy
        self.verify = verify
        self.adapter = PinnedHTTPAdapter(pool_connections=pool_connections, pool_maxsize=pool_maxsize, max_retries=0)

    def check(self, url: str) -> ResolvedTarget:
        """Check ``url`` with this client's policy (see :func:`check_url`)."""
        return check_url(url, self.policy)

    def _timeouts(self, timeout: Any) -> tuple[float, float]:
        connect, read = self.policy.connect_timeout, self.policy.read_timeout
        if timeout is None:
            return connect, read
        if isinstance(timeout, tuple):
            c, r = timeout
            return (connect if c is None else float(c), read if r is None else float(r))
        return float(timeout), float(timeout)

    def _send(
        self,
        method: str,
        target: ResolvedTarget,
        headers: Mapping[str, Any],
        json: Any,
        data: Any,
        params: Any,
        timeout: tuple[float, float],
    ) -> requests.Response:
        prep = requests.Request(
            method=method.upper(), url=target.url, headers=dict(headers), json=json, data=data, params=params
        ).prepare()
        setattr(prep, _TARGET_ATTR, target)
        log.debug("outbound %s %s://%s:%d via %s", prep.method, target.scheme, target.hostname, target.port, target.ip)
        try:
            return self.adapter.send(prep, stream=True, timeout=timeout, verify=self.verify, proxies={})
        except requests.RequestException as exc:
            raise _translate(exc, target.hostname) from None

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        params: Any = None,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        allow_redirects: bool = False,
    ) -> requests.Response:
        """Send one request through the guard and return the ``requests.Response``.

        ``timeout`` is ``requests``-style (a float or a (connect, read) tuple); missing parts use the
        policy's timeouts, so a request is never unbounded. Redirects are returned as they are unless
        ``allow_redirects`` is True, in which case up to :data:`MAX_REDIRECTS` are followed and every
        ``Location`` is checked again (credentials-bearing headers are dropped when the origin
        changes). Without ``stream`` the body is read here, bounded by ``policy.max_response_bytes``
        (:class:`OutboundTooLarge`); with ``stream`` use :func:`read_limited` or ``iter_lines``.

        Raises :class:`OutboundBlocked`, :class:`OutboundTooLarge`, :class:`OutboundTimeout`,
        :class:`OutboundConnectionError` or :class:`OutboundError` (too many redirects).
        """
        merged: CaseInsensitiveDict[Any] = CaseInsensitiveDict(default_headers())
        for key, value in (headers or {}).items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        if "host" in merged:
            raise OutboundBlocked("The Host header cannot be set.")
        timeouts = self._timeouts(timeout)

        target = check_url(url, self.policy)
        history: list[requests.Response] = []
        response = self._send(method, target, merged, json, data, params, timeouts)
        while allow_redirects and response.is_redirect:
            if len(history) >= MAX_REDIRECTS:
                response.close()
                raise OutboundError(f"Too many redirects (more than {MAX_REDIRECTS}).")
            location = response.headers["Location"]
            next_url = urljoin(target.url, location)
            response.close()
            history.append(response)
            next_target = check_url(next_url, self.policy)
            status = response.status_code
            if (status == 303 and method.upper() != "HEAD") or (status in (301, 302) and method.upper() == "POST"):
                method, json, data = "GET", None, None
                merged.pop("Content-Type", None)
            if next_target.origin != target.origin:
                merged = CaseInsensitiveDict(
                    {k: v for k, v in merged.items() if k.lower() in _SAFE_CROSS_ORIGIN_HEADERS}
                )
            target = next_target
            response = self._send(method, target, merged, json, data, None, timeouts)
        response.history = history

        if not stream:
            body = read_limited(response, self.policy.max_response_bytes)
            response._content = body
            response._content_consumed = True
        return response

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        """Shorthand for ``request("GET", url, ...)``."""
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        """Shorthand for ``request("POST", url, ...)``."""
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        """Close every pooled connection."""
        self.adapter.close()

    def __enter__(self) -> OutboundClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

"""HTTP plumbing shared by the network adapters: sending requests, mapping errors, reading JSON and the
small value helpers the adapters share. Framing is in ``framing.py``, the streamed response in
``event_stream.py``."""

from __future__ import annotations

import email.utils
import http.client
import json
import re
import socket
import time
from typing import Any

import requests
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from .base import (
    ContentDelta,
    HTTPClient,
    ReasoningDelta,
    StreamEvent,
    Usage,
)
from .errors import (
    ProviderError,
    UpstreamAuthError,
    UpstreamConnectError,
    UpstreamHTTPError,
    UpstreamMalformedError,
    UpstreamStreamError,
    UpstreamTimeoutError,
    UpstreamTruncatedError,
)

CONNECT_TIMEOUT = 10.0
MAX_ERROR_BODY = 64 * 1024
MAX_JSON_BODY = 32 * 1024 * 1024
USER_AGENT = "Parley/0.1"
# Headers a request may never set through connection or per-request extra headers.
_FORBIDDEN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "te", "upgrade"})



# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def timeouts(seconds: float) -> tuple[float, float]:
    """The (connect, read) timeout pair requests expects."""
    seconds = max(float(seconds), 0.001)
    return (min(CONNECT_TIMEOUT, seconds), seconds)


def join_url(base: str, path: str) -> str:
    """``base`` + ``/`` + ``path`` without doubled or missing slashes."""
    return base.rstrip("/") + "/" + path.lstrip("/")


def build_headers(
    config_headers: dict[str, str] | None,
    extra_headers: dict[str, str] | None,
    auth_headers: dict[str, str],
    *,
    accept: str = "application/json",
) -> dict[str, str]:
    """Connection headers, then per-request headers, then authentication (which always wins)."""
    out: dict[str, str] = {"User-Agent": USER_AGENT, "Accept": accept}
    auth_names = {name.lower() for name in auth_headers} | {"authorization", "api-key", "x-goog-api-key"}
    for source in (config_headers or {}, extra_headers or {}):
        for name, value in source.items():
            if not isinstance(name, str) or value is None:
                continue
            lowered = name.lower()
            if lowered in _FORBIDDEN_HEADERS:
                continue
            if auth_headers and lowered in auth_names:
                continue  # never let a header override the stored key
            for existing in [k for k in out if k.lower() == lowered]:
                del out[existing]
            out[name] = str(value)
    out.update(auth_headers)
    return out


def merge_body(body: dict[str, Any], extra_body: dict[str, Any] | None, protected: set[str]) -> dict[str, Any]:
    """Merge ``extra_body`` into ``body`` without touching the ``protected`` keys."""
    if extra_body:
        for key, value in extra_body.items():
            if key not in protected:
                body[key] = value
    return body


def parse_retry_after(headers: Any, body: Any = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms``, ``Retry-After`` (seconds or HTTP date) or a Google
    ``RetryInfo.retryDelay`` in the error body."""
    if headers is not None:
        raw_ms = headers.get("retry-after-ms")
        if raw_ms:
            try:
                return max(float(raw_ms) / 1000.0, 0.0)
            except ValueError:
                pass
        raw = headers.get("retry-after")
        if raw:
            raw = raw.strip()
            try:
                return max(float(raw), 0.0)
            except ValueError:
                try:
                    when = email.utils.parsedate_to_datetime(raw)
                except (TypeError, ValueError):
                    when = None
                if when is not None:
                    return max(when.timestamp() - time.time(), 0.0)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        for detail in body["error"].get("details") or []:
            delay = detail.get("retryDelay") if isinstance(detail, dict) else None
            if isinstance(delay, str) and delay.endswith("s"):
                try:
                    return max(float(delay[:-1]), 0.0)
                except ValueError:
                    pass
    return None


def error_message_from_body(body: Any, text: str) -> str:
    """The human-readable part of a provider's error body."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            msg = err.get("message") or err.get("status") or err.get("code")
            if msg:
                return str(msg)
        if isinstance(err, str) and err:
            return err
        for key in ("message", "detail"):
            if isinstance(body.get(key), str) and body[key]:
                return body[key]
    return text.strip()


def _read_bounded(resp: Any, limit: int) -> bytes:
    out = bytearray()
    for chunk in resp.iter_content(chunk_size=16384):
        out += chunk
        if len(out) > limit:
            break
    return bytes(out[:limit])


def error_from_response(resp: Any, label: str) -> ProviderError:
    """Turn a non-2xx response into the matching :class:`ProviderError` (reads at most 64 KiB)."""
    status = int(resp.status_code)
    try:
        raw = _read_bounded(resp, MAX_ERROR_BODY)
    except Exception:  # the body is only informative
        raw = b""
    text = raw.decode("utf-8", errors="replace")
    try:
        body = json.loads(text) if text.strip() else None
    except ValueError:
        body = None
    detail = error_message_from_body(body, text)[:500] or http.client.responses.get(status, "error")
    message = f"{label} returned HTTP {status}: {detail}"
    retry_after = parse_retry_after(resp.headers, body)
    cls = UpstreamAuthError if status in (401, 403) else UpstreamHTTPError
    return cls(message, status=status, retry_after=retry_after)


def send(
    http: HTTPClient,
    method: str,
    url: str,
    *,
    label: str,
    timeout: float,
    headers: dict[str, str],
    json_body: Any = None,
    params: dict[str, str] | None = None,
    stream: bool = True,
) -> Any:
    """Send one request; raise the mapped :class:`ProviderError` on transport failure or non-2xx status."""
    kwargs: dict[str, Any] = {
        "headers": headers,
        "timeout": timeouts(timeout),
        "stream": stream,
        "allow_redirects": False,
    }
    if json_body is not None:
        kwargs["json"] = json_body
    if params:
        kwargs["params"] = params
    try:
        resp = http.request(method, url, **kwargs)
    except requests.exceptions.ConnectTimeout as exc:
        raise UpstreamConnectError(f"{label}: connection timed out") from exc
    except requests.exceptions.ReadTimeout as exc:
        raise UpstreamTimeoutError(f"{label}: no response within {timeout:g} s") from exc
    except requests.exceptions.ConnectionError as exc:
        raise UpstreamConnectError(f"{label}: connection failed ({short_reason(exc)})") from exc
    except requests.exceptions.RequestException as exc:
        raise UpstreamConnectError(f"{label}: request failed ({short_reason(exc)})") from exc
    if not 200 <= int(resp.status_code) < 300:
        try:
            raise error_from_response(resp, label)
        finally:
            resp.close()
    return resp


def is_timeout(exc: BaseException) -> bool:
    """Whether a transport error (or anything in its cause chain) is a read timeout."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ReadTimeoutError | socket.timeout | requests.exceptions.ReadTimeout):
            return True
        for arg in getattr(current, "args", ()):
            if isinstance(arg, ReadTimeoutError | socket.timeout):
                return True
        current = current.__cause__ or current.__context__
    return False


def short_reason(exc: BaseException) -> str:
    """The root cause of a requests/urllib3 error, briefly."""
    text = str(exc)
    # requests' messages repeat the pool and URL; keep the root cause only.
    match = re.search(r"\(Caused by \w+\((?:<[^>]*>, )?'?(.*?)'?\)\)", text)
    if match:
        text = match.group(1)
    return text[:200]


def read_json(resp: Any, label: str, *, limit: int = MAX_JSON_BODY) -> Any:
    """Read a whole (bounded) JSON body from a streamed response."""
    try:
        raw = _read_bounded(resp, limit + 1)
    except (TimeoutError, requests.exceptions.ConnectionError, ReadTimeoutError) as exc:
        if is_timeout(exc):
            raise UpstreamTimeoutError(f"{label}: the response body stalled") from exc
        raise UpstreamTruncatedError(f"{label}: the connection broke while reading the answer") from exc
    except (requests.exceptions.ChunkedEncodingError, ProtocolError, http.client.HTTPException) as exc:
        raise UpstreamTruncatedError(f"{label}: the connection broke while reading the answer") from exc
    if len(raw) > limit:
        raise UpstreamMalformedError(f"{label}: the answer is larger than {limit} bytes")
    try:
        return json.loads(raw.decode("utf-8", errors="replace"))
    except ValueError as exc:
        raise UpstreamMalformedError(f"{label}: the answer is not JSON: {raw[:120]!r}") from exc


def request_json(
    http: HTTPClient,
    method: str,
    url: str,
    *,
    label: str,
    timeout: float,
    headers: dict[str, str],
    json_body: Any = None,
    params: dict[str, str] | None = None,
) -> Any:
    """Send a request and return its decoded JSON body."""
    resp = send(http, method, url, label=label, timeout=timeout, headers=headers, json_body=json_body, params=params)
    try:
        return read_json(resp, label)
    finally:
        resp.close()


def parse_json_payloads(data: str, label: str) -> list[Any]:
    """Decode one frame's payload. Tolerates servers that put several JSON objects in one frame."""
    try:
        return [json.loads(data)]
    except ValueError:
        pass
    if "\n" in data:
        try:
            return [json.loads(part) for part in data.split("\n") if part.strip()]
        except ValueError:
            pass
    raise UpstreamMalformedError(f"{label}: malformed stream frame: {data[:120]!r}")


def raise_stream_error(obj: dict[str, Any], label: str) -> None:
    """Raise when a decoded frame is an error object (``{"error": ...}``)."""
    err = obj.get("error")
    if not err:
        return
    status = None
    if isinstance(err, dict):
        code = err.get("code")
        if isinstance(code, int) and 100 <= code < 600:
            status = code
        elif isinstance(code, str) and code.isdigit():
            status = int(code)
    message = error_message_from_body(obj, json.dumps(err)[:300])
    raise UpstreamStreamError(f"{label} reported an error: {message[:500]}", status=status)


def int_or_none(value: Any) -> int | None:
    """An int from a JSON number (or numeric string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def make_usage(prompt: Any, completion: Any, total: Any = None) -> Usage | None:
    """A :class:`Usage` from provider numbers; None when the provider sent none."""
    p, c, t = int_or_none(prompt), int_or_none(completion), int_or_none(total)
    if p is None and c is None and t is None:
        return None
    p = p or 0
    c = c or 0
    return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=t if t is not None else p + c)


def data_url_parts(url: str) -> tuple[str, str] | None:
    """``(mime, base64)`` of a ``data:<mime>;base64,<data>`` URL, else None."""
    if not isinstance(url, str) or not url.startswith("data:"):
        return None
    head, sep, data = url.partition(",")
    if not sep or ";base64" not in head:
        return None
    mime = head[5:].split(";", 1)[0] or "application/octet-stream"
    return mime, data


def message_text_and_images(content: Any) -> tuple[str, list[str]]:
    """The text (parts joined by newlines) and the image URLs of an OpenAI-style message content."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    images: list[str] = []
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif part.get("type") == "image_url":
                image = part.get("image_url")
                url = image.get("url") if isinstance(image, dict) else image
                if isinstance(url, str):
                    images.append(url)
    return "\n".join(texts), images


def split_reasoning_events(events: list[StreamEvent]) -> tuple[str, str]:
    """Join content and reasoning deltas into ``(content, reasoning)``."""
    content = "".join(e.text for e in events if isinstance(e, ContentDelta))
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    return content, reasoning

"""The exceptions raised by the outbound guard (see :mod:`common.outbound`)."""

from __future__ import annotations

import requests


class OutboundError(Exception):
    """Base class of every error raised by the outbound guard."""


class OutboundBlocked(OutboundError):
    """The URL or one of its addresses is not allowed by the policy; nothing was sent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OutboundUnresolvable(OutboundBlocked):
    """The host could not be resolved, so it could not be checked; nothing was sent."""


class OutboundTooLarge(OutboundError):
    """The response body is larger than the allowed limit."""


class OutboundTimeout(OutboundError, requests.exceptions.Timeout):
    """Connecting or reading timed out (also a :class:`requests.exceptions.Timeout`)."""


class OutboundConnectionError(OutboundError, requests.exceptions.ConnectionError):
    """The connection failed (refused, reset, TLS error, ...); also a ``requests`` ConnectionError."""

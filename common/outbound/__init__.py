"""The one guard for every HTTP request the server makes (SSRF protection).

Every request made on behalf of a user or for a provider goes through :class:`OutboundClient`:

* :func:`check_url` validates a URL (scheme, host syntax, userinfo, percent-encoding, backslashes),
  resolves its host exactly once and judges every address it resolves to against an
  :class:`OutboundPolicy` (loopback, private, link-local, multicast, unspecified, reserved, IPv4-mapped,
  NAT64/6to4-embedded and cloud metadata addresses are refused unless the policy allows them).
* The TCP connection then goes to the checked address (no second DNS lookup, so DNS rebinding does
  not work), while the ``Host`` header and TLS SNI / certificate verification keep using the hostname.
* Redirects are never followed automatically; when asked to, at most three are followed and every
  ``Location`` is checked again. Timeouts are always set and non-streamed bodies are size-bounded.

Nothing here logs headers, query strings or userinfo (API keys travel in them); the only logging is
at debug level. This package is plain ``requests``/``urllib3``/``socket`` code, so it cooperates with
gevent's monkey-patching.

Layout: :mod:`~common.outbound.errors` (exceptions), :mod:`~common.outbound.policy`
(:class:`OutboundPolicy`), :mod:`~common.outbound.addresses` (URL/host parsing, resolution, address
classification, :func:`check_url`), :mod:`~common.outbound.transport` (connections pinned to the
checked addresses, :class:`PinnedHTTPAdapter`) and :mod:`~common.outbound.client`
(:class:`OutboundClient`, redirects, size limits). Import the public API from this package.
"""

from common.outbound.addresses import MAX_URL_LENGTH as MAX_URL_LENGTH
from common.outbound.addresses import METADATA_HOSTNAMES as METADATA_HOSTNAMES
from common.outbound.addresses import ResolvedTarget, check_url
from common.outbound.client import MAX_REDIRECTS, OutboundClient, read_limited
from common.outbound.errors import (
    OutboundBlocked,
    OutboundConnectionError,
    OutboundError,
    OutboundTimeout,
    OutboundTooLarge,
    OutboundUnresolvable,
)
from common.outbound.policy import DEFAULT_MAX_RESPONSE_BYTES as DEFAULT_MAX_RESPONSE_BYTES
from common.outbound.policy import SYSTEM_POLICY, USER_POLICY, OutboundPolicy
from common.outbound.policy import IPAddress as IPAddress
from common.outbound.transport import PinnedHTTPAdapter

__all__ = [
    "MAX_REDIRECTS",
    "SYSTEM_POLICY",
    "USER_POLICY",
    "OutboundBlocked",
    "OutboundClient",
    "OutboundConnectionError",
    "OutboundError",
    "OutboundPolicy",
    "OutboundTimeout",
    "OutboundTooLarge",
    "OutboundUnresolvable",
    "PinnedHTTPAdapter",
    "ResolvedTarget",
    "check_url",
    "read_limited",
]

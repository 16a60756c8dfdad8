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
at debug level. This module is plain ``requests``/``urllib3``/``socket`` code, so it cooperates with
gevent's monkey-patching.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import idna
import requests
import urllib3.poolmanager
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import default_headers
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

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

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_REDIRECTS = 3
MAX_URL_LENGTH = 8192
DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
_READ_CHUNK = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}

# Cloud metadata services. Always refused unless the exact host is allow-listed.
METADATA_HOSTNAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.internal",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
    }
)
_METADATA_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.169.0/24",  # AWS/Azure/GCP/OpenStack/Oracle/DigitalOcean IMDS, AWS DNS and NTP
        "169.254.170.0/24",  # AWS ECS task metadata, EKS pod identity
        "169.254.0.23/32",  # Tencent Cloud
        "100.100.100.200/32",  # Alibaba Cloud
        "192.0.0.192/32",  # Oracle Cloud (classic)
        "fd00:ec2::/64",  # AWS IMDS over IPv6
        "fd20:ce::254/128",  # GCP metadata over IPv6
    )
)
_RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_SHARED_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_BROADCAST = ipaddress.ip_address("255.255.255.255")
_ULA = ipaddress.ip_network("fc00::/7")
_NAT64 = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48"))

_LABEL_RE = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_NUMERIC_PART_RE = re.compile(r"^(?:0[xX][0-9a-fA-F]*|[0-9]+)$")
_SAFE_CROSS_ORIGIN_HEADERS = frozenset(
    {"accept", "accept-encoding", "accept-language", "user-agent", "content-type", "connection"}
)


# --------------------------------------------------------------------------------------------------
# Exceptions


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


# --------------------------------------------------------------------------------------------------
# Policy


def _normalize_name(host: str) -> str:
    return host.strip().lower().rstrip(".")


@dataclass(frozen=True)
class OutboundPolicy:
    """What outbound requests may reach.

    ``allow_private`` permits loopback, private (RFC 1918), link-local, shared (CGNAT), ULA and other
    non-public unicast addresses: for admin-defined system connections such as a local Ollama.
    Unspecified, multicast and reserved addresses stay refused, and cloud metadata addresses are
    refused even then, unless the exact host is in ``allow_hosts``.

    ``allow_hosts`` is an admin allow-list of hostnames, IP addresses or CIDR networks that are
    allowed even when non-public. A hostname entry allows whatever that exact name resolves to (except
    metadata addresses, unless the name is itself a metadata hostname); a network entry allows the
    addresses inside it (metadata addresses only when listed as an exact address).
    """

    allow_private: bool = False
    allow_hosts: tuple[str, ...] = ()
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    connect_timeout: float = 10.0
    read_timeout: float = 300.0
    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        init=False, repr=False, compare=False, default=()
    )
    _names: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())

    def __post_init__(self) -> None:
        hosts = self.allow_hosts
        if isinstance(hosts, str):
            hosts = (hosts,)
        hosts = tuple(hosts)
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        names: set[str] = set()
        for entry in hosts:
            if not isinstance(entry, str) or not entry.strip():
                raise ValueError(f"invalid allow_hosts entry: {entry!r}")
            text = entry.strip()
            if text.startswith("[") and "]" in text:
                text = text[1 : text.index("]")] + text[text.index("]") + 1 :]
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                name = _normalize_name(text)
                if not name or any(c in name for c in "/\\@:% "):
                    raise ValueError(f"invalid allow_hosts entry: {entry!r}") from None
                names.add(name)
        if self.max_response_bytes <= 0:
            raise ValueError("max_response_bytes must be positive")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("timeouts must be positive")
        object.__setattr__(self, "allow_hosts", hosts)
        object.__setattr__(self, "_networks", tuple(networks))
        object.__setattr__(self, "_names", frozenset(names))

    def name_listed(self, hostname: str) -> bool:
        """Return True if ``hostname`` itself is in ``allow_hosts``."""
        return _normalize_name(hostname) in self._names

    def address_listed(self, address: IPAddress) -> bool:
        """Return True if ``address`` falls inside an allow-listed address or network."""
        return any(address.version == net.version and address in net for net in self._networks)

    def address_listed_exactly(self, address: IPAddress) -> bool:
        """Return True if ``address`` is allow-listed as a single address (not via a wider network)."""
        return any(
            address.version == net.version and net.num_addresses == 1 and address in net for net in self._networks
        )


#: For anything a user controls (personal connections, image URLs, any other fetch).
USER_POLICY = OutboundPolicy(allow_private=False)
#: For admin-defined system connections (e.g. a local Ollama): private addresses allowed.
SYSTEM_POLICY = OutboundPolicy(allow_private=True)


# --------------------------------------------------------------------------------------------------
# URL checking


@dataclass(frozen=True)
class ResolvedTarget:
    """A checked URL and the addresses the connection is pinned to (``ip`` first)."""

    url: str
    scheme: str
    hostname: str
    port: int
    ip: str
    addresses: tuple[str, ...]

    @property
    def origin(self) -> tuple[str, str, int]:
        """(scheme, hostname, port), used to decide whether a redirect changes origin."""
        return (self.scheme, _normalize_name(self.hostname), self.port)


def _parse_legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Parse ``host`` the way inet_aton/WHATWG do (``2130706433``, ``0x7f.1``, ``017700000001``, ``127.1``).

    Returns None when the host is not numeric (a name); raises OutboundBlocked when it looks numeric
    but is not a valid address.
    """
    parts = host.split(".")
    if parts and parts[-1] == "":
        parts = parts[:-1]
    if not parts or not _NUMERIC_PART_RE.match(parts[-1]):
        return None
    if len(parts) > 4 or not all(_NUMERIC_PART_RE.match(p) for p in parts):
        raise OutboundBlocked(f"Host '{host}' is not a valid IP address or hostname.")
    values = []
    for part in parts:
        if part[:2] in ("0x", "0X"):
            values.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            if any(c in "89" for c in part):
                raise OutboundBlocked(f"Host '{host}' is not a valid IP address or hostname.")
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        raise OutboundBlocked(f"Host '{host}' is not a valid IP address or hostname.")
    number = 0
    for v in head:
        number = number * 256 + v
    number = (number << (8 * (5 - len(values)))) + last
    return ipaddress.IPv4Address(number)


def _embedded_ipv4(addr: IPAddress) -> tuple[ipaddress.IPv4Address, str] | None:
    if addr.version != 6:
        return None
    assert isinstance(addr, ipaddress.IPv6Address)
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped, "IPv4-mapped IPv6"
    if any(addr in net for net in _NAT64):
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF), "NAT64"
    if addr.sixtofour is not None:
        return addr.sixtofour, "6to4"
    return None


def _category(addr: IPAddress) -> tuple[bool, str] | None:
    """Classify a plain address. Returns (always_refused, description) or None for public unicast."""
    if addr.is_unspecified:
        return True, "an unspecified address"
    if addr.is_multicast:
        return True, "a multicast address"
    if addr.is_loopback:
        return False, "a loopback address"
    if addr.is_link_local:
        return False, "a link-local address"
    if isinstance(addr, ipaddress.IPv4Address):
        if addr in _THIS_NETWORK:
            return True, "a 'this network' (0.0.0.0/8) address"
        if addr == _BROADCAST:
            return True, "the broadcast address"
        if addr in _SHARED_CGNAT:
            return False, "a shared (carrier-grade NAT) address"
        if any(addr in net for net in _RFC1918):
            return False, "a private address"
    else:
        if addr in _ULA:
            return False, "a unique local (ULA) address"
        if addr.is_site_local:
            return False, "a site-local address"
    if addr.is_reserved:
        return True, "a reserved address"
    if not addr.is_global:
        return False, "a non-public address"
    return None


def _is_metadata_ip(addr: IPAddress) -> bool:
    return any(addr.version == net.version and addr in net for net in _METADATA_NETWORKS)


def _refusal(addr: IPAddress, policy: OutboundPolicy, hostname: str) -> str | None:
    """Return why ``addr`` is refused under ``policy`` (a description), or None when allowed."""
    embedded = _embedded_ipv4(addr)
    candidates: list[IPAddress] = [addr] + ([embedded[0]] if embedded else [])
    name = _normalize_name(hostname)
    name_listed = policy.name_listed(name)
    if any(_is_metadata_ip(c) for c in candidates):
        if any(policy.address_listed_exactly(c) for c in candidates):
            return None
        if name_listed and name in METADATA_HOSTNAMES:
            return None
        return "a cloud metadata address"
    if name_listed or any(policy.address_listed(c) for c in candidates):
        return None
    if embedded is not None:
        inner, kind = embedded
        if kind == "IPv4-mapped IPv6" and not policy.allow_private:
            return "an IPv4-mapped IPv6 address"
        category = _category(inner)
        if category is not None and (category[0] or not policy.allow_private):
            return f"{category[1]} (embedded in a {kind} address)"
        if kind != "6to4":
            return None
    category = _category(addr)
    if category is not None and (category[0] or not policy.allow_private):
        return category[1]
    return None


def _split_host(url: str) -> tuple[str, str, int, str]:
    """Validate the syntax of ``url``; return (scheme, hostname, port, normalized url)."""
    if not isinstance(url, str):
        raise OutboundBlocked("The URL must be a string.")
    if len(url) > MAX_URL_LENGTH:
        raise OutboundBlocked("The URL is too long.")
    if "\\" in url:
        raise OutboundBlocked("The URL must not contain backslashes.")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise OutboundBlocked("The URL must not contain spaces or control characters.")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise OutboundBlocked("The URL is malformed.") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        shown = scheme or "none"
        raise OutboundBlocked(f"Only http and https URLs are allowed (scheme: {shown}).")
    netloc = parts.netloc
    if not netloc:
        raise OutboundBlocked("The URL has no host.")
    userinfo, _, hostport = netloc.rpartition("@")
    if "@" in userinfo:
        raise OutboundBlocked("The URL has an ambiguous user-info part (more than one '@').")
    if "%" in hostport:
        raise OutboundBlocked("Percent-encoded characters are not allowed in the host.")
    try:
        hostname = parts.hostname
        port = parts.port
    except ValueError:
        raise OutboundBlocked("The URL has an invalid host or port.") from None
    if not hostname:
        raise OutboundBlocked("The URL has no host.")
    if port is None:
        if hostport.endswith(":"):
            raise OutboundBlocked("The URL has an empty port.")
        port = _DEFAULT_PORTS[scheme]
    elif not 0 < port < 65536:
        raise OutboundBlocked("The URL has an invalid port.")

    if hostport.startswith("["):
        try:
            ipaddress.IPv6Address(hostname)
        except ValueError:
            raise OutboundBlocked("The URL has an invalid IPv6 address.") from None
        return scheme, hostname, port, url

    if not hostname.isascii():
        try:
            ascii_host = idna.encode(hostname, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            raise OutboundBlocked("The URL has an invalid international host name.") from None
        host_start = len(userinfo) + 1 if "@" in netloc else 0
        new_netloc = netloc[:host_start] + ascii_host + (f":{parts.port}" if parts.port is not None else "")
        url = urlunsplit((parts.scheme, new_netloc, parts.path, parts.query, parts.fragment))
        hostname = ascii_host.lower()

    if len(hostname) > 254:
        raise OutboundBlocked("The host name is too long.")
    labels = hostname[:-1].split(".") if hostname.endswith(".") else hostname.split(".")
    if not all(_LABEL_RE.match(label) for label in labels):
        raise OutboundBlocked(f"Host '{hostname}' is not a valid host name.")
    return scheme, hostname, port, url


def _resolve(hostname: str, port: int) -> list[IPAddress]:
    """Resolve ``hostname`` exactly once; IP literals and numeric forms are parsed, not looked up."""
    try:
        return [ipaddress.ip_address(hostname)]
    except ValueError:
        pass
    legacy = _parse_legacy_ipv4(hostname)
    if legacy is not None:
        return [legacy]
    try:
        infos = socket.getaddrinfo(hostname, port, 0, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise OutboundUnresolvable(f"Host '{hostname}' could not be resolved.") from None
    addresses: list[IPAddress] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        text = str(sockaddr[0]).split("%", 1)[0]
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            continue
        if addr not in addresses:
            addresses.append(addr)
    if not addresses:
        raise OutboundUnresolvable(f"Host '{hostname}' could not be resolved.")
    return addresses


def check_url(url: str, policy: OutboundPolicy) -> ResolvedTarget:
    """Validate ``url`` against ``policy`` and resolve its host once.

    Only http/https with a real host are accepted; backslashes, control characters, percent-encoded
    hosts and ambiguous user-info are refused. The host is judged by what would actually be connected
    to: IP literals and numeric forms (``2130706433``, ``0x7f.1``, ``127.1``) are parsed as IPv4, names
    are resolved with one ``socket.getaddrinfo`` call, and every returned address must be allowed.

    Returns a :class:`ResolvedTarget` whose ``addresses`` the connection must be pinned to.
    Raises :class:`OutboundBlocked` (or its subclass :class:`OutboundUnresolvable`) with a readable
    reason. Reasons never contain the URL's path, query or user-info.
    """
    scheme, hostname, port, normalized = _split_host(url)
    name = _normalize_name(hostname)
    if name in METADATA_HOSTNAMES and not policy.name_listed(name):
        raise OutboundBlocked(f"Host '{hostname}' is a cloud metadata service and is not allowed.")
    if (name == "localhost" or name.endswith(".localhost")) and not (policy.allow_private or policy.name_listed(name)):
        raise OutboundBlocked(f"Host '{hostname}' is a loopback name and is not allowed.")

    addresses = _resolve(hostname, port)
    try:
        literal = ipaddress.ip_address(hostname) is not None
    except ValueError:
        literal = False
    for addr in addresses:
        why = _refusal(addr, policy, hostname)
        if why is not None:
            log.debug("outbound refused: host %s (%s)", hostname, why)
            if literal:
                raise OutboundBlocked(f"Address {hostname} is {why} and is not allowed.")
            raise OutboundBlocked(f"Host '{hostname}' resolves to {why}, which is not allowed.")
    pinned = tuple(str(a) for a in addresses)
    return ResolvedTarget(url=normalized, scheme=scheme, hostname=hostname, port=port, ip=pinned[0], addresses=pinned)


# --------------------------------------------------------------------------------------------------
# Pinned connections


def _connect_pinned(
    addresses: tuple[str, ...],
    port: int,
    timeout: Any,
    source_address: tuple[str, int] | None,
    socket_options: Iterable[tuple[int, int, Any]] | None,
) -> socket.socket:
    """Open a TCP connection to the first reachable checked address; never resolves a name."""
    if not addresses:
        raise OSError("no checked address to connect to")
    last_error: OSError | None = None
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            for opt in socket_options or ():
                sock.setsockopt(*opt)
            if isinstance(timeout, int | float):
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect((address, port))
            return sock
        except OSError as exc:
            sock.close()
            last_error = exc
    assert last_error is not None
    raise last_error


class _PinnedConnectionMixin:
    """Connects to the pinned addresses instead of resolving ``self.host`` again."""

    host: str
    port: int
    timeout: Any
    source_address: tuple[str, int] | None
    socket_options: Any

    def __init__(self, *args: Any, pinned_addresses: tuple[str, ...] = (), **kwargs: Any) -> None:
        self.pinned_addresses = tuple(pinned_addresses)
        super().__init__(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        if not self.pinned_addresses:
            raise NewConnectionError(self, "refusing to connect: no checked address")  # type: ignore[arg-type]
        try:
            sock = _connect_pinned(
                self.pinned_addresses, self.port, self.timeout, self.source_address, self.socket_options
            )
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            ) from exc
        except OSError as exc:
            raise NewConnectionError(
                self,  # type: ignore[arg-type]
                f"Failed to establish a new connection: {exc}",
            ) from exc
        sys.audit("http.client.connect", self, self.host, self.port)
        return sock


class _PinnedHTTPConnection(_PinnedConnectionMixin, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_PinnedConnectionMixin, HTTPSConnection):
    pass


class _PinnedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


def _pinned_pool_key(request_context: dict[str, Any]) -> tuple[Any, tuple[str, ...]]:
    """Pool key: urllib3's usual key (scheme, host, port, TLS settings) plus the pinned addresses."""
    context = dict(request_context)
    pinned = tuple(context.pop("pinned_addresses", ()))
    scheme = context["scheme"].lower()
    return (urllib3.poolmanager.key_fn_by_scheme[scheme](context), pinned)


class _PinnedPoolManager(urllib3.poolmanager.PoolManager):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool_classes_by_scheme = {
            "http": _PinnedHTTPConnectionPool,
            "https": _PinnedHTTPSConnectionPool,
        }
        self.key_fn_by_scheme = {"http": _pinned_pool_key, "https": _pinned_pool_key}


_TARGET_ATTR = "_parley_outbound_target"


class PinnedHTTPAdapter(HTTPAdapter):
    """An HTTPAdapter that only sends requests checked by :func:`check_url`, to the checked address.

    The request must carry its :class:`ResolvedTarget` (see :meth:`OutboundClient.request`); pools are
    keyed by (scheme, hostname, port, pinned addresses, TLS settings). The pool's host stays the
    hostname, so the ``Host`` header, TLS SNI and certificate verification use it, while the socket
    is opened to the pinned address. Proxies are never used.
    """

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        """Create the pinning pool manager (called by ``HTTPAdapter.__init__``)."""
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = _PinnedPoolManager(num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """Proxies would resolve the host again: refused."""
        raise OutboundBlocked("Outbound requests cannot go through a proxy.")

    def get_connection(self, url: str, proxies: Mapping[str, str] | None = None) -> Any:
        """The unchecked legacy entry point: refused."""
        raise OutboundBlocked("Use get_connection_with_tls_context with a checked request.")

    def pool_kwargs_for(self, target: ResolvedTarget) -> dict[str, Any]:
        """The extra pool arguments that pin a pool to ``target``."""
        kwargs: dict[str, Any] = {"pinned_addresses": target.addresses}
        if target.scheme == "https":
            kwargs["server_hostname"] = target.hostname.rstrip(".")
        return kwargs

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: Any,
        proxies: Mapping[str, str] | None = None,
        cert: Any = None,
    ) -> HTTPConnectionPool:
        """Return the pool for the request's checked target (fails closed without one)."""
        target = getattr(request, _TARGET_ATTR, None)
        if not isinstance(target, ResolvedTarget):
            raise OutboundBlocked("Refusing to send a request that was not checked.")
        if proxies and any(proxies.values()):
            raise OutboundBlocked("Outbound requests cannot go through a proxy.")
        host_params, pool_kwargs = self.build_connection_pool_key_attributes(request, verify, cert)
        scheme = host_params["scheme"]
        port = host_params["port"] or _DEFAULT_PORTS.get(scheme)
        if (scheme, host_params["host"], port) != (target.scheme, target.hostname, target.port):
            raise OutboundBlocked("The request URL does not match the checked URL.")
        pool_kwargs.update(self.pool_kwargs_for(target))
        return self.poolmanager.connection_from_host(**host_params, pool_kwargs=pool_kwargs)


# --------------------------------------------------------------------------------------------------
# Client


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

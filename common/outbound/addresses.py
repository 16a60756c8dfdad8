"""URL and host checking: syntax, one DNS resolution, address classification, policy decisions.

:func:`check_url` is the entry point; it returns the :class:`ResolvedTarget` whose addresses the
connection is then pinned to (see :mod:`common.outbound.transport`).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import idna

from common.outbound.errors import OutboundBlocked, OutboundUnresolvable
from common.outbound.policy import IPAddress, OutboundPolicy, _normalize_name

# The package's logger name, kept from before the split (tests and log config refer to it).
log = logging.getLogger("common.outbound")

MAX_URL_LENGTH = 8192
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

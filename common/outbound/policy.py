"""What outbound requests may reach: :class:`OutboundPolicy` and the two stock policies."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024


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

"""Connections pinned to the checked addresses: urllib3 connections, pools and the requests adapter.

The socket is opened to an address :func:`~common.outbound.addresses.check_url` approved (no second
DNS lookup), while the pool's host stays the hostname for the ``Host`` header, TLS SNI and
certificate verification. Proxies are never used.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import requests
import urllib3.poolmanager
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from common.outbound.addresses import _DEFAULT_PORTS, ResolvedTarget
from common.outbound.errors import OutboundBlocked


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

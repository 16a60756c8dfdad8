"""The outbound guard (common/outbound/): SSRF refusals, pinning, redirects, size and time bounds.

No internet: every connection goes to a server started here on 127.0.0.1; public addresses only ever
appear through a monkeypatched ``socket.getaddrinfo`` and are only checked, never connected to
(except where the connection is explicitly redirected to a local server).
"""

from __future__ import annotations

import datetime
import json
import logging
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from common.outbound import (
    SYSTEM_POLICY,
    USER_POLICY,
    OutboundBlocked,
    OutboundClient,
    OutboundConnectionError,
    OutboundError,
    OutboundPolicy,
    OutboundTimeout,
    OutboundTooLarge,
    OutboundUnresolvable,
    PinnedHTTPAdapter,
    ResolvedTarget,
    check_url,
    read_limited,
    transport,
)

PUBLIC_IP = "93.184.216.34"
LOCAL_POLICY = OutboundPolicy(allow_private=True, connect_timeout=2, read_timeout=5)


# --------------------------------------------------------------------------------------------------
# Helpers and fixtures


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # silence the test server
        pass

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.server.seen.append(
            {
                "method": self.command,
                "path": url.path,
                "host": self.headers.get("Host"),
                "headers": dict(self.headers),
                "client": self.client_address,
                "body": body,
            }
        )
        if url.path == "/ok":
            self._reply(200, b"hello", {"Content-Type": "text/plain"})
        elif url.path == "/echo":
            payload = {"method": self.command, "host": self.headers.get("Host"), "headers": dict(self.headers)}
            self._reply(200, json.dumps(payload).encode(), {"Content-Type": "application/json"})
        elif url.path == "/redirect":
            self._reply(int(query.get("code", "302")), b"", {"Location": query["to"]})
        elif url.path == "/loop":
            self._reply(302, b"", {"Location": "/loop"})
        elif url.path == "/big":
            self._reply(200, b"x" * int(query["n"]))
        elif url.path == "/big-unsized":
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"y" * int(query["n"]))
            self.close_connection = True
        else:
            self._reply(404, b"not found")

    do_GET = _handle
    do_POST = _handle


class _Server:
    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.seen = []
        if ssl_context is not None:
            self.httpd.socket = ssl_context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.daemon = True
        self.thread.start()

    @property
    def seen(self) -> list[dict]:
        return self.httpd.seen

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = _Server()
    yield srv
    srv.stop()


@pytest.fixture
def blackhole():
    """A port that accepts TCP connections (kernel backlog) but never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def fake_dns(monkeypatch):
    """Map chosen hostnames to chosen addresses in socket.getaddrinfo and count the lookups."""
    real = socket.getaddrinfo
    table: dict[str, list] = {}
    calls: list[str] = []

    def fake(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name in table:
            calls.append(name)
            answer = table[name]
            if callable(answer):
                answer = answer()
            if isinstance(answer, Exception):
                raise answer
            out = []
            for ip in answer:
                family = socket.AF_INET6 if ":" in ip else socket.AF_INET
                sockaddr = (ip, port or 0, 0, 0) if family == socket.AF_INET6 else (ip, port or 0)
                out.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
            return out
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    fake.table = table
    fake.calls = calls
    return fake


@pytest.fixture
def no_dns(monkeypatch):
    """Fail loudly if anything tries to resolve a name."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"unexpected DNS lookup: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def client():
    c = OutboundClient(LOCAL_POLICY)
    yield c
    c.close()


# --------------------------------------------------------------------------------------------------
# check_url: the security.md item 2 corpus under USER_POLICY

CORPUS = [
    "http://127.0.0.1/",
    "http://0.0.0.0/",
    "http://localhost./",
    "http://localhost/",
    "http://[::1]/",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://2130706433/",
    "http://0x7f.1/",
    "http://017700000001/",
    "http://127.1/",
    "http://127.000.000.001/",
    "http://169.254.169.254/latest/meta-data/",
    "http://good@127.0.0.1/",
    "http://good.example.com@127.0.0.1/",
    "http://user:pass@127.0.0.1:8080/",
    "http://good.example.com\\@127.0.0.1/",
    "http://127.0.0.1\\@good.example.com/",
    "http:\\\\127.0.0.1\\",
    "http://%2e%2e/",
    "http://127%2e0%2e0%2e1/",
    "http://localhost%2e/",
    "ftp://example.com/file",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
    "//127.0.0.1/",
    "http://10.0.0.1/",
    "http://192.168.1.1/",
    "http://172.16.0.1/",
    "http://100.64.0.1/",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",
    "http://[fc00::1]/",
    "http://[fd00:ec2::254]/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/",
    "http://100.100.100.200/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata.google.internal./",
    "http://metadata/",
    "http:///path-only",
    "http://127.0.0.1:0/",
]


@pytest.mark.parametrize("url", CORPUS)
def test_user_policy_refuses_corpus_entry(url, no_dns):
    with pytest.raises(OutboundBlocked):
        check_url(url, USER_POLICY)


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "017700000001", "127.1", "127.000.000.001", "0x7f000001"])
def test_numeric_host_tricks_are_judged_as_the_loopback_address_they_reach(host, no_dns):
    with pytest.raises(OutboundBlocked, match="loopback"):
        check_url(f"http://{host}/", USER_POLICY)


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "017700000001", "127.1", "0x7f000001"])
def test_numeric_host_is_pinned_to_the_address_inet_aton_gives(host):
    expected = socket.inet_ntoa(socket.inet_aton(host))
    assert check_url(f"http://{host}/", SYSTEM_POLICY).ip == expected == "127.0.0.1"


def test_userinfo_does_not_hide_the_real_host(no_dns):
    with pytest.raises(OutboundBlocked, match="127.0.0.1"):
        check_url("http://good.example.com@127.0.0.1/", USER_POLICY)


@pytest.mark.parametrize("url", ["http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/"])
def test_ipv4_mapped_ipv6_is_refused(url, no_dns):
    with pytest.raises(OutboundBlocked, match="IPv4-mapped"):
        check_url(url, USER_POLICY)


def test_refusal_message_never_contains_userinfo_or_query(no_dns):
    with pytest.raises(OutboundBlocked) as info:
        check_url("http://admin:hunter2@127.0.0.1/v1?key=sk-query-secret", USER_POLICY)
    assert "hunter2" not in str(info.value)
    assert "sk-query-secret" not in str(info.value)
    assert info.value.reason == str(info.value)


def test_scheme_refusal_says_only_http_and_https_are_allowed(no_dns):
    with pytest.raises(OutboundBlocked, match="http and https"):
        check_url("file:///etc/passwd", USER_POLICY)


def test_public_address_is_allowed_under_user_policy(fake_dns):
    fake_dns.table["api.example.com"] = [PUBLIC_IP]
    target = check_url("https://api.example.com/v1/chat", USER_POLICY)
    assert target == ResolvedTarget(
        url="https://api.example.com/v1/chat",
        scheme="https",
        hostname="api.example.com",
        port=443,
        ip=PUBLIC_IP,
        addresses=(PUBLIC_IP,),
    )


def test_public_ip_literal_is_allowed_without_a_lookup(no_dns):
    assert check_url(f"http://{PUBLIC_IP}:8080/x", USER_POLICY).ip == PUBLIC_IP


def test_nat64_address_embedding_a_public_ipv4_is_allowed(no_dns):
    assert check_url("http://[64:ff9b::808:808]/", USER_POLICY).ip == "64:ff9b::808:808"


def test_hostname_resolving_to_loopback_is_refused(fake_dns):
    fake_dns.table["evil.example.com"] = ["127.0.0.1"]
    with pytest.raises(OutboundBlocked, match="loopback"):
        check_url("http://evil.example.com/", USER_POLICY)


def test_refusal_for_a_hostname_does_not_reveal_the_internal_address(fake_dns):
    fake_dns.table["intranet.example.com"] = ["10.20.30.40"]
    with pytest.raises(OutboundBlocked) as info:
        check_url("http://intranet.example.com/", USER_POLICY)
    assert "10.20.30.40" not in str(info.value)
    assert "private" in str(info.value)


def test_every_resolved_address_must_be_allowed(fake_dns):
    fake_dns.table["mixed.example.com"] = [PUBLIC_IP, "10.0.0.5"]
    with pytest.raises(OutboundBlocked):
        check_url("http://mixed.example.com/", USER_POLICY)


def test_hostname_is_resolved_exactly_once(fake_dns):
    fake_dns.table["once.example.com"] = [PUBLIC_IP]
    check_url("http://once.example.com/", USER_POLICY)
    assert fake_dns.calls == ["once.example.com"]


def test_unresolvable_host_is_refused(fake_dns):
    fake_dns.table["nx.example.com"] = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    with pytest.raises(OutboundUnresolvable, match="could not be resolved"):
        check_url("http://nx.example.com/", USER_POLICY)


def test_unresolvable_is_a_kind_of_blocked():
    assert issubclass(OutboundUnresolvable, OutboundBlocked)
    assert issubclass(OutboundBlocked, OutboundError)
    assert issubclass(OutboundTooLarge, OutboundError)


def test_international_hostname_is_checked_in_its_ascii_form(fake_dns):
    fake_dns.table["xn--bcher-kva.example"] = [PUBLIC_IP]
    target = check_url("http://bücher.example/katalog", USER_POLICY)
    assert target.hostname == "xn--bcher-kva.example"
    assert target.url == "http://xn--bcher-kva.example/katalog"


def test_fullwidth_dots_do_not_smuggle_a_private_address(no_dns):
    with pytest.raises(OutboundBlocked):
        check_url("http://127\u3002" + "0\u30020\u30021/", USER_POLICY)


# --------------------------------------------------------------------------------------------------
# SYSTEM_POLICY and allow_hosts


@pytest.mark.parametrize("url", ["http://127.0.0.1:11434/", "http://10.0.0.1/", "http://[fc00::1]/"])
def test_system_policy_allows_private_addresses(url, no_dns):
    assert check_url(url, SYSTEM_POLICY).port in (11434, 80)


def test_system_policy_request_to_local_server_succeeds(server):
    with OutboundClient(SYSTEM_POLICY) as c:
        response = c.get(server.url("/ok"))
    assert response.status_code == 200
    assert response.content == b"hello"


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://metadata/",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",
        "http://[::ffff:169.254.169.254]/",
    ],
)
def test_system_policy_still_refuses_metadata(url, no_dns):
    with pytest.raises(OutboundBlocked, match="metadata"):
        check_url(url, SYSTEM_POLICY)


def test_system_policy_refuses_hostname_resolving_to_metadata(fake_dns):
    fake_dns.table["sneaky.example.com"] = ["169.254.169.254"]
    with pytest.raises(OutboundBlocked, match="metadata"):
        check_url("http://sneaky.example.com/", SYSTEM_POLICY)


@pytest.mark.parametrize("url", ["http://0.0.0.0/", "http://224.0.0.1/", "http://[::]/"])
def test_system_policy_still_refuses_unspecified_and_multicast(url, no_dns):
    with pytest.raises(OutboundBlocked):
        check_url(url, SYSTEM_POLICY)


def test_allow_hosts_lets_admin_allow_loopback_for_user_requests(server):
    policy = OutboundPolicy(allow_hosts=("127.0.0.1",))
    with OutboundClient(policy) as c:
        response = c.get(server.url("/ok"))
    assert response.content == b"hello"


def test_allow_hosts_only_allows_what_is_listed(no_dns):
    policy = OutboundPolicy(allow_hosts=("127.0.0.1",))
    with pytest.raises(OutboundBlocked):
        check_url("http://10.0.0.1/", policy)


def test_allow_hosts_accepts_cidr_networks(no_dns):
    policy = OutboundPolicy(allow_hosts=("10.0.0.0/8",))
    assert check_url("http://10.1.2.3/", policy).ip == "10.1.2.3"
    with pytest.raises(OutboundBlocked):
        check_url("http://192.168.1.1/", policy)


def test_allow_hosts_accepts_hostnames(fake_dns):
    fake_dns.table["ollama.internal"] = ["10.0.0.7"]
    fake_dns.table["other.internal"] = ["10.0.0.8"]
    policy = OutboundPolicy(allow_hosts=("Ollama.Internal.",))
    assert check_url("http://ollama.internal:11434/", policy).ip == "10.0.0.7"
    with pytest.raises(OutboundBlocked):
        check_url("http://other.internal/", policy)


def test_allow_listed_network_does_not_open_metadata(no_dns):
    policy = OutboundPolicy(allow_private=True, allow_hosts=("169.254.0.0/16",))
    assert check_url("http://169.254.1.1/", policy).ip == "169.254.1.1"
    with pytest.raises(OutboundBlocked, match="metadata"):
        check_url("http://169.254.169.254/", policy)


def test_exact_allow_listed_metadata_address_is_allowed(no_dns):
    policy = OutboundPolicy(allow_hosts=("169.254.169.254",))
    assert check_url("http://169.254.169.254/latest/", policy).ip == "169.254.169.254"


def test_exact_allow_listed_metadata_hostname_is_allowed(fake_dns):
    fake_dns.table["metadata.google.internal"] = ["169.254.169.254"]
    policy = OutboundPolicy(allow_hosts=("metadata.google.internal",))
    assert check_url("http://metadata.google.internal/", policy).ip == "169.254.169.254"


def test_invalid_allow_hosts_entry_is_rejected():
    with pytest.raises(ValueError):
        OutboundPolicy(allow_hosts=("http://x/",))


def test_policy_defaults():
    assert USER_POLICY.allow_private is False
    assert SYSTEM_POLICY.allow_private is True
    assert USER_POLICY.max_response_bytes == 10 * 1024 * 1024
    assert (USER_POLICY.connect_timeout, USER_POLICY.read_timeout) == (10, 300)


# --------------------------------------------------------------------------------------------------
# Redirects


def test_redirects_are_not_followed_by_default(client, server):
    response = client.get(server.url("/redirect?to=/ok"))
    assert response.status_code == 302
    assert response.headers["Location"] == "/ok"
    assert [s["path"] for s in server.seen] == ["/redirect"]


def test_redirect_to_allowed_address_is_followed_when_asked(client, server):
    response = client.get(server.url("/redirect?to=/ok"), allow_redirects=True)
    assert response.status_code == 200
    assert response.content == b"hello"
    assert [r.status_code for r in response.history] == [302]


@pytest.mark.parametrize("location", ["http://192.168.1.1/", "http://169.254.169.254/latest/", "file:///etc/passwd"])
def test_redirect_to_disallowed_address_is_refused_when_following(server, location):
    policy = OutboundPolicy(allow_hosts=("127.0.0.1",), connect_timeout=2, read_timeout=5)
    with OutboundClient(policy) as c, pytest.raises(OutboundBlocked):
        c.get(server.url(f"/redirect?to={location}"), allow_redirects=True)
    assert [s["path"] for s in server.seen] == ["/redirect"]


def test_redirect_to_metadata_is_refused_even_under_system_policy(client, server):
    with pytest.raises(OutboundBlocked, match="metadata"):
        client.get(server.url("/redirect?to=http://169.254.169.254/"), allow_redirects=True)


def test_more_than_three_redirects_raise(client, server):
    with pytest.raises(OutboundError, match="Too many redirects"):
        client.get(server.url("/loop"), allow_redirects=True)
    assert len(server.seen) == 4


def test_cross_origin_redirect_drops_credential_headers(client, server, fake_dns):
    fake_dns.table["other.test"] = ["127.0.0.1"]
    start = server.url(f"/redirect?to=http://other.test:{server.port}/echo")
    response = client.get(start, headers={"Authorization": "Bearer sk-secret", "X-Api-Key": "k1"}, allow_redirects=True)
    seen = response.json()
    assert seen["host"] == f"other.test:{server.port}"
    assert "Authorization" not in seen["headers"]
    assert "X-Api-Key" not in seen["headers"]


def test_same_origin_redirect_keeps_headers(client, server):
    response = client.get(
        server.url("/redirect?to=/echo"), headers={"Authorization": "Bearer sk-secret"}, allow_redirects=True
    )
    assert response.json()["headers"]["Authorization"] == "Bearer sk-secret"


def test_303_redirect_turns_post_into_get(client, server):
    response = client.post(server.url("/redirect?code=303&to=/echo"), json={"a": 1}, allow_redirects=True)
    assert response.json()["method"] == "GET"
    assert server.seen[-1]["body"] == b""


# --------------------------------------------------------------------------------------------------
# Pinning (DNS rebinding), Host header, TLS hostname, pools


def test_dns_rebinding_resolves_once_and_connects_to_first_answer(monkeypatch, server, fake_dns):
    answers = iter([[PUBLIC_IP], ["127.0.0.1"], ["127.0.0.1"]])
    fake_dns.table["rebind.example.com"] = lambda: next(answers)
    connected = []
    real_connect = transport._connect_pinned

    def recording_connect(addresses, port, *rest):
        connected.append((addresses, port))
        # The public address is unreachable offline: hand the socket to the local server instead.
        return real_connect(("127.0.0.1",), server.port, *rest)

    monkeypatch.setattr(transport, "_connect_pinned", recording_connect)
    with OutboundClient(USER_POLICY) as c:
        response = c.get(f"http://rebind.example.com:{server.port}/echo")
    assert fake_dns.calls == ["rebind.example.com"]
    assert connected == [((PUBLIC_IP,), server.port)]
    assert response.json()["host"] == f"rebind.example.com:{server.port}"


def test_connection_does_not_resolve_the_hostname_again(client, server, fake_dns):
    fake_dns.table["pinned.test"] = ["127.0.0.1"]
    response = client.get(f"http://pinned.test:{server.port}/ok")
    assert response.content == b"hello"
    assert fake_dns.calls == ["pinned.test"]


def test_host_header_is_the_original_hostname(client, server, fake_dns):
    fake_dns.table["named.test"] = ["127.0.0.1"]
    response = client.get(f"http://named.test:{server.port}/echo")
    assert response.json()["host"] == f"named.test:{server.port}"


def test_falls_back_to_the_next_checked_address(client, server, fake_dns):
    fake_dns.table["dual.test"] = ["::1", "127.0.0.1"]
    server_v4_only = client.get(f"http://dual.test:{server.port}/ok")
    assert server_v4_only.content == b"hello"


def test_host_header_cannot_be_set_by_the_caller(client, server):
    with pytest.raises(OutboundBlocked, match="Host header"):
        client.get(server.url("/ok"), headers={"Host": "internal.example"})
    assert server.seen == []


def test_adapter_refuses_a_request_that_was_not_checked(server):
    adapter = PinnedHTTPAdapter()
    prepared = requests.Request("GET", server.url("/ok")).prepare()
    with pytest.raises(OutboundBlocked, match="not checked"):
        adapter.send(prepared, timeout=(1, 1))
    assert server.seen == []


def test_adapter_refuses_a_request_whose_url_differs_from_the_checked_one(server, no_dns):
    adapter = PinnedHTTPAdapter()
    prepared = requests.Request("GET", server.url("/ok")).prepare()
    prepared._parley_outbound_target = check_url(f"http://{PUBLIC_IP}/", USER_POLICY)
    with pytest.raises(OutboundBlocked, match="does not match"):
        adapter.send(prepared, timeout=(1, 1))


def _pool_for(adapter: PinnedHTTPAdapter, target: ResolvedTarget):
    prepared = requests.Request("GET", target.url).prepare()
    prepared._parley_outbound_target = target
    return adapter.get_connection_with_tls_context(prepared, True)


def _target(hostname: str, ip: str, scheme: str = "https") -> ResolvedTarget:
    port = 443 if scheme == "https" else 80
    return ResolvedTarget(f"{scheme}://{hostname}/v1", scheme, hostname, port, ip, (ip,))


def test_https_pool_keeps_hostname_for_sni_and_certificate_but_pins_the_address():
    adapter = PinnedHTTPAdapter()
    pool = _pool_for(adapter, _target("api.example.com", PUBLIC_IP))
    assert pool.host == "api.example.com"
    assert pool.conn_kw["server_hostname"] == "api.example.com"
    assert pool.conn_kw["pinned_addresses"] == (PUBLIC_IP,)
    conn = pool._new_conn()
    assert conn.host == "api.example.com"
    assert conn.server_hostname == "api.example.com"
    assert conn.assert_hostname is None  # None: the certificate is verified against server_hostname
    assert conn.pinned_addresses == (PUBLIC_IP,)


def test_pools_are_keyed_by_pinned_address_and_hostname():
    adapter = PinnedHTTPAdapter()
    first = _pool_for(adapter, _target("api.example.com", PUBLIC_IP))
    again = _pool_for(adapter, _target("api.example.com", PUBLIC_IP))
    rebound = _pool_for(adapter, _target("api.example.com", "93.184.216.35"))
    other_name = _pool_for(adapter, _target("cdn.example.com", PUBLIC_IP))
    plain_http = _pool_for(adapter, _target("api.example.com", PUBLIC_IP, scheme="http"))
    assert first is again
    assert len({id(first), id(rebound), id(other_name), id(plain_http)}) == 4


def test_pool_is_sized_for_many_concurrent_streams():
    with OutboundClient(USER_POLICY) as c:
        pool = _pool_for(c.adapter, _target("api.example.com", PUBLIC_IP))
        assert pool.pool.maxsize == 256
    with OutboundClient(USER_POLICY, pool_maxsize=512) as c:
        assert _pool_for(c.adapter, _target("api.example.com", PUBLIC_IP)).pool.maxsize == 512


def test_connections_are_reused_between_requests(client, server):
    client.get(server.url("/ok"))
    client.get(server.url("/ok"))
    assert len(server.seen) == 2
    assert server.seen[0]["client"] == server.seen[1]["client"]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed certificate for tls.parley.test (its own CA), written to disk."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def make(name: str):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        directory = tmp_path_factory.mktemp(name)
        cert_path, key_path = directory / "cert.pem", directory / "key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return str(cert_path), str(key_path)

    return {"good": make("tls.parley.test"), "other": make("other.parley.test")}


def _tls_server(cert_and_key):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert_and_key)
    sni: list[str | None] = []
    context.sni_callback = lambda sslobj, name, ctx: sni.append(name)
    srv = _Server(ssl_context=context)
    srv.sni = sni
    return srv


def test_https_uses_hostname_for_sni_and_verification_while_connecting_to_pinned_ip(tls_files, fake_dns):
    fake_dns.table["tls.parley.test"] = ["127.0.0.1"]
    srv = _tls_server(tls_files["good"])
    try:
        policy = OutboundPolicy(allow_hosts=("tls.parley.test",), connect_timeout=2, read_timeout=5)
        with OutboundClient(policy, verify=tls_files["good"][0]) as c:
            response = c.get(f"https://tls.parley.test:{srv.port}/echo")
        assert response.json()["host"] == f"tls.parley.test:{srv.port}"
        assert srv.sni == ["tls.parley.test"]
        assert fake_dns.calls == ["tls.parley.test"]
    finally:
        srv.stop()


def test_https_certificate_for_another_name_is_rejected(tls_files, fake_dns):
    fake_dns.table["tls.parley.test"] = ["127.0.0.1"]
    srv = _tls_server(tls_files["other"])
    try:
        policy = OutboundPolicy(allow_hosts=("tls.parley.test",), connect_timeout=2, read_timeout=5)
        with OutboundClient(policy, verify=tls_files["other"][0]) as c, pytest.raises(OutboundConnectionError):
            c.get(f"https://tls.parley.test:{srv.port}/ok")
        assert srv.seen == []
    finally:
        srv.stop()


# --------------------------------------------------------------------------------------------------
# Size and time bounds, errors


def test_body_within_the_limit_is_returned(server):
    policy = OutboundPolicy(allow_private=True, max_response_bytes=1000)
    with OutboundClient(policy) as c:
        assert c.get(server.url("/big?n=1000")).content == b"x" * 1000


def test_response_with_large_content_length_raises_too_large(server):
    policy = OutboundPolicy(allow_private=True, max_response_bytes=1000)
    with OutboundClient(policy) as c, pytest.raises(OutboundTooLarge):
        c.get(server.url("/big?n=5000"))


def test_response_without_content_length_is_cut_at_the_limit(server):
    policy = OutboundPolicy(allow_private=True, max_response_bytes=1000)
    with OutboundClient(policy) as c, pytest.raises(OutboundTooLarge, match="1000 bytes"):
        c.get(server.url("/big-unsized?n=200000"))


def test_streamed_response_is_not_read_by_request(client, server):
    response = client.get(server.url("/big-unsized?n=50000"), stream=True)
    assert response._content_consumed is False
    assert len(read_limited(response, 60000)) == 50000


def test_read_limited_bounds_a_streamed_body(client, server):
    response = client.get(server.url("/big-unsized?n=50000"), stream=True)
    with pytest.raises(OutboundTooLarge):
        read_limited(response, 4096)


def test_read_timeout_is_applied(client, blackhole):
    started = time.monotonic()
    with pytest.raises(OutboundTimeout):
        client.get(f"http://127.0.0.1:{blackhole}/", timeout=(1, 0.5))
    assert time.monotonic() - started < 2


def test_policy_timeouts_apply_when_none_is_given(blackhole):
    policy = OutboundPolicy(allow_private=True, connect_timeout=1, read_timeout=0.5)
    started = time.monotonic()
    with OutboundClient(policy) as c, pytest.raises(OutboundTimeout):
        c.get(f"http://127.0.0.1:{blackhole}/")
    assert time.monotonic() - started < 2


def test_timeout_is_also_a_requests_timeout(client, blackhole):
    with pytest.raises(requests.exceptions.Timeout):
        client.get(f"http://127.0.0.1:{blackhole}/", timeout=0.5)


def test_refused_connection_raises_outbound_connection_error(client):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(OutboundConnectionError) as info:
        client.get(f"http://127.0.0.1:{port}/v1?key=sk-query-secret")
    assert "sk-query-secret" not in str(info.value)
    assert isinstance(info.value, requests.exceptions.ConnectionError)


def test_nothing_secret_is_logged(client, server, caplog):
    caplog.set_level(logging.DEBUG, logger="common.outbound")
    client.get(
        server.url("/ok?key=sk-query-secret", host="user:hunter2@127.0.0.1"),
        headers={"Authorization": "Bearer sk-header-secret"},
    )
    with pytest.raises(OutboundBlocked):
        OutboundClient(USER_POLICY).get("http://user:hunter2@127.0.0.1/?key=sk-query-secret")
    text = caplog.text
    assert caplog.records, "debug logging is expected to say where requests go"
    for secret in ("hunter2", "sk-query-secret", "sk-header-secret", "Authorization"):
        assert secret not in text


def test_nothing_is_logged_above_debug(client, server, caplog):
    caplog.set_level(logging.INFO, logger="common.outbound")
    client.get(server.url("/ok"))
    with pytest.raises(OutboundBlocked):
        OutboundClient(USER_POLICY).get("http://127.0.0.1/")
    assert [r for r in caplog.records if r.name == "common.outbound"] == []


def test_post_sends_json_body(client, server):
    response = client.post(server.url("/echo"), json={"model": "x"})
    assert response.json()["method"] == "POST"
    assert json.loads(server.seen[-1]["body"]) == {"model": "x"}

"""URL inputs: the SSRF corpus is refused before any connection; real https fetches are capped and timed.

The corpus runs against a loopback listener on the port every URL names, and a process-wide audit
hook records every ``socket.connect`` and ``socket.getaddrinfo``: a refused URL must cause neither.
The positive cases fetch from a loopback aiohttp server over TLS (a CA made here), reached through
an injected resolver and ``allow`` for exactly that address and port.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import sys
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from mcp_image_server.errors import InputFetchFailedError, UrlNotAllowedError
from mcp_image_server.fetch import IPAddress, blocked_range, fetch_image
from tests.emulators import render_image

pytestmark = pytest.mark.asyncio

LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
PNG = render_image(64, 48, "png")
MAX = 1 << 20

# --- observing the network ----------------------------------------------------------------------

_events: list[tuple[str, Any]] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _events is not None and event in ("socket.connect", "socket.getaddrinfo"):
        _events.append((event, args[1] if event == "socket.connect" else args[0]))


sys.addaudithook(_audit)  # hooks cannot be removed; this one records only inside ``network_events``


@pytest.fixture
def network_events() -> Iterator[list[tuple[str, Any]]]:
    """Every connect and DNS lookup this process makes while the test runs."""
    global _events
    _events = []
    try:
        yield _events
    finally:
        _events = None


@dataclass
class Listener:
    """Plain TCP listeners on 127.0.0.1 and (when available) ::1, one port, counting connections."""

    port: int = 0
    connections: int = 0


@pytest_asyncio.fixture
async def listener() -> AsyncIterator[Listener]:
    found = Listener()

    def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        found.connections += 1
        writer.close()

    servers = [await asyncio.start_server(accept, "127.0.0.1", 0)]
    found.port = servers[0].sockets[0].getsockname()[1]
    try:
        servers.append(await asyncio.start_server(accept, "::1", found.port))
    except OSError:
        pass  # no IPv6 loopback here; the audit hook still sees any connect
    try:
        yield found
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


class FakeDNS:
    """An injected resolver: names to addresses, recording every lookup; unknown names do not resolve."""

    def __init__(self, table: Mapping[str, Sequence[str]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ipaddress.ip_address(a) for a in self.table[host]]


# --- the SSRF corpus ------------------------------------------------------------------------------

_CORPUS_DNS = {
    "images.test": ["93.184.215.14"],
    "metadata.google.internal": ["169.254.169.254"],
    "rebind.test": ["127.0.0.1"],
    "mixed.test": ["93.184.215.14", "10.0.0.5"],
    "v6only.test": ["::1"],
    "mapped.test": ["::ffff:10.1.2.3"],
    "ula.test": ["2606:4700:4700::1111", "fd12:3456::1"],
}

CORPUS: list[tuple[str, str, str | None]] = [
    # IPv4 literals, in every form a resolver would accept
    ("https://127.0.0.1:{port}/a.png", "blocked_address", "loopback"),
    ("https://2130706433:{port}/", "blocked_address", "loopback"),
    ("https://0x7f000001:{port}/", "blocked_address", "loopback"),
    ("https://0177.0.0.1:{port}/", "blocked_address", "loopback"),
    ("https://127.1:{port}/", "blocked_address", "loopback"),
    ("https://0x7f.1:{port}/", "blocked_address", "loopback"),
    ("https://017700000001:{port}/", "blocked_address", "loopback"),
    ("https://127.0.0.1.:{port}/", "blocked_address", "loopback"),
    ("https://\u2460\u2461\u2466.0.0.1:{port}/", "blocked_address", "loopback"),
    ("https://10.0.0.5:{port}/", "blocked_address", "private"),
    ("https://172.16.0.1:{port}/", "blocked_address", "private"),
    ("https://172.31.255.255:{port}/", "blocked_address", "private"),
    ("https://192.168.1.1:{port}/", "blocked_address", "private"),
    ("https://169.254.169.254:{port}/latest/meta-data/", "blocked_address", "cloud metadata"),
    ("https://0xa9fea9fe:{port}/", "blocked_address", "cloud metadata"),
    ("https://169.254.1.1:{port}/", "blocked_address", "link-local"),
    ("https://100.64.0.1:{port}/", "blocked_address", "shared"),
    ("https://100.100.100.200:{port}/", "blocked_address", "cloud metadata"),
    ("https://0.0.0.0:{port}/", "blocked_address", "unspecified"),
    ("https://0:{port}/", "blocked_address", "unspecified"),
    ("https://224.0.0.1:{port}/", "blocked_address", "multicast"),
    ("https://255.255.255.255:{port}/", "blocked_address", "reserved"),
    ("https://198.18.0.1:{port}/", "blocked_address", "special-purpose"),
    # IPv6 literals, and IPv6 forms that carry an IPv4 address
    ("https://[::1]:{port}/", "blocked_address", "loopback"),
    ("https://[0:0:0:0:0:0:0:1]:{port}/", "blocked_address", "loopback"),
    ("https://[::]:{port}/", "blocked_address", "unspecified"),
    ("https://[::ffff:127.0.0.1]:{port}/", "blocked_address", "loopback"),
    ("https://[::ffff:7f00:1]:{port}/", "blocked_address", "loopback"),
    ("https://[::ffff:169.254.169.254]:{port}/", "blocked_address", "cloud metadata"),
    ("https://[::127.0.0.1]:{port}/", "blocked_address", "loopback"),
    ("https://[2002:7f00:1::]:{port}/", "blocked_address", "loopback"),
    ("https://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{port}/", "blocked_address", "loopback"),
    ("https://[64:ff9b::a00:5]:{port}/", "blocked_address", "private"),
    ("https://[fe80::1%25eth0]:{port}/", "blocked_address", "link-local"),
    ("https://[fc00::1]:{port}/", "blocked_address", "private"),
    ("https://[fd00:ec2::254]:{port}/", "blocked_address", "cloud metadata"),
    ("https://[fec0::1]:{port}/", "blocked_address", "site-local"),
    ("https://[ff02::1]:{port}/", "blocked_address", "multicast"),
    ("https://[2001:db8::1]:{port}/", "blocked_address", "special-purpose"),
    # names: refused by what they resolve to (any address), or by name
    ("https://localhost:{port}/", "blocked_name", None),
    ("https://LOCALHOST.:{port}/", "blocked_name", None),
    ("https://app.localhost:{port}/", "blocked_name", None),
    ("https://metadata.google.internal:{port}/computeMetadata/v1/", "blocked_address", "cloud metadata"),
    ("https://rebind.test:{port}/", "blocked_address", "loopback"),
    ("https://mixed.test:{port}/", "blocked_address", "private"),
    ("https://v6only.test:{port}/", "blocked_address", "loopback"),
    ("https://mapped.test:{port}/", "blocked_address", "private"),
    ("https://ula.test:{port}/", "blocked_address", "private"),
    # scheme, credentials, malformed
    ("http://images.test:{port}/a.png", "not_https", None),
    ("http://127.0.0.1:{port}/a.png", "not_https", None),
    ("ftp://images.test:{port}/a.png", "not_https", None),
    ("file:///etc/passwd", "not_https", None),
    ("javascript:alert(1)", "not_https", None),
    ("//127.0.0.1:{port}/a.png", "not_https", None),
    ("https://user:s3cr3t@images.test:{port}/a.png", "credentials_in_url", None),
    ("https://user@images.test:{port}/a.png", "credentials_in_url", None),
    ("https://images.test@127.0.0.1:{port}/a.png", "credentials_in_url", None),
    ("https://1.2.3.256:{port}/", "invalid_url", None),
    ("https://1.2.3.4.5:{port}/", "invalid_url", None),
    ("https://%31%32%37.0.0.1:{port}/", "invalid_url", None),
    ("https://127.0.0.1:{port}\\@images.test/", "invalid_url", None),
    ("https:///a.png", "invalid_url", None),
    ("https://[2606:4700::1%25eth0]:{port}/", "invalid_url", None),
]

_NAMES_RESOLVED = {
    "metadata.google.internal",
    "rebind.test",
    "mixed.test",
    "v6only.test",
    "mapped.test",
    "ula.test",
}


@pytest.mark.parametrize(("template", "reason", "kind"), CORPUS, ids=[c[0].split("{")[0][:48] for c in CORPUS])
async def test_the_ssrf_corpus_is_refused_before_any_connection(
    template: str, reason: str, kind: str | None, listener: Listener, network_events: list[tuple[str, Any]]
) -> None:
    dns = FakeDNS(_CORPUS_DNS)
    url = template.format(port=listener.port)
    with pytest.raises(UrlNotAllowedError) as info:
        await fetch_image(url, max_bytes=MAX, timeout=5, resolve=dns, field="images[0]")
    error = info.value
    assert (error.code, error.details["reason"], error.details.get("range")) == ("url_not_allowed", reason, kind)
    assert error.details["field"] == "images[0]"
    assert "refused" in error.message and (kind is None or kind in error.message)
    assert "s3cr3t" not in error.message + str(error.details)  # credentials never echoed
    assert listener.connections == 0
    assert network_events == []
    host = url.split("//", 1)[-1].split(":", 1)[0].rstrip(".")
    assert dns.calls == ([host] if host in _NAMES_RESOLVED else [])


@pytest.mark.parametrize(
    ("template", "address"),
    [
        ("https://2130706433:{port}/", "127.0.0.1"),
        ("https://0x7f.1:{port}/", "127.0.0.1"),
        ("https://[::ffff:127.0.0.1]:{port}/", "::ffff:7f00:1"),
        ("https://[fe80::1%25eth0]:{port}/", "fe80::1"),
        ("https://localhost:{port}/", None),
    ],
)
async def test_literals_are_never_looked_up_with_the_system_resolver(
    template: str, address: str | None, listener: Listener, network_events: list[tuple[str, Any]]
) -> None:
    with pytest.raises(UrlNotAllowedError) as info:
        await fetch_image(template.format(port=listener.port), max_bytes=MAX, timeout=5)
    assert info.value.details.get("address") == address
    assert (listener.connections, network_events) == (0, [])


@pytest.mark.parametrize(
    "address",
    ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:82b::200e", "64:ff9b::808:808"],
)
async def test_public_addresses_are_allowed(address: str) -> None:
    assert blocked_range(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("::ffff:10.0.0.1", "private"),
        ("2002:a9fe:a9fe::1", "cloud metadata"),
        ("2002:c0a8:101::", "private"),
        ("::ffff:8.8.8.8", "reserved"),  # mapped forms are never needed: refuse even a public one
        ("192.88.99.1", "special-purpose"),  # "global" to ipaddress on some Pythons
        ("64:ff9b:1::1", "private"),
        ("64:ff9b::a9fe:a9fe", "cloud metadata"),
    ],
)
async def test_embedded_and_special_ranges_are_refused(address: str, kind: str) -> None:
    assert blocked_range(ipaddress.ip_address(address)) == kind


async def test_a_name_that_does_not_resolve_fails_without_connecting(network_events: list[tuple[str, Any]]) -> None:
    with pytest.raises(InputFetchFailedError) as info:
        await fetch_image("https://nowhere.test/a.png", max_bytes=MAX, timeout=5, resolve=FakeDNS({}))
    assert (info.value.code, info.value.details["reason"]) == ("input_fetch_failed", "dns_failed")
    assert network_events == []


async def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        await fetch_image("https://images.test/", max_bytes=0, timeout=5)


# --- a real https upstream on loopback ------------------------------------------------------------


@dataclass(frozen=True)
class TLS:
    server: ssl.SSLContext
    client: ssl.SSLContext


def _make_tls(folder: Path) -> TLS:
    """A CA and a leaf for ``images.test`` signed by it (no IP SAN: the name must be kept for TLS)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mcp-image-server fetch test CA")])
    usage = {
        "content_commitment": False,
        "key_encipherment": False,
        "data_encipherment": False,
        "key_agreement": False,
        "encipher_only": False,
        "decipher_only": False,
    }
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, **usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "images.test")]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("images.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **usage), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = folder / "leaf.pem", folder / "leaf.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return TLS(server, client)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLS:
    return _make_tls(tmp_path_factory.mktemp("tls"))


HUGE = 64 << 20
"""What the streaming routes would send if nobody hung up: far past any cap used here."""


@dataclass
class Upstream:
    """The loopback https server: what it was asked, and what the streaming and slow routes saw."""

    port: int = 0
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    slow_entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    stream_ended: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0

    def url(self, path: str, host: str = "images.test") -> str:
        return f"https://{host}:{self.port}{path}"


def _app(state: Upstream) -> web.Application:
    async def record(request: web.Request) -> None:
        state.requests.append((request.path_qs, dict(request.headers)))

    async def image(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(body=PNG, content_type="image/png")

    async def redirect(request: web.Request) -> web.Response:
        await record(request)
        left = int(request.match_info["n"])
        location = f"{left - 1}" if left > 1 else "../image.png"  # relative, resolved against this URL
        return web.Response(status=302, headers={"Location": location, "Set-Cookie": "session=abc; Path=/"})

    async def to(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=307, headers={"Location": request.query["location"]})

    async def loop(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=301, headers={"Location": "/loop"})

    async def no_location(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=302)

    async def text(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(text="<html>not an image</html>", content_type=request.query.get("type", "text/html"))

    async def missing(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=404, text="no such image")

    async def stream(request: web.Request) -> web.StreamResponse:
        """A PNG-looking body of HUGE bytes, with or without Content-Length, until the client hangs up."""
        await record(request)
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        if request.query.get("length"):
            response.content_length = HUGE
        await response.prepare(request)
        try:
            chunk = PNG[:8] + bytes(65536 - 8)
            while state.sent < HUGE:
                await response.write(chunk)
                state.sent += len(chunk)
                # write() only suspends when the transport pauses; yield so a hang-up is noticed
                await asyncio.sleep(0)
                chunk = bytes(65536)
        except ConnectionError:
            pass
        finally:
            state.stream_ended.set()
        return response

    async def slow(request: web.Request) -> web.Response:
        await record(request)
        state.slow_entered.set()
        await state.release.wait()
        return web.Response(body=PNG, content_type="image/png")

    app = web.Application()
    app.router.add_get("/image.png", image)
    app.router.add_get("/redirect/{n}", redirect)
    app.router.add_get("/to", to)
    app.router.add_get("/loop", loop)
    app.router.add_get("/no-location", no_location)
    app.router.add_get("/text", text)
    app.router.add_get("/missing", missing)
    app.router.add_get("/stream", stream)
    app.router.add_get("/slow", slow)
    return app


@pytest_asyncio.fixture
async def upstream(tls: TLS) -> AsyncIterator[Upstream]:
    state = Upstream()
    runner = web.AppRunner(_app(state))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.server)
    await site.start()
    state.port = runner.addresses[0][1]
    try:
        yield state
    finally:
        state.release.set()
        await runner.cleanup()


def _options(upstream: Upstream, tls: TLS, dns: FakeDNS | None = None, **extra: Any) -> dict[str, Any]:
    """Reach ``images.test`` (127.0.0.1) and only the upstream's port there."""
    options: dict[str, Any] = {
        "max_bytes": MAX,
        "timeout": 5,
        "resolve": dns or FakeDNS({"images.test": ["127.0.0.1"]}),
        "allow": lambda address, port: address == LOOPBACK and port == upstream.port,
        "ssl_context": tls.client,
    }
    return options | extra


async def test_a_png_is_fetched_over_verified_tls_from_the_vetted_address(upstream: Upstream, tls: TLS) -> None:
    dns = FakeDNS({"images.test": ["127.0.0.1"]})
    assert await fetch_image(upstream.url("/image.png"), **_options(upstream, tls, dns)) == PNG
    [(path, headers)] = upstream.requests
    assert path == "/image.png"
    assert headers["Host"] == f"images.test:{upstream.port}"  # the name, not the pinned address
    assert not {"Cookie", "Authorization", "Proxy-Authorization"} & set(headers)
    assert dns.calls == ["images.test"]  # resolved once: aiohttp never asked DNS again


async def test_relative_redirects_are_followed_and_each_hop_is_vetted_again(upstream: Upstream, tls: TLS) -> None:
    dns = FakeDNS({"images.test": ["127.0.0.1"]})
    assert await fetch_image(upstream.url("/redirect/3"), **_options(upstream, tls, dns)) == PNG
    assert [p for p, _ in upstream.requests] == ["/redirect/3", "/redirect/2", "/redirect/1", "/image.png"]
    assert dns.calls == ["images.test"] * 4
    assert all("Cookie" not in h for _, h in upstream.requests)  # Set-Cookie on every hop, never sent back


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("https://127.0.0.1:{listener}/x.png", "blocked_address"),
        ("https://0x7f000001:{listener}/x.png", "blocked_address"),
        ("https://[::ffff:127.0.0.1]:{listener}/x.png", "blocked_address"),
        ("https://internal.test:{listener}/x.png", "blocked_address"),
        ("https://images.test:{listener}/x.png", "blocked_address"),  # allowed address, other port
        ("http://images.test:{upstream}/image.png", "not_https"),
        ("https://u:p@images.test:{upstream}/image.png", "credentials_in_url"),
    ],
)
async def test_a_redirect_to_a_refused_url_is_refused_at_the_redirect(
    location: str,
    reason: str,
    upstream: Upstream,
    tls: TLS,
    listener: Listener,
    network_events: list[tuple[str, Any]],
) -> None:
    dns = FakeDNS({"images.test": ["127.0.0.1"], "internal.test": ["10.0.0.5"]})
    target = location.format(listener=listener.port, upstream=upstream.port)
    allow_loopback_upstream = _options(upstream, tls, dns)
    with pytest.raises(UrlNotAllowedError) as info:
        await fetch_image(upstream.url(f"/to?location={target}"), **allow_loopback_upstream)
    assert (info.value.details["reason"], info.value.details["redirect"]) == (reason, 1)
    assert listener.connections == 0
    connects = [a for e, a in network_events if e == "socket.connect"]
    assert connects and all(a[1] == upstream.port for a in connects)  # only the first hop connected
    assert len(upstream.requests) == 1


async def test_too_many_redirects(upstream: Upstream, tls: TLS) -> None:
    with pytest.raises(InputFetchFailedError) as info:
        await fetch_image(upstream.url("/loop"), **_options(upstream, tls, max_redirects=2))
    assert (info.value.details["reason"], info.value.details["max_redirects"]) == ("too_many_redirects", 2)
    assert len(upstream.requests) == 3


async def test_no_redirects_when_the_limit_is_zero(upstream: Upstream, tls: TLS) -> None:
    with pytest.raises(InputFetchFailedError) as info:
        await fetch_image(upstream.url("/redirect/1"), **_options(upstream, tls, max_redirects=0))
    assert info.value.details["reason"] == "too_many_redirects"


async def test_a_redirect_without_location_fails(upstream: Upstream, tls: TLS) -> None:
    with pytest.raises(InputFetchFailedError) as info:
        await fetch_image(upstream.url("/no-location"), **_options(upstream, tls))
    assert info.value.details["reason"] == "redirect_without_location"


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "chunked"])
async def test_a_body_over_the_cap_is_cut_off(with_length: bool, upstream: Upstream, tls: TLS) -> None:
    path = "/stream?length=1" if with_length else "/stream"
    with pytest.raises(InputFetchFailedError) as info:
        await fetch_image(upstream.url(path), **_options(upstream, tls, max_bytes=256 * 1024))
    assert (info.value.details["reason"], info.value.details["max_bytes"]) == ("too_large", 256 * 1024)
    async with asyncio.timeout(5):
        await upstream.stream_ended.wait()  # the server saw the connection go away...
    assert upstream.sent < 16 << 20  # ...long before it had sent everything (kernel buffers hold a few MB)


async def test_a_body_exactly_at_the_cap_is_accepted_and_one_byte_less_is_not(upstream: Upstream, tls: TLS) -> None:
    assert await fetch_image(upstream.url("/image.png"), **_options(upstream, tls, max_bytes=len(PNG))) == PNG
    with pytest.raises(InputFetchFailedError) as info:
        await fetch_image(upstream.url("/image.png"), **_options(upstream, tls, max_bytes=len(PNG) - 1))
    assert info.value.details["reason"] == "too_large"


@pytest.mark.parametrize("content_type", ["text/html", "image/png"], ids=["html", "html-claiming-png"])
async def test_a_body_that_is_not_an_image_fails(content_type: str, upstream: Upstream, tls: TLS) -> None:
    with pytest.raises(InputFetchFailedError) as info:
        await fetch_image(upstream.url(f"/text?type={content_type}"), **_options(upstream, tls))
    assert info.value.details["reason"] == "not_an_image"


async def test_a_404_fails_with_its_status(upstream: Upstream, tls: TLS) -> None:
    with pytest.raises(InputFetchFailedError) as info:
        await fetch_image(upstream.url("/missing?token=SECRET"), **_options(upstream, tls))
    assert (info.value.details["reason"], info.value.details["status"]) == ("http_status", 404)
    assert "SECRET" not in info.value.message and "SECRET" not in str(info.value.details)


async def test_a_slow_server_hits_the_timeout(upstream: Upstream, tls: TLS) -> None:
    with pytest.raises(InputFetchFailedError) as info:
        await fetch_image(upstream.url("/slow"), **_options(upstream, tls, timeout=0.3))
    assert info.value.details["reason"] == "timeout"
    assert info.value.details["url"] == upstream.url("/slow")
    assert upstream.slow_entered.is_set() and not upstream.release.is_set()


async def test_tls_is_verified_against_the_name(upstream: Upstream, tls: TLS) -> None:
    dns = FakeDNS({"other.test": ["127.0.0.1"]})
    with pytest.raises(InputFetchFailedError) as info:
        await fetch_image(upstream.url("/image.png", host="other.test"), **_options(upstream, tls, dns))
    assert info.value.details["reason"] == "tls_failed"
    with pytest.raises(InputFetchFailedError) as info:  # the system trust store does not know the test CA
        await fetch_image(upstream.url("/image.png"), **_options(upstream, tls, ssl_context=None))
    assert info.value.details["reason"] == "tls_failed"
    assert upstream.requests == []


async def test_a_refused_connection_fails(upstream: Upstream, tls: TLS) -> None:
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    options = _options(upstream, tls, allow=lambda address, port: address == LOOPBACK and port == closed_port)
    with pytest.raises(InputFetchFailedError) as info:
        await fetch_image(f"https://images.test:{closed_port}/image.png", **options)
    assert info.value.details["reason"] == "connect_failed"

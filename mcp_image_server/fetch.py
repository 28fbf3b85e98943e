"""Fetch an ``https://`` image input without letting the URL reach inside our network (SSRF).

Every URL, the first and each redirect's ``Location``, is vetted before any connection:
https only, no credentials, a well-formed host; an IP literal in any form (``2130706433``,
``0x7f000001``, ``0177.0.0.1``, ``127.1``, ``[::ffff:127.0.0.1]``, ``[fe80::1%25eth0]``) is
normalised and checked; a name is resolved once and refused when *any* of its addresses is
not public. The connection then goes only to the vetted addresses (a pinned aiohttp
resolver, so a second DNS answer cannot rebind us) while SNI and ``Host`` keep the name,
so TLS verification still applies. The body is capped, the whole fetch is timed, and the
bytes must sniff as PNG, JPEG or WebP.

    refused before connecting   -> UrlNotAllowedError    (details["reason"])
    failed while fetching       -> InputFetchFailedError (details["reason"])
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from . import __version__
from .errors import InputFetchFailedError, UrlNotAllowedError
from .imaging import sniff

__all__ = [
    "DEFAULT_MAX_REDIRECTS",
    "Allow",
    "IPAddress",
    "RefusalReason",
    "Resolve",
    "blocked_range",
    "fetch_image",
    "system_resolve",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[[str, int], Awaitable[Sequence[IPAddress]]]
"""``resolve(host, port)``: every address ``host`` has; raise ``OSError`` when it has none."""
Allow = Callable[[IPAddress, int], bool]
"""``allow(address, port)``: accept this non-public address anyway (tests reach loopback this way)."""

RefusalReason = Literal["invalid_url", "not_https", "credentials_in_url", "blocked_name", "blocked_address"]
FailureReason = Literal[
    "dns_failed",
    "connect_failed",
    "tls_failed",
    "timeout",
    "http_status",
    "redirect_without_location",
    "too_many_redirects",
    "too_large",
    "not_an_image",
]

DEFAULT_MAX_REDIRECTS: Final = 3
MAX_URL_LENGTH: Final = 8192
"""Longer URL inputs are refused unparsed."""
_READ_CHUNK: Final = 64 * 1024
_SNIFF_BYTES: Final = 12
"""Enough bytes for ``imaging.sniff`` to recognise WebP (the longest signature)."""
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_NAME: Final = re.compile(
    r"(?=.{1,253}\.?$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*\.?"
)
_IPV4_PART: Final = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")

_V4, _V6 = ipaddress.IPv4Network, ipaddress.IPv6Network
_METADATA: Final[frozenset[IPAddress]] = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "169.254.170.23", "100.100.100.200", "fd00:ec2::254", "fd00:ec2::23")
)
"""Cloud instance metadata endpoints (AWS, ECS, GCP, Azure, Alibaba); named apart in messages."""
_BLOCKED: Final[tuple[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network], ...]] = (
    ("unspecified", _V4("0.0.0.0/8")),
    ("loopback", _V4("127.0.0.0/8")),
    ("private", _V4("10.0.0.0/8")),
    ("private", _V4("172.16.0.0/12")),
    ("private", _V4("192.168.0.0/16")),
    ("shared", _V4("100.64.0.0/10")),
    ("link-local", _V4("169.254.0.0/16")),
    ("multicast", _V4("224.0.0.0/4")),
    ("reserved", _V4("240.0.0.0/4")),
    ("special-purpose", _V4("192.0.0.0/24")),
    ("special-purpose", _V4("192.0.2.0/24")),
    ("special-purpose", _V4("192.88.99.0/24")),
    ("special-purpose", _V4("198.18.0.0/15")),
    ("special-purpose", _V4("198.51.100.0/24")),
    ("special-purpose", _V4("203.0.113.0/24")),
    ("unspecified", _V6("::/128")),
    ("loopback", _V6("::1/128")),
    ("private", _V6("64:ff9b:1::/48")),
    ("reserved", _V6("::/8")),
    ("special-purpose", _V6("100::/64")),
    ("special-purpose", _V6("2001:db8::/32")),
    ("special-purpose", _V6("2001:10::/28")),
    ("special-purpose", _V6("2001:20::/28")),
    ("special-purpose", _V6("3fff::/20")),
    ("special-purpose", _V6("5f00::/16")),
    ("private", _V6("fc00::/7")),
    ("link-local", _V6("fe80::/10")),
    ("site-local", _V6("fec0::/10")),
    ("multicast", _V6("ff00::/8")),
)
"""Ranges refused by name, on top of ``not is_global``: ``ipaddress``'s tables vary by Python
version (3.11.7 calls ``2002:7f00:1::`` and ``192.88.99.1`` global), so the ones that matter are here."""
_NAT64: Final = _V6("64:ff9b::/96")


def _embedded_v4(address: ipaddress.IPv6Address) -> tuple[str, list[ipaddress.IPv4Address]] | None:
    """The IPv4 addresses an IPv6 address carries, and the form that carries them."""
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", [address.ipv4_mapped]
    if address.sixtofour is not None:
        return "6to4", [address.sixtofour]
    if address.teredo is not None:
        return "Teredo", list(address.teredo)
    if address in _NAT64:
        return "NAT64", [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if int(address) >> 32 == 0 and int(address) > 1:
        return "IPv4-compatible", [ipaddress.IPv4Address(int(address))]
    return None


def _classify(address: IPAddress) -> tuple[str, str] | None:
    """``(range, note)`` when ``address`` may not be fetched from, else ``None``."""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        address = ipaddress.IPv6Address(address.compressed.split("%", 1)[0])
    if address in _METADATA:
        return "cloud metadata", ""
    if isinstance(address, ipaddress.IPv6Address) and (carried := _embedded_v4(address)) is not None:
        form, inner = carried
        for v4 in inner:
            if (found := _classify(v4)) is not None:
                return found[0], f" (it embeds {v4}, {form})"
        if address in _NAT64:  # DNS64 answers on IPv6-only networks: fine when the IPv4 inside is public
            return None
    for name, network in _BLOCKED:
        if address.version == network.version and address in network:
            return name, ""
    if not address.is_global:
        return "non-public", ""
    return None


def blocked_range(address: IPAddress) -> str | None:
    """The kind of range (``"loopback"``, ``"private"``, ``"cloud metadata"``...) that makes
    ``address`` unfetchable, looking inside IPv4-mapped/6to4/Teredo/NAT64 forms; ``None`` if public."""
    found = _classify(address)
    return None if found is None else found[0]


def _parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The WHATWG IPv4 parser: a host whose last label is a number is an address (decimal, 0x hex,
    0-prefixed octal, 1-4 parts); ``None`` for a name. Raises ``ValueError`` for a bad number."""
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if not _IPV4_PART.fullmatch(parts[-1]):
        return None
    if len(parts) > 4 or not all(_IPV4_PART.fullmatch(p) for p in parts):
        raise ValueError(f"{host!r} is not a valid IPv4 address")
    numbers = []
    for part in parts:
        if part[:2].lower() == "0x":
            numbers.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part[0] == "0":
            numbers.append(int(part, 8))
        else:
            numbers.append(int(part))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise ValueError(f"{host!r} is not a valid IPv4 address")
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


async def system_resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``getaddrinfo`` gives ``host`` (run off the loop by asyncio)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]


@dataclass(frozen=True, slots=True)
class _Target:
    """A vetted URL: where to connect (``addresses``) for the name it keeps (``host``)."""

    url: URL
    host: str
    addresses: tuple[IPAddress, ...]


def _safe(url: URL) -> str:
    """The URL without credentials, query or fragment (they may carry secrets)."""
    try:
        return str(url.with_user(None).with_query(None).with_fragment(None))
    except ValueError:
        return "<invalid URL>"


class _Vetting:
    """The checks of one fetch (its ``resolve``, ``allow`` and ``field``), and the errors they raise."""

    def __init__(self, resolve: Resolve, allow: Allow | None, field: str | None) -> None:
        self._resolve = resolve
        self._allow = allow
        self._field = field

    def details(self, reason: str, **extra: Any) -> dict[str, Any]:
        found = {"reason": reason, **{k: v for k, v in extra.items() if v is not None}}
        if self._field is not None:
            found["field"] = self._field
        return found

    def refuse(self, reason: RefusalReason, why: str, redirect: int, **extra: Any) -> UrlNotAllowedError:
        where = f"redirect {redirect} " if redirect else ""
        message = f"URL input {where}refused: {why}"
        return UrlNotAllowedError(message, details=self.details(reason, redirect=redirect or None, **extra))

    def fail(self, reason: FailureReason, why: str, url: URL, **extra: Any) -> InputFetchFailedError:
        message = f"could not fetch {_safe(url)}: {why}"
        return InputFetchFailedError(message, details=self.details(reason, url=_safe(url), **extra))

    def _check(self, address: IPAddress, port: int, host: str, literal: bool, redirect: int) -> None:
        found = _classify(address)
        if found is None or (self._allow is not None and self._allow(address, port)):
            return
        kind, note = found
        if not literal:
            why = f"{host} resolves to a {kind} address {address}{note}"
        elif host.strip("[]") != address.compressed:
            why = f"{host} is the {kind} address {address}{note}"
        else:
            why = f"{host} is a {kind} address{note}"
        raise self.refuse(
            "blocked_address",
            why + "; only public addresses can be fetched",
            redirect,
            host=host,
            address=address.compressed,
            range=kind,
        )

    async def vet(self, raw: str | URL, redirect: int = 0) -> _Target:
        """Check ``raw`` and resolve its host; raises ``UrlNotAllowedError`` or, when the name
        does not resolve, ``InputFetchFailedError``. Nothing here opens a connection."""
        if isinstance(raw, str):
            if len(raw) > MAX_URL_LENGTH:
                raise self.refuse("invalid_url", f"the URL is longer than {MAX_URL_LENGTH} characters", redirect)
            try:
                url = URL(raw.strip())
            except (ValueError, TypeError) as exc:
                raise self.refuse("invalid_url", f"not a valid URL ({exc})", redirect) from exc
        else:
            url = raw
        if url.scheme != "https":
            scheme = url.scheme or "none"
            raise self.refuse("not_https", f"only https:// URLs are fetched, not {scheme}:", redirect, scheme=scheme)
        if url.raw_user is not None or url.raw_password is not None:
            raise self.refuse("credentials_in_url", "the URL carries credentials (user:password@)", redirect)
        host, port = url.raw_host, url.port
        if not host or port is None or not 0 < port < 65536:
            raise self.refuse("invalid_url", f"{_safe(url)} has no host or a bad port", redirect)
        url = url.with_fragment(None)
        if ":" in host:  # an IPv6 literal, maybe with a zone id (%25eth0)
            address_text, _, zone = host.partition("%")
            try:
                v6 = ipaddress.IPv6Address(address_text)
            except ValueError as exc:
                raise self.refuse("invalid_url", f"[{host}] is not a valid IPv6 address", redirect) from exc
            self._check(v6, port, f"[{host}]", True, redirect)
            if zone:
                raise self.refuse("invalid_url", f"[{host}] has a zone id", redirect, host=host)
            return _Target(url.with_host(v6.compressed), v6.compressed, (v6,))
        try:
            v4 = _parse_ipv4(host)
        except ValueError as exc:
            raise self.refuse("invalid_url", f"{host} is not a valid IPv4 address", redirect, host=host) from exc
        if v4 is not None:
            self._check(v4, port, host, True, redirect)
            return _Target(url.with_host(str(v4)), str(v4), (v4,))
        if not _NAME.fullmatch(host):
            raise self.refuse("invalid_url", f"{host!r} is not a valid host name", redirect, host=host)
        name = host.rstrip(".")
        if name == "localhost" or name.endswith(".localhost"):
            raise self.refuse("blocked_name", f"{host} always means this machine", redirect, host=host)
        try:
            addresses = tuple(await self._resolve(name, port))
        except OSError as exc:
            raise self.fail("dns_failed", f"{name} does not resolve ({exc})", url, host=name) from exc
        if not addresses:
            raise self.fail("dns_failed", f"{name} does not resolve", url, host=name)
        for address in addresses:
            self._check(address, port, name, False, redirect)
        return _Target(url, name, addresses)


class _PinnedResolver(AbstractResolver):
    """Answers only for the host just vetted, with the addresses vetted; aiohttp never asks DNS."""

    def __init__(self) -> None:
        self.target: _Target | None = None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        target = self.target
        if target is None or host.rstrip(".").lower() != target.host:
            raise OSError(f"{host} was not vetted")
        flags = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
        return [
            {
                "hostname": host,
                "host": a.compressed,
                "port": port,
                "family": socket.AF_INET if a.version == 4 else socket.AF_INET6,
                "proto": 0,
                "flags": flags,
            }
            for a in target.addresses
        ]

    async def close(self) -> None:
        return None


_HEADERS: Final[Mapping[str, str]] = {
    "User-Agent": f"mcp-image-server/{__version__}",
    "Accept": "image/png, image/jpeg, image/webp",
    "Accept-Encoding": "identity",
}


async def _read_capped(vetting: _Vetting, response: aiohttp.ClientResponse, url: URL, max_bytes: int) -> bytes:
    """The body, reading at most ``max_bytes + 1`` bytes and stopping at the first bytes that are no image."""
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        response.close()
        raise vetting.fail(
            "too_large", f"it is {declared} bytes, over the {max_bytes}-byte limit", url, max_bytes=max_bytes
        )
    body = bytearray()
    while chunk := await response.content.read(min(_READ_CHUNK, max_bytes + 1 - len(body))):
        body += chunk
        if len(body) > max_bytes:
            response.close()
            raise vetting.fail("too_large", f"it is over the {max_bytes}-byte limit", url, max_bytes=max_bytes)
        if len(body) >= _SNIFF_BYTES and len(body) - len(chunk) < _SNIFF_BYTES and sniff(bytes(body)) is None:
            break
    if sniff(bytes(body)) is None:
        response.close()
        kind = response.headers.get("Content-Type", "unknown type")
        raise vetting.fail("not_an_image", f"it is not a PNG, JPEG or WebP image ({kind})", url)
    return bytes(body)


class _Fetch:
    """One fetch: the hops it follows (``current`` is the URL being fetched, for error messages)."""

    def __init__(self, vetting: _Vetting, max_bytes: int, max_redirects: int, ssl_context: ssl.SSLContext | None):
        self.vetting = vetting
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.ssl_context = ssl_context
        self.current = URL()

    async def run(self, url: str) -> bytes:
        vetting = self.vetting
        target = await vetting.vet(url)
        pinned = _PinnedResolver()
        connector = aiohttp.TCPConnector(
            resolver=pinned,
            use_dns_cache=False,
            force_close=True,
            ssl=self.ssl_context if self.ssl_context is not None else True,
        )
        async with aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            auto_decompress=False,
            headers=_HEADERS,
        ) as session:
            redirects = 0
            while True:
                pinned.target, self.current = target, target.url
                async with session.get(target.url, allow_redirects=False) as response:
                    if response.status not in _REDIRECTS:
                        if response.status >= 300:
                            status = f"{response.status} {response.reason or ''}".rstrip()
                            raise vetting.fail(
                                "http_status", f"the server answered {status}", target.url, status=response.status
                            )
                        return await _read_capped(vetting, response, target.url, self.max_bytes)
                    location = response.headers.get("Location")
                    if not location:
                        raise vetting.fail(
                            "redirect_without_location", f"a {response.status} without a Location", target.url
                        )
                    if redirects >= self.max_redirects:
                        raise vetting.fail(
                            "too_many_redirects",
                            f"more than {self.max_redirects} redirects",
                            target.url,
                            max_redirects=self.max_redirects,
                        )
                    try:
                        next_url = target.url.join(URL(location))
                    except ValueError:
                        raise vetting.refuse("invalid_url", "a malformed Location header", redirects + 1) from None
                redirects += 1
                target = await vetting.vet(next_url, redirects)


async def fetch_image(
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    max_redirects: int = DEFAULT_MAX_REDIRECTS,
    field: str | None = None,
    resolve: Resolve | None = None,
    allow: Allow | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> bytes:
    """The bytes of the PNG, JPEG or WebP image at the ``https://`` ``url``, fetched SSRF-safely.

    Args:
        url: the caller's URL input.
        max_bytes: the largest body accepted; reading stops past it.
        timeout: seconds for the whole fetch: resolving, every redirect, the body.
        max_redirects: redirects followed, each vetted like ``url``.
        field: the input's name (``"images[0]"``, ``"mask"``), copied into error details.
        resolve: ``host, port -> addresses``; ``system_resolve`` by default. For tests.
        allow: accept these non-public ``(address, port)`` pairs. For tests, never a setting.
        ssl_context: the client TLS context (a test CA); the system's by default.

    Raises:
        UrlNotAllowedError: the URL (or a redirect) is refused before any connection;
            ``details["reason"]`` is a ``RefusalReason``.
        InputFetchFailedError: the name did not resolve, the connection or TLS failed, the
            fetch timed out, the status was >= 300 and no redirect, the body was over
            ``max_bytes`` or not an image; ``details["reason"]`` says which.
        ValueError: a limit is not positive.
    """
    if max_bytes <= 0 or timeout <= 0 or max_redirects < 0:
        raise ValueError(
            f"need max_bytes, timeout > 0, max_redirects >= 0; got {max_bytes}, {timeout}, {max_redirects}"
        )
    vetting = _Vetting(resolve or system_resolve, allow, field)
    fetch = _Fetch(vetting, max_bytes, max_redirects, ssl_context)
    try:
        async with asyncio.timeout(timeout):
            return await fetch.run(url)
    except TimeoutError as exc:
        raise vetting.fail(
            "timeout", f"no complete answer within {timeout:g} s", fetch.current, timeout=timeout
        ) from exc
    except aiohttp.ClientConnectorCertificateError as exc:
        why = f"TLS verification failed ({exc.certificate_error})"
        raise vetting.fail("tls_failed", why, fetch.current) from exc
    except aiohttp.ClientSSLError as exc:
        raise vetting.fail("tls_failed", "the TLS handshake failed", fetch.current) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise vetting.fail("connect_failed", f"{type(exc).__name__}: {exc}", fetch.current) from exc

"""Two middlewares: errors as JSON, and admission (Host/Origin + CORS, bearer auth, body size).

Configuration arrives by closure as a ``policy()`` callable that returns the policy of the
current settings snapshot, so a ``reload_config`` that rotates tokens or origins applies to
the next request without rebuilding the app.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware
from mcp_types import INTERNAL_ERROR, INVALID_REQUEST, JSONRPCRequest

from ..config import Settings
from ..errors import InvalidTokenError, IssuerUnavailableError, StateUnavailableError
from ..oauth import grants, looks_like_jwt
from ..tenants import ANONYMOUS, Caller, Directory
from .protected import OAUTH_KEY, REALM, OAuthGate, challenge, insufficient_scope, needs_admin, oauth_owner
from .wire import CORS_ORIGIN_KEY, JSON_CONTENT_TYPE, MCP_PATHS, add_cors_headers, jsonrpc_error

__all__ = [
    "CALLER_KEY",
    "CORS_ALLOW_HEADERS",
    "METRICS_PATH",
    "OWNER_KEY",
    "AccessPolicy",
    "PolicySource",
    "error_middleware",
    "is_loopback_host",
    "make_access_middleware",
    "step_up",
]

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

OWNER_KEY: Final = web.RequestKey("mcp_owner", bytes)
"""Digest of the credential that authenticated the request (``b""`` without auth); sessions bind to it."""
CALLER_KEY: Final = web.RequestKey("mcp_caller", Caller)
"""Who the request runs as (tenants.py): its name, role and limits."""


WWW_AUTHENTICATE: Final = f'Bearer realm="{REALM}", error="invalid_token"'
CORS_ALLOW_HEADERS: Final = (
    "Authorization",
    "Content-Type",
    "Accept",
    "Mcp-Session-Id",
    "MCP-Protocol-Version",
    "Mcp-Method",
    "Mcp-Name",
    "Last-Event-ID",
    "X-API-Key",
)
_CORS_METHODS: Final = "GET, POST, DELETE, OPTIONS"
METRICS_PATH: Final = "/metrics"
"""Authenticated like the MCP endpoint (admins only, checked by its handler) unless MCP_METRICS_PUBLIC."""
_LOOPBACK_NAMES: Final = frozenset({"localhost", "127.0.0.1", "::1"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def is_loopback_host(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _origin_key(origin: str) -> tuple[str, str, int | None] | None:
    """``(scheme, host, port)`` of an origin with the default port made explicit; ``None`` if malformed."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") or parts.query:
        return None
    return scheme, parts.hostname.lower(), port if port is not None else _DEFAULT_PORTS[scheme]


def _digest(token: str) -> bytes:
    # Header values arrive with undecodable bytes as surrogates (aiohttp decodes UTF-8 with
    # surrogateescape); encoding them back the same way hashes the bytes that were sent.
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """Who may call: token digests, allowed origins, and (on a loopback bind) allowed Host names."""

    directory: Directory
    auth_required: bool
    origins: frozenset[tuple[str, str, int | None]]
    """Allowed origins; a ``None`` port allows any port (the loopback defaults, ``http://host:*``)."""
    hosts: frozenset[str] | None
    """Allowed Host names (DNS-rebinding guard); ``None`` skips the check (non-loopback binds)."""
    metrics_public: bool = False
    """GET /metrics without credentials (MCP_METRICS_PUBLIC)."""
    oauth: OAuthGate | None = None
    """Access tokens from MCP_OAUTH_ISSUER, beside the static tokens."""

    @classmethod
    def from_settings(
        cls, settings: Settings, bind_host: str, directory: Directory, oauth: OAuthGate | None = None
    ) -> AccessPolicy:
        digests = tuple(directory.by_digest)
        # No token on a public bind only runs with MCP_ALLOW_UNAUTHENTICATED; if a reload
        # removed every token there, fail closed rather than open.
        required = (bool(digests) or oauth is not None
                    or not (is_loopback_host(bind_host) or settings.allow_unauthenticated))
        origins: set[tuple[str, str, int | None]] = {
            (scheme, name, None) for scheme in _DEFAULT_PORTS for name in _LOOPBACK_NAMES
        }
        extra = list(settings.allowed_origins)
        if settings.public_base_url:
            extra.append(settings.public_base_url)
        for raw in extra:
            wildcard = raw.strip().endswith(":*")
            key = _origin_key(raw.strip()[:-2] if wildcard else raw)
            if key is None:
                logger.warning("ignoring malformed origin in MCP_ALLOWED_ORIGINS/MCP_PUBLIC_BASE_URL: %r", raw)
                continue
            origins.add((key[0], key[1], None) if wildcard else key)
        hosts = None
        if is_loopback_host(bind_host):
            hosts = frozenset(_LOOPBACK_NAMES | {host for _, host, _ in origins})
        return cls(directory, required, frozenset(origins), hosts, settings.metrics_public, oauth)

    def origin_allowed(self, origin: str) -> bool:
        key = _origin_key(origin)
        if key is None:
            return False
        return key in self.origins or (key[0], key[1], None) in self.origins

    def host_allowed(self, host_header: str | None) -> bool:
        if self.hosts is None or not host_header:
            return True
        host = host_header.strip().lower()
        name = host[1 : host.find("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
        return name in self.hosts

    def authenticate(self, presented: str | None) -> tuple[bytes, Caller] | None:
        """The digest of the matching token and its caller, else ``None`` (constant time per token)."""
        if presented is None:
            return None
        digest = _digest(presented)
        found: tuple[bytes, Caller] | None = None
        for candidate, caller in self.directory.by_digest.items():
            if hmac.compare_digest(digest, candidate):
                found = (candidate, caller)
        return found


class PolicySource:
    """The ``AccessPolicy`` of the current settings snapshot, rebuilt only when the snapshot changes."""

    def __init__(self, settings: Callable[[], Settings], bind_host: str, directory: Callable[[], Directory],
                 oauth: OAuthGate | None = None) -> None:
        self._settings = settings
        self._bind_host = bind_host
        self._directory = directory
        self._oauth = oauth
        self._seen: Settings | None = None
        self._policy: AccessPolicy | None = None

    def __call__(self) -> AccessPolicy:
        current = self._settings()
        if current is not self._seen or self._policy is None:
            self._policy = AccessPolicy.from_settings(current, self._bind_host, self._directory(), self._oauth)
            self._seen = current
        return self._policy


def _is_mcp(request: web.BaseRequest) -> bool:
    return request.path in MCP_PATHS


def _error_body(
    request: web.BaseRequest, status: int, message: str, headers: Iterable[tuple[str, str]] = ()
) -> web.Response:
    """JSON-RPC shaped on the MCP endpoint (clients parse it), a plain JSON object elsewhere."""
    extra = {k: v for k, v in headers if k.lower() not in ("content-type", "content-length")}
    if _is_mcp(request):
        code = INTERNAL_ERROR if status >= 500 else INVALID_REQUEST
        return jsonrpc_error(status, code, message, headers=extra)
    body = json.dumps({"error": message.lower().replace(" ", "_"), "status": status})
    return web.Response(status=status, body=body.encode(), content_type=JSON_CONTENT_TYPE, headers=extra)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as JSON; an unexpected exception is logged and becomes a bare 500.

    Nothing a client sends should get here as a 500 (the tests feed it hostile input). Being
    outermost, it also puts the CORS headers on every response not yet sent (streams sent from
    a handler got them from ``open_sse``).
    """
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == JSON_CONTENT_TYPE:
            add_cors_headers(request, exc)
            raise
        response = _error_body(request, exc.status, exc.reason, exc.headers.items())
    except ConnectionResetError:
        # The client left mid-response; aiohttp drops the rest quietly. 499: "client closed request".
        logger.debug("client went away during %s %s", request.method, request.path)
        return web.Response(status=499)
    except Exception:
        logger.exception("unhandled error serving %s %s", request.method, request.path)
        response = _error_body(request, 500, "Internal Server Error")
    if "Origin" in request.headers and not response.prepared:  # only browsers send Origin
        add_cors_headers(request, response)
    return response


Admit = Callable[[Caller], Awaitable[float | None]]
"""Counts one request against the caller's ``requests_per_minute``: seconds to wait when refused."""


def make_access_middleware(
    policy: Callable[[], AccessPolicy], body_limit: Callable[[], int], admit: Admit | None = None
) -> Middleware:
    """Admission, in order: Host (421, loopback binds) and Origin (403) checks, CORS preflight
    answers, credentials on the MCP endpoint (401), the caller's request rate (429), and the
    declared body size (413).

    One layer rather than one per check: aiohttp wraps every middleware around every request.
    """

    @web.middleware
    async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        current = policy()
        if not current.host_allowed(request.headers.get("Host")):
            return _error_body(request, 421, "Invalid Host header")
        origin = request.headers.get("Origin")
        if origin is not None:
            if not current.origin_allowed(origin):
                return _error_body(request, 403, "Origin not allowed")
            request[CORS_ORIGIN_KEY] = origin
        if request.method == "OPTIONS":
            return _preflight(request, origin)
        if _is_mcp(request) or (request.path == METRICS_PATH and not current.metrics_public):
            if (refused := await _authenticate(request, current)) is not None:
                return refused
            if admit is not None and (refused := await _rate(request, admit)) is not None:
                return refused
        declared = request.content_length
        if declared is not None and declared > body_limit():
            return _error_body(request, 413, "Request body too large")
        return await handler(request)

    return access_middleware


def _preflight(request: web.Request, origin: str | None) -> web.Response:
    headers = {"Allow": _CORS_METHODS}
    if origin is not None and request.headers.get("Access-Control-Request-Method"):
        wanted = request.headers.get("Access-Control-Request-Headers", "")
        allowed = {h.lower() for h in CORS_ALLOW_HEADERS}
        # Echo Mcp-Param-* names (tool-specific) along with our fixed list.
        params = [h.strip() for h in wanted.split(",") if h.strip().lower().startswith("mcp-param-")]
        headers.update(
            {
                "Access-Control-Allow-Methods": _CORS_METHODS,
                "Access-Control-Allow-Headers": ", ".join(
                    [*CORS_ALLOW_HEADERS, *(p for p in params if p.lower() not in allowed)]
                ),
                "Access-Control-Max-Age": "600",
            }
        )
    return web.Response(status=204, headers=headers)


_CREDENTIAL_HEADERS: Final = ("Authorization", "X-API-Key")


def _is_text(request: web.BaseRequest, names: Iterable[str]) -> bool:
    try:
        for name in names:
            for value in request.headers.getall(name, []):
                value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _bearer(header: str) -> str | None:
    scheme, _, value = header.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _credential(request: web.BaseRequest) -> str | None:
    """The token presented as ``Authorization: Bearer`` (or, without that header, ``X-API-Key``).

    Repeated headers must agree: readers that take the first copy and readers that take the
    last (a proxy, the tool layer's job owner) would otherwise see different callers. Copies
    that disagree, or an Authorization that is not a bearer token, present no credential.
    """
    auths = request.headers.getall("Authorization", [])
    if auths:
        tokens = {_bearer(value) for value in auths}
        return tokens.pop() if len(tokens) == 1 else None
    keys = set(request.headers.getall("X-API-Key", []))
    return keys.pop() if len(keys) == 1 else None


async def _authenticate(request: web.Request, current: AccessPolicy) -> web.Response | None:
    """Bearer (or X-API-Key) on the MCP endpoint: ``None`` admits (recording the owner), else the refusal.

    A static token is looked up first; anything shaped like a JWT then goes to the OAuth verifier.
    """
    if not _is_text(request, _CREDENTIAL_HEADERS):
        # Undecodable bytes (kept as surrogates by aiohttp) would break whatever reads the
        # header as text later, such as the job-owner fingerprint on a server without tokens.
        return _error_body(request, 400, "Bad Request: credentials must be UTF-8 text")
    if not current.auth_required:
        request[OWNER_KEY] = b""
        request[CALLER_KEY] = ANONYMOUS
        return None
    presented = _credential(request)
    found = current.authenticate(presented)
    if found is not None:
        request[OWNER_KEY], request[CALLER_KEY] = found
        return None
    gate = current.oauth
    if gate is None or presented is None or not looks_like_jwt(presented):
        description = "Missing or invalid token: send Authorization: Bearer <token> (or X-API-Key)"
        return _unauthorized(request, gate, description, error=gate is None or presented is not None)
    try:
        verified = await gate.verifier.verify(presented)
    except InvalidTokenError as exc:
        return _unauthorized(request, gate, exc.message)
    except IssuerUnavailableError:
        return _error_body(request, 503, "Service Unavailable: the OAuth issuer does not answer, so access "
                           "tokens cannot be verified; retry later", [("Retry-After", "5")])
    admin = grants(verified.scopes, gate.admin_scope)
    if not (admin or grants(verified.scopes, gate.scope)):
        logger.info("403 for %s %s: the access token of %r lacks the scope %r", request.method, request.path,
                    verified.name, gate.scope)
        return insufficient_scope(gate, request, gate.scope, "this server")
    if request.path == METRICS_PATH and not admin:
        return insufficient_scope(gate, request, gate.step_up_scope, "GET /metrics")
    caller = current.directory.oauth_caller(verified.name, admin)
    request[OWNER_KEY], request[CALLER_KEY] = oauth_owner(caller.owner), caller
    return None


def step_up(request: web.Request, message: JSONRPCRequest) -> web.Response | None:
    """403 ``insufficient_scope`` for an admin call by an OAuth caller without the admin scope.

    Answered on the wire rather than as a tool error so the client can ask its authorization
    server for the scope and retry (MCP authorization, "Scope challenge handling").
    """
    caller = request.get(CALLER_KEY)
    if caller is None or not caller.oauth or caller.is_admin or not needs_admin(message):
        return None
    gate = request.app[OAUTH_KEY]
    name = message.params.get("name") if isinstance(message.params, dict) else None
    return insufficient_scope(gate, request, gate.step_up_scope, f"tools/call {name}")


def _unauthorized(request: web.Request, gate: OAuthGate | None, description: str, *, error: bool = True) -> web.Response:
    """401 with RFC 6750 details; with OAuth, where the metadata is (RFC 9728) and which scope to ask for."""
    logger.info("401 for %s %s from %s: %s", request.method, request.path, request.remote, description)
    body = {"error": "invalid_token", "error_description": description}
    header = WWW_AUTHENTICATE if gate is None else challenge(
        gate, request, error="invalid_token" if error else None, description=description if error else None
    )
    return web.Response(status=401, body=json.dumps(body).encode(), content_type=JSON_CONTENT_TYPE,
                        headers={"WWW-Authenticate": header})


async def _rate(request: web.Request, admit: Admit) -> web.Response | None:
    """429 with Retry-After past the caller's ``requests_per_minute``; 503 when the counter is unreachable."""
    caller = request[CALLER_KEY]
    if caller.limits.requests_per_minute is None:
        return None
    try:
        wait = await admit(caller)
    except StateUnavailableError as exc:
        retry = str(exc.details.get("retry_after", 5))
        return _error_body(request, 503, "Service Unavailable: the shared state does not answer",
                           [("Retry-After", retry)])
    if wait is None:
        return None
    logger.info("429 for %s: over %d requests a minute", caller.name, caller.limits.requests_per_minute)
    return _error_body(
        request, 429,
        f"Too Many Requests: token {caller.name!r} is limited to {caller.limits.requests_per_minute} requests a "
        f"minute (requests_per_minute); retry after {int(wait)} s",
        [("Retry-After", str(int(wait)))],
    )

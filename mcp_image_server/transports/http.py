"""Streamable HTTP on aiohttp: the app factory, its routes, and ``run_http``.

``/mcp`` (and ``/mcp/v1/messages``) serve both protocol eras on one endpoint, routed like
the SDK's own session manager routes them: an ``MCP-Protocol-Version`` header that is absent
or a handshake-era version goes to the session transport (``legacy.py``), any other value to
the per-request entry (``modern.py``). With a shared state, a handshake-era request for a
session another replica holds is forwarded there (``affinity.py``). ``/health`` and
``/images/{file}`` are public.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from mcp.server.lowlevel.server import Server
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import ListenHandler
from mcp_types import INVALID_REQUEST
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from ..config import Settings
from ..errors import ConfigError, ForbiddenError, ImageNotFoundError, StorageUnavailableError
from ..oauth import OAuthConfig, Verifier
from ..service import ImageService
from ..store import FILE_NAME_RE, ImageStore
from . import legacy, modern
from .affinity import SessionDirectory, route_foreign
from .forward import Forwarder
from .metrics import METRICS_KEY, Metrics, metrics_handler
from .middleware import (
    METRICS_PATH,
    OWNER_KEY,
    PolicySource,
    error_middleware,
    is_loopback_host,
    make_access_middleware,
)
from .protected import METADATA_PATH, OAUTH_KEY, RESOURCE_PATH, OAuthGate, metadata_handler
from .sessions import DEFAULT_LINGER, SessionLimits, SessionManager
from .wire import (
    KEEPALIVE_SECONDS,
    MCP_PATHS,
    PROTOCOL_VERSION_HEADER,
    SESSION_HEADER,
    WRITE_TIMEOUT_KEY,
    WRITE_TIMEOUT_SECONDS,
    LongStreams,
    jsonrpc_error,
)

__all__ = [
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "SERVICE_KEY",
    "SESSIONS_KEY",
    "check_bind",
    "create_http_app",
    "run_http",
]

logger = logging.getLogger(__name__)

DEFAULT_SHUTDOWN_TIMEOUT: Final = 30.0
"""Seconds in-flight calls get to finish at shutdown before they are cancelled."""

SERVICE_KEY: Final = web.AppKey("service", ImageService)
SESSIONS_KEY: Final = web.AppKey("sessions", SessionManager)
STREAMS_KEY: Final = web.AppKey("long_streams", LongStreams)
LOWLEVEL_KEY: Final = web.AppKey("mcp_lowlevel_server", Server)
STARTED_KEY: Final = web.AppKey("started_at", float)
KEEPALIVE_KEY: Final = web.AppKey("sse_keepalive", float)
PARAM_CHECK_KEY: Final = web.AppKey("mcp_param_check", modern.ParamHeaderCheck)
SILENCE_KEY: Final = web.AppKey("mcp_silence_watch", modern.SilenceWatch)
DIRECTORY_KEY: Final = web.AppKey("mcp_session_directory", SessionDirectory)
FORWARDER_KEY: Final = web.AppKey("mcp_forwarder", Forwarder)

_IMAGE_TYPES: Final = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}
_IMAGE_CACHE: Final = "public, max-age=86400, immutable"
"""Names embed a random id and files are never rewritten, so a cached copy never goes stale."""


def _lowlevel(mcp_server: MCPServer[Any] | Server[Any]) -> Server[Any]:
    # The SDK's own Client and in-memory transport reach the low-level server the same way.
    if isinstance(mcp_server, MCPServer):
        return mcp_server._lowlevel_server  # pyright: ignore[reportPrivateUsage]
    return mcp_server


def create_http_app(
    service: ImageService,
    mcp_server: MCPServer[Any] | Server[Any],
    settings: Settings,
    *,
    clock: Callable[[], float] = time.monotonic,
    linger: float = DEFAULT_LINGER,
    keepalive: float = KEEPALIVE_SECONDS,
    write_timeout: float = WRITE_TIMEOUT_SECONDS,
) -> web.Application:
    """The aiohttp app serving ``mcp_server``.

    ``settings`` gives the restart-only values (the bind host); reloadable ones (tokens,
    origins, limits) are read from ``service.settings`` on each request. ``clock`` drives
    session idle expiry (tests inject one); ``linger`` is how long an unused session keeps
    its SDK loop; ``keepalive`` is the silence after which an SSE stream gets a ping comment;
    ``write_timeout`` is how long a stream write may wait on a client that is not reading.
    Run it with ``AppRunner(app, handler_cancellation=True)`` (as ``run_http`` does): in the
    2026-07-28 era closing the response is how a client cancels a call.
    """
    current: Callable[[], Settings] = lambda: service.settings
    gate = _oauth_gate(service, settings)
    policy = PolicySource(current, settings.host, lambda: service.directory, gate)
    metrics = Metrics(service, lambda: len(app[SESSIONS_KEY]))
    app = web.Application(
        middlewares=[
            metrics.middleware,
            error_middleware,
            make_access_middleware(policy, lambda: current().max_body_bytes, service.quotas.admit_request),
        ],
        client_max_size=settings.max_body_bytes,
    )
    server = _lowlevel(mcp_server)
    app[SERVICE_KEY] = service
    app[LOWLEVEL_KEY] = server
    app[METRICS_KEY] = metrics
    service.observers.add(metrics)
    app.on_cleanup.append(lambda _app: _forget(service, metrics))
    directory = _directory(service, settings)
    app[SESSIONS_KEY] = SessionManager(
        server,
        limits=lambda: SessionLimits(current().session_idle_timeout, current().max_sessions),
        clock=clock,
        linger=linger,
        directory=directory,
    )
    if directory is not None:
        app[DIRECTORY_KEY] = directory
        app[FORWARDER_KEY] = Forwarder(directory.replica_id, keepalive)
        app.on_cleanup.append(_close_forwarder)
    app[STREAMS_KEY] = LongStreams()
    app[STARTED_KEY] = time.monotonic()
    app[KEEPALIVE_KEY] = keepalive
    app[WRITE_TIMEOUT_KEY] = write_timeout
    app[PARAM_CHECK_KEY] = modern.ParamHeaderCheck()
    app[SILENCE_KEY] = modern.SilenceWatch(keepalive)
    app.cleanup_ctx.append(_mcp_lifespan)
    if gate is not None:
        app[OAUTH_KEY] = gate
        app.cleanup_ctx.append(_verifier_lifespan)
    app.on_shutdown.append(_close_long_streams)

    for path in MCP_PATHS:
        app.router.add_route("*", path, _mcp_endpoint)
    app.router.add_get("/health", _health)
    app.router.add_get(METRICS_PATH, metrics_handler)
    app.router.add_get("/images/{file}", _image)
    app.router.add_get(METADATA_PATH, metadata_handler)
    app.router.add_get(METADATA_PATH + "/{path:.*}", metadata_handler)
    app.router.add_route("*", "/.well-known/{name:oauth-.*}", _not_an_oauth_server)
    if _serves_demo(settings):
        from ..demo import add_demo_routes

        add_demo_routes(app)
    app.router.add_get("/", _index)
    return app


def _serves_demo(settings: Settings) -> bool:
    return settings.serve_demo == "true" or (settings.serve_demo == "auto" and is_loopback_host(settings.host))


async def _index(request: web.Request) -> web.Response:
    """``GET /``: the demo on a loopback bind (a person with a browser), else where things are."""
    settings = request.app[SERVICE_KEY].settings
    if _serves_demo(settings) and is_loopback_host(settings.host):
        raise web.HTTPFound("/demo/")
    from .. import __version__

    body = {"name": "mcp-image-server", "version": __version__, "mcp": "/mcp", "health": "/health"}
    if _serves_demo(settings):
        body["demo"] = "/demo/"
    if request.app.get(OAUTH_KEY) is not None:
        body["oauth_protected_resource"] = METADATA_PATH + RESOURCE_PATH
    return web.json_response(body)


async def _forget(service: ImageService, metrics: Metrics) -> None:
    service.observers.remove(metrics)


def _directory(service: ImageService, settings: Settings) -> SessionDirectory | None:
    """With a shared state, where this replica records its sessions (and finds its peers')."""
    shared = service.jobs.shared
    if shared is None:
        if settings.replica_url:
            logger.warning("MCP_REPLICA_URL is ignored: it needs MCP_STATE_URL=redis://... (no peers to forward from)")
        return None
    if not settings.replica_url:
        logger.info(
            "MCP_REPLICA_URL is unset: other replicas cannot forward requests for this replica's sessions "
            "(keep sessions sticky at the load balancer, or set it)"
        )
    return SessionDirectory(shared, settings.replica_url)


async def _close_forwarder(app: web.Application) -> None:
    await app[FORWARDER_KEY].aclose()


async def _mcp_endpoint(request: web.Request) -> web.StreamResponse:
    app = request.app
    manager = app[SESSIONS_KEY]
    limit = app[SERVICE_KEY].settings.max_body_bytes
    version = request.headers.get(PROTOCOL_VERSION_HEADER)
    if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
        if version not in MODERN_PROTOCOL_VERSIONS and request.method != "POST":
            return jsonrpc_error(400, INVALID_REQUEST, f"Unsupported protocol version: {version[:40]!r}")
        # The per-request entry answers an unknown version on a POST with -32022 and the supported list.
        return await modern.handle_modern(
            request, app[LOWLEVEL_KEY], manager.state, limit, app[SILENCE_KEY], app[PARAM_CHECK_KEY]
        )
    for name in (SESSION_HEADER, PROTOCOL_VERSION_HEADER):
        if len(request.headers.getall(name, ())) > 1:
            # As the per-request entry does for its routing headers: readers of the first and of
            # the last copy (a proxy routing by session, say) would act on different values.
            return jsonrpc_error(400, INVALID_REQUEST, f"Bad Request: {name} header appears more than once")
    owner = request[OWNER_KEY]
    session_id = request.headers.get(SESSION_HEADER)
    directory = app.get(DIRECTORY_KEY)
    if (
        directory is not None
        and session_id is not None
        and session_id not in manager
        and request.method in ("POST", "GET", "DELETE")
    ):
        return await route_foreign(request, session_id, directory, app[FORWARDER_KEY], limit, app[STREAMS_KEY])
    if request.method == "POST":
        shared = app[SERVICE_KEY].jobs.shared
        state_ok = shared is None or shared.healthy()
        return await legacy.handle_post(request, manager, owner, limit, app[KEEPALIVE_KEY], state_ok)
    if request.method == "GET":
        return await legacy.handle_get(request, manager, owner, app[STREAMS_KEY], app[KEEPALIVE_KEY])
    if request.method == "DELETE":
        return await legacy.handle_delete(request, manager, owner)
    return legacy.method_not_allowed()


async def _health(request: web.Request) -> web.Response:
    """Liveness and a summary for operators; never needs a token and never shows a secret."""
    app = request.app
    info = dict(app[SERVICE_KEY].health_info())
    info.update(
        transport="http",
        endpoints=list(MCP_PATHS),
        sessions=len(app[SESSIONS_KEY]),
        uptime_s=round(time.monotonic() - app[STARTED_KEY], 1),
    )
    if (gate := app.get(OAUTH_KEY)) is not None:
        info["oauth"] = gate.verifier.status
    return web.json_response(info, headers={"Cache-Control": "no-store"})


class _PinnedFileResponse(web.FileResponse):
    """A file response that keeps the store's sweep off its image until sent (``prepare`` sends it all)."""

    def __init__(self, path: Path, store: ImageStore, name: str, headers: dict[str, str]) -> None:
        super().__init__(path, headers=headers)
        self._store, self._name = store, name

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        try:
            with self._store.reading(self._name):
                return await super().prepare(request)
        except ImageNotFoundError:  # being deleted: as FileResponse answers a file that vanished
            self.set_status(404)
            return await web.StreamResponse.prepare(self, request)


def _forbidden(error: ForbiddenError) -> web.Response:
    """403 in the shape of the other JSON errors off the MCP endpoint, plus the reason in words."""
    body = {"error": error.code, "status": 403, "message": error.message}
    return web.json_response(body, status=403, headers={"Cache-Control": "no-store"})


async def _image(request: web.Request) -> web.StreamResponse:
    """A generated image, public so ``<img>`` tags work; only our own files, else a bare 404.
    With ``MCP_IMAGE_URL_MODE=signed`` only with a good ``exp``/``sig``, else 403.

    A folder store sends the file (sendfile); an S3 store streams the object with its ETag.
    """
    name = request.match_info["file"]
    # Our names need no escapes; an escape in the path (not the query, where a signature lives) is an attack.
    if "%" in request.raw_path.partition("?")[0] or "\\" in name or not FILE_NAME_RE.match(name):
        raise web.HTTPNotFound()
    service = request.app[SERVICE_KEY]
    headers = {
        "Content-Type": _IMAGE_TYPES[name.rsplit(".", 1)[1]],
        "Cache-Control": _IMAGE_CACHE,
        "X-Content-Type-Options": "nosniff",
    }
    if service.settings.image_url_mode == "signed":
        exp, sig = request.query.getall("exp", []), request.query.getall("sig", [])
        try:  # a repeated parameter counts as missing: readers of the first and the last copy would differ
            left = service.signer.verify(name, exp[0] if len(exp) == 1 else None, sig[0] if len(sig) == 1 else None)
        except ForbiddenError as exc:
            return _forbidden(exc)
        # No cache (shared or not) may serve it after the URL expires.
        headers["Cache-Control"] = f"private, max-age={max(0, int(left))}"
    try:
        with service.store.reading(name):  # an S3 stream is sent inside; a file is pinned by its response
            return await _send_image(request, service, name, headers)
    except ImageNotFoundError:
        raise web.HTTPNotFound() from None


async def _send_image(
    request: web.Request, service: ImageService, name: str, headers: dict[str, str]
) -> web.StreamResponse:
    store = service.store
    blobs = store.blobs
    path = store.resolve_file(name)
    if path is not None:
        return _PinnedFileResponse(path, store, name, headers)
    if blobs.kind == "file":
        raise web.HTTPNotFound()
    try:
        info = await asyncio.to_thread(blobs.stat, name)
    except StorageUnavailableError:
        raise web.HTTPServiceUnavailable(headers={"Retry-After": "5"}) from None
    if info is None:
        raise web.HTTPNotFound()
    if service.settings.image_url_mode == "presigned":
        try:
            location = await blobs.presign(name, service.settings.image_url_ttl)
        except StorageUnavailableError:
            raise web.HTTPServiceUnavailable(headers={"Retry-After": "5"}) from None
        if location is not None:
            raise web.HTTPTemporaryRedirect(location, headers={"Cache-Control": "no-store"})
    headers.update(ETag=info.etag, **{"Last-Modified": formatdate(info.last_modified, usegmt=True)})
    if info.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers={k: v for k, v in headers.items() if k != "Content-Type"})
    response = web.StreamResponse(headers=headers)
    response.content_length = info.size
    if request.method == "HEAD":
        await response.prepare(request)
        return response
    chunks = blobs.stream(name)
    try:
        first = await anext(chunks, b"")  # fail as a 503 while the status can still change
    except StorageUnavailableError:
        raise web.HTTPServiceUnavailable(headers={"Retry-After": "5"}) from None
    except FileNotFoundError:
        raise web.HTTPNotFound() from None
    await response.prepare(request)
    await response.write(first)
    try:
        async for chunk in chunks:
            await response.write(chunk)
    except (StorageUnavailableError, FileNotFoundError):
        if request.transport is not None:
            request.transport.close()  # a cut body, never a short one that looks whole
        return response
    await response.write_eof()
    return response


async def _not_an_oauth_server(request: web.Request) -> web.Response:
    """Not an authorization server (and, without MCP_OAUTH_ISSUER, no OAuth at all): a 404 here
    stops clients from starting an OAuth flow against us."""
    raise web.HTTPNotFound()


def _oauth_gate(service: ImageService, settings: Settings) -> OAuthGate | None:
    """With MCP_OAUTH_ISSUER: the verifier, and this server's URL as clients reach it."""
    config = OAuthConfig.from_settings(settings)
    if config is None:
        return None
    public = settings.public_base_url
    loopback = is_loopback_host(settings.host)

    def base_url(request: web.BaseRequest) -> str:
        if public:
            return public
        if loopback:  # the Host header was checked against the loopback names
            return f"{request.scheme}://{request.host}"
        return service.http_base_url or f"{request.scheme}://{request.host}"

    def audiences() -> frozenset[str]:
        if public:
            return frozenset({public + RESOURCE_PATH})
        bound = service.http_base_url
        if bound is None:
            return frozenset()
        port = bound.rsplit(":", 1)[1]
        names = ("127.0.0.1", "localhost", "[::1]") if loopback else (bound.split("//", 1)[1].rsplit(":", 1)[0],)
        return frozenset(f"http://{name}:{port}{RESOURCE_PATH}" for name in names)

    return OAuthGate(Verifier(config, audiences), base_url)


async def _verifier_lifespan(app: web.Application) -> AsyncIterator[None]:
    verifier = app[OAUTH_KEY].verifier
    await verifier.start()
    yield
    await verifier.aclose()


async def _mcp_lifespan(app: web.Application) -> AsyncIterator[None]:
    """Enter the MCP server's lifespan once for the app and run the session manager inside it."""
    server = app[LOWLEVEL_KEY]
    ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()

    async def hold() -> None:
        # Entered and exited in this one task: lifespans may use anyio scopes.
        async with server.lifespan(server) as state:
            ready.set_result(state)
            await stop.wait()

    def failed(task: asyncio.Task[None]) -> None:
        if not ready.done():
            error = None if task.cancelled() else task.exception()
            ready.set_exception(error or RuntimeError("the MCP server's lifespan ended before it started"))

    holder = asyncio.create_task(hold(), name="mcp-lifespan")
    holder.add_done_callback(failed)
    manager = app[SESSIONS_KEY]
    manager.start(await ready)
    try:
        yield
    finally:
        await manager.aclose()
        stop.set()
        await holder


async def _close_long_streams(app: web.Application) -> None:
    """``on_shutdown``: end GET and listen streams so shutdown waits only for real calls."""
    app[STREAMS_KEY].close_all()
    entry = app[LOWLEVEL_KEY].get_request_handler("subscriptions/listen")
    handler = getattr(entry, "handler", None)
    if isinstance(handler, ListenHandler):
        handler.close()  # each listen stream sends its final result and ends


def check_bind(settings: Settings) -> None:
    """Refuse a public bind without credentials unless explicitly allowed, then warn loudly.

    Raises:
        ConfigError: non-loopback ``MCP_HOST`` with no token, tokens file or OAuth issuer, and no
            ``MCP_ALLOW_UNAUTHENTICATED``; or OAuth with no audience to check.
    """
    if settings.oauth_issuer and not (settings.oauth_audience or settings.public_base_url
                                      or is_loopback_host(settings.host)):
        raise ConfigError(
            "MCP_OAUTH_ISSUER needs the audience its access tokens are for: set MCP_PUBLIC_BASE_URL (the "
            "audience is then its /mcp URL, RFC 8707) or MCP_OAUTH_AUDIENCE",
            details={"host": settings.host},
        )
    if (settings.auth_tokens or settings.oauth_issuer or is_loopback_host(settings.host)
            or (settings.tokens_file is not None and settings.tokens_file.entries)):
        return
    if not settings.allow_unauthenticated:
        raise ConfigError(
            f"refusing to serve MCP on {settings.host} without a token: set MCP_AUTH_TOKEN, bind "
            "MCP_HOST=127.0.0.1, or set MCP_ALLOW_UNAUTHENTICATED=true if a proxy in front authenticates",
            details={"host": settings.host},
        )
    logger.warning(
        "!!! MCP endpoint on %s has NO AUTHENTICATION (MCP_ALLOW_UNAUTHENTICATED=true): anyone who can "
        "reach it can generate images on your provider accounts. Set MCP_AUTH_TOKEN. !!!",
        settings.host,
    )


def _bind_error(settings: Settings, exc: OSError) -> ConfigError:
    """One line for a bind that failed: which address, why, and the setting that changes it."""
    where = f"{settings.host}:{settings.port}"
    if exc.errno == errno.EADDRINUSE:
        why = f"port {settings.port} is already in use (another server?): choose another with --port or MCP_PORT"
    elif exc.errno == errno.EACCES:
        why = f"no permission to listen on port {settings.port}: use a port above 1023 (--port or MCP_PORT)"
    elif exc.errno == errno.EADDRNOTAVAIL:
        why = f"{settings.host} is not an address of this machine: set --host or MCP_HOST (127.0.0.1, 0.0.0.0)"
    else:
        why = f"{exc.strerror or exc}: check --host/MCP_HOST and --port/MCP_PORT"
    return ConfigError(f"cannot listen on {where}: {why}", details={"host": settings.host, "port": settings.port})


def _banner(settings: Settings, base: str) -> None:
    """What a person who just started the server needs next: where to connect and with what."""
    logger.info("connect MCP clients to %s/mcp", base)
    if _serves_demo(settings):
        logger.info("web demo: %s/demo/ (GET / redirects there)", base)
    if settings.auth_token_file is not None:
        if settings.auth_token_made and sys.stderr.isatty():
            token = settings.auth_tokens[0].get() if len(settings.auth_tokens) == 1 else None
            logger.info("token (MCP_AUTH_TOKEN=auto, made now, shown this once): %s", token)
        logger.info("token: kept in %s (0600); read it with: cat %s", settings.auth_token_file,
                    settings.auth_token_file)
    elif settings.auth_tokens or settings.tokens_file:
        logger.info("token: the one you set in MCP_AUTH_TOKEN / MCP_TOKENS_FILE (never shown)")
    elif settings.oauth_issuer is None:
        logger.info("token: none needed on this loopback address (set MCP_AUTH_TOKEN=auto to require one)")


def _base_url(host: str, port: int) -> str | None:
    if host in ("", "0.0.0.0", "::"):
        return None  # no concrete name to give out; MCP_PUBLIC_BASE_URL is needed
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


async def run_http(
    service: ImageService,
    mcp_server: MCPServer[Any] | Server[Any],
    settings: Settings,
    *,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    on_started: Callable[[str], None] | None = None,
) -> None:
    """Serve until cancelled or SIGTERM; then let in-flight calls finish within ``shutdown_timeout``.

    Raises:
        ConfigError: see ``check_bind``.
    """
    check_bind(settings)
    app = create_http_app(service, mcp_server, settings)
    access_log = logging.getLogger("aiohttp.access") if settings.log_level == "DEBUG" else None
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=shutdown_timeout, access_log=access_log)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)  # before anything is announced
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as exc:
            raise _bind_error(settings, exc) from None
        port = runner.addresses[0][1]
        bound = _base_url(settings.host, port)
        service.http_base_url = bound
        shown = bound or f"http://{settings.host}:{port}"
        logger.info("MCP Streamable HTTP endpoint: %s/mcp (health: %s/health)", shown, shown)
        _banner(settings, settings.public_base_url or shown)
        if not (settings.public_base_url or bound):
            logger.warning("set MCP_PUBLIC_BASE_URL so image results carry a URL (bound to %s)", settings.host)
        if on_started is not None:
            on_started(shown)
        await stop.wait()
        logger.info("SIGTERM: shutting down (in-flight calls get up to %.0f s)", shutdown_timeout)
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)
        await runner.cleanup()
        service.http_base_url = None

"""Fixtures for the HTTP transport: a real aiohttp server on 127.0.0.1:0 and real clients.

The MCP surface under test is a small probe ``MCPServer`` whose ``slow`` tool reports progress
and then waits on an event the test controls, so streaming, pings during a call, shutdown and
cancellation are observed without sleeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx2
import pytest
import pytest_asyncio
from aiohttp import ClientResponse, ClientSession, web
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import NotificationParams, ToolListChangedNotification
from pydantic import BaseModel, Field

from mcp_image_server.config import Secret, Settings, load_settings
from mcp_image_server.service import ImageService
from mcp_image_server.transports.http import SESSIONS_KEY, STREAMS_KEY, create_http_app
from mcp_image_server.transports.sessions import SessionManager
from tests.conftest import BACKENDS

WAIT: float = 10.0
"""Upper bound on any wait in these tests; a hang fails instead of blocking the suite."""

LEGACY_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
MODERN_VERSION = "2026-07-28"


class Name(BaseModel):
    name: str


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Gate:
    """Lets a test hold the ``slow`` tool mid-call and release it."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    background: list[asyncio.Task[None]] = field(default_factory=list)
    roots_changed: asyncio.Event = field(default_factory=asyncio.Event)


def build_probe_server(gate: Gate) -> MCPServer[Any]:
    mcp: MCPServer[Any] = MCPServer("probe-server", version="0.0.1")

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @mcp.tool()
    async def slow(steps: int, ctx: Context[Any, Any]) -> str:
        """Report progress, then wait for the test to release it."""
        try:
            for i in range(steps):
                await ctx.report_progress(i + 1, steps, f"step {i + 1}")
            gate.started.set()
            await gate.release.wait()
        except asyncio.CancelledError:
            gate.cancelled.set()
            raise
        gate.finished.set()
        return "done"

    @mcp.tool()
    async def announce(ctx: Context[Any, Any]) -> str:
        """Send a session-wide notification (it travels on the GET stream)."""
        await ctx.session.send_notification(ToolListChangedNotification())
        return "announced"

    @mcp.tool()
    def weather(city: Annotated[str, Field(json_schema_extra={"x-mcp-header": "City"})]) -> str:
        """A tool whose argument is mirrored in an ``Mcp-Param-City`` header (2026-07-28)."""
        return f"sunny in {city}"

    @mcp.tool()
    async def changed(ctx: Context[Any, Any]) -> str:
        """Publish a tools-changed event (2026-07-28 listeners get it on their listen stream)."""
        await ctx.notify_tools_changed()
        return "published"

    @mcp.tool()
    async def later(ctx: Context[Any, Any]) -> str:
        """Return at once; once released, notify on the session's stream from a background task."""
        session = ctx.session

        async def announce() -> None:
            await gate.release.wait()
            await session.send_notification(ToolListChangedNotification())

        gate.background.append(asyncio.create_task(announce()))
        return "scheduled"

    @mcp.tool()
    async def ask(ctx: Context[Any, Any]) -> str:
        """Ask the client a question mid-call (a server-to-client request on the call's SSE stream)."""
        answer = await ctx.elicit("Your name?", Name)
        return f"hello {answer.data.name}" if answer.action == "accept" and answer.data else answer.action

    async def on_roots_changed(ctx: Any, params: Any) -> None:
        await asyncio.sleep(0)  # a handler that awaits before it finishes its work
        gate.roots_changed.set()

    mcp._lowlevel_server.add_notification_handler(
        "notifications/roots/list_changed", NotificationParams, on_roots_changed
    )

    @mcp.resource("probe://hello", mime_type="text/plain")
    def hello() -> str:
        return "hello from probe-server"

    @mcp.prompt()
    def greet(name: str) -> str:
        return f"Please greet {name} warmly."

    return mcp


@dataclass
class Running:
    base: str
    app: web.Application
    service: ImageService
    clock: FakeClock
    gate: Gate
    settings: Settings
    runner: web.AppRunner

    @property
    def url(self) -> str:
        return self.base + "/mcp"

    @property
    def manager(self) -> SessionManager:
        return self.app[SESSIONS_KEY]

    @property
    def open_streams(self) -> int:
        return len(self.app[STREAMS_KEY])


_BACKEND_FIELDS = ("state_url", "image_store_url", "aws_endpoint_url", "aws_access_key_id",
                   "aws_secret_access_key", "aws_region")


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    tokens = overrides.pop("tokens", ())
    if BACKENDS:  # the ``backends`` fixture: Redis state and S3 store for this test
        shared = load_settings(BACKENDS)
        overrides = {**{f: getattr(shared, f) for f in _BACKEND_FIELDS}, **overrides}
    return dataclasses.replace(
        Settings(),
        transport="http",
        port=0,
        image_save_dir=tmp_path / "images",
        auth_tokens=tuple(Secret(t) for t in tokens),
        **overrides,
    )


StartServer = Callable[..., Awaitable[Running]]


@pytest_asyncio.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[StartServer]:
    """Factory: ``await start_server(tokens=("t",), max_sessions=2, mcp=build_mcp_server, linger=...)``.

    ``mcp`` builds the MCP surface from the service (default: the probe server).
    """
    async with AsyncExitStack() as stack:

        async def start(
            *,
            mcp: Callable[[ImageService], MCPServer[Any]] | None = None,
            linger: float = 10.0,
            keepalive: float = 15.0,
            environ: dict[str, str] | None = None,
            **overrides: Any,
        ) -> Running:
            settings = make_settings(tmp_path, **overrides)
            service = ImageService(settings, environ=environ if environ is not None else {})
            await service.start()
            stack.push_async_callback(service.aclose)
            gate = Gate()
            clock = FakeClock()
            surface = mcp(service) if mcp is not None else build_probe_server(gate)
            app = create_http_app(service, surface, settings, clock=clock, linger=linger, keepalive=keepalive)
            runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=5)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            base = f"http://127.0.0.1:{port}"
            service.http_base_url = base
            return Running(base, app, service, clock, gate, settings, runner)

        yield start


@pytest_asyncio.fixture
async def server(start_server: StartServer) -> Running:
    return await start_server()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[ClientSession]:
    async with ClientSession() as session:
        yield session


async def next_sse_message(resp: Any) -> dict[str, Any] | None:
    """The next ``data:`` payload of an SSE response (comments and blank lines skipped); ``None`` at EOF."""
    data: list[str] = []
    async with asyncio.timeout(WAIT):
        while True:
            raw = await resp.content.readline()
            if not raw:
                return None
            line = raw.decode().rstrip("\r\n")
            if line.startswith("data:"):
                data.append(line[5:].lstrip())
            elif line == "" and data:
                message: dict[str, Any] = json.loads("\n".join(data))
                return message


async def next_line(resp: ClientResponse) -> str:
    """The next raw line of a streamed response (to see SSE comments such as ``: ping``)."""
    async with asyncio.timeout(WAIT):
        raw = await resp.content.readline()
    return raw.decode().rstrip("\r\n")


class Helpers:
    """Client-side helpers, handed to tests through the ``h`` fixture (conftest is not importable)."""

    WAIT = WAIT
    LEGACY_HEADERS = LEGACY_HEADERS
    MODERN_VERSION = MODERN_VERSION

    @staticmethod
    @asynccontextmanager
    async def mcp_client(
        url: str, *, token: str | None = None, mode: str = "auto", **kwargs: Any
    ) -> AsyncIterator[Client]:
        """The SDK's high-level client, with a bearer token when given."""
        if token is None:
            async with Client(url, mode=mode, **kwargs) as client:
                yield client
            return
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=300)) as h,
            Client(streamable_http_client(url, http_client=h), mode=mode, **kwargs) as client,
        ):
            yield client

    next_sse_message = staticmethod(next_sse_message)
    next_line = staticmethod(next_line)

    @staticmethod
    async def initialize(http: ClientSession, url: str, headers: dict[str, str] | None = None) -> str:
        """Open a handshake-era session by hand; returns its id."""
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "1"},
            },
        }
        async with http.post(url, json=body, headers={**LEGACY_HEADERS, **(headers or {})}) as resp:
            assert resp.status == 200, await resp.text()
            session_id = resp.headers["Mcp-Session-Id"]
            await resp.read()
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        hdrs = {**LEGACY_HEADERS, **(headers or {}), "Mcp-Session-Id": session_id, "MCP-Protocol-Version": "2025-11-25"}
        async with http.post(url, json=note, headers=hdrs) as resp:
            assert resp.status == 202
        return session_id

    @staticmethod
    def session_headers(session_id: str, **extra: str) -> dict[str, str]:
        return {**LEGACY_HEADERS, "Mcp-Session-Id": session_id, "MCP-Protocol-Version": "2025-11-25", **extra}

    @staticmethod
    def modern_meta() -> dict[str, Any]:
        return {
            "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
        }

    @staticmethod
    def modern_headers(method: str, name: str | None = None, **extra: str) -> dict[str, str]:
        headers = {**LEGACY_HEADERS, "MCP-Protocol-Version": MODERN_VERSION, "Mcp-Method": method, **extra}
        if name is not None:
            headers["Mcp-Name"] = name
        return headers


@pytest.fixture
def h() -> type[Helpers]:
    return Helpers

"""Helpers for the reliability suites: the real server in-process, a raw HTTP/1.1 client that
sends exactly the bytes it is given, leak probes (tasks, descriptors) and bounded polling.

The raw client exists because ``aiohttp``'s and ``httpx``'s clients normalise what they send
(paths, duplicated or non-ASCII headers, framing); hostile input has to reach the server as is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from multidict import CIMultiDict

from mcp_image_server.config import Settings, load_settings
from mcp_image_server.server import build_mcp_server
from mcp_image_server.service import ImageService
from mcp_image_server.transports.http import SESSIONS_KEY, STREAMS_KEY, create_http_app
from mcp_image_server.transports.sessions import SessionManager

WAIT: Final = 10.0
"""Upper bound on any single wait; a hang fails the test instead of blocking the suite."""

LEGACY_VERSION: Final = "2025-11-25"
MODERN_VERSION: Final = "2026-07-28"
ACCEPT_BOTH: Final = "application/json, text/event-stream"

Header = tuple[str | bytes, str | bytes]


class FakeClock:
    """A monotonic clock that moves only when told to (drives session idle expiry)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Served:
    """A real server (``ImageService`` + ``build_mcp_server`` + the transport's app) on 127.0.0.1."""

    base: str
    port: int
    app: web.Application
    service: ImageService
    mcp: Any
    clock: FakeClock
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

    @property
    def save_dir(self) -> Path:
        return self.service.store.save_dir


def settings_for(tmp_path: Path, environ: Mapping[str, str] | None = None) -> tuple[Settings, dict[str, str]]:
    """Settings read from an environment (so ``reload_config`` re-reads the same values)."""
    env = {
        "MCP_TRANSPORT": "http",
        "MCP_PORT": "0",
        "MCP_IMAGE_SAVE_DIR": str(tmp_path / "images"),
        "MCP_LOG_LEVEL": "INFO",
        **(environ or {}),
    }
    return load_settings(env), env


@asynccontextmanager
async def serve(
    tmp_path: Path,
    environ: Mapping[str, str] | None = None,
    *,
    linger: float = 10.0,
    keepalive: float = 15.0,
    real_clock: bool = False,
    **app_options: Any,
) -> AsyncIterator[Served]:
    """The real server in this event loop; everything is torn down on exit.

    Session idle expiry runs on a ``FakeClock`` (``served.clock.advance``) unless ``real_clock``.
    """
    settings, env = settings_for(tmp_path, environ)
    async with AsyncExitStack() as stack:
        service = ImageService(settings, environ=env)
        await service.start()
        stack.push_async_callback(service.aclose)
        mcp = build_mcp_server(service)
        clock = FakeClock()
        app = create_http_app(
            service,
            mcp,
            settings,
            clock=time.monotonic if real_clock else clock,
            linger=linger,
            keepalive=keepalive,
            **app_options,
        )
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=5, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        base = f"http://127.0.0.1:{port}"
        service.http_base_url = base
        yield Served(base, port, app, service, mcp, clock, runner)


# ---- raw HTTP/1.1 ------------------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int | None
    """``None`` when the server closed the connection without answering."""
    reason: str = ""
    headers: CIMultiDict[str] = dataclasses.field(default_factory=CIMultiDict)
    body: bytes = b""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def sse_messages(self) -> list[dict[str, Any]]:
        """The JSON payloads of the ``data:`` lines of an SSE body."""
        out = []
        for line in self.body.decode("utf-8", "replace").splitlines():
            if line.startswith("data:"):
                out.append(json.loads(line[5:].strip()))
        return out

    def messages(self) -> list[dict[str, Any]]:
        """JSON-RPC messages in the body, whether one JSON object or an SSE stream."""
        if self.headers.get("Content-Type", "").startswith("text/event-stream"):
            return self.sse_messages()
        if not self.body:
            return []
        decoded = self.json()
        return decoded if isinstance(decoded, list) else [decoded]


def _b(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def build_request(
    method: str | bytes,
    target: str | bytes,
    headers: Iterable[Header],
    body: bytes = b"",
    *,
    host: str | None,
    content_length: bool | int = True,
    chunked: bool = False,
    close: bool = True,
) -> bytes:
    """Request bytes, headers exactly as given (duplicates and all), plus the framing asked for."""
    lines = [_b(method) + b" " + _b(target) + b" HTTP/1.1"]
    given = list(headers)
    names = {_b(n).lower() for n, _ in given}
    if host is not None and b"host" not in names:
        lines.append(b"Host: " + host.encode())
    if close and b"connection" not in names:
        lines.append(b"Connection: close")
    for name, value in given:
        lines.append(_b(name) + b": " + _b(value))
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
        payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in _chunks(body)) + b"0\r\n\r\n"
    else:
        if content_length is True and (body or _b(method) in (b"POST", b"PUT", b"PATCH")):
            lines.append(b"Content-Length: %d" % len(body))
        elif content_length is not True and content_length is not False:
            lines.append(b"Content-Length: %d" % content_length)
        payload = body
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


def _chunks(body: bytes, size: int = 16 * 1024) -> list[bytes]:
    return [body[i : i + size] for i in range(0, len(body), size)]


class RawConnection:
    """One TCP connection to the server; reads one response at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, *, rcvbuf: int | None = None) -> RawConnection:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # a small window makes a client that stops reading stall the server fast
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_head(self) -> RawResponse:
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                return RawResponse(None)
            raise AssertionError(f"a response cut short in its head: {exc.partial[:200]!r}") from None
        except ConnectionResetError:
            return RawResponse(None)
        lines = head.decode("latin-1").split("\r\n")
        _, status, *reason = lines[0].split(" ", 2)
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers.add(name.strip(), value.strip())
        return RawResponse(int(status), reason[0] if reason else "", headers)

    async def read_body(self, resp: RawResponse, *, method: str = "GET", until: bytes | None = None) -> bytes:
        """The whole body (``until``: stop once the body contains it, or its CRLF form; for streams
        that stay open)."""
        if method == "HEAD" or resp.status in (204, 304) or (resp.status or 0) < 200:
            return b""
        length = resp.headers.get("Content-Length")
        if length is not None:
            return await self.reader.readexactly(int(length))
        if resp.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    return bytes(body)
                body += await self.reader.readexactly(size)
                await self.reader.readexactly(2)
                if until is not None and (until in body or until.replace(b"\n", b"\r\n") in body):
                    return bytes(body)
        return await self.reader.read()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The chunks of a chunked body as they arrive (an SSE stream read incrementally)."""
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return
            chunk = await self.reader.readexactly(size)
            await self.reader.readexactly(2)
            yield chunk

    async def sse_messages(self) -> AsyncIterator[dict[str, Any]]:
        """JSON-RPC messages of an SSE body as they arrive (comments such as pings skipped)."""
        buffer = b""
        async for chunk in self.chunks():
            buffer += chunk.replace(b"\r\n", b"\n")  # the 2026-07-28 framing ends lines with CRLF
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                data = [line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")]
                if data:
                    yield json.loads(b"\n".join(data))

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    def abort(self) -> None:
        """Reset the connection (RST), as a crashed or killed client does."""
        self.writer.transport.abort()


async def raw_request(
    port: int,
    method: str | bytes,
    target: str | bytes,
    headers: Iterable[Header] = (),
    body: bytes = b"",
    *,
    host: str | None = "default",
    timeout: float = WAIT,
    until: bytes | None = None,
    **framing: Any,
) -> RawResponse:
    """Send one request on a fresh connection and read the whole answer within ``timeout``.

    An SSE response is read until it ends, or until its body contains ``until``.
    """
    shown_host = f"127.0.0.1:{port}" if host == "default" else host
    data = build_request(method, target, headers, body, host=shown_host, **framing)
    async with asyncio.timeout(timeout):
        conn = await RawConnection.open(port)
        try:
            await conn.send(data)
            resp = await conn.read_head()
            if resp.status is not None:
                try:
                    resp.body = await conn.read_body(resp, method=_b(method).decode("latin-1"), until=until)
                except (asyncio.IncompleteReadError, ConnectionResetError):
                    pass  # the server ended a stream abruptly: what was read is kept
            return resp
        finally:
            await conn.close()


# ---- MCP request shapes --------------------------------------------------------------------


def modern_meta() -> dict[str, Any]:
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "reliability", "version": "1"},
    }


def modern_request(method: str, params: dict[str, Any] | None = None, rid: int | str = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": {**(params or {}), "_meta": modern_meta()}}


def modern_headers(method: str, name: str | None = None, *, accept: str = ACCEPT_BOTH) -> dict[str, str]:
    headers = {
        "Accept": accept,
        "Content-Type": "application/json",
        "MCP-Protocol-Version": MODERN_VERSION,
        "Mcp-Method": method,
    }
    if name is not None:
        headers["Mcp-Name"] = name
    return headers


def legacy_headers(session_id: str | None = None, *, accept: str = ACCEPT_BOTH) -> dict[str, str]:
    headers = {"Accept": accept, "Content-Type": "application/json"}
    if session_id is not None:
        headers.update({"Mcp-Session-Id": session_id, "MCP-Protocol-Version": LEGACY_VERSION})
    return headers


INITIALIZE: Final = {
    "jsonrpc": "2.0",
    "id": "init",
    "method": "initialize",
    "params": {
        "protocolVersion": LEGACY_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "reliability", "version": "1"},
    },
}


def auth(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


async def post_json(
    port: int, body: Any, headers: Mapping[str, str], *, path: str = "/mcp", **kwargs: Any
) -> RawResponse:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await raw_request(port, "POST", path, list(headers.items()), data, **kwargs)


async def open_session(port: int, token: str | None = None) -> str:
    """A handshake-era session opened by hand (initialize + initialized); returns its id."""
    resp = await post_json(port, INITIALIZE, {**legacy_headers(), **auth(token)})
    assert resp.status == 200, (resp.status, resp.text)
    session_id = resp.headers["Mcp-Session-Id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    resp = await post_json(port, note, {**legacy_headers(session_id), **auth(token)})
    assert resp.status == 202, (resp.status, resp.text)
    return session_id


async def legacy_call(
    port: int,
    session_id: str,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    rid: int | str = 7,
) -> RawResponse:
    body = {"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}}
    return await post_json(port, body, {**legacy_headers(session_id), **auth(token)})


async def modern_call(
    port: int,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    name: str | None = None,
    token: str | None = None,
    rid: int | str = 7,
    accept: str = ACCEPT_BOTH,
) -> RawResponse:
    if name is None and method == "tools/call":
        name = (params or {}).get("name")
    return await post_json(
        port, modern_request(method, params, rid), {**modern_headers(method, name, accept=accept), **auth(token)}
    )


def reply_of(resp: RawResponse, rid: int | str | None = None) -> dict[str, Any]:
    """The final JSON-RPC reply in a response (JSON body or SSE stream)."""
    finals = [m for m in resp.messages() if "result" in m or "error" in m]
    assert finals, (resp.status, resp.text[:500])
    reply = finals[-1]
    if rid is not None:
        assert reply.get("id") == rid, reply
    return reply


def tool_result(resp: RawResponse) -> dict[str, Any]:
    """``structuredContent`` of a ``tools/call`` reply."""
    reply = reply_of(resp)
    assert "result" in reply, reply
    content = reply["result"].get("structuredContent")
    assert isinstance(content, dict), reply
    return content


# ---- leaks and bounded waiting ---------------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def live_tasks() -> set[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and not t.done()}


def describe_tasks(tasks: Iterable[asyncio.Task[Any]]) -> list[str]:
    return sorted(f"{t.get_name()}:{getattr(t.get_coro(), '__qualname__', '?')}" for t in tasks)


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], *, within: float = WAIT, what: str = "condition"
) -> None:
    """Poll ``check`` (yielding to the loop between polls) until true; fail after ``within`` s.

    Used where the server offers no event to wait on (a handler unwinding after a disconnect).
    The poll interval is short and grows; the bound is what fails the test, never the interval.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    delay = 0.001
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


class LeakProbe:
    """Tasks and descriptors before a scenario, compared after it with a bounded settle."""

    def __init__(self) -> None:
        self.tasks = live_tasks()
        self.fds = open_fds()

    def new_tasks(self) -> set[asyncio.Task[Any]]:
        return live_tasks() - self.tasks

    async def settled(self, *, within: float = WAIT, fd_slack: int = 0) -> None:
        def clean() -> bool:
            return not self.new_tasks() and open_fds() <= self.fds + fd_slack

        try:
            await eventually(clean, within=within, what="tasks and descriptors to return to the baseline")
        except AssertionError:
            raise AssertionError(
                f"leaked tasks {describe_tasks(self.new_tasks())}; descriptors {self.fds} -> {open_fds()}"
            ) from None


# ---- what must never leave the server ---------------------------------------------------------

_LEAK_RE: Final = re.compile(
    rb"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+|\.py\", line \d+|<class '|"
    rb" object at 0x[0-9a-f]+|site-packages|\b(?:ValueError|KeyError|TypeError|AttributeError|IndexError|"
    rb"RuntimeError|AssertionError|RecursionError|UnicodeDecodeError|UnicodeEncodeError|JSONDecodeError|"
    rb"NotImplementedError|OverflowError|ZeroDivisionError|CancelledError|ConnectionResetError|"
    rb"IncompleteReadError|BrokenResourceError|ClosedResourceError)\b"
)


def leaks(body: bytes, *paths: Path | str) -> list[str]:
    """Stack traces, exception names or server paths found in a response body."""
    found = [m.group(0).decode("utf-8", "replace") for m in _LEAK_RE.finditer(body)]
    for path in paths:
        if str(path) and str(path).encode() in body:
            found.append(f"path {path}")
    return found

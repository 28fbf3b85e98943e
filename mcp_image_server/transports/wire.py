"""HTTP framing shared by both protocol eras: error bodies, SSE frames, bounded reads, mailboxes.

Nothing here knows JSON-RPC semantics beyond serialising a message the SDK produced; the
SDK's dispatcher and ``ServerRunner`` decide every answer.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final

from aiohttp import web
from mcp_types import JSONRPCMessage

__all__ = [
    "CORS_ORIGIN_KEY",
    "JSON_CONTENT_TYPE",
    "KEEPALIVE_SECONDS",
    "MCP_PATHS",
    "PING_FRAME",
    "PROTOCOL_VERSION_HEADER",
    "SESSION_HEADER",
    "SSE_HEADERS",
    "WRITE_TIMEOUT_KEY",
    "WRITE_TIMEOUT_SECONDS",
    "LongStreams",
    "Mailbox",
    "accepts",
    "add_cors_headers",
    "jsonrpc_error",
    "message_bytes",
    "open_sse",
    "read_body",
    "sse_frame",
    "write_frame",
]

MCP_PATHS: Final = ("/mcp", "/mcp/v1/messages")
"""The MCP endpoint and its alias; both serve every era."""

SESSION_HEADER: Final = "Mcp-Session-Id"
PROTOCOL_VERSION_HEADER: Final = "MCP-Protocol-Version"
JSON_CONTENT_TYPE: Final = "application/json"

KEEPALIVE_SECONDS: Final = 15.0
"""Silence after which an SSE stream gets a ``: ping`` comment (the SDK's interval), so proxies keep it open."""

WRITE_TIMEOUT_SECONDS: Final = 60.0
"""A stream write that cannot finish in this long (the kernel's buffers and ours are full: the client
has taken nothing for a while) cuts the client off. Without it, a client that stops reading but
keeps its socket open pins its handler, and a handshake-era session, which then never idles out."""
WRITE_TIMEOUT_KEY: Final = web.AppKey("sse_write_timeout", float)

SSE_HEADERS: Final[Mapping[str, str]] = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
}
PING_FRAME: Final = b": ping\n\n"

CORS_ORIGIN_KEY: Final = web.RequestKey("mcp_cors_origin", str)
"""The request's ``Origin`` once admission allowed it; absent for clients that are not browsers."""
_CORS_EXPOSE: Final = "Mcp-Session-Id, WWW-Authenticate, Retry-After"

_MAILBOX_LIMIT: Final = 64
"""Messages queued for one response before the producing handler waits (back-pressure, bounded memory)."""


def accepts(request: web.BaseRequest) -> tuple[bool, bool]:
    """``(json, sse)``: which response types the client's Accept allows (wildcards count).

    Remembered per header value: a client sends the same Accept on every request.
    """
    header = request.headers.get("Accept", "")
    verdict = _ACCEPT_SEEN.get(header)
    if verdict is None:
        types = {part.split(";", 1)[0].strip().lower() for part in header.split(",")}
        wildcard = "*/*" in types
        verdict = (
            wildcard or "application/json" in types or "application/*" in types,
            wildcard or "text/event-stream" in types or "text/*" in types,
        )
        if len(_ACCEPT_SEEN) >= _ACCEPT_SEEN_MAX:
            _ACCEPT_SEEN.clear()
        _ACCEPT_SEEN[header] = verdict
    return verdict


_ACCEPT_SEEN: dict[str, tuple[bool, bool]] = {}
_ACCEPT_SEEN_MAX: Final = 64


def jsonrpc_error(
    status: int,
    code: int,
    message: str,
    *,
    request_id: str | int | None = None,
    data: Any = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """A JSON-RPC error body with an HTTP status; ``id`` stays ``null`` when the request had none."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    body = json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error}, separators=(",", ":"))
    return web.Response(status=status, body=body.encode(), content_type=JSON_CONTENT_TYPE, headers=headers)


def message_bytes(message: JSONRPCMessage) -> bytes:
    """The wire form the SDK's own transport uses for handshake-era messages."""
    return message.model_dump_json(by_alias=True, exclude_unset=True).encode()


def sse_frame(message: JSONRPCMessage) -> bytes:
    return b"event: message\ndata: " + message_bytes(message) + b"\n\n"


def add_cors_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """CORS headers for an allowed browser origin; call before ``response`` is prepared.

    Called where responses are finished (the error middleware, ``open_sse``) rather than from
    ``on_response_prepare``: that signal costs every response a coroutine, browser or not.
    """
    origin = request.get(CORS_ORIGIN_KEY)
    if origin is None:
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = _CORS_EXPOSE
    response.headers.add("Vary", "Origin")


async def open_sse(request: web.BaseRequest, headers: Mapping[str, str] | None = None) -> web.StreamResponse:
    """Send the headers of an SSE response now; the body follows frame by frame."""
    response = web.StreamResponse(status=200, headers={**SSE_HEADERS, **headers} if headers else SSE_HEADERS)
    add_cors_headers(request, response)
    await response.prepare(request)
    return response


async def write_frame(
    request: web.Request, response: web.StreamResponse, data: bytes = b"", *, eof: bool = False
) -> None:
    """Write ``data`` to a stream (and end it with ``eof``), within the app's write timeout.

    Raises:
        ConnectionResetError: the client is gone, or was cut off for not reading.
    """
    timeout = request.app.get(WRITE_TIMEOUT_KEY, WRITE_TIMEOUT_SECONDS)
    try:
        async with asyncio.timeout(timeout):
            if eof:
                await response.write_eof(data)
            else:
                await response.write(data)
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError(f"the client took nothing for {timeout:g} s: cut off") from None


async def read_body(request: web.BaseRequest, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` (chunked bodies included).

    Raises:
        web.HTTPRequestEntityTooLarge: the body is larger than ``limit``.
    """
    declared = request.content_length
    if declared is not None:
        if declared > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=declared)
        body = request.content.read_nowait(declared)  # usually the whole body has arrived already
        if len(body) < declared:
            try:
                body += await request.content.readexactly(declared - len(body))
            except asyncio.IncompleteReadError as exc:
                body += exc.partial  # the client gave up mid-body: parsing it will fail cleanly
        return body
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
        chunks.append(chunk)
    return b"".join(chunks)


class Mailbox:
    """Messages bound for one HTTP response: a POST's reply stream or a session's GET stream.

    The SDK's dispatcher writes from its handler tasks; the aiohttp handler reads. A full
    mailbox makes the writer wait, so a slow client slows its own call and nothing else.
    """

    __slots__ = ("_getter", "_items", "_putters", "closed", "sse")

    def __init__(self, *, sse: bool) -> None:
        self.sse = sse
        """Whether this response may carry more than the final reply (notifications, server requests)."""
        self.closed = False
        self._items: deque[JSONRPCMessage] = deque()
        self._getter: asyncio.Future[None] | None = None
        self._putters: list[asyncio.Future[None]] | None = None

    def __len__(self) -> int:
        """Messages queued and not yet written (at most ``_MAILBOX_LIMIT``)."""
        return len(self._items)

    async def put(self, message: JSONRPCMessage) -> None:
        """Queue ``message``; dropped silently once the response is gone (the client left)."""
        while len(self._items) >= _MAILBOX_LIMIT and not self.closed:
            waiter = asyncio.get_running_loop().create_future()
            if self._putters is None:
                self._putters = []
            self._putters.append(waiter)
            await waiter
        if self.closed:
            return
        self._items.append(message)
        self._wake_getter()

    def close(self) -> None:
        self.closed = True
        self._wake_getter()
        for waiter in self._putters or ():
            if not waiter.done():
                waiter.set_result(None)
        self._putters = None

    async def get(self, timeout: float | None) -> JSONRPCMessage | None:
        """The next message, or ``None`` once closed and drained.

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds.
        """
        while not self._items:
            if self.closed:
                return None
            loop = asyncio.get_running_loop()
            self._getter = getter = loop.create_future()
            # A timer on the future itself: ``asyncio.timeout`` costs several microseconds a call.
            timer = None if timeout is None else loop.call_later(timeout, _expire, getter)
            try:
                await getter
            finally:
                self._getter = None
                if timer is not None:
                    timer.cancel()
        message = self._items.popleft()
        if self._putters:
            waiter = self._putters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
        return message

    def _wake_getter(self) -> None:
        if self._getter is not None and not self._getter.done():
            self._getter.set_result(None)


def _expire(getter: asyncio.Future[None]) -> None:
    if not getter.done():
        getter.set_exception(TimeoutError())


class LongStreams:
    """Closers of open long-lived streams (GET streams, ``subscriptions/listen``), run at shutdown."""

    __slots__ = ("_closers",)

    def __init__(self) -> None:
        self._closers: set[Callable[[], None]] = set()

    def add(self, closer: Callable[[], None]) -> None:
        self._closers.add(closer)

    def discard(self, closer: Callable[[], None]) -> None:
        self._closers.discard(closer)

    def __len__(self) -> int:
        return len(self._closers)

    def close_all(self) -> None:
        for closer in list(self._closers):
            closer()
        self._closers.clear()

"""stdio: the SDK's stdio framing and dispatch, plus answers for lines it would drop.

The SDK silently discards a line that is not a JSON-RPC message; a client then waits
for a reply that never comes. We answer such a line with a JSON-RPC error (id null):
-32700 when it is not JSON, -32600 when it is JSON but not a message. stdout carries
only protocol messages; logs go to stderr (set up in ``cli``).

stdin is read by a daemon thread of ours rather than the SDK's file wrapper: a read
blocked in that wrapper cannot be cancelled, so Ctrl-C in a terminal (and SIGTERM) waited
for the next line; here the wait is abandoned and the thread never holds up the exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, Final

import anyio
from mcp.server.stdio import _claim_fd, _open_stdin_diversion, stdio_server
from mcp.shared.message import SessionMessage
from mcp_types import INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError
from pydantic import ValidationError

from ..server import ImageMCPServer

__all__ = ["CONNECT_HINT", "error_for_bad_line", "run_stdio"]

CONNECT_HINT: Final = """\
mcp-image-server speaks MCP over stdio: it waits for JSON-RPC messages on stdin.
You started it in a terminal, so nothing will happen until a client talks to it.
Connect a client instead, e.g. in Cursor or Claude Desktop ("mcpServers"):
  {"image-server": {"command": "%(cmd)s", "args": []}}
try it with the MCP Inspector:  npx @modelcontextprotocol/inspector %(cmd)s
or serve over HTTP:             %(cmd)s --transport http
(Press Ctrl-C to quit.)
"""


def error_for_bad_line(exc: Exception) -> JSONRPCError:
    """The reply to an undecodable line: parse error for bad JSON, invalid request otherwise."""
    not_json = isinstance(exc, ValidationError) and any(e["type"] == "json_invalid" for e in exc.errors())
    if not_json or not isinstance(exc, ValidationError):
        error = ErrorData(code=PARSE_ERROR, message="Parse error: the line is not valid JSON")
    else:
        error = ErrorData(code=INVALID_REQUEST, message="Invalid Request: not a JSON-RPC 2.0 message")
    return JSONRPCError(jsonrpc="2.0", id=None, error=error)


class _Lines:
    """stdin as the async line iterator ``stdio_server`` reads, fed by a daemon thread."""

    def __init__(self, buffer: BinaryIO) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=16)
        threading.Thread(target=self._read, args=(buffer,), name="mcp-stdin", daemon=True).start()

    def _read(self, buffer: BinaryIO) -> None:
        try:
            for raw in iter(buffer.readline, b""):
                self._hand_over(raw.decode("utf-8", errors="replace"))
        except (OSError, ValueError):
            pass  # stdin closed under us: the same as EOF
        finally:
            self._hand_over(None)

    def _hand_over(self, line: str | None) -> None:
        try:  # blocks while the queue is full: the client cannot run this process out of memory
            asyncio.run_coroutine_threadsafe(self._queue.put(line), self._loop).result()
        except RuntimeError:
            pass  # the loop is gone: nobody reads any more

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> str:
        line = await self._queue.get()
        if line is None:
            raise StopAsyncIteration
        return line


async def run_stdio(mcp: ImageMCPServer, command: str) -> None:
    """Serve until stdin closes, SIGTERM (returns) or Ctrl-C (KeyboardInterrupt, as asyncio.run raises it)."""
    with anyio.CancelScope() as scope, _on_sigterm(scope.cancel):
        if sys.stdin.isatty():
            sys.stderr.write(CONNECT_HINT % {"cmd": command})
            sys.stderr.flush()
        # Claim fd 0 as the SDK would (handlers and children then read EOF), but read it ourselves.
        buffer, release = _claim_fd(0, sys.stdin, "rb", _open_stdin_diversion)
        try:
            await _serve(mcp.lowlevel, _Lines(buffer))
        finally:
            if release is not None:
                release()


async def _serve(server: Any, lines: _Lines) -> None:
    async with stdio_server(stdin=lines) as (read_stream, write_stream):  # type: ignore[arg-type]
        send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](0)

        async def pump() -> None:
            async with send:
                async for item in read_stream:
                    if isinstance(item, Exception):
                        await write_stream.send(SessionMessage(error_for_bad_line(item)))
                    else:
                        await send.send(item)

        async with anyio.create_task_group() as tg:
            tg.start_soon(pump)
            await server.run(receive, write_stream, server.create_initialization_options())
            tg.cancel_scope.cancel()


@contextlib.contextmanager
def _on_sigterm(stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM stops serving (the caller's cleanup then runs); where signals cannot be set, nothing."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGTERM, stop)
    except (NotImplementedError, RuntimeError):
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)

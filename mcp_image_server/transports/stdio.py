"""stdio: the SDK's stdio framing and dispatch, plus answers for lines it would drop.

The SDK silently discards a line that is not a JSON-RPC message; a client then waits
for a reply that never comes. We answer such a line with a JSON-RPC error (id null):
-32700 when it is not JSON, -32600 when it is JSON but not a message. stdout carries
only protocol messages; logs go to stderr (set up in ``cli``).
"""

from __future__ import annotations

import sys
from typing import Final

import anyio
from mcp.server.stdio import stdio_server
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
or serve over HTTP:             MCP_TRANSPORT=http %(cmd)s
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


async def run_stdio(mcp: ImageMCPServer, command: str) -> None:
    """Serve until stdin closes."""
    if sys.stdin.isatty():
        sys.stderr.write(CONNECT_HINT % {"cmd": command})
        sys.stderr.flush()
    server = mcp.lowlevel
    async with stdio_server() as (read_stream, write_stream):
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

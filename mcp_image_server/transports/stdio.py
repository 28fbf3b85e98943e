"""stdio: the SDK's transport; stdout carries only protocol messages, logs go to stderr."""

from __future__ import annotations

import sys
from typing import Final

from ..server import ImageMCPServer

__all__ = ["CONNECT_HINT", "run_stdio"]

CONNECT_HINT: Final = """\
mcp-image-server speaks MCP over stdio: it waits for JSON-RPC messages on stdin.
You started it in a terminal, so nothing will happen until a client talks to it.
Connect a client instead, e.g. in Cursor/Claude Desktop "mcpServers":
  {"image-server": {"command": "%(cmd)s", "args": []}}
or try it with the MCP Inspector:  npx @modelcontextprotocol/inspector %(cmd)s
or serve over HTTP:                 MCP_TRANSPORT=http %(cmd)s
(Press Ctrl-C to quit.)
"""


async def run_stdio(mcp: ImageMCPServer, command: str) -> None:
    """Serve until stdin closes."""
    if sys.stdin.isatty():
        sys.stderr.write(CONNECT_HINT % {"cmd": command})
        sys.stderr.flush()
    await mcp.run_stdio_async()

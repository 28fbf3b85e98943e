"""fastmcp's Client (a third-party client on the same SDK) over stdio and over HTTP with a token."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from ..conftest import server_env

fastmcp = pytest.importorskip("fastmcp", reason="fastmcp is in tests/requirements.lock.txt")

pytestmark = pytest.mark.timeout(120)


def _check(tools: list[Any], result: Any) -> None:
    assert {"generate_image", "get_image_data"} <= {t.name for t in tools}
    assert not result.is_error
    image = result.structured_content["images"][0]
    assert image["provider"] == "local" and Path(image["file_path"]).stat().st_size == image["size_bytes"]


async def test_fastmcp_client_over_stdio(tmp_path: Path) -> None:
    config = {"mcpServers": {"images": {
        "command": sys.executable, "args": ["-m", "mcp_image_server"], "env": server_env(tmp_path / "images"),
        "cwd": str(tmp_path),
    }}}
    async with fastmcp.Client(config) as client:
        tools = await client.list_tools()
        result = await client.call_tool("generate_image", {"prompt": "a red fox", "resolution": "128x128"})
    _check(tools, result)


async def test_fastmcp_client_over_http_with_a_token(http_server: Any) -> None:
    async with http_server(token="fastmcp-token-1") as url:
        async with fastmcp.Client(url, auth="fastmcp-token-1") as client:
            tools = await client.list_tools()
            result = await client.call_tool("generate_image", {"prompt": "a red fox", "resolution": "128x128"})
        _check(tools, result)
        with pytest.raises(Exception):  # noqa: B017 - fastmcp raises its own types for a refused token
            async with fastmcp.Client(url, auth="wrong-token") as client:
                await client.list_tools()

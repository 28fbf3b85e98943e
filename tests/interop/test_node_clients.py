"""Real third-party Node clients against the real server: the MCP Inspector CLI (stdio and HTTP, both
eras, with a token) and mcp-remote bridging stdio to our HTTP endpoint. Each lists tools and
generates an image with the ``local`` provider.

Installed by ``tests/interop/install_clients.sh`` into ``tests/interop/node_modules`` (the test command runs it);
without node/npm or the install the tests skip and say why.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from ..conftest import REPO, server_env

BIN = REPO / "tests" / "interop" / "node_modules" / ".bin"
INSPECTOR = BIN / "mcp-inspector"
MCP_REMOTE = BIN / "mcp-remote"
TOKEN = "interop-node-token-7"

pytestmark = pytest.mark.timeout(180)


def _missing(tool: Path) -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (the Node clients need Node.js >= 20)"
    if not tool.exists():
        return f"{tool.name} is not installed: run tests/interop/install_clients.sh"
    return None


needs_inspector = pytest.mark.skipif(_missing(INSPECTOR) is not None, reason=_missing(INSPECTOR) or "")
needs_remote = pytest.mark.skipif(_missing(MCP_REMOTE) is not None, reason=_missing(MCP_REMOTE) or "")


async def _run(*argv: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
        env={**os.environ, "MCP_INSPECTOR_SECRET_STORE": "memory", "NO_COLOR": "1", **(env or {})}, cwd=cwd,
    )
    try:
        async with asyncio.timeout(120):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(), err.decode()


def _generated(out: str) -> dict[str, Any]:
    result = json.loads(out)["result"]
    assert result["isError"] is False, result
    image = result["structuredContent"]["images"][0]
    assert image["provider"] == "local" and Path(image["file_path"]).stat().st_size == image["size_bytes"]
    return image


GENERATE = ["--method", "tools/call", "--tool-name", "generate_image", "--tool-arg", "prompt=a red fox",
            "resolution=96x96", "inline=none", "--format", "json"]


@needs_inspector
@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_inspector_over_stdio(tmp_path: Path, era: str) -> None:
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"images": {
        "command": sys.executable, "args": ["-m", "mcp_image_server"], "env": server_env(tmp_path / "images")}}}))
    base = [str(INSPECTOR), "--cli", "--config", str(config), "--server", "images", "--protocol-era", era]
    code, out, err = await _run(*base, "--method", "tools/list", "--format", "json", cwd=tmp_path)
    assert code == 0, err
    assert "generate_image" in {t["name"] for t in json.loads(out)["result"]["tools"]}
    code, out, err = await _run(*base, *GENERATE, cwd=tmp_path)
    assert code == 0, err
    _generated(out)


@needs_inspector
@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_inspector_over_http_with_a_token(http_server: Any, era: str) -> None:
    async with http_server(token=TOKEN) as url:
        base = [str(INSPECTOR), "--cli", url, "--transport", "http", "--protocol-era", era,
                "--header", f"Authorization: Bearer {TOKEN}"]
        code, out, err = await _run(*base, "--method", "tools/list", "--format", "json")
        assert code == 0, err
        assert "generate_image" in {t["name"] for t in json.loads(out)["result"]["tools"]}
        code, out, err = await _run(*base, *GENERATE)
        assert code == 0, err
        image = _generated(out)
        assert image["url"].startswith(url.removesuffix("/mcp") + "/images/")
        code, _, _ = await _run(str(INSPECTOR), "--cli", url, "--transport", "http", "--protocol-era", era,
                                "--stored-auth-only", "--method", "tools/list")
        assert code != 0  # no token: refused (the Inspector reports auth_required)


@needs_remote
async def test_mcp_remote_bridges_stdio_to_our_http_endpoint(http_server: Any, tmp_path: Path) -> None:
    async with http_server(token=TOKEN) as url:
        params = StdioServerParameters(
            command=str(MCP_REMOTE),
            args=[url, "--transport", "http-only", "--allow-http", "--header", "Authorization:${AUTH_HEADER}"],
            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AUTH_HEADER": f"Bearer {TOKEN}",
                 "MCP_REMOTE_CONFIG_DIR": str(tmp_path / "mcp-remote")},
        )
        async with Client(params, mode="legacy") as client:
            tools = {t.name for t in (await client.list_tools()).tools}
            result = await client.call_tool("generate_image", {"prompt": "a red fox", "resolution": "96x96",
                                                               "inline": "none"})
    assert "generate_image" in tools and not result.is_error
    image = result.structured_content["images"][0]  # type: ignore[index]
    assert Path(image["file_path"]).stat().st_size == image["size_bytes"]

"""The MCP Inspector CLI (``@modelcontextprotocol/inspector@2.12.0``) against a real server, both eras.

Install it with ``tests/interop/install_clients.sh`` (into ``tests/interop/node_modules``, gitignored); without
node/npm or the install the tests skip and say why.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSPECTOR = ROOT / "tests" / "interop" / "node_modules" / ".bin" / "mcp-inspector"
TOKEN = "tok-inspector-3a"


def _skip_reason() -> str | None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node/npm not installed: the MCP Inspector CLI needs Node.js >= 20"
    if not INSPECTOR.exists():
        return f"MCP Inspector not installed: run tests/interop/install_clients.sh (expects {INSPECTOR})"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


async def _inspector(*args: str) -> tuple[int, str, str]:
    env = {**os.environ, "MCP_INSPECTOR_SECRET_STORE": "memory", "NO_COLOR": "1"}
    proc = await asyncio.create_subprocess_exec(
        str(INSPECTOR), "--cli", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    try:
        async with asyncio.timeout(60):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_inspector_calls_a_tool_with_a_bearer_header(start_server: Any, era: str) -> None:
    server = await start_server(tokens=(TOKEN,))
    code, out, err = await _inspector(
        server.url,
        "--transport", "http",
        "--protocol-era", era,
        "--header", f"Authorization: Bearer {TOKEN}",
        "--method", "tools/call", "--tool-name", "add", "--tool-arg", "a=2", "b=3",
        "--format", "json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)["result"]
    assert result["structuredContent"] == {"result": 5} and result["isError"] is False
    # The legacy era opened a session (the Inspector never DELETEs it); the modern era did not.
    assert len(server.manager) == (1 if era == "legacy" else 0)


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_inspector_lists_and_reads(start_server: Any, era: str) -> None:
    server = await start_server(tokens=(TOKEN,))
    common = [
        "--transport",
        "http",
        "--protocol-era",
        era,
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--format",
        "json",
    ]
    code, out, err = await _inspector(server.url, *common, "--method", "tools/list")
    assert code == 0, err
    assert {"add", "slow"} <= {t["name"] for t in json.loads(out)["result"]["tools"]}
    code, out, err = await _inspector(server.url, *common, "--method", "resources/read", "--uri", "probe://hello")
    assert code == 0, err
    assert json.loads(out)["result"]["contents"][0]["text"] == "hello from probe-server"


async def test_inspector_without_the_token_is_told_auth_is_required(start_server: Any) -> None:
    server = await start_server(tokens=(TOKEN,))
    code, out, err = await _inspector(
        server.url, "--transport", "http", "--stored-auth-only", "--method", "tools/list", "--format", "json"
    )
    assert code == 3  # auth_required: our 401 + WWW-Authenticate, and no OAuth metadata to chase
    assert TOKEN not in out + err

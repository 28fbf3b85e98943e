"""Replays the curl examples of HTTP_TRANSPORT_GUIDE.md (the ``bash replay`` blocks) against a real server."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from mcp_image_server.server import build_mcp_server

GUIDE = Path(__file__).resolve().parents[2] / "HTTP_TRANSPORT_GUIDE.md"
TOKEN = "tok-guide-0c1d"


def replay_blocks() -> list[str]:
    return re.findall(r"^```bash replay\n(.*?)^```", GUIDE.read_text(), flags=re.DOTALL | re.MULTILINE)


def test_the_guide_has_examples_for_both_eras() -> None:
    script = "\n".join(replay_blocks())
    assert "2025-11-25" in script and "2026-07-28" in script
    assert "initialize" in script and "server/discover" in script and "-X DELETE" in script


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("bash") is None, reason="needs curl and bash")
async def test_the_curl_examples_work_as_written(start_server: Any, tmp_path: Path, h: Any) -> None:
    server = await start_server(tokens=(TOKEN,), mcp=build_mcp_server)
    script = "set -euo pipefail\n" + "\n".join(replay_blocks())
    env = {**os.environ, "MCP_URL": server.url, "MCP_TOKEN": TOKEN}
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", script, cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(60):
        out_b, err_b = await proc.communicate()
    out, err = out_b.decode(), err_b.decode()
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    lines = out.splitlines()
    assert '"protocolVersion":"2025-11-25"' in out  # initialize
    assert re.search(r"^session: [0-9a-f]{32}$", out, flags=re.MULTILINE)
    assert "202" in lines  # notifications/initialized
    assert '"name":"generate_image"' in out  # tools/list
    assert int(lines[lines.index("202") + 2]) >= 1  # progress notifications counted in the SSE reply
    assert "200 image/png" in lines  # the image URL, fetched without a token
    assert (tmp_path / "image.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert lines.count("404") == 1 and "200" in lines  # DELETE, then the ended session
    assert '"supportedVersions":["2026-07-28"]' in out  # server/discover
    assert '"ok":true' in lines  # the 2026-era generate_image
    assert TOKEN not in err

"""Storage faults and crash safety against the real server process."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_image_server.store import FILE_NAME_RE, WRITE_GRACE

from .conftest import server_env

pytestmark = pytest.mark.timeout(180)


def _sc(result: Any) -> dict[str, Any]:
    assert isinstance(result.structured_content, dict), result
    return result.structured_content


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs (root only): a disk that fills up and can be made read-only."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _consistent(save_dir: Path) -> list[str]:
    """Every image has its record and vice versa; nothing half-written is visible."""
    files = [p.name for p in save_dir.iterdir() if p.is_file()]
    assert not [f for f in files if f.startswith(".tmp-")]
    records = {p.stem: json.loads(p.read_text()) for p in (save_dir / ".records").glob("*.json")}
    images = {FILE_NAME_RE.match(f)["id"]: f for f in files if FILE_NAME_RE.match(f)}  # type: ignore[index]
    assert set(images) == set(records)
    for image_id, record in records.items():
        assert (save_dir / record["file_name"]).stat().st_size == record["size_bytes"], image_id
    return sorted(images)


async def test_a_full_disk_is_a_clear_error_with_no_partial_files(stdio_client: Any, tmpfs: Path) -> None:
    async with stdio_client(env={"MCP_IMAGE_SAVE_DIR": str(tmpfs)}) as client:
        codes = []
        for i in range(12):  # noisy 512x512 PNGs are ~200 KB: the third or so cannot fit
            result = await client.call_tool(
                "generate_image",
                {"prompt": f"noise {i}", "style": "watercolor", "resolution": "512x512", "inline": "none"},
            )
            codes.append(_sc(result)["error"]["code"] if result.is_error else "ok")
            if result.is_error:
                assert "could not save the image" in _sc(result)["error"]["message"]
                break
        assert codes[0] == "ok" and codes[-1] == "storage_error"
        _consistent(tmpfs)
        providers = await client.read_resource("providers://list")  # still serving
        assert providers.contents
        for p in tmpfs.iterdir():
            if p.is_file():
                p.unlink()
        again = await client.call_tool("generate_image", {"prompt": "x", "resolution": "64x64", "inline": "none"})
        assert _sc(again)["ok"]


async def test_a_read_only_save_dir_is_a_clear_error_and_reads_still_work(stdio_client: Any, tmpfs: Path) -> None:
    async with stdio_client(env={"MCP_IMAGE_SAVE_DIR": str(tmpfs)}) as client:
        first = _sc(await client.call_tool("generate_image", {"prompt": "x", "resolution": "64x64"}))
        subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
        result = await client.call_tool("generate_image", {"prompt": "y", "resolution": "64x64"})
        assert _sc(result)["error"]["code"] == "storage_error"
        got = await client.call_tool("get_image_data", {"image_id": first["images"][0]["image_id"]})
        assert _sc(got)["ok"]
    assert len(_consistent(tmpfs)) == 1


async def test_a_save_dir_removed_at_run_time_is_recreated(stdio_client: Any, tmp_path: Path) -> None:
    async with stdio_client() as client:
        await client.call_tool("generate_image", {"prompt": "x", "resolution": "64x64", "inline": "none"})
        shutil.rmtree(tmp_path / "images")
        again = await client.call_tool("generate_image", {"prompt": "x", "resolution": "64x64", "inline": "none"})
        assert _sc(again)["ok"] and Path(_sc(again)["images"][0]["file_path"]).exists()


class RawServer:
    """The server process spoken to with raw JSON-RPC lines, so it can be killed at any moment."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.next_id = 1

    @classmethod
    async def start(cls, save_dir: Path, cwd: Path) -> RawServer:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mcp_image_server", cwd=cwd, env=server_env(save_dir),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )
        server = cls(proc)
        await server.request("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                            "clientInfo": {"name": "crash", "version": "1"}})
        await server.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return server

    async def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        await self.proc.stdin.drain()

    async def call(self, method: str, params: dict[str, Any]) -> int:
        rid, self.next_id = self.next_id, self.next_id + 1
        await self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        return rid

    async def reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(60):
            while True:
                line = await self.proc.stdout.readline()
                assert line, "server exited"
                message = json.loads(line)
                if "id" in message:
                    return message

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        await self.call(method, params)
        return await self.reply()

    async def kill(self) -> None:
        self.proc.kill()
        await self.proc.wait()


async def test_kill_9_during_writes_loses_nothing_reported(tmp_path: Path) -> None:
    save_dir = tmp_path / "images"
    rng = random.Random(1234)
    reported: dict[str, tuple[str, int]] = {}
    for _ in range(5):
        server = await RawServer.start(save_dir, tmp_path)
        for i in range(12):
            await server.call("tools/call", {"name": "generate_image", "arguments": {
                "prompt": f"crash {i}", "n": 4, "resolution": "192x192", "inline": "none"}})
        for _ in range(rng.randint(0, 6)):
            reply = await server.reply()
            for image in reply["result"]["structuredContent"]["images"]:
                reported[image["image_id"]] = (image["file_path"], image["size_bytes"])
        await server.kill()  # SIGKILL while the other generations are rendering and writing
    # Restart after the grace: what the kills left is then a crash's, not another process's write.
    old = time.time() - WRITE_GRACE - 1
    for path in [*save_dir.iterdir(), *(save_dir / ".records").iterdir()]:
        os.utime(path, (old, old))
    server = await RawServer.start(save_dir, tmp_path)
    try:
        on_disk = _consistent(save_dir)
        assert set(reported) <= set(on_disk)
        for image_id, (path, size) in reported.items():
            reply = await server.request("tools/call", {"name": "get_image_data", "arguments": {"image_id": image_id}})
            data = base64.b64decode(reply["result"]["structuredContent"]["base64"])
            assert len(data) == size and Path(path).read_bytes() == data
    finally:
        await server.kill()
    assert reported, "no generation finished before a kill; the test proved nothing"

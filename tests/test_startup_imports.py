"""A stdio server with no keys answers ``initialize`` before it imports Pillow, aiohttp or a vendor SDK.

The server runs unchanged (``runpy`` of ``mcp_image_server``, as ``python -m`` does) under a
``python -c`` wrapper that puts an observer first on ``sys.meta_path``: it writes the name of
every module about to be imported to stderr and lets the normal finders do the import. Unlike
``-X importtime`` or the ``import`` audit event, it also sees ``importlib.import_module``.
stderr shares the stdout pipe, and writes to one pipe keep their order, so the names read before
the initialize reply are exactly the imports started before the reply was written.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path
from typing import Final

import pytest

from .conftest import server_env

pytestmark = pytest.mark.timeout(90)

HEAVY: Final = (
    "PIL", "aiohttp", "openai", "google.genai", "tencentcloud", "volcenginesdkarkruntime", "redis", "jwt",
    "numpy", "boto3", "botocore", "obstore",
)
"""What the first ``initialize`` of a keyless stdio server does not need."""

MARK: Final = "startup-imports: "

WRAPPER: Final = f"""
import os, runpy, sys

class ImportObserver:
    def find_spec(self, name, path=None, target=None):
        os.write(2, ({MARK!r} + name + "\\n").encode())
        return None  # the next finder imports it

sys.meta_path.insert(0, ImportObserver())
runpy.run_module("mcp_image_server", run_name="__main__", alter_sys=True)
"""

INITIALIZE: Final = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent (``google``) is missing
        return False


async def _imports_before_initialize(env: dict[str, str], cwd: Path) -> tuple[dict[str, object], set[str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRAPPER, cwd=cwd, env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, limit=1 << 20,
    )
    assert proc.stdin is not None and proc.stdout is not None
    names: set[str] = set()
    try:
        proc.stdin.write(json.dumps(INITIALIZE).encode() + b"\n")
        await proc.stdin.drain()
        async with asyncio.timeout(60):
            while True:
                line = (await proc.stdout.readline()).decode("utf-8", "replace")
                assert line, "the server exited before answering initialize"
                head, sep, reply = line.partition('{"jsonrpc"')
                if MARK in head:  # a name written just before the reply may share its line
                    names.add(head.partition(MARK)[2].strip())
                if sep:
                    message: dict[str, object] = json.loads(sep + reply)
                    break
        proc.stdin.close()
        async with asyncio.timeout(30):
            await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return message, names


async def test_initialize_is_answered_before_any_heavy_module_is_imported(tmp_path: Path) -> None:
    message, names = await _imports_before_initialize(server_env(tmp_path / "images"), tmp_path)

    assert message["id"] == 1 and "result" in message, message
    # The observer saw the server's own start-up, including importlib.import_module's imports.
    assert {"mcp_types", "mcp_image_server.server", "mcp_image_server.providers.local"} <= names
    installed = [h for h in HEAVY if _installed(h)]
    assert "PIL" in installed and "aiohttp" in installed  # both are hard dependencies
    early = sorted(n for n in names for h in installed if n == h or n.startswith(h + "."))
    assert early == []

"""stdio start-up: spawn -> initialize result, ours vs a minimal SDK ``MCPServer``, same process tree.

Run by hand:  .venv/bin/python benchmarks/startup.py [--runs 10]
Prints the median (and min/max) of each and the ratio ours/reference (goal: <= 1.3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

REFERENCE = """
from mcp.server.mcpserver import MCPServer
mcp = MCPServer("reference")

@mcp.tool()
def add(a: int, b: int) -> int:
    return a + b

mcp.run("stdio")
"""

INIT = json.dumps({
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
}) + "\n"


async def spawn_to_initialize(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdin and proc.stdout
    proc.stdin.write(INIT.encode())
    await proc.stdin.drain()
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    elapsed = time.perf_counter() - start
    assert b'"result"' in line, line
    proc.stdin.close()
    await proc.wait()
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "reference_server.py"
        ref.write_text(REFERENCE)
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "MCP_IMAGE_SAVE_DIR": f"{tmp}/img",
               "HOME": tmp}
        subjects = {
            "reference MCPServer": [sys.executable, str(ref)],
            "mcp-image-server": [sys.executable, "-m", "mcp_image_server"],
        }
        times: dict[str, list[float]] = {name: [] for name in subjects}
        for argv in subjects.values():  # warm the OS file cache once each
            await spawn_to_initialize(argv, env)
        for _ in range(args.runs):  # interleave so drift hits both alike
            for name, argv in subjects.items():
                times[name].append(await spawn_to_initialize(argv, env))
    for name, values in times.items():
        print(f"{name:22s} median {statistics.median(values) * 1000:7.1f} ms"
              f"  (min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f}, n={len(values)})")
    ratio = statistics.median(times["mcp-image-server"]) / statistics.median(times["reference MCPServer"])
    print(f"ratio ours/reference: {ratio:.2f} (goal <= 1.30)")


if __name__ == "__main__":
    asyncio.run(main())

"""100 concurrent generations against an emulated provider that takes 1 s per call.

Run by hand:  .venv/bin/python benchmarks/jobs_concurrency.py [--jobs 100] [--latency 1.0]
Drives the real server (in process) through the SDK's MCP client, every call a
generate_image on the OpenAI adapter against the wire emulator, which runs in its own
process as a real vendor would. One warm-up call first (SDK import, connection pool).
Prints the wall time, the ideal (one provider latency) and the ratio; the goal is well
under 2x the latency.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcp import Client  # noqa: E402

from mcp_image_server.cli import configure_event_loop  # noqa: E402
from mcp_image_server.config import load_settings  # noqa: E402
from mcp_image_server.server import build_mcp_server  # noqa: E402
from mcp_image_server.service import ImageService  # noqa: E402

EMULATOR = """
import asyncio, sys
from tests.emulators import OpenAIEmulator
async def main():
    async with OpenAIEmulator(api_key="sk-FAKE-bench", latency=float(sys.argv[1])) as emu:
        print(emu.base_url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
"""


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--latency", type=float, default=1.0)
    args = parser.parse_args()
    configure_event_loop()  # as the CLI does
    emulator = await asyncio.create_subprocess_exec(
        sys.executable, "-c", EMULATOR, str(args.latency), cwd=Path(__file__).resolve().parent.parent,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    assert emulator.stdout is not None and emulator.stdin is not None
    base_url = (await emulator.stdout.readline()).decode().strip()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings({
                "MCP_IMAGE_SAVE_DIR": tmp, "OPENAI_API_KEY": "sk-FAKE-bench", "OPENAI_BASE_URL": base_url,
                "MCP_OPENAI_MAX_CONCURRENCY": str(args.jobs), "MCP_MAX_JOBS": str(args.jobs),
                "MCP_LOG_LEVEL": "WARNING",
            })
            service = ImageService(settings)
            await service.start()
            mcp = build_mcp_server(service)
            async with Client(mcp) as client:
                await client.list_tools()
                latencies: list[float] = []
                warm = await client.call_tool("generate_image", {"prompt": "warm-up", "provider": "openai"})
                assert not warm.is_error, warm.structured_content

                async def one(i: int) -> None:
                    start = time.perf_counter()
                    result = await client.call_tool("generate_image", {
                        "prompt": f"bench {i}", "provider": "openai", "inline": "none", "resolution": "1024x1024"})
                    assert not result.is_error, result.structured_content
                    latencies.append(time.perf_counter() - start)

                start = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(args.jobs)))
                wall = time.perf_counter() - start
            await service.aclose()
    finally:
        emulator.stdin.close()
        await emulator.wait()
    print(f"{args.jobs} generations, provider latency {args.latency:.2f} s each")
    print(f"wall time        {wall:6.2f} s  (ideal {args.latency:.2f} s, ratio {wall / args.latency:.2f})")
    print(f"per-call latency p50 {statistics.median(latencies):.2f} s, max {max(latencies):.2f} s")


if __name__ == "__main__":
    asyncio.run(main())

"""A bounded soak of the HTTP server: 50 sessions mixing catalog reads, get_image_data and
generations on the ``local`` provider and a slow emulated provider.

Run by hand:  .venv/bin/python benchmarks/soak.py [--duration 300] [--sessions 50]
The server and the emulator each run in their own process; clients are the official SDK
client (half in each protocol era). Prints throughput, p50/p99 per interval, errors, and
the server's RSS and open file descriptors idle, after warm-up, at the end of the load
and after the sessions closed. Targets: zero errors; RSS within 10% between warm-up and
the end; as many descriptors after the load as before it. The server runs with
``MCP_JOB_TTL`` equal to the warm-up (see ``run``) so designed job retention is not read as
growth. ``run()`` is also called by
``tests/test_soak.py`` for a 30 s version in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TOKEN = "soak-token-0001"

EMULATOR = """
import asyncio, sys
from tests.emulators import OpenAIEmulator
async def main():
    async with OpenAIEmulator(api_key="sk-FAKE-soak", latency=float(sys.argv[1])) as emu:
        print(emu.base_url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
"""


@dataclass
class Stats:
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (finished at, seconds)
    errors: list[str] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)


async def _drain(stream: asyncio.StreamReader) -> None:
    """Keep reading the server's log so a full pipe never blocks it."""
    while await stream.readline():
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _remote_ports() -> dict[str, int]:
    """socket inode -> remote TCP port, for every TCP socket on the machine."""
    ports: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    cols = line.split()
                    ports[cols[9]] = int(cols[2].rsplit(":", 1)[1], 16)
        except OSError:
            continue
    return ports


def _proc_usage(pid: int, pooled_port: int = -1) -> tuple[int, int]:
    """(RSS in KiB, open descriptors) of a process, from /proc.

    Keep-alive connections to ``pooled_port`` (the provider) are left out: the vendor SDK
    pools them on purpose, bounded by its connection limit, so they are not a leak.
    """
    rss = 0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    remote = _remote_ports()
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and remote.get(target[8:-1]) == pooled_port:
            continue
        count += 1
    return rss, count


async def _session(url: str, mode: str, stop_at: float, stats: Stats, rng: random.Random) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {TOKEN}"}
    image_ids: list[str] = []
    async with httpx2.AsyncClient(headers=headers, timeout=120) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:  # type: ignore[arg-type]
            while time.monotonic() < stop_at:
                kind = rng.choices(["catalog", "data", "local", "slow"], weights=[4, 3, 2, 1])[0]
                if kind == "data" and not image_ids:
                    kind = "local"
                start = time.monotonic()
                try:
                    if kind == "catalog":
                        uri = rng.choice(["providers://list", "styles://list", "resolutions://provider/local"])
                        json.loads((await client.read_resource(uri)).contents[0].text)  # type: ignore[union-attr]
                    elif kind == "data":
                        result = await client.call_tool("get_image_data", {"image_id": rng.choice(image_ids)})
                        assert not result.is_error, result.structured_content
                    else:
                        provider = "local" if kind == "local" else "openai"
                        result = await client.call_tool("generate_image", {
                            "prompt": f"soak {rng.random()}", "provider": provider, "resolution":
                            "256x256" if provider == "local" else "1024x1024", "inline": "none"})
                        assert not result.is_error, result.structured_content
                        image_ids.extend(i["image_id"] for i in result.structured_content["images"])  # type: ignore[index]
                        del image_ids[:-20]
                except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                    stats.errors.append(f"{kind}: {type(exc).__name__}: {exc}"[:300])
                    continue
                now = time.monotonic()
                stats.latencies.append((now, now - start))
                stats.by_kind[kind] = stats.by_kind.get(kind, 0) + 1


async def run(duration: float = 300, sessions: int = 50, interval: float = 10, slow_latency: float = 2.0,
              quiet: bool = False) -> dict[str, Any]:
    """Run the soak; returns the figures (also printed unless ``quiet``)."""
    say = (lambda *a: None) if quiet else print  # noqa: E731
    emulator = await asyncio.create_subprocess_exec(
        sys.executable, "-c", EMULATOR, str(slow_latency), cwd=REPO,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    assert emulator.stdout is not None and emulator.stdin is not None
    base_url = (await emulator.stdout.readline()).decode().strip()
    provider_port = int(base_url.split(":")[2].split("/")[0])
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "PATH": os.environ.get("PATH", ""), "HOME": tmp, "PYTHONPATH": str(REPO), "MCP_TRANSPORT": "http",
            "MCP_PORT": str(port), "MCP_AUTH_TOKEN": TOKEN, "MCP_IMAGE_SAVE_DIR": f"{tmp}/img",
            "OPENAI_API_KEY": "sk-FAKE-soak", "OPENAI_BASE_URL": base_url, "MCP_OPENAI_MAX_CONCURRENCY": "16",
            "MCP_LOG_LEVEL": "INFO",
            # Finished jobs are kept MCP_JOB_TTL (an hour by default) on purpose; a TTL as long as
            # the warm-up lets that retention reach its steady state before RSS is first read, so
            # growth after warm-up means a leak, not the job history doing its job.
            "MCP_JOB_TTL": str(int(max(5.0, min(60.0, duration / 5)))),
            # Allocator tuning set by whoever runs the soak (MALLOC_ARENA_MAX=2, say) reaches the server.
            **{k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
        }
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mcp_image_server", env=env, cwd=tmp, stderr=asyncio.subprocess.PIPE,
        )
        assert server.stderr is not None
        url = f"http://127.0.0.1:{port}/mcp"
        try:
            async with asyncio.timeout(30):  # the server logs its endpoint once it listens
                while b"MCP Streamable HTTP endpoint" not in (line := await server.stderr.readline()):
                    assert line, "the server exited before listening"
            drain = asyncio.create_task(_drain(server.stderr))
            idle_usage = _proc_usage(server.pid, provider_port)
            stats = Stats()
            rng = random.Random(7)
            # Job retention (MCP_JOB_TTL = warm-up) is at its steady state by then; the record cache
            # (2048 records, ~85 s of this load) is still filling, and that growth counts.
            warmup = min(60.0, duration / 5)
            begin = time.monotonic()
            stop_at = begin + duration
            tasks = [asyncio.create_task(_session(url, "legacy" if i % 2 else "auto", stop_at, stats,
                                                  random.Random(rng.random()))) for i in range(sessions)]
            await asyncio.sleep(warmup)
            start_usage = end_usage = _proc_usage(server.pid, provider_port)
            windows: list[str] = []
            while not all(t.done() for t in tasks):
                await asyncio.wait(tasks, timeout=interval)
                now = time.monotonic()
                usage = _proc_usage(server.pid, provider_port)
                if now < stop_at:
                    end_usage = usage  # the last reading while still under load
                recent = [d for at, d in stats.latencies if now - interval <= at <= now]
                if recent:
                    q = statistics.quantiles(recent, n=100) if len(recent) > 1 else [recent[0]] * 99
                    line = (f"t={now - begin:6.1f}s  {len(recent) / interval:7.1f} ops/s  p50 {q[49] * 1000:7.1f} ms"
                            f"  p99 {q[98] * 1000:7.1f} ms  errors {len(stats.errors)}"
                            f"  rss {usage[0] / 1024:6.1f} MiB  fds {usage[1]}")
                    windows.append(line)
                    say(line)
            for t in tasks:
                if t.exception() is not None:
                    stats.errors.append(f"session: {t.exception()!r}"[:300])
            after_usage = _proc_usage(server.pid, provider_port)
        finally:
            server.terminate()
            if "drain" in locals():
                drain.cancel()
            async with asyncio.timeout(30):
                await server.wait()
            emulator.stdin.close()
            await emulator.wait()
    total = len(stats.latencies)
    all_lat = [d for _, d in stats.latencies]
    q = statistics.quantiles(all_lat, n=100) if total > 1 else [0.0] * 99
    figures = {
        "duration_s": duration, "sessions": sessions, "operations": total, "by_kind": stats.by_kind,
        "throughput_ops_s": round(total / duration, 1), "p50_ms": round(q[49] * 1000, 1),
        "p99_ms": round(q[98] * 1000, 1), "errors": len(stats.errors), "error_samples": stats.errors[:5],
        "rss_kib_idle_warm_end": [idle_usage[0], start_usage[0], end_usage[0]],
        "fds_idle_warm_end_after": [idle_usage[1], start_usage[1], end_usage[1], after_usage[1]],
        "rss_growth": round(end_usage[0] / start_usage[0] - 1, 3),
        "fd_leak": after_usage[1] - idle_usage[1],
    }
    say(json.dumps(figures, indent=2))
    return figures


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--duration", type=float, default=300)
    p.add_argument("--sessions", type=int, default=50)
    p.add_argument("--slow-latency", type=float, default=2.0)
    args = p.parse_args()
    figures = asyncio.run(run(args.duration, args.sessions, slow_latency=args.slow_latency))
    ok = figures["errors"] == 0 and figures["rss_growth"] <= 0.10 and figures["fd_leak"] <= 0
    print("PASS" if ok else "FAIL", "(targets: 0 errors, RSS within +10% under load, no descriptor left after)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

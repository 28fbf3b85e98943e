"""Server CPU and memory per ``generate_image`` over HTTP, against the OpenAI wire emulator.

Run by hand, not a test::

    .venv/bin/python benchmarks/generate_profile.py               # ~1 minute
    .venv/bin/python benchmarks/generate_profile.py --profile     # plus the hottest functions (py-spy or cProfile)

Starts ``python -m tests.emulators`` (the OpenAI emulator answers a small PNG at latency 0) and
``python -m mcp_image_server --transport http`` pointed at it, each a child process, then drives
one 2025-11-25 session with ``RawHTTP`` (a raw keep-alive client that costs the generator little).
It prints, per figure, the server's CPU time per call read from ``/proc/<pid>/stat`` (steadier
than rates on a shared machine), calls/s and latency percentiles:

* resident memory (``VmRSS``) right after start, i.e. the imports and the idle service, and after
  the first generation (which imports the vendor SDK);
* ``inline="thumbnail"`` (the default) sequentially, the first ``--warmup`` calls not counted; the
  resident memory after these ``--memory-calls`` generations;
* ``inline="none"`` sequentially;
* ``inline="none"`` and the default at concurrency ``--concurrency`` over as many connections.

``--profile`` samples the server with py-spy (every thread, idle excluded) during the
``inline="none"`` figures only, after the warm-up, and prints the top functions by inclusive and
own samples; without py-spy (or with ``--cprofile``) it runs the whole server under cProfile (the
main thread only) and prints its cumulative and own-time tables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.http_load import BASE_HEADERS, RawHTTP, _cpu_seconds, _free_port, _rpc, _rss, _wait_ready

LEGACY = "2025-11-25"


@dataclass
class Figure:
    """One measured run: how many calls, their wall time and latencies, and the server CPU they cost."""

    label: str
    calls: int
    seconds: float
    server_cpu_s: float
    latencies: list[float]

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def line(self) -> str:
        return (
            f"{self.label:28} {self.server_cpu_s / self.calls * 1000:7.2f} ms CPU/call  "
            f"{self.calls / self.seconds:7.1f} calls/s  p50 {self.pct(0.5):6.1f} ms  p99 {self.pct(0.99):6.1f} ms"
            f"  ({self.calls} calls)"
        )


def _start_emulator(env: dict[str, str]) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """The vendor emulators; returns the process and the variables pointing a server at them."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.emulators", "--base-port", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    found: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if m := re.match(r"export (OPENAI_\w+)=(\S+)", line):
            found[m[1]] = m[2]
        if line.startswith("# Ctrl-C"):
            return proc, found
    proc.kill()
    raise RuntimeError("the emulators did not start")


def _server_command(port: int, profile: str | None, prof_out: Path) -> list[str]:
    serve = ["-m", "mcp_image_server", "--transport", "http", "--port", str(port)]
    if profile == "cprofile":
        return [sys.executable, "-m", "cProfile", "-o", str(prof_out), *serve]
    return [sys.executable, *serve]


async def _session(conn: RawHTTP) -> dict[str, str]:
    init = {
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "profile", "version": "1"}},
    }
    _, headers = await _rpc(conn, init, BASE_HEADERS)
    session = {**BASE_HEADERS, "Mcp-Session-Id": headers["mcp-session-id"], "MCP-Protocol-Version": LEGACY}
    await _rpc(conn, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    return session


async def _generate(conn: RawHTTP, headers: dict[str, str], n: int, inline: str | None) -> None:
    arguments: dict[str, Any] = {"prompt": f"a red fox in the snow, take {n}"}
    if inline is not None:
        arguments["inline"] = inline
    body = {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": "generate_image", "arguments": arguments}}
    reply, _ = await _rpc(conn, body, headers)
    result = (reply or {}).get("result") or {}
    if result.get("isError") or not (result.get("structuredContent") or {}).get("images"):
        raise RuntimeError(f"generate_image failed: {json.dumps(reply)[:400]}")


async def _measure(
    label: str, pid: int, conns: list[RawHTTP], headers: dict[str, str], calls: int, inline: str | None
) -> Figure:
    """``calls`` generations spread over ``len(conns)`` concurrent workers."""
    latencies: list[float] = []
    todo = iter(range(calls))

    async def worker(conn: RawHTTP) -> None:
        for n in todo:
            t0 = time.perf_counter()
            await _generate(conn, headers, n, inline)
            latencies.append(time.perf_counter() - t0)

    cpu0, t0 = _cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    return Figure(label, calls, time.perf_counter() - t0, _cpu_seconds(pid) - cpu0, latencies)


async def drive(args: argparse.Namespace, port: int, pid: int, spy: list[str] | None) -> None:
    """The figures; with ``spy`` (a py-spy command) only the warm-up and ``inline="none"`` calls, sampled."""
    await _wait_ready(port)
    await asyncio.sleep(1.0)  # let start-up work (the first store sweep) finish before the baseline
    print(f"RSS right after start          {_rss(pid) / 2**20:7.1f} MB", flush=True)
    conns = [RawHTTP("127.0.0.1", port) for _ in range(args.concurrency)]
    try:
        headers = await _session(conns[0])
        await _measure("first call", pid, conns[:1], headers, 1, "none")
        print(f"RSS after the first generation {_rss(pid) / 2**20:7.1f} MB (the vendor SDK imported on first use)",
              flush=True)
        await _measure("warm-up", pid, conns[:1], headers, args.warmup - 1, None)
        if spy is not None:
            await _sampled(spy, pid, conns, headers, args)
            return
        default = await _measure("inline default, c=1", pid, conns[:1], headers, args.memory_calls - args.warmup, None)
        print(default.line(), flush=True)
        print(f"RSS after {args.memory_calls} generations       {_rss(pid) / 2**20:7.1f} MB", flush=True)
        none = await _measure('inline "none", c=1', pid, conns[:1], headers, args.calls, "none")
        print(none.line(), flush=True)
        c = args.concurrency
        print((await _measure(f'inline "none", c={c}', pid, conns, headers, args.calls, "none")).line(), flush=True)
        print((await _measure(f"inline default, c={c}", pid, conns, headers, args.calls, None)).line(), flush=True)
        print(f"RSS at the end                 {_rss(pid) / 2**20:7.1f} MB", flush=True)
    finally:
        for conn in conns:
            await conn.close()


def _spawn(command: list[str]) -> subprocess.Popen[bytes]:
    """Start py-spy (a quick fork and exec: fine on the generator's loop between figures)."""
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)


async def _sampled(spy: list[str], pid: int, conns: list[RawHTTP], headers: dict[str, str],
                   args: argparse.Namespace) -> None:
    """Sample only the steady state: ``inline="none"`` at c=1, then at ``--concurrency``."""
    proc = _spawn([*spy, "--pid", str(pid)])
    await asyncio.sleep(1.0)  # py-spy attaches
    try:
        print((await _measure('inline "none", c=1', pid, conns[:1], headers, args.calls, "none")).line(), flush=True)
        c = args.concurrency
        print((await _measure(f'inline "none", c={c}', pid, conns, headers, args.calls, "none")).line(), flush=True)
    finally:
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)


def _py_spy() -> str | None:
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    return found


def _print_cprofile(path: Path, top: int) -> None:
    import pstats

    stats = pstats.Stats(str(path))
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def _print_py_spy(path: Path, top: int) -> None:
    """Top functions by inclusive and own samples, from py-spy's collapsed stacks (all threads)."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";") if not f.startswith("thread (")]
        if not frames:
            continue
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n
    for title, table in (("inclusive", inclusive), ("own", own)):
        print(f"\ntop {top} functions by {title} samples (of {total}, every thread, idle excluded):")
        for frame, n in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            print(f"  {100 * n / total:5.1f}%  {frame[:150]}")


def main(args: argparse.Namespace) -> None:
    save_dir = Path(tempfile.mkdtemp(prefix="genprof-images-"))
    work = Path(tempfile.mkdtemp(prefix="genprof-"))  # the server's cwd: no stray ./.env applies
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_", "OPENAI_"))}
    emulator, urls = _start_emulator({**base, "PYTHONPATH": str(ROOT)})
    port = _free_port()
    profile = args.profile and ("py-spy" if _py_spy() and not args.cprofile else "cprofile")
    env = {
        **base, **urls, "PYTHONPATH": str(ROOT), "MCP_DEFAULT_PROVIDER": "openai", "MCP_IMAGE_SAVE_DIR": str(save_dir),
        "MCP_LOG_LEVEL": "WARNING", "XDG_DATA_HOME": str(work / "data"),
    }
    prof_out = work / "server.prof"
    server = subprocess.Popen(_server_command(port, profile or None, prof_out), cwd=work, env=env)
    spy_out = work / "spy.txt"
    spy = None
    if profile == "py-spy":
        spy = [str(_py_spy()), "record", "--format", "raw", "--threads", "--nonblocking", "-r", "500", "-o",
               str(spy_out)]
    try:
        asyncio.run(drive(args, port, server.pid, spy))
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        emulator.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            emulator.wait(10)
    if profile == "cprofile" and prof_out.exists():
        _print_cprofile(prof_out, args.top)
    elif profile == "py-spy":
        if spy_out.exists():
            _print_py_spy(spy_out, args.top)
        else:
            print("py-spy wrote nothing (ptrace not permitted?); try --profile --cprofile", file=sys.stderr)
    shutil.rmtree(save_dir, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200, help="calls per CPU figure")
    parser.add_argument("--memory-calls", type=int, default=200, help="generations before the RSS figure")
    parser.add_argument("--warmup", type=int, default=10, help="first calls not counted in the CPU figures")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--profile", action="store_true", help="sample the server with py-spy (else cProfile)")
    parser.add_argument("--cprofile", action="store_true", help="with --profile: cProfile even if py-spy is there")
    parser.add_argument("--top", type=int, default=40, help="functions listed by --profile")
    main(parser.parse_args())

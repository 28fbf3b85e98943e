"""Load benchmark: our aiohttp transport vs the SDK's own ``MCPServer.streamable_http_app()`` (uvicorn).

Run by hand, not a test::

    .venv/bin/python benchmarks/http_load.py                 # full run, ~2 minutes
    .venv/bin/python benchmarks/http_load.py --duration 2    # quicker, noisier

Both servers run as child processes of this script serving the same ``MCPServer`` (a cheap
async ``add`` tool, and ``add_sync``, the same as a sync function), each pinned to its own core
where the machine has two or more; the load generator pins itself to the core of the server it
is *not* driving. Each figure is measured in short slices that alternate between the two
servers (``--rounds``), so a change in machine speed during the run (other tenants, clock
scaling) weighs on both alike. The generator speaks raw HTTP/1.1 over keep-alive connections
(``RawHTTP``): a general-purpose client costs more CPU per request than the servers do and
would flatten every ratio. One generator drives both in the same run and prints every figure with the ratio
ours/reference:

* ``ping`` requests/s and p50/p99 latency at concurrency 1, 16, 64 over 8 sessions (2025-11-25);
* full session lifecycles/s (initialize, initialized, tools/list, one call, DELETE);
* 2026-07-28 per-request ``tools/call`` calls/s of ``add`` (the era has no ``ping``);
* the same with ``add_sync``, for information: the SDK runs a sync tool in a worker thread,
  and that hop (about 100 us of server CPU, the same in both servers) narrows the ratio;
* resident memory per idle session, measured over 1000 sessions once they are idle.

Targets (issue 3): >= 2x the reference on calls/s and lifecycles/s, p99 no worse, <= 10 KB
per idle session. Rates swing when other work shares the machine; the server-CPU-per-operation
rows are the steadier comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LEGACY = "2025-11-25"
MODERN = "2026-07-28"
BASE_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
IDLE_SETTLE_S = 13.0
"""Wait before reading idle memory: past our 10 s loop linger (and the same wait for the reference)."""


# --- the servers (child processes) ---------------------------------------------------------------


def _bench_mcp() -> Any:
    from mcp.server.mcpserver import MCPServer

    mcp = MCPServer("bench", version="1.0")

    @mcp.tool()
    async def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @mcp.tool()
    def add_sync(a: int, b: int) -> int:
        """Add two numbers in a worker thread (the SDK runs every sync tool in one)."""
        return a + b

    return mcp


def serve_ours(port: int) -> None:
    sys.path.insert(0, str(ROOT))
    import dataclasses

    from mcp_image_server.config import load_settings
    from mcp_image_server.service import ImageService
    from mcp_image_server.transports.http import run_http

    logging.basicConfig(level=logging.WARNING)
    settings = dataclasses.replace(
        load_settings({}, overrides={"MCP_LOG_LEVEL": "WARNING"}),
        transport="http",
        host="127.0.0.1",
        port=port,
        image_save_dir=Path(tempfile.mkdtemp(prefix="bench-images-")),
        max_sessions=1_000_000,
    )

    async def main() -> None:
        service = ImageService(settings)
        await service.start()
        try:
            await run_http(service, _bench_mcp(), settings, shutdown_timeout=1)
        finally:
            await service.aclose()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def serve_reference(port: int) -> None:
    import uvicorn

    logging.basicConfig(level=logging.WARNING)
    app = _bench_mcp().streamable_http_app(max_sessions=1_000_000)
    uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)).run()


# --- the load generator --------------------------------------------------------------------------


@dataclass
class Result:
    count: int
    seconds: float
    latencies: list[float]
    server_cpu: float = float("nan")
    """Share of one core the server used during the run (1.0 = saturated)."""
    client_cpu: float = float("nan")

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @classmethod
    def pooled(cls, slices: list[Result]) -> Result:
        """One figure from the interleaved slices of a run (CPU shares weighted by time)."""
        seconds = sum(r.seconds for r in slices)
        return cls(
            sum(r.count for r in slices),
            seconds,
            [t for r in slices for t in r.latencies],
            sum(r.server_cpu * r.seconds for r in slices) / seconds,
            sum(r.client_cpu * r.seconds for r in slices) / seconds,
        )


class RawHTTP:
    """One keep-alive HTTP/1.1 connection speaking just enough HTTP for this benchmark.

    A general client (aiohttp's costs ~200 us of CPU per request here) would be part of every
    latency figure and would cap throughput before the servers do; this one costs a small
    fraction of that, so the figures describe the servers. It reads ``Content-Length`` and
    chunked bodies (the reference answers in SSE, chunked) and reconnects if the server closed
    an idle connection.
    """

    def __init__(self, host: str, port: int) -> None:
        self._addr = (host, port)
        self._host = f"{host}:{port}".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        head = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + self._host, b"Content-Length: %d" % len(body)]
        head += [f"{k}: {v}".encode() for k, v in headers.items()]
        raw = b"\r\n".join(head) + b"\r\n\r\n" + body
        for attempt in (1, 2):
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection(*self._addr)
            try:
                self._writer.write(raw)
                return await self._response()
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _response(self) -> tuple[int, dict[str, str], bytes]:
        assert self._reader is not None
        lines = (await self._reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self._reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while size := int((await self._reader.readline()).split(b";", 1)[0], 16):
                parts.append((await self._reader.readexactly(size + 2))[:-2])
            await self._reader.readline()
            body = b"".join(parts)
        else:
            body = b""
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers, body

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None


async def _rpc(
    conn: RawHTTP, body: dict[str, Any], headers: dict[str, str]
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """POST one message; return the JSON-RPC reply (JSON or SSE) and the response headers."""
    status, resp_headers, raw = await conn.request("POST", "/mcp", headers, json.dumps(body).encode())
    if status >= 400:
        raise RuntimeError(f"{body.get('method')}: HTTP {status} {raw[:200]!r}")
    if not raw:
        return None, resp_headers
    if resp_headers.get("content-type", "").startswith("text/event-stream"):
        for line in raw.decode().splitlines():
            if line.startswith("data:") and '"id"' in line:
                return json.loads(line[5:]), resp_headers
        raise RuntimeError("SSE response without a reply")
    return json.loads(raw), resp_headers


async def open_session(conn: RawHTTP) -> str:
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
    }
    _, headers = await _rpc(conn, init, BASE_HEADERS)
    sid = headers["mcp-session-id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    await _rpc(conn, note, _session_headers(sid))
    return sid


def _session_headers(sid: str) -> dict[str, str]:
    return {**BASE_HEADERS, "Mcp-Session-Id": sid, "MCP-Protocol-Version": LEGACY}


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_load(
    concurrency: int, duration: float, op: Callable[[int, int], Awaitable[None]], server_pid: int | None = None
) -> Result:
    latencies: list[float] = []
    deadline = time.perf_counter() + duration

    async def worker(w: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await op(w, n)
            latencies.append(time.perf_counter() - t0)
            n += 1

    start = time.perf_counter()
    cpu0 = time.process_time()
    srv0 = _cpu_seconds(server_pid) if server_pid else 0.0
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    wall = time.perf_counter() - start
    result = Result(len(latencies), wall, latencies, client_cpu=(time.process_time() - cpu0) / wall)
    if server_pid:
        result.server_cpu = (_cpu_seconds(server_pid) - srv0) / wall
    return result


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


ROWS: tuple[tuple[str, str, int], ...] = (
    ("ping c=1", "ping", 1),
    ("ping c=16", "ping", 16),
    ("ping c=64", "ping", 64),
    ("lifecycle c=16", "lifecycle", 16),
    ("2026 call c=16", "add", 16),
    ("2026 sync tool", "add_sync", 16),
)
"""(figure, operation, concurrency)."""


@dataclass
class Target:
    """One server under test and the operations the generator runs against it."""

    name: str
    port: int
    pid: int
    generator_cores: set[int] | None
    """Where the generator runs while driving this server (the other core), if pinning is possible."""
    conns: list[RawHTTP]
    ops: dict[str, Callable[[int, int], Awaitable[None]]]

    async def run(self, concurrency: int, seconds: float, op: str) -> Result:
        if self.generator_cores:
            _pin(0, self.generator_cores)
        return await run_load(concurrency, seconds, self.ops[op], self.pid)


async def prepare(name: str, port: int, pid: int, generator_cores: set[int] | None) -> Target:
    conns = [RawHTTP("127.0.0.1", port) for _ in range(64)]  # one connection per worker
    sessions = [await open_session(conns[0]) for _ in range(8)]

    async def ping(w: int, n: int) -> None:
        body = {"jsonrpc": "2.0", "id": w * 1_000_000_000 + n, "method": "ping"}
        reply, _ = await _rpc(conns[w], body, _session_headers(sessions[w % len(sessions)]))
        assert reply is not None and "result" in reply, reply

    async def lifecycle(w: int, n: int) -> None:
        conn = conns[w]
        sid = await open_session(conn)
        headers = _session_headers(sid)
        await _rpc(conn, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers)
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "add", "arguments": {"a": 1, "b": n}},
        }
        reply, _ = await _rpc(conn, call, headers)
        assert reply is not None and reply["result"]["structuredContent"] == {"result": 1 + n}, reply
        status, _, _ = await conn.request("DELETE", "/mcp", headers)
        assert status == 200, status

    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
    }

    def modern_call(tool: str) -> Callable[[int, int], Awaitable[None]]:
        headers = {**BASE_HEADERS, "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": tool}

        async def call(w: int, n: int) -> None:
            body = {
                "jsonrpc": "2.0",
                "id": n,
                "method": "tools/call",
                "params": {"name": tool, "arguments": {"a": 1, "b": 2}, "_meta": meta},
            }
            reply, _ = await _rpc(conns[w], body, headers)
            assert reply is not None and reply["result"]["structuredContent"] == {"result": 3}, reply

        return call

    ops = {"ping": ping, "lifecycle": lifecycle, "add": modern_call("add"), "add_sync": modern_call("add_sync")}
    return Target(name, port, pid, generator_cores, conns, ops)


async def open_idle_sessions(target: Target, count: int) -> None:
    if target.generator_cores:
        _pin(0, target.generator_cores)
    pending = iter(range(count))

    async def opener(w: int) -> None:
        for _ in pending:
            await open_session(target.conns[w])

    await asyncio.gather(*(opener(w) for w in range(16)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_ready(port: int) -> None:
    conn = RawHTTP("127.0.0.1", port)
    try:
        for _ in range(200):
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                await conn.request("POST", "/mcp", BASE_HEADERS, b"{}")
                return
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    raise RuntimeError(f"server on port {port} did not start")


def _pin(pid: int, cores: set[int]) -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(pid, cores)


def main(args: argparse.Namespace) -> None:
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    ports = {"ours": _free_port(), "reference": _free_port()}
    procs = {
        name: subprocess.Popen([sys.executable, __file__, "--serve", name, "--port", str(port)])
        for name, port in ports.items()
    }
    pinned = len(cores) >= 2
    assign = {"ours": {cores[0]}, "reference": {cores[1]}} if pinned else {}
    try:
        for name, proc in procs.items():
            if pinned:
                _pin(proc.pid, assign[name])
        results = asyncio.run(drive(args, ports, {n: p.pid for n, p in procs.items()}, cores, assign))
        report(results)
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)


async def drive(
    args: argparse.Namespace, ports: dict[str, int], pids: dict[str, int], cores: list[int], assign: dict[str, set[int]]
) -> dict[str, dict[str, Any]]:
    for port in ports.values():
        await _wait_ready(port)
    print(
        f"cores: {cores}; servers pinned: {bool(assign)}; {args.duration}s per figure and server, "
        f"in {args.rounds} interleaved slices",
        flush=True,
    )
    targets = [
        await prepare(name, ports[name], pids[name], set(cores) - assign[name] if assign else None)
        for name in ("ours", "reference")
    ]
    try:
        for target in targets:  # warm-up: every code path once, not measured
            for op in target.ops:
                await target.run(16, 0.5, op)
        # Slices of each figure alternate between the servers (ours first in even rounds, the
        # reference in odd ones), so a change in machine speed during the run (other tenants, clock
        # scaling) weighs on both alike instead of on whichever server ran during it.
        slices: dict[tuple[str, str], list[Result]] = {}
        for label, op, concurrency in ROWS:
            for k in range(args.rounds):
                for target in targets if k % 2 == 0 else targets[::-1]:
                    result = await target.run(concurrency, args.duration / args.rounds, op)
                    slices.setdefault((target.name, label), []).append(result)
            ours, ref = (Result.pooled(slices[(t.name, label)]) for t in targets)
            print(
                f"  {label:16} ours {ours.rate:7.0f}/s   reference {ref.rate:7.0f}/s   {ours.rate / ref.rate:5.2f}x",
                flush=True,
            )
        results: dict[str, dict[str, Any]] = {
            t.name: {label: slices[(t.name, label)] for label, _, _ in ROWS} for t in targets
        }
        # Idle memory: open the sessions on both servers, then one shared wait for them to go idle.
        before = {t.name: _rss(t.pid) for t in targets}
        created = {}
        for target in targets:
            await open_idle_sessions(target, args.idle)
            created[target.name] = _rss(target.pid)
        await asyncio.sleep(IDLE_SETTLE_S)  # past our 10 s loop linger; the same wait for the reference
        for target in targets:
            results[target.name]["idle_bytes"] = (_rss(target.pid) - before[target.name]) / args.idle
            results[target.name]["peak_bytes"] = (created[target.name] - before[target.name]) / args.idle
    finally:
        for target in targets:
            for conn in target.conns:
                await conn.close()
    return results


def report(results: dict[str, dict[str, Any]]) -> None:
    ours, ref = results["ours"], results["reference"]
    print("\nfigure                     ours        reference   ours/ref   slices")
    for key, _, _ in ROWS:
        a, b = Result.pooled(ours[key]), Result.pooled(ref[key])
        spread = sorted(x.rate / y.rate for x, y in zip(ours[key], ref[key], strict=True))
        print(
            f"{key + ' /s':24} {a.rate:10.0f}  {b.rate:12.0f}   {a.rate / b.rate:6.2f}x"
            f"   {spread[0]:.2f}-{spread[-1]:.2f}x"
        )
        print(f"{'  p50 ms':24} {a.pct(0.5):10.2f}  {b.pct(0.5):12.2f}   {a.pct(0.5) / b.pct(0.5):6.2f}")
        print(f"{'  p99 ms':24} {a.pct(0.99):10.2f}  {b.pct(0.99):12.2f}   {a.pct(0.99) / b.pct(0.99):6.2f}")
        # Server CPU per operation: steadier than rates when other work shares the machine.
        ca, cb = a.server_cpu / a.rate * 1e6, b.server_cpu / b.rate * 1e6
        print(f"{'  server CPU us/op':24} {ca:10.0f}  {cb:12.0f}   {ca / cb:6.2f}")
    a, b = ours["idle_bytes"], ref["idle_bytes"]
    print(f"{'idle KB/session':24} {a / 1024:10.1f}  {b / 1024:12.1f}   {a / b:6.2f}")
    a, b = ours["peak_bytes"], ref["peak_bytes"]
    print(f"{'  right after opening':24} {a / 1024:10.1f}  {b / 1024:12.1f}   {a / b:6.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per throughput figure and server")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved slices each figure is measured in")
    parser.add_argument("--idle", type=int, default=1000, help="sessions opened for the idle-memory figure")
    parser.add_argument("--serve", choices=("ours", "reference"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.serve == "ours":
        serve_ours(ns.port)
    elif ns.serve == "reference":
        serve_reference(ns.port)
    else:
        main(ns)

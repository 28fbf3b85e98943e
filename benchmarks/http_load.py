"""Load benchmark: our aiohttp transport vs the SDK's own Streamable HTTP server at its fastest honest setting.

Run by hand, not a test::

    .venv/bin/python benchmarks/http_load.py                        # full run, ~2.5 minutes
    .venv/bin/python benchmarks/http_load.py --duration 2           # quicker, noisier
    .venv/bin/python benchmarks/http_load.py --json /tmp/load.json  # also write the rows for the docs

Every server runs as a child process of this script serving the same ``MCPServer`` (a cheap
async ``add`` tool, and ``add_sync``, the same as a sync function). The SDK side is served three
ways, each on uvicorn with ``loop="uvloop"`` and ``http="httptools"`` (uvicorn's fastest; the
script falls back to asyncio / h11 and says so when they are not importable):

* **A**, ``MCPServer.streamable_http_app(json_response=True)``, stateful: the SDK's fastest
  configuration for the 2025-11-25 (session) era, and the reference of the ping, lifecycle and
  idle-memory rows;
* **B**, ``streamable_http_app(stateless_http=True, json_response=True)``: the reference of the
  2026-07-28 rows. In mcp 2.3 a request whose ``MCP-Protocol-Version`` is not a handshake
  version goes to ``handle_modern_request`` before the stateless switch is read
  (``StreamableHTTPSessionManager._handle_request``), so for this era only ``json_response``
  matters and B serves it exactly as A would; B is what a 2026-only deployment runs. (Without
  ``json_response`` the 2026 path still answers JSON when the tool streams nothing, but only
  after a deferral window run in a task group of two extra tasks.)
* **C**, ``streamable_http_app()``: the SDK default (stateful, a one-event SSE stream per
  reply), which earlier versions of this script compared against; its rows are information only.

Ours is pinned to one core and the SDK servers to the other where the machine has two or more;
the load generator pins itself to the core of the server it is *not* driving. Each figure is
measured in short slices that rotate over the servers of its row (``--rounds``), so a change in
machine speed during the run (other tenants, clock scaling) weighs on all alike; every rate is
printed with its min-max over the slices and every ratio with the min-max of the per-round ratios.
The generator speaks raw HTTP/1.1 over keep-alive connections (``RawHTTP``): a general-purpose
client costs more CPU per request than the servers do and would flatten every ratio. Rows, each
naming its reference:

* ``ping`` requests/s and p50/p99 latency at concurrency 1, 16, 64 over 8 sessions (2025-11-25; vs A);
* full session lifecycles/s (initialize, initialized, tools/list, one call, DELETE; vs A);
* 2026-07-28 per-request ``tools/call`` calls/s of ``add`` (the era has no ``ping``; vs B);
* the same with ``add_sync`` (vs B): the SDK runs a sync tool in a worker thread, a hop both
  servers pay;
* resident memory per idle session, measured over 1000 sessions once they are idle (vs A);
* ping, lifecycle and idle memory against C, for information.

Targets (issue 17): >= 2x the best reference (A) on ping and lifecycles, p99 no worse, <= 10 KB
per idle session. Rates swing when other work shares the machine; the server-CPU-per-operation
rows are the steadier comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

ROOT = Path(__file__).resolve().parent.parent
LEGACY = "2025-11-25"
MODERN = "2026-07-28"
BASE_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
IDLE_SETTLE_S = 13.0
"""Wait before reading idle memory: past our 10 s loop linger (and the same wait for the references)."""
MAX_SESSIONS: Final = 1_000_000
"""Session cap of every stateful server: far above what the idle-memory figure opens."""

ServerName = Literal["ours", "A", "B", "C"]
REFERENCE_APPS: Final[dict[str, dict[str, bool]]] = {
    "A": {"json_response": True, "stateless_http": False},
    "B": {"json_response": True, "stateless_http": True},
    "C": {},
}
"""Keyword arguments of ``MCPServer.streamable_http_app`` per reference (C: the SDK defaults)."""


# --- the servers (child processes) ---------------------------------------------------------------


def _bench_mcp() -> Any:
    from mcp.server.mcpserver import MCPServer

    mcp = MCPServer("bench", version="1.0")
    # The SDK's per-message span costs tens of microseconds with nothing to export; ours drops it
    # then (server.build_mcp_server), and so does every reference, so neither side pays for it.
    from mcp.server._otel import OpenTelemetryMiddleware

    mcp.middleware[:] = [m for m in mcp.middleware if not isinstance(m, OpenTelemetryMiddleware)]

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

    from mcp_image_server.cli import configure_event_loop
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
        max_sessions=MAX_SESSIONS,
    )

    async def main() -> None:
        configure_event_loop()  # as the CLI does
        service = ImageService(settings)
        await service.start()
        try:
            await run_http(service, _bench_mcp(), settings, shutdown_timeout=1)
        finally:
            await service.aclose()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def uvicorn_options() -> tuple[str, str]:
    """uvicorn's fastest event loop and HTTP parser that this Python can import, as (loop, http)."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return loop, http


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def reference_label(name: str) -> str:
    """The exact configuration of one SDK reference, printed beside every row that uses it."""
    kwargs = ", ".join(f"{k}={v}" for k, v in REFERENCE_APPS[name].items())
    loop, http = uvicorn_options()
    mode = {
        "A": "stateful, JSON replies",
        "B": "stateless, JSON replies",
        "C": "the SDK default: stateful, SSE replies",
    }
    return (
        f"{name}: MCPServer.streamable_http_app({kwargs}) [{mode[name]}] on uvicorn {_version('uvicorn')} "
        f"(loop={loop} {_version(loop)}, http={http} {_version(http)})"
    )


def ours_label() -> str:
    return (
        f"ours: mcp_image_server run_http on aiohttp {_version('aiohttp')} (asyncio loop, as ./mcp-server http runs it)"
    )


def serve_reference(port: int, name: str) -> None:
    import uvicorn

    logging.basicConfig(level=logging.WARNING)
    app = _bench_mcp().streamable_http_app(max_sessions=MAX_SESSIONS, **REFERENCE_APPS[name])
    loop, http = uvicorn_options()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, loop=loop, http=http
    )
    uvicorn.Server(config).run()


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


@dataclass(frozen=True, slots=True)
class Row:
    """One figure: an operation at a concurrency, measured on ours and on each of its references."""

    label: str
    op: str
    concurrency: int
    references: tuple[ServerName, ...]
    """The first is the comparison; any further ones (C) are information rows."""
    targeted: bool
    """Whether the issue's targets (>= 2x, p99 no worse) apply against the first reference."""


ROWS: Final[tuple[Row, ...]] = (
    Row("ping c=1", "ping", 1, ("A", "C"), True),
    Row("ping c=16", "ping", 16, ("A", "C"), True),
    Row("ping c=64", "ping", 64, ("A", "C"), True),
    Row("lifecycle c=16", "lifecycle", 16, ("A", "C"), True),
    Row("2026 call c=16", "add", 16, ("B",), False),
    Row("2026 sync tool c=16", "add_sync", 16, ("B",), False),
)
SERVERS: Final[tuple[ServerName, ...]] = ("ours", "A", "B", "C")
IDLE_SERVERS: Final[tuple[ServerName, ...]] = ("ours", "A", "C")
"""Servers whose idle sessions are measured (B keeps none)."""
RATE_TARGET: Final = 2.0
IDLE_TARGET_BYTES: Final = 10 * 1024


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


async def prepare(
    name: str, port: int, pid: int, generator_cores: set[int] | None, op_names: Sequence[str] | None = None
) -> Target:
    """Open the connections (and, for the session ops, 8 sessions) that ``op_names`` need."""
    wanted = set(op_names) if op_names is not None else {"ping", "lifecycle", "add", "add_sync"}
    conns = [RawHTTP("127.0.0.1", port) for _ in range(64)]  # one connection per worker
    sessions = [await open_session(conns[0]) for _ in range(8)] if "ping" in wanted else []

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
    return Target(name, port, pid, generator_cores, conns, {k: v for k, v in ops.items() if k in wanted})


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


async def _wait_ready(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60.0) -> None:
    """Poll until the server answers; four servers importing at once on a busy machine can take a while."""
    conn = RawHTTP("127.0.0.1", port)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                await conn.request("POST", "/mcp", BASE_HEADERS, b"{}")
                return
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    raise RuntimeError(f"server on port {port} did not start within {timeout:.0f} s")


def _pin(pid: int, cores: set[int]) -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(pid, cores)


def _ops_of(name: ServerName) -> list[str]:
    """The operations each server is driven with: the 2026 ones on ours and B, the session ones elsewhere."""
    ops = [r.op for r in ROWS if name == "ours" or name in r.references]
    return list(dict.fromkeys(ops))


def main(args: argparse.Namespace) -> None:
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    ports: dict[ServerName, int] = {name: _free_port() for name in SERVERS}
    procs = {
        name: subprocess.Popen([sys.executable, __file__, "--serve", name, "--port", str(port)])
        for name, port in ports.items()
    }
    pinned = len(cores) >= 2
    # Ours on one core, the three SDK servers on the other: only one server is ever under load at a time.
    assign: dict[ServerName, set[int]] = (
        {name: {cores[0]} if name == "ours" else {cores[1]} for name in SERVERS} if pinned else {}
    )
    try:
        for name, proc in procs.items():
            if pinned:
                _pin(proc.pid, assign[name])
        results = asyncio.run(drive(args, ports, procs, cores, assign))
        rows = report(results, args)
        if args.json:
            write_json(Path(args.json), rows, args, cores, pinned)
            print(f"\nrows written to {args.json}")
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)


async def drive(
    args: argparse.Namespace,
    ports: dict[ServerName, int],
    procs: dict[ServerName, subprocess.Popen[bytes]],
    cores: list[int],
    assign: dict[ServerName, set[int]],
) -> dict[str, Any]:
    for name, port in ports.items():
        await _wait_ready(port, procs[name])
    loop, http = uvicorn_options()
    print(
        f"cores: {cores}; servers pinned: {bool(assign)}; {args.duration}s per figure and server, "
        f"in {args.rounds} interleaved slices",
        flush=True,
    )
    if (loop, http) != ("uvloop", "httptools"):
        print(f"NOTE: uvloop/httptools not importable, the references run on loop={loop} http={http}", flush=True)
    print(f"  {ours_label()}", flush=True)
    for ref in REFERENCE_APPS:
        print(f"  {reference_label(ref)}", flush=True)
    targets: dict[ServerName, Target] = {}
    for name in SERVERS:
        generator_cores = set(cores) - assign[name] if assign else None
        targets[name] = await prepare(name, ports[name], procs[name].pid, generator_cores, _ops_of(name))
    try:
        for target in targets.values():  # warm-up: every code path once, not measured
            for op in target.ops:
                await target.run(16, 0.5, op)
        # The slices of each figure rotate over its servers (round k starts with the k-th), so a
        # change in machine speed during the run (other tenants, clock scaling) weighs on all of
        # them alike instead of on whichever server ran during it.
        slices: dict[tuple[str, str], list[Result]] = {}
        for row in ROWS:
            names: list[ServerName] = ["ours", *row.references]
            for k in range(args.rounds):
                shift = k % len(names)
                for name in names[shift:] + names[:shift]:
                    result = await targets[name].run(row.concurrency, args.duration / args.rounds, row.op)
                    slices.setdefault((name, row.label), []).append(result)
            ours = Result.pooled(slices[("ours", row.label)])
            line = f"  {row.label:20} ours {ours.rate:7.0f}/s"
            for ref in row.references:
                theirs = Result.pooled(slices[(ref, row.label)])
                line += f"   {ref} {theirs.rate:7.0f}/s {ours.rate / theirs.rate:5.2f}x"
            print(line, flush=True)
        # Idle memory: open the sessions on each server, then one shared wait for them to go idle.
        idle_targets = [targets[name] for name in IDLE_SERVERS]
        before = {t.name: _rss(t.pid) for t in idle_targets}
        created = {}
        for target in idle_targets:
            await open_idle_sessions(target, args.idle)
            created[target.name] = _rss(target.pid)
        await asyncio.sleep(IDLE_SETTLE_S)  # past our 10 s loop linger; the same wait for the references
        idle = {
            t.name: {
                "idle_bytes": (_rss(t.pid) - before[t.name]) / args.idle,
                "peak_bytes": (created[t.name] - before[t.name]) / args.idle,
            }
            for t in idle_targets
        }
    finally:
        for target in targets.values():
            for conn in target.conns:
                await conn.close()
    return {"slices": slices, "idle": idle}


def _num(x: float) -> float | None:
    """JSON has no NaN (a figure with no operations in it, a ratio over zero)."""
    return None if not math.isfinite(x) else round(x, 4)


def _div(a: float | None, b: float | None) -> float:
    return a / b if a is not None and b else math.nan


def _figures(slices: list[Result]) -> dict[str, Any]:
    pooled = Result.pooled(slices)
    rates = [r.rate for r in slices]
    p99s = [r.pct(0.99) for r in slices]
    return {
        "rate": _num(pooled.rate),
        "rate_min": _num(min(rates)),
        "rate_max": _num(max(rates)),
        "p50_ms": _num(pooled.pct(0.5)),
        "p99_ms": _num(pooled.pct(0.99)),
        "p99_ms_min": _num(min(p99s)),
        "p99_ms_max": _num(max(p99s)),
        "server_cpu_us_per_op": _num(_div(pooled.server_cpu * 1e6, pooled.rate)),
        "slices": len(slices),
    }


def _row(row: Row, ref: ServerName, ours: list[Result], theirs: list[Result]) -> dict[str, Any]:
    a, b = _figures(ours), _figures(theirs)
    # Per round: ours against the reference slice measured in the same round.
    per_round = sorted(r for x, y in zip(ours, theirs, strict=True) if math.isfinite(r := _div(x.rate, y.rate)))
    role = "information" if ref == "C" else ("target" if row.targeted else "comparison")
    out: dict[str, Any] = {
        "name": row.label,
        "role": role,
        "reference": ref,
        "reference_label": reference_label(ref),
        "ours": a,
        "reference_figures": b,
        "ratio": _num(_div(a["rate"], b["rate"])),
        "ratio_min": _num(per_round[0]) if per_round else None,
        "ratio_max": _num(per_round[-1]) if per_round else None,
        "p50_ratio": _num(_div(a["p50_ms"], b["p50_ms"])),
        "p99_ratio": _num(_div(a["p99_ms"], b["p99_ms"])),
        "cpu_ratio": _num(_div(a["server_cpu_us_per_op"], b["server_cpu_us_per_op"])),
    }
    if role == "target":
        ratio, p99 = out["ratio"], out["p99_ratio"]
        out["target_met"] = ratio is not None and p99 is not None and ratio >= RATE_TARGET and p99 <= 1.0
    return out


def _idle_row(ref: ServerName, idle: dict[str, dict[str, float]]) -> dict[str, Any]:
    a, b = idle["ours"], idle[ref]
    out: dict[str, Any] = {
        "name": "idle memory per session",
        "role": "information" if ref == "C" else "target",
        "reference": ref,
        "reference_label": reference_label(ref),
        "ours": {"idle_kb": _num(a["idle_bytes"] / 1024), "after_opening_kb": _num(a["peak_bytes"] / 1024)},
        "reference_figures": {
            "idle_kb": _num(b["idle_bytes"] / 1024),
            "after_opening_kb": _num(b["peak_bytes"] / 1024),
        },
        "ratio": _num(_div(a["idle_bytes"], b["idle_bytes"])),
    }
    if ref != "C":
        out["target_met"] = a["idle_bytes"] <= IDLE_TARGET_BYTES
    return out


def _f(x: float | None, fmt: str) -> str:
    """One table cell; ``-`` where there is no figure."""
    return format(x, fmt) if x is not None else format("-", ">" + fmt.split(".")[0])


def _rng(lo: float | None, hi: float | None, fmt: str) -> str:
    return f"({lo:{fmt}}-{hi:{fmt}})" if lo is not None and hi is not None else ""


def reference_tag(name: str) -> str:
    """The short form of ``reference_label``, printed at the end of each row."""
    kwargs = ",".join(f"{k}={v}" for k, v in REFERENCE_APPS[name].items()) or "defaults (SSE)"
    loop, http = uvicorn_options()
    return f"[{name}: {kwargs}; {loop}+{http}]"


def _verdict(r: dict[str, Any]) -> str:
    met = "" if "target_met" not in r else ("target met  " if r["target_met"] else "target MISSED  ")
    return met + reference_tag(r["reference"])


def _print_rate_row(r: dict[str, Any]) -> None:
    a, b = r["ours"], r["reference_figures"]
    print(
        f"{r['name'] + ' /s':22} {r['reference']:>3}  {_f(a['rate'], '8.0f')} {_rng(a['rate_min'], a['rate_max'], '.0f'):>15}"
        f"  {_f(b['rate'], '8.0f')} {_rng(b['rate_min'], b['rate_max'], '.0f'):>15}  {_f(r['ratio'], '6.2f')}x"
        f" {_rng(r['ratio_min'], r['ratio_max'], '.2f'):>13}  {_verdict(r)}"
    )
    print(
        f"{'  p50 ms':22} {'':3}  {_f(a['p50_ms'], '8.2f')} {'':15}  {_f(b['p50_ms'], '8.2f')} {'':15}"
        f"  {_f(r['p50_ratio'], '6.2f')}"
    )
    print(
        f"{'  p99 ms':22} {'':3}  {_f(a['p99_ms'], '8.2f')} {_rng(a['p99_ms_min'], a['p99_ms_max'], '.2f'):>15}"
        f"  {_f(b['p99_ms'], '8.2f')} {_rng(b['p99_ms_min'], b['p99_ms_max'], '.2f'):>15}  {_f(r['p99_ratio'], '6.2f')}"
    )
    # Server CPU per operation: steadier than rates when other work shares the machine.
    ca, cb = a["server_cpu_us_per_op"], b["server_cpu_us_per_op"]
    print(
        f"{'  server CPU us/op':22} {'':3}  {_f(ca, '8.0f')} {'':15}  {_f(cb, '8.0f')} {'':15}  {_f(r['cpu_ratio'], '6.2f')}"
    )


def _print_idle_row(r: dict[str, Any]) -> None:
    a, b = r["ours"], r["reference_figures"]
    print(
        f"{'idle KB/session':22} {r['reference']:>3}  {_f(a['idle_kb'], '8.1f')} {'':15}  {_f(b['idle_kb'], '8.1f')}"
        f" {'':15}  {_f(r['ratio'], '6.2f')} {'':14}  {_verdict(r)}"
    )
    print(
        f"{'  right after opening':22} {'':3}  {_f(a['after_opening_kb'], '8.1f')} {'':15}"
        f"  {_f(b['after_opening_kb'], '8.1f')}"
    )


def report(results: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Print the table (comparison rows, then the information rows against C); return its rows."""
    slices: dict[tuple[str, str], list[Result]] = results["slices"]
    rows: list[dict[str, Any]] = []
    for row in ROWS:
        for ref in row.references:
            rows.append(_row(row, ref, slices[("ours", row.label)], slices[(ref, row.label)]))
    for ref in ("A", "C"):
        rows.append(_idle_row(ref, results["idle"]))
    header = (
        f"\n{'figure':22} {'ref':>3}  {'ours':>8} {'(min-max)':>15}  {'reference':>8} {'(min-max)':>15}"
        f"  {'ours/ref':>7} {'(per round)':>13}"
    )
    sections = (("against the SDK's fastest configuration (A, B)", {"A", "B"}), ("information (C)", {"C"}))
    for title, wanted in sections:
        print(f"\n{title}:" + header)
        for r in rows:
            if r["reference"] in wanted:
                (_print_idle_row if r["name"].startswith("idle") else _print_rate_row)(r)
    print()
    print(ours_label())
    for name in REFERENCE_APPS:
        print(reference_label(name))
    print(f"idle memory over {args.idle} sessions after {IDLE_SETTLE_S:.0f} s; ratios are ours/reference")
    return rows


def write_json(
    path: Path, rows: list[dict[str, Any]], args: argparse.Namespace, cores: list[int], pinned: bool
) -> None:
    """The rows as data, so the figures can go into the docs without retyping them."""
    doc = {
        "benchmark": "benchmarks/http_load.py",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "mcp": _version("mcp"),
        "cores": cores,
        "pinned": pinned,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "idle_sessions": args.idle,
        "ours_label": ours_label(),
        "references": {name: reference_label(name) for name in REFERENCE_APPS},
        "rows": rows,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per throughput figure and server")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved slices each figure is measured in")
    parser.add_argument("--idle", type=int, default=1000, help="sessions opened for the idle-memory figure")
    parser.add_argument("--json", metavar="PATH", help="also write the rows (figures, ranges, references) as JSON")
    parser.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.serve == "ours":
        serve_ours(ns.port)
    elif ns.serve is not None:
        serve_reference(ns.port, ns.serve)
    else:
        main(ns)

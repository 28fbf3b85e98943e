"""Scale-out benchmark: what a Redis state, more workers and more api replicas cost and buy.

Run by hand, not a test::

    .venv/bin/python benchmarks/scaleout.py --quick     # about 3 minutes
    .venv/bin/python benchmarks/scaleout.py             # about 7 minutes
    .venv/bin/python benchmarks/scaleout.py --only latency,ops

Every server is ``python -m mcp_image_server`` in a child process of this script (the same
binary, configured only through its environment), on a random loopback port, with Debian's
``redis-server`` (``--save "" --appendonly no``) as the shared state. The sections:

``latency``   one replica with ``MCP_STATE_URL=memory://`` against the same replica on
              ``redis://``: p50/p99 at concurrency 16 of ``get_generation`` (a finished job),
              ``list_generations`` and ``generate_image`` (``local``, 64x64). Both replicas are
              pinned to the first core; Redis and this load generator share the second.
``workers``   generations/s of a CPU-bound ``local`` mix (2048x2048, n=4, every style in turn)
              submitted to one ``MCP_ROLE=api`` replica, run by 1 or 2 ``MCP_ROLE=worker``
              processes; the reference is one ``MCP_ROLE=all`` process on ``memory://`` (the
              strongest single process: no queue, no Redis). Workers are not pinned: one worker
              already renders on both cores (Pillow releases the GIL), and pinning it would
              weaken the reference. The 1-slot rows (``MCP_LOCAL_MAX_CONCURRENCY=1``) show what
              a second process adds when each renders one image at a time.
``replicas``  2 ``MCP_ROLE=api`` replicas against 1: ``ping`` (2025-11-25 sessions, each on its
              replica) and a 2026-07-28 ``tools/call`` of ``get_generation``, spread round-robin
              by this client. Not pinned.
``memory``    Redis bytes per job (``INFO memory`` used_memory delta / N jobs), what each key
              holds (``MEMORY USAGE``), and the Redis bytes of N idle handshake-era sessions.
``ops``       Redis commands per generation and per ``get_generation`` poll (``MONITOR``, with
              the replicas' background commands, measured over an idle window, subtracted),
              split into commands sent by the replica and commands its Lua scripts run.

Each figure is measured in slices that alternate between the two sides being compared
(``--rounds``), so a change in machine speed (other tenants' test runs) weighs on both alike;
the tables print the pooled figure and the range of the per-slice ratios. The load generator
speaks raw HTTP/1.1 (``RawHTTP`` from ``http_load.py``): on two cores a general client's CPU per
call would be a large part of every latency. The SDK's client checks every server once at setup.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.http_load import (
    BASE_HEADERS,
    LEGACY,
    MODERN,
    RawHTTP,
    Result,
    _cpu_seconds,
    _free_port,
    _pin,
    _rpc,
    run_load,
)

TOKEN = "scaleout-bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
STYLES = ("watercolor", "neon", "gradient", "landscape", "geometric", "mosaic", "pixel_art")
"""The ``local`` mix, dearest first (watercolor is ~1.4 s of CPU per 2048x2048 image, pixel_art ~0.07 s):
submitted in this order, the long jobs do not end up as the tail of a batch."""
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "scaleout-bench", "version": "1"},
}


# --- child processes -----------------------------------------------------------------------------


class Child:
    """A child process whose output goes to ``<dir>/<name>.log``; ``start`` returns once it prints ``ready``."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str] | None, ready: bytes, workdir: Path) -> None:
        self.name, self._argv, self._env, self._ready, self._dir = name, argv, env, ready, workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, cores: set[int] | None = None) -> Child:
        self.proc = subprocess.Popen(
            self._argv, env=None if self._env is None else dict(self._env), cwd=self._dir,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        if cores:
            _pin(self.proc.pid, cores)  # what ``taskset -p`` does
        seen = threading.Event()
        out = self.proc.stdout
        assert out is not None

        def pump() -> None:  # keeps the pipe drained into the log for the child's whole life
            with out, (self._dir / f"{self.name}.log").open("ab") as log:
                for line in out:
                    log.write(line)
                    if self._ready in line:
                        log.flush()
                        seen.set()
            seen.set()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        if not seen.wait(60) or self.proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"{self.name} did not start; see {self._dir / (self.name + '.log')}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._pump is not None:
            self._pump.join(10)


class Redis(Child):
    def __init__(self, workdir: Path, name: str = "redis") -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--dir", str(workdir)]
        super().__init__(name, argv, None, b"Ready to accept connections", workdir)

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)


class Server(Child):
    """``python -m mcp_image_server``: an HTTP replica (``port``) or, with ``MCP_ROLE=worker``, a worker."""

    def __init__(self, name: str, workdir: Path, env: Mapping[str, str], *, advertise: bool = False) -> None:
        worker = env.get("MCP_ROLE") == "worker"
        self.port = 0 if worker else _free_port()
        if advertise:  # MCP_REPLICA_URL: peers forward requests for this replica's sessions here
            env = {**env, "MCP_REPLICA_URL": f"http://127.0.0.1:{self.port}"}
        full = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "PYTHONPATH": str(ROOT),
            "MCP_IMAGE_SAVE_DIR": str(workdir / f"{name}-images"),
            "MCP_LOG_LEVEL": "INFO",
            "MCP_REPLICA_ID": name,
            "MCP_MAX_SESSIONS": "100000",
            **({} if worker else {"MCP_TRANSPORT": "http", "MCP_PORT": str(self.port), "MCP_AUTH_TOKEN": TOKEN}),
            **env,
        }
        ready = b"worker started" if worker else b"MCP Streamable HTTP endpoint"
        super().__init__(name, [sys.executable, "-m", "mcp_image_server"], full, ready, workdir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


async def sdk_check(server: Server) -> str:
    """One generation through the SDK's own client (the server speaks MCP to it); returns its job_id."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(headers=AUTH, timeout=120) as http,
        Client(streamable_http_client(server.url, http_client=http)) as client,
    ):
        result = await client.call_tool("generate_image", {
            "prompt": "a lighthouse at dusk", "provider": "local", "resolution": "64x64", "inline": "none",
            "wait_seconds": 60,
        })
    done = result.structured_content
    assert done is not None and done.get("ok") and done.get("images"), result
    return str(done["job_id"])


# --- the generator's side of MCP ------------------------------------------------------------------


def _modern_headers(tool: str) -> dict[str, str]:
    return {**BASE_HEADERS, **AUTH, "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": tool}


async def call_tool(conn: RawHTTP, tool: str, arguments: dict[str, Any], rid: int = 1) -> dict[str, Any]:
    """A 2026-07-28 ``tools/call``; returns ``structuredContent`` (raises on a tool error)."""
    body = {"jsonrpc": "2.0", "id": rid, "method": "tools/call",
            "params": {"name": tool, "arguments": arguments, "_meta": META}}
    reply, _ = await _rpc(conn, body, _modern_headers(tool))
    assert reply is not None and "result" in reply, reply
    out = reply["result"].get("structuredContent")
    if reply["result"].get("isError") or out is None or out.get("ok") is False:
        raise RuntimeError(f"{tool}: {json.dumps(reply)[:400]}")
    return dict(out)


def _session_headers(sid: str) -> dict[str, str]:
    return {**BASE_HEADERS, **AUTH, "Mcp-Session-Id": sid, "MCP-Protocol-Version": LEGACY}


async def open_session(conn: RawHTTP) -> str:
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "scaleout-bench", "version": "1"}}}
    _, headers = await _rpc(conn, init, {**BASE_HEADERS, **AUTH})
    sid = headers["mcp-session-id"]
    await _rpc(conn, {"jsonrpc": "2.0", "method": "notifications/initialized"}, _session_headers(sid))
    return sid


def _gen_args(n: int, size: str = "64x64") -> dict[str, Any]:
    return {"prompt": f"a lighthouse at dusk {n}", "provider": "local", "resolution": size, "inline": "none",
            "wait_seconds": 120}


@dataclass
class Pool:
    """One keep-alive connection per generator worker, each bound to one server (round-robin)."""

    servers: list[Server]
    size: int = 64
    conns: list[RawHTTP] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.conns = [RawHTTP("127.0.0.1", self.servers[w % len(self.servers)].port) for w in range(self.size)]

    async def close(self) -> None:
        for conn in self.conns:
            await conn.close()


# --- measurement helpers -------------------------------------------------------------------------


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _range(values: list[float], fmt: str = "{:.2f}") -> str:
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return fmt.format(lo) + "-" + fmt.format(hi)


async def timed_slices(
    sides: list[tuple[str, Callable[[], Awaitable[Result]]]], rounds: int
) -> dict[str, list[Result]]:
    """Run each side's slice ``rounds`` times, alternating which side goes first."""
    slices: dict[str, list[Result]] = {name: [] for name, _ in sides}
    for k in range(rounds):
        for name, run in sides if k % 2 == 0 else sides[::-1]:
            slices[name].append(await run())
    return slices


class Monitor:
    """Redis ``MONITOR`` in a thread: counts commands by name, apart for those Lua scripts run."""

    def __init__(self, port: int) -> None:
        self._port = port
        self.client: Counter[str] = Counter()
        self.lua: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        sock = socket.create_connection(("127.0.0.1", self._port), timeout=5)
        sock.sendall(b"MONITOR\r\n")
        buffer = b""
        while b"\r\n" not in buffer:
            buffer += sock.recv(4096)
        first, _, buffer = buffer.partition(b"\r\n")
        assert first.startswith(b"+OK"), first
        sock.settimeout(0.2)

        def run(buffer: bytes) -> None:
            with contextlib.closing(sock):
                while not self._stop.is_set():
                    *lines, buffer = buffer.split(b"\r\n")
                    for line in lines:
                        self._count(line.decode("utf-8", "replace"))
                    try:
                        chunk = sock.recv(65536)
                    except TimeoutError:
                        continue
                    if not chunk:
                        return
                    buffer += chunk

        self._thread = threading.Thread(target=run, args=(buffer,), daemon=True)
        self._thread.start()
        return self

    def _count(self, line: str) -> None:
        # +1700000000.123456 [0 127.0.0.1:5555] "SET" "k" "v"   or   [0 lua] "SET" ...
        source, _, rest = line.partition("] ")
        name = rest.split('"', 2)[1].upper() if rest.count('"') >= 2 else "?"
        with self._lock:
            (self.lua if source.endswith(" lua") else self.client)[name] += 1

    def snapshot(self) -> tuple[Counter[str], Counter[str]]:
        time.sleep(0.3)  # let the reader catch up with what Redis already sent
        with self._lock:
            return Counter(self.client), Counter(self.lua)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


@dataclass
class OpCount:
    label: str
    calls: int
    client: dict[str, float]
    lua: dict[str, float]

    @property
    def total_client(self) -> float:
        return sum(self.client.values())

    @property
    def total_lua(self) -> float:
        return sum(self.lua.values())


async def count_ops(
    redis: Redis, label: str, calls: int, op: Callable[[int], Awaitable[None]], idle_s: float
) -> OpCount:
    """Commands per call: (commands during ``calls`` calls) - (background rate x their duration)."""
    with Monitor(redis.port) as mon:
        await asyncio.sleep(0.5)
        c0, l0 = mon.snapshot()
        t0 = time.perf_counter()
        await asyncio.sleep(idle_s)
        c1, l1 = mon.snapshot()
        idle = time.perf_counter() - t0
        t1 = time.perf_counter()
        for i in range(calls):
            await op(i)
        busy = time.perf_counter() - t1
        await asyncio.sleep(0.3)  # saves that land just after the reply
        c2, l2 = mon.snapshot()
    busy += 0.6

    def per_call(a: Counter[str], b: Counter[str], c: Counter[str]) -> dict[str, float]:
        out = {}
        for name in set(b) | set(c):
            background = (b[name] - a[name]) / idle * busy
            value = (c[name] - b[name] - background) / calls
            if abs(value) >= 0.05:
                out[name] = value
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    return OpCount(label, calls, per_call(c0, c1, c2), per_call(l0, l1, l2))


def _fmt_ops(ops: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.1f}" for name, value in ops.items()) or "-"


# --- section: latency, memory:// vs redis:// -----------------------------------------------------


LATENCY_ROWS = (
    ("get_generation (done job)", "get"),
    ("list_generations limit=20", "list"),
    ("generate_image local 64x64", "generate"),
)


async def section_latency(args: argparse.Namespace, work: Path, cores: list[int], report: dict[str, Any]) -> None:
    pinned = len(cores) >= 2 and not args.no_pin
    server_core, other = ({cores[0]}, set(cores[1:])) if pinned else (None, None)
    redis = Redis(work, "redis-latency").start(other)
    mem = Server("memory", work, {"MCP_STATE_URL": "memory://"})
    red = Server("redis", work, {"MCP_STATE_URL": redis.url})
    for s in (mem, red):
        s.start(server_core)
    if other:
        _pin(0, other)
    print(f"\n== latency: memory:// vs redis:// (one MCP_ROLE=all replica each; pinned: {pinned}; "
          f"concurrency {args.concurrency}; {args.duration}s per figure and side in {args.rounds} slices)", flush=True)
    try:
        jobs = {s.name: await sdk_check(s) for s in (mem, red)}
        pools = {s.name: Pool([s]) for s in (mem, red)}
        for s in (mem, red):  # the same 20 finished jobs on each, so list_generations reads alike
            conn = pools[s.name].conns[0]
            for i in range(19):
                await call_tool(conn, "generate_image", _gen_args(i))

        def ops(s: Server) -> dict[str, Callable[[int, int], Awaitable[None]]]:
            conns, job = pools[s.name].conns, jobs[s.name]

            async def get(w: int, n: int) -> None:
                out = await call_tool(conns[w], "get_generation", {"job_id": job, "wait_seconds": 0, "inline": "none"}, n)
                assert out["status"] == "succeeded", out

            async def lst(w: int, n: int) -> None:
                out = await call_tool(conns[w], "list_generations", {"limit": 20}, n)
                assert len(out["jobs"]) == 20, len(out["jobs"])

            async def gen(w: int, n: int) -> None:
                await call_tool(conns[w], "generate_image", _gen_args(w * 1_000_000 + n), n)

            return {"get": get, "list": lst, "generate": gen}

        table = {s.name: ops(s) for s in (mem, red)}
        for s in (mem, red):  # warm-up, not measured (generate last: it adds jobs to the replica)
            for key in ("get", "list"):
                await run_load(args.concurrency, 0.5, table[s.name][key], s.pid)
        rows: dict[str, dict[str, list[Result]]] = {}
        redis_cpu: dict[str, float] = {}
        for label, key in LATENCY_ROWS if "latency" in args.only else ():
            async def one(s: Server, key: str = key) -> Result:
                r0 = _cpu_seconds(redis.pid)
                res = await run_load(args.concurrency, args.duration / args.rounds, table[s.name][key], s.pid)
                res.redis_cpu = _cpu_seconds(redis.pid) - r0  # type: ignore[attr-defined]
                return res

            rows[label] = await timed_slices(
                [("memory", lambda: one(mem)), ("redis", lambda: one(red))], args.rounds)
            red_slices = rows[label]["redis"]
            redis_cpu[label] = sum(r.redis_cpu for r in red_slices) / sum(r.count for r in red_slices)  # type: ignore[attr-defined]
            a, b = Result.pooled(rows[label]["memory"]), Result.pooled(rows[label]["redis"])
            print(f"  {label:28} memory p50 {a.pct(0.5):6.2f} ms  redis p50 {b.pct(0.5):6.2f} ms  "
                  f"(+{b.pct(0.5) - a.pct(0.5):.2f} ms)", flush=True)
        if rows:
            report["latency"] = {"rows": rows, "redis_cpu": redis_cpu, "pinned": pinned}

        # The same Redis and replica give the per-job memory and the ops of an MCP_ROLE=all replica.
        if "memory" in args.only:
            await section_memory(args, redis, red, pools["redis"], report)
        if "ops" in args.only:
            conn = pools["redis"].conns[0]

            async def gen1(i: int) -> None:
                await call_tool(conn, "generate_image", _gen_args(10_000_000 + i))

            async def poll(i: int) -> None:
                await call_tool(conn, "get_generation", {"job_id": jobs["redis"], "wait_seconds": 0, "inline": "none"})

            async def gen4(i: int) -> None:
                await call_tool(conn, "generate_image", {**_gen_args(20_000_000 + i), "n": 4})

            report.setdefault("ops", []).extend([
                await count_ops(redis, "all: generate_image n=1 (wait)", args.ops_calls, gen1, args.idle_window),
                await count_ops(redis, "all: generate_image n=4 (wait)", args.ops_calls // 2, gen4, args.idle_window),
                await count_ops(redis, "all: get_generation, own done job", args.ops_calls, poll, args.idle_window),
            ])
            report["background_all"] = await background(redis, args.idle_window)
        for pool in pools.values():
            await pool.close()
    finally:
        for s in (mem, red):
            s.stop()
        redis.stop()
        _pin(0, set(cores))


async def background(redis: Redis, seconds: float) -> dict[str, float]:
    """Commands/s Redis receives with every replica idle (leases, housekeeping, the queue consumers)."""
    with Monitor(redis.port) as mon:
        await asyncio.sleep(0.5)
        a, _ = mon.snapshot()
        t0 = time.perf_counter()
        await asyncio.sleep(seconds)
        b, _ = mon.snapshot()
        took = time.perf_counter() - t0
    return {name: (b[name] - a[name]) / took for name in sorted(set(b) | set(a)) if b[name] - a[name]}


# --- section: Redis memory per job and per session ------------------------------------------------


def _used_memory(client: Any) -> tuple[int, int]:
    """(used_memory, used_memory_dataset): the second leaves out client buffers and other overhead."""
    info = client.info("memory")
    return int(info["used_memory"]), int(info["used_memory_dataset"])


async def section_memory(args: argparse.Namespace, redis: Redis, server: Server, pool: Pool, report: dict[str, Any]) -> None:
    client = redis.client()
    n = args.jobs_n
    print(f"\n== memory: Redis bytes per job ({n} jobs) and per idle session ({args.sessions_n} sessions)", flush=True)
    await asyncio.sleep(2.0)  # client buffers of the load before settle
    index = next(client.scan_iter("mcp:jobs:*"))
    jobs_before = set(client.scan_iter("mcp:job:*", count=1000))
    index_before = int(client.memory_usage(index) or 0)
    before = _used_memory(client)
    keys_before = client.dbsize()
    pending = iter(range(n))

    async def maker(w: int) -> None:
        for i in pending:
            await call_tool(pool.conns[w], "generate_image", _gen_args(30_000_000 + i))

    await asyncio.gather(*(maker(w) for w in range(8)))
    await asyncio.sleep(2.0)  # the last saves, and the pub/sub buffers drained
    after = _used_memory(client)
    keys_after = client.dbsize()
    new_jobs = set(client.scan_iter("mcp:job:*", count=1000)) - jobs_before
    usage_new = sum(int(client.memory_usage(k) or 0) for k in new_jobs)
    index_growth = int(client.memory_usage(index) or 0) - index_before

    # What each kind of key holds (``redis-cli --bigkeys`` in spirit): count, bytes, a sample.
    kinds: dict[str, dict[str, Any]] = {}
    for key in client.scan_iter("mcp:*", count=1000):
        kind = key.split(":")[1]
        entry = kinds.setdefault(kind, {"type": client.type(key), "count": 0, "bytes": 0, "sample": key})
        entry["count"] += 1
        entry["bytes"] += int(client.memory_usage(key) or 0)
    sample_job = next(iter(new_jobs))
    snapshot = client.get(sample_job) or ""

    # Sessions: open N handshake-era sessions and see what Redis gains.
    await asyncio.sleep(1.0)
    before_s = _used_memory(client)
    with Monitor(redis.port) as mon:
        await asyncio.sleep(0.3)
        c0, _ = mon.snapshot()
        opened = iter(range(args.sessions_n))

        async def opener(w: int) -> None:
            for _ in opened:
                await open_session(pool.conns[w])

        await asyncio.gather(*(opener(w) for w in range(8)))
        c1, _ = mon.snapshot()
    await asyncio.sleep(1.0)
    after_s = _used_memory(client)
    entries = list(client.scan_iter("mcp:session:*", count=1000))
    session_entry = {
        "count": len(entries),
        "usage": int(client.memory_usage(entries[0]) or 0) if entries else 0,
        "value": client.get(entries[0]) if entries else None,
        "ttl": client.ttl(entries[0]) if entries else None,
    }
    report["memory"] = {
        "jobs": n, "per_job": (after[0] - before[0]) / n, "per_job_dataset": (after[1] - before[1]) / n,
        "per_job_usage": (usage_new + index_growth) / n, "keys_added": keys_after - keys_before, "kinds": kinds,
        "snapshot_len": len(snapshot), "snapshot_usage": client.memory_usage(sample_job), "ttl": client.ttl(sample_job),
        "index_entries": client.zcard(index), "index_bytes": client.memory_usage(index),
        "sessions": args.sessions_n, "per_session": (after_s[0] - before_s[0]) / args.sessions_n,
        "per_session_dataset": (after_s[1] - before_s[1]) / args.sessions_n,
        "session_commands": dict(c1 - c0), "session_entry": session_entry,
    }
    m = report["memory"]
    print(f"  per finished job: {m['per_job']:.0f} B used_memory, {m['per_job_dataset']:.0f} B dataset, "
          f"{m['per_job_usage']:.0f} B by MEMORY USAGE; per idle session: {m['per_session']:.1f} B used_memory, "
          f"{m['per_session_dataset']:.1f} B dataset; commands while opening them: {m['session_commands']}", flush=True)


# --- section: 1 vs 2 workers ---------------------------------------------------------------------


@dataclass
class Batch:
    seconds: float
    images: int
    busy: float
    """Share of the whole machine's CPU time that was busy during the batch."""
    ours: float
    """The part of ``busy`` this benchmark's processes (servers, workers, Redis) used: the rest is other tenants."""

    @property
    def rate(self) -> float:
        return self.images / self.seconds


async def run_batch(port: int, jobs: int, n: int, size: str, pids: list[int]) -> Batch:
    conns = [RawHTTP("127.0.0.1", port) for _ in range(jobs)]
    cpu0 = sum(_cpu_seconds(p) for p in pids) + time.process_time()
    b0, t0m = _machine_busy()
    start = time.perf_counter()

    async def one(i: int) -> int:
        await asyncio.sleep(0.005 * i)  # submitted in order: dearest styles first
        out = await call_tool(conns[i], "generate_image", {
            "prompt": f"a city at night, \"{i}\"", "provider": "local", "resolution": size, "n": n,
            "style": STYLES[i % len(STYLES)], "seed": i, "inline": "none", "wait_seconds": 900,
        })
        assert out["status"] == "succeeded" and len(out["images"]) == n, out
        return n

    images = sum(await asyncio.gather(*(one(i) for i in range(jobs))))
    took = time.perf_counter() - start
    b1, t1m = _machine_busy()
    ours = sum(_cpu_seconds(p) for p in pids) + time.process_time() - cpu0
    for conn in conns:
        await conn.close()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return Batch(took, images, (b1 - b0) / max(1, t1m - t0m), ours / took / cores)


def _clean(store: Path) -> None:
    """Drop the batch's images (2048x2048 PNGs, up to 4 MB each): nothing reads them again."""
    for path in list(store.glob("*.png")) + list((store / ".records").glob("*.json")):
        with contextlib.suppress(OSError):
            path.unlink()


WORKER_CONFIGS = (
    ("1 process, memory:// (all)", "all", 2),
    ("api + 1 worker, 2 slots", 1, 2),
    ("api + 2 workers, 2 slots each", 2, 2),
    ("api + 1 worker, 1 slot", 1, 1),
    ("api + 2 workers, 1 slot each", 2, 1),
)
"""(label, workers or "all", render slots per process: MCP_LOCAL_MAX_CONCURRENCY)."""


async def section_workers(args: argparse.Namespace, work: Path, report: dict[str, Any]) -> None:
    redis = Redis(work, "redis-workers").start()
    store = work / "shared-store"
    store.mkdir(exist_ok=True)
    shared = {"MCP_STATE_URL": redis.url, "MCP_IMAGE_STORE_URL": f"file://{store}"}
    api = Server("api-1", work, {**shared, "MCP_ROLE": "api"}).start()
    solo_store = work / "solo-store"
    solo = Server("solo", work, {"MCP_STATE_URL": "memory://", "MCP_IMAGE_STORE_URL": f"file://{solo_store}"}).start()
    configs = [c for c in WORKER_CONFIGS if args.one_slot or c[2] == 2]
    print(f"\n== workers: {args.batch} jobs of n={args.n} at {args.size}, styles {', '.join(STYLES)} in turn; "
          f"{args.worker_rounds} interleaved round(s); workers MCP_MAX_JOBS={args.worker_max_jobs or 'slots'}; "
          "not pinned", flush=True)
    try:
        await sdk_check(solo)
        workers: list[Server] = []
        for i in range(2):
            workers.append(Server(f"worker-{i + 1}", work, {**shared, "MCP_ROLE": "worker"}))
        workers[0].start()
        await sdk_check(api)  # through the queue to worker-1
        workers[0].stop()
        results: dict[str, list[Batch]] = {label: [] for label, _, _ in configs}
        for k in range(args.worker_rounds):
            for label, count, slots in configs if k % 2 == 0 else configs[::-1]:
                if count == "all":
                    solo.stop()  # restarted with this slot count (the same as its default, 2)
                    solo = Server("solo", work, {"MCP_STATE_URL": "memory://", "MCP_LOCAL_MAX_CONCURRENCY": str(slots),
                                                 "MCP_IMAGE_STORE_URL": f"file://{solo_store}"}).start()
                    batch = await run_batch(solo.port, args.batch, args.n, args.size, [solo.pid, api.pid, redis.pid])
                    _clean(solo_store)
                else:
                    env = {**shared, "MCP_ROLE": "worker", "MCP_LOCAL_MAX_CONCURRENCY": str(slots),
                           "MCP_MAX_JOBS": str(args.worker_max_jobs or slots)}
                    running = [Server(f"worker-{i + 1}", work, env).start() for i in range(int(count))]
                    try:
                        batch = await run_batch(api.port, args.batch, args.n, args.size,
                                                [api.pid, solo.pid, redis.pid, *(w.pid for w in running)])
                    finally:
                        for w in running:
                            w.stop()
                    _clean(store)
                results[label].append(batch)
                print(f"  {label:32} {batch.rate:5.2f} images/s  ({batch.images} in {batch.seconds:5.1f} s, "
                      f"machine {batch.busy:4.0%} busy, other tenants {max(0.0, batch.busy - batch.ours):4.0%})", flush=True)
        client = redis.client()
        report["workers"] = {"results": results, "queue_bytes": client.memory_usage("mcp:queue"),
                             "queue_len": client.xlen("mcp:queue")}
    finally:
        api.stop()
        solo.stop()
        redis.stop()


# --- section: 1 vs 2 api replicas ----------------------------------------------------------------


async def section_replicas(args: argparse.Namespace, work: Path, report: dict[str, Any]) -> None:
    redis = Redis(work, "redis-replicas").start()
    store = work / "replicas-store"
    shared = {"MCP_STATE_URL": redis.url, "MCP_IMAGE_STORE_URL": f"file://{store}"}
    apis = [Server(f"replica-{i + 1}", work, {**shared, "MCP_ROLE": "api"}, advertise=True).start() for i in range(2)]
    worker = Server("replica-worker", work, {**shared, "MCP_ROLE": "worker"}).start()
    conc = args.replica_concurrency
    print(f"\n== replicas: 1 vs 2 MCP_ROLE=api replicas, round-robin, concurrency {conc}; "
          f"{args.duration}s per figure and side in {args.rounds} slices; not pinned", flush=True)
    try:
        job = await sdk_check(apis[0])
        one, two = Pool(apis[:1]), Pool(apis)
        own = {w: await open_session(two.conns[w]) for w in range(conc)}  # each on the replica it is sent to
        on_first = {w: await open_session(one.conns[w]) for w in range(conc)}  # all on replica-1
        probe = await two.conns[1].request("POST", "/mcp", _session_headers(on_first[1]),
                                           json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode())
        forwards = probe[0] == 200
        if not forwards:
            print(f"  a replica answers {probe[0]} for a peer's session: no forwarding figure", flush=True)

        def ping(pool: Pool, sids: dict[int, str]) -> Callable[[int, int], Awaitable[None]]:
            async def op(w: int, n: int) -> None:
                body = {"jsonrpc": "2.0", "id": n, "method": "ping"}
                reply, _ = await _rpc(pool.conns[w], body, _session_headers(sids[w]))
                assert reply is not None and "result" in reply, reply

            return op

        def get(pool: Pool) -> Callable[[int, int], Awaitable[None]]:
            async def op(w: int, n: int) -> None:
                out = await call_tool(pool.conns[w], "get_generation", {"job_id": job, "wait_seconds": 0, "inline": "none"}, n)
                assert out["status"] == "succeeded", out

            return op

        figures: list[tuple[str, str, Callable[..., Any], str, Callable[..., Any]]] = [
            ("ping (2025-11-25 session)", "1 replica", ping(one, on_first), "2 replicas", ping(two, own)),
            ("2026-07-28 get_generation", "1 replica", get(one), "2 replicas", get(two)),
        ]
        if forwards:
            figures.append(("ping, sessions all on replica-1", "1 replica", ping(one, on_first),
                            "2, half forwarded", ping(two, on_first)))
        pids = [a.pid for a in apis]
        for _, _, a_op, _, b_op in figures:
            await run_load(conc, 0.5, a_op)
            await run_load(conc, 0.5, b_op)
        rows: dict[str, tuple[str, str, dict[str, list[Result]]]] = {}
        for label, a_name, a_op, b_name, b_op in figures if "replicas" in args.only else ():
            async def run(op: Callable[[int, int], Awaitable[None]]) -> Result:
                cpu0 = [_cpu_seconds(p) for p in pids]
                res = await run_load(conc, args.duration / args.rounds, op)
                res.server_cpu = sum(_cpu_seconds(p) - c for p, c in zip(pids, cpu0, strict=True)) / res.seconds
                return res

            slices = await timed_slices(
                [(a_name, lambda a_op=a_op: run(a_op)), (b_name, lambda b_op=b_op: run(b_op))], args.rounds)
            rows[label] = (a_name, b_name, slices)
            a, b = Result.pooled(slices[a_name]), Result.pooled(slices[b_name])
            print(f"  {label:32} {a_name} {a.rate:6.0f}/s  {b_name} {b.rate:6.0f}/s  {b.rate / a.rate:.2f}x",
                  flush=True)
        if rows:
            report["replicas"] = rows
        if "ops" in args.only:
            conn = one.conns[0]

            async def gen(i: int) -> None:
                await call_tool(conn, "generate_image", _gen_args(40_000_000 + i))

            async def poll(i: int) -> None:
                await call_tool(conn, "get_generation", {"job_id": job, "wait_seconds": 0, "inline": "none"})

            async def session(i: int) -> None:
                await open_session(conn)

            async def forwarded(i: int) -> None:
                await ping(two, on_first)(1, i)

            report.setdefault("ops", []).extend([
                await count_ops(redis, "api+worker: generate_image n=1 (wait)", args.ops_calls, gen, args.idle_window),
                await count_ops(redis, "api: get_generation, a done job", args.ops_calls, poll, args.idle_window),
                await count_ops(redis, "api: open a 2025-11-25 session", args.ops_calls, session, args.idle_window),
            ])
            if forwards:
                report["ops"].append(
                    await count_ops(redis, "api: ping on a peer's session", args.ops_calls, forwarded, args.idle_window))
            report["background_split"] = await background(redis, args.idle_window)
        await one.close()
        await two.close()
    finally:
        for s in (*apis, worker):
            s.stop()
        redis.stop()


# --- the report ----------------------------------------------------------------------------------


def print_report(report: dict[str, Any], args: argparse.Namespace, cores: list[int], load: str) -> None:
    print(f"\n==== scaleout.py results ({len(cores)} cores; load average at start {load}; "
          f"{'--quick' if args.quick else 'full'} run)")
    if "latency" in report:
        lat = report["latency"]
        print(f"\n1. added latency of MCP_STATE_URL=redis:// over memory:// (concurrency {args.concurrency}, "
              f"2026-07-28 tools/call; replicas pinned to one core: {lat['pinned']})")
        print(f"{'figure':30} {'memory':>9} {'redis':>9} {'added':>8} {'redis/mem':>9}  slices")
        for label, _ in LATENCY_ROWS:
            mem, red = lat["rows"][label]["memory"], lat["rows"][label]["redis"]
            a, b = Result.pooled(mem), Result.pooled(red)
            for q, name in ((0.5, "p50 ms"), (0.99, "p99 ms")):
                spread = [y.pct(q) / x.pct(q) for x, y in zip(mem, red, strict=True)]
                added = [y.pct(q) - x.pct(q) for x, y in zip(mem, red, strict=True)]
                print(f"{label if q == 0.5 else '':30} {a.pct(q):9.2f} {b.pct(q):9.2f} {b.pct(q) - a.pct(q):+8.2f} "
                      f"{b.pct(q) / a.pct(q):9.2f}  {name}: ratio {_range(spread)}, added {_range(added, '{:+.2f}')}")
            spread = [y.rate / x.rate for x, y in zip(mem, red, strict=True)]
            ca, cb = a.server_cpu / a.rate * 1e6, b.server_cpu / b.rate * 1e6
            print(f"{'':30} {a.rate:9.0f} {b.rate:9.0f} {'':8} {b.rate / a.rate:9.2f}  calls/s: ratio {_range(spread)}")
            print(f"{'':30} {ca:9.0f} {cb:9.0f} {cb - ca:+8.0f} {cb / ca:9.2f}  replica CPU us/call; "
                  f"Redis CPU {lat['redis_cpu'][label] * 1e6:.0f} us/call")
    if "workers" in report:
        res = report["workers"]["results"]
        print(f"\n2. generations of a CPU-bound local mix ({args.batch} jobs x n={args.n} at {args.size}) by 1 vs 2 "
              "worker processes behind one api replica")
        print(f"{'configuration':34} {'images/s':>9} {'batch s':>8} {'busy':>5} {'others':>6}  per round")
        for label, batches in res.items():
            rate = sum(b.images for b in batches) / sum(b.seconds for b in batches)
            secs = sum(b.seconds for b in batches) / len(batches)
            busy = sum(b.busy for b in batches) / len(batches)
            others = sum(max(0.0, b.busy - b.ours) for b in batches) / len(batches)
            print(f"{label:34} {rate:9.2f} {secs:8.1f} {busy:5.0%} {others:6.0%}  "
                  f"{_range([b.rate for b in batches])} images/s")
        pairs = [("api + 2 workers, 2 slots each", "api + 1 worker, 2 slots"),
                 ("api + 2 workers, 2 slots each", "1 process, memory:// (all)"),
                 ("api + 2 workers, 1 slot each", "api + 1 worker, 1 slot"),
                 ("api + 2 workers, 1 slot each", "1 process, memory:// (all)")]
        for top, bottom in pairs:
            if top in res and bottom in res:
                ratios = [x.rate / y.rate for x, y in zip(res[top], res[bottom], strict=True)]
                pooled = (sum(b.images for b in res[top]) / sum(b.seconds for b in res[top])) / (
                    sum(b.images for b in res[bottom]) / sum(b.seconds for b in res[bottom]))
                print(f"  {top} / {bottom}: {pooled:.2f}x (rounds {_range(ratios)})")
        print(f"  the queue stream after the run: {report['workers']['queue_len']} entries, "
              f"{report['workers']['queue_bytes']} B")
    if "replicas" in report:
        print(f"\n3. 2 api replicas vs 1 (round-robin by this client, concurrency {args.replica_concurrency}, "
              "MCP_STATE_URL=redis://)")
        print(f"{'figure':32} {'side A':>18} {'side B':>18} {'B/A':>6}  slices; CPU (1.0 = one core)")
        for label, (a_name, b_name, sides) in report["replicas"].items():
            a, b = Result.pooled(sides[a_name]), Result.pooled(sides[b_name])
            spread = [y.rate / x.rate for x, y in zip(sides[a_name], sides[b_name], strict=True)]
            print(f"{label:32} {a_name:>18} {b_name:>18}")
            print(f"{'  calls/s':32} {a.rate:18.0f} {b.rate:18.0f} {b.rate / a.rate:6.2f}  {_range(spread)}; "
                  f"replicas {a.server_cpu:.2f} / {b.server_cpu:.2f}, client {a.client_cpu:.2f} / {b.client_cpu:.2f}")
            print(f"{'  p50 ms':32} {a.pct(0.5):18.2f} {b.pct(0.5):18.2f} {b.pct(0.5) / a.pct(0.5):6.2f}")
            print(f"{'  p99 ms':32} {a.pct(0.99):18.2f} {b.pct(0.99):18.2f} {b.pct(0.99) / a.pct(0.99):6.2f}")
    if "memory" in report:
        m = report["memory"]
        print(f"\n4. Redis memory per finished job ({m['jobs']} jobs, {m['keys_added']} keys added): "
              f"{m['per_job']:.0f} B used_memory, {m['per_job_dataset']:.0f} B used_memory_dataset, "
              f"{m['per_job_usage']:.0f} B by MEMORY USAGE (job key + owner-index growth)")
        e = m["session_entry"]
        print(f"   per idle 2025-11-25 session ({m['sessions']} opened): {m['per_session']:.1f} B used_memory, "
              f"{m['per_session_dataset']:.1f} B dataset; commands while opening them (background included): "
              f"{m['session_commands'] or 'none'}")
        if e["count"]:
            print(f"   the session itself lives in its replica's process; Redis holds {e['count']} directory entries "
                  f"mcp:session:* of MEMORY USAGE {e['usage']} B each (value {e['value']}, TTL {e['ttl']} s)")
        else:
            print("   sessions live in the replica's process only: Redis holds nothing for them")
        print(f"   a finished job's snapshot: {m['snapshot_len']} B of JSON, MEMORY USAGE {m['snapshot_usage']} B, "
              f"TTL {m['ttl']} s; owner index {m['index_entries']} entries in {m['index_bytes']} B")
        print(f"   {'keys':22} {'type':7} {'count':>6} {'bytes':>10} {'B/key':>7}")
        for kind, e in sorted(m["kinds"].items(), key=lambda kv: -kv[1]["bytes"]):
            print(f"   mcp:{kind + ':*':18} {e['type']:7} {e['count']:6} {e['bytes']:10} {e['bytes'] / e['count']:7.0f}")
    if "ops" in report:
        print("\n5. Redis commands per call (MONITOR; idle background subtracted; 'lua' = run inside the scripts)")
        for oc in report["ops"]:
            print(f"   {oc.label:40} {oc.total_client:5.1f} sent + {oc.total_lua:4.1f} lua   "
                  f"[{_fmt_ops(oc.client)}]  lua [{_fmt_ops(oc.lua)}]")
        for key, label in (("background_all", "one MCP_ROLE=all replica"),
                           ("background_split", "two api replicas + one worker")):
            if key in report:
                bg = report[key]
                print(f"   idle background, {label}: {sum(bg.values()):.1f} commands/s "
                      f"[{', '.join(f'{k} {v:.2f}' for k, v in bg.items())}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter slices and smaller batches (~2 minutes)")
    parser.add_argument("--only", default="latency,memory,ops,workers,replicas",
                        help="comma-separated sections: latency, memory, ops, workers, replicas")
    parser.add_argument("--duration", type=float, help="seconds per latency/replica figure and side")
    parser.add_argument("--rounds", type=int, help="interleaved slices per figure")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--replica-concurrency", type=int, default=32)
    parser.add_argument("--batch", type=int, help="jobs per worker batch")
    parser.add_argument("--worker-rounds", type=int)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--size", default="2048x2048")
    parser.add_argument("--worker-max-jobs", type=int, default=0,
                        help="MCP_MAX_JOBS of each worker (0: its slot count, so queued jobs stay in Redis "
                             "for whichever worker has room; the server's default is 32)")
    parser.add_argument("--no-one-slot", dest="one_slot", action="store_false", help="skip the 1-slot worker rows")
    parser.add_argument("--jobs-n", type=int, help="jobs created for the per-job memory figure")
    parser.add_argument("--sessions-n", type=int, help="sessions opened for the per-session memory figure")
    parser.add_argument("--ops-calls", type=int, help="calls per ops figure")
    parser.add_argument("--idle-window", type=float, help="seconds of idle background measured for the ops figures")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the latency section's processes")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) after the run")
    args = parser.parse_args()
    quick = args.quick
    defaults = {"duration": 2.0 if quick else 5.0, "rounds": 4 if quick else 6, "batch": 14 if quick else 21,
                "worker_rounds": 1 if quick else 2, "jobs_n": 300 if quick else 1000,
                "sessions_n": 200 if quick else 1000, "ops_calls": 40 if quick else 100,
                "idle_window": 6.0 if quick else 9.0}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.only = {s.strip() for s in args.only.split(",") if s.strip()}
    if not Path(REDIS_SERVER).exists():
        sys.exit("redis-server is not installed (Debian: apt-get install redis-server)")
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    work = Path(tempfile.mkdtemp(prefix="scaleout-bench-"))
    print(f"cores {cores}; load average {load}; logs in {work}", flush=True)
    report: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        if args.only & {"latency", "memory", "ops"}:
            asyncio.run(section_latency(args, work, cores, report))
        if "workers" in args.only:
            asyncio.run(section_workers(args, work, report))
        if args.only & {"replicas", "ops"}:
            asyncio.run(section_replicas(args, work, report))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_report(report, args, cores, load)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

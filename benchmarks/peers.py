"""Peer benchmark: our server vs peer A, both against our OpenAI wire emulator (issue 17 item 1).

Run by hand, not a test::

    .venv/bin/python benchmarks/peers.py                           # full run, ~4 minutes (+3 to build peer A once)
    .venv/bin/python benchmarks/peers.py --quick                   # short and noisier
    .venv/bin/python benchmarks/peers.py --peer-a-src /path/to/clone-or-mirror --json peers.json

Peer A is ChristopheZhao/image-gen-mcp-server pinned at ``PEER_A_COMMIT`` (a hand-written
JSON-RPC server on Starlette/uvicorn). The script clones it at that commit into
``benchmarks/.peers/peer-a/src`` and builds ``benchmarks/.peers/peer-a/venv`` with the versions
its own ``uv.lock`` pins (given to pip as constraints); if any step fails it prints
``peer A skipped: <reason>`` and measures our rows alone.

Both servers are separate processes pinned to CPU 0 and talk to one OpenAI emulator
(``tests.emulators.OpenAIEmulator``, in its own process) that answers every generation with the
same small PNG (``IMAGE_SIDE``, about 5 KB) after a latency the script sets per row (0 or 1 s).
The load generator and the emulator run on CPU 1. Each figure is measured in slices that
alternate between the subjects (the order flips every round), so a change in machine speed
weighs on all alike; the table prints pooled figures, the ratio ours/peer with which way is
better, and min-max over the rounds. The generator speaks raw HTTP/1.1 (``RawHTTP`` from
``http_load.py``) so its own CPU does not flatten the ratios.

Rows: tools/list on an open session (c=16); session lifecycles (initialize, initialized,
tools/list, DELETE; c=16); generate_image calls/s at latency 0 (c=16; ours with the default
``inline="thumbnail"`` and with ``inline="none"``) and server CPU per call; 50 concurrent
generate_image at latency 1 s (wall; ours at default limits and with the OpenAI and job limits
raised to 64); stdio spawn -> initialize result (median of 10); RSS after 200 generations on
fresh servers; tools/list reply size.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import venv
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make ``benchmarks`` and ``tests`` importable
    sys.path.insert(0, str(ROOT))

from benchmarks.http_load import RawHTTP, Result, _rss, run_load

PEER_A_URL: Final = "https://github.com/ChristopheZhao/image-gen-mcp-server"
PEER_A_COMMIT: Final = "6821f4d5b486b9cb9631fd600c8e079fa0018f5e"
PEERS_DIR: Final = ROOT / "benchmarks" / ".peers"
IMAGE_SIDE: Final = 368
"""Side of the PNG the emulator answers with: about 5 KB, whatever size the server asked for."""
API_KEY: Final = "sk-FAKE-peers-bench"
TOKEN: Final = "peers-bench-token"
PROTOCOL: Final = "2025-11-25"
SERVER_CORE: Final = 0
BURST: Final = 50
RSS_GENERATIONS: Final = 200
Better = Literal["higher", "lower"]


# --- the emulator (child process) ----------------------------------------------------------------


def serve_emulator() -> None:
    """Our OpenAI emulator with a fixed result image, its latency set by lines on stdin.

    The emulator renders the size a request names and its CLI has no latency flag, so this
    subclass pins the image and a ``latency S`` line (answered ``ok``) changes the delay.
    """
    from tests.emulators import OpenAIEmulator
    from tests.emulators.common import RecordedRequest

    class FixedImageEmulator(OpenAIEmulator):
        def render(self, width: int, height: int, *, seed: int = 0, fmt: str | None = None) -> tuple[bytes, str]:
            return super().render(IMAGE_SIDE, IMAGE_SIDE, seed=seed, fmt=fmt)

        async def enter(self, request: Any, route: str) -> tuple[RecordedRequest, Any]:
            rec, fault = await super().enter(request, route)
            self.requests.clear()  # a long run would otherwise keep every request body
            return rec, fault

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with FixedImageEmulator(api_key=API_KEY) as emu:
            print(emu.base_url, flush=True)
            while line := await loop.run_in_executor(None, sys.stdin.readline):
                cmd, _, arg = line.strip().partition(" ")
                if cmd == "latency":
                    emu.latency = float(arg)
                print("ok", flush=True)

    asyncio.run(main())


class EmulatorProc:
    """The emulator child and the one control it needs: its latency."""

    def __init__(self) -> None:
        # Started after the generator pinned itself, so it shares the generator's core(s).
        self._proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-emulator"], cwd=ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        self.base_url = self._proc.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            raise RuntimeError("the OpenAI emulator did not start")

    def set_latency(self, seconds: float) -> None:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(f"latency {seconds}\n")
        self._proc.stdin.flush()
        if self._proc.stdout.readline().strip() != "ok":
            raise RuntimeError("the OpenAI emulator did not take the latency")

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(5)
        self._proc.kill()


# --- peer A: clone at the pinned commit, venv from its uv.lock -----------------------------------


@dataclass(frozen=True, slots=True)
class PeerInstall:
    src: Path
    python: Path


class PeerSkipped(Exception):
    """Peer A cannot be installed; the message says why."""


def _run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PeerSkipped(f"{what}: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise PeerSkipped(f"{what} failed (exit {done.returncode}): {' | '.join(tail)}")
    return done.stdout


def _checkout(source: str, dest: Path) -> None:
    """Have ``dest`` be a clone of ``source`` at ``PEER_A_COMMIT`` (reused when it already is)."""
    if (dest / ".git").exists():
        with contextlib.suppress(PeerSkipped):
            if _run(["git", "-C", str(dest), "rev-parse", "HEAD"], "git rev-parse").strip() == PEER_A_COMMIT:
                return
        shutil.rmtree(dest)
    if shutil.which("git") is None:
        raise PeerSkipped("git is not installed")
    dest.parent.mkdir(parents=True, exist_ok=True)
    _run(["git", "clone", "--quiet", "--no-checkout", source, str(dest)], f"git clone {source}")
    _run(["git", "-C", str(dest), "checkout", "--quiet", "--detach", PEER_A_COMMIT], f"git checkout {PEER_A_COMMIT}")


def _lock_constraints(src: Path) -> str:
    """``name==version`` for every registry package in peer A's ``uv.lock`` (its own pins)."""
    lock = src / "uv.lock"
    if not lock.is_file():
        raise PeerSkipped(f"no uv.lock at {PEER_A_COMMIT[:7]}")
    try:
        packages = tomllib.loads(lock.read_text())["package"]
    except (tomllib.TOMLDecodeError, KeyError) as exc:
        raise PeerSkipped(f"uv.lock unreadable: {exc}") from exc
    pins = [f"{p['name']}=={p['version']}" for p in packages if "registry" in p.get("source", {})]
    return "\n".join(sorted(pins)) + "\n"


def install_peer_a(source: str) -> PeerInstall:
    """Clone, then build the venv once; later runs reuse it while the pins are unchanged.

    Raises:
        PeerSkipped: any step failed, with the reason.
    """
    home = PEERS_DIR / "peer-a"
    src, env_dir = home / "src", home / "venv"
    _checkout(source, src)
    constraints = _lock_constraints(src)
    stamp = env_dir / ".installed"
    digest = hashlib.sha256(f"{PEER_A_COMMIT}\n{constraints}".encode()).hexdigest()
    python = env_dir / "bin" / "python"
    if stamp.is_file() and stamp.read_text() == digest and python.exists():
        return PeerInstall(src, python)
    shutil.rmtree(env_dir, ignore_errors=True)
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise PeerSkipped(f"cannot create {env_dir}: {exc}") from exc
    pins = home / "constraints.txt"
    pins.write_text(constraints)
    print(f"peer A: installing {src} into {env_dir} with {constraints.count(chr(10))} pins from uv.lock ...",
          flush=True)
    _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c", str(pins), str(src)],
         "pip install")
    # From the venv's folder: run from here, ``import mcp_image_server`` would find ours.
    _run([str(python), "-c", "import mcp_image_server.transports.http_server"], "import check", cwd=env_dir)
    stamp.write_text(digest)
    return PeerInstall(src, python)


# --- servers -------------------------------------------------------------------------------------


@dataclass
class Server:
    """One HTTP server under test (a child process pinned to the server core)."""

    name: str
    path: str
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def conn(self) -> RawHTTP:
        return RawHTTP("127.0.0.1", self.port)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pin(pid: int, cores: set[int]) -> None:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(pid, cores)


def _spawn(argv: list[str], env: dict[str, str], workdir: Path, pinned: bool) -> subprocess.Popen[bytes]:
    """Start a server with its stderr in ``workdir/stderr.log`` (kept to say why a start failed).

    Pinned from its first instruction (see ``_on_server_core``), so every thread it starts is too.
    """
    with open(workdir / "stderr.log", "wb") as log, _on_server_core(pinned):
        return subprocess.Popen(argv, env=env, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log)


@contextlib.contextmanager
def _on_server_core(pinned: bool) -> Iterator[None]:
    """Move this thread to the server core while it forks a server: the child inherits it.

    A child pinned only after it started could already have threads on the other core, and
    ``preexec_fn`` is unsafe in a process with threads.
    """
    if not pinned:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {SERVER_CORE})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _base_env(workdir: Path, emulator: EmulatorProc) -> dict[str, str]:
    """What both servers share: a clean environment pointing OpenAI at the emulator."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "OPENAI_API_KEY": API_KEY,
        "OPENAI_BASE_URL": emulator.base_url,
        "MCP_DEFAULT_PROVIDER": "openai",
        "MCP_IMAGE_SAVE_DIR": str(workdir / "images"),
        "MCP_AUTH_TOKEN": TOKEN,
    }


def ours_command(workdir: Path, emulator: EmulatorProc, extra: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    env = {**_base_env(workdir, emulator), "PYTHONPATH": str(ROOT), "MCP_LOG_LEVEL": "WARNING", **extra}
    return [sys.executable, "-m", "mcp_image_server"], env


def peer_command(peer: PeerInstall, workdir: Path, emulator: EmulatorProc) -> tuple[list[str], dict[str, str]]:
    # Peer A reads ./.env (pydantic-settings), so it runs in an empty folder; and it is installed
    # under the same import name as ours, so no PYTHONPATH.
    return [str(peer.python), "-m", "mcp_image_server"], {**_base_env(workdir, emulator), "MCP_LOG_LEVEL": "warning"}


async def start_server(
    name: str, kind: Literal["ours", "peer"], emulator: EmulatorProc, peer: PeerInstall | None,
    pinned: bool, extra: dict[str, str] | None = None,
) -> Server:
    workdir = Path(tempfile.mkdtemp(prefix=f"peers-{name}-"))
    port = _free_port()
    if kind == "ours":
        argv, env = ours_command(workdir, emulator, extra or {})
        argv += ["--transport", "http", "--host", "127.0.0.1", "--port", str(port)]
        path = "/mcp"
    else:
        assert peer is not None
        argv, env = peer_command(peer, workdir, emulator)
        env.update({"MCP_TRANSPORT": "http", "MCP_HOST": "127.0.0.1", "MCP_PORT": str(port)})
        path = "/mcp/v1/messages"
    proc = _spawn(argv, env, workdir, pinned)
    server = Server(name, path, proc, port, workdir)
    conn = server.conn()
    try:
        for _ in range(600):
            if proc.poll() is not None:
                break
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                status, _, _ = await conn.request("GET", "/health", {})
                if status == 200:
                    return server
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    tail = (workdir / "stderr.log").read_text(errors="replace").strip().splitlines()[-3:]
    server.stop()
    raise RuntimeError(f"{name} did not start: {' | '.join(tail)}")


# --- the MCP calls over RawHTTP ------------------------------------------------------------------


def _headers(sid: str | None = None) -> dict[str, str]:
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "Authorization": f"Bearer {TOKEN}",
    }
    if sid is not None:
        headers |= {"Mcp-Session-Id": sid, "MCP-Protocol-Version": PROTOCOL}
    return headers


async def rpc(
    conn: RawHTTP, server: Server, body: dict[str, Any], sid: str | None = None
) -> tuple[dict[str, Any] | None, dict[str, str], bytes]:
    """POST one message; the JSON-RPC reply (JSON or SSE), the response headers and raw body."""
    status, headers, raw = await conn.request("POST", server.path, _headers(sid), json.dumps(body).encode())
    if status >= 400:
        raise RuntimeError(f"{server.name} {body.get('method')}: HTTP {status} {raw[:200]!r}")
    if not raw:
        return None, headers, raw
    if headers.get("content-type", "").startswith("text/event-stream"):
        for line in raw.decode().splitlines():
            if line.startswith("data:") and '"id"' in line:
                return json.loads(line[5:]), headers, raw
        raise RuntimeError(f"{server.name}: SSE response without a reply")
    return json.loads(raw), headers, raw


async def open_session(conn: RawHTTP, server: Server) -> str:
    init = {
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
    }
    reply, headers, _ = await rpc(conn, server, init)
    assert reply is not None and "result" in reply, reply
    sid = headers["mcp-session-id"]
    # Peer A answers this notification with a JSON-RPC error ("Unknown method"); both pay the round trip.
    await rpc(conn, server, {"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
    return sid


async def close_session(conn: RawHTTP, server: Server, sid: str) -> None:
    status, _, _ = await conn.request("DELETE", server.path, _headers(sid))
    assert status in (200, 202, 204), status


async def generate(conn: RawHTTP, server: Server, sid: str, n: int, inline: str | None) -> None:
    args: dict[str, Any] = {"prompt": f"a lighthouse at dusk, take {n}"}
    if inline is not None:
        args["inline"] = inline
    body = {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": "generate_image", "arguments": args}}
    reply, _, _ = await rpc(conn, server, body, sid)
    result = (reply or {}).get("result")
    if not result or result.get("isError"):
        raise RuntimeError(f"{server.name} generate_image failed: {json.dumps(reply)[:300]}")


# --- subjects, slices and rows -------------------------------------------------------------------


@dataclass(eq=False)
class Subject:
    """One server in one configuration, with the operations a row runs on it."""

    label: str
    server: Server
    inline: str | None = None
    conns: list[RawHTTP] = field(default_factory=list)
    sids: list[str] = field(default_factory=list)

    async def prepare(self, count: int) -> None:
        while len(self.conns) < count:
            conn = self.server.conn()
            self.conns.append(conn)
            self.sids.append(await open_session(conn, self.server))

    async def aclose(self) -> None:
        for conn in self.conns:
            await conn.close()

    def op(self, name: str) -> Callable[[int, int], Awaitable[None]]:
        server = self.server

        async def tools_list(w: int, n: int) -> None:
            reply, _, _ = await rpc(self.conns[w], server, {"jsonrpc": "2.0", "id": n, "method": "tools/list"},
                                    self.sids[w])
            assert reply is not None and reply["result"]["tools"], reply

        async def lifecycle(w: int, n: int) -> None:
            conn = self.conns[w]
            sid = await open_session(conn, server)
            reply, _, _ = await rpc(conn, server, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, sid)
            assert reply is not None and reply["result"]["tools"], reply
            await close_session(conn, server, sid)

        async def gen(w: int, n: int) -> None:
            await generate(self.conns[w], server, self.sids[w], w * 1_000_000 + n, self.inline)

        return {"tools/list": tools_list, "lifecycle": lifecycle, "generate": gen}[name]


@dataclass
class Row:
    """One printed line: a figure for ours and for the peer, pooled and per round."""

    label: str
    unit: str
    better: Better
    ours: float
    ours_rounds: list[float]
    peer: float | None = None
    peer_rounds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        ratio = self.ours / self.peer if self.peer else None
        paired = [a / b for a, b in zip(self.ours_rounds, self.peer_rounds, strict=False) if b]
        return {
            "row": self.label, "unit": self.unit, "better": self.better,
            "ours": self.ours, "ours_range": _span(self.ours_rounds), "ours_rounds": self.ours_rounds,
            "peer": self.peer, "peer_range": _span(self.peer_rounds) if self.peer_rounds else None,
            "peer_rounds": self.peer_rounds,
            "ratio": ratio, "ratio_range": _span(paired) if paired else None,
        }


def _span(values: list[float]) -> list[float]:
    return [min(values), max(values)]


def _order(subjects: list[Subject], k: int) -> list[Subject]:
    """Round ``k``'s order: rotated every round, so no subject always runs first or last."""
    shift = k % len(subjects)
    return subjects[shift:] + subjects[:shift]


async def sliced(
    subjects: list[Subject], op: str, concurrency: int, seconds: float, rounds: int, notes: list[str]
) -> dict[str, list[Result]]:
    slices: dict[str, list[Result]] = {s.label: [] for s in subjects}
    for k in range(rounds):
        for s in _order(subjects, k):
            slices[s.label].append(await run_load(concurrency, seconds / rounds, s.op(op), s.server.pid))
    # The generator's own CPU: if it neared a whole core it, not the server, set the rate.
    shares = ", ".join(f"{label} {Result.pooled(r).client_cpu:.0%}" for label, r in slices.items())
    notes.append(f"{op} c={concurrency}: load generator CPU (share of its core): {shares}")
    return slices


def _rate(r: Result) -> float:
    return r.rate


def _cpu_ms(r: Result) -> float:
    return r.server_cpu * r.seconds / r.count * 1000


def rows_from(
    label: str, unit: str, better: Better, slices: dict[str, list[Result]], ours: str, peer: str | None,
    metric: Callable[[Result], float],
) -> Row:
    own = slices[ours]
    row = Row(label, unit, better, metric(Result.pooled(own)), [metric(r) for r in own])
    if peer is not None and peer in slices:
        row.peer, row.peer_rounds = metric(Result.pooled(slices[peer])), [metric(r) for r in slices[peer]]
    return row


async def burst(subject: Subject, count: int) -> float:
    """Wall seconds for ``count`` generate_image calls sent at once, each on its own session."""
    await subject.prepare(count)
    start = time.perf_counter()
    await asyncio.gather(*(subject.op("generate")(w, int(start * 1000)) for w in range(count)))
    return time.perf_counter() - start




async def spawn_to_initialize(argv: list[str], env: dict[str, str], cwd: Path, pinned: bool) -> float:
    init = {
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}},
    }
    start = time.perf_counter()
    with _on_server_core(pinned):  # the fork happens in this thread, inside the call
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, cwd=cwd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(init).encode() + b"\n")
    await proc.stdin.drain()
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    elapsed = time.perf_counter() - start
    proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        proc.kill()
        await proc.wait()
    if b'"result"' not in line:
        raise RuntimeError(f"{argv[0]}: no initialize result: {line[:200]!r}")
    return elapsed


# --- the run -------------------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    emulator: EmulatorProc
    peer: PeerInstall | None
    pinned: bool
    load_cores: set[int] | None
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def emit(self, row: Row) -> None:
        self.rows.append(row)
        print_row(row)

    async def server(self, name: str, kind: Literal["ours", "peer"], extra: dict[str, str] | None = None) -> Server:
        return await start_server(name, kind, self.emulator, self.peer, self.pinned, extra)

    async def run(self) -> None:
        self.emulator.set_latency(0)
        ours = await self.server("ours", "ours")
        peer = await self.server("peer", "peer") if self.peer else None
        servers = [ours] + ([peer] if peer else [])
        try:
            await self.http_rows(ours, peer)
            await self.burst_rows(ours, peer)
        finally:
            for s in servers:
                s.stop()
        await self.rss_rows()
        await self.stdio_rows()

    async def http_rows(self, ours: Server, peer: Server | None) -> None:
        a = self.args
        subjects = [Subject("ours", ours)] + ([Subject("peer", peer)] if peer else [])
        thumb, none_ = Subject("ours", ours), Subject("ours inline=none", ours, inline="none")
        gen_subjects = [thumb, none_] + ([Subject("peer", peer)] if peer else [])
        try:
            for s in {*subjects, *gen_subjects}:
                await s.prepare(16)
            for s in gen_subjects:  # warm-up: imports, pools, first files; not measured
                await run_load(16, 0.5, s.op("generate"), s.server.pid)
            for s in subjects:
                await run_load(16, 0.3, s.op("tools/list"), s.server.pid)
                await run_load(16, 0.3, s.op("lifecycle"), s.server.pid)
            peer_label = "peer" if peer else None

            sl = await sliced(subjects, "tools/list", 16, a.duration, a.rounds, self.notes)
            self.emit(rows_from("tools/list c=16", "req/s", "higher", sl, "ours", peer_label, _rate))
            self.emit(rows_from("  p50", "ms", "lower", sl, "ours", peer_label, lambda r: r.pct(0.5)))
            self.emit(rows_from("  p99", "ms", "lower", sl, "ours", peer_label, lambda r: r.pct(0.99)))
            self.emit(rows_from("  server CPU", "us/req", "lower", sl, "ours", peer_label,
                                lambda r: _cpu_ms(r) * 1000))

            sl = await sliced(subjects, "lifecycle", 16, a.duration, a.rounds, self.notes)
            self.emit(rows_from("lifecycle c=16", "/s", "higher", sl, "ours", peer_label, _rate))

            sl = await sliced(gen_subjects, "generate", 16, a.duration, a.rounds, self.notes)
            self.emit(rows_from("generate c=16 lat 0", "calls/s", "higher", sl, "ours", peer_label, _rate))
            self.emit(rows_from("  ours inline=none", "calls/s", "higher", sl, "ours inline=none", peer_label,
                                _rate))
            self.emit(rows_from("  p50 (ours default inline)", "ms", "lower", sl, "ours", peer_label,
                                lambda r: r.pct(0.5)))
            self.emit(rows_from("server CPU/generate", "ms", "lower", sl, "ours", peer_label, _cpu_ms))
            self.emit(rows_from("  ours inline=none", "ms", "lower", sl, "ours inline=none", peer_label, _cpu_ms))

            size = await reply_sizes(ours, peer)
            self.emit(Row("tools/list reply", "bytes", "lower", size["ours"][0], [size["ours"][0]],
                          *((size["peer"][0], [size["peer"][0]]) if peer else ())))
            self.emit(Row("  as compact JSON", "bytes", "lower", size["ours"][1], [size["ours"][1]],
                          *((size["peer"][1], [size["peer"][1]]) if peer else ())))
        finally:
            for s in {*subjects, *gen_subjects}:
                await s.aclose()

    async def burst_rows(self, ours: Server, peer: Server | None) -> None:
        """50 calls at once against a 1 s vendor: how far the limits let the calls overlap."""
        raised = {"MCP_OPENAI_MAX_CONCURRENCY": "64", "MCP_MAX_JOBS": "64"}
        ours64 = await self.server("ours-64", "ours", raised)
        subjects = [Subject("ours", ours), Subject("ours 64", ours64)] + ([Subject("peer", peer)] if peer else [])
        self.emulator.set_latency(1.0)
        walls: dict[str, list[float]] = {s.label: [] for s in subjects}
        try:
            for s in subjects:
                await s.prepare(BURST)
            for k in range(self.args.burst_rounds):
                for s in _order(subjects, k):
                    walls[s.label].append(await burst(s, BURST))
        finally:
            self.emulator.set_latency(0)
            for s in subjects:
                await s.aclose()
            ours64.stop()
        peer_wall = walls.get("peer", [])
        for label, key in ((f"{BURST} calls, vendor 1 s", "ours"),
                           ("  ours OpenAI+jobs limits 64", "ours 64")):
            row = Row(label, "s wall", "lower", statistics.median(walls[key]), walls[key])
            if peer_wall:
                row.peer, row.peer_rounds = statistics.median(peer_wall), peer_wall
            self.emit(row)
        from mcp_image_server.config import Settings

        defaults = Settings()
        self.notes.append(
            "50-call rows: median wall over rounds; ours default limits are "
            f"MCP_OPENAI_MAX_CONCURRENCY={defaults.openai_max_concurrency}, MCP_MAX_JOBS={defaults.max_jobs} "
            f"(MCP_MAX_QUEUED_JOBS={defaults.max_queued_jobs})")

    async def rss_rows(self) -> None:
        """Fresh servers, 200 generations each (c=16, latency 0), then their resident memory."""
        rss: dict[str, tuple[int, int]] = {}
        kinds: tuple[Literal["ours", "peer"], ...] = ("ours", "peer") if self.peer else ("ours",)
        for kind in kinds:
            server = await self.server(f"{kind}-rss", kind)
            subject = Subject(kind, server)
            try:
                await subject.prepare(16)
                before = _rss(server.pid)
                done = iter(range(RSS_GENERATIONS))

                async def worker(w: int, s: Subject = subject, it: Iterator[int] = done) -> None:
                    for n in it:
                        await s.op("generate")(w, n)

                await asyncio.gather(*(worker(w) for w in range(16)))
                await asyncio.sleep(1)
                rss[kind] = (before, _rss(server.pid))
            finally:
                await subject.aclose()
                server.stop()
        mb = 1024 * 1024
        for label, i in ((f"RSS after {RSS_GENERATIONS} generations", 1), ("  RSS before them", 0)):
            row = Row(label, "MB", "lower", rss["ours"][i] / mb, [rss["ours"][i] / mb])
            if "peer" in rss:
                row.peer, row.peer_rounds = rss["peer"][i] / mb, [rss["peer"][i] / mb]
            self.emit(row)

    async def stdio_rows(self) -> None:
        workdir = Path(tempfile.mkdtemp(prefix="peers-stdio-"))
        try:
            subjects = {"ours": ours_command(workdir, self.emulator, {})}
            if self.peer:
                argv, env = peer_command(self.peer, workdir, self.emulator)
                subjects["peer"] = (argv, {**env, "MCP_TRANSPORT": "stdio"})
            times: dict[str, list[float]] = {k: [] for k in subjects}
            for argv, env in subjects.values():  # warm the file cache once each
                await spawn_to_initialize(argv, env, workdir, self.pinned)
            for k in range(self.args.stdio_runs):
                for name in list(subjects)[:: 1 if k % 2 == 0 else -1]:
                    argv, env = subjects[name]
                    times[name].append(await spawn_to_initialize(argv, env, workdir, self.pinned) * 1000)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        row = Row("stdio spawn->initialize", "ms median", "lower", statistics.median(times["ours"]), times["ours"])
        if "peer" in times:
            row.peer, row.peer_rounds = statistics.median(times["peer"]), times["peer"]
        self.emit(row)


async def reply_sizes(ours: Server, peer: Server | None) -> dict[str, tuple[float, float]]:
    """tools/list reply: body bytes on the wire, and the JSON-RPC message re-encoded compactly."""
    sizes = {}
    for server in [ours] + ([peer] if peer else []):
        conn = server.conn()
        try:
            sid = await open_session(conn, server)
            reply, _, raw = await rpc(conn, server, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, sid)
            sizes["ours" if server is ours else "peer"] = (
                float(len(raw)), float(len(json.dumps(reply, separators=(",", ":"), ensure_ascii=False).encode()))
            )
            await close_session(conn, server, sid)
        finally:
            await conn.close()
    return sizes


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}"


def print_row(row: Row) -> None:
    d = row.as_dict()
    ratio = "-"
    if d["ratio"] is not None:
        wins = d["ratio"] > 1 if row.better == "higher" else d["ratio"] < 1
        ratio = f"{d['ratio']:.2f}x {'ours' if wins else 'peer'} better ({row.better} wins)"

    def span(r: list[float] | None) -> str:
        return f"{_fmt(r[0])}-{_fmt(r[1])}" if r and len(row.ours_rounds) > 1 else "-"

    rr = d["ratio_range"]
    print(f"{row.label:30} {row.unit:10} {_fmt(row.ours):>8} {_fmt(row.peer):>8}  {ratio:34} "
          f"ours {span(d['ours_range']):>13}  peer {span(d['peer_range']):>13}  "
          f"ratio {f'{rr[0]:.2f}-{rr[1]:.2f}' if rr and len(row.ours_rounds) > 1 else '-'}", flush=True)


def main(args: argparse.Namespace) -> int:
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pinned = len(cores) >= 2 and SERVER_CORE in cores
    load_cores = set(cores) - {SERVER_CORE} if pinned else None
    if load_cores:
        _pin(0, load_cores)  # the generator (and the emulator, its child) on the other core(s)
    peer: PeerInstall | None = None
    peer_status: dict[str, str] = {"commit": PEER_A_COMMIT, "source": args.peer_a_src}
    try:
        peer = install_peer_a(args.peer_a_src)
        peer_status["status"] = "ok"
    except PeerSkipped as exc:
        print(f"peer A skipped: {exc}", flush=True)
        peer_status |= {"status": "skipped", "reason": str(exc)}
    emulator = EmulatorProc()
    bench = Bench(args, emulator, peer, pinned, load_cores)
    print(f"cores {cores}; servers on {{{SERVER_CORE}}} and load on {load_cores} " if pinned else
          f"cores {cores}: too few to pin, figures are noisier ", end="")
    print(f"; {args.duration}s per figure and subject in {args.rounds} slices; emulator PNG "
          f"{IMAGE_SIDE}x{IMAGE_SIDE} ({_png_bytes()} bytes)", flush=True)
    print(f"{'row':30} {'unit':10} {'ours':>8} {'peer A':>8}  {'ours/peer':34} min-max over rounds", flush=True)
    load = [_loadavg()]
    try:
        asyncio.run(bench.run())
    finally:
        emulator.close()
    load.append(_loadavg())
    bench.notes.append(f"load average (1 min) at start and end: {load[0]:.2f} / {load[1]:.2f} (2 cores; "
                       "above 2 means other work shared the machine)")
    for note in bench.notes:
        print(f"note: {note}")
    if args.json:
        out = {
            "peer_a": peer_status, "cores": cores, "pinned": pinned, "quick": args.quick,
            "duration": args.duration, "rounds": args.rounds, "burst_rounds": args.burst_rounds,
            "stdio_runs": args.stdio_runs, "image_side": IMAGE_SIDE, "notes": bench.notes,
            "loadavg": load, "rows": [r.as_dict() for r in bench.rows],
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _loadavg() -> float:
    return os.getloadavg()[0]


def _png_bytes() -> int:
    from tests.emulators.common import render_image

    return len(render_image(IMAGE_SIDE, IMAGE_SIDE, "png", seed=0, label="openai"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-a-src", default=PEER_A_URL, metavar="PATH_OR_URL",
                        help="where to clone peer A from (a URL, a clone or a bare mirror); default: GitHub")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    parser.add_argument("--quick", action="store_true", help="a short run: fewer, shorter slices")
    parser.add_argument("--duration", type=float, help="seconds per throughput figure and subject (default 6)")
    parser.add_argument("--rounds", type=int, help="interleaved slices per figure (default 5)")
    parser.add_argument("--serve-emulator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.duration = args.duration or (1.5 if args.quick else 6.0)
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.burst_rounds = 1 if args.quick else 3
    args.stdio_runs = 3 if args.quick else 10
    return args


if __name__ == "__main__":
    ns = parse_args()
    if ns.serve_emulator:
        serve_emulator()
    else:
        sys.exit(main(ns))

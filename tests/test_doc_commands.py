"""The shell command blocks of README.md, HTTP_TRANSPORT_GUIDE.md and docs/VSCODE_INTEGRATION.md work as
written, from a fresh clone, on a machine with only python3 (and curl for the curl examples).

**What is replayed.** Every fenced block tagged ``sh``, ``bash``, ``shell`` or ``console`` (of a console
block only its ``$ `` lines), in document order. A block whose nearest non-blank line before the fence is
``<!-- not replayed: <reason> -->`` is skipped; each such comment must give its reason, and there must be
few (``MAX_NOT_REPLAYED``). ``./mcp-server test`` is never replayed: it runs this suite, so replaying it
here would recurse; ``test_quick_start_keeps_the_test_command`` checks it is in the README's Quick start
instead.

**How.** Like a reader with two terminals. A block whose command starts a server runs in the first one:
``./mcp-server`` (stdio), ``./mcp-server http ...`` (or ``MCP_TRANSPORT=http ./mcp-server``) and
``./mcp-server emulators``; such a block holds that one command only. It must be ready within
``READY_TIMEOUT``: the HTTP server logs ``MCP Streamable HTTP endpoint``, the emulators print their
``export`` lines and then ``# Ctrl-C to stop``, the stdio server answers an ``initialize`` line written
to its stdin. Every other block up to the next server block of that document is a follow-up: they run
in the second terminal against that server, as one bash session (``set -euo pipefail``, so variables
carry from block to block), and must exit 0 within ``COMMAND_TIMEOUT``. Blocks before a document's first
server block run the same way with no server. Then the server gets SIGINT, sent to its process group
as Ctrl-C does, and must exit within ``STOP_TIMEOUT`` without a traceback. Nothing waits on a sleep:
only on output lines and process exits, each with a bounded timeout.

A ``text`` block right after a server block is that server's documented output: each of its lines
must appear in what the server printed (read with the substitutions below, and ``/home/you`` as
``$HOME``).

**Substitution** (the only change made to a command): every ``8000``, the default port, becomes a free
port, and ``MCP_PORT`` is set to that port in both terminals, so ``./mcp-server http`` without
``--port`` uses it too and a busy port 8000 on the test machine cannot matter.

**The fresh clone** is this checkout's tracked files plus its untracked files that are not ignored
(``git ls-files --cached --others --exclude-standard``; so uncommitted changes are what is tested),
copied to a temporary folder without ``.venv``. ``./mcp-server`` there gets the virtualenv running
these tests through an overlay (``MCP_IMAGE_SERVER_VENV``): its ``bin/python`` and ``lib`` are
symlinks to that venv, and its stamp names the clone's lock file, so nothing is installed and the
shared venv is never written to. ``HOME`` and ``XDG_DATA_HOME`` are fresh folders; ``PATH`` is the
inherited one without any virtualenv's ``bin``; no ``MCP_*``, provider, proxy or Python variable is
passed on. The network is 127.0.0.1 only: the blocks that need more are the marked ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = pytest.mark.timeout(150)

DOCS = ("README.md", "HTTP_TRANSPORT_GUIDE.md", "docs/VSCODE_INTEGRATION.md")
SHELLS = ("sh", "bash", "shell", "console")
MAX_NOT_REPLAYED = 8
READY_TIMEOUT = 60.0
COMMAND_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0

READY = {"http": "MCP Streamable HTTP endpoint", "emulators": "# Ctrl-C to stop"}
ONE_SHOT = {"test", "--version", "--help", "-h"}
"""``./mcp-server`` subcommands that end by themselves; anything else starts a server."""
SKIPPED = {"test": "runs the whole suite, this test included: replaying it here would recurse"}

_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
_MARK = re.compile(r"^<!--\s*not replayed:(.*?)-->$")
_LAUNCH = re.compile(r"(?:^|\s)\./mcp-server(?:\s+(\S+))?")


@dataclass
class Block:
    doc: str
    line: int
    lang: str
    text: str
    not_replayed: str | None  # the reason, when marked

    def commands(self) -> list[str]:
        """The block's logical command lines: continuations joined, comments and blank lines dropped."""
        lines = self.text.splitlines()
        if self.lang == "console":
            lines = [ln[2:] for ln in lines if ln.startswith("$ ")]  # continuations of $ lines are rare
        out: list[str] = []
        pending = ""
        for ln in lines:
            if pending:
                pending += "\n" + ln
            elif ln.strip() and not ln.lstrip().startswith("#"):
                pending = ln
            else:
                continue
            if not pending.endswith("\\"):
                out.append(pending)
                pending = ""
        if pending:
            out.append(pending)
        return out

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks(doc: str) -> list[Block]:
    text = (REPO / doc).read_text(encoding="utf-8")
    found = []
    for m in _FENCE.finditer(text):
        before = [ln.strip() for ln in text[: m.start()].splitlines() if ln.strip()]
        mark = _MARK.match(before[-1]) if before else None
        found.append(Block(doc, text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2),
                           mark.group(1).strip() if mark else None))
    return found


def shell_blocks(doc: str) -> list[Block]:
    return [b for b in blocks(doc) if b.lang in SHELLS]


def launch(command: str) -> tuple[str | None, str | None]:
    """``(kind, subcommand)`` of a command that runs ``./mcp-server``; kind is None for one-shot commands."""
    m = _LAUNCH.search(command)
    if m is None:
        return None, None
    sub = m.group(1)
    if sub in ONE_SHOT:
        return None, sub
    if sub == "emulators":
        return "emulators", sub
    if sub == "http" or "MCP_TRANSPORT=http" in command or re.search(r"--transport[ =]http", command):
        return "http", sub
    return "stdio", sub


@dataclass
class Stretch:
    """One server block (or none) and the follow-up commands that run against it."""

    server: Block | None
    command: str | None
    kind: str | None
    followups: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)
    """The lines of a ``text`` block right after the server block: what the server prints."""


def plan(doc: str) -> list[Stretch]:
    stretches: list[Stretch] = []
    previous: Block | None = None
    for block in blocks(doc):
        after, previous = previous, block
        if block.lang == "text" and stretches and stretches[-1].server is after and after is not None:
            stretches[-1].expected = [ln for ln in block.text.splitlines() if ln.strip()]
        if block.lang not in SHELLS or block.not_replayed is not None:
            continue
        commands = [c for c in block.commands() if launch(c)[1] not in SKIPPED]
        servers = [c for c in commands if launch(c)[0] is not None]
        if servers:
            assert commands == servers[:1], f"{block.where}: a block that starts a server holds that one command only"
            stretches.append(Stretch(block, servers[0], launch(servers[0])[0]))
        elif commands:
            if not stretches:
                stretches.append(Stretch(None, None, None))
            stretches[-1].followups.append("\n".join(commands))
            stretches[-1].sources.append(block.where)
    return stretches


# --- the fresh clone -----------------------------------------------------------------------------------


@dataclass
class Clone:
    root: Path
    venv: Path


def _checksum(root: Path, *files: str) -> str:
    """What ``./mcp-server`` stamps: ``cat FILES | cksum | tr ' ' '-'``."""
    return subprocess.run(["sh", "-c", 'cat "$@" | cksum | tr " " "-"', "sh", *files], cwd=root, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Clone:
    if shutil.which("bash") is None:
        pytest.skip("needs bash (the blocks are bash)")
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout (the fresh clone is built from `git ls-files`)")
    if sys.prefix == sys.base_prefix:
        pytest.skip("not run from a virtualenv, so there is none to lend ./mcp-server")
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            check=True, capture_output=True).stdout
    base = tmp_path_factory.mktemp("fresh")
    root = base / "mcp-image-server"
    for raw in filter(None, listed.split(b"\0")):
        name = os.fsdecode(raw)
        src, dst = REPO / name, root / name
        if ".venv" in Path(name).parts or not (src.exists() or src.is_symlink()):
            continue  # deleted in the working tree
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)

    source = Path(sys.prefix)
    key = "run " + _checksum(root, "requirements.lock.txt")
    stamp = source / ".mcp-image-server-stamp"
    if stamp.exists() and key not in stamp.read_text().splitlines():
        pytest.skip(f"{source} was installed from other lock files: run ./mcp-server --version first")
    venv = base / "venv"
    (venv / "bin").mkdir(parents=True)
    os.symlink(source / "bin" / "python", venv / "bin" / "python")
    os.symlink(source / "lib", venv / "lib")
    shutil.copy2(source / "pyvenv.cfg", venv / "pyvenv.cfg")
    (venv / ".mcp-image-server-stamp").write_text(key + "\n")
    return Clone(root, venv)


def _clean_path() -> str:
    venvs = {Path(sys.prefix).resolve(), (REPO / ".venv").resolve()}
    if os.environ.get("VIRTUAL_ENV"):
        venvs.add(Path(os.environ["VIRTUAL_ENV"]).resolve())
    keep = []
    for entry in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep):
        resolved = Path(entry).resolve() if entry else None
        if resolved is None or any(resolved == v or v in resolved.parents for v in venvs):
            continue
        if (resolved / "mcp-image-server").exists():
            continue
        keep.append(entry)
    return os.pathsep.join(keep)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _substitute(command: str, port: int) -> str:
    return re.sub(r"(?<!\d)8000(?!\d)", str(port), command)


# --- running -------------------------------------------------------------------------------------------


class Server:
    """A server command in its own terminal (process group): its output kept, ready waited for, Ctrl-C."""

    def __init__(self, stretch: Stretch, env: dict[str, str], cwd: Path, port: int) -> None:
        assert stretch.command is not None and stretch.kind is not None and stretch.server is not None
        self.kind, self.where, self.port = stretch.kind, stretch.server.where, port
        self.command = _substitute(stretch.command, port)
        self.env, self.cwd = env, cwd
        self.out: list[str] = []
        self.err: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []

    def output(self) -> str:
        return f"$ {self.command}\n--- stdout:\n{''.join(self.out)}--- stderr:\n{''.join(self.err)}"

    async def _pump(self, stream: asyncio.StreamReader, sink: list[str], marker: str | None,
                    ready: asyncio.Event) -> None:
        async for raw in stream:
            sink.append(raw.decode(errors="replace"))
            if marker is not None and marker in sink[-1]:
                ready.set()
        ready.set()  # end of output: stop waiting, the check below says why

    async def __aenter__(self) -> Server:
        self.proc = await asyncio.create_subprocess_exec(
            "bash", "-c", self.command, cwd=self.cwd, env=self.env, start_new_session=True,
            stdin=asyncio.subprocess.PIPE if self.kind == "stdio" else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        ready = asyncio.Event()  # set by the stream that carries the ready line, at that line or its end
        marker = READY.get(self.kind)
        on_stdout = self.kind == "emulators"
        streams = [(self.proc.stderr, self.err, not on_stdout)]
        if self.kind != "stdio":  # a stdio server's stdout is the protocol, read by _initialize
            streams.append((self.proc.stdout, self.out, on_stdout))
        for stream, sink, carries in streams:
            self._tasks.append(asyncio.create_task(self._pump(stream, sink, marker if carries else None,
                                                              ready if carries else asyncio.Event())))
        try:
            if self.kind == "stdio":
                await self._initialize()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ready.wait(), READY_TIMEOUT)
                assert marker in "".join(self.out if on_stdout else self.err), (
                    f"{self.where}: not ready within {READY_TIMEOUT:.0f} s (no {marker!r})\n{self.output()}")
                self._check_ready()
        except BaseException:
            await self._kill()
            raise
        return self

    async def _initialize(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "doc-replay", "version": "1"}}}
        self.proc.stdin.write(json.dumps(hello).encode() + b"\n")
        await self.proc.stdin.drain()
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), READY_TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"{self.where}: no answer to initialize within {READY_TIMEOUT:.0f} s\n"
                                 f"{self.output()}") from None
        self.out.append(line.decode(errors="replace"))
        assert line, f"{self.where}: the stdio server ended without answering initialize\n{self.output()}"
        reply = json.loads(line)
        assert reply.get("id") == 1 and reply["result"]["serverInfo"]["name"], self.output()

    def _check_ready(self) -> None:
        if self.kind == "http":
            assert f"http://127.0.0.1:{self.port}/mcp" in "".join(self.err), self.output()
        elif self.kind == "emulators":
            assert re.search(r"^export OPENAI_BASE_URL=http://127\.0\.0\.1:\d+", "".join(self.out), re.M), \
                self.output()

    async def _kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        await self._finish()

    async def _finish(self) -> None:
        await self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        if self.kind == "stdio" and self.proc.stdout is not None:
            self.out.append((await self.proc.stdout.read()).decode(errors="replace"))
        await asyncio.gather(*self._tasks)

    async def stop(self) -> int:
        """Ctrl-C: SIGINT to the process group; the exit code, once it exited (bounded)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            await asyncio.wait_for(self.proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            await self._kill()
            raise AssertionError(f"{self.where}: still running {STOP_TIMEOUT:.0f} s after Ctrl-C\n"
                                 f"{self.output()}") from None
        await self._finish()
        assert self.proc.returncode is not None
        return self.proc.returncode

    async def __aexit__(self, *exc: object) -> None:
        if self.proc.returncode is None:
            await self._kill()


async def _run_followups(stretch: Stretch, env: dict[str, str], cwd: Path, port: int) -> str:
    script = "set -euo pipefail\n" + "\n".join(_substitute(c, port) for c in stretch.followups) + "\n"
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", script, cwd=cwd, env=env, start_new_session=True, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = await proc.communicate()
        raise AssertionError(f"{', '.join(stretch.sources)}: not done within {COMMAND_TIMEOUT:.0f} s\n"
                             f"{out.decode(errors='replace')}") from None
    text = out.decode(errors="replace")
    where = ", ".join(stretch.sources)
    assert proc.returncode == 0, f"{where} exited {proc.returncode}:\n{script}\n--- output:\n{text}"
    return text


@pytest.fixture
def reader_env(tmp_path: Path, clone: Clone) -> Iterator[tuple[dict[str, str], int]]:
    home = tmp_path / "home"
    home.mkdir()
    port = _free_port()
    yield {
        "PATH": _clean_path(), "HOME": str(home), "XDG_DATA_HOME": str(home / ".local" / "share"),
        "LANG": "C.UTF-8", "TERM": "dumb", "MCP_IMAGE_SERVER_VENV": str(clone.venv), "MCP_PORT": str(port),
    }, port


@pytest.mark.parametrize("doc", [doc for doc in DOCS if plan(doc)])  # VSCODE_INTEGRATION.md has none yet
async def test_the_command_blocks_work_as_written(
    doc: str, clone: Clone, reader_env: tuple[dict[str, str], int]
) -> None:
    stretches = plan(doc)
    needs_curl = any("curl " in c for s in stretches for c in s.followups)
    if needs_curl and shutil.which("curl") is None:
        pytest.skip(f"{doc}'s examples need curl")
    env, port = reader_env
    for stretch in stretches:
        if stretch.server is None:
            await _run_followups(stretch, env, clone.root, port)
            continue
        async with Server(stretch, env, clone.root, port) as server:
            if stretch.followups:
                await _run_followups(stretch, env, clone.root, port)
            code = await server.stop()
        assert code in (0, 130, -signal.SIGINT), f"{server.where}: exit code {code} after Ctrl-C\n{server.output()}"
        assert "Traceback" not in server.output(), server.output()
        printed = server.output()
        for line in stretch.expected:
            shown = _substitute(line, port).replace("/home/you", env["HOME"])
            assert shown in printed, f"{server.where}: the documented output line\n{line}\nis not printed:\n{printed}"


def test_every_server_kind_is_replayed_somewhere() -> None:
    kinds = {s.kind for doc in DOCS for s in plan(doc)}
    assert {"stdio", "http", "emulators"} <= kinds
    guide = [s for s in plan("HTTP_TRANSPORT_GUIDE.md") if s.kind == "http"]
    assert guide and any("curl" in c for c in guide[0].followups), "the guide's curl examples follow its server"
    assert any(READY["http"] in line for line in guide[0].expected), "the guide shows the ready line"


def test_quick_start_keeps_the_test_command() -> None:
    """``./mcp-server test`` is skipped by the replay (it would run this suite inside itself)."""
    quick = [b for b in shell_blocks("README.md") if b.not_replayed is None][0]
    assert "## Quick start" in (REPO / "README.md").read_text().split("```", 1)[0]
    assert "./mcp-server test" in quick.commands()
    assert launch("./mcp-server test") == (None, "test") and "test" in SKIPPED


def test_not_replayed_blocks_are_few_and_say_why() -> None:
    marked = [b for doc in DOCS for b in shell_blocks(doc) if b.not_replayed is not None]
    assert all(b.not_replayed for b in marked), [b.where for b in marked if not b.not_replayed]
    assert len(marked) <= MAX_NOT_REPLAYED, [f"{b.where}: {b.not_replayed}" for b in marked]
    for doc in DOCS:  # every marker sits right before a shell block
        text = (REPO / doc).read_text()
        assert text.count("<!-- not replayed:") == sum(b.not_replayed is not None for b in shell_blocks(doc)), doc


def test_node_clients_in_the_docs_are_the_pinned_ones() -> None:
    pins = json.loads((REPO / "tests" / "interop" / "package.json").read_text())["dependencies"]
    for doc in DOCS:
        text = (REPO / doc).read_text()
        for arg in re.findall(r'"(mcp-remote(?:@[^"]*)?)"', text):
            assert arg == f"mcp-remote@{pins['mcp-remote']}", f"{doc}: {arg}"
        for ver in re.findall(r"npx(?: -y)? @modelcontextprotocol/inspector(@\S+)? --cli", text):
            assert ver == f"@{pins['@modelcontextprotocol/inspector']}", f"{doc}: inspector{ver}"
    installed = REPO / "tests" / "interop" / "node_modules" / "@modelcontextprotocol" / "inspector" / "package.json"
    if not installed.exists():
        pytest.skip("the Inspector is not installed (tests/interop/install_clients.sh): its engines are unknown")
    engines = json.loads(installed.read_text()).get("engines", {}).get("node", "")
    wanted = re.fullmatch(r">=(\d+\.\d+)\.0", engines)
    assert wanted, engines
    for doc in ("HTTP_TRANSPORT_GUIDE.md", "docs/VSCODE_INTEGRATION.md"):
        assert f"Node.js {wanted.group(1)} or newer" in " ".join((REPO / doc).read_text().split()), doc

"""Entry points: flags, start-up errors, the terminal hint and the ./mcp-server launcher."""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mcp_image_server import __version__

from .conftest import REPO, server_env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcp_image_server", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )


def test_version_and_help(tmp_path: Path) -> None:
    env = server_env(tmp_path / "images")
    out = _run(["--version"], env, tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == f"mcp-image-server {__version__}"
    helped = _run(["--help"], env, tmp_path)
    assert helped.returncode == 0
    for flag in ("--transport", "--env-file", "--host", "--port", "--version"):
        assert flag in helped.stdout


@pytest.mark.parametrize(
    ("extra", "args", "needle"),
    [
        ({"MCP_TRANSPORT": "websocket"}, [], "MCP_TRANSPORT='websocket': expected one of stdio, http"),
        ({"MCP_PORT": "x"}, [], "MCP_PORT='x'"),
        ({}, ["--port", "99999"], "MCP_PORT='99999'"),
        ({}, ["--env-file", "missing.env"], "missing.env does not exist"),
    ],
)
def test_configuration_errors_are_one_clear_line(tmp_path: Path, extra: dict, args: list[str], needle: str) -> None:
    out = _run(args, server_env(tmp_path / "images", extra), tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and needle in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_flag_beats_environment(tmp_path: Path) -> None:
    out = _run(["--transport", "bogus"], server_env(tmp_path / "images", {"MCP_TRANSPORT": "stdio"}), tmp_path)
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_unusable_save_dir_is_reported_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    out = _run([], server_env(blocker), tmp_path)
    assert out.returncode == 2 and "MCP_IMAGE_SAVE_DIR=" in out.stderr and "Traceback" not in out.stderr


async def test_a_terminal_on_stdin_gets_a_connection_hint(tmp_path: Path) -> None:
    primary, secondary = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mcp_image_server", cwd=tmp_path, env=server_env(tmp_path / "images"),
        stdin=secondary, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    os.close(secondary)
    try:
        assert proc.stderr is not None
        seen = b""
        async with asyncio.timeout(20):
            while b"Connect a client" not in seen:
                chunk = await proc.stderr.read(4096)
                assert chunk, seen
                seen += chunk
        assert b"--transport http" in seen
    finally:
        proc.kill()
        await proc.wait()
        os.close(primary)


def _launcher_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "MCP_IMAGE_SAVE_DIR": str(tmp_path / "img")}
    env.update(extra)
    return env


def test_launcher_refuses_a_too_old_python_in_one_line(tmp_path: Path) -> None:
    fake = tmp_path / "python3"
    fake.write_text('#!/bin/sh\ncase "$1" in -V) echo "Python 3.8.10";; *) exit 1;; esac\n')
    fake.chmod(0o755)
    out = subprocess.run(
        [str(REPO / "mcp-server"), "--version"], capture_output=True, text=True, timeout=60,
        env=_launcher_env(tmp_path, PYTHON=str(fake), MCP_IMAGE_SERVER_VENV=str(tmp_path / "venv")),
    )
    assert out.returncode == 1
    assert out.stderr.strip() == (
        "mcp-server: Python 3.11 or newer is required, found Python 3.8.10; set PYTHON=/path/to/python3.11"
    )


def test_launcher_reuses_a_ready_venv_without_pip(tmp_path: Path) -> None:
    """With a stamp matching the lock, the launcher goes straight to the server."""
    venv = Path(sys.prefix)
    stamp = venv / ".mcp-image-server-stamp"
    if not stamp.exists():
        pytest.skip("runs inside the venv that ./mcp-server created")
    out = subprocess.run(
        [str(REPO / "mcp-server"), "--version"], capture_output=True, text=True, timeout=60,
        env=_launcher_env(tmp_path, MCP_IMAGE_SERVER_VENV=str(venv)),
    )
    assert out.returncode == 0 and out.stdout.strip() == f"mcp-image-server {__version__}"
    assert "installing" not in out.stderr


_ARENAS = """
import ctypes, sys, threading
from mcp_image_server.cli import limit_malloc_arenas
print(limit_malloc_arenas(), flush=True) if sys.argv[1] == "cap" else print("default", flush=True)
barrier, keep = threading.Barrier(8), []
def work():
    keep.extend(bytes(10_000) for _ in range(50))  # malloc'd (past pymalloc), under the mmap threshold
    barrier.wait()  # all alive at once: none hands its arena back early
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(None).malloc_stats()  # one "Arena N:" block per arena, on stderr
"""


def _arenas(mode: str, env: dict[str, str]) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", _ARENAS, mode], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip(), sum(line.startswith("Arena ") for line in out.stderr.splitlines())


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"), reason="glibc malloc only"
)
def test_http_servers_cap_malloc_arenas(tmp_path: Path) -> None:
    env = {k: v for k, v in server_env(tmp_path / "images").items() if k != "MALLOC_ARENA_MAX"}
    assert _arenas("default", env)[1] > 2  # eight allocating threads get arenas of their own by default
    assert _arenas("cap", env) == ("True", 2)
    # An operator's own MALLOC_ARENA_MAX wins: glibc read it at start and it is left alone.
    assert _arenas("cap", {**env, "MALLOC_ARENA_MAX": "4"})[0] == "False"


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"), reason="glibc malloc only"
)
async def test_the_http_server_applies_the_arena_cap_at_start(tmp_path: Path, http_server: Any) -> None:
    async with http_server(env={"MCP_LOG_LEVEL": "DEBUG"}):
        pass
    assert "glibc malloc arenas capped at 2" in (tmp_path / "http-server.log").read_text()

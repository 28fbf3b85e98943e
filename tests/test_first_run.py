"""A newcomer's first run: stopping on Ctrl-C in a terminal, what the HTTP start says, one-line start-up
failures, a save folder that does not depend on the working directory, and errors that say what to do.

Servers run as subprocesses; "in a terminal" means on a real pseudo-terminal (``pty``), where Ctrl-C is
the byte 0x03 turned into SIGINT by the terminal's line discipline, as a person's keyboard does it.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

from .conftest import REPO, server_env

pytestmark = pytest.mark.timeout(120)

READY = {"stdio": b"Press Ctrl-C to quit", "http": b"connect MCP clients to"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Terminal:
    """``python -m mcp_image_server`` on a pseudo-terminal: its output, and keys typed into it."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become the server
            os.chdir(cwd)
            os.execve(sys.executable, [sys.executable, "-m", "mcp_image_server"], env)
        self.out = b""

    def read_until(self, marker: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.out:
            left = deadline - time.monotonic()
            assert left > 0, f"no {marker!r} within {timeout} s; output so far:\n{self.out.decode(errors='replace')}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    self.out += os.read(self.fd, 65536)
                except OSError:  # the child closed the terminal
                    assert marker in self.out, self.out.decode(errors="replace")

    def exit_code(self, timeout: float = 10) -> int:
        """Wait (bounded) for the child to end, draining its output meanwhile."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self._drain()
                return os.waitstatus_to_exitcode(status)
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if ready:
                self._drain()
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        raise AssertionError(f"still running {timeout} s later:\n{self.out.decode(errors='replace')}")

    def _drain(self) -> None:
        try:
            self.out += os.read(self.fd, 65536)
        except OSError:
            pass

    def close(self) -> None:
        os.close(self.fd)


@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.parametrize(("stop", "code"), [("ctrl-c", 130), ("sigterm", 0)])
def test_ctrl_c_and_sigterm_stop_the_server_at_once(tmp_path: Path, transport: str, stop: str, code: int) -> None:
    env = server_env(tmp_path / "images", {"MCP_TRANSPORT": transport, "MCP_PORT": "0"})
    term = Terminal(env, tmp_path)
    try:
        term.read_until(READY[transport])
        started = time.monotonic()
        if stop == "ctrl-c":
            os.write(term.fd, b"\x03")
        else:
            os.kill(term.pid, signal.SIGTERM)
        assert term.exit_code(timeout=10) == code, term.out.decode(errors="replace")
        assert time.monotonic() - started < 5
        assert b"Traceback" not in term.out
    finally:
        term.close()


async def test_ctrl_c_during_a_generation_leaves_only_whole_images(http_server: Any, tmp_path: Path) -> None:
    images = tmp_path / "images"
    async with http_server(token=None) as url:
        proc = http_server.procs["http-server"]
        async with Client(streamable_http_client(url)) as client:
            started = await client.call_tool("generate_image", {
                "prompt": "a big slow scene", "provider": "local", "resolution": "2048x2048", "n": 4,
                "inline": "none", "wait_seconds": 0})
            assert started.is_error is False, started.content
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == 130
    leftovers = [p for p in images.rglob("*") if p.is_file() and p.name.startswith(".tmp-")]
    assert leftovers == []
    for path in images.glob("*.png"):
        with Image.open(path) as img:
            img.load()  # a cut file fails here


def test_http_start_says_where_to_connect_and_how_to_get_the_token(tmp_path: Path) -> None:
    data = tmp_path / "xdg"
    env = server_env(tmp_path / "images", {"MCP_TRANSPORT": "http", "MCP_PORT": "0", "MCP_AUTH_TOKEN": "auto",
                                           "XDG_DATA_HOME": str(data)})
    token_file = data / "mcp-image-server" / "http-token"
    term = Terminal(env, tmp_path)
    try:
        term.read_until(b"read it with: cat")
        os.write(term.fd, b"\x03")
        assert term.exit_code() == 130
    finally:
        term.close()
    text = term.out.decode(errors="replace")
    token = token_file.read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert re.search(r"connect MCP clients to http://127\.0\.0\.1:\d+/mcp", text)
    assert re.search(r"web demo: http://127\.0\.0\.1:\d+/demo/", text)
    assert f"made now, shown this once): {token}" in text and f"kept in {token_file}" in text

    # Started again (here without a terminal, as a service would be): the same token, never printed.
    with socket.socket() as busy:  # so that it stops right after reading its settings
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        again = subprocess.run([sys.executable, "-m", "mcp_image_server", "--port", str(busy.getsockname()[1])],
                               env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already in use" in again.stderr
    assert token not in again.stderr and token_file.read_text().strip() == token


async def test_the_auto_token_guards_the_endpoint_and_get_slash_leads_to_the_demo(
    http_server: Any, tmp_path: Path
) -> None:
    data = tmp_path / "xdg"
    async with http_server(env={"MCP_AUTH_TOKEN": "auto", "XDG_DATA_HOME": str(data)}, token=None) as url:
        token = (data / "mcp-image-server" / "http-token").read_text().strip()
        base = url.rsplit("/", 1)[0]
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/", allow_redirects=False) as r:
                assert r.status == 302 and r.headers["Location"] == "/demo/"
            async with http.post(url, json={}) as r:
                assert r.status == 401
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as client_http,
            Client(streamable_http_client(url, http_client=client_http)) as client,
        ):
            assert (await client.call_tool("list_providers", {})).is_error is False
    assert token not in (tmp_path / "http-server.log").read_text()


async def test_get_slash_off_loopback_is_a_small_index(tmp_path: Path) -> None:
    port = _free_port()
    env = server_env(tmp_path / "images", {"MCP_TRANSPORT": "http", "MCP_HOST": "0.0.0.0", "MCP_PORT": str(port),
                                           "MCP_AUTH_TOKEN": "t" * 32})
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "mcp_image_server", env=env, cwd=tmp_path,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(30):
            while b"connect MCP clients to" not in await proc.stderr.readline():
                pass
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/",
                                                              allow_redirects=False) as r:
            assert r.status == 200
            body = await r.json()
        assert body["mcp"] == "/mcp" and body["health"] == "/health" and "demo" not in body
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0


def _start_fails(tmp_path: Path, extra: dict[str, str]) -> str:
    env = server_env(tmp_path / "images", {"MCP_TRANSPORT": "http", **extra})
    run = subprocess.run([sys.executable, "-m", "mcp_image_server"], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    [line] = [x for x in run.stderr.splitlines() if x.startswith("mcp-image-server:")]
    return line


def test_start_up_failures_are_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = _start_fails(tmp_path, {"MCP_PORT": str(port)})
    assert f"port {port} is already in use" in line and "--port or MCP_PORT" in line
    line = _start_fails(tmp_path, {"MCP_HOST": "192.0.2.1", "MCP_AUTH_TOKEN": "t" * 32, "MCP_PORT": "0"})
    assert "192.0.2.1 is not an address of this machine" in line and "MCP_HOST" in line
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    line = _start_fails(tmp_path, {"MCP_IMAGE_SAVE_DIR": str(blocker / "images"), "MCP_PORT": "0"})
    assert f"MCP_IMAGE_SAVE_DIR={blocker / 'images'} is not a writable directory: Not a directory" in line


async def test_images_go_to_the_user_data_folder_wherever_the_server_starts(tmp_path: Path) -> None:
    from mcp import StdioServerParameters
    from mcp.client.stdio import stdio_client

    data = tmp_path / "xdg"
    env = server_env(tmp_path / "unused", {"XDG_DATA_HOME": str(data)})
    del env["MCP_IMAGE_SAVE_DIR"]
    log = (tmp_path / "server.log").open("w")
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_image_server"], env=env, cwd="/")
    with log:
        async with Client(stdio_client(params, errlog=log)) as client:
            result = await client.call_tool("generate_image", {"prompt": "a lighthouse", "provider": "local",
                                                               "resolution": "64x64", "inline": "none"})
    assert result.is_error is False, result.content
    saved = Path(result.structured_content["images"][0]["file_path"])
    assert saved.parent == data / "mcp-image-server" / "images" and saved.is_file()
    assert f"images are saved in {data / 'mcp-image-server' / 'images'}" in (tmp_path / "server.log").read_text()


async def test_errors_say_what_to_do(stdio_client: Any, tmp_path: Path) -> None:
    env_file = tmp_path / "server.env"
    env_file.write_text("")
    async with stdio_client(env={"MCP_ENV_FILE": str(env_file)}) as client:
        refused = await client.call_tool("generate_image", {"prompt": "a cat", "provider": "openai"})
        message = refused.structured_content["error"]["message"]
        assert refused.structured_content["error"]["code"] == "provider_not_configured"
        assert "OPENAI_API_KEY" in message and "reload_config" in message

        # A key appears in .env: the default moves from local to a paid provider, and reload says so.
        env_file.write_text("OPENAI_API_KEY=sk-FAKE-for-the-reload-test\n")
        reloaded = await client.call_tool("reload_config", {})
        notice = reloaded.structured_content["notice"]
        assert "from local to openai" in notice and "paid" in notice and "MCP_DEFAULT_PROVIDER" in notice
        assert notice in reloaded.content[0].text  # type: ignore[union-attr]
        quiet = await client.call_tool("reload_config", {})
        assert quiet.structured_content["notice"] is None


def test_a_provider_without_styles_says_so() -> None:
    from mcp_image_server.config import load_settings
    from mcp_image_server.errors import UnknownStyleError
    from mcp_image_server.providers import registry
    from mcp_image_server.providers.manager import ProviderManager

    manager = ProviderManager(load_settings({"MODELSCOPE_API_KEY": "ms-FAKE-key"}), registry())
    with pytest.raises(UnknownStyleError) as refused:
        manager.select(provider="modelscope", style="anime", resolution=None)
    assert "takes no styles" in refused.value.message and "choose one of" not in refused.value.message


def test_missing_dependencies_are_one_line(tmp_path: Path) -> None:
    """A Python without the package's dependencies (here: one that cannot see the venv's site-packages)."""
    bare = subprocess.run(
        [sys.executable, "-S", "-c", ("import sys; sys.path.insert(0, sys.argv[1]); "
                                      "from mcp_image_server.cli import main; sys.exit(main([]))"), str(REPO)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env={"PATH": os.environ.get("PATH", "")},
    )
    assert bare.returncode == 2, bare.stderr
    assert "Traceback" not in bare.stderr
    assert "./mcp-server" in bare.stderr and "requirements.lock.txt" in bare.stderr
    json.dumps(bare.stderr)  # one printable line
    assert len(bare.stderr.strip().splitlines()) == 1


def test_emulators_without_dependencies_are_one_line() -> None:
    bare = subprocess.run([sys.executable, "-S", "-m", "tests.emulators"], capture_output=True, text=True,
                          timeout=60, cwd=REPO, env={"PATH": os.environ.get("PATH", "")})
    assert bare.returncode == 2 and "Traceback" not in bare.stderr, bare.stderr
    assert "./mcp-server emulators" in bare.stderr and len(bare.stderr.strip().splitlines()) == 1

"""Suite-wide fixtures: a clean environment for every test and a real stdio server factory."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from mcp_image_server.config import FIELDS

from .redisd import private_redis, redis_server, redis_url  # noqa: F401 - fixtures for every suite
from .s3 import private_s3, s3_server  # noqa: F401

REPO = Path(__file__).resolve().parent.parent

_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No setting, key or proxy from the developer's shell leaks into a test; cwd has no .env."""
    for f in FIELDS:
        for name in (f.env, *f.aliases):
            monkeypatch.delenv(name, raising=False)
    for name in (*_PROXY_VARS, "MCP_ENV_FILE", "TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY", "ARK_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    yield


BACKENDS: dict[str, str] = {}
"""Settings every server of the current test gets on top of its own: set by ``backends``."""


@pytest.fixture(params=["memory", "redis+s3"])
def backends(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a suite twice: on today's memory and folder, and on a real Redis state and S3 store.

    Opt in with ``pytestmark = pytest.mark.usefixtures("backends")``; every server the test starts
    (``server_env``, ``start_server``) then uses them."""
    if request.param == "redis+s3":
        s3 = request.getfixturevalue("s3_server")
        BACKENDS.update({"MCP_STATE_URL": request.getfixturevalue("redis_url"), **s3.env(s3.bucket())})
    try:
        yield request.param
    finally:
        BACKENDS.clear()


def server_env(save_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a server subprocess: nothing inherited but PATH/HOME, the repo on PYTHONPATH."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": str(REPO),
        "MCP_IMAGE_SAVE_DIR": str(save_dir),
        "MCP_LOG_LEVEL": "INFO",
        **BACKENDS,
    }
    env.update(extra or {})
    return env


@pytest.fixture
def stdio_client(tmp_path: Path) -> Callable[..., Any]:
    """``async with stdio_client(env=..., cwd=..., errlog=file) as client`` spawns ``python -m mcp_image_server``.

    ``errlog`` (a real file) receives the server's stderr, i.e. its log.
    """
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client as stdio_transport

    @asynccontextmanager
    async def connect(
        env: Mapping[str, str] | None = None, cwd: Path | None = None, mode: str = "auto", errlog: Any = None
    ) -> AsyncIterator[Client]:
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "mcp_image_server"],
            env=server_env(tmp_path / "images", env),
            cwd=str(cwd or tmp_path),
        )
        server: Any = params if errlog is None else stdio_transport(params, errlog=errlog)
        async with Client(server, mode=mode) as client:
            yield client

    return connect


@pytest.fixture
def http_server(tmp_path: Path) -> Callable[..., Any]:
    """``async with http_server(env=..., token=...) as url`` runs ``python -m mcp_image_server`` over HTTP.

    The server binds a free port on 127.0.0.1; ``url`` is its ``/mcp`` endpoint. Its log goes to
    ``tmp_path/<name>.log`` and its save dir is ``tmp_path/<name>-images`` (``name`` tells servers
    that run side by side apart; the default keeps ``tmp_path/images``). ``serve.procs[name]`` is
    the running server process, for tests that kill it.
    """
    import asyncio
    import socket

    @asynccontextmanager
    async def serve(
        env: Mapping[str, str] | None = None, token: str | None = "interop-token", name: str = "http-server"
    ) -> AsyncIterator[str]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        extra = {"MCP_TRANSPORT": "http", "MCP_PORT": str(port), "MCP_LOG_LEVEL": "INFO", **(env or {})}
        if token:
            extra["MCP_AUTH_TOKEN"] = token
        log = (tmp_path / f"{name}.log").open("wb")
        images = tmp_path / ("images" if name == "http-server" else f"{name}-images")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mcp_image_server", cwd=tmp_path, env=server_env(images, extra),
            stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stderr is not None
        serve.procs[name] = proc  # type: ignore[attr-defined]
        try:
            async with asyncio.timeout(30):  # the server logs its endpoint once it listens
                while b"MCP Streamable HTTP endpoint" not in (line := await proc.stderr.readline()):
                    assert line, "the HTTP server exited before listening"
                    log.write(line)

            async def pump() -> None:
                assert proc.stderr is not None
                while chunk := await proc.stderr.read(65536):
                    log.write(chunk)

            drain = asyncio.create_task(pump())
            try:
                yield f"http://127.0.0.1:{port}/mcp"
            finally:
                drain.cancel()
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    async with asyncio.timeout(20):
                        await proc.wait()
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            log.close()

    serve.procs = {}  # type: ignore[attr-defined]
    return serve

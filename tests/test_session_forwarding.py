"""Handshake-era sessions across two real replicas on one Redis: the replica that did not create a
session forwards its requests (SSE streams included) to the one that did, via ``MCP_REPLICA_URL``;
once that replica is gone the session answers 404, so the client initialises again.

Servers are real subprocesses (``http_server`` from conftest, ``MCP_ROLE=all``); each gets a port
chosen here, because its ``MCP_REPLICA_URL`` must name it before it starts.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import pytest
import redis.asyncio as aioredis
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_image_server.config import load_settings
from mcp_image_server.errors import ConfigError
from mcp_image_server.state import LEASE_TTL

from .conftest import server_env
from .redisd import REDIS_PASSWORD, RedisServer

pytestmark = pytest.mark.timeout(90)

TOKEN = "forwarding-token-1"
OTHER = "forwarding-token-2"
"""A second valid token: the holder still refuses it a session it did not open (404)."""
VERSION = "2025-11-25"
WAIT = 15.0
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
GEN = {"provider": "local", "prompt": "a red kite", "resolution": "256x256", "inline": "none", "wait_seconds": 30}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def _replica(http_server: Any, state_url: str, name: str) -> AsyncIterator[str]:
    """A replica named ``name`` whose ``MCP_REPLICA_URL`` is its own loopback URL; yields its ``/mcp``."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "MCP_STATE_URL": state_url, "MCP_ROLE": "all", "MCP_REPLICA_ID": name, "MCP_PORT": str(port),
        "MCP_REPLICA_URL": base, "MCP_AUTH_TOKEN": f"{TOKEN},{OTHER}",
    }
    async with http_server(env, None, name):  # the URL it yields has the fixture's port, not ours
        yield base + "/mcp"


def _headers(session_id: str | None = None, token: str | None = TOKEN, **extra: str) -> dict[str, str]:
    headers = {**HEADERS, "MCP-Protocol-Version": VERSION, **extra}
    if session_id is not None:
        headers["Mcp-Session-Id"] = session_id
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


async def _message(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    """The JSON-RPC answer of a POST, sent as JSON or as the last message of an SSE stream."""
    async with asyncio.timeout(WAIT):
        if resp.content_type != "text/event-stream":
            return dict(await resp.json())
        while raw := await resp.content.readline():
            line = raw.decode().rstrip("\r\n")
            if line.startswith("data:") and "id" in (message := json.loads(line[5:])):
                return dict(message)
    raise AssertionError("the SSE stream ended without an answer")


async def _initialize(http: aiohttp.ClientSession, url: str) -> str:
    body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": VERSION, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}
    async with http.post(url, json=body, headers=_headers()) as resp:
        assert resp.status == 200, await resp.text()
        assert (await _message(resp))["result"]["protocolVersion"] == VERSION
        return resp.headers["Mcp-Session-Id"]


async def _call(
    http: aiohttp.ClientSession, url: str, session_id: str, method: str, *, token: str | None = TOKEN, **headers: str
) -> tuple[int, dict[str, Any]]:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {}}
    async with http.post(url, json=body, headers=_headers(session_id, token, **headers)) as resp:
        return resp.status, await _message(resp)


async def _get_status(http: aiohttp.ClientSession, url: str, session_id: str) -> int:
    async with http.get(url, headers=_headers(session_id)) as resp:
        return resp.status


async def test_a_session_is_served_through_the_other_replica_until_its_own_is_gone(
    redis_url: str, http_server: Any, tmp_path: Path
) -> None:
    state = aioredis.from_url(redis_url, decode_responses=True)
    timeout = aiohttp.ClientTimeout(total=60)
    try:
        async with (
            _replica(http_server, redis_url, "alpha") as a,
            _replica(http_server, redis_url, "beta") as b,
            aiohttp.ClientSession(timeout=timeout) as http,
        ):
            sid = await _initialize(http, a)
            entry = await state.get(f"mcp:session:{sid}")
            assert entry is not None and json.loads(entry) == {"replica": "alpha", "url": a.removesuffix("/mcp")}
            assert 1800 < await state.ttl(f"mcp:session:{sid}") <= 1860  # the idle timeout and a margin

            note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            async with http.post(b, json=note, headers=_headers(sid)) as resp:
                assert resp.status == 202, await resp.text()

            status, listed = await _call(http, b, sid, "tools/list")
            assert status == 200 and "generate_image" in {t["name"] for t in listed["result"]["tools"]}, listed

            # An SSE-only client: the holder's stream is relayed frame by frame.
            body = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                    "params": {"name": "generate_image", "arguments": GEN, "_meta": {"progressToken": "p"}}}
            sse_only = _headers(sid, Accept="text/event-stream")
            async with http.post(b, json=body, headers=sse_only) as resp:
                assert resp.status == 200 and resp.content_type == "text/event-stream"
                assert resp.headers["Mcp-Session-Id"] == sid
                done = await _message(resp)
            result = done["result"]["structuredContent"]
            assert result["ok"] and result["images"], done

            # The session's GET stream, opened through beta, is the one alpha holds.
            async with http.get(b, headers=_headers(sid)) as stream:
                assert stream.status == 200 and stream.content_type == "text/event-stream"
                assert await _get_status(http, a, sid) == 409
            async with asyncio.timeout(WAIT):  # closing it through beta closed it on alpha
                while (status := await _get_status(http, a, sid)) == 409:
                    await asyncio.sleep(0.05)
            assert status == 200

            # Credentials are checked here and again by the holder.
            assert (await _call(http, b, sid, "tools/list", token=None))[0] == 401
            assert (await _call(http, b, sid, "tools/list", token=OTHER))[0] == 404
            # A request that was forwarded once is never forwarded again (no loops).
            assert (await _call(http, b, sid, "tools/list", **{"Mcp-Forwarded-By": "gamma"}))[0] == 404

            # DELETE through beta ends it on alpha, and its entry goes with it.
            async with http.delete(b, headers=_headers(sid)) as resp:
                assert resp.status == 200, await resp.text()
            assert await state.exists(f"mcp:session:{sid}") == 0
            assert (await _call(http, a, sid, "tools/list"))[0] == 404
            assert (await _call(http, b, sid, "tools/list"))[0] == 404

            # What the directory says decides, checked on a session beta really holds: forwarded only
            # to a holder that is alive (its lease) and has a URL, else 404; a holder that accepts the
            # connection but drops it is 503 with Retry-After (a passing fault, or soon a lapsed lease).
            on_beta = await _initialize(http, b)
            key, beta_base = f"mcp:session:{on_beta}", b.removesuffix("/mcp")
            assert (await _call(http, a, on_beta, "tools/list"))[0] == 200
            await state.set(key, json.dumps({"replica": "ghost", "url": beta_base}))
            assert (await _call(http, a, on_beta, "tools/list"))[0] == 404
            await state.set(key, json.dumps({"replica": "beta", "url": None}))
            assert (await _call(http, a, on_beta, "tools/list"))[0] == 404

            async def hang_up(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                writer.close()

            rude = await asyncio.start_server(hang_up, "127.0.0.1", 0)
            try:
                rude_url = f"http://127.0.0.1:{rude.sockets[0].getsockname()[1]}"
                await state.set(key, json.dumps({"replica": "beta", "url": rude_url}))
                async with http.post(a, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                     headers=_headers(on_beta)) as resp:
                    assert resp.status == 503 and resp.headers["Retry-After"] == "5", await resp.text()
            finally:
                rude.close()
                await rude.wait_closed()

            # kill -9 alpha: its sessions answer 404 through beta (it refuses connections now, and
            # within LEASE_TTL its lease has lapsed too).
            doomed = await _initialize(http, a)
            assert (await _call(http, b, doomed, "tools/list"))[0] == 200
            http_server.procs["alpha"].send_signal(signal.SIGKILL)
            await http_server.procs["alpha"].wait()
            began = time.monotonic()
            seen: set[int] = set()
            async with asyncio.timeout(LEASE_TTL + 5):
                while (status := (await _call(http, b, doomed, "tools/list"))[0]) != 404:
                    seen.add(status)
                    await asyncio.sleep(0.2)
            assert time.monotonic() - began <= LEASE_TTL + 1
            assert seen <= {503}, seen  # meanwhile: "did not answer; retry" (its lease was still alive)
    finally:
        await state.aclose()
    for name in ("alpha", "beta"):
        log = (tmp_path / f"{name}.log").read_text()
        assert TOKEN not in log and OTHER not in log and sid not in log and "Traceback" not in log, name


async def test_the_sdk_client_behind_a_balancer_that_is_not_sticky(redis_url: str, http_server: Any) -> None:
    """``initialize`` reaches alpha; every later request (the GET stream, calls, the closing DELETE) beta."""
    async with _replica(http_server, redis_url, "alpha") as a, _replica(http_server, redis_url, "beta") as b:
        target = httpx2.URL(b)

        async def balance(request: httpx2.Request) -> None:
            if "mcp-session-id" in request.headers:
                request.url = request.url.copy_with(port=target.port)
                request.headers["Host"] = target.netloc.decode()

        sent: list[tuple[str, int | None]] = []

        async def record(response: httpx2.Response) -> None:
            sent.append((response.request.method, response.request.url.port))

        async with (
            httpx2.AsyncClient(
                headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60,
                event_hooks={"request": [balance], "response": [record]},
            ) as h,
            Client(streamable_http_client(a, http_client=h), mode="legacy") as client,
        ):
            tools = await client.list_tools()
            assert "generate_image" in {t.name for t in tools.tools}
            result = await client.call_tool("generate_image", GEN)
            assert result.structured_content is not None and result.structured_content["ok"], result
        assert sent[0] == ("POST", httpx2.URL(a).port)
        assert {port for _, port in sent[1:]} == {target.port} and ("DELETE", target.port) in sent


async def test_a_foreign_session_while_redis_is_down_is_503_with_retry_after(
    private_redis: RedisServer, http_server: Any, tmp_path: Path
) -> None:
    async with _replica(http_server, private_redis.url, "lonely") as url, aiohttp.ClientSession() as http:
        private_redis.kill()
        status, answer = await _call(http, url, "0123456789abcdef" * 2, "tools/list")
        assert status == 503 and "MCP_STATE_URL" in answer["error"]["message"], answer
    assert REDIS_PASSWORD not in (tmp_path / "lonely.log").read_text()


@pytest.mark.parametrize(
    "value", ["http://10.0.0.5:8000/mcp", "ftp://10.0.0.5:8000", "10.0.0.5:8000", "http://:8000", "http://h:99999",
              "http://user:pw@h:80", "http://h:80/?x=1"],
)
def test_a_bad_replica_url_is_refused_at_load_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({"MCP_REPLICA_URL": value})
    assert "MCP_REPLICA_URL" in raised.value.message and "\n" not in raised.value.message


def test_a_good_replica_url_is_kept_without_its_slash() -> None:
    assert load_settings({"MCP_REPLICA_URL": " https://[fd00::5]:8443/ "}).replica_url == "https://[fd00::5]:8443"
    assert load_settings({}).replica_url is None


def test_a_bad_replica_url_stops_the_server_with_one_line(tmp_path: Path) -> None:
    env = server_env(tmp_path / "imgs", {"MCP_TRANSPORT": "http", "MCP_REPLICA_URL": "http://10.0.0.5:8000/mcp"})
    done = subprocess.run([sys.executable, "-m", "mcp_image_server"], check=False, env=env, cwd=tmp_path, input=b"",
                          capture_output=True, timeout=60)
    err = done.stderr.decode()
    assert done.returncode == 2 and "MCP_REPLICA_URL" in err and err.count("\n") == 1, err

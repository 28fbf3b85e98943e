"""Auth, Origin/Host, CORS, body limits, bind safety, and secrets staying out of logs and bodies."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from mcp.shared.exceptions import MCPError
from yarl import URL

from mcp_image_server.config import Secret, Settings
from mcp_image_server.errors import ConfigError
from mcp_image_server.service import ImageService
from mcp_image_server.transports.http import check_bind, run_http

TOKEN = "tok-alpha-7f3c9e"
OTHER = "tok-beta-11d0aa"
WWW_AUTH = 'Bearer realm="mcp-image-server", error="invalid_token"'


def _has(exc: BaseException, kind: type[BaseException]) -> bool:
    if isinstance(exc, kind):
        return True
    return isinstance(exc, BaseExceptionGroup) and any(_has(e, kind) for e in exc.exceptions)


@pytest.mark.parametrize(
    "auth",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer", f"bearer{TOKEN}"],
)
async def test_missing_or_wrong_credentials_get_401_with_a_bearer_challenge(
    start_server: Any, http: ClientSession, h: Any, auth: str | None
) -> None:
    server = await start_server(tokens=(TOKEN,))
    headers = dict(h.LEGACY_HEADERS)
    if auth is not None:
        headers["Authorization"] = auth
    async with http.post(server.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=headers) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == WWW_AUTH
        body = await resp.json()
    assert body["error"] == "invalid_token"
    assert TOKEN not in str(body)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_the_sdk_client_needs_the_token(start_server: Any, h: Any, mode: str) -> None:
    server = await start_server(tokens=(TOKEN,))
    with pytest.raises(Exception) as info:
        async with h.mcp_client(server.url, mode=mode):
            pass
    assert _has(info.value, MCPError)
    async with h.mcp_client(server.url, token=TOKEN, mode=mode) as client:
        assert (await client.call_tool("add", {"a": 1, "b": 2})).structured_content == {"result": 3}


async def test_x_api_key_is_accepted_too(start_server: Any, http: ClientSession, h: Any) -> None:
    server = await start_server(tokens=(TOKEN,))
    sid = await h.initialize(http, server.url, {"X-API-Key": TOKEN})
    body = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    async with http.post(server.url, json=body, headers=h.session_headers(sid, **{"X-API-Key": TOKEN})) as resp:
        assert resp.status == 200


async def test_every_comma_separated_token_works_and_sessions_stay_with_their_token(
    start_server: Any, http: ClientSession, h: Any
) -> None:
    server = await start_server(tokens=(TOKEN, OTHER))
    sid = await h.initialize(http, server.url, {"Authorization": f"Bearer {TOKEN}"})
    await h.initialize(http, server.url, {"Authorization": f"Bearer {OTHER}"})
    body = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    async with http.post(
        server.url, json=body, headers=h.session_headers(sid, Authorization=f"Bearer {OTHER}")
    ) as resp:
        assert resp.status == 404  # another valid token cannot use (or learn about) the session
    async with http.delete(server.url, headers=h.session_headers(sid, Authorization=f"Bearer {OTHER}")) as resp:
        assert resp.status == 404
    async with http.post(
        server.url, json=body, headers=h.session_headers(sid, Authorization=f"Bearer {TOKEN}")
    ) as resp:
        assert resp.status == 200


async def test_a_reload_rotates_tokens_for_the_next_request(start_server: Any, http: ClientSession, h: Any) -> None:
    environ = {"MCP_AUTH_TOKEN": TOKEN}
    server = await start_server(tokens=(TOKEN,), environ=environ)
    ping = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": h.modern_meta()}}

    async def status(token: str) -> int:
        headers = h.modern_headers("tools/list", Authorization=f"Bearer {token}")
        async with http.post(server.url, json=ping, headers=headers) as resp:
            return resp.status

    assert (await status(TOKEN), await status(OTHER)) == (200, 401)
    environ["MCP_AUTH_TOKEN"] = f"{TOKEN},{OTHER}"
    await server.service.reload()
    assert (await status(TOKEN), await status(OTHER)) == (200, 200)
    environ["MCP_AUTH_TOKEN"] = OTHER
    await server.service.reload()
    assert (await status(TOKEN), await status(OTHER)) == (401, 200)


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "http://localhost.evil.example", "https://127.0.0.1.nip.io"]
)
async def test_a_foreign_origin_is_403(server: Any, http: ClientSession, h: Any, origin: str) -> None:
    async with http.post(server.url, json={}, headers={**h.LEGACY_HEADERS, "Origin": origin}) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == -32600


@pytest.mark.parametrize(
    "origin", ["http://localhost:3000", "http://127.0.0.1:6274", "http://[::1]:8080", "https://app.example.com"]
)
async def test_loopback_and_configured_origins_are_allowed(
    start_server: Any, http: ClientSession, h: Any, origin: str
) -> None:
    server = await start_server(allowed_origins=("https://app.example.com",))
    sid = await h.initialize(http, server.url, {"Origin": origin})
    assert sid


async def test_the_public_base_url_origin_is_allowed(start_server: Any, http: ClientSession, h: Any) -> None:
    server = await start_server(public_base_url="https://images.example.org")
    assert await h.initialize(http, server.url, {"Origin": "https://images.example.org"})
    async with http.post(
        server.url, json={}, headers={**h.LEGACY_HEADERS, "Origin": "https://images.example.org:444"}
    ) as resp:
        assert resp.status == 403


async def test_a_foreign_host_header_is_421_on_a_loopback_bind(server: Any, http: ClientSession, h: Any) -> None:
    async with http.post(server.url, json={}, headers={**h.LEGACY_HEADERS, "Host": "evil.example:8000"}) as resp:
        assert resp.status == 421


async def test_cors_preflight_is_answered_without_a_token(start_server: Any, http: ClientSession) -> None:
    server = await start_server(tokens=(TOKEN,))
    headers = {
        "Origin": "http://localhost:5173",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, mcp-session-id, mcp-protocol-version, mcp-param-region",
    }
    async with http.options(server.url, headers=headers) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
        allowed = {h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
        assert allowed >= {
            "authorization",
            "content-type",
            "mcp-session-id",
            "mcp-protocol-version",
            "mcp-method",
            "mcp-name",
            "last-event-id",
            "mcp-param-region",
        }
        assert {"POST", "GET", "DELETE"} <= {m.strip() for m in resp.headers["Access-Control-Allow-Methods"].split(",")}
        assert "Mcp-Session-Id" in resp.headers["Access-Control-Expose-Headers"]
    async with http.options(server.url, headers={**headers, "Origin": "http://evil.example"}) as resp:
        assert resp.status == 403


async def test_responses_to_an_allowed_origin_expose_the_session_header(
    server: Any, http: ClientSession, h: Any
) -> None:
    origin = "http://localhost:5173"
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "b", "version": "1"}},
    }
    async with http.post(server.url, json=body, headers={**h.LEGACY_HEADERS, "Origin": origin}) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == origin
        assert "Mcp-Session-Id" in resp.headers["Access-Control-Expose-Headers"]
        sid = resp.headers["Mcp-Session-Id"]
    # SSE responses carry them too (their headers go out before the body).
    async with http.get(
        server.url, headers=h.session_headers(sid, Accept="text/event-stream", Origin=origin)
    ) as stream:
        assert stream.status == 200
        assert stream.headers["Access-Control-Allow-Origin"] == origin
        assert "Mcp-Session-Id" in stream.headers["Access-Control-Expose-Headers"]


async def test_refusals_errors_and_streams_opened_mid_call_carry_cors_headers(
    start_server: Any, http: ClientSession, h: Any
) -> None:
    """A browser can read none of these without the headers: a 401, a raised 404, a 2026-07-28 stream."""
    server = await start_server(tokens=(TOKEN,), keepalive=0.05)
    origin = "http://localhost:5173"
    async with http.post(server.url, json={}, headers={**h.LEGACY_HEADERS, "Origin": origin}) as resp:
        assert resp.status == 401
        assert resp.headers["Access-Control-Allow-Origin"] == origin
    async with http.get(URL(server.url).with_path("/images/nope.png"), headers={"Origin": origin}) as resp:
        assert resp.status == 404
        assert resp.headers["Access-Control-Allow-Origin"] == origin
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "slow", "arguments": {"steps": 0}, "_meta": h.modern_meta()},
    }
    headers = h.modern_headers("tools/call", "slow", Authorization=f"Bearer {TOKEN}", Origin=origin)
    async with http.post(server.url, json=body, headers=headers) as resp:
        assert await h.next_line(resp) == ": ping"  # committed to SSE mid-call
        assert resp.headers["Access-Control-Allow-Origin"] == origin
        assert "Origin" in resp.headers.getall("Vary")
        server.gate.release.set()
        final = await h.next_sse_message(resp)
        assert final is not None and final["result"]["structuredContent"] == {"result": "done"}


async def test_bodies_over_the_limit_are_413(start_server: Any, http: ClientSession, h: Any) -> None:
    server = await start_server(max_body_bytes=4096)
    big = b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"' + b"a" * 5000 + b'"}}'
    async with http.post(server.url, data=big, headers=h.LEGACY_HEADERS) as resp:
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == -32600

    async def chunked() -> Any:
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    async with http.post(server.url, data=chunked(), headers=h.LEGACY_HEADERS) as resp:
        assert resp.status == 413
    headers = h.modern_headers("tools/list")
    async with http.post(server.url, data=big, headers=headers) as resp:
        assert resp.status == 413


def test_a_public_bind_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings(), host="0.0.0.0", image_save_dir=tmp_path)
    with pytest.raises(ConfigError) as info:
        check_bind(settings)
    assert info.value.code == "config_error"
    check_bind(dataclasses.replace(settings, auth_tokens=(Secret(TOKEN),)))  # fine with a token
    check_bind(dataclasses.replace(settings, host="127.0.0.1"))  # fine on loopback


def test_allow_unauthenticated_starts_but_warns_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = dataclasses.replace(Settings(), host="0.0.0.0", image_save_dir=tmp_path, allow_unauthenticated=True)
    with caplog.at_level(logging.WARNING):
        check_bind(settings)
    assert "NO AUTHENTICATION" in caplog.text


async def test_run_http_refuses_before_binding(tmp_path: Path) -> None:
    settings = dataclasses.replace(Settings(), transport="http", host="0.0.0.0", port=0, image_save_dir=tmp_path)
    service = ImageService(settings, environ={})
    with pytest.raises(ConfigError):
        await run_http(service, object(), settings)  # type: ignore[arg-type]


async def test_run_http_serves_logs_its_url_and_shuts_down(
    tmp_path: Path, h: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings = dataclasses.replace(Settings(), transport="http", host="127.0.0.1", port=0, image_save_dir=tmp_path)
    service = ImageService(settings, environ={})
    await service.start()
    started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    from mcp.server.mcpserver import MCPServer

    with caplog.at_level(logging.INFO, logger="mcp_image_server"):
        task = asyncio.create_task(
            run_http(service, MCPServer("x"), settings, shutdown_timeout=1, on_started=started.set_result)
        )
        async with asyncio.timeout(h.WAIT):
            base = await started
        assert service.http_base_url == base
        async with ClientSession() as http, http.get(base + "/health") as resp:
            assert resp.status == 200
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert f"{base}/mcp" in caplog.text
    assert service.http_base_url is None
    await service.aclose()


async def test_tokens_never_reach_logs_or_error_bodies(
    start_server: Any, http: ClientSession, h: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await start_server(tokens=(TOKEN,))
    async with h.mcp_client(server.url, token=TOKEN, mode="legacy") as client:
        await client.call_tool("add", {"a": 1, "b": 1})
    bodies = []
    for headers in ({"Authorization": "Bearer sekrit-guess-42"}, {"X-API-Key": "sekrit-guess-42"}):
        async with http.post(server.url, json={}, headers={**h.LEGACY_HEADERS, **headers}) as resp:
            bodies.append(await resp.text())
    server_logs = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "mcp.client")))
    assert TOKEN not in server_logs and "sekrit-guess-42" not in server_logs
    assert all("sekrit-guess-42" not in body for body in bodies)

"""2026-07-28 per-request era on the same endpoint: the SDK client in auto mode, and the wire rows."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import mcp_types as types
import pytest
from aiohttp import ClientSession
from yarl import URL


async def test_sdk_client_in_auto_mode_speaks_2026_without_a_session(server: Any, h: Any) -> None:
    async with h.mcp_client(server.url) as client:
        assert client.protocol_version == h.MODERN_VERSION
        assert (await client.call_tool("add", {"a": 2, "b": 3})).structured_content == {"result": 5}
        read = await client.read_resource("probe://hello")
        assert isinstance(read.contents[0], types.TextResourceContents)
        prompt = await client.get_prompt("greet", {"name": "Ada"})
        assert isinstance(prompt.messages[0].content, types.TextContent)
        assert len(server.manager) == 0
    assert len(server.manager) == 0


async def test_explicit_2026_mode_works_too(server: Any, h: Any) -> None:
    async with h.mcp_client(server.url, mode=h.MODERN_VERSION) as client:
        assert {t.name for t in (await client.list_tools()).tools} >= {"add", "slow"}


def _request(method: str, h: Any, params: dict[str, Any] | None = None, rid: int | str = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": method, "params": {**(params or {}), "_meta": h.modern_meta()}}


async def test_discover_answers_with_the_supported_versions(server: Any, http: ClientSession, h: Any) -> None:
    async with http.post(
        server.url, json=_request("server/discover", h), headers=h.modern_headers("server/discover")
    ) as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        assert "Mcp-Session-Id" not in resp.headers
        result = (await resp.json())["result"]
    assert result["supportedVersions"] == [h.MODERN_VERSION]
    assert result["resultType"] == "complete"
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "probe-server"


async def test_tools_list_carries_the_per_request_result_envelope(server: Any, http: ClientSession, h: Any) -> None:
    async with http.post(server.url, json=_request("tools/list", h), headers=h.modern_headers("tools/list")) as resp:
        assert resp.status == 200
        result = (await resp.json())["result"]
    assert result["resultType"] == "complete"
    assert result["ttlMs"] == 0 and result["cacheScope"] == "private"
    assert "io.modelcontextprotocol/serverInfo" in result["_meta"]


async def test_a_session_id_is_ignored_and_never_minted(server: Any, http: ClientSession, h: Any) -> None:
    headers = h.modern_headers("tools/list", **{"Mcp-Session-Id": "whatever"})
    async with http.post(server.url, json=_request("tools/list", h), headers=headers) as resp:
        assert resp.status == 200
        assert "Mcp-Session-Id" not in resp.headers


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        # no _meta envelope
        ({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, {"Mcp-Method": "tools/list"}, 400, -32602),
        # Mcp-Method disagrees with the body
        ("tools/list", {"Mcp-Method": "prompts/list"}, 400, -32020),
        # tools/call without Mcp-Name
        ("tools/call", {"Mcp-Method": "tools/call"}, 400, -32020),
        # unknown method
        ("nope/nothing", {"Mcp-Method": "nope/nothing"}, 404, -32601),
        # a batch
        ([{"jsonrpc": "2.0", "id": 1, "method": "ping"}], {"Mcp-Method": "ping"}, 400, -32600),
        # a posted response
        ({"jsonrpc": "2.0", "id": 1, "result": {}}, {}, 400, -32600),
    ],
)
async def test_per_request_rejections_map_to_the_spec_status(
    server: Any, http: ClientSession, h: Any, body: Any, headers: dict[str, str], status: int, code: int
) -> None:
    if isinstance(body, str):
        body = _request(body, h, {"name": "add", "arguments": {"a": 1, "b": 2}} if body == "tools/call" else None)
    all_headers = {**h.LEGACY_HEADERS, "MCP-Protocol-Version": h.MODERN_VERSION, **headers}
    async with http.post(server.url, json=body, headers=all_headers) as resp:
        assert resp.status == status
        assert (await resp.json())["error"]["code"] == code


async def test_mcp_param_headers_are_checked_for_tools_that_declare_them(
    server: Any, http: ClientSession, h: Any
) -> None:
    body = _request("tools/call", h, {"name": "weather", "arguments": {"city": "Oslo"}})
    for header, status in (("Bergen", 400), (None, 400), ("Oslo", 200)):
        extra = {} if header is None else {"Mcp-Param-City": header}
        async with http.post(server.url, json=body, headers=h.modern_headers("tools/call", "weather", **extra)) as resp:
            assert resp.status == status
            reply = await resp.json()
        if status == 400:
            assert reply["error"]["code"] == -32020
    async with h.mcp_client(server.url) as client:  # the SDK client sends the header itself
        result = await client.call_tool("weather", {"city": "Oslo"})
    assert result.structured_content == {"result": "sunny in Oslo"}


async def test_an_unsupported_version_names_what_is_supported(server: Any, http: ClientSession, h: Any) -> None:
    body = _request("tools/list", h)
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = "2099-01-01"
    headers = {**h.modern_headers("tools/list"), "MCP-Protocol-Version": "2099-01-01"}
    async with http.post(server.url, json=body, headers=headers) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
    assert error["code"] == -32022
    assert error["data"] == {"supported": [h.MODERN_VERSION], "requested": "2099-01-01"}


async def test_a_duplicated_routing_header_is_a_header_mismatch(server: Any, http: ClientSession, h: Any) -> None:
    headers = [(k, v) for k, v in h.modern_headers("tools/list").items()] + [("Mcp-Method", "tools/list")]
    async with http.post(server.url, json=_request("tools/list", h), headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == -32020


async def test_a_notification_is_202(server: Any, http: ClientSession, h: Any) -> None:
    note = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}
    async with http.post(server.url, json=note, headers=h.modern_headers("notifications/cancelled")) as resp:
        assert resp.status == 202
        assert await resp.read() == b""


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_get_and_delete_are_405_for_per_request_clients(
    server: Any, http: ClientSession, h: Any, method: str
) -> None:
    async with http.request(method, server.url, headers=h.modern_headers("x")) as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"


async def test_accept_must_allow_json(server: Any, http: ClientSession, h: Any) -> None:
    headers = h.modern_headers("tools/list", Accept="text/event-stream")
    async with http.post(server.url, json=_request("tools/list", h), headers=headers) as resp:
        assert resp.status == 406
    headers = h.modern_headers("tools/list", Accept="application/json")
    async with http.post(server.url, json=_request("tools/list", h), headers=headers) as resp:
        assert resp.status == 200  # JSON-only clients are served; they just get no progress


async def test_listen_needs_an_sse_accept(server: Any, http: ClientSession, h: Any) -> None:
    headers = h.modern_headers("subscriptions/listen", Accept="application/json")
    body = _request("subscriptions/listen", h, {"notifications": {}})
    async with http.post(server.url, json=body, headers=headers) as resp:
        assert resp.status == 406


@pytest.mark.parametrize(
    "body",
    [
        b"{oops",
        b"",
        b"[" * 100_000,
        b'{"a": "\\ud800"}',  # a lone surrogate escape
        '{"a": "\udcff"}'.encode("utf-8", "surrogatepass"),  # bytes that are not UTF-8
    ],
)
async def test_malformed_json_is_a_400_parse_error(server: Any, http: ClientSession, h: Any, body: bytes) -> None:
    async with http.post(server.url, data=body, headers=h.modern_headers("tools/list")) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == {"code": -32700, "message": "Parse error"}


async def test_a_body_that_arrives_in_pieces_is_read_whole(server: Any, h: Any) -> None:
    url = URL(server.url)
    body = json.dumps(_request("tools/call", h, {"name": "add", "arguments": {"a": 2, "b": 3}})).encode()
    headers = {
        **h.modern_headers("tools/call", "add"),
        "Host": f"{url.host}:{url.port}",
        "Content-Length": str(len(body)),
    }
    head = f"POST {url.path} HTTP/1.1\r\n".encode() + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(head + b"\r\n" + body[:20])
        await writer.drain()
        # A full round trip on another connection: by its end the server has read the first piece.
        async with ClientSession() as other, other.get(url.with_path("/health")) as resp:
            assert resp.status == 200
        writer.write(body[20:])
        async with asyncio.timeout(h.WAIT):
            status = await reader.readuntil(b"\r\n")
            rest = await reader.readuntil(b"\r\n\r\n")
            length = int(
                next(
                    v
                    for k, _, v in (line.partition(": ") for line in rest.decode().split("\r\n"))
                    if k.lower() == "content-length"
                )
            )
            reply = json.loads(await reader.readexactly(length))
    finally:
        writer.close()
    assert status.startswith(b"HTTP/1.1 200")
    assert reply["result"]["structuredContent"] == {"result": 5}


async def test_progress_streams_as_sse_then_the_result(server: Any, http: ClientSession, h: Any) -> None:
    params = {"name": "slow", "arguments": {"steps": 2}}
    body = _request("tools/call", h, params)
    body["params"]["_meta"]["progressToken"] = "tok"
    async with http.post(server.url, json=body, headers=h.modern_headers("tools/call", "slow")) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        assert resp.headers["X-Accel-Buffering"] == "no"
        first = await h.next_sse_message(resp)
        assert first["method"] == "notifications/progress" and first["params"]["progressToken"] == "tok"
        await h.next_sse_message(resp)
        server.gate.release.set()
        final = await h.next_sse_message(resp)
    assert final["result"]["structuredContent"] == {"result": "done"}


async def test_a_silent_call_commits_to_sse_and_pings(start_server: Any, http: ClientSession, h: Any) -> None:
    server = await start_server(keepalive=0.05)
    body = _request("tools/call", h, {"name": "slow", "arguments": {"steps": 0}})
    async with http.post(server.url, json=body, headers=h.modern_headers("tools/call", "slow")) as resp:
        assert resp.content_type == "text/event-stream" and resp.headers["X-Accel-Buffering"] == "no"
        assert await h.next_line(resp) == ": ping"
        server.gate.release.set()
        final = await h.next_sse_message(resp)
    assert final["result"]["structuredContent"] == {"result": "done"}


async def test_calls_that_start_at_different_times_are_each_pinged_on_time(
    start_server: Any, http: ClientSession, h: Any
) -> None:
    """One timer watches every response: it re-arms past answered calls and for calls that come later."""
    server = await start_server(keepalive=0.5)
    quick = _request("tools/call", h, {"name": "add", "arguments": {"a": 1, "b": 2}})
    async with http.post(server.url, json=quick, headers=h.modern_headers("tools/call", "add")) as resp:
        assert resp.content_type == "application/json"  # answered within its window: no stream, no ping
    slow = _request("tools/call", h, {"name": "slow", "arguments": {"steps": 0}})
    async with http.post(server.url, json=slow, headers=h.modern_headers("tools/call", "slow")) as first:
        assert await h.next_line(first) == ": ping"
        async with http.post(server.url, json=slow, headers=h.modern_headers("tools/call", "slow")) as second:
            assert await h.next_line(second) == ": ping"
            server.gate.release.set()
            for resp in (first, second):
                final = await h.next_sse_message(resp)
                assert final is not None and final["result"]["structuredContent"] == {"result": "done"}


async def test_closing_the_response_cancels_the_call(server: Any, http: ClientSession, h: Any) -> None:
    body = _request("tools/call", h, {"name": "slow", "arguments": {"steps": 0}})

    async def call() -> None:
        async with http.post(server.url, json=body, headers=h.modern_headers("tools/call", "slow")) as resp:
            await resp.read()

    pending = asyncio.create_task(call())
    async with asyncio.timeout(h.WAIT):
        await server.gate.started.wait()
    pending.cancel()  # drops the connection
    async with asyncio.timeout(h.WAIT):
        await server.gate.cancelled.wait()
    assert not server.gate.finished.is_set()


async def test_listen_streams_change_events_and_shutdown_closes_it_gracefully(server: Any, h: Any) -> None:
    async with h.mcp_client(server.url) as client, client.listen(tools_list_changed=True) as sub:
        events = aiter(sub)
        await client.call_tool("changed", {})
        async with asyncio.timeout(h.WAIT):
            event = await anext(events)
        assert "tools" in type(event).__name__.lower() or "tool" in repr(event).lower()
        shutdown = asyncio.create_task(server.runner.cleanup())
        async with asyncio.timeout(h.WAIT):
            with pytest.raises(StopAsyncIteration):
                await anext(events)  # the server ended the stream on purpose, not dropped it
            await shutdown

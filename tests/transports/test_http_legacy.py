"""Handshake era (2025-11-25) over a real aiohttp server: the SDK client, and raw HTTP for the wire."""

from __future__ import annotations

import asyncio
import logging
import re
import warnings
from typing import Any

import mcp_types as types
import pytest
from aiohttp import ClientSession
from mcp.client.session import ClientRequestContext
from mcp.shared.exceptions import MCPDeprecationWarning


async def test_sdk_client_in_legacy_mode_reaches_every_kind_of_capability(server: Any, h: Any) -> None:
    async with h.mcp_client(server.url, mode="legacy") as client:
        assert client.protocol_version == "2025-11-25"
        assert client.server_info is not None and client.server_info.name == "probe-server"
        assert len(server.manager) == 1
        tools = await client.list_tools()
        assert {t.name for t in tools.tools} >= {"add", "slow", "announce", "ask"}
        result = await client.call_tool("add", {"a": 2, "b": 3})
        assert result.structured_content == {"result": 5}
        resources = await client.list_resources()
        assert [str(r.uri) for r in resources.resources] == ["probe://hello"]
        read = await client.read_resource("probe://hello")
        assert isinstance(read.contents[0], types.TextResourceContents)
        assert read.contents[0].text == "hello from probe-server"
        prompt = await client.get_prompt("greet", {"name": "Ada"})
        assert isinstance(prompt.messages[0].content, types.TextContent)
        assert "Ada" in prompt.messages[0].content.text
    # The client sends DELETE on exit; the session and its loop are gone.
    assert len(server.manager) == 0


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_progress_arrives_over_sse_and_other_requests_are_answered_during_a_long_call(
    server: Any, h: Any, mode: str
) -> None:
    got: list[tuple[float, float | None, str | None]] = []
    three = asyncio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        got.append((progress, total, message))
        if len(got) == 3:
            three.set()

    async with h.mcp_client(server.url, mode=mode) as client:
        call = asyncio.create_task(client.call_tool("slow", {"steps": 3}, progress_callback=on_progress))
        async with asyncio.timeout(h.WAIT):
            await server.gate.started.wait()
            await three.wait()
            # Answered while the call is still running (ping exists only in the handshake era).
            if mode == "legacy":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", MCPDeprecationWarning)
                    await client.send_ping()
            else:
                assert (await client.call_tool("add", {"a": 1, "b": 1})).structured_content == {"result": 2}
        assert not call.done()
        server.gate.release.set()
        async with asyncio.timeout(h.WAIT):
            result = await call
    assert got == [(1.0, 3.0, "step 1"), (2.0, 3.0, "step 2"), (3.0, 3.0, "step 3")]
    assert result.structured_content == {"result": "done"}


async def test_a_server_request_mid_call_travels_on_the_calls_stream_and_the_reply_comes_back(
    server: Any, h: Any
) -> None:
    async def elicit(context: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async with h.mcp_client(server.url, mode="legacy", elicitation_callback=elicit) as client:
        result = await client.call_tool("ask", {})
    assert result.structured_content == {"result": "hello Ada"}


async def test_initialize_mints_a_random_visible_ascii_session_id(server: Any, http: ClientSession, h: Any) -> None:
    ids = {await h.initialize(http, server.url) for _ in range(3)}
    assert len(ids) == 3
    for session_id in ids:
        assert re.fullmatch(r"[0-9a-f]{32}", session_id)


async def test_a_call_without_progress_is_one_json_body(server: Any, http: ClientSession, h: Any) -> None:
    sid = await h.initialize(http, server.url)
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1, "b": 1}}}
    async with http.post(server.url, json=body, headers=h.session_headers(sid)) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        assert resp.headers["Mcp-Session-Id"] == sid
        reply = await resp.json()
    assert reply["id"] == 7 and reply["result"]["structuredContent"] == {"result": 2}


async def test_a_call_with_progress_streams_sse_frames_then_the_result(
    server: Any, http: ClientSession, h: Any
) -> None:
    sid = await h.initialize(http, server.url)
    body = {
        "jsonrpc": "2.0",
        "id": "c1",
        "method": "tools/call",
        "params": {"name": "slow", "arguments": {"steps": 2}, "_meta": {"progressToken": "p"}},
    }
    async with http.post(server.url, json=body, headers=h.session_headers(sid)) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        assert resp.headers["X-Accel-Buffering"] == "no"
        first = await h.next_sse_message(resp)
        second = await h.next_sse_message(resp)
        assert [m["params"]["progress"] for m in (first, second)] == [1, 2]
        assert first["method"] == "notifications/progress" and first["params"]["progressToken"] == "p"
        server.gate.release.set()
        final = await h.next_sse_message(resp)
        assert final["id"] == "c1" and final["result"]["structuredContent"] == {"result": "done"}
        assert await h.next_sse_message(resp) is None  # the stream ends after the reply


async def test_a_silent_call_commits_to_sse_and_pings_so_proxies_keep_it_open(
    start_server: Any, http: ClientSession, h: Any
) -> None:
    server = await start_server(keepalive=0.05)
    sid = await h.initialize(http, server.url)
    body = {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "slow", "arguments": {"steps": 0}}}
    async with http.post(server.url, json=body, headers=h.session_headers(sid)) as resp:
        assert resp.content_type == "text/event-stream"
        assert await h.next_line(resp) == ": ping"
        server.gate.release.set()
        final = await h.next_sse_message(resp)
    assert final["result"]["structuredContent"] == {"result": "done"}
    async with http.get(server.url, headers=h.session_headers(sid, Accept="text/event-stream")) as stream:
        assert await h.next_line(stream) == ": ping"


async def test_a_client_accepting_only_json_gets_json_and_no_progress(server: Any, http: ClientSession, h: Any) -> None:
    sid = await h.initialize(http, server.url)
    server.gate.release.set()
    body = {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "tools/call",
        "params": {"name": "slow", "arguments": {"steps": 2}, "_meta": {"progressToken": 1}},
    }
    async with http.post(server.url, json=body, headers=h.session_headers(sid, Accept="application/json")) as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        assert (await resp.json())["result"]["structuredContent"] == {"result": "done"}


async def test_session_wide_notifications_travel_on_the_get_stream(server: Any, http: ClientSession, h: Any) -> None:
    sid = await h.initialize(http, server.url)
    async with http.get(server.url, headers=h.session_headers(sid, Accept="text/event-stream")) as stream:
        assert stream.status == 200 and stream.content_type == "text/event-stream"
        assert stream.headers["Mcp-Session-Id"] == sid
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "announce", "arguments": {}}}
        async with http.post(server.url, json=call, headers=h.session_headers(sid)) as resp:
            assert (await resp.json())["result"]["structuredContent"] == {"result": "announced"}
        note = await h.next_sse_message(stream)
        assert note == {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}


async def test_a_cancelled_request_is_ended_with_a_cancelled_error(server: Any, http: ClientSession, h: Any) -> None:
    sid = await h.initialize(http, server.url)
    body = {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "slow", "arguments": {"steps": 0}}}

    async def call() -> Any:
        async with http.post(server.url, json=body, headers=h.session_headers(sid)) as resp:
            return await resp.json()

    pending = asyncio.create_task(call())
    async with asyncio.timeout(h.WAIT):
        await server.gate.started.wait()
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}}
    async with http.post(server.url, json=cancel, headers=h.session_headers(sid)) as note:
        assert note.status == 202
    async with asyncio.timeout(h.WAIT):
        reply = await pending
    assert reply["id"] == 9 and reply["error"]["code"] == -32800
    assert server.gate.cancelled.is_set()


# --- the wire rows of CLIENTS.md §3.3 (legacy path) -------------------------------------------


async def test_notification_with_a_session_is_202_with_no_body(server: Any, http: ClientSession, h: Any) -> None:
    sid = await h.initialize(http, server.url)
    note = {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}
    async with http.post(server.url, json=note, headers=h.session_headers(sid)) as resp:
        assert resp.status == 202
        assert await resp.read() == b""


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Accept": "text/html"}, 406),
        ({"Content-Type": "text/plain"}, 415),
    ],
)
async def test_requests_the_server_cannot_read_are_refused(
    server: Any, http: ClientSession, h: Any, headers: dict[str, str], status: int
) -> None:
    body = b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}'
    async with http.post(server.url, data=body, headers={**h.LEGACY_HEADERS, **headers}) as resp:
        assert resp.status == status
        assert (await resp.json())["error"]["code"] == -32600


async def test_a_request_without_a_session_is_400(server: Any, http: ClientSession, h: Any) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    async with http.post(server.url, json=body, headers=h.LEGACY_HEADERS) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == {"code": -32600, "message": "Bad Request: Missing session ID"}


async def test_an_unknown_session_is_404(server: Any, http: ClientSession, h: Any) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    async with http.post(server.url, json=body, headers=h.session_headers("0" * 32)) as resp:
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == -32600


@pytest.mark.parametrize(
    "body", [b"{not json", b"", b"[" * 100_000, '{"a": "\udcff"}'.encode("utf-8", "surrogatepass")]
)
async def test_malformed_json_is_a_400_parse_error(server: Any, http: ClientSession, h: Any, body: bytes) -> None:
    async with http.post(server.url, data=body, headers=h.LEGACY_HEADERS) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == -32700


@pytest.mark.parametrize(
    "body",
    [
        [{"jsonrpc": "2.0", "id": 1, "method": "ping"}],  # batches are gone since 2025-06-18
        {"jsonrpc": "1.0", "id": 1, "method": "ping"},
        {"id": 1},
        42,
    ],
)
async def test_json_that_is_not_one_message_is_400_invalid_request(
    server: Any, http: ClientSession, h: Any, body: Any
) -> None:
    async with http.post(server.url, json=body, headers=h.LEGACY_HEADERS) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == -32600


async def test_get_needs_a_session_and_an_sse_accept(server: Any, http: ClientSession, h: Any) -> None:
    async with http.get(server.url, headers={"Accept": "text/event-stream"}) as resp:
        assert resp.status == 400
    sid = await h.initialize(http, server.url)
    async with http.get(server.url, headers=h.session_headers(sid, Accept="application/json")) as resp:
        assert resp.status == 406


async def test_a_second_get_stream_is_409(server: Any, http: ClientSession, h: Any) -> None:
    sid = await h.initialize(http, server.url)
    headers = h.session_headers(sid, Accept="text/event-stream")
    async with http.get(server.url, headers=headers) as first:
        assert first.status == 200
        async with http.get(server.url, headers=headers) as second:
            assert second.status == 409
            assert (await second.json())["error"]["code"] == -32600


async def test_put_is_405_with_allow(server: Any, http: ClientSession, h: Any) -> None:
    async with http.put(server.url, json={}, headers=h.LEGACY_HEADERS) as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "GET, POST, DELETE"


async def test_delete_ends_the_session_and_later_requests_get_404(server: Any, http: ClientSession, h: Any) -> None:
    sid = await h.initialize(http, server.url)
    async with http.delete(server.url, headers=h.session_headers(sid)) as resp:
        assert resp.status == 200
    assert len(server.manager) == 0
    body = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    async with http.post(server.url, json=body, headers=h.session_headers(sid)) as resp:
        assert resp.status == 404
    async with http.delete(server.url, headers=h.session_headers(sid)) as resp:
        assert resp.status == 404


async def test_an_unsupported_protocol_version_header_is_400(server: Any, http: ClientSession, h: Any) -> None:
    sid = await h.initialize(http, server.url)
    body = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    async with http.post(
        server.url, json=body, headers=h.session_headers(sid, **{"MCP-Protocol-Version": "1999-01-01"})
    ) as resp:
        assert resp.status == 400


async def test_get_or_delete_with_an_unknown_protocol_version_is_400(server: Any, http: ClientSession, h: Any) -> None:
    sid = await h.initialize(http, server.url)
    headers = h.session_headers(sid, **{"MCP-Protocol-Version": "1999-01-01", "Accept": "text/event-stream"})
    async with http.get(server.url, headers=headers) as resp:
        assert resp.status == 400
    async with http.delete(server.url, headers=headers) as resp:
        assert resp.status == 400


async def test_a_client_leaving_mid_stream_does_not_cancel_the_call_or_log_errors(
    server: Any, http: ClientSession, h: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sid = await h.initialize(http, server.url)
    body = {
        "jsonrpc": "2.0",
        "id": 11,
        "method": "tools/call",
        "params": {"name": "slow", "arguments": {"steps": 1}, "_meta": {"progressToken": 1}},
    }
    async with http.post(server.url, json=body, headers=h.session_headers(sid)) as resp:
        assert (await h.next_sse_message(resp))["method"] == "notifications/progress"
        resp.close()  # drop the connection mid-call
    server.gate.release.set()
    async with asyncio.timeout(h.WAIT):
        await server.gate.finished.wait()
    assert not server.gate.cancelled.is_set()
    later = {
        "jsonrpc": "2.0",
        "id": 12,
        "method": "tools/call",
        "params": {"name": "add", "arguments": {"a": 1, "b": 1}},
    }
    async with http.post(server.url, json=later, headers=h.session_headers(sid)) as resp:
        assert (await resp.json())["result"]["structuredContent"] == {"result": 2}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_failed_initialize_leaves_no_session(server: Any, http: ClientSession, h: Any) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": 5}}
    async with http.post(server.url, json=body, headers=h.LEGACY_HEADERS) as resp:
        assert resp.status == 200
        assert "Mcp-Session-Id" not in resp.headers
        assert "error" in await resp.json()
    assert len(server.manager) == 0


async def test_the_alias_path_serves_the_same_endpoint(server: Any, h: Any) -> None:
    async with h.mcp_client(server.base + "/mcp/v1/messages", mode="legacy") as client:
        assert (await client.call_tool("add", {"a": 1, "b": 2})).structured_content == {"result": 3}

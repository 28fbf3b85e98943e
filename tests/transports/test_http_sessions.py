"""Session lifecycle: the cap, idle expiry on an injected clock, loop wind-down, release, shutdown."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import weakref
from typing import Any

import anyio
import pytest
from aiohttp import ClientSession
from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCNotification

from mcp_image_server.transports.loop import Inbox
from mcp_image_server.transports.sessions import SessionLimits, SessionManager


def _server_tasks() -> int:
    """Tasks other than aiohttp's per-connection handlers (the client's keep-alive adds those)."""
    return sum(1 for t in asyncio.all_tasks() if "RequestHandler" not in getattr(t.get_coro(), "__qualname__", ""))


def _call(name: str, rid: int = 5, **arguments: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


async def _post(http: ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
    async with http.post(url, json=body, headers=headers) as resp:
        return resp.status, (await resp.json() if resp.content_type == "application/json" else None)


async def test_past_the_cap_a_new_session_gets_503_with_retry_after(
    start_server: Any, http: ClientSession, h: Any
) -> None:
    server = await start_server(max_sessions=2)
    first = await h.initialize(http, server.url)
    await h.initialize(http, server.url)
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    async with http.post(server.url, json=init, headers=h.LEGACY_HEADERS) as resp:
        assert resp.status == 503
        assert int(resp.headers["Retry-After"]) >= 1
        assert "error" in await resp.json()
    # Existing sessions are unaffected, and ending one makes room.
    assert (await _post(http, server.url, _call("add", a=1, b=1), h.session_headers(first)))[0] == 200
    async with http.delete(server.url, headers=h.session_headers(first)) as resp:
        assert resp.status == 200
    assert await h.initialize(http, server.url)


async def test_an_idle_session_expires_on_the_clock(start_server: Any, http: ClientSession, h: Any) -> None:
    server = await start_server(session_idle_timeout=60)
    sid = await h.initialize(http, server.url)
    server.clock.advance(59)
    await server.manager.sweep()
    assert (await _post(http, server.url, _call("add", a=1, b=2), h.session_headers(sid)))[0] == 200
    server.clock.advance(61)  # the request above restarted the countdown
    await server.manager.sweep()
    assert len(server.manager) == 0
    status, body = await _post(http, server.url, _call("add", a=1, b=2), h.session_headers(sid))
    assert status == 404 and body["error"]["code"] == -32600


async def test_a_session_with_a_call_in_flight_or_a_get_stream_does_not_expire(
    start_server: Any, http: ClientSession, h: Any
) -> None:
    server = await start_server(session_idle_timeout=60)
    sid = await h.initialize(http, server.url)
    pending = asyncio.create_task(_post(http, server.url, _call("slow", steps=0), h.session_headers(sid)))
    async with asyncio.timeout(h.WAIT):
        await server.gate.started.wait()
    server.clock.advance(3600)
    await server.manager.sweep()
    assert len(server.manager) == 1
    server.gate.release.set()
    async with asyncio.timeout(h.WAIT):
        assert (await pending)[0] == 200

    async with http.get(server.url, headers=h.session_headers(sid, Accept="text/event-stream")) as stream:
        assert stream.status == 200
        server.clock.advance(3600)
        await server.manager.sweep()
        assert len(server.manager) == 1


async def test_an_unused_session_winds_its_loop_down_and_picks_up_where_it_left(
    start_server: Any, http: ClientSession, h: Any
) -> None:
    server = await start_server(session_idle_timeout=600, linger=5)
    sid = await h.initialize(http, server.url)
    session = server.manager.get(sid, b"")
    assert session is not None and session.running
    tasks_live = len(asyncio.all_tasks())
    loop_task = session._runtime.task
    server.clock.advance(6)
    await server.manager.sweep()
    assert not session.running
    async with asyncio.timeout(h.WAIT):
        await loop_task
    assert len(asyncio.all_tasks()) < tasks_live
    # The restarted loop still knows the handshake happened and who the client is.
    status, body = await _post(http, server.url, _call("add", a=2, b=2), h.session_headers(sid))
    assert status == 200 and body["result"]["structuredContent"] == {"result": 4}
    assert session.running


async def test_a_background_notification_reaches_a_get_stream_opened_after_a_wind_down(
    start_server: Any, http: ClientSession, h: Any
) -> None:
    server = await start_server(linger=5)
    sid = await h.initialize(http, server.url)
    status, body = await _post(http, server.url, _call("later"), h.session_headers(sid))
    assert status == 200
    assert body["result"]["structuredContent"] == {"result": "scheduled"}
    session = server.manager.get(sid, b"")
    loop_task = session._runtime.task
    server.clock.advance(6)
    await server.manager.sweep()
    async with asyncio.timeout(h.WAIT):
        await loop_task
    assert not session.running
    async with http.get(server.url, headers=h.session_headers(sid, Accept="text/event-stream")) as stream:
        assert session.running  # a new loop, reached through the session's stable standalone channel
        server.gate.release.set()
        assert await h.next_sse_message(stream) == {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}


async def test_only_a_bounded_number_of_idle_sessions_keep_their_loop(
    start_server: Any, http: ClientSession, h: Any
) -> None:
    server = await start_server()
    server.manager.max_warm = 2
    ids = [await h.initialize(http, server.url) for _ in range(5)]
    assert len(server.manager) == 5
    assert server.manager.running_loops <= 3
    for sid in ids:  # every one of them still works
        assert (await _post(http, server.url, _call("add", a=1, b=1), h.session_headers(sid)))[0] == 200


async def test_an_ended_session_releases_its_loop_tasks_and_memory(server: Any, http: ClientSession, h: Any) -> None:
    baseline = _server_tasks()
    sid = await h.initialize(http, server.url)
    session = server.manager.get(sid, b"")
    assert session is not None
    ref = weakref.ref(session)
    assert _server_tasks() > baseline
    async with http.delete(server.url, headers=h.session_headers(sid)) as resp:
        assert resp.status == 200
    del session
    gc.collect()
    assert ref() is None
    assert _server_tasks() == baseline


async def test_delete_during_a_call_answers_the_call_instead_of_hanging(
    server: Any, http: ClientSession, h: Any
) -> None:
    sid = await h.initialize(http, server.url)
    pending = asyncio.create_task(_post(http, server.url, _call("slow", steps=0), h.session_headers(sid)))
    async with asyncio.timeout(h.WAIT):
        await server.gate.started.wait()
    async with http.delete(server.url, headers=h.session_headers(sid)) as resp:
        assert resp.status == 200
    async with asyncio.timeout(h.WAIT):
        status, body = await pending
        await server.gate.cancelled.wait()
    assert status < 500 and "error" in body


async def test_shutdown_closes_streams_and_lets_in_flight_calls_finish(
    server: Any, http: ClientSession, h: Any
) -> None:
    sid = await h.initialize(http, server.url)
    async with http.get(server.url, headers=h.session_headers(sid, Accept="text/event-stream")) as stream:
        assert stream.status == 200
        call = asyncio.create_task(_post(http, server.url, _call("slow", rid=8, steps=0), h.session_headers(sid)))
        async with asyncio.timeout(h.WAIT):
            await server.gate.started.wait()
        shutdown = asyncio.create_task(server.runner.cleanup())
        async with asyncio.timeout(h.WAIT):
            assert await h.next_sse_message(stream) is None  # the GET stream was ended
        assert not call.done()
        server.gate.release.set()
        async with asyncio.timeout(h.WAIT):
            status, body = await call
            await shutdown
    assert status == 200 and body["result"]["structuredContent"] == {"result": "done"}
    assert len(server.manager) == 0


async def test_limits_are_validated() -> None:
    import pytest

    with pytest.raises(ValueError):
        SessionLimits(0, 10)
    with pytest.raises(ValueError):
        SessionLimits(10, 0)
    with pytest.raises(ValueError):
        SessionManager(object(), limits=lambda: SessionLimits(1, 1), linger=0)  # type: ignore[arg-type]


async def test_everything_still_works_when_each_idle_moment_winds_the_loop_down(server: Any, h: Any) -> None:
    server.manager.max_warm = 0  # the harshest setting: a loop per busy period
    async with h.mcp_client(server.url, mode="legacy") as client:
        results = await asyncio.gather(*(client.call_tool("add", {"a": i, "b": 1}) for i in range(40)))
        assert [r.structured_content for r in results] == [{"result": i + 1} for i in range(40)]
        for i in range(10):
            assert (await client.call_tool("add", {"a": i, "b": i})).structured_content == {"result": 2 * i}
        server.gate.release.set()
        got: list[float] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            got.append(value)

        slow = await client.call_tool("slow", {"steps": 3}, progress_callback=on_progress)
        assert slow.structured_content == {"result": "done"} and got == [1.0, 2.0, 3.0]
    assert len(server.manager) == 0


async def test_a_wind_down_never_cuts_a_client_notification_short(server: Any, http: ClientSession, h: Any) -> None:
    server.manager.max_warm = 0  # wind down the moment the session is idle
    sid = await h.initialize(http, server.url)
    note = {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}
    async with http.post(server.url, json=note, headers=h.session_headers(sid)) as resp:
        assert resp.status == 202
    async with asyncio.timeout(h.WAIT):
        await server.gate.roots_changed.wait()


async def test_the_inbox_hands_over_messages_in_order_each_in_its_senders_context() -> None:
    """The SDK loop's read stream: it runs each handler in the context of the request that sent it."""
    sender: contextvars.ContextVar[int] = contextvars.ContextVar("sender")
    inbox = Inbox()
    got: list[tuple[str, int]] = []
    first = asyncio.Event()

    async def read() -> None:
        async for message in inbox:
            assert isinstance(message.message, JSONRPCNotification) and inbox.last_context is not None
            got.append((message.message.method, inbox.last_context[sender]))
            first.set()

    def put(n: int) -> None:
        sender.set(n)
        inbox.put(SessionMessage(JSONRPCNotification(jsonrpc="2.0", method=f"m{n}")))

    reader = asyncio.create_task(read())
    await asyncio.sleep(0)  # one turn: the reader is now parked on the empty inbox
    put(0)
    async with asyncio.timeout(5):
        await first.wait()
    put(1)
    put(2)
    inbox.close()  # what is queued is still read, then the stream ends
    with pytest.raises(anyio.ClosedResourceError):
        put(3)
    async with asyncio.timeout(5):
        await reader
    assert got == [("m0", 0), ("m1", 1), ("m2", 2)]

"""Clients that leave mid-stream, stop reading, or never come back, in both protocol eras.

The real server runs in-process (so its tasks and descriptors can be counted) with the Hunyuan
emulator as a slow provider. After every scenario the asyncio tasks and the open descriptors of
this process return to what they were before it (a bounded poll: no fixed sleeps). The emulator
shares the process, so its keep-alive connections are warmed up before the baseline is taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from mcp.server.subscriptions import ToolsListChanged
from PIL import Image

from mcp_image_server.models import GeneratedImage
from tests.emulators import HunyuanEmulator

from .support import (
    INITIALIZE,
    LeakProbe,
    RawConnection,
    Served,
    auth,
    build_request,
    eventually,
    legacy_call,
    legacy_headers,
    modern_call,
    modern_headers,
    modern_meta,
    open_session,
    post_json,
    reply_of,
    serve,
    tool_result,
)

pytestmark = pytest.mark.timeout(90)

TOKEN = "disconnect-token-31"
OWNER = hashlib.sha256(TOKEN.encode()).digest()
WAIT = 15.0
MAILBOX_LIMIT = 64
"""Messages one response may have queued before its sender waits (``transports/wire.py``)."""
KEYS = {"TENCENT_SECRET_ID": "AKID-FAKE-disconnect0001", "TENCENT_SECRET_KEY": "FAKE-disconnect-secret-0001"}


@dataclass
class World:
    served: Served
    emu: HunyuanEmulator

    @property
    def port(self) -> int:
        return self.served.port


@pytest_asyncio.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with HunyuanEmulator(
        secret_id=KEYS["TENCENT_SECRET_ID"], secret_key=KEYS["TENCENT_SECRET_KEY"], job_polls=2
    ) as emu:
        env = {
            **emu.env(),
            "MCP_AUTH_TOKEN": TOKEN,
            "MCP_HUNYUAN_POLL_INTERVAL": "0.02",
            "MCP_HUNYUAN_MAX_CONCURRENCY": "16",
            "MCP_PROGRESS_INTERVAL": "0.05",
            "MCP_PROVIDER_MAX_ATTEMPTS": "1",
        }
        async with serve(tmp_path, env, linger=60.0) as served:
            world = World(served, emu)
            # Warm up: the provider's and the emulator's keep-alive connections exist before any baseline.
            done = await modern_call(served.port, "tools/call", _generate(), token=TOKEN)
            assert tool_result(done)["ok"], done.text
            yield world
            emu.release()


def _generate(**extra: Any) -> dict[str, Any]:
    return {
        "name": "generate_image",
        "arguments": {"prompt": "a lighthouse", "provider": "hunyuan", "inline": "none", **extra},
    }


def _call_bytes(world: World, era: str, rid: int | str, session_id: str | None = None) -> bytes:
    """A ``generate_image`` POST that asks for progress (so the answer is an SSE stream)."""
    params = _generate()
    meta: dict[str, Any] = {"progressToken": f"progress-{rid}"}
    if era == "modern":
        meta.update(modern_meta())
        headers = modern_headers("tools/call", "generate_image")
    else:
        headers = legacy_headers(session_id)
    body = {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {**params, "_meta": meta}}
    return build_request(
        "POST",
        "/mcp",
        [*headers.items(), *auth(TOKEN).items()],
        json.dumps(body).encode(),
        host=f"127.0.0.1:{world.port}",
    )


async def _open_stream(world: World, data: bytes, *, rcvbuf: int | None = None) -> RawConnection:
    conn = await RawConnection.open(world.port, rcvbuf=rcvbuf)
    await conn.send(data)
    async with asyncio.timeout(WAIT):
        head = await conn.read_head()
    assert head.status == 200 and head.headers["Content-Type"].startswith("text/event-stream"), head
    return conn


async def _first_progress(conn: RawConnection) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        async for message in conn.sse_messages():
            if message.get("method") == "notifications/progress":
                return message
    raise AssertionError("the stream ended before any progress")


def _jobs(world: World) -> list[Any]:
    return sorted(world.served.service.jobs.jobs(), key=lambda j: j.created_at)


async def _quiet(world: World, probe: LeakProbe) -> None:
    """The scenario left nothing behind: every job finished, tasks and descriptors at the baseline."""
    await eventually(lambda: all(j.done for j in _jobs(world)), within=WAIT, what="every job to finish")
    await probe.settled(within=WAIT)


# ---- disconnects mid-SSE ------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_2026_closing_the_stream_cancels_the_call_and_its_job(world: World, how: str) -> None:
    """In the per-request era, closing the response is the cancellation: the job ends
    ``cancelled``, the emulator is polled no more, and nothing is left running."""
    world.emu.job_polls = 100_000  # the vendor job would run ~forever
    probe = LeakProbe()
    conn = await _open_stream(world, _call_bytes(world, "modern", "mid-sse"))
    await _first_progress(conn)
    await eventually(lambda: bool(world.emu.requests_to("query")), what="the job to be polled")
    if how == "close":
        await conn.close()
    else:
        conn.abort()
    job = _jobs(world)[-1]
    await eventually(lambda: job.state == "cancelled", within=WAIT, what="the job to be cancelled")
    listed = tool_result(
        await modern_call(world.port, "tools/call", {"name": "list_generations", "arguments": {}}, token=TOKEN)
    )
    assert listed["jobs"][0]["job_id"] == job.job_id and listed["jobs"][0]["status"] == "cancelled"
    await _quiet(world, probe)
    polls = len(world.emu.requests_to("query"))
    # An observation window of ~10 poll intervals, to see that polling does NOT resume.
    await asyncio.sleep(0.2)
    assert len(world.emu.requests_to("query")) == polls


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_2025_leaving_mid_stream_lets_the_call_finish_and_releases_everything(world: World, how: str) -> None:
    """In the handshake era a disconnect is not a cancellation (spec): the call runs on in the
    session, its job succeeds, its reply is dropped, and the session keeps working."""
    world.emu.job_polls = 15
    session = await open_session(world.port, TOKEN)
    warm = await legacy_call(world.port, session, "ping", token=TOKEN)
    assert warm.status == 200
    probe = LeakProbe()
    conn = await _open_stream(world, _call_bytes(world, "legacy", "mid-sse", session))
    await _first_progress(conn)
    if how == "close":
        await conn.close()
    else:
        conn.abort()
    job = _jobs(world)[-1]
    await eventually(lambda: job.state == "succeeded", within=WAIT, what="the abandoned call's job to succeed")
    await _quiet(world, probe)
    again = await legacy_call(world.port, session, "ping", token=TOKEN)
    assert again.status == 200 and "result" in reply_of(again)


async def test_many_clients_leaving_at_once_in_both_eras(world: World) -> None:
    # Twelve generations at once grow the provider's connection pool to twelve: grow it first,
    # so that kept-alive connections are part of the baseline rather than counted as leaks.
    warm = await asyncio.gather(
        *(modern_call(world.port, "tools/call", _generate(), token=TOKEN, rid=i) for i in range(12))
    )
    assert all(tool_result(r)["ok"] for r in warm)
    world.emu.job_polls = 100_000
    session = await open_session(world.port, TOKEN)
    await legacy_call(world.port, session, "ping", token=TOKEN)
    probe = LeakProbe()
    conns = await asyncio.gather(
        *(_open_stream(world, _call_bytes(world, "modern", f"m{i}")) for i in range(6)),
        *(_open_stream(world, _call_bytes(world, "legacy", f"l{i}", session)) for i in range(6)),
    )
    await asyncio.gather(*(_first_progress(c) for c in conns))
    running = [j for j in _jobs(world) if not j.done]
    assert len(running) == 12
    for i, conn in enumerate(conns):
        if i % 2:
            conn.abort()
        else:
            await conn.close()
    # Every 2026 job is cancelled; the 2025 ones run on until the vendor finishes them.
    await eventually(
        lambda: sum(j.state == "cancelled" for j in running) == 6,
        within=WAIT,
        what="the six 2026-07-28 jobs to be cancelled",
    )
    world.emu.job_polls = 0
    await _quiet(world, probe)
    assert sorted(j.state for j in running) == ["cancelled"] * 6 + ["succeeded"] * 6


# ---- stalled readers --------------------------------------------------------------------------


def _server_write_buffers(world: World) -> list[int]:
    """Bytes waiting in the server's user-space write buffers, per open connection."""
    server = world.served.runner.server
    assert server is not None
    return [c.transport.get_write_buffer_size() for c in server.connections if c.transport is not None]


async def test_2025_a_get_stream_nobody_reads_is_bounded_and_released(world: World) -> None:
    """Thousands of session notifications to a GET stream whose client never reads: the
    server's backlog stays bounded (back-pressure reaches the sender), the same session's
    requests, other sessions and the other era are still answered, and when the client
    finally goes, everything it held is released."""
    session = await open_session(world.port, TOKEN)
    other = await open_session(world.port, TOKEN)
    await legacy_call(world.port, session, "ping", token=TOKEN)
    probe = LeakProbe()
    headers = {**legacy_headers(session), **auth(TOKEN), "Accept": "text/event-stream"}
    get = build_request("GET", "/mcp", list(headers.items()), host=f"127.0.0.1:{world.port}")
    conn = await _open_stream(world, get, rcvbuf=4096)
    live = world.served.manager.get(session, OWNER)
    assert live is not None
    channel = live._channel  # pyright: ignore[reportPrivateUsage]  # what background code sends through
    payload = "x" * 2048
    sent = 0

    async def flood() -> None:
        nonlocal sent
        for i in range(5000):
            await channel.notify("notifications/message", {"level": "info", "data": f"{i} {payload}"})
            sent += 1

    producer = asyncio.create_task(flood())
    runtime = live._runtime  # pyright: ignore[reportPrivateUsage]
    assert runtime is not None and runtime.standalone is not None
    mailbox = runtime.standalone
    # Held back once the kernel buffers, the transport's buffer and the stream's mailbox are full.
    await eventually(lambda: len(mailbox) == MAILBOX_LIMIT, within=WAIT, what="the stream's mailbox to fill")

    def bounded() -> None:
        assert not producer.done(), "10 MB went out to a client that reads nothing"
        assert len(mailbox) <= MAILBOX_LIMIT
        assert max(_server_write_buffers(world), default=0) <= 2 * 64 * 1024  # aiohttp's high-water mark, ~once

    bounded()
    for rid in range(3):
        for resp in (
            await legacy_call(world.port, session, "ping", token=TOKEN, rid=rid),
            await legacy_call(world.port, other, "ping", token=TOKEN, rid=rid),
            await modern_call(world.port, "tools/list", token=TOKEN, rid=rid),
        ):
            assert resp.status == 200 and "result" in reply_of(resp, rid), resp.text
        bounded()
    conn.abort()
    async with asyncio.timeout(WAIT):
        await producer  # released: the rest are dropped, as for any stream that is gone
    await eventually(lambda: world.served.open_streams == 0, what="the GET stream to close")
    await probe.settled(within=WAIT)
    assert (await legacy_call(world.port, session, "ping", token=TOKEN)).status == 200


async def test_2026_a_listen_stream_nobody_reads_is_ended_and_released(world: World) -> None:
    """``subscriptions/listen`` whose client stops reading while thousands of events are
    published: publishing never blocks, the SDK ends the subscription at its backlog cap,
    other requests are answered, and the client leaving releases the handler."""
    probe = LeakProbe()
    body = {
        "jsonrpc": "2.0",
        "id": "listen",
        "method": "subscriptions/listen",
        "params": {"notifications": {"toolsListChanged": True}, "_meta": modern_meta()},
    }
    data = build_request(
        "POST",
        "/mcp",
        [*modern_headers("subscriptions/listen").items(), *auth(TOKEN).items()],
        json.dumps(body).encode(),
        host=f"127.0.0.1:{world.port}",
    )
    conn = await _open_stream(world, data, rcvbuf=4096)
    bus = world.served.mcp._subscriptions  # pyright: ignore[reportPrivateUsage]
    published = 0
    async with asyncio.timeout(WAIT):  # publishing never waits on a slow reader
        while max(_server_write_buffers(world), default=0) == 0:  # until the kernel buffers are full
            for _ in range(500):
                await bus.publish(ToolsListChanged())
            published += 500
            assert published < 200_000, "the stream never backed up"
        for _ in range(2000):  # past the SDK's per-stream backlog (1024): it ends the subscription
            await bus.publish(ToolsListChanged())
    resp = await modern_call(world.port, "tools/list", token=TOKEN, rid="meanwhile")
    assert resp.status == 200 and "result" in reply_of(resp, "meanwhile")
    conn.abort()
    await probe.settled(within=WAIT)


def _save_noise(world: World, side: int) -> Any:
    """A ``side`` x ``side`` PNG of random pixels (incompressible: ~3 bytes a pixel) in the store."""
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, "PNG", compress_level=0)
    image = GeneratedImage(out.getvalue(), "image/png", side, side)
    return world.served.service.store.save(image, provider="local", model="noise", style=None, prompt="noise", ttl=3600)


def _backlog(served: Served, conn: RawConnection) -> int:
    """Bytes the server has buffered for ``conn`` and could not send yet (0 once it is gone)."""
    local = conn.writer.get_extra_info("sockname")[1]
    server = served.runner.server
    assert server is not None
    for handler in server.connections:
        transport = handler.transport
        if transport is not None and transport.get_extra_info("peername")[1] == local:
            return transport.get_write_buffer_size()
    return 0


async def test_a_reader_that_stalls_for_good_is_cut_off_after_the_write_timeout(tmp_path: Path) -> None:
    """A client that stops reading and never closes: once a write has waited ``write_timeout``
    the server drops the connection itself, in both eras, and everything is released (the
    session idles and expires as usual) without the client doing anything."""
    async with serve(tmp_path, {"MCP_AUTH_TOKEN": TOKEN}, write_timeout=0.5) as served:
        port = served.port
        session = await open_session(port, TOKEN)
        await legacy_call(port, session, "ping", token=TOKEN)
        probe = LeakProbe()
        headers = {**legacy_headers(session), **auth(TOKEN), "Accept": "text/event-stream"}
        get = await RawConnection.open(port, rcvbuf=4096)
        await get.send(build_request("GET", "/mcp", list(headers.items()), host=f"127.0.0.1:{port}"))
        assert (await get.read_head()).status == 200
        listen_body = {
            "jsonrpc": "2.0",
            "id": "listen",
            "method": "subscriptions/listen",
            "params": {"notifications": {"toolsListChanged": True}, "_meta": modern_meta()},
        }
        listen = await RawConnection.open(port, rcvbuf=4096)
        await listen.send(
            build_request(
                "POST",
                "/mcp",
                [*modern_headers("subscriptions/listen").items(), *auth(TOKEN).items()],
                json.dumps(listen_body).encode(),
                host=f"127.0.0.1:{port}",
            )
        )
        assert (await listen.read_head()).status == 200
        live = served.manager.get(session, OWNER)
        assert live is not None
        channel = live._channel  # pyright: ignore[reportPrivateUsage]
        bus = served.mcp._subscriptions  # pyright: ignore[reportPrivateUsage]

        async def flood() -> None:
            for i in range(20_000):
                await channel.notify("notifications/message", {"level": "info", "data": f"{i} {'x' * 2048}"})

        producer = asyncio.create_task(flood())
        async with asyncio.timeout(WAIT):
            while _backlog(served, listen) == 0:  # until the listen stream's kernel buffers are full
                for _ in range(500):
                    await bus.publish(ToolsListChanged())
            for _ in range(2000):  # enough that a write has to wait (an idle stream holds nothing up)
                await bus.publish(ToolsListChanged())
        # No client action from here on: the server must let go of both streams by itself.
        await eventually(
            lambda: served.open_streams == 0 and _backlog(served, listen) == 0 and _backlog(served, get) == 0,
            within=WAIT,
            what="both streams to be cut off",
        )
        async with asyncio.timeout(WAIT):
            await producer  # unblocked: what follows has no stream and is dropped
        await eventually(lambda: not live.busy, what="the session to go idle")
        for conn in (get, listen):  # the client finds its connections reset
            async with asyncio.timeout(WAIT):
                with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                    while await conn.reader.read(1 << 20):
                        pass
            await conn.close()
        served.clock.advance(served.service.settings.session_idle_timeout + 1)
        await served.manager.sweep()
        assert len(served.manager) == 0
        await probe.settled(within=WAIT)


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_a_large_reply_to_a_client_that_stops_reading_is_released_when_it_goes(world: World, era: str) -> None:
    """``get_image_data`` of a multi-megabyte image to a client with a tiny window that reads
    nothing: the server holds one bounded write buffer, and lets go when the client leaves."""
    record = await asyncio.to_thread(_save_noise, world, 1000)
    session = await open_session(world.port, TOKEN) if era == "legacy" else None
    if session:
        await legacy_call(world.port, session, "ping", token=TOKEN)
    probe = LeakProbe()
    params = {"name": "get_image_data", "arguments": {"image_id": record.image_id}}
    body = {
        "jsonrpc": "2.0",
        "id": "big",
        "method": "tools/call",
        "params": {**params, "_meta": modern_meta()} if era == "modern" else params,
    }
    headers = (
        modern_headers("tools/call", "get_image_data", accept="application/json")
        if era == "modern"
        else legacy_headers(session, accept="application/json")
    )
    data = build_request(
        "POST",
        "/mcp",
        [*headers.items(), *auth(TOKEN).items()],
        json.dumps(body).encode(),
        host=f"127.0.0.1:{world.port}",
    )
    conn = await RawConnection.open(world.port, rcvbuf=4096)
    await conn.send(data)
    await eventually(
        lambda: max(_server_write_buffers(world), default=0) > 0, within=WAIT, what="the reply to back up in the server"
    )
    assert max(_server_write_buffers(world)) <= 3 * record.size_bytes  # one reply's worth, not more
    meanwhile = await modern_call(world.port, "tools/list", token=TOKEN, rid="meanwhile")
    assert meanwhile.status == 200
    conn.abort()
    await probe.settled(within=WAIT)


# ---- abandoned sessions -------------------------------------------------------------------------


async def test_2025_abandoned_sessions_expire_on_the_clock_and_release_everything(world: World) -> None:
    """Sessions whose clients vanish in every state: right after ``initialize``, after the
    handshake, with a GET stream open, with a call in flight, mid-body. The clock passes the
    idle timeout, a sweep ends them all, and nothing they held is left."""
    port = world.port
    world.emu.job_polls = 10
    probe = LeakProbe()
    half = await post_json(port, INITIALIZE, {**legacy_headers(), **auth(TOKEN)})  # no notifications/initialized
    assert half.status == 200
    handshaken = await open_session(port, TOKEN)
    streaming = await open_session(port, TOKEN)
    headers = {**legacy_headers(streaming), **auth(TOKEN), "Accept": "text/event-stream"}
    get = await _open_stream(world, build_request("GET", "/mcp", list(headers.items()), host=f"127.0.0.1:{port}"))
    calling = await open_session(port, TOKEN)
    call = await _open_stream(world, _call_bytes(world, "legacy", "abandoned", calling))
    await _first_progress(call)
    midbody = await open_session(port, TOKEN)
    partial = build_request(
        "POST",
        "/mcp",
        [*legacy_headers(midbody).items(), *auth(TOKEN).items()],
        b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
        host=f"127.0.0.1:{port}",
        content_length=4096,
    )
    cut = await RawConnection.open(port)
    await cut.send(partial)
    get.abort()
    call.abort()
    cut.abort()
    manager = world.served.manager
    assert len(manager) == 5
    await eventually(lambda: all(j.done for j in _jobs(world)), within=WAIT, what="the abandoned call to finish")
    await eventually(
        lambda: not any(s.busy for s in manager._sessions.values()),  # pyright: ignore[reportPrivateUsage]
        what="the sessions to go idle",
    )
    world.served.clock.advance(world.served.service.settings.session_idle_timeout + 1)
    await manager.sweep()
    assert len(manager) == 0 and manager.running_loops == 0
    await probe.settled(within=WAIT)
    for session in (handshaken, streaming, calling, midbody):
        assert (await legacy_call(port, session, "ping", token=TOKEN)).status == 404


async def test_the_sweeper_itself_expires_an_abandoned_session_in_real_time(tmp_path: Path) -> None:
    """No injected clock: a 1 s idle timeout and the running sweeper (every 0.25 s)."""
    env = {"MCP_AUTH_TOKEN": TOKEN, "MCP_SESSION_IDLE_TIMEOUT": "1"}
    async with serve(tmp_path, env, linger=0.5, real_clock=True) as served:
        probe = LeakProbe()
        session = await open_session(served.port, TOKEN)
        assert len(served.manager) == 1
        await eventually(lambda: len(served.manager) == 0, within=10, what="the sweeper to expire the session")
        await probe.settled(within=WAIT)
        assert (await legacy_call(served.port, session, "ping", token=TOKEN)).status == 404


async def test_2026_a_client_that_vanishes_mid_body_or_before_reading_leaves_nothing(world: World) -> None:
    """The per-request era has no session to abandon: a request cut off mid-body, and one whose
    client leaves before reading its (JSON) answer, each release what they held."""
    world.emu.job_polls = 100_000
    probe = LeakProbe()
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {**_generate(), "_meta": modern_meta()}}
    ).encode()
    headers = [*modern_headers("tools/call", "generate_image", accept="application/json").items(), *auth(TOKEN).items()]
    cut = await RawConnection.open(world.port)
    await cut.send(
        build_request("POST", "/mcp", headers, body[:40], host=f"127.0.0.1:{world.port}", content_length=len(body))
    )
    gone = await RawConnection.open(world.port)
    await gone.send(build_request("POST", "/mcp", headers, body, host=f"127.0.0.1:{world.port}"))
    await eventually(lambda: any(not j.done for j in _jobs(world)), what="the second call's job to start")
    cut.abort()
    gone.abort()
    job = _jobs(world)[-1]
    await eventually(lambda: job.state == "cancelled", within=WAIT, what="the job of the vanished client to stop")
    await _quiet(world, probe)

"""Several real server processes on one Redis (job state) and one S3 bucket (images), through the SDK client.

What one replica started the other polls, follows (with progress), lists, cancels and serves; one
idempotency key given to both at once starts one vendor call; a replica killed with ``kill -9``
leaves no job "running" (``worker_lost``); a Redis that dies gives ``state_unavailable`` and 503
for new sessions, and the same processes recover when it is back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis.asyncio as aioredis
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from .conftest import server_env
from .emulators.hunyuan import HunyuanEmulator
from .emulators.modelscope import ModelScopeEmulator
from .emulators.openai import OpenAIEmulator
from .redisd import REDIS_PASSWORD, RedisServer
from .s3 import S3Server

pytestmark = pytest.mark.timeout(180)
TOKEN = "scale-out-token"
GEN = {"provider": "openai", "prompt": "a lighthouse at dusk", "inline": "none"}


@asynccontextmanager
async def _client(url: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


async def _call(url: str, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    async with _client(url) as client:
        result = await client.call_tool(tool, args)
    assert result.structured_content is not None, result
    return result.structured_content


def _env(redis: str, s3: S3Server, emulator: OpenAIEmulator) -> dict[str, str]:
    return {"MCP_STATE_URL": redis, **s3.env(s3.bucket()), **emulator.env()}


async def test_two_replicas_share_jobs_progress_cancels_images_and_idempotency_keys(
    redis_url: str, s3_server: S3Server, http_server: Any
) -> None:
    async with OpenAIEmulator() as emulator:
        env = _env(redis_url, s3_server, emulator)
        async with http_server(env, TOKEN, "one") as one, http_server(env, TOKEN, "two") as two:
            # Started on one, held by the vendor: the other replica sees it running.
            emulator.fail_next("hang")
            started = await _call(one, "generate_image", {**GEN, "wait_seconds": 0})
            job_id = started["job_id"]
            async with asyncio.timeout(10):
                await emulator.hanging.wait()
            polled = await _call(two, "get_generation", {"job_id": job_id, "wait_seconds": 0})
            assert polled["status"] == "running" and polled["job_id"] == job_id

            # A waiter on two gets the job's progress from one, then its images.
            messages: list[str] = []
            released = asyncio.Event()

            async def progress(_done: float, _total: float | None, message: str | None) -> None:
                messages.append(message or "")
                if not released.is_set():
                    released.set()
                    emulator.release()

            async with _client(two) as client:
                result = await client.call_tool(
                    "get_generation", {"job_id": job_id, "wait_seconds": 30, "inline": "none"},
                    progress_callback=progress,
                )
            done = result.structured_content
            assert done is not None and done["ok"] and done["job_id"] == job_id, result
            assert any(m.startswith("saving") for m in messages) or any("succeeded" in m for m in messages), messages
            image = done["images"][0]
            assert image["file_path"].startswith("s3://")

            listed = await _call(two, "list_generations", {})
            assert [j["job_id"] for j in listed["jobs"]] == [job_id] and listed["jobs"][0]["status"] == "succeeded"
            data = await _call(two, "get_image_data", {"image_id": image["image_id"]})
            assert base64.b64decode(data["base64"])[:8] == b"\x89PNG\r\n\x1a\n"
            async with httpx2.AsyncClient() as http:
                name = image["url"].rsplit("/", 1)[1]
                got = await http.get(f"{two.removesuffix('/mcp')}/images/{name}")
                assert got.status_code == 200 and got.content[:8] == b"\x89PNG\r\n\x1a\n"
                health = (await http.get(f"{two.removesuffix('/mcp')}/health")).json()
                assert health["backends"] == {"image_store": "ok", "state": "ok"} and health["status"] == "ok"

            # Cancelled from two while one runs it.
            emulator.fail_next("hang")
            held = await _call(one, "generate_image", {**GEN, "prompt": "a boat", "wait_seconds": 0})
            cancelled = await _call(two, "cancel_generation", {"job_id": held["job_id"]})
            assert cancelled["jobs"][0]["status"] == "cancelled", cancelled
            again = await _call(one, "get_generation", {"job_id": held["job_id"], "wait_seconds": 0})
            assert again["error"]["code"] == "generation_cancelled"
            emulator.release()

            # One key, both replicas, the same moment: one job, one vendor call.
            calls_before = len(emulator.requests_to("generate"))
            key = {**GEN, "prompt": "a kite", "idempotency_key": "kite-1", "wait_seconds": 30}
            a, b = await asyncio.gather(_call(one, "generate_image", key), _call(two, "generate_image", key))
            assert a["job_id"] == b["job_id"] and a["images"][0]["image_id"] == b["images"][0]["image_id"]
            assert len(emulator.requests_to("generate")) == calls_before + 1


@asynccontextmanager
async def _worker(tmp_path: Path, env: dict[str, str], name: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """A ``MCP_ROLE=worker`` process (no HTTP), once it says it takes jobs; its log is ``<name>.log``."""
    log = (tmp_path / f"{name}.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mcp_image_server", cwd=tmp_path,
        env=server_env(tmp_path / f"{name}-images", {**env, "MCP_ROLE": "worker", "MCP_REPLICA_ID": name}),
        stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(30):
            while b"worker started" not in (line := await proc.stderr.readline()):
                assert line, "the worker exited before starting"
                log.write(line)

        async def pump() -> None:
            assert proc.stderr is not None
            while chunk := await proc.stderr.read(65536):
                log.write(chunk)

        drain = asyncio.create_task(pump())
        try:
            yield proc
        finally:
            if proc.returncode is None:
                proc.terminate()
                async with asyncio.timeout(20):
                    await proc.wait()
            drain.cancel()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()


async def test_api_replicas_queue_and_workers_run_and_a_killed_worker_loses_nothing_it_need_not(
    redis_url: str, s3_server: S3Server, http_server: Any, tmp_path: Path
) -> None:
    async with OpenAIEmulator() as emulator:
        env = _env(redis_url, s3_server, emulator) | {"MCP_OPENAI_MAX_CONCURRENCY": "1"}
        api_env = env | {"MCP_ROLE": "api"}
        async with http_server(api_env, TOKEN, "api-1") as api1, http_server(api_env, TOKEN, "api-2") as api2:
            async with _worker(tmp_path, env, "worker-1") as worker:
                done = await _call(api1, "generate_image", {**GEN, "wait_seconds": 30})
                assert done["ok"] and done["images"], done
                # Two jobs on worker-1: the first holds the vendor, the second waits for the
                # vendor slot (it has called no provider yet). Then worker-1 dies.
                emulator.fail_next("hang")
                billed = await _call(api1, "generate_image", {**GEN, "prompt": "first", "wait_seconds": 0})
                async with asyncio.timeout(10):
                    await emulator.hanging.wait()
                waiting = await _call(api2, "generate_image", {**GEN, "prompt": "second", "wait_seconds": 0})
                async with asyncio.timeout(10):
                    while "queued for openai" not in (
                        await _call(api2, "get_generation", {"job_id": waiting["job_id"], "wait_seconds": 0})
                    )["message"]:
                        await asyncio.sleep(0.1)
                calls = len(emulator.requests_to("generate"))
                worker.send_signal(signal.SIGKILL)
                await worker.wait()
            emulator.release()
            async with _worker(tmp_path, env, "worker-2"):
                lost = await _call(api2, "get_generation", {"job_id": billed["job_id"], "wait_seconds": 40})
                assert lost.get("error") and lost["error"]["code"] == "worker_lost", lost  # it reached the vendor: never run twice
                rerun = await _call(api1, "get_generation", {"job_id": waiting["job_id"], "wait_seconds": 40})
                assert rerun["ok"] and rerun["images"], rerun  # re-queued once, finished by worker-2
                assert len(emulator.requests_to("generate")) == calls + 1
            health = await _call(api1, "list_generations", {})
            assert {j["status"] for j in health["jobs"]} == {"succeeded", "failed"}


async def test_a_replica_killed_mid_job_leaves_it_failed_with_worker_lost(
    redis_url: str, s3_server: S3Server, http_server: Any
) -> None:
    async with OpenAIEmulator() as emulator:
        env = _env(redis_url, s3_server, emulator)
        async with http_server(env, TOKEN, "doomed") as doomed, http_server(env, TOKEN, "survivor") as survivor:
            emulator.fail_next("hang")
            started = await _call(doomed, "generate_image", {**GEN, "wait_seconds": 0})
            async with asyncio.timeout(10):
                await emulator.hanging.wait()
            http_server.procs["doomed"].send_signal(signal.SIGKILL)
            began = time.monotonic()
            lost = await _call(survivor, "get_generation", {"job_id": started["job_id"], "wait_seconds": 40})
            assert lost["error"]["code"] == "worker_lost", lost
            assert lost["status"] == "failed" and time.monotonic() - began < 30
            emulator.release()


async def test_redis_going_away_is_state_unavailable_then_the_same_replica_recovers(
    private_redis: RedisServer, s3_server: S3Server, http_server: Any, tmp_path: Path
) -> None:
    async with OpenAIEmulator() as emulator:
        env = _env(private_redis.url, s3_server, emulator)
        async with http_server(env, TOKEN, "replica") as url, httpx2.AsyncClient() as http:
            base = url.removesuffix("/mcp")
            first = await _call(url, "generate_image", {**GEN, "wait_seconds": 30})
            assert first["ok"], first
            async with _client(url) as open_session:  # a session opened before the outage
                private_redis.kill()
                failed = await open_session.call_tool("generate_image", {**GEN, "wait_seconds": 30})
                assert failed.is_error and failed.structured_content is not None
                assert failed.structured_content["error"]["code"] == "state_unavailable", failed
                health = (await http.get(base + "/health")).json()
                assert health["backends"]["state"] == "unavailable" and health["status"] == "degraded"
                init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": "probe", "version": "1"}}}
                refused = await http.post(url, json=init, headers={
                    "Authorization": f"Bearer {TOKEN}", "Accept": "application/json, text/event-stream"})
                assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
                private_redis.start()
                async with asyncio.timeout(20):  # the replica's lease renewal (every 3 s) finds it back
                    while (await http.get(base + "/health")).json()["backends"]["state"] != "ok":
                        await asyncio.sleep(0.2)
                after = await open_session.call_tool("generate_image", {**GEN, "wait_seconds": 30})
                assert not after.is_error, after
            assert REDIS_PASSWORD not in (await http.get(base + "/health")).text
    log = (tmp_path / "replica.log").read_text()
    assert "Traceback" not in log and REDIS_PASSWORD not in log


def test_a_bad_state_url_is_one_line_naming_the_variable_with_the_password_masked(tmp_path: Path) -> None:
    env = server_env(tmp_path / "imgs", {"MCP_STATE_URL": "redis://:hunter2secret@127.0.0.1:notaport/0"})
    done = subprocess.run([sys.executable, "-m", "mcp_image_server"], check=False, env=env, cwd=tmp_path, input=b"",
                          capture_output=True, timeout=60)
    err = done.stderr.decode()
    assert done.returncode != 0 and "MCP_STATE_URL" in err and "redis://:***@" in err, err
    assert "hunter2secret" not in err and "Traceback" not in err


async def test_a_killed_replicas_vendor_jobs_are_polled_to_the_end_elsewhere_and_never_submitted_twice(
    redis_url: str, s3_server: S3Server, http_server: Any
) -> None:
    """Hunyuan and ModelScope keep a submitted job at the vendor: the replica that takes over polls
    the ids the lost one saved (every ModelScope task of an n=2 call), so the vendor bills once."""
    never = 10**9  # the vendor jobs stay running until the test lets them finish
    async with HunyuanEmulator(job_polls=never) as hunyuan, ModelScopeEmulator(job_polls=never) as modelscope:
        env = {
            "MCP_STATE_URL": redis_url, **s3_server.env(s3_server.bucket()), **hunyuan.env(), **modelscope.env(),
            "MCP_HUNYUAN_POLL_INTERVAL": "0.05", "MCP_MODELSCOPE_POLL_INTERVAL": "0.05",
        }
        calls = {"hunyuan": {"n": 1}, "modelscope": {"n": 2, "resolution": "512x512"}}
        state = aioredis.from_url(redis_url, decode_responses=True)
        try:
            async with http_server(env, TOKEN, "doomed") as doomed, http_server(env, TOKEN, "heir") as heir:
                jobs = {}
                for provider, extra in calls.items():
                    args = {"provider": provider, "prompt": "a lighthouse", "inline": "none", "wait_seconds": 0}
                    jobs[provider] = (await _call(doomed, "generate_image", args | extra))["job_id"]
                async with asyncio.timeout(20):  # every vendor id saved where the heir will read it
                    for provider, job_id in jobs.items():
                        while len(json.loads(await state.get(f"mcp:job:{job_id}") or "{}").get("vendor_jobs", [])) \
                                < calls[provider]["n"]:
                            await asyncio.sleep(0.05)
                http_server.procs["doomed"].send_signal(signal.SIGKILL)
                await http_server.procs["doomed"].wait()
                hunyuan.job_polls = modelscope.job_polls = 0  # the vendors finish while nobody polls
                began = time.monotonic()
                for provider, job_id in jobs.items():
                    done = await _call(heir, "get_generation", {"job_id": job_id, "wait_seconds": 40})
                    assert done["ok"] and len(done["images"]) == calls[provider]["n"], done
                assert time.monotonic() - began < 30
                assert len(hunyuan.requests_to("submit")) == 1
                assert len(modelscope.requests_to("submit")) == 2
        finally:
            await state.aclose()


async def test_a_replica_stopped_with_sigterm_hands_its_jobs_over_at_once(
    redis_url: str, s3_server: S3Server, http_server: Any
) -> None:
    """A rolling restart: the stopping replica gives its running job MCP_DRAIN_SECONDS, then hands it
    over for polling at the vendor, and sends the job still waiting for its one slot back to the
    queue; the other replica finishes both, each submitted once, and the stop is clean (exit 0)."""
    async with HunyuanEmulator(job_polls=10**9) as hunyuan:
        env = {"MCP_STATE_URL": redis_url, **s3_server.env(s3_server.bucket()), **hunyuan.env(),
               "MCP_HUNYUAN_POLL_INTERVAL": "0.05"}
        state = aioredis.from_url(redis_url, decode_responses=True)
        args = {"provider": "hunyuan", "prompt": "a lighthouse", "inline": "none", "wait_seconds": 0}
        try:
            async with (
                http_server(env | {"MCP_MAX_JOBS": "1", "MCP_DRAIN_SECONDS": "0.5", "MCP_REPLICA_ID": "leaving"}, TOKEN, "leaving") as leaving,
                http_server(env, TOKEN, "staying") as staying,
            ):
                running = (await _call(leaving, "generate_image", args))["job_id"]
                waiting = (await _call(leaving, "generate_image", args | {"prompt": "second"}))["job_id"]
                async with asyncio.timeout(20):
                    while not json.loads(await state.get(f"mcp:job:{running}") or "{}").get("vendor_jobs"):
                        await asyncio.sleep(0.05)
                assert json.loads(await state.get(f"mcp:job:{waiting}") or "{}")["state"] == "queued"
                proc = http_server.procs["leaving"]
                proc.send_signal(signal.SIGTERM)
                async with asyncio.timeout(15):
                    assert await proc.wait() == 0
                for job_id in (running, waiting):  # handed over as it stopped, not after its lease ran out
                    handed = json.loads(await state.get(f"mcp:job:{job_id}") or "{}")
                    assert handed["state"] != "failed" and handed["replica"] != "leaving", handed
                hunyuan.job_polls = 0
                for job_id in (running, waiting):
                    done = await _call(staying, "get_generation", {"job_id": job_id, "wait_seconds": 40})
                    assert done["ok"] and len(done["images"]) == 1, done
                assert len(hunyuan.requests_to("submit")) == 2
        finally:
            await state.aclose()

"""Long generations against slow emulators: progress spacing, bounded waits, cancellation stopping the polls."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from .test_providers_mcp import running

pytestmark = pytest.mark.timeout(120)


def _sc(result: Any) -> dict[str, Any]:
    assert isinstance(result.structured_content, dict), result
    return result.structured_content


async def test_progress_arrives_in_order_and_at_least_every_interval(stdio_client: Any, tmp_path: Path) -> None:
    env = {"MCP_PROGRESS_INTERVAL": "0.2", "MCP_HUNYUAN_POLL_INTERVAL": "0.5"}
    async with running(stdio_client, tmp_path, env, hunyuan={"job_seconds": 2.0}) as (client, _, _):
        seen: list[tuple[float, float, str]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append((time.monotonic(), progress, message or ""))

        result = await client.call_tool(
            "generate_image", {"prompt": "x", "provider": "hunyuan", "inline": "none"}, progress_callback=on_progress
        )
    assert _sc(result)["ok"]
    values = [p for _, p, _ in seen]
    assert values == sorted(set(values)), "progress must increase"
    messages = [m for _, _, m in seen]
    stages = [m.split()[0] for m in messages]
    assert stages[0] == "started" and stages[-1] == "succeeded:"
    assert stages.index("submitted") < stages.index("downloading") < stages.index("saving")
    assert any(m.startswith("submitted") and m.endswith(" s)") for m in messages), "heartbeats while waiting"
    gaps = [b[0] - a[0] for a, b in zip(seen, seen[1:], strict=False)]
    assert max(gaps) < 1.0  # interval 0.2 s, generous slack for a loaded 2-core machine


async def test_a_3_s_job_with_a_1_s_wait_hands_back_a_job_then_completes(stdio_client: Any, tmp_path: Path) -> None:
    async with running(stdio_client, tmp_path, {"MCP_HUNYUAN_POLL_INTERVAL": "0.2"},
                       hunyuan={"job_seconds": 3.0}) as (client, emus, _):
        first = _sc(await client.call_tool(
            "generate_image", {"prompt": "x", "provider": "hunyuan", "wait_seconds": 1, "inline": "none"}))
        assert first["ok"] and first["status"] in {"queued", "submitted", "running"} and first["job_id"]
        done = _sc(await client.call_tool("get_generation", {"job_id": first["job_id"], "wait_seconds": 30}))
        assert done["status"] == "succeeded" and done["images"][0]["provider"] == "hunyuan"
        job = _sc(await client.call_tool("list_generations", {}))["jobs"][0]
        assert job["provider"] == "hunyuan"
        assert job["provider_job_id"] == emus.hunyuan.requests_to("query")[0].json["JobId"]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_cancelling_the_call_stops_the_emulator_job_polling(
    stdio_client: Any, tmp_path: Path, mode: str
) -> None:
    env = {"MCP_HUNYUAN_POLL_INTERVAL": "0.02"}
    async with running(stdio_client, tmp_path, env, mode=mode, hunyuan={"job_polls": 100_000}) as (
        client, emus, _,
    ):
        polling = asyncio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            if message and message.startswith("submitted"):
                polling.set()

        call = asyncio.create_task(client.call_tool(
            "generate_image", {"prompt": "x", "provider": "hunyuan"}, progress_callback=on_progress))
        async with asyncio.timeout(20):
            await polling.wait()
        call.cancel()  # legacy: notifications/cancelled; 2026-07-28 over stdio: the same, per request
        async with asyncio.timeout(20):
            while True:
                jobs = _sc(await client.call_tool("list_generations", {}))["jobs"]
                if jobs[0]["status"] == "cancelled":
                    break
        polls = len(emus.hunyuan.requests_to("query"))
        await asyncio.sleep(0.3)  # an observation window of ~15 poll intervals, not synchronisation
        assert len(emus.hunyuan.requests_to("query")) <= polls + 1

"""Jobs through the SDK client over a real stdio subprocess: bounded waits, polling, cancel, idempotency."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("backends")]

SLOW = {"prompt": "slow", "style": "watercolor", "resolution": "2048x2048", "n": 2, "inline": "none"}


def _sc(result: Any) -> dict[str, Any]:
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def test_wait_zero_hands_back_a_job_that_get_generation_completes(stdio_client: Any) -> None:
    async with stdio_client() as client:
        first = await client.call_tool("generate_image", {"prompt": "x", "wait_seconds": 0})
        sc = _sc(first)
        assert sc["ok"] and sc["status"] in {"queued", "running"} and sc["images"] == []
        assert f'get_generation(job_id="{sc["job_id"]}")' in first.content[0].text
        done = await client.call_tool("get_generation", {"job_id": sc["job_id"], "wait_seconds": 60})
        got = _sc(done)
        assert got["status"] == "succeeded" and got["job_id"] == sc["job_id"] and len(got["images"]) == 1
        assert [b.type for b in done.content] == ["text", "resource_link", "image"]
        listed = _sc(await client.call_tool("list_generations", {}))["jobs"]
        assert [j["job_id"] for j in listed] == [sc["job_id"]]
        assert listed[0]["image_ids"] == [got["images"][0]["image_id"]]


async def test_get_generation_with_a_short_wait_reports_the_state(stdio_client: Any) -> None:
    async with stdio_client() as client:
        job_id = _sc(await client.call_tool("generate_image", SLOW | {"wait_seconds": 0}))["job_id"]
        state = _sc(await client.call_tool("get_generation", {"job_id": job_id, "wait_seconds": 0}))
        assert state["ok"] and state["status"] != "succeeded" and state["job_id"] == job_id
        await client.call_tool("cancel_generation", {"job_id": job_id})


async def test_cancel_generation_stops_the_job(stdio_client: Any, tmp_path: Path, backends: str) -> None:
    async with stdio_client() as client:
        job_id = _sc(await client.call_tool("generate_image", SLOW | {"wait_seconds": 0}))["job_id"]
        cancelled = _sc(await client.call_tool("cancel_generation", {"job_id": job_id}))
        assert cancelled["jobs"][0]["status"] == "cancelled"
        after = await client.call_tool("get_generation", {"job_id": job_id})
        assert after.is_error and _sc(after)["error"]["code"] == "generation_cancelled"
        again = _sc(await client.call_tool("cancel_generation", {"job_id": job_id}))
        assert again["jobs"][0]["status"] == "cancelled"
        unknown = await client.call_tool("get_generation", {"job_id": "0" * 32})
        assert _sc(unknown)["error"]["code"] == "job_not_found"
        assert _sc(await client.call_tool("list_generations", {"status": "cancelled"}))["jobs"][0]["job_id"] == job_id
    if backends == "memory":  # nothing half-written (on S3 a write is whole or absent by construction)
        assert not [p for p in (tmp_path / "images").iterdir() if p.is_file()]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_abandoning_a_waiting_call_cancels_its_job(stdio_client: Any, mode: str) -> None:
    async with stdio_client(mode=mode) as client:
        running = asyncio.Event()

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            if message and message.startswith("running on"):
                running.set()

        call = asyncio.create_task(client.call_tool("generate_image", SLOW, progress_callback=on_progress))
        async with asyncio.timeout(30):
            await running.wait()
        call.cancel()  # the SDK client sends notifications/cancelled
        async with asyncio.timeout(30):
            while True:
                jobs = _sc(await client.call_tool("list_generations", {}))["jobs"]
                if jobs and jobs[0]["status"] == "cancelled":
                    break


async def test_idempotent_repeats_generate_once(stdio_client: Any, tmp_path: Path, backends: str) -> None:
    async with stdio_client() as client:
        args = {"prompt": "once", "resolution": "64x64", "idempotency_key": "abc", "inline": "none"}
        a, b = [_sc(await client.call_tool("generate_image", args)) for _ in range(2)]
        assert a["job_id"] == b["job_id"] and a["images"] == b["images"]
        clash = await client.call_tool("generate_image", args | {"prompt": "twice"})
        assert clash.is_error and _sc(clash)["error"]["code"] == "idempotency_conflict"
        assert len(_sc(await client.call_tool("list_generations", {}))["jobs"]) == 1
    if backends == "memory":
        assert len([p for p in (tmp_path / "images").iterdir() if p.is_file()]) == 1


async def test_bad_arguments_fail_before_a_job_exists(stdio_client: Any) -> None:
    async with stdio_client() as client:
        bad = await client.call_tool("generate_image", {"prompt": "x", "style": "nope"})
        assert _sc(bad)["error"]["code"] == "unknown_style"
        assert _sc(await client.call_tool("list_generations", {}))["jobs"] == []

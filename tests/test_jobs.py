"""JobManager with a recording fake runner and an injected clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from mcp_image_server.errors import (
    IdempotencyConflictError,
    JobNotFoundError,
    ProviderUnavailableError,
    QueueFullError,
)
from mcp_image_server.jobs import JobManager, Update
from mcp_image_server.models import GenerateOutcome, GenerateParams, ProgressFn


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeRunner:
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    calls: list[GenerateParams] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    fail: BaseException | None = None

    resumed: list[tuple[str, ...]] = field(default_factory=list)

    async def __call__(self, params: GenerateParams, progress: ProgressFn, resume: tuple[str, ...] = (),
                       owner: str = "") -> GenerateOutcome:
        self.calls.append(params)
        self.resumed.append(resume)
        self.started.set()
        await progress("submitted job 42")
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        if self.fail is not None:
            raise self.fail
        await progress("downloading 1 image")
        return GenerateOutcome(records=(), provider="fake", model="m")


def _manager(runner: FakeRunner | GatedRunner, clock: Clock | None = None, **kw: int) -> JobManager:
    return JobManager(runner, ttl=60, max_running=kw.get("max_running", 4), max_queued=kw.get("max_queued", 10),
                      clock=clock or Clock())


P = GenerateParams(prompt="a cat")


async def test_job_runs_and_reports_each_stage_in_order() -> None:
    runner = FakeRunner()
    jobs = _manager(runner)
    job = await jobs.submit("me", P)
    seen: list[Update] = []

    async def record(u: Update) -> None:
        seen.append(u)
        if u.message == "submitted job 42":
            runner.gate.set()

    async with asyncio.timeout(5):
        assert await jobs.wait(job, 5, record)
    assert [(u.state, u.message) for u in seen] == [
        ("running", "started"), ("submitted", "submitted job 42"), ("downloading", "downloading 1 image"),
        ("succeeded", "succeeded: 0 image(s)"),
    ]
    assert job.outcome is not None and job.finished_at is not None


async def test_a_wait_that_times_out_leaves_the_job_running() -> None:
    runner = FakeRunner()
    jobs = _manager(runner)
    job = await jobs.submit("me", P)
    assert await jobs.wait(job, 0) is False
    async with asyncio.timeout(5):
        await runner.started.wait()
    assert not job.done and job.state == "submitted"
    runner.gate.set()
    async with asyncio.timeout(5):
        assert await jobs.wait(job, 5)
    assert job.state == "succeeded"


async def test_heartbeats_keep_coming_while_nothing_changes() -> None:
    runner = FakeRunner()
    jobs = _manager(runner)
    job = await jobs.submit("me", P)
    async with asyncio.timeout(5):
        await runner.started.wait()
    beats: list[str] = []

    async def record(u: Update) -> None:
        beats.append(u.message)

    assert await jobs.wait(job, 0.35, record, heartbeat=0.1) is False
    assert beats[0] == "submitted job 42" and len(beats) >= 3
    assert all(b.startswith("submitted job 42 (") for b in beats[1:])
    runner.gate.set()


async def test_cancel_stops_the_runner_and_marks_the_job() -> None:
    runner = FakeRunner()
    jobs = _manager(runner)
    job = await jobs.submit("me", P)
    async with asyncio.timeout(5):
        await runner.started.wait()
    await jobs.cancel("me", job.job_id)
    async with asyncio.timeout(5):
        await runner.cancelled.wait()
        assert await jobs.wait(job, 5)
    assert job.state == "cancelled" and job.error is not None and job.error.code == "generation_cancelled"


async def test_failures_are_kept_on_the_job() -> None:
    runner = FakeRunner(fail=ProviderUnavailableError("down", provider="fake"))
    runner.gate.set()
    jobs = _manager(runner)
    job = await jobs.submit("me", P)
    async with asyncio.timeout(5):
        await jobs.wait(job, 5)
    assert job.state == "failed" and job.error is not None and job.error.code == "provider_unavailable"


async def test_a_crash_fails_the_job_without_leaking_details() -> None:
    runner = FakeRunner(fail=RuntimeError("secret internals"))
    runner.gate.set()
    jobs = _manager(runner)
    job = await jobs.submit("me", P)
    async with asyncio.timeout(5):
        await jobs.wait(job, 5)
    assert job.error is not None and job.error.code == "internal_error" and "secret" not in job.error.message


async def test_jobs_belong_to_their_owner() -> None:
    runner = FakeRunner()
    jobs = _manager(runner)
    job = await jobs.submit("alice", P)
    with pytest.raises(JobNotFoundError):
        await jobs.get("bob", job.job_id)
    with pytest.raises(JobNotFoundError):
        await jobs.cancel("bob", job.job_id)
    assert await jobs.list("bob") == [] and await jobs.list("alice") == [job]
    assert not job.done
    runner.gate.set()


async def test_idempotency_key_returns_the_same_job_and_never_runs_twice() -> None:
    runner = FakeRunner()
    runner.gate.set()
    jobs = _manager(runner)
    first = await jobs.submit("me", P, "k1")
    assert await jobs.submit("me", P, "k1") is first
    assert await jobs.submit("other", P, "k1") is not first  # keys are per owner
    with pytest.raises(IdempotencyConflictError) as info:
        await jobs.submit("me", GenerateParams(prompt="a dog"), "k1")
    assert info.value.details["job_id"] == first.job_id
    async with asyncio.timeout(5):
        await jobs.wait(first, 5)
    assert await jobs.submit("me", P, "k1") is first  # still within the TTL after it finished
    await jobs.aclose()
    assert len([c for c in runner.calls if c == P]) == 2  # "me" once, "other" once


async def test_excess_jobs_queue_with_positions_then_are_refused() -> None:
    runner = FakeRunner()
    jobs = _manager(runner, max_running=1, max_queued=2)
    a = await jobs.submit("me", P)
    async with asyncio.timeout(5):
        await runner.started.wait()
    b = await jobs.submit("me", GenerateParams(prompt="b"))
    c = await jobs.submit("me", GenerateParams(prompt="c"))
    assert (b.state, b.queue_position, b.message) == ("queued", 0, "queued, 0 ahead")
    assert (c.queue_position, c.message) == (1, "queued, 1 ahead")
    with pytest.raises(QueueFullError) as info:
        await jobs.submit("me", GenerateParams(prompt="d"))
    assert info.value.code == "queue_full"
    await jobs.cancel("me", b.job_id)
    async with asyncio.timeout(5):
        await jobs.wait(b, 5)
    assert c.queue_position == 0 and b.state == "cancelled"
    runner.gate.set()
    async with asyncio.timeout(5):
        assert await jobs.wait(a, 5) and await jobs.wait(c, 5)


async def test_finished_jobs_expire_after_the_ttl() -> None:
    clock = Clock()
    runner = FakeRunner()
    runner.gate.set()
    jobs = _manager(runner, clock)
    job = await jobs.submit("me", P, "key")
    async with asyncio.timeout(5):
        await jobs.wait(job, 5)
    clock.now += 59
    assert await jobs.get("me", job.job_id) is job
    clock.now += 2
    with pytest.raises(JobNotFoundError):
        await jobs.get("me", job.job_id)
    assert await jobs.submit("me", P, "key") is not job  # the key expired with it
    await jobs.aclose()


@dataclass
class GatedRunner:
    """Each prompt's job ends when its own gate opens."""

    gates: dict[str, asyncio.Event] = field(default_factory=dict)

    def gate(self, prompt: str) -> asyncio.Event:
        return self.gates.setdefault(prompt, asyncio.Event())

    async def __call__(self, params: GenerateParams, progress: ProgressFn, resume: tuple[str, ...] = (),
                       owner: str = "") -> GenerateOutcome:
        await self.gate(params.prompt).wait()
        return GenerateOutcome(records=(), provider="fake", model="m")


async def _kept(jobs: JobManager, job_id: str) -> bool:
    try:
        await jobs.get("me", job_id)
    except JobNotFoundError:
        return False
    return True


async def test_jobs_expire_in_the_order_they_ended_not_the_order_they_started() -> None:
    clock = Clock()
    runner = GatedRunner()
    jobs = _manager(runner, clock)
    slow = await jobs.submit("me", GenerateParams(prompt="slow"), "slow-key")
    fast = await jobs.submit("me", GenerateParams(prompt="fast"), "fast-key")
    endless = await jobs.submit("me", GenerateParams(prompt="endless"))
    async with asyncio.timeout(5):
        runner.gate("fast").set()
        await jobs.wait(fast, 5)
        clock.now += 30
        runner.gate("slow").set()
        await jobs.wait(slow, 5)
    clock.now += 31  # fast ended 61 s ago, slow 31 s ago
    assert not await _kept(jobs, fast.job_id)
    assert await _kept(jobs, slow.job_id)  # started first, but the sweep goes by end time
    clock.now += 30
    assert not await _kept(jobs, slow.job_id)
    assert await jobs.submit("me", GenerateParams(prompt="slow"), "slow-key") is not slow  # its key went too
    clock.now += 10_000
    assert await _kept(jobs, endless.job_id)  # a running job never expires
    runner.gate("endless").set()
    await jobs.aclose()


async def test_ended_jobs_beyond_the_cap_are_forgotten_oldest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    import mcp_image_server.jobs as jobs_module

    monkeypatch.setattr(jobs_module, "_MAX_FINISHED", 3)
    clock = Clock()
    runner = FakeRunner()
    runner.gate.set()
    jobs = _manager(runner, clock)
    ended = []
    async with asyncio.timeout(5):
        for _ in range(5):
            job = await jobs.submit("me", P)
            await jobs.wait(job, 5)
            ended.append(job.job_id)
            clock.now += 1
    assert [await _kept(jobs, job_id) for job_id in ended] == [False, False, True, True, True]
    await jobs.aclose()

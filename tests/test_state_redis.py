"""Two job managers on one real Redis: two replicas in one process, without HTTP in between.

Each manager has its own ``RedisState`` (its own connections, lease and pub/sub), exactly as two
server processes would; what one runs the other finds, follows, lists and cancels.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from mcp_image_server.config import load_settings, mask_url
from mcp_image_server.errors import IdempotencyConflictError, JobNotFoundError, StateUnavailableError
from mcp_image_server.jobs import JobManager, Update
from mcp_image_server.models import GenerateParams
from mcp_image_server.state import LEASE_TTL, open_state

from .redisd import RedisServer
from .test_jobs import FakeRunner, P

pytestmark = pytest.mark.timeout(60)

Replicas = Callable[..., JobManager]


@pytest.fixture
async def replicas(redis_url: str) -> AsyncIterator[Replicas]:
    """``replicas(runner, name=...)`` starts a job manager on the test's Redis."""
    made: list[JobManager] = []

    async def make(runner: FakeRunner, name: str, url: str = redis_url, role: str = "all") -> JobManager:
        shared = open_state(load_settings({"MCP_STATE_URL": url, "MCP_REPLICA_ID": name}))
        jobs = JobManager(runner, ttl=60, max_running=4, max_queued=10, shared=shared, role=role)
        await jobs.start()
        made.append(jobs)
        return jobs

    yield make  # type: ignore[misc]
    for jobs in made:
        await jobs.aclose()


async def test_a_job_run_by_one_replica_is_followed_from_the_other(replicas: Replicas) -> None:
    runner = FakeRunner()
    one, two = await replicas(runner, "one"), await replicas(FakeRunner(), "two")
    job = await one.submit("me", P)
    async with asyncio.timeout(5):
        await runner.started.wait()
    copy = await two.get("me", job.job_id)
    assert copy is not job and copy.remote and copy.replica == "one"
    seen: list[Update] = []

    async def record(update: Update) -> None:
        seen.append(update)
        if update.message == "submitted job 42":
            runner.gate.set()  # let the runner go on only once the other replica saw it submitted

    async with asyncio.timeout(10):
        assert await two.wait(copy, 10, record)
    assert Update("submitted", "submitted job 42") in seen  # (earlier stages too, when read before it)
    assert seen[-1] == Update("succeeded", "succeeded: 0 image(s)")
    assert copy.outcome is not None and copy.outcome.provider == "fake" and copy.provider_job_id == "42"
    assert [j.job_id for j in await two.list("me")] == [job.job_id] and await two.list("you") == []
    with pytest.raises(JobNotFoundError):
        await two.get("you", job.job_id)  # owners hold across replicas


async def test_a_cancel_on_one_replica_stops_the_job_on_the_other(replicas: Replicas) -> None:
    runner = FakeRunner()
    one, two = await replicas(runner, "one"), await replicas(FakeRunner(), "two")
    job = await one.submit("me", P)
    async with asyncio.timeout(5):
        await runner.started.wait()
    stopped = await two.cancel("me", job.job_id, settle=5)
    assert runner.cancelled.is_set() and job.state == "cancelled"
    assert stopped.state == "cancelled" and stopped.error is not None and stopped.error.code == "generation_cancelled"


async def test_one_idempotency_key_on_two_replicas_at_once_starts_one_job(replicas: Replicas) -> None:
    runner_one, runner_two = FakeRunner(), FakeRunner()
    runner_one.gate.set()
    runner_two.gate.set()
    one, two = await replicas(runner_one, "one"), await replicas(runner_two, "two")
    for attempt in range(5):
        key = f"race-{attempt}"
        a, b = await asyncio.gather(one.submit("me", P, key), two.submit("me", P, key))
        assert a.job_id == b.job_id
    assert len(runner_one.calls) + len(runner_two.calls) == 5  # never twice for one key
    with pytest.raises(IdempotencyConflictError):
        await two.submit("me", GenerateParams(prompt="a dog"), "race-0")
    other = await two.submit("you", P, "race-0")  # keys are per owner
    assert other.job_id not in {a.job_id, b.job_id}


async def test_a_task_created_on_one_replica_is_a_task_on_the_other(replicas: Replicas) -> None:
    runner = FakeRunner()
    one, two = await replicas(runner, "one"), await replicas(FakeRunner(), "two")
    job = await one.submit("me", P)
    await one.mark_task(job, "none")
    assert (await two.get("me", job.job_id)).task_inline == "none"
    runner.gate.set()


async def test_redis_going_away_is_state_unavailable_and_it_recovers(
    private_redis: RedisServer, replicas: Replicas
) -> None:
    runner = FakeRunner()
    runner.gate.set()
    one = await replicas(runner, "one", private_redis.url)
    done = await one.submit("me", P)
    async with asyncio.timeout(5):
        assert await one.wait(done, 5)
    assert one.shared is not None and one.shared.healthy()
    private_redis.kill()
    with pytest.raises(StateUnavailableError) as info:
        await one.submit("me", P)
    assert info.value.code == "state_unavailable" and info.value.details["retry_after"] > 0
    assert not one.shared.healthy() and runner.calls == [P]  # nothing started without the state
    with pytest.raises(StateUnavailableError):
        await one.list("me")
    private_redis.start()  # empty, as a Redis without persistence comes back
    again = await one.submit("me", P)  # the same manager, no restart
    async with asyncio.timeout(5):
        assert await one.wait(again, 5)
    assert one.shared.healthy() and [j.job_id for j in await one.list("me")] == [again.job_id]


async def test_an_api_replica_queues_and_a_worker_runs(replicas: Replicas) -> None:
    api_runner, worker_runner = FakeRunner(), FakeRunner()
    worker_runner.gate.set()
    api = await replicas(api_runner, "api", role="api")
    job = await api.submit("me", P, "k")
    assert job.remote and job.state == "queued" and job.replica is None
    assert (await api.submit("me", P, "k")).job_id == job.job_id  # the key holds while it waits
    await api.mark_task(job, "none")
    await replicas(worker_runner, "worker", role="worker")
    async with asyncio.timeout(10):
        assert await api.wait(job, 10)
    assert job.state == "succeeded" and job.replica == "worker" and not api_runner.calls
    assert worker_runner.calls == [P]
    assert (await api.get("me", job.job_id)).task_inline == "none"  # a task, though the worker ran it


async def test_a_queued_job_is_cancelled_in_the_state_when_nobody_runs_it(replicas: Replicas) -> None:
    api = await replicas(FakeRunner(), "api", role="api")
    job = await api.submit("me", P)
    stopped = await api.cancel("me", job.job_id, settle=5)
    assert stopped.state == "cancelled" and stopped.error is not None
    worker_runner = FakeRunner()
    worker_runner.gate.set()
    await replicas(worker_runner, "worker", role="worker")
    later = await api.submit("me", GenerateParams(prompt="later"))
    async with asyncio.timeout(10):
        assert await api.wait(later, 10)  # the queue is first in, first out: the cancelled entry went first
    assert (await api.get("me", job.job_id)).state == "cancelled"
    assert worker_runner.calls == [GenerateParams(prompt="later")]  # the cancelled job never ran


async def test_an_abandoned_call_on_an_api_replica_cancels_its_queued_job(replicas: Replicas) -> None:
    api = await replicas(FakeRunner(), "api", role="api")
    job = await api.submit("me", P)
    api.cancel_soon(job)  # what a torn-down generate_image call does with a job it never handed back
    async with asyncio.timeout(10):
        assert await api.wait(job, 10)
    assert job.state == "cancelled"


async def test_after_an_outage_longer_than_the_leases_no_living_replica_is_declared_lost(
    private_redis: RedisServer, replicas: Replicas
) -> None:
    runner = FakeRunner()
    one = await replicas(runner, "one", private_redis.url)
    two = await replicas(FakeRunner(), "two", private_redis.url)
    job = await one.submit("me", P)
    async with asyncio.timeout(5):
        await runner.started.wait()
    private_redis.freeze()  # keys kept, but every lease lapses while nobody can renew it
    await asyncio.sleep(LEASE_TTL + 1)  # the outage itself, not a synchronisation
    private_redis.thaw()
    loop = asyncio.get_running_loop()
    watch_until = loop.time() + 8  # the old reaper ended the job on its first round after the outage
    while loop.time() < watch_until:
        copy = await two.get("me", job.job_id)
        assert not copy.done, copy.error
        await asyncio.sleep(0.5)
    runner.gate.set()
    async with asyncio.timeout(10):
        assert await two.wait(copy, 10)
    assert copy.state == "succeeded" and job.state == "succeeded" and len(runner.calls) == 1


async def test_a_replica_declared_lost_stops_its_job_instead_of_overwriting_the_verdict(
    redis_url: str, replicas: Replicas
) -> None:
    runner = FakeRunner()
    one = await replicas(runner, "one")
    job = await one.submit("me", P)
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        async with asyncio.timeout(5):
            while '"submitted job 42"' not in (text := await client.get(f"mcp:job:{job.job_id}") or ""):
                await asyncio.sleep(0.05)
        verdict = json.loads(text)  # what a peer's reaper writes when this replica's lease ran out
        verdict.update(state="failed", message="failed: worker_lost", version=verdict["version"] + 1,
                       error={"code": "worker_lost", "message": "lost", "details": {}})
        await client.set(f"mcp:job:{job.job_id}", json.dumps(verdict))
        runner.gate.set()  # the runner goes on, and its next save meets the verdict
        assert await one.wait(job, 10)
        assert job.state == "failed" and job.error is not None and job.error.code == "worker_lost"
        stored = json.loads(await client.get(f"mcp:job:{job.job_id}") or "{}")
        assert stored["state"] == "failed" and stored["message"] == "failed: worker_lost"
        assert (await one.get("me", job.job_id)).remote  # read from the state from now on
    finally:
        await client.aclose()


async def test_a_followed_job_whose_snapshot_vanishes_ends_instead_of_waiting_forever(
    redis_server: RedisServer, replicas: Replicas
) -> None:
    redis_server.flush()
    runner = FakeRunner()
    one, two = await replicas(runner, "one"), await replicas(FakeRunner(), "two")
    job = await one.submit("me", P)
    async with asyncio.timeout(5):
        await runner.started.wait()
    copy = await two.get("me", job.job_id)
    redis_server.flush()  # a Redis reset under a running job (its runner has nothing new to save)
    async with asyncio.timeout(15):
        assert await two.wait(copy, 15)
    assert copy.state == "failed" and copy.error is not None and copy.error.code == "worker_lost"
    assert "MCP_STATE_URL" in copy.error.message
    runner.gate.set()


def test_api_and_worker_roles_need_a_shared_state_and_urls_are_checked_with_passwords_masked() -> None:
    for role in ("api", "worker"):
        with pytest.raises(Exception) as info:
            load_settings({"MCP_ROLE": role})
        assert "MCP_ROLE" in str(info.value) and "MCP_STATE_URL=redis://" in str(info.value)
    assert load_settings({"MCP_ROLE": "worker", "MCP_STATE_URL": "rediss://:pw@h:6380/2"}).role == "worker"
    assert load_settings({"MCP_STATE_URL": "memory://"}).state_url is None
    for bad in ("redis://:hunter2@:6379/0", "redis://:hunter2@h:70000/0", "redis://:hunter2@h:1/db", "http://h"):
        with pytest.raises(Exception) as info:
            load_settings({"MCP_STATE_URL": bad})
        assert "MCP_STATE_URL" in str(info.value) and "hunter2" not in str(info.value)
    assert mask_url("redis://h:1/0?password=hunter2&db=2") == "redis://h:1/0?password=***&db=2"

"""Two job managers on one real Redis: two replicas in one process, without HTTP in between.

Each manager has its own ``RedisState`` (its own connections, lease and pub/sub), exactly as two
server processes would; what one runs the other finds, follows, lists and cancels.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from mcp_image_server.config import load_settings
from mcp_image_server.errors import IdempotencyConflictError, JobNotFoundError, StateUnavailableError
from mcp_image_server.jobs import JobManager, Update
from mcp_image_server.models import GenerateParams
from mcp_image_server.state import open_state

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
    assert seen[0] == Update("submitted", "submitted job 42")
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

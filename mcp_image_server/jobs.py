"""Generation jobs: every generation runs as a job that outlives the request that started it.

A tool call starts (or, by idempotency key, finds) a job and waits for it a bounded
time; if the job is not done the caller gets its ``job_id`` and polls with
``get_generation``. Jobs belong to an owner (a token's fingerprint, or the stdio
process) and are forgotten ``MCP_JOB_TTL`` seconds after they finish.

Providers report progress as short messages; a message that starts with a stage word
(``queued``, ``submitted``, ``running``, ``downloading``, ``saving``) moves the job to
that stage, anything else is kept as the job's latest message.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Final, Literal

from .errors import (
    GenerationCancelledError,
    IdempotencyConflictError,
    ImageServerError,
    JobNotFoundError,
    QueueFullError,
)
from .models import GenerateOutcome, GenerateParams, ProgressFn

__all__ = ["ACTIVE", "Job", "JobManager", "JobState", "Update"]

logger = logging.getLogger(__name__)

JobState = Literal["queued", "submitted", "running", "downloading", "saving", "succeeded", "failed", "cancelled"]
ACTIVE: Final[frozenset[str]] = frozenset({"queued", "submitted", "running", "downloading", "saving"})
_STAGE_RE: Final = re.compile(r"^(queued|submitted|running|downloading|saving)\b")
_VENDOR_JOB_RE: Final = re.compile(r"^submitted (?:job|task) (\S+)")
_JOB_ID_RE: Final = re.compile(r"^[0-9a-f]{32}$")
_MAX_FINISHED: Final = 10_000

Runner = Callable[[GenerateParams, ProgressFn], Awaitable[GenerateOutcome]]


@dataclass(frozen=True, slots=True)
class Update:
    """One observable change of a job (what a waiter turns into a progress notification)."""

    state: JobState
    message: str


@dataclass(eq=False)
class Job:
    job_id: str
    owner: str
    params: GenerateParams
    created_at: float
    state: JobState = "queued"
    message: str = "queued"
    provider: str | None = None
    provider_job_id: str | None = None
    """The vendor's own job id once submitted (Hunyuan JobId, ModelScope task_id)."""
    queue_position: int | None = None
    started_at: float | None = None
    updated_at: float = 0.0
    finished_at: float | None = None
    outcome: GenerateOutcome | None = None
    error: ImageServerError | None = None
    handed_back: bool = False
    """The caller was given the job_id: abandoning a wait must no longer cancel the job."""
    idempotency_key: str | None = None
    fingerprint: str = ""
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    listeners: list[asyncio.Queue[Update]] = field(default_factory=list, repr=False)

    @property
    def done(self) -> bool:
        return self.state not in ACTIVE

    def summary(self, now: float) -> dict[str, object]:
        """JSON-ready state, with no image bytes."""
        return {
            "job_id": self.job_id,
            "status": self.state,
            "message": self.message,
            "provider": self.provider or self.params.provider,
            "provider_job_id": self.provider_job_id,
            "prompt": self.params.prompt[:200],
            "queue_position": self.queue_position,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
            "elapsed_s": round((self.finished_at or now) - self.created_at, 1),
            "image_ids": [r.image_id for r in self.outcome.records] if self.outcome else [],
            "error": self.error.to_dict() if self.error else None,
        }

    def _set(self, state: JobState, message: str, now: float) -> None:
        self.state, self.message, self.updated_at = state, message, now
        for queue in self.listeners:
            queue.put_nowait(Update(state, message))


def fingerprint(params: GenerateParams) -> str:
    """A stable digest of the arguments, to tell a true repeat from a reused key."""
    body = json.dumps(asdict(params), sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


class JobManager:
    """Starts, tracks, waits on and cancels jobs; bounded in flight and in queue."""

    def __init__(
        self,
        run: Runner,
        *,
        ttl: float,
        max_running: int,
        max_queued: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._run = run
        self._ttl = ttl
        self._max_queued = max_queued
        self._slots = asyncio.Semaphore(max_running)
        self._clock = clock
        self._jobs: dict[str, Job] = {}
        self._keys: dict[tuple[str, str], str] = {}
        self._waiting: list[Job] = []

    # --- lifecycle --------------------------------------------------------------------------

    def submit(self, owner: str, params: GenerateParams, idempotency_key: str | None = None) -> Job:
        """Start a job, or return the caller's existing one for the same key and arguments.

        Raises:
            IdempotencyConflictError: the key was used with other arguments.
            QueueFullError: too many jobs are already waiting.
        """
        self._sweep()
        digest = fingerprint(params)
        if idempotency_key is not None:
            existing_id = self._keys.get((owner, idempotency_key))
            existing = self._jobs.get(existing_id) if existing_id else None
            if existing is not None:
                if existing.fingerprint != digest:
                    raise IdempotencyConflictError(
                        f"idempotency_key {idempotency_key!r} was already used with different arguments "
                        f"(job {existing.job_id}); use a new key or repeat the same arguments",
                        details={"idempotency_key": idempotency_key, "job_id": existing.job_id},
                    )
                return existing
        if len(self._waiting) >= self._max_queued:
            raise QueueFullError(
                f"{len(self._waiting)} generations are already waiting (MCP_MAX_QUEUED_JOBS); try again later",
                details={"queued": len(self._waiting), "retry_after": 5},
            )
        now = self._clock()
        job = Job(
            job_id=secrets.token_hex(16), owner=owner, params=params, created_at=now, updated_at=now,
            idempotency_key=idempotency_key, fingerprint=digest,
        )
        self._jobs[job.job_id] = job
        if idempotency_key is not None:
            self._keys[(owner, idempotency_key)] = job.job_id
        self._waiting.append(job)
        self._renumber()
        job.task = asyncio.create_task(self._execute(job), name=f"job-{job.job_id}")
        job.task.add_done_callback(lambda _task: self._settle(job))
        return job

    def _settle(self, job: Job) -> None:
        """Runs when the job's task ends: drop the task (a finished job is kept for an hour and
        should cost little), and finish a task cancelled before its first step, which never
        ran ``_execute``'s handlers."""
        job.task = None
        if job.done:
            return
        if job in self._waiting:
            self._waiting.remove(job)
            self._renumber()
        job.finished_at = self._clock()
        job.error = GenerationCancelledError(f"generation {job.job_id} was cancelled", details={"job_id": job.job_id})
        job._set("cancelled", "cancelled", job.finished_at)

    async def _execute(self, job: Job) -> None:
        async def progress(message: str) -> None:
            if job.done:
                return
            m = _STAGE_RE.match(message)
            state: JobState = m.group(1) if m else job.state  # type: ignore[assignment]
            vendor = _VENDOR_JOB_RE.match(message)
            if vendor:
                job.provider_job_id = vendor.group(1)
            elif message.startswith("running on "):
                job.provider = message.split()[2]
            job._set(state, message, self._clock())

        try:
            async with self._slots:
                self._waiting.remove(job)
                self._renumber()
                job.started_at = self._clock()
                job.queue_position = None
                job._set("running", "started", job.started_at)
                outcome = await self._run(job.params, progress)
        except asyncio.CancelledError:
            self._settle(job)
            raise
        except ImageServerError as exc:
            job.finished_at = self._clock()
            job.error = exc
            job._set("failed", f"failed: {exc.code}", job.finished_at)
        except Exception as exc:  # noqa: BLE001 - a bug must fail the job, not vanish in a task
            logger.exception("generation job %s crashed", job.job_id)
            job.finished_at = self._clock()
            job.error = ImageServerError("internal error while generating; see the server log")
            job._set("failed", "failed: internal_error", job.finished_at)
            del exc
        else:
            job.finished_at = self._clock()
            job.outcome = outcome
            job.provider = outcome.provider
            job._set("succeeded", f"succeeded: {len(outcome.records)} image(s)", job.finished_at)

    def _renumber(self) -> None:
        """Keep queue positions current; only jobs that really wait for a slot say so."""
        now = self._clock()
        busy = self._slots.locked()
        for position, job in enumerate(self._waiting):
            if job.queue_position != position:
                job.queue_position = position
                job._set("queued", f"queued, {position} ahead" if busy else "starting", now)

    def cancel(self, owner: str, job_id: str) -> Job:
        """Cancel a running job (a finished one is returned unchanged).

        Raises:
            JobNotFoundError: unknown, expired, or another owner's job.
        """
        job = self.get(owner, job_id)
        if not job.done and job.task is not None:
            job.task.cancel()
        return job

    async def aclose(self) -> None:
        tasks = [j.task for j in self._jobs.values() if j.task is not None and not j.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- lookup -----------------------------------------------------------------------------

    def get(self, owner: str, job_id: str) -> Job:
        """Raises: JobNotFoundError (also for another owner's job: no probing by id)."""
        self._sweep()
        job = self._jobs.get(job_id) if _JOB_ID_RE.match(job_id) else None
        if job is None or job.owner != owner:
            raise JobNotFoundError(
                f"no generation job {job_id[:80]!r} for this client (jobs are kept {int(self._ttl)} s after "
                "they finish, MCP_JOB_TTL)",
                details={"job_id": job_id[:80]},
            )
        return job

    def list(self, owner: str, status: str | None = None, limit: int = 20) -> list[Job]:
        self._sweep()
        jobs = [j for j in self._jobs.values() if j.owner == owner and (status is None or j.state == status)]
        jobs.sort(key=lambda j: j.created_at, reverse=True)
        return jobs[:limit]

    def jobs(self) -> Iterator[Job]:
        return iter(self._jobs.values())

    @property
    def in_flight(self) -> int:
        return sum(1 for j in self._jobs.values() if not j.done)

    def _sweep(self) -> None:
        now = self._clock()
        expired = [j for j in self._jobs.values() if j.finished_at is not None and now - j.finished_at >= self._ttl]
        finished = sorted((j for j in self._jobs.values() if j.done), key=lambda j: j.finished_at or 0)
        if len(finished) - len(expired) > _MAX_FINISHED:
            expired.extend(finished[: len(finished) - _MAX_FINISHED])
        for job in expired:
            self._jobs.pop(job.job_id, None)
            if job.idempotency_key is not None:
                self._keys.pop((job.owner, job.idempotency_key), None)

    # --- waiting ----------------------------------------------------------------------------

    async def wait(
        self,
        job: Job,
        timeout: float,
        on_update: Callable[[Update], Awaitable[None]] | None = None,
        heartbeat: float = 5.0,
    ) -> bool:
        """Wait up to ``timeout`` s for ``job`` to finish; report each change and a heartbeat.

        Returns whether the job is done. Cancelling the wait does not cancel the job.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        updates: asyncio.Queue[Update] = asyncio.Queue()
        job.listeners.append(updates)
        try:
            if on_update is not None and job.message != "starting":
                await on_update(Update(job.state, job.message))
            while not job.done:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                try:
                    async with asyncio.timeout(min(remaining, heartbeat)):
                        update = await updates.get()
                except TimeoutError:
                    if on_update is not None and loop.time() < deadline:
                        await on_update(Update(job.state, self._describe(job)))
                    continue
                if on_update is not None:
                    await on_update(update)
            while on_update is not None and not updates.empty():
                await on_update(updates.get_nowait())
            return True
        finally:
            job.listeners.remove(updates)

    def _describe(self, job: Job) -> str:
        """The heartbeat line: the latest message plus how long the job has been at it."""
        now = self._clock()
        since = job.created_at if job.state == "queued" else (job.started_at or job.created_at)
        return f"{job.message} ({int(now - since)} s)"

"""Generation jobs: every generation runs as a job that outlives the request that started it.

A tool call starts (or, by idempotency key, finds) a job and waits for it a bounded
time; if the job is not done the caller gets its ``job_id`` and polls with
``get_generation``. Jobs belong to an owner (a token's fingerprint, or the stdio
process) and are forgotten ``MCP_JOB_TTL`` seconds after they finish.

Providers report progress as short messages; a message that starts with a stage word
(``queued``, ``submitted``, ``running``, ``downloading``, ``saving``) moves the job to
that stage, anything else is kept as the job's latest message.

With a shared state (``MCP_STATE_URL=redis://``) every change of a job this replica runs is
also saved there as a JSON snapshot, idempotency keys are claimed there, and a job another
replica runs is a *remote* ``Job``: a copy read from its snapshot that ``wait`` keeps current
from the snapshots its runner publishes, and that ``cancel`` stops by asking the runner. Each
replica also ends the jobs of replicas whose lease ran out (``worker_lost``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final, Literal, Protocol

from .errors import (
    GenerationCancelledError,
    IdempotencyConflictError,
    ImageServerError,
    JobNotFoundError,
    QueueFullError,
    StateUnavailableError,
    WorkerLostError,
    error_from_dict,
)
from .models import GenerateOutcome, GenerateParams, ImageRecord, ProgressFn
from .observe import span
from .state import ALL_OWNERS, LEASE_TTL, SharedState

__all__ = ["ACTIVE", "Job", "JobManager", "JobState", "Update"]

logger = logging.getLogger(__name__)

JobState = Literal["queued", "submitted", "running", "downloading", "saving", "succeeded", "failed", "cancelled"]
ACTIVE: Final[frozenset[str]] = frozenset({"queued", "submitted", "running", "downloading", "saving"})
_STAGE_RE: Final = re.compile(r"^(queued|submitted|running|downloading|saving)\b")
_VENDOR_JOB_RE: Final = re.compile(r"^submitted (?:job|task) (\S+)")
_JOB_ID_RE: Final = re.compile(r"^[0-9a-f]{32}$")
_MAX_FINISHED: Final = 10_000
_RESYNC_S: Final = 2.0
"""A follower re-reads a remote job's snapshot this often, in case a published one was missed."""
_SAVE_TIMEOUT_S: Final = 15.0
_SETTLE_WAIT_S: Final = 5.0
"""How long a waiter gives an ended job's quota settlement (one state round trip) before answering."""
_LOST_AFTER_S: Final = 6.0
"""A replica whose lease is gone stays gone this long (two renewals) before its jobs are reaped."""
_GONE_AFTER: Final = 3
"""A followed job whose snapshot is missing on this many reads in a row has vanished."""
_MAX_HANDOVERS: Final = 3
"""A job handed to another replica this many times (each one died) fails worker_lost."""
_RECLAIM_IDLE_S: Final = 15.0
"""A queue entry taken but not acknowledged this long belongs to a replica that died taking it."""
_LIST_SCAN: Final = 1000
"""Most snapshots ``list`` reads from the shared state when it filters by status."""

class Runner(Protocol):
    """Runs one generation; ``resume`` holds the vendor job ids a lost replica's job submitted."""

    def __call__(
        self, params: GenerateParams, progress: ProgressFn, resume: tuple[str, ...] = (), owner: str = ""
    ) -> Awaitable[GenerateOutcome]: ...


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
    vendor_jobs: tuple[str, ...] = ()
    """Every vendor job id submitted so far (ModelScope has one per image): what a replica that
    takes over from a lost one polls instead of submitting again."""
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
    task_inline: str | None = None
    """Set when the job was created as an MCP task: the inline mode of its payload."""
    charges: tuple[tuple[str, float], ...] = ()
    """Quota counters the job reserved (quotas.py): given back, less what it used, when it ends."""
    replica: str | None = None
    """The replica running the job (shared state only)."""
    remote: bool = False
    """A copy of a job another replica runs (or that waits in the queue), read from the shared state."""
    requeued: int = 0
    """Times the job went back to the queue because its replica died (before calling a provider, or
    after submitting to a vendor that can be polled)."""
    version: int = 0
    """Counts changes, so a follower never applies an older snapshot over a newer one."""
    saved: int = field(default=0, repr=False)
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    listeners: list[asyncio.Queue[Update]] = field(default_factory=list, repr=False)
    save_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

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
        self.version += 1
        for queue in self.listeners:
            queue.put_nowait(Update(state, message))

    def snapshot(self) -> str:
        """The JSON the shared state keeps (everything but the live task and listeners)."""
        outcome = self.outcome
        return json.dumps({
            "job_id": self.job_id, "owner": self.owner, "params": asdict(self.params),
            "created_at": self.created_at, "state": self.state, "message": self.message,
            "provider": self.provider, "provider_job_id": self.provider_job_id,
            "vendor_jobs": list(self.vendor_jobs), "queue_position": self.queue_position, "started_at": self.started_at,
            "updated_at": self.updated_at, "finished_at": self.finished_at,
            "outcome": None if outcome is None else {
                "records": [r.to_json() for r in outcome.records], "provider": outcome.provider,
                "model": outcome.model, "warnings": list(outcome.warnings),
            },
            "error": self.error.to_dict() if self.error else None,
            "idempotency_key": self.idempotency_key, "fingerprint": self.fingerprint,
            "task_inline": self.task_inline, "replica": self.replica, "version": self.version,
            "requeued": self.requeued, "charges": [list(c) for c in self.charges],
        })

    @classmethod
    def from_snapshot(cls, text: str) -> Job:
        """A remote copy of the job ``text`` describes."""
        d = json.loads(text)
        o = d["outcome"]
        outcome = None if o is None else GenerateOutcome(
            tuple(ImageRecord.from_json(r) for r in o["records"]), o["provider"], o["model"], tuple(o["warnings"])
        )
        return cls(
            job_id=d["job_id"], owner=d["owner"], params=_params(d["params"]),
            created_at=d["created_at"], state=d["state"], message=d["message"], provider=d["provider"],
            provider_job_id=d["provider_job_id"], vendor_jobs=tuple(d.get("vendor_jobs", ())),
            queue_position=d["queue_position"],
            started_at=d["started_at"], updated_at=d["updated_at"], finished_at=d["finished_at"],
            outcome=outcome, error=error_from_dict(d["error"]) if d["error"] else None, handed_back=True,
            idempotency_key=d["idempotency_key"], fingerprint=d["fingerprint"], task_inline=d["task_inline"],
            replica=d["replica"], remote=True, version=d["version"], requeued=d.get("requeued", 0),
            charges=tuple((str(k), float(a)) for k, a in d.get("charges", ())),
        )

    def _apply(self, text: str, *, force: bool = False) -> None:
        """Bring a remote copy up to a newer snapshot (any, with ``force``) and tell its listeners."""
        fresh = Job.from_snapshot(text)
        if fresh.version <= self.version and not force:
            return
        for name in _COPIED:
            setattr(self, name, getattr(fresh, name))
        for queue in self.listeners:
            queue.put_nowait(Update(self.state, self.message))


_COPIED: Final = (
    "state", "message", "provider", "provider_job_id", "vendor_jobs", "queue_position", "started_at", "updated_at",
    "finished_at", "outcome", "error", "replica", "version", "requeued",
)


def _params(d: dict[str, Any]) -> GenerateParams:
    return GenerateParams(**{**d, "images": tuple(d.get("images", ()))})


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
        shared: SharedState | None = None,
        role: str = "all",
        clock: Callable[[], float] = time.time,
        on_end: Callable[[Job], Coroutine[Any, Any, None]] | None = None,
        on_change: Callable[[Job], None] | None = None,
    ) -> None:
        self._run = run
        self._on_end = on_end
        self._on_change = on_change
        self._ending: dict[str, asyncio.Task[None]] = {}
        """Job id -> its on_end call (the quota settlement) while it runs."""
        self._role = role
        self._ttl = ttl
        self._max_queued = max_queued
        self._slots = asyncio.Semaphore(max_running)
        self._shared = shared
        self._clock = clock
        self._jobs: dict[str, Job] = {}
        """The jobs this process runs (and, without a shared state, every job there is)."""
        self._keys: dict[tuple[str, str], str] = {}
        self._finished: dict[str, Job] = {}
        """Ended jobs of ``_jobs`` in the order they ended, so ``_sweep`` looks at the oldest only
        (it runs on every call; scanning and sorting every kept job cost more the longer it ran)."""
        self._waiting: list[Job] = []
        self._saves: set[asyncio.Task[None]] = set()
        self._unsaved: set[str] = set()
        self._unmarked: dict[str, str] = {}
        self._absent: dict[str, float] = {}
        """Replica -> when its lease was first seen gone (monotonic); it is reaped after _LOST_AFTER_S."""
        self._consumer: asyncio.Task[None] | None = None

    @property
    def shared(self) -> SharedState | None:
        return self._shared

    async def start(self) -> None:
        """With a shared state: hold the lease and, unless this is an ``api`` replica, take queued jobs."""
        if self._shared is not None:
            await self._shared.start(self._on_cancel, self._tick)
            if self._role != "api":
                self._consumer = asyncio.create_task(self._consume(), name="job-queue")

    # --- lifecycle --------------------------------------------------------------------------

    async def submit(
        self, owner: str, params: GenerateParams, idempotency_key: str | None = None,
        charges: tuple[tuple[str, float], ...] = (),
    ) -> Job:
        """Start a job, or return the caller's existing one for the same key and arguments. A new
        job carries ``charges`` (the very tuple given: a returned job holding another one is a repeat).

        Raises:
            IdempotencyConflictError: the key was used with other arguments.
            QueueFullError: too many jobs are already waiting.
            StateUnavailableError: the shared state did not answer (nothing was started).
        """
        self._sweep()
        digest = fingerprint(params)
        if idempotency_key is not None and self._shared is None:
            existing_id = self._keys.get((owner, idempotency_key))
            existing = self._jobs.get(existing_id) if existing_id else None
            if existing is not None:
                return _repeat(existing, digest, idempotency_key)
        queue = self._role == "api"  # an api replica never generates: every job goes to the queue
        waiting = await self._shared.queued() if queue and self._shared is not None else len(self._waiting)
        if waiting >= self._max_queued:
            raise QueueFullError(
                f"{waiting} generations are already waiting (MCP_MAX_QUEUED_JOBS); try again later",
                details={"queued": waiting, "retry_after": 5},
            )
        now = self._clock()
        job = Job(
            job_id=secrets.token_hex(16), owner=owner, params=params, created_at=now, updated_at=now,
            idempotency_key=idempotency_key, fingerprint=digest, charges=charges,
        )
        if self._shared is not None:
            if queue:
                job.remote = True  # followed through the state like any job another replica runs
            else:
                job.replica = self._shared.replica_id
                self._jobs[job.job_id] = job  # before any await: the reaper must see it as ours
            try:
                held = await self._shared.create(job.job_id, owner, now, job.snapshot(), idempotency_key, queue=queue)
            except StateUnavailableError:
                self._jobs.pop(job.job_id, None)
                raise
            if held is not None:
                self._jobs.pop(job.job_id, None)
                other = Job.from_snapshot(held)
                return _repeat(self._jobs.get(other.job_id, other), digest, idempotency_key or "")
            job.saved = job.version
        elif idempotency_key is not None:
            self._keys[(owner, idempotency_key)] = job.job_id
        self._changed(job)
        if not job.remote:  # else it waits in the shared queue for a worker
            self._launch(job)
        return job

    def _launch(self, job: Job) -> None:
        """Run ``job`` here: wait for a slot, then the runner."""
        self._jobs[job.job_id] = job
        self._waiting.append(job)
        self._renumber()
        job.task = asyncio.create_task(self._execute(job), name=f"job-{job.job_id}")
        job.task.add_done_callback(lambda _task: self._settle(job))

    async def _consume(self) -> None:
        """Take queued jobs while this replica has a free slot (``all`` and ``worker`` replicas)."""
        assert self._shared is not None
        backoff = 0.5
        while True:
            try:
                async with self._slots:  # only take work there is room for
                    pass
                entry = await self._shared.take(block=1.0)
                backoff = 0.5
            except StateUnavailableError:
                await asyncio.sleep(backoff)  # the state is down: back off, the lease loop reports it
                backoff = min(backoff * 2, 5.0)
                continue
            if entry is not None:
                await self._claim(*entry)

    async def _claim(self, entry_id: str, job_id: str) -> None:
        """Make a queued job ours (compare-and-set on its snapshot, so one replica runs it) and start it."""
        assert self._shared is not None
        try:
            text = await self._shared.load(job_id)
            queued = Job.from_snapshot(text) if text else None
            if queued is not None and queued.state == "queued" and queued.replica is None:
                job = Job.from_snapshot(text or "")
                job.remote, job.replica, job.version = False, self._shared.replica_id, job.version + 1
                self._jobs[job_id] = job  # before the await: the reaper must see it as ours
                try:
                    claimed = await self._shared.replace(job_id, text or "", job.snapshot(), self._ttl, then="run")
                finally:
                    if self._jobs.get(job_id) is job and job.task is None:
                        del self._jobs[job_id]
                if claimed:
                    job.saved = job.version
                    self._launch(job)
            await self._shared.ack(entry_id)
        except StateUnavailableError:
            pass  # unacknowledged: another replica reclaims the entry once it has idled long enough

    async def mark_task(self, job: Job, inline: str) -> None:
        """Record that ``job`` was created as an MCP task (so every replica answers ``tasks/*`` for
        it). Best effort: the job exists already, so a state outage only delays the mark (``_tick``)."""
        job.task_inline = inline
        if self._shared is not None:
            try:
                await self._shared.mark_task(job.job_id, inline)
            except StateUnavailableError:
                self._unmarked[job.job_id] = inline

    def _changed(self, job: Job) -> None:
        """Report a new state this replica decided (once per transition, on one replica)."""
        if self._on_change is not None:
            self._on_change(job)

    def _set(self, job: Job, state: JobState, message: str, now: float) -> None:
        changed = state != job.state
        job._set(state, message, now)
        if changed:
            self._changed(job)
            if state not in ACTIVE and self._jobs.get(job.job_id) is job:
                self._finished[job.job_id] = job
        if self._shared is not None and not job.remote:
            task = asyncio.get_running_loop().create_task(self._save(job))
            self._saves.add(task)
            task.add_done_callback(self._saves.discard)

    async def _save(self, job: Job) -> None:
        """Write the job's current state (one writer per job, so the newest state lands last)."""
        assert self._shared is not None
        async with job.save_lock:
            if job.saved >= job.version or job.remote:
                return
            version = job.version
            try:
                async with asyncio.timeout(_SAVE_TIMEOUT_S):
                    refused = await self._shared.save(
                        job.job_id, job.snapshot(), owner=job.owner, key=job.idempotency_key,
                        done=job.done, ttl=self._ttl,
                    )
            except (StateUnavailableError, TimeoutError):
                self._unsaved.add(job.job_id)  # written again once the state answers (``_tick``)
                return
            job.saved = version
            if refused is not None:
                self._disown(job, refused)

    def _disown(self, job: Job, stored: str) -> None:
        """The state says another replica owns ``job`` or it already ended (this replica was cut
        off long enough to be declared lost): stop running it and show what the state says."""
        logger.warning("generation %s was ended or taken over elsewhere while this replica was cut off; "
                       "stopping it here", job.job_id)
        job.remote = True
        self._jobs.pop(job.job_id, None)
        if job in self._waiting:
            self._waiting.remove(job)
            self._renumber()
        if job.task is not None:
            job.task.cancel()
        job._apply(stored, force=True)

    def _settle(self, job: Job) -> None:
        """Runs when the job's task ends: drop the task (a finished job is kept for an hour and
        should cost little), and finish a task cancelled before its first step, which never
        ran ``_execute``'s handlers."""
        job.task = None
        if job.done or job.remote:
            return
        if job in self._waiting:
            self._waiting.remove(job)
            self._renumber()
        job.finished_at = self._clock()
        job.error = GenerationCancelledError(f"generation {job.job_id} was cancelled", details={"job_id": job.job_id})
        self._set(job, "cancelled", "cancelled", job.finished_at)
        self._ended(job)

    async def _execute(self, job: Job) -> None:
        async def progress(message: str) -> None:
            if job.done:
                return
            m = _STAGE_RE.match(message)
            state: JobState = m.group(1) if m else job.state  # type: ignore[assignment]
            vendor = _VENDOR_JOB_RE.match(message)
            if vendor:
                job.provider_job_id = vendor.group(1)
                job.vendor_jobs += (job.provider_job_id,)
            elif message.startswith("running on "):
                job.provider = message.split()[2]
            self._set(job, state, message, self._clock())

        try:
            with span("image.job", job_id=job.job_id, provider=job.params.provider, n=job.params.n):
                async with self._slots:
                    self._waiting.remove(job)
                    self._renumber()
                    job.started_at = self._clock()
                    job.queue_position = None
                    self._set(job, "running", "started", job.started_at)
                    resume = job.vendor_jobs  # set only on a job taken over from a lost replica
                    params = replace(job.params, provider=job.provider) if resume else job.params
                    outcome = await self._run(params, progress, resume, job.owner)
        except asyncio.CancelledError:
            self._settle(job)
            raise
        except ImageServerError as exc:
            if not await self._still_ours(job):
                return
            job.finished_at = self._clock()
            job.error = exc
            self._set(job, "failed", f"failed: {exc.code}", job.finished_at)
        except Exception as exc:  # noqa: BLE001 - a bug must fail the job, not vanish in a task
            logger.exception("generation job %s crashed", job.job_id)
            if not await self._still_ours(job):
                return
            job.finished_at = self._clock()
            job.error = ImageServerError("internal error while generating; see the server log")
            self._set(job, "failed", "failed: internal_error", job.finished_at)
            del exc
        else:
            if not await self._still_ours(job):
                return
            job.finished_at = self._clock()
            job.outcome = outcome
            job.provider = outcome.provider
            self._set(job, "succeeded", f"succeeded: {len(outcome.records)} image(s)", job.finished_at)
        if self._shared is not None:
            await self._save(job)  # other replicas see the end before this one reports it
        self._ended(job)

    def _ended(self, job: Job) -> None:
        """This replica decided how ``job`` ended (exactly one does): settle its quota, in the background."""
        if self._on_end is None:
            return
        task = asyncio.get_running_loop().create_task(self._on_end(job))
        self._ending[job.job_id] = task
        task.add_done_callback(lambda _task: self._ending.pop(job.job_id, None))

    async def _settled(self, job: Job, timeout: float = _SETTLE_WAIT_S) -> None:
        """Let the end of ``job`` here (its quota settlement) land before it is reported: the
        caller's next call then sees its counters with this job's refund in them.

        The job's own task may still be saving its end to the shared state, with the settlement
        not yet begun: wait for that task first."""
        task = job.task
        if task is not None and task is not asyncio.current_task():
            await asyncio.wait({task}, timeout=timeout)
        ending = self._ending.get(job.job_id)
        if ending is not None:
            await asyncio.wait({ending}, timeout=timeout)

    async def _still_ours(self, job: Job) -> bool:
        """Before a job ends here, land its pending saves: one refused means this replica was
        declared lost meanwhile, and nobody should see an end the shared state will not keep."""
        if self._shared is not None:
            await self._save(job)
        return not job.remote

    def _renumber(self) -> None:
        """Keep queue positions current; only jobs that really wait for a slot say so."""
        now = self._clock()
        busy = self._slots.locked()
        for position, job in enumerate(self._waiting):
            if job.queue_position != position:
                job.queue_position = position
                self._set(job, "queued", f"queued, {position} ahead" if busy else "starting", now)

    async def cancel(self, owner: str | None, job_id: str, settle: float = 0.0) -> Job:
        """Cancel a running job, waiting up to ``settle`` s for it to stop (a finished one is
        returned unchanged). A job another replica runs is stopped there.

        Raises:
            JobNotFoundError: unknown, expired, or another owner's job.
            StateUnavailableError: the shared state did not answer.
        """
        job = await self.get(owner, job_id)
        if job.done:
            return job
        if job.task is not None:
            task = job.task
            task.cancel()
            if settle > 0:
                await asyncio.wait({task}, timeout=settle)
                await self._settled(job)
        elif self._shared is not None:
            if not await self._cancel_queued(job):
                await self._shared.cancel(job.job_id)
            if settle > 0:
                await self.wait(job, settle)
        return job

    def cancel_soon(self, job: Job) -> None:
        """Cancel a remote job from a context that cannot wait (a call being torn down)."""
        task = asyncio.get_running_loop().create_task(self._cancel_quietly(job))
        self._saves.add(task)
        task.add_done_callback(self._saves.discard)

    async def _cancel_quietly(self, job: Job) -> None:
        try:
            await self.cancel(job.owner, job.job_id)
        except (StateUnavailableError, JobNotFoundError):
            logger.warning("could not cancel abandoned generation %s", job.job_id)

    async def _cancel_queued(self, job: Job) -> bool:
        """A job nobody runs yet is cancelled in the state itself (compare-and-set: unless claimed)."""
        assert self._shared is not None
        text = await self._shared.load(job.job_id)
        current = Job.from_snapshot(text) if text else None
        if text is None or current is None or current.state != "queued" or current.replica is not None:
            return False
        current.finished_at = self._clock()
        current.error = GenerationCancelledError(
            f"generation {job.job_id} was cancelled", details={"job_id": job.job_id}
        )
        current._set("cancelled", "cancelled", current.finished_at)
        if not await self._shared.replace(job.job_id, text, current.snapshot(), self._ttl):
            return False
        job._apply(current.snapshot())
        self._changed(current)
        self._ended(current)
        return True

    def _on_cancel(self, job_id: str) -> None:
        """A replica asked for ``job_id`` to stop: stop it if it runs here."""
        job = self._jobs.get(job_id)
        if job is not None and job.task is not None:
            job.task.cancel()

    async def _tick(self) -> None:
        """Every few seconds: honour missed cancels, re-save what failed, reap lost jobs."""
        assert self._shared is not None
        running = [j.job_id for j in self._jobs.values() if j.task is not None]
        for job_id in await self._shared.cancels(running):
            self._on_cancel(job_id)
        for job_id in list(self._unsaved):
            self._unsaved.discard(job_id)
            if (job := self._jobs.get(job_id)) is not None:
                await self._save(job)
        for job_id, inline in list(self._unmarked.items()):
            await self._shared.mark_task(job_id, inline)
            del self._unmarked[job_id]
        await self._reap_lost()
        if self._role != "api":
            for entry in await self._shared.reclaim(_RECLAIM_IDLE_S):
                await self._claim(*entry)

    async def _reap_lost(self) -> None:
        """End the jobs of replicas whose lease has been gone for _LOST_AFTER_S. Not right after an
        outage of the state: every lease lapsed during it, and the living renew theirs first."""
        assert self._shared is not None
        recorded = await self._shared.running()
        me = self._shared.replica_id
        alive = await self._shared.alive(r for r in recorded.values() if r != me)
        now = time.monotonic()
        if self._shared.steady() < LEASE_TTL:
            self._absent.clear()
            return
        gone = {r for r in recorded.values() if r != me and r not in alive}
        self._absent = {r: self._absent.get(r, now) for r in gone}
        for job_id, replica in recorded.items():
            if job_id in self._jobs:
                continue
            if replica == me or now - self._absent.get(replica, now) >= _LOST_AFTER_S:
                await self._reap(job_id, replica)

    async def _reap(self, job_id: str, replica: str, *, stopping: bool = False) -> None:
        """Hand over or end a job whose replica is gone (or, ``stopping``, is this one shutting
        down): queued again if no provider was called, polled elsewhere if a vendor keeps it,
        else ``worker_lost``; unless it finished meanwhile."""
        assert self._shared is not None
        text = await self._shared.load(job_id)
        job = Job.from_snapshot(text) if text else None
        if job is None or job.done or job.replica != replica:
            await self._shared.forget_running(job_id)
            return
        if job.provider is None and job.provider_job_id is None and (job.requeued == 0 or stopping):
            # Lost before any provider was called: nothing was billed, so another replica may run it.
            job.requeued, job.replica, job.queue_position, job.started_at = 1, None, None, None
            job._set("queued", f"queued again: replica {replica} stopped before calling a provider", self._clock())
            assert text is not None
            if await self._shared.replace(job_id, text, job.snapshot(), self._ttl, then="queue"):
                logger.warning("generation %s went back to the queue: replica %s is gone", job_id, replica)
                self._changed(job)
            return
        if job.vendor_jobs and job.provider is not None and job.requeued < _MAX_HANDOVERS:
            # Submitted to a vendor that keeps the job (Hunyuan, ModelScope): another replica polls
            # it to the end. Submitting again would bill twice.
            job.requeued, job.replica, job.queue_position = job.requeued + 1, None, None
            job._set("queued", f"queued to resume {job.provider} job {job.vendor_jobs[-1]}: replica {replica} "
                     "stopped", self._clock())
            assert text is not None
            if await self._shared.replace(job_id, text, job.snapshot(), self._ttl, then="queue"):
                logger.warning("generation %s goes to another replica to poll its %s job: replica %s is gone",
                               job_id, job.provider, replica)
                self._changed(job)
            return
        now = self._clock()
        job.finished_at = now
        job.error = WorkerLostError(
            f"the replica running generation {job_id} ({replica}) stopped before the job finished; "
            "start it again",
            details={"job_id": job_id, "replica": replica},
        )
        job._set("failed", "failed: worker_lost", now)
        assert text is not None
        if await self._shared.replace(job_id, text, job.snapshot(), self._ttl):
            logger.warning("generation %s was lost with replica %s (worker_lost)", job_id, replica)
            self._changed(job)
            self._ended(job)

    async def drain(self, grace: float) -> None:
        """A replica stopping with a shared state (a rolling restart): take no more jobs, give
        running ones ``grace`` s, then hand every unfinished one over as if this replica had died,
        at once rather than after the lease. Memory state: nobody to hand to; ``aclose`` cancels."""
        if self._shared is None:
            return
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
            self._consumer = None
        waiting = [j for j in self._waiting if j.task is not None]
        await self._let_go(waiting)  # never started: back to the queue now
        running = [j.task for j in self._jobs.values() if j.task is not None]
        if running:
            logger.info("stopping: %d running generation(s) get %.1f s to finish", len(running), grace)
            await asyncio.wait(running, timeout=grace)
        await self._let_go([j for j in self._jobs.values() if j.task is not None])

    async def _let_go(self, jobs: list[Job]) -> None:
        """Stop running ``jobs`` here, quietly, and hand each over through the reaper's rules."""
        assert self._shared is not None
        if not jobs:
            return
        for job in jobs:
            await self._save(job)  # what the next replica needs: the vendor ids so far
            job.remote = True  # its task ends without a "cancelled" verdict, and saves nothing more
            self._jobs.pop(job.job_id, None)
            if job in self._waiting:
                self._waiting.remove(job)
            if job.task is not None:
                job.task.cancel()
        self._renumber()
        await asyncio.gather(*(j.task for j in jobs if j.task is not None), return_exceptions=True)
        for job in jobs:
            try:
                await self._reap(job.job_id, self._shared.replica_id, stopping=True)
            except StateUnavailableError:
                logger.warning("could not hand generation %s over; the reaper will once the lease ends",
                               job.job_id)

    async def aclose(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()
            await asyncio.gather(self._consumer, return_exceptions=True)
        tasks = [j.task for j in self._jobs.values() if j.task is not None and not j.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*self._ending.values(), return_exceptions=True)
        if self._shared is not None:
            await asyncio.gather(*self._saves, return_exceptions=True)
            await self._shared.aclose()

    # --- lookup -----------------------------------------------------------------------------

    async def get(self, owner: str | None, job_id: str) -> Job:
        """A job of ``owner`` (``None``: anyone's, for an admin).

        Raises: JobNotFoundError (also for another owner's job: no probing by id), StateUnavailableError."""
        self._sweep()
        valid = bool(_JOB_ID_RE.match(job_id))
        job = self._jobs.get(job_id) if valid else None
        if job is None and valid and self._shared is not None:
            text = await self._shared.load(job_id)
            job = Job.from_snapshot(text) if text else None
        if job is not None and job.task_inline is None and self._shared is not None:
            # Marked as a task on the replica that took the call, which need not be this one.
            job.task_inline = (await self._shared.task_marks([job_id])).get(job_id)
        if job is None or owner is not None and job.owner != owner:
            raise JobNotFoundError(
                f"no generation job {job_id[:80]!r} for this client (jobs are kept {int(self._ttl)} s after "
                "they finish, MCP_JOB_TTL)",
                details={"job_id": job_id[:80]},
            )
        return job

    async def list(self, owner: str | None, status: str | None = None, limit: int = 20) -> list[Job]:
        """The owner's jobs (``None``: everyone's), newest first. Raises: StateUnavailableError."""
        self._sweep()
        if self._shared is None:
            jobs = [j for j in self._jobs.values() if owner is None or j.owner == owner]
            jobs.sort(key=lambda j: j.created_at, reverse=True)
        else:
            snapshots = await self._shared.recent(owner or ALL_OWNERS, limit if status is None else _LIST_SCAN)
            jobs = [self._jobs.get(j.job_id, j) for j in map(Job.from_snapshot, snapshots)]
            marks = await self._shared.task_marks(j.job_id for j in jobs if j.task_inline is None)
            for job in jobs:
                job.task_inline = marks.get(job.job_id, job.task_inline)
        return [j for j in jobs if status is None or j.state == status][:limit]

    def jobs(self) -> Iterator[Job]:
        return iter(self._jobs.values())

    @property
    def in_flight(self) -> int:
        return sum(1 for j in self._jobs.values() if not j.done)

    @property
    def waiting(self) -> int:
        """Jobs this replica took that wait for a free slot (MCP_MAX_JOBS)."""
        return len(self._waiting)

    def _sweep(self) -> None:
        """Forget ended jobs past MCP_JOB_TTL (unless a save is pending) and the oldest beyond
        ``_MAX_FINISHED``: from the oldest end on, stopping at the first one to keep."""
        now = self._clock()
        finished = self._finished
        drop: list[tuple[str, Job | None]] = []
        for job_id, job in finished.items():
            if self._jobs.get(job_id) is not job:
                drop.append((job_id, None))  # no longer ours (disowned, handed over): just unlist it
                continue
            over = len(finished) - len(drop) > _MAX_FINISHED
            if over or (job.finished_at is not None and now - job.finished_at >= self._ttl):
                if over or job_id not in self._unsaved:
                    drop.append((job_id, job))
                continue
            break
        for job_id, gone in drop:
            del finished[job_id]
            if gone is None:
                continue
            self._jobs.pop(job_id, None)
            if gone.idempotency_key is not None:
                self._keys.pop((gone.owner, gone.idempotency_key), None)

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
        follower = asyncio.create_task(self._follow(job)) if job.remote and not job.done else None
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
            await self._settled(job)
            return True
        finally:
            job.listeners.remove(updates)
            if follower is not None:
                follower.cancel()

    async def _follow(self, job: Job) -> None:
        """Keep a remote job current from the snapshots its runner publishes, re-reading it every
        few seconds in case one was missed (a reconnect, or a save just before subscribing)."""
        assert self._shared is not None
        missing = 0
        async with self._shared.follow(job.job_id) as published:
            while not job.done:
                try:
                    text = await self._shared.load(job.job_id)
                except StateUnavailableError:
                    text = ""
                missing = missing + 1 if text is None else 0
                if text:
                    job._apply(text)
                elif missing >= _GONE_AFTER:
                    self._vanished(job)
                    return
                try:
                    async with asyncio.timeout(_RESYNC_S):
                        while not job.done:
                            job._apply(await published.get())
                except TimeoutError:
                    continue

    def _vanished(self, job: Job) -> None:
        """A followed job's snapshot is gone (the state was flushed or lost its data): end the
        copy rather than wait forever for a job nobody can report on."""
        now = self._clock()
        job.finished_at = now
        job.error = WorkerLostError(
            f"generation {job.job_id} is no longer in the shared state (MCP_STATE_URL was reset or "
            "lost its data); start it again",
            details={"job_id": job.job_id},
        )
        job._set("failed", "failed: worker_lost", now)

    def _describe(self, job: Job) -> str:
        """The heartbeat line: the latest message plus how long the job has been at it."""
        now = self._clock()
        since = job.created_at if job.state == "queued" else (job.started_at or job.created_at)
        return f"{job.message} ({int(now - since)} s)"


def _repeat(existing: Job, digest: str, key: str) -> Job:
    """The job a repeated idempotency key names; Raises: IdempotencyConflictError on other arguments."""
    if existing.fingerprint != digest:
        raise IdempotencyConflictError(
            f"idempotency_key {key!r} was already used with different arguments "
            f"(job {existing.job_id}); use a new key or repeat the same arguments",
            details={"idempotency_key": key, "job_id": existing.job_id},
        )
    return existing

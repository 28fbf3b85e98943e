"""Shared job state: what lets several replicas see, wait on and cancel each other's jobs.

With ``MCP_STATE_URL=memory://`` (the default) there is no shared state: the process is the
whole server and ``JobManager``'s own dictionaries are the state, as they always were. With
``redis://`` the job manager also writes every job's JSON snapshot here, claims idempotency
keys here, and follows jobs other replicas run through it. The backend stores text and never
interprets a snapshot beyond what it is given, so it does not depend on the job model.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Final, Protocol

from ..config import Settings
from ..quotas import Charge

__all__ = ["ACTIVE_TTL", "ALL_OWNERS", "LEASE_TTL", "SharedState", "open_state"]

ACTIVE_TTL: Final = 7 * 86400
"""Seconds a running job's snapshot is kept: a safety net only (the reaper ends lost jobs)."""
ALL_OWNERS: Final = "*"
"""The owner name ``recent`` takes for every owner's jobs (an admin's ``list_generations(all=true)``)."""
LEASE_TTL: Final = 10
"""Seconds a replica's lease outlives its last renewal; its running jobs end as worker_lost after it."""


class SharedState(Protocol):
    """Every call raises StateUnavailableError when the backend does not answer."""

    replica_id: str

    async def start(self, on_cancel: Callable[[str], None], tick: Callable[[], Awaitable[None]]) -> None:
        """Hold this replica's lease, call ``tick`` every few seconds (apart from the lease, so a slow
        tick never lets it lapse), and ``on_cancel(job_id)``
        for each cancel any replica broadcasts. Starts even when the backend is down (it recovers)."""

    async def aclose(self) -> None: ...

    def healthy(self) -> bool:
        """Whether the last call reached the backend (``/health``, new-session admission)."""

    def steady(self) -> float:
        """Seconds since calls last started succeeding, 0 while the backend is down: right after
        an outage every lease may have lapsed, so nobody is declared lost until leases are renewed."""

    async def create(
        self, job_id: str, owner: str, created_at: float, snapshot: str, key: str | None, *, queue: bool = False
    ) -> str | None:
        """Record a new job, running here or (``queue``) waiting in the queue for any replica,
        claiming ``key`` (an owner's idempotency key) with it atomically. Returns the snapshot of
        the job that already holds ``key``, recording nothing, or ``None`` when this job was recorded."""

    async def save(
        self, job_id: str, snapshot: str, *, owner: str, key: str | None, done: bool, ttl: float
    ) -> str | None:
        """Replace the job's snapshot and tell its followers; a done job (and its key) lives ``ttl`` s.
        Refused when the stored snapshot is finished or names another replica (this one was
        declared lost): returns the stored snapshot then, ``None`` when written."""

    async def replace(self, job_id: str, old: str, new: str, ttl: float, then: str = "done") -> bool:
        """Write ``new`` only if the snapshot is still ``old`` (a compare-and-set), and then: ``done``
        (finished, kept ``ttl`` s), ``run`` (this replica runs it) or ``queue`` (back in the queue)."""

    async def load(self, job_id: str) -> str | None: ...

    async def recent(self, owner: str, limit: int) -> list[str]:
        """The owner's newest job snapshots, newest first."""

    async def running(self) -> dict[str, str]:
        """Job id -> replica, for every job recorded as not finished."""

    async def forget_running(self, job_id: str) -> None:
        """Drop a stale entry of ``running`` (its job is gone or already finished)."""

    async def alive(self, replicas: Iterable[str]) -> set[str]:
        """Which of ``replicas`` hold their lease."""

    def follow(self, job_id: str) -> AbstractAsyncContextManager[asyncio.Queue[str]]:
        """Snapshots of ``job_id`` as they are saved, from any replica (best effort: poll ``load`` too)."""

    async def mark_task(self, job_id: str, inline: str) -> None:
        """Record that ``job_id`` was created as an MCP task (kept apart from the runner's snapshots)."""

    async def task_marks(self, job_ids: Iterable[str]) -> dict[str, str]:
        """Job id -> inline mode, for those of ``job_ids`` created as tasks."""

    async def take(self, block: float) -> tuple[str, str] | None:
        """The next queued (entry id, job id), waiting up to ``block`` s; ``ack`` it once claimed."""

    async def reclaim(self, idle: float) -> list[tuple[str, str]]:
        """Queue entries a replica took but never acknowledged for ``idle`` s (it died)."""

    async def ack(self, entry_id: str) -> None: ...

    async def queued(self) -> int:
        """How many jobs wait in the queue."""

    async def cancel(self, job_id: str) -> None:
        """Ask whichever replica runs ``job_id`` to stop it (it may be missed; see ``cancels``)."""

    async def cancels(self, job_ids: Iterable[str]) -> set[str]:
        """Which of ``job_ids`` were asked to stop."""

    # --- quota counters: the ``Ledger`` of quotas.py, shared so limits hold across replicas ---

    async def reserve(self, charges: Sequence[Charge]) -> tuple[int, float] | None:
        """Add every charge, or none: ``(index, used)`` of the first that would pass its limit."""

    async def release(self, amounts: Sequence[tuple[str, float]]) -> None:
        """Give amounts back; a counter never goes below 0."""

    # --- handshake-era HTTP sessions: which replica holds which (the HTTP transport's affinity) ---

    async def register_sessions(self, session_ids: Iterable[str], url: str | None, ttl: float) -> None:
        """Record (or renew) that this replica, reachable by its peers at ``url`` (``None``: they
        cannot reach it), holds ``session_ids``; each entry lapses ``ttl`` s after this call."""

    async def session_holder(self, session_id: str) -> tuple[str, str | None] | None:
        """``(replica, url)`` as its holder registered ``session_id``; ``None`` when nobody did (or it lapsed)."""

    async def forget_sessions(self, session_ids: Iterable[str]) -> None:
        """Drop the entries of ``session_ids`` (they ended)."""


def open_state(settings: Settings) -> SharedState | None:
    """The backend ``MCP_STATE_URL`` names, or ``None`` for ``memory://`` (this process alone)."""
    if settings.state_url is None:
        return None
    from .redis import RedisState  # redis is imported only when configured

    return RedisState(settings.state_url.get(), settings.replica_id or secrets.token_hex(6))

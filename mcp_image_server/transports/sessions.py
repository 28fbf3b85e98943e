"""Handshake-era sessions: random ids, owner binding, idle expiry, a cap, and the SDK loop behind each.

Each session is served by the SDK's own loop-mode driver (``loop.py``). To keep an idle session
small (the issue's budget is 10 KB), its loop runs only while the session is in use: after
``linger`` seconds with no request in flight and no GET stream open, or at once when more than
``max_warm`` idle sessions still have a loop, the loop is wound down and the session keeps just
what the SDK's ``Connection`` had learnt (protocol version, the client's ``initialize`` params,
``initialized``, ``state``). The next request starts a fresh loop on a ``Connection`` restored
from that. One difference an SDK user could notice: callbacks pushed on
``connection.exit_stack`` run at each wind-down rather than only when the session ends.

With a ``Directory`` (a shared state, see ``affinity.py``), every session is also announced
there when it opens, re-announced by the sweeper before its entry would lapse, and withdrawn
when it ends, so other replicas can find the replica that holds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio
from mcp.shared.message import SessionMessage
from mcp_types import JSONRPCNotification, RequestId

from .loop import Runtime, Saved, StandaloneChannel, start_loop
from .wire import Mailbox

if TYPE_CHECKING:
    from mcp.server.lowlevel.server import Server

__all__ = [
    "DEFAULT_LINGER",
    "SESSION_ID_RE",
    "Directory",
    "Session",
    "SessionGone",
    "SessionLimits",
    "SessionManager",
]

logger = logging.getLogger(__name__)

DEFAULT_LINGER: Final = 10.0
"""Seconds a session's SDK loop stays up after its last request before it is wound down."""

DEFAULT_MAX_WARM: Final = 64
"""Idle sessions that keep their loop (most recently used first); past this, an idle one winds down at once."""

_END_TIMEOUT: Final = 5.0
"""Bound on waiting for a session's loop to finish after it was told to stop."""

SESSION_ID_RE: Final = re.compile(r"[0-9a-f]{32}\Z")
"""The form of every id ``create`` hands out; anything else was never a session of any replica."""

DIRECTORY_SLACK: Final = 60.0
"""Seconds a directory entry outlives the idle timeout, so the sweeper's re-announcements never let it lapse."""


class Directory(Protocol):
    """Where other replicas look up which replica holds a session (``affinity.SessionDirectory``)."""

    async def announce(self, session_ids: Sequence[str], ttl: float) -> None:
        """Record that this replica holds ``session_ids``, for ``ttl`` seconds.

        Raises:
            StateUnavailableError: the directory did not answer.
        """

    async def refresh(self, session_ids: Sequence[str], ttl: float) -> bool:
        """``announce`` again, best effort and bounded; whether it was recorded."""

    async def withdraw(self, session_ids: Sequence[str]) -> None:
        """Forget ``session_ids``, best effort and bounded (an entry left behind lapses on its own)."""


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """The reloadable limits, read afresh at each admission and sweep."""

    idle_timeout: float
    max_sessions: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.idle_timeout) and self.idle_timeout > 0):
            raise ValueError(f"idle_timeout must be > 0, got {self.idle_timeout}")
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {self.max_sessions}")


class SessionGone(Exception):
    """The session ended (DELETE, expiry, shutdown) while a request was using it."""


class Session:
    """One handshake-era session; its SDK loop runs only while it is in use."""

    __slots__ = (
        "__weakref__",
        "_channel",
        "_manager",
        "_runtime",
        "_saved",
        "announced",
        "busy",
        "ended",
        "id",
        "last_active",
        "owner",
    )

    def __init__(self, manager: SessionManager, session_id: str, owner: bytes) -> None:
        self._manager = manager
        self.id = session_id
        self.owner = owner
        self.last_active = manager.clock()
        self.busy = 0
        """Requests being served plus open GET streams; a busy session neither idles nor expires."""
        self.ended = False
        self.announced: float | None = None
        """When the directory last recorded this session (``None``: there is no directory)."""
        self._runtime: Runtime | None = None
        self._saved: Saved | None = None
        self._channel = StandaloneChannel()

    @property
    def running(self) -> bool:
        """Whether the SDK loop is up (tests and the benchmark look at this)."""
        return self._runtime is not None and not self._runtime.stopping

    async def acquire(self) -> None:
        """Mark a request in flight and make sure the loop runs.

        Raises:
            SessionGone: the session has ended.
        """
        if self.ended:
            raise SessionGone
        self.busy += 1
        self._manager._warm.pop(self.id, None)  # pyright: ignore[reportPrivateUsage]
        try:
            while True:
                if self.ended:
                    raise SessionGone
                rt = self._runtime
                if rt is None:
                    manager = self._manager
                    rt = start_loop(manager.server, manager.state, self.id, self._saved, self._channel, self._finish)
                    rt.on_quiet = self._quiet
                    self._runtime = rt
                    return
                if not rt.stopping:
                    return
                assert rt.task is not None
                await asyncio.shield(rt.task)  # a wind-down in progress: let it finish, then restart
                self._finish(rt)
        except BaseException:
            self.busy -= 1
            raise

    def release(self) -> None:
        self.busy -= 1
        self.last_active = self._manager.clock()
        self._quiet()

    def _quiet(self) -> None:
        if not self.busy and self.running and not self.ended:
            self._manager._idle(self)  # pyright: ignore[reportPrivateUsage]

    def deliver(self, message: SessionMessage) -> None:
        """Hand one client message to the SDK loop (call between ``acquire`` and ``release``).

        Raises:
            SessionGone: the loop is gone.
        """
        rt = self._runtime
        if rt is None or self.ended:
            raise SessionGone
        try:
            rt.inbox.put(message)
        except anyio.ClosedResourceError:
            raise SessionGone from None
        if isinstance(message.message, JSONRPCNotification):
            rt.pending_notifications += 1  # the loop spawns a handler for it; see ``hibernate``

    def open_request(self, request_id: RequestId, *, sse: bool) -> Mailbox | None:
        """A mailbox for the reply to ``request_id``; ``None`` if that id is already in flight."""
        rt = self._runtime
        if rt is None or self.ended:
            raise SessionGone
        if request_id in rt.mailboxes:
            return None
        box = rt.mailboxes[request_id] = Mailbox(sse=sse)
        return box

    def close_request(self, request_id: RequestId, box: Mailbox) -> None:
        box.close()
        rt = self._runtime
        if rt is not None and rt.mailboxes.get(request_id) is box:
            del rt.mailboxes[request_id]

    def open_standalone(self) -> Mailbox | None:
        """The mailbox of the session's GET stream; ``None`` if one is already open (409)."""
        rt = self._runtime
        if rt is None or self.ended:
            raise SessionGone
        if rt.standalone is not None:
            return None
        rt.standalone = Mailbox(sse=True)
        return rt.standalone

    def close_standalone(self, box: Mailbox) -> None:
        box.close()
        rt = self._runtime
        if rt is not None and rt.standalone is box:
            rt.standalone = None

    def hibernate(self) -> bool:
        """Wind the loop down if nothing uses it; its state is kept for the next request.

        Not while a client notification is still being handled: the wind-down would cancel it.
        """
        rt = self._runtime
        if rt is None or rt.stopping or self.busy or rt.pending_notifications:
            return False
        rt.stop()
        return True

    def _finish(self, rt: Runtime) -> None:
        """Keep what the finished loop's ``Connection`` learnt; idempotent."""
        if self._runtime is not rt:
            return
        self._runtime = None
        rt.close_mailboxes()
        if not self.ended:
            self._saved = Saved.capture(rt.connection)
        if not rt.stopping and not self.ended:
            # The loop ended on its own (a crash): the session cannot be served any more.
            self._manager._forget(self)

    def _drop(self) -> None:
        self.ended = True
        self._saved = None


class SessionManager:
    """Admits, finds, expires and ends sessions; runs one sweeper task for all of them."""

    def __init__(
        self,
        server: Server[Any],
        *,
        limits: Callable[[], SessionLimits],
        clock: Callable[[], float] = time.monotonic,
        linger: float = DEFAULT_LINGER,
        max_warm: int = DEFAULT_MAX_WARM,
        directory: Directory | None = None,
    ) -> None:
        if not linger > 0:
            raise ValueError(f"linger must be > 0, got {linger}")
        if max_warm < 0:
            raise ValueError(f"max_warm must be >= 0, got {max_warm}")
        self.server = server
        self.limits = limits
        self.clock = clock
        self.linger = linger
        self.state: Any = None
        """The server's lifespan state, entered once for the whole app (as the SDK's manager does)."""
        self.max_warm = max_warm
        self.directory = directory
        self._sessions: dict[str, Session] = {}
        self._warm: dict[str, Session] = {}
        """Idle sessions whose loop is still up, least recently used first."""
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: object) -> bool:
        """Whether this replica holds ``session_id`` (whoever owns it)."""
        return session_id in self._sessions

    @property
    def running_loops(self) -> int:
        return sum(1 for s in self._sessions.values() if s.running)

    def start(self, lifespan_state: Any) -> None:
        self.state = lifespan_state
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="mcp-session-sweeper")

    def create(self, owner: bytes) -> Session | None:
        """A new session for ``owner``, or ``None`` at the cap (the caller answers 503)."""
        if len(self._sessions) >= self.limits().max_sessions:
            return None
        session_id = secrets.token_hex(16)
        session = self._sessions[session_id] = Session(self, session_id, owner)
        logger.debug("session %s opened (%d open)", session_id[:8], len(self._sessions))
        return session

    async def announce(self, session: Session) -> None:
        """Record a new session in the directory, if there is one (before its id is handed out).

        Raises:
            StateUnavailableError: the directory did not answer; the caller ends the session.
        """
        if self.directory is None:
            return
        now = self.clock()
        await self.directory.announce([session.id], self._directory_ttl())
        session.announced = now

    def get(self, session_id: str, owner: bytes) -> Session | None:
        """The session, only for the credential that created it (others get ``None``, i.e. 404)."""
        session = self._sessions.get(session_id)
        if session is None or not hmac.compare_digest(session.owner, owner):
            return None
        return session

    def retry_after(self) -> int:
        """Seconds a refused client should wait: the next sweep can free a slot by then."""
        return max(1, math.ceil(self._sweep_interval()))

    async def end(self, session: Session, reason: str = "closed", *, withdraw: bool = True) -> None:
        """End ``session`` now: its id answers 404 at once; its loop, tasks and streams are released.

        ``withdraw`` false leaves its directory entry to the caller (which withdraws many at once).
        """
        if session.ended:
            return
        self._forget(session)
        logger.debug("session %s ended (%s)", session.id[:8], reason)
        if withdraw and self.directory is not None and session.announced is not None:
            await self.directory.withdraw([session.id])
        rt = session._runtime  # pyright: ignore[reportPrivateUsage]
        if rt is None or rt.task is None:
            return
        rt.stop()
        rt.close_mailboxes()
        try:
            async with asyncio.timeout(_END_TIMEOUT):
                await asyncio.shield(rt.task)
        except TimeoutError:
            logger.warning("session %s: the SDK loop did not stop in %.0f s; cancelling", session.id[:8], _END_TIMEOUT)
            rt.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rt.task

    async def sweep(self) -> None:
        """Wind down loops idle past ``linger``, end sessions idle past the timeout, and re-announce
        sessions whose directory entry has used up a third of its time."""
        now = self.clock()
        timeout = self.limits().idle_timeout
        expired: list[Session] = []
        for session in list(self._sessions.values()):
            if session.busy:
                continue
            idle = now - session.last_active
            if idle >= timeout:
                expired.append(session)
            elif idle >= self.linger and session.hibernate():
                self._warm.pop(session.id, None)
        for session in expired:
            await self.end(session, "idle", withdraw=False)
        if self.directory is not None:
            await self._withdraw(expired)
            await self._refresh(now)

    async def aclose(self) -> None:
        """End every session (shutdown); bounded per session."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        sessions = list(self._sessions.values())
        await asyncio.gather(*(self.end(s, "shutdown", withdraw=False) for s in sessions))
        await self._withdraw(sessions)

    def _directory_ttl(self) -> float:
        return self.limits().idle_timeout + DIRECTORY_SLACK

    async def _withdraw(self, sessions: Sequence[Session]) -> None:
        ids = [s.id for s in sessions if s.announced is not None]
        if ids and self.directory is not None:
            await self.directory.withdraw(ids)

    async def _refresh(self, now: float) -> None:
        """Re-announce, in one batch, every session announced more than a third of the TTL ago.

        Every live session, busy or not: its entry must last as long as the session does, and a
        reload may have raised the idle timeout since. Requests themselves never touch the directory.
        """
        if self.directory is None:
            return
        ttl = self._directory_ttl()
        due = [s for s in self._sessions.values() if s.announced is None or now - s.announced >= ttl / 3]
        if due and await self.directory.refresh([s.id for s in due], ttl):
            for session in due:
                session.announced = now

    def _idle(self, session: Session) -> None:
        self._warm[session.id] = session
        for _ in range(len(self._warm) - self.max_warm):
            oldest = self._warm.pop(next(iter(self._warm)))
            if not oldest.hibernate():
                self._warm[oldest.id] = oldest  # still handling a notification: it comes back when done

    def _forget(self, session: Session) -> None:
        self._sessions.pop(session.id, None)
        self._warm.pop(session.id, None)
        session._drop()  # pyright: ignore[reportPrivateUsage]

    def _sweep_interval(self) -> float:
        return min(max(min(self.linger, self.limits().idle_timeout) / 4, 0.25), 30.0)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval())
            try:
                await self.sweep()
            except Exception:
                logger.exception("session sweep failed")

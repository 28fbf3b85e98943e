"""Handshake-era sessions across replicas: a directory in the shared state, and routing to the holder.

A 2025-11-25 session lives in the replica that created it. With ``MCP_STATE_URL=redis://`` each
replica records its sessions in the shared state with its ``MCP_REPLICA_URL``; a request for a
session this replica does not hold is looked up there (one GET, then the holder's lease) and
forwarded to the holder when it is another replica that is alive and reachable by URL, or answered
404 (unknown, ended, or its replica is gone: the client initialises again, as the spec says).
2026-07-28 requests carry no session and never come here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Final

from aiohttp import web

from ..errors import StateUnavailableError
from ..state import SharedState
from .forward import FORWARDED_BY_HEADER, Forwarder
from .legacy import session_not_found, state_unavailable
from .sessions import SESSION_ID_RE
from .wire import LongStreams, read_body

__all__ = ["SessionDirectory", "route_foreign"]

logger = logging.getLogger(__name__)

_BEST_EFFORT_TIMEOUT: Final = 3.0
"""Bound on a refresh or withdrawal: a hung Redis must not stall the sweeper or a DELETE."""
_WARNED_MAX: Final = 64


class SessionDirectory:
    """``sessions.Directory`` on the shared state, plus the lookup of a foreign session's holder."""

    def __init__(self, shared: SharedState, url: str | None) -> None:
        self.shared = shared
        self.url = url
        self._warned: set[str] = set()

    @property
    def replica_id(self) -> str:
        return self.shared.replica_id

    async def announce(self, session_ids: Sequence[str], ttl: float) -> None:
        await self.shared.register_sessions(session_ids, self.url, ttl)

    async def refresh(self, session_ids: Sequence[str], ttl: float) -> bool:
        if not self.shared.healthy():
            return False  # the lease renewal notices when it is back; the next sweep retries
        try:
            async with asyncio.timeout(_BEST_EFFORT_TIMEOUT):
                await self.shared.register_sessions(session_ids, self.url, ttl)
        except (StateUnavailableError, TimeoutError):
            return False
        return True

    async def withdraw(self, session_ids: Sequence[str]) -> None:
        if not self.shared.healthy():
            return  # the entries lapse; meanwhile a peer forwards here and gets 404
        try:
            async with asyncio.timeout(_BEST_EFFORT_TIMEOUT):
                await self.shared.forget_sessions(session_ids)
        except (StateUnavailableError, TimeoutError):
            pass

    async def locate(self, session_id: str) -> str | None:
        """The base URL of the live peer holding ``session_id``, or ``None`` (answer 404).

        Raises:
            StateUnavailableError: the shared state did not answer.
        """
        holder = await self.shared.session_holder(session_id)
        if holder is None:
            return None
        replica, url = holder
        if replica == self.shared.replica_id:
            return None  # ours, from before a restart (we would hold it otherwise)
        if url is None:
            if replica not in self._warned and len(self._warned) < _WARNED_MAX:
                self._warned.add(replica)
                logger.warning(
                    "replica %s holds sessions clients send here but has no MCP_REPLICA_URL: they get 404 "
                    "(set MCP_REPLICA_URL on every replica, or keep sessions sticky at the load balancer)",
                    replica,
                )
            return None
        if replica not in await self.shared.alive([replica]):
            return None
        return url


async def route_foreign(
    request: web.Request,
    session_id: str,
    directory: SessionDirectory,
    forwarder: Forwarder,
    body_limit: int,
    streams: LongStreams,
) -> web.StreamResponse:
    """Answer a request for a session this replica does not hold: forward it to its holder, or 404.

    Call it only after admission (the credentials were checked here; the holder checks them again).
    """
    if FORWARDED_BY_HEADER in request.headers or not SESSION_ID_RE.match(session_id):
        return session_not_found()  # already forwarded once (no loops), or no replica's id at all
    if not directory.shared.healthy():
        return state_unavailable()
    try:
        url = await directory.locate(session_id)
    except StateUnavailableError:
        return state_unavailable()
    if url is None:
        return session_not_found()
    body = await read_body(request, body_limit) if request.method == "POST" else None
    logger.debug("forwarding %s for session %s to %s", request.method, session_id[:8], url)
    return await forwarder.forward(request, url, body, streams)

"""Relay one handshake-era request to the replica that holds its session, and its answer back.

Only the headers the MCP endpoint reads go over (credentials included: the holder checks them
again), plus ``Mcp-Forwarded-By`` naming this replica, which a replica never forwards again.
An SSE answer is streamed back chunk by chunk as it arrives; anything else is read and sent
whole. A holder that refuses the connection is not listening (it stopped or died, and its
sessions with it): 404, so the client initialises again. One that does not answer otherwise
(a connect timeout, a reset) gets 503 with Retry-After: it may be a passing fault, and if the
holder is dead its lease lapses within ``LEASE_TTL`` and the next try gets 404.
"""

from __future__ import annotations

import logging
import time
from typing import Final

import aiohttp
from aiohttp import web
from mcp_types import INTERNAL_ERROR
from multidict import CIMultiDict
from yarl import URL

from .legacy import session_not_found
from .wire import (
    PROTOCOL_VERSION_HEADER,
    SESSION_HEADER,
    LongStreams,
    accepts,
    add_cors_headers,
    jsonrpc_error,
    write_frame,
)

__all__ = ["CONNECT_TIMEOUT", "FORWARDED_BY_HEADER", "Forwarder"]

logger = logging.getLogger(__name__)

FORWARDED_BY_HEADER: Final = "Mcp-Forwarded-By"
"""Set on a forwarded request (the forwarding replica's id); such a request is never forwarded again."""

CONNECT_TIMEOUT: Final = 5.0
"""Seconds to connect to the holder (and to get a pooled connection)."""

_MIN_READ_SILENCE: Final = 30.0
_WARN_EVERY: Final = 10.0
"""Seconds between two log lines about the same unreachable holder."""
_WARNED_MAX: Final = 256

_REQUEST_HEADERS: Final = (
    "Authorization",
    "X-API-Key",
    SESSION_HEADER,
    PROTOCOL_VERSION_HEADER,
    "Accept",
    "Content-Type",
    "Last-Event-ID",
    "Origin",
)
_RESPONSE_HEADERS: Final = (
    "Content-Type",
    "Cache-Control",
    "X-Accel-Buffering",
    SESSION_HEADER,
    "Retry-After",
    "WWW-Authenticate",
    "Allow",
)
"""Relayed back; CORS headers are not (this replica adds its own), nor hop-by-hop ones."""

SSE_TYPE: Final = "text/event-stream"


def _unreachable() -> web.Response:
    return jsonrpc_error(
        503, INTERNAL_ERROR, "The replica holding this session did not answer; retry shortly",
        headers={"Retry-After": "5"},
    )


class Forwarder:
    """One HTTP client per app for relaying requests to peer replicas."""

    def __init__(self, replica_id: str, keepalive: float) -> None:
        self.replica_id = replica_id
        self.read_silence = max(4 * keepalive, _MIN_READ_SILENCE)
        """Longest silence on an SSE answer (the holder pings every ``keepalive`` s) before it counts as gone."""
        self._client: aiohttp.ClientSession | None = None
        self._warned: dict[str, float] = {}

    def _session(self) -> aiohttp.ClientSession:
        if self._client is None or self._client.closed:
            self._client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),  # bounded by the requests coming in
                timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT),
                auto_decompress=False,
                skip_auto_headers=("Accept", "Accept-Encoding", "Content-Type", "User-Agent"),
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def forward(
        self, request: web.Request, base_url: str, body: bytes | None, streams: LongStreams
    ) -> web.StreamResponse:
        """Send ``request`` (with ``body``, already read) to ``base_url`` and relay its answer."""
        headers: CIMultiDict[str] = CIMultiDict()
        for name in _REQUEST_HEADERS:
            for value in request.headers.getall(name, ()):
                headers.add(name, value)
        headers[FORWARDED_BY_HEADER] = self.replica_id
        # A POST whose client takes only JSON gets no pings while the call runs: no silence bound.
        bounded = request.method != "POST" or accepts(request)[1]
        timeout = aiohttp.ClientTimeout(
            total=None, connect=CONNECT_TIMEOUT, sock_read=self.read_silence if bounded else None
        )
        target = URL(base_url + request.raw_path, encoded=True)
        try:
            async with self._session().request(
                request.method, target, headers=headers, data=body, allow_redirects=False, timeout=timeout
            ) as upstream:
                relayed = {name: got for name in _RESPONSE_HEADERS if (got := upstream.headers.get(name))}
                if upstream.content_type != SSE_TYPE:
                    data = await upstream.read()
                    return web.Response(status=upstream.status, body=data or None, headers=relayed)
                return await self._stream(request, upstream, relayed, streams)
        except (aiohttp.ClientError, TimeoutError) as exc:
            refused = isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, ConnectionRefusedError)
            if self._should_warn(base_url):
                logger.warning(
                    "the replica at %s holding a session %s (%s); answering %s",
                    base_url, "refused the connection" if refused else "did not answer", type(exc).__name__,
                    "404" if refused else "503",
                )
            return session_not_found() if refused else _unreachable()

    def _should_warn(self, base_url: str) -> bool:
        now = time.monotonic()
        if now - self._warned.get(base_url, -_WARN_EVERY) < _WARN_EVERY:
            return False
        if len(self._warned) >= _WARNED_MAX:
            self._warned.clear()
        self._warned[base_url] = now
        return True

    async def _stream(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        headers: dict[str, str],
        streams: LongStreams,
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=upstream.status, headers=headers)
        add_cors_headers(request, response)
        await response.prepare(request)
        long_lived = request.method == "GET"
        if long_lived:
            streams.add(upstream.close)  # shutdown ends it like a local GET stream
        try:
            async for chunk in upstream.content.iter_any():
                await write_frame(request, response, chunk)
        except (aiohttp.ClientError, TimeoutError):
            # The holder went away or silent mid-stream: cut ours too, so the client sees a broken
            # stream rather than one that ended normally.
            if request.transport is not None:
                request.transport.close()
            return response
        finally:
            if long_lived:
                streams.discard(upstream.close)
        await write_frame(request, response, eof=True)
        return response

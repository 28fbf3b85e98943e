"""The SDK loop behind one handshake-era session, and what survives it between runs.

A loop is the SDK's own loop-mode driver: a ``JSONRPCDispatcher`` running a ``ServerRunner`` (the recipe of ``mcp.server.runner.serve_loop`` and
``serve_connection``, which ``Server.run`` and the SDK's Starlette transport use), with the
``Connection`` built here so that a restarted loop can pick up what the previous one negotiated. Our part is only moving messages: ``Inbox``
(the dispatcher's read stream) takes client messages in, and ``Writer`` (its write stream)
routes whatever the dispatcher writes to the HTTP response waiting for it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

import anyio
from mcp.server.connection import Connection
from mcp.server.runner import ServerRunner, aclose_shielded
from mcp.shared.dispatcher import CallOptions, DispatchContext
from mcp.shared.exceptions import MCPError
from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher
from mcp.shared.message import MessageMetadata, ServerMessageMetadata, SessionMessage
from mcp.shared.transport_context import TransportContext
from mcp_types import CONNECTION_CLOSED, InitializeRequestParams, JSONRPCError, JSONRPCResponse, RequestId

from .wire import Mailbox

if TYPE_CHECKING:
    from mcp.server.lowlevel.server import Server

__all__ = ["Inbox", "Runtime", "Saved", "StandaloneChannel", "start_loop"]

logger = logging.getLogger(__name__)

_INLINE: Final = frozenset({"initialize"})
"""As in ``serve_loop``: ``initialize`` runs inline so a pipelined next request sees its result."""


@dataclass(slots=True)
class Saved:
    """What a session's ``Connection`` had learnt when its loop wound down (a few hundred bytes)."""

    protocol_version: str
    client_params: str | None
    """The client's ``initialize`` params as JSON (smaller than the model; re-validated on restart)."""
    initialized: bool
    state: dict[str, Any] | None

    @classmethod
    def capture(cls, connection: Connection) -> Saved:
        params = connection.client_params
        return cls(
            connection.protocol_version,
            params.model_dump_json(by_alias=True, exclude_none=True) if params is not None else None,
            connection.initialized.is_set(),
            connection.state or None,
        )

    def restore(self, connection: Connection) -> None:
        connection.protocol_version = self.protocol_version
        if self.client_params is not None:
            connection.client_params = InitializeRequestParams.model_validate_json(self.client_params)
        if self.initialized:
            connection.initialized.set()
        if self.state:
            connection.state = self.state


def _transport_context(metadata: MessageMetadata) -> TransportContext:
    # Like the SDK's default builder, plus the HTTP headers for handlers that read ``ctx.headers``.
    if isinstance(metadata, ServerMessageMetadata):
        headers = getattr(metadata.request_context, "headers", None)
        return TransportContext(kind="streamable-http", can_send_request=metadata.can_send_request, headers=headers)
    return TransportContext(kind="streamable-http", can_send_request=True)


class Runtime:
    """A running SDK loop for one session and the responses waiting on it."""

    __slots__ = (
        "connection",
        "dispatcher",
        "inbox",
        "mailboxes",
        "on_quiet",
        "pending_notifications",
        "standalone",
        "stopping",
        "task",
    )

    def __init__(
        self,
        inbox: Inbox,
        dispatcher: JSONRPCDispatcher[TransportContext],
        connection: Connection,
    ) -> None:
        self.inbox = inbox
        self.dispatcher = dispatcher
        self.connection = connection
        self.mailboxes: dict[RequestId, Mailbox] = {}
        self.standalone: Mailbox | None = None
        self.stopping = False
        self.task: asyncio.Task[None] | None = None
        self.pending_notifications = 0
        """Client notifications handed to the loop whose handler has not finished yet."""
        self.on_quiet: Callable[[], None] | None = None
        """Called when the last pending notification has been handled."""

    def notification_done(self) -> None:
        self.pending_notifications -= 1
        if not self.pending_notifications and self.on_quiet is not None:
            self.on_quiet()

    def stop(self) -> None:
        """EOF on the read stream: the dispatcher finishes its loop and ``serve_connection`` returns."""
        self.stopping = True
        self.inbox.close()

    def close_mailboxes(self) -> None:
        for box in self.mailboxes.values():
            box.close()
        if self.standalone is not None:
            self.standalone.close()


class _ClosedOnExit:
    """``async with`` closes the stream: the dispatcher enters both of its streams."""

    __slots__ = ()

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class Inbox(_ClosedOnExit):
    """The dispatcher's read stream: client messages in arrival order, each with its sender's context.

    It does what the SDK's context-carrying memory stream does (the dispatcher reads
    ``last_context`` to run each handler in the context of the request that sent it) without
    anyio's checkpoint on each side, which cost every request two extra turns of the event
    loop. ``put`` never waits: how many messages can queue is bounded by the requests in
    flight, each of which then waits for its own reply. After ``close`` what is queued is still
    read, then the stream ends, as a closed memory stream drains its buffer.
    """

    __slots__ = ("_closed", "_items", "_waiter", "last_context")

    def __init__(self) -> None:
        self._items: deque[tuple[contextvars.Context, SessionMessage]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.last_context: contextvars.Context | None = None

    def put(self, message: SessionMessage) -> None:
        """Queue ``message`` for the dispatcher.

        Raises:
            anyio.ClosedResourceError: the stream was closed (the loop is winding down).
        """
        if self._closed:
            raise anyio.ClosedResourceError
        self._items.append((contextvars.copy_context(), message))
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def receive(self) -> SessionMessage:
        while not self._items:
            if self._closed:
                raise anyio.EndOfStream
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self.last_context, message = self._items.popleft()
        return message

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SessionMessage:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self.close()


class StandaloneChannel:
    """A session's ``connection.outbound``, the same object across loop restarts.

    Code that kept a ``ServerSession`` from an earlier request (a background job reporting
    progress, say) sends through this; it reaches whichever loop runs now. With no loop
    running there is also no GET stream to carry a message (an open stream keeps the loop
    up), so notifications are dropped and requests fail at once, as they would have no stream.
    """

    __slots__ = ("runtime",)

    def __init__(self) -> None:
        self.runtime: Runtime | None = None

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None) -> None:
        rt = self.runtime
        if rt is None or rt.stopping:
            logger.debug("dropped %s: no stream open to the client", method)
            return
        await rt.dispatcher.notify(method, params, opts)

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> dict[str, Any]:
        rt = self.runtime
        if rt is None or rt.stopping:
            raise MCPError(code=CONNECTION_CLOSED, message="No stream is open to the client")
        return await rt.dispatcher.send_raw_request(method, params, opts)


class Writer(_ClosedOnExit):
    """The dispatcher's write stream: routes each outgoing message to the response it belongs to.

    Replies go to the POST that asked; messages tied to a request (progress, server requests)
    go to that POST's SSE stream; anything else goes to the GET stream, or is dropped when no
    stream can carry it (we keep no event store).
    """

    __slots__ = ("_closed", "_runtime")

    def __init__(self) -> None:
        self._runtime: Runtime | None = None
        self._closed = False

    async def send(self, item: SessionMessage, /) -> None:
        rt = self._runtime
        if self._closed or rt is None:
            raise anyio.ClosedResourceError
        message = item.message
        box: Mailbox | None
        if isinstance(message, JSONRPCResponse | JSONRPCError) and message.id is not None:
            box = rt.mailboxes.get(message.id)
        elif isinstance(item.metadata, ServerMessageMetadata) and item.metadata.related_request_id is not None:
            box = rt.mailboxes.get(item.metadata.related_request_id)
            if box is not None and not box.sse:
                box = None  # a JSON body carries only the reply
        else:
            box = rt.standalone
        if box is None:
            logger.debug("dropped a server message with no open stream to carry it")
            return
        await box.put(message)

    async def aclose(self) -> None:
        self._closed = True
        if self._runtime is not None:
            self._runtime.close_mailboxes()


def start_loop(
    server: Server[Any],
    lifespan_state: Any,
    session_id: str,
    saved: Saved | None,
    channel: StandaloneChannel,
    on_done: Callable[[Runtime], None],
) -> Runtime:
    """Start the SDK loop for a session (restoring ``saved``); ``on_done`` runs when it ends."""
    inbox = Inbox()
    writer = Writer()
    dispatcher: JSONRPCDispatcher[TransportContext] = JSONRPCDispatcher(
        inbox, writer, transport_builder=_transport_context, inline_methods=_INLINE
    )
    # ``serve_loop`` passes the dispatcher itself as the standalone channel; ours outlives it.
    connection = Connection.for_loop(channel, session_id=session_id)
    if saved is not None:
        saved.restore(connection)
    rt = writer._runtime = channel.runtime = Runtime(inbox, dispatcher, connection)

    # ``serve_connection``'s body, with notification handlers counted: winding a loop down (EOF)
    # cancels handlers still running, so a session only winds down once none is pending.
    runner = ServerRunner(server, connection, lifespan_state)

    async def on_notify(dctx: DispatchContext[TransportContext], method: str, params: Mapping[str, Any] | None) -> None:
        try:
            await runner.on_notify(dctx, method, params)
        finally:
            rt.notification_done()

    async def serve() -> None:
        try:
            await dispatcher.run(runner.on_request, on_notify)
        except Exception:
            logger.exception("session %s: the SDK loop crashed", session_id[:8])
        finally:
            await aclose_shielded(connection)

    rt.task = asyncio.create_task(serve(), name="mcp-session")
    rt.task.add_done_callback(lambda _task: _done(channel, rt, on_done))
    return rt


def _done(channel: StandaloneChannel, rt: Runtime, on_done: Callable[[Runtime], None]) -> None:
    if channel.runtime is rt:
        channel.runtime = None
    on_done(rt)

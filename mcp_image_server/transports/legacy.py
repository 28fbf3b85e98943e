"""The handshake era (2024-11-05 … 2025-11-25): POST, GET and DELETE on a session.

Framing only: the body is validated as one JSON-RPC message and handed to the session's SDK
loop; whatever the SDK writes back is sent as one JSON body or as an SSE stream (when the
call emits progress or other request-scoped messages first, or the client accepts only SSE).
"""

from __future__ import annotations

import functools
import logging
from typing import Final

from aiohttp import web
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    PARSE_ERROR,
    ErrorData,
    JSONRPCError,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
    jsonrpc_message_adapter,
)
from pydantic import ValidationError

from ..errors import StateUnavailableError
from .middleware import step_up
from .sessions import Session, SessionGone, SessionManager
from .wire import (
    JSON_CONTENT_TYPE,
    PING_FRAME,
    SESSION_HEADER,
    LongStreams,
    Mailbox,
    accepts,
    jsonrpc_error,
    message_bytes,
    open_sse,
    read_body,
    sse_frame,
    write_frame,
)

__all__ = [
    "handle_delete",
    "handle_get",
    "handle_post",
    "method_not_allowed",
    "session_not_found",
    "state_unavailable",
]

logger = logging.getLogger(__name__)

REQUEST_CANCELLED: Final = -32800
"""What this era answers for a request the client cancelled (the SDK transport's choice)."""

_ALLOW: Final = "GET, POST, DELETE"


def method_not_allowed() -> web.Response:
    return jsonrpc_error(405, INVALID_REQUEST, "Method Not Allowed", headers={"Allow": _ALLOW})


def session_not_found() -> web.Response:
    """What an unknown, ended or foreign-owned session id gets: the client initialises again."""
    return jsonrpc_error(404, INVALID_REQUEST, "Session not found")


def state_unavailable() -> web.Response:
    return jsonrpc_error(
        503, INTERNAL_ERROR, "The shared state (MCP_STATE_URL) is unavailable; retry shortly",
        headers={"Retry-After": "5"},
    )


def _missing_session() -> web.Response:
    return jsonrpc_error(400, INVALID_REQUEST, "Bad Request: Missing session ID")


def _is_json_body(request: web.BaseRequest) -> bool:
    return request.content_type == JSON_CONTENT_TYPE


async def handle_post(
    request: web.Request,
    manager: SessionManager,
    owner: bytes,
    body_limit: int,
    keepalive: float,
    state_ok: bool = True,
) -> web.StreamResponse:
    """One JSON-RPC message: ``initialize`` opens a session, anything else needs one.

    ``state_ok`` false (the shared state is down) refuses new sessions with 503 and Retry-After.
    """
    has_json, has_sse = accepts(request)
    if not (has_json or has_sse):
        return jsonrpc_error(
            406, INVALID_REQUEST, "Not Acceptable: Accept must include application/json or text/event-stream"
        )
    if not _is_json_body(request):
        return jsonrpc_error(415, INVALID_REQUEST, "Unsupported Media Type: Content-Type must be application/json")
    body = await read_body(request, body_limit)
    try:
        message = jsonrpc_message_adapter.validate_json(body, by_name=False)
    except ValidationError as exc:
        if any(err["type"] == "json_invalid" for err in exc.errors(include_url=False, include_input=False)):
            return jsonrpc_error(400, PARSE_ERROR, "Parse error")
        return jsonrpc_error(400, INVALID_REQUEST, "Invalid Request: the body must be one JSON-RPC message")

    if isinstance(message, JSONRPCRequest) and (refused := step_up(request, message)) is not None:
        return refused
    session_id = request.headers.get(SESSION_HEADER)
    if session_id is None:
        if not (isinstance(message, JSONRPCRequest) and message.method == "initialize"):
            return _missing_session()
        if not state_ok:
            return state_unavailable()
        session = manager.create(owner)
        if session is None:
            logger.warning("refused a new session: %d sessions are open (MCP_MAX_SESSIONS)", len(manager))
            return jsonrpc_error(
                503, INTERNAL_ERROR, "Too many open sessions", headers={"Retry-After": str(manager.retry_after())}
            )
        try:
            await manager.announce(session)  # before the id is handed out: its next request may reach a peer
        except StateUnavailableError:
            await manager.end(session, "the shared state is unavailable")
            return state_unavailable()
        return await _serve_request(request, manager, session, message, has_json, has_sse, keepalive, opening=True)

    session = manager.get(session_id, owner)
    if session is None:
        return session_not_found()
    if isinstance(message, JSONRPCRequest):
        return await _serve_request(request, manager, session, message, has_json, has_sse, keepalive, opening=False)

    # A notification or a reply to a server request: accepted once the SDK loop has it.
    try:
        await session.acquire()
    except SessionGone:
        return session_not_found()
    try:
        session.deliver(SessionMessage(message, ServerMessageMetadata(request_context=request)))
    except SessionGone:
        return session_not_found()
    finally:
        session.release()
    return web.Response(status=202, headers={SESSION_HEADER: session.id})


async def _answer_cancelled(box: Mailbox, request_id: RequestId) -> None:
    # The SDK's dispatcher stays silent for a cancelled request; this era's wire still ends it.
    await box.put(
        JSONRPCError(jsonrpc="2.0", id=request_id, error=ErrorData(code=REQUEST_CANCELLED, message="Request cancelled"))
    )


async def _serve_request(
    request: web.Request,
    manager: SessionManager,
    session: Session,
    message: JSONRPCRequest,
    has_json: bool,
    has_sse: bool,
    keepalive: float,
    *,
    opening: bool,
) -> web.StreamResponse:
    """Deliver a request and stream back what the SDK writes for it.

    A client that goes away does not cancel the call (the spec says so for this era): the call
    runs on in the session and its reply is dropped.
    """
    try:
        await session.acquire()
    except SessionGone:
        return session_not_found()
    box: Mailbox | None = None
    established = False
    try:
        box = session.open_request(message.id, sse=has_sse)
        if box is None:
            return jsonrpc_error(
                409, INVALID_REQUEST, "A request with this id is already in flight", request_id=message.id
            )
        metadata = ServerMessageMetadata(
            request_context=request,
            can_send_request=has_sse,
            on_request_unanswered=functools.partial(_answer_cancelled, box, message.id),
        )
        session.deliver(SessionMessage(message, metadata))
        headers = {SESSION_HEADER: session.id}
        stream: web.StreamResponse | None = None
        while True:
            try:
                item = await box.get(keepalive if has_sse else None)
            except TimeoutError:
                stream = stream or await open_sse(request, headers)
                await write_frame(request, stream, PING_FRAME)
                continue
            if item is None:  # the session ended before the SDK answered
                if stream is None:
                    return jsonrpc_error(404, INVALID_REQUEST, "Session terminated", request_id=message.id)
                await write_frame(request, stream, eof=True)
                return stream
            final = isinstance(item, JSONRPCResponse | JSONRPCError)
            if final and opening:
                established = isinstance(item, JSONRPCResponse)
            if final and stream is None and has_json:
                return web.Response(
                    body=message_bytes(item),
                    content_type=JSON_CONTENT_TYPE,
                    headers=headers if established or not opening else None,
                )
            stream = stream or await open_sse(request, headers)
            await write_frame(request, stream, sse_frame(item))
            if final:
                await write_frame(request, stream, eof=True)
                return stream
    except SessionGone:
        return session_not_found()
    finally:
        if box is not None:
            session.close_request(message.id, box)
        session.release()
        if opening and not established:
            await manager.end(session, "initialize failed")


async def handle_get(
    request: web.Request, manager: SessionManager, owner: bytes, streams: LongStreams, keepalive: float
) -> web.StreamResponse:
    """The session's server-to-client SSE stream; one per session."""
    _, has_sse = accepts(request)
    if not has_sse:
        return jsonrpc_error(406, INVALID_REQUEST, "Not Acceptable: Accept must include text/event-stream")
    session_id = request.headers.get(SESSION_HEADER)
    if session_id is None:
        return _missing_session()
    session = manager.get(session_id, owner)
    if session is None:
        return session_not_found()
    try:
        await session.acquire()
    except SessionGone:
        return session_not_found()
    box: Mailbox | None = None
    try:
        box = session.open_standalone()
        if box is None:
            return jsonrpc_error(409, INVALID_REQUEST, "Conflict: Only one SSE stream is allowed per session")
        streams.add(box.close)
        stream = await open_sse(request, {SESSION_HEADER: session.id})
        while True:
            try:
                item = await box.get(keepalive)
            except TimeoutError:
                await write_frame(request, stream, PING_FRAME)
                continue
            if item is None:
                break
            await write_frame(request, stream, sse_frame(item))
        await write_frame(request, stream, eof=True)
        return stream
    except SessionGone:
        return session_not_found()
    finally:
        if box is not None:
            streams.discard(box.close)
            session.close_standalone(box)
        session.release()


async def handle_delete(request: web.Request, manager: SessionManager, owner: bytes) -> web.Response:
    """End the session: its id answers 404 from now on and everything it held is released."""
    session_id = request.headers.get(SESSION_HEADER)
    if session_id is None:
        return _missing_session()
    session = manager.get(session_id, owner)
    if session is None:
        return session_not_found()
    await manager.end(session, "deleted by the client")
    return web.Response(status=200)

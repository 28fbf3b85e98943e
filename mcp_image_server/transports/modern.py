"""The 2026-07-28 per-request era: every POST stands alone, no session is minted.

The request is validated and served with the pieces of the SDK's own single-exchange entry
(``mcp.server._streamable_http_modern``): the inbound classifier, the ``Mcp-Param-*`` check,
``_SingleExchangeDispatchContext``, ``serve_one`` and the error-to-status table. Only the
ASGI framing is replaced by aiohttp: the handler runs in the request's own task and writes
request-scoped notifications straight onto the response, committing to SSE on the first one
(or after ``keepalive`` seconds of silence); a call that emits nothing gets one JSON body with
the mapped status. Closing the connection cancels the call (the app runs with
``handler_cancellation``), which is this era's cancellation.
"""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Final, cast

import anyio
import pydantic_core
from aiohttp import web
from mcp.server._streamable_http_modern import (  # pyright: ignore[reportPrivateUsage]
    _INVALID_BODY,  # pyright: ignore[reportPrivateUsage]
    _is_notification_shaped,  # pyright: ignore[reportPrivateUsage]
    _mcp_param_rejection,  # pyright: ignore[reportPrivateUsage]
    _SingleExchangeDispatchContext,  # pyright: ignore[reportPrivateUsage]
    _sse_event,  # pyright: ignore[reportPrivateUsage]
)
from mcp.server.connection import Connection
from mcp.server.runner import modern_error_data, serve_one
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
    unsupported_protocol_version_rejection,
)
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types import (
    HEADER_MISMATCH,
    PARSE_ERROR,
    ErrorData,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
)
from multidict import CIMultiDict
from pydantic import ValidationError

from .middleware import step_up
from .wire import (
    JSON_CONTENT_TYPE,
    PROTOCOL_VERSION_HEADER,
    accepts,
    jsonrpc_error,
    open_sse,
    read_body,
    write_frame,
)

if TYPE_CHECKING:
    from mcp.server.lowlevel.server import Server

__all__ = ["ParamHeaderCheck", "SilenceWatch", "handle_modern"]

logger = logging.getLogger(__name__)

_PING: Final = b": ping\r\n\r\n"
_LISTEN: Final = "subscriptions/listen"


def _reply(error: JSONRPCError) -> web.Response:
    """A JSON-RPC error with the spec's status for its code (as the SDK's ``_write``)."""
    body = error.model_dump(mode="json", by_alias=True, exclude_none=True)
    if error.id is None:
        body["id"] = None  # JSON-RPC wants ``"id": null`` on the wire when the id could not be read
    status = ERROR_CODE_HTTP_STATUS.get(error.error.code, 200)
    payload = json.dumps(body, separators=(",", ":")).encode()
    return web.Response(status=status, body=payload, content_type=JSON_CONTENT_TYPE)


def _rejection(rejection: InboundLadderRejection, request_id: RequestId | None) -> web.Response:
    error = ErrorData(code=rejection.code, message=rejection.message, data=rejection.data)
    return _reply(JSONRPCError(jsonrpc="2.0", id=request_id, error=error))


class _ResponseSink:
    """The dispatch context's ``sink``: SSE frames written onto this POST's response, lazily opened."""

    __slots__ = ("_lock", "_pinger", "_request", "response")

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self._lock = asyncio.Lock()
        self.response: web.StreamResponse | None = None
        self._pinger: asyncio.Task[None] | None = None

    async def send(self, frame: bytes) -> None:
        async with self._lock:
            try:
                if self.response is None:
                    self.response = await open_sse(self._request)
                await write_frame(self._request, self.response, frame)
            except ConnectionResetError:
                raise anyio.BrokenResourceError from None

    def start_pinging(self, interval: float) -> None:
        self._pinger = asyncio.get_running_loop().create_task(self._ping_forever(interval))

    async def stop_pinging(self) -> None:
        """Never interrupts a ping halfway (the lock), so the response stays well-formed."""
        if self._pinger is not None:
            async with self._lock:
                self._pinger.cancel()

    async def _ping_forever(self, interval: float) -> None:
        # Silence past the window: commit to SSE and ping so proxies keep the stream open.
        try:
            while True:
                await self.send(_PING)
                await asyncio.sleep(interval)
        except anyio.BrokenResourceError:
            pass


class SilenceWatch:
    """Starts pinging the SSE-capable responses that stay silent for ``keepalive`` seconds.

    One timer serves every response: each waits the same span, so deadlines come due in the
    order the responses started and the earliest one is always first in line. (A timer per
    request cost more than the rest of this module's framing.)
    """

    def __init__(self, keepalive: float) -> None:
        self.keepalive = keepalive
        self._due: dict[_ResponseSink, float] = {}
        """Watched sinks and their deadlines, in deadline order (insertion order)."""
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, sink: _ResponseSink) -> None:
        loop = asyncio.get_running_loop()
        deadline = self._due[sink] = loop.time() + self.keepalive
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._fire)

    def unwatch(self, sink: _ResponseSink) -> None:
        # The timer stays armed: when it fires it re-arms for whichever sink is first by then,
        # so under load it fires about once per ``keepalive`` instead of costing every request.
        self._due.pop(sink, None)

    def _fire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._due:
            sink, deadline = next(iter(self._due.items()))
            if deadline > now:
                self._timer = loop.call_at(deadline, self._fire)
                return
            del self._due[sink]
            sink.start_pinging(self.keepalive)


class ParamHeaderCheck:
    """Runs the SDK's ``Mcp-Param-*`` check only for tools whose schema can declare such headers.

    ``validate_mcp_param_headers`` walks the tool's input schema on every call; a schema with
    no ``x-mcp-header`` anywhere can never fail it, so that verdict is remembered per schema.
    """

    def __init__(self) -> None:
        self._seen: dict[int, tuple[Any, bool]] = {}

    def needed(self, server: Server[Any], req: JSONRPCRequest) -> bool:
        lookup = server.get_tool_input_schema
        if req.method != "tools/call" or lookup is None:
            return True  # nothing to remember: let the SDK decide
        name = (req.params or {}).get("name")
        try:
            schema = lookup(name) if isinstance(name, str) else None
        except Exception:  # noqa: BLE001 - the SDK's check handles (and logs) a failing lookup itself
            return True
        if schema is None:
            return True
        known = self._seen.get(id(schema))
        if known is None or known[0] is not schema:
            known = self._seen[id(schema)] = (schema, "x-mcp-header" in json.dumps(schema, default=str))
        return known[1]


def method_not_allowed() -> web.Response:
    return web.Response(status=405, headers={"Allow": "POST"})


async def handle_modern(
    request: web.Request,
    server: Server[Any],
    lifespan_state: Any,
    body_limit: int,
    silence: SilenceWatch,
    param_check: ParamHeaderCheck,
) -> web.StreamResponse:
    """Serve one self-contained 2026-07-28 POST (GET and DELETE get 405)."""
    if request.method != "POST":
        return method_not_allowed()
    has_json, has_sse = accepts(request)
    if not has_json:
        return web.Response(status=406)
    body = await read_body(request, body_limit)
    try:
        decoded = pydantic_core.from_json(body)
    except ValueError:  # also past the parser's nesting limit
        return jsonrpc_error(400, PARSE_ERROR, "Parse error")

    if _is_notification_shaped(decoded):
        try:
            JSONRPCNotification.model_validate(decoded)
        except ValidationError:
            return _reply(_INVALID_BODY)
        rejected = unsupported_protocol_version_rejection(request.headers.get(PROTOCOL_VERSION_HEADER, ""))
        if rejected is not None:
            return _rejection(rejected, None)
        return web.Response(status=202)  # no client-to-server notifications exist on this wire: dropped
    try:
        req = JSONRPCRequest.model_validate(decoded)
    except ValidationError:
        return _reply(_INVALID_BODY)
    if req.method == _LISTEN and not has_sse:
        return web.Response(status=406)
    if (refused := step_up(request, req)) is not None:
        return refused

    raw_headers = list(request.headers.items())
    if (duplicated := find_duplicated_routing_header(raw_headers)) is not None:
        return _rejection(
            InboundLadderRejection(HEADER_MISMATCH, f"{duplicated} header appears more than once"), req.id
        )
    # Lower-case names, as the SDK's checks expect (ASGI style); of repeated headers the first
    # copy wins, the one the auth check read.
    headers = {name.lower(): value for name, value in reversed(raw_headers)}
    verdict = classify_inbound_request(decoded, headers=headers)
    if isinstance(verdict, InboundLadderRejection):
        return _rejection(verdict, req.id)
    if param_check.needed(server, req):
        # The SDK reads only ``.headers`` off the request here, duplicates included (a repeated
        # ``Mcp-Param-*`` header is its to refuse).
        view = cast(Any, SimpleNamespace(headers=CIMultiDict((name.lower(), value) for name, value in raw_headers)))
        if (rejected := await _mcp_param_rejection(server, view, req, verdict, lifespan_state)) is not None:
            return _rejection(rejected, req.id)

    connection = Connection.from_envelope(verdict.protocol_version, verdict.client_info, verdict.client_capabilities)
    dctx = _SingleExchangeDispatchContext(
        transport=TransportContext(kind="streamable-http", can_send_request=False, headers=headers),
        request_id=req.id,
        message_metadata=ServerMessageMetadata(request_context=request),
        progress_token=progress_token_from_params(req.params),
    )
    sink: _ResponseSink | None = None
    if has_sse:
        sink = dctx.sink = cast(Any, _ResponseSink(request))
        silence.watch(sink)
    reply: JSONRPCError | None = None
    try:
        result = await serve_one(
            server, dctx, req.method, req.params, connection=connection, lifespan_state=lifespan_state
        )
    except Exception as exc:  # noqa: BLE001 - the exception-to-wire boundary (the SDK's ``_to_jsonrpc_response``)
        reply = JSONRPCError(jsonrpc="2.0", id=req.id, error=modern_error_data(exc))
    finally:
        if sink is not None:
            silence.unwatch(sink)
            await sink.stop_pinging()
    if sink is None or sink.response is None:
        if reply is not None:
            return _reply(reply)
        # The bytes ``JSONRPCResponse`` would dump (``result`` is plain JSON data), without the model.
        payload = pydantic_core.to_json({"jsonrpc": "2.0", "id": req.id, "result": result})
        return web.Response(body=payload, content_type=JSON_CONTENT_TYPE)
    try:
        await sink.send(_sse_event(reply or JSONRPCResponse(jsonrpc="2.0", id=req.id, result=result)))
        await write_frame(request, sink.response, eof=True)
    except (anyio.BrokenResourceError, ConnectionResetError):
        logger.debug("client went away before the reply to %r", req.id)
    return sink.response

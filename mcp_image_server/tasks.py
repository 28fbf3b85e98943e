"""MCP Tasks for ``generate_image``, in both protocol eras, on top of the job system.

A task *is* a generation job: task id = job id, status derives from the job state,
the payload is what ``job_result`` builds, retention is ``MCP_JOB_TTL`` and tasks
belong to the same owner as jobs (``caller_of``). A job created as a task says so
(``Job.task_inline``, kept in the shared state too): ``tasks/*`` answer for those alone,
so ``tasks/list`` shows what the client created as tasks and nothing else.

2025-11-25 (experimental core tasks): the client asks for a task with
``tools/call`` ``params.task``; we answer ``CreateTaskResult`` and serve
``tasks/get|result|list|cancel``, pushing ``notifications/tasks/status`` when a task
ends and ``notifications/progress`` (for a ``progressToken``) while it runs. The
SDK's ``tools/call`` sieve only lets a ``CallToolResult`` through at that version,
and ``initialize``/``tools/list`` are built by the SDK, so those three touches live
in ``middleware`` (``MCPServer(middleware=[...])``); the ``tasks/*`` methods are
ordinary extension methods.

2026-07-28 (the ``io.modelcontextprotocol/tasks`` extension): task creation is
server-directed. When the client declares the extension on its ``tools/call`` and
the bounded wait (``wait_seconds``) ends before the job does, ``intercept_tool_call``
returns a ``resultType: "task"`` handle instead of "call get_generation"; the
client polls ``tasks/get`` (which inlines the final result) and may ``tasks/cancel``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final, cast

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import Context, require_client_extension
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    CallToolRequestParams,
    CallToolResult,
    CancelTaskRequestParams,
    GetTaskPayloadRequestParams,
    GetTaskRequestParams,
    PaginatedRequestParams,
    ProgressNotification,
    ProgressNotificationParams,
    RequestParams,
    ServerNotification,
    TaskStatusNotification,
    TaskStatusNotificationParams,
)
from mcp_types import methods as wire_methods
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from .errors import JobNotFoundError, StateUnavailableError
from .jobs import ACTIVE, Job, Update
from .results import Inline, caller_of, job_result
from .service import ImageService

__all__ = ["RELATED_TASK_KEY", "TASKS_EXTENSION", "TASK_TOOL", "TasksExtension"]

logger = logging.getLogger(__name__)

TASKS_EXTENSION: Final = "io.modelcontextprotocol/tasks"
RELATED_TASK_KEY: Final = "io.modelcontextprotocol/related-task"
IMMEDIATE_RESPONSE_KEY: Final = "io.modelcontextprotocol/model-immediate-response"
LEGACY_TASKS_VERSION: Final = "2025-11-25"
"""The only handshake-era version that defines tasks."""
TASK_TOOL: Final = "generate_image"
POLL_INTERVAL_MS: Final = 1000
LIST_PAGE: Final = 50
CANCEL_SETTLE_S: Final = 5.0
LEGACY_CAPABILITY: Final[dict[str, Any]] = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}

_LEGACY: Final = frozenset({LEGACY_TASKS_VERSION})
_MODERN: Final = frozenset(MODERN_PROTOCOL_VERSIONS)
_INLINE_VALUES: Final = frozenset({"thumbnail", "full", "none"})


class UpdateTaskRequestParams(RequestParams):
    """``tasks/update`` (2026-07-28): input responses for an ``input_required`` task."""

    task_id: str
    input_responses: dict[str, Any] | None = None


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _state_errors(handler: Callable[[Any, Any], Awaitable[HandlerResult]]) -> Callable[[Any, Any], Awaitable[HandlerResult]]:
    """A ``tasks/*`` handler whose shared-state outage is a JSON-RPC error naming it (code
    ``state_unavailable`` and ``retry_after`` in ``data``), not an anonymous internal error."""

    @functools.wraps(handler)
    async def wrapped(ctx: Any, params: Any) -> HandlerResult:
        try:
            return await handler(ctx, params)
        except StateUnavailableError as exc:
            raise MCPError(INTERNAL_ERROR, exc.message, {"code": exc.code, **exc.details}) from None

    return wrapped


def _is_modern(ctx: ServerRequestContext[Any, Any]) -> bool:
    return ctx.protocol_version in _MODERN


def _status(job: Job, modern: bool) -> str:
    """Job state -> task status. A failed generation is a tool error (``isError``): 2025-11-25
    calls that ``failed``; 2026-07-28 keeps ``failed`` for JSON-RPC errors, so it is ``completed``."""
    if job.state in ACTIVE:
        return "working"
    if job.state == "succeeded":
        return "completed"
    if job.state == "cancelled":
        return "cancelled"
    return "completed" if modern else "failed"


def _job_id_of(result: object) -> str | None:
    """The job behind a ``generate_image`` result (typed or wire-shaped), if one was created."""
    if isinstance(result, CallToolResult):
        structured: object = result.structured_content
    elif isinstance(result, Mapping):
        structured = cast(Mapping[str, Any], result).get("structuredContent")
    else:
        return None
    job_id = cast(Mapping[str, Any], structured).get("job_id") if isinstance(structured, Mapping) else None
    return job_id if isinstance(job_id, str) else None


def _inline_of(arguments: object) -> Inline:
    value = cast(Mapping[str, Any], arguments).get("inline") if isinstance(arguments, Mapping) else None
    return cast(Inline, value) if value in _INLINE_VALUES else "thumbnail"


class TasksExtension(Extension):
    """Task-augmented ``generate_image``: the 2026 extension plus the 2025-11-25 experimental tasks."""

    identifier = TASKS_EXTENSION

    def __init__(self, service: ImageService) -> None:
        self._service = service
        self._watchers: set[asyncio.Task[None]] = set()

    # --- wiring -------------------------------------------------------------------------------

    def methods(self) -> Sequence[MethodBinding]:
        both = _LEGACY | _MODERN
        return (
            MethodBinding("tasks/get", GetTaskRequestParams, _state_errors(self._get), both),
            MethodBinding("tasks/cancel", CancelTaskRequestParams, _state_errors(self._cancel), both),
            MethodBinding("tasks/result", GetTaskPayloadRequestParams, _state_errors(self._result), _LEGACY),
            MethodBinding("tasks/list", PaginatedRequestParams, _state_errors(self._list), _LEGACY),
            MethodBinding("tasks/update", UpdateTaskRequestParams, _state_errors(self._update), _MODERN),
        )

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """2026-07-28: hand back a task instead of a job_id when the bounded wait ran out."""
        result = await call_next(ctx)
        if not _is_modern(ctx) or params.name != TASK_TOOL or not self._declared(ctx):
            return result
        job = await self._find(ctx, _job_id_of(result))
        if job is None or job.done:
            return result
        await self._service.jobs.mark_task(job, _inline_of(params.arguments))
        return {"resultType": "task", **self._task(job, modern=True)}

    async def middleware(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """2025-11-25 only: advertise ``capabilities.tasks`` and ``execution.taskSupport``, and answer
        a task-augmented ``tools/call`` with ``CreateTaskResult`` (shapes the SDK cannot emit there)."""
        raw = ctx.params if isinstance(ctx.params, Mapping) else {}
        legacy = ctx.protocol_version == LEGACY_TASKS_VERSION and ctx.request_id is not None
        if legacy and ctx.method == "tools/call" and raw.get("task") is not None:
            return await self._create_legacy_task(ctx, dict(raw), call_next)
        result = await call_next(ctx)
        if not isinstance(result, dict):
            return result
        if ctx.method == "initialize" and result.get("protocolVersion") == LEGACY_TASKS_VERSION:
            result["capabilities"] = {**result.get("capabilities", {}), "tasks": LEGACY_CAPABILITY}
        elif legacy and ctx.method == "tools/list":
            for tool in result.get("tools", []):
                if isinstance(tool, dict) and tool.get("name") == TASK_TOOL:
                    tool["execution"] = {"taskSupport": "optional"}
        return result

    # --- 2025-11-25 task creation and status pushes ---------------------------------------------

    async def _create_legacy_task(
        self, ctx: ServerRequestContext[Any, Any], params: dict[str, Any], call_next: CallNext
    ) -> HandlerResult:
        name = params.get("name")
        if name != TASK_TOOL:
            raise MCPError(
                METHOD_NOT_FOUND,
                f"tool {name!r} does not support task-augmented calls (only {TASK_TOOL} does)",
                {"tool": name},
            )
        arguments = params.get("arguments")
        arguments = dict(cast(Mapping[str, Any], arguments)) if isinstance(arguments, Mapping) else {}
        # wait_seconds=0: the tool validates, submits (or finds, by idempotency key) and returns at once.
        result = await call_next(replace(ctx, params={**params, "arguments": {**arguments, "wait_seconds": 0}}))
        job = await self._find(ctx, _job_id_of(result))
        if job is None:
            # Rejected before a job existed (bad arguments, queue full): no task to create.
            body: dict[str, Any] = result if isinstance(result, dict) else {}
            texts = [c.get("text", "") for c in body.get("content", []) if isinstance(c, dict)]
            error = (body.get("structuredContent") or {}).get("error")
            raise MCPError(INVALID_PARAMS, " ".join(texts) or "generate_image was rejected", error)
        await self._service.jobs.mark_task(job, _inline_of(arguments))
        raw_meta = params.get("_meta")
        token = cast(Mapping[str, Any], raw_meta).get("progressToken") if isinstance(raw_meta, Mapping) else None
        self._watch(ctx.session, job, token)
        hint = f"Image generation started as task {job.job_id}; the client will deliver the images when it finishes."
        return {"task": self._task(job, modern=False), "_meta": {IMMEDIATE_RESPONSE_KEY: hint}}

    def _watch(self, session: ServerSession, job: Job, progress_token: object) -> None:
        watcher = asyncio.create_task(self._report(session, job, progress_token), name=f"task-{job.job_id}")
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _report(self, session: ServerSession, job: Job, progress_token: object) -> None:
        """Progress while the task runs (the token stays valid for the task's life), then one
        ``notifications/tasks/status`` when it ends. Both ride the connection's standalone channel."""
        step = 1  # the creating call's own (zero-second) wait may already have reported progress 1
        related = {RELATED_TASK_KEY: {"taskId": job.job_id}}

        async def on_update(update: Update) -> None:
            nonlocal step
            if update.state not in ACTIVE or not isinstance(progress_token, str | int):
                return
            step += 1
            params = ProgressNotificationParams(
                progress_token=progress_token, progress=step, message=update.message, _meta=related
            )
            await session.send_notification(ProgressNotification(params=params))

        try:
            await self._service.jobs.wait(job, math.inf, on_update, heartbeat=self._service.settings.progress_interval)
            status = TaskStatusNotificationParams.model_validate(self._task(job, modern=False), by_name=False)
            await session.send_notification(cast(ServerNotification, TaskStatusNotification(params=status)))
        except Exception:  # a lost push must not surface as an unhandled task error
            logger.warning("could not push the status of task %s", job.job_id, exc_info=True)

    # --- tasks/* methods ----------------------------------------------------------------------

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: GetTaskRequestParams) -> HandlerResult:
        if not _is_modern(ctx):
            return self._task(await self._lookup(ctx, params.task_id), modern=False)
        require_client_extension(ctx, TASKS_EXTENSION)
        job = await self._lookup(ctx, params.task_id)
        task = self._task(job, modern=True)
        if task["status"] == "completed":
            task["result"] = await self._payload(job, ctx.protocol_version)
        return task

    async def _result(self, ctx: ServerRequestContext[Any, Any], params: GetTaskPayloadRequestParams) -> HandlerResult:
        """Blocks until the task is terminal, then returns what the plain call would have."""
        job = await self._lookup(ctx, params.task_id)
        await self._service.jobs.wait(job, math.inf)
        payload = await self._payload(job, ctx.protocol_version)
        payload["_meta"] = {**payload.get("_meta", {}), RELATED_TASK_KEY: {"taskId": job.job_id}}
        return payload

    async def _list(self, ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams) -> HandlerResult:
        """The caller's tasks, newest first; the cursor is an opaque offset."""
        cursor = params.cursor
        if cursor is None:
            offset = 0
        elif cursor.isdigit() and len(cursor) < 10:
            offset = int(cursor)
        else:
            raise MCPError(INVALID_PARAMS, f"invalid tasks/list cursor {cursor[:40]!r}", {"cursor": cursor[:40]})
        owned = await self._service.jobs.list(self._owner(ctx), None, sys.maxsize)
        jobs = [job for job in owned if job.task_inline is not None]
        page = jobs[offset : offset + LIST_PAGE]
        body: dict[str, Any] = {"tasks": [self._task(job, modern=False) for job in page]}
        if len(jobs) > offset + LIST_PAGE:
            body["nextCursor"] = str(offset + LIST_PAGE)
        return body

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: CancelTaskRequestParams) -> HandlerResult:
        modern = _is_modern(ctx)
        if modern:
            require_client_extension(ctx, TASKS_EXTENSION)
        job = await self._lookup(ctx, params.task_id)
        if job.done:
            if modern:
                return {}  # cooperative: acknowledging a finished task is not an error there
            raise MCPError(
                INVALID_PARAMS,
                f"Cannot cancel task: already in terminal status {_status(job, modern)!r}",
                {"taskId": job.job_id},
            )
        # 2026-07-28 is eventually consistent (the ack may precede the cancelled state); at
        # 2025-11-25 the task must show `cancelled` before the response goes out.
        await self._service.jobs.cancel(job.owner, job.job_id, settle=0 if modern else CANCEL_SETTLE_S)
        return {} if modern else self._task(job, modern=False)

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskRequestParams) -> HandlerResult:
        """Our tasks never ask for input, so no response is outstanding; acknowledge and ignore."""
        require_client_extension(ctx, TASKS_EXTENSION)
        await self._lookup(ctx, params.task_id)
        return {}

    # --- helpers ------------------------------------------------------------------------------

    def _owner(self, ctx: ServerRequestContext[Any, Any]) -> str:
        return caller_of(self._service, Context(request_context=ctx)).owner

    def _declared(self, ctx: ServerRequestContext[Any, Any]) -> bool:
        capabilities = ctx.session.client_capabilities
        return bool(capabilities and capabilities.extensions and TASKS_EXTENSION in capabilities.extensions)

    async def _find(self, ctx: ServerRequestContext[Any, Any], job_id: str | None) -> Job | None:
        if job_id is None:
            return None
        try:
            return await self._service.jobs.get(self._owner(ctx), job_id)
        except JobNotFoundError:
            return None

    async def _lookup(self, ctx: ServerRequestContext[Any, Any], task_id: str) -> Job:
        """The caller's task, or -32602 (unknown, expired, another owner's, or a plain job: no probing)."""
        job = await self._find(ctx, task_id)
        if job is None or job.task_inline is None:
            ttl = int(self._service.settings.job_ttl)
            raise MCPError(
                INVALID_PARAMS,
                f"Failed to retrieve task: Task not found ({task_id[:80]!r} is no task of this client; "
                f"tasks are kept {ttl} s after they finish, MCP_JOB_TTL)",
                {"taskId": task_id[:80]},
            )
        return job

    def _task(self, job: Job, *, modern: bool) -> dict[str, Any]:
        """The wire ``Task`` (field names differ by era: ttl/pollInterval vs ttlMs/pollIntervalMs)."""
        message = f"{job.error.code}: {job.error.message}" if job.error is not None else job.message
        ttl = int(self._service.settings.job_ttl * 1000)
        return {
            "taskId": job.job_id,
            "status": _status(job, modern),
            "statusMessage": message,
            "createdAt": _iso(job.created_at),
            "lastUpdatedAt": _iso(job.updated_at),
            "ttlMs" if modern else "ttl": ttl,
            "pollIntervalMs" if modern else "pollInterval": POLL_INTERVAL_MS,
        }

    async def _payload(self, job: Job, version: str) -> dict[str, Any]:
        """The finished job as the ``CallToolResult`` a plain call gets at ``version``."""
        result = await job_result(self._service, job, cast(Inline, job.task_inline or "thumbnail"))
        dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        return wire_methods.serialize_server_result("tools/call", version, dumped)

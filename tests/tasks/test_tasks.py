"""MCP Tasks end to end: the TypeScript SDK's task client, and both protocol eras from Python.

2025-11-25 task creation is checked on the raw JSON-RPC wire (the Python SDK has no task
client and rejects a ``CreateTaskResult`` for ``tools/call``); 2026-07-28 goes through the
Python SDK client with a small ``io.modelcontextprotocol/tasks`` client extension.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, ListTasksRequest, Request, RequestParams, Result
from pydantic import BaseModel, ConfigDict

from mcp_image_server.jobs import Job, JobState
from mcp_image_server.models import GenerateParams
from mcp_image_server.tasks import _status
from tests.conftest import REPO, server_env
from tests.redisd import REDIS_PASSWORD, RedisServer

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("backends")]

HERE = Path(__file__).resolve().parent
WAIT = 60.0
EXT = "io.modelcontextprotocol/tasks"
RELATED = "io.modelcontextprotocol/related-task"
LEGACY_CAPABILITY: dict[str, Any] = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
FOX = {"prompt": "a red fox", "resolution": "256x256"}
MEDIUM = {"prompt": "a lighthouse", "style": "watercolor", "resolution": "1024x1024"}
"""About half a second on the local provider: long enough to be seen working."""
SLOW = {"prompt": "slow", "style": "watercolor", "resolution": "2048x2048", "n": 4}
"""Several seconds: the TypeScript client cancels it."""
CANCELLABLE = {"prompt": "slow", "style": "watercolor", "resolution": "1024x1024", "n": 4}
"""About two seconds in half-second renders, so a cancelled job's last render thread ends quickly."""
UNKNOWN = "0" * 32


def _iso(value: str) -> datetime:
    return datetime.fromisoformat(value)


# --- raw JSON-RPC over a stdio subprocess (2025-11-25 task creation) ----------------------------


class RawStdio:
    """Line-delimited JSON-RPC to a server subprocess; keeps every notification it receives."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self.initialize_result: dict[str, Any] = {}
        self._next = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.notifications: list[dict[str, Any]] = []
        self._arrived = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._proc.stdout is not None
        async for line in self._proc.stdout:
            message = json.loads(line)
            if "id" in message and ("result" in message or "error" in message):
                self._pending.pop(message["id"]).set_result(message)
            else:
                async with self._arrived:
                    self.notifications.append(message)
                    self._arrived.notify_all()

    async def send(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The full response message (``result`` or ``error``)."""
        assert self._proc.stdin is not None
        self._next += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next] = future
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next, "method": method}
        if params is not None:
            body["params"] = dict(params)
        self._proc.stdin.write(json.dumps(body).encode() + b"\n")
        await self._proc.stdin.drain()
        async with asyncio.timeout(WAIT):
            return await future

    async def result(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        response = await self.send(method, params)
        assert "result" in response, response
        result: dict[str, Any] = response["result"]
        return result

    async def error(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        response = await self.send(method, params)
        assert "error" in response, response
        error: dict[str, Any] = response["error"]
        return error

    async def notification(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        async with asyncio.timeout(WAIT), self._arrived:
            await self._arrived.wait_for(lambda: any(match(n) for n in self.notifications))
            return next(n for n in self.notifications if match(n))

    def status_pushes(self, task_id: str) -> list[str]:
        return [
            n["params"]["status"]
            for n in self.notifications
            if n["method"] == "notifications/tasks/status" and n["params"]["taskId"] == task_id
        ]


@pytest.fixture
def raw_stdio(tmp_path: Path) -> Callable[..., Any]:
    """``async with raw_stdio(version) as raw``: a handshaken raw JSON-RPC session."""

    @asynccontextmanager
    async def connect(version: str = "2025-11-25", env: Mapping[str, str] | None = None) -> AsyncIterator[RawStdio]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mcp_image_server",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=server_env(tmp_path / "images", env),
            cwd=str(tmp_path),
        )
        raw = RawStdio(proc)
        try:
            hello = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
            init = await raw.result("initialize", hello)
            assert init["protocolVersion"] == version
            raw.initialize_result = init
            assert proc.stdin is not None
            proc.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
            yield raw
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            async with asyncio.timeout(WAIT):
                await proc.wait()
            raw._reader.cancel()

    return connect


def _call(arguments: Mapping[str, Any], *, task: bool = True, token: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": "generate_image", "arguments": dict(arguments)}
    if task:
        params["task"] = {"ttl": 60_000}
    if token is not None:
        params["_meta"] = {"progressToken": token}
    return params


def _shape(result: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """What a result looks like, independent of ids: structuredContent keys and content block types."""
    return sorted(result["structuredContent"]), [block["type"] for block in result["content"]]


# --- 2025-11-25 ---------------------------------------------------------------------------------


async def test_capabilities_are_advertised_only_where_tasks_work(raw_stdio: Any, stdio_client: Any) -> None:
    async with raw_stdio("2025-11-25") as raw:
        caps = raw.initialize_result["capabilities"]
        assert caps["tasks"] == LEGACY_CAPABILITY and "extensions" not in caps
        tools = {t["name"]: t for t in (await raw.result("tools/list", {}))["tools"]}
        assert tools["generate_image"]["execution"] == {"taskSupport": "optional"}
        assert all("execution" not in t for name, t in tools.items() if name != "generate_image")
    async with raw_stdio("2025-06-18") as raw:
        assert "tasks" not in raw.initialize_result["capabilities"]
        assert all("execution" not in t for t in (await raw.result("tools/list", {}))["tools"])
        assert (await raw.error("tasks/get", {"taskId": UNKNOWN}))["code"] == -32601
        # No tasks at this version: the task field is ignored and the call runs normally.
        plain = await raw.result("tools/call", _call(FOX))
        assert "task" not in plain and plain["structuredContent"]["status"] == "succeeded"
    async with stdio_client(mode="legacy") as client:
        tasks = client.server_capabilities.tasks
        assert tasks is not None and tasks.requests is not None and tasks.requests.tools is not None
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert listed["generate_image"].execution is not None
        assert listed["generate_image"].execution.task_support == "optional"
    async with stdio_client(mode="auto") as client:
        assert client.protocol_version == "2026-07-28"
        assert client.server_capabilities.tasks is None
        assert client.server_capabilities.extensions == {EXT: {}, "io.modelcontextprotocol/ui": {}}
        assert all(t.execution is None for t in (await client.list_tools()).tools)


async def test_tasks_calls_while_the_shared_state_is_down_say_so_with_a_retry_hint(
    raw_stdio: Any, private_redis: RedisServer
) -> None:
    async with raw_stdio(env={"MCP_STATE_URL": private_redis.url}) as raw:
        task_id = (await raw.result("tools/call", _call(MEDIUM)))["task"]["taskId"]
        private_redis.kill()
        error = await raw.error("tasks/list", {})
        assert error["code"] == -32603 and "MCP_STATE_URL" in error["message"], error
        assert error["data"]["code"] == "state_unavailable" and error["data"]["retry_after"] > 0
        assert REDIS_PASSWORD not in json.dumps(error)
        private_redis.start()
        payload = await raw.result("tasks/result", {"taskId": task_id})  # the job ran on meanwhile
        assert payload["structuredContent"]["status"] == "succeeded"


async def test_legacy_task_runs_reports_and_returns_the_generate_image_result(raw_stdio: Any) -> None:
    async with raw_stdio() as raw:
        created = await raw.result("tools/call", _call(MEDIUM, token="p-1"))
        task = created["task"]
        task_id = task["taskId"]
        assert re.fullmatch(r"[0-9a-f]{32}", task_id)
        assert task["status"] == "working" and task["ttl"] == 3_600_000 and task["pollInterval"] == 1000
        assert _iso(task["createdAt"]) <= _iso(task["lastUpdatedAt"])
        assert task_id in created["_meta"]["io.modelcontextprotocol/model-immediate-response"]

        first = await raw.result("tasks/get", {"taskId": task_id})
        assert first["status"] == "working" and first["taskId"] == task_id
        payload = await raw.result("tasks/result", {"taskId": task_id})  # blocks until the task is done
        assert payload["_meta"][RELATED] == {"taskId": task_id}
        assert payload["structuredContent"]["status"] == "succeeded" and not payload["isError"]
        assert payload["structuredContent"]["job_id"] == task_id
        done = await raw.result("tasks/get", {"taskId": task_id})
        assert done["status"] == "completed" and done["statusMessage"] == "succeeded: 1 image(s)"
        assert _iso(done["lastUpdatedAt"]) >= _iso(first["lastUpdatedAt"])

        await raw.notification(lambda n: n["method"] == "notifications/tasks/status")
        assert raw.status_pushes(task_id) == ["completed"]
        progress = [n["params"] for n in raw.notifications if n["method"] == "notifications/progress"]
        assert progress and all(p["progressToken"] == "p-1" for p in progress)
        assert all(p["_meta"][RELATED] == {"taskId": task_id} for p in progress)
        assert [p["progress"] for p in progress] == sorted({p["progress"] for p in progress})

        plain = await raw.result("tools/call", _call(MEDIUM, task=False))
        assert _shape(payload) == _shape(plain) and "_meta" not in plain
        listed = (await raw.result("tasks/list", {}))["tasks"]
        assert [t["taskId"] for t in listed] == [task_id]  # the plain call's job is not a task
        assert (await raw.error("tasks/get", {"taskId": plain["structuredContent"]["job_id"]}))["code"] == -32602


async def test_legacy_cancel_and_protocol_errors(raw_stdio: Any, tmp_path: Path) -> None:
    async with raw_stdio() as raw:
        task_id = (await raw.result("tools/call", _call(CANCELLABLE)))["task"]["taskId"]
        cancelled = await raw.result("tasks/cancel", {"taskId": task_id})
        assert cancelled["taskId"] == task_id and cancelled["status"] == "cancelled"
        again = await raw.error("tasks/cancel", {"taskId": task_id})
        assert again["code"] == -32602 and "terminal status 'cancelled'" in again["message"]
        payload = await raw.result("tasks/result", {"taskId": task_id})
        assert payload["isError"] and payload["structuredContent"]["error"]["code"] == "generation_cancelled"
        assert payload["_meta"][RELATED] == {"taskId": task_id}
        await raw.notification(lambda n: n["method"] == "notifications/tasks/status")
        assert raw.status_pushes(task_id) == ["cancelled"]

        for method in ("tasks/get", "tasks/result", "tasks/cancel"):
            error = await raw.error(method, {"taskId": UNKNOWN})
            assert error["code"] == -32602 and error["message"].startswith("Failed to retrieve task")
        assert (await raw.error("tasks/list", {"cursor": "not-a-cursor"}))["code"] == -32602
        assert (await raw.error("tasks/update", {"taskId": task_id, "inputResponses": {}}))["code"] == -32601
        not_a_task_tool = await raw.error("tools/call", {"name": "list_generations", "arguments": {}, "task": {}})
        assert not_a_task_tool["code"] == -32601
        invalid = await raw.error("tools/call", _call({"prompt": ""}))
        assert invalid["code"] == -32602 and invalid["data"]["code"] == "invalid_argument"
        assert [t["taskId"] for t in (await raw.result("tasks/list", {}))["tasks"]] == [task_id]
    assert not [p for p in (tmp_path / "images").glob("*") if p.is_file()]  # (none at all on S3)


async def test_legacy_tasks_list_pages_with_an_opaque_cursor(raw_stdio: Any) -> None:
    async with raw_stdio() as raw:
        tiny = {"prompt": "dot", "resolution": "64x64", "inline": "none"}
        created = {(await raw.result("tools/call", _call(tiny)))["task"]["taskId"] for _ in range(51)}
        first = await raw.result("tasks/list", {})
        second = await raw.result("tasks/list", {"cursor": first["nextCursor"]})
        assert len(first["tasks"]) == 50 and len(second["tasks"]) == 1 and "nextCursor" not in second
        assert {t["taskId"] for t in first["tasks"] + second["tasks"]} == created


def test_job_states_map_to_each_eras_task_status() -> None:
    job = Job(job_id="a" * 32, owner="stdio", params=GenerateParams(prompt="x"), created_at=0.0)
    expected: dict[JobState, tuple[str, str]] = {
        "queued": ("working", "working"),
        "running": ("working", "working"),
        "saving": ("working", "working"),
        "succeeded": ("completed", "completed"),
        "cancelled": ("cancelled", "cancelled"),
        # A failed generation is a tool error: 2025-11-25 calls that failed, 2026-07-28 completed (isError).
        "failed": ("failed", "completed"),
    }
    for state, (legacy, modern) in expected.items():
        job.state = state
        assert (_status(job, modern=False), _status(job, modern=True)) == (legacy, modern)


# --- 2026-07-28: the io.modelcontextprotocol/tasks extension through the SDK client -------------


class TaskHandle(Result):
    """``CreateTaskResult`` (``resultType: "task"``) as the extension defines it."""

    result_type: Literal["task"] = "task"
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None


class TaskIdParams(RequestParams):
    task_id: str


class UpdateParams(TaskIdParams):
    input_responses: dict[str, Any]


class GetTask(Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskIdParams
    name_param = "taskId"


class CancelTask(Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskIdParams
    name_param = "taskId"


class UpdateTask(Request[UpdateParams, Literal["tasks/update"]]):
    method: Literal["tasks/update"] = "tasks/update"
    params: UpdateParams
    name_param = "taskId"


class ResultOfTask(Request[TaskIdParams, Literal["tasks/result"]]):
    method: Literal["tasks/result"] = "tasks/result"
    params: TaskIdParams


class WireResult(BaseModel):
    """Any result, every field kept as sent (the SDK validates results into a model)."""

    model_config = ConfigDict(extra="allow")


async def _send(session: ClientSession, request: Request[Any, Any]) -> dict[str, Any]:
    return dict((await session.send_request(request, WireResult)).model_extra or {})


async def _get(session: ClientSession, task_id: str) -> dict[str, Any]:
    return await _send(session, GetTask(params=TaskIdParams(task_id=task_id)))


class TasksClient(ClientExtension):
    """A minimal requester: declares the extension and resolves task handles by polling tasks/get."""

    identifier = EXT

    def __init__(self) -> None:
        self.handles: list[TaskHandle] = []
        self.statuses: list[str] = []

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=TaskHandle, resolve=self._resolve)]

    async def _resolve(self, handle: TaskHandle, ctx: ClaimContext) -> CallToolResult:
        self.handles.append(handle)
        async with asyncio.timeout(WAIT):
            while True:
                task = await _get(ctx.session, handle.task_id)
                self.statuses.append(task["status"])
                if task["status"] == "completed":
                    return CallToolResult.model_validate(task["result"], by_name=False)
                assert task["status"] == "working", task


async def test_modern_task_handle_is_polled_to_the_generate_image_result(tmp_path: Path) -> None:
    tasks = TasksClient()
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mcp_image_server"], env=server_env(tmp_path / "images"), cwd=str(tmp_path)
    )
    async with Client(params, mode="auto", extensions=[tasks]) as client:
        assert client.protocol_version == "2026-07-28"
        final = await client.call_tool("generate_image", MEDIUM | {"wait_seconds": 0})
        [handle] = tasks.handles
        assert handle.status == "working" and handle.ttl_ms == 3_600_000 and handle.poll_interval_ms == 1000
        assert tasks.statuses[0] == "working" and tasks.statuses[-1] == "completed"
        assert set(tasks.statuses) == {"working", "completed"}
        assert final.structured_content is not None and final.structured_content["job_id"] == handle.task_id
        # Finished within the bounded wait: the server answers directly, no task.
        plain = await client.call_tool("generate_image", MEDIUM)
        assert len(tasks.handles) == 1
        assert plain.structured_content is not None and plain.structured_content["status"] == "succeeded"
        assert sorted(final.structured_content) == sorted(plain.structured_content)
        assert [b.type for b in final.content] == [b.type for b in plain.content] == ["text", "resource_link", "image"]

        done = await _get(client.session, handle.task_id)
        assert done["status"] == "completed" and done["resultType"] == "complete"
        assert done["ttlMs"] == 3_600_000 and "ttl" not in done
        errors: dict[str, Request[Any, Any]] = {
            "unknown": GetTask(params=TaskIdParams(task_id=UNKNOWN)),
            "plain job": GetTask(params=TaskIdParams(task_id=plain.structured_content["job_id"])),
            "tasks/result": ResultOfTask(params=TaskIdParams(task_id=handle.task_id)),
            "tasks/list": ListTasksRequest(),
        }
        codes = {}
        for label, request in errors.items():
            with pytest.raises(MCPError) as caught:
                await _send(client.session, request)
            codes[label] = caught.value.error.code
        assert codes == {"unknown": -32602, "plain job": -32602, "tasks/result": -32601, "tasks/list": -32601}


async def test_modern_cancel_update_and_the_capability_gate(tmp_path: Path, stdio_client: Any) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mcp_image_server"], env=server_env(tmp_path / "images"), cwd=str(tmp_path)
    )
    async with Client(params, mode="auto", extensions=[TasksClient()]) as client:
        handle = await client.session.call_tool("generate_image", CANCELLABLE | {"wait_seconds": 0}, allow_claimed=True)
        assert isinstance(handle, TaskHandle) and handle.status == "working"
        task_id = handle.task_id
        update = UpdateTask(params=UpdateParams(task_id=task_id, input_responses={}))
        assert set(await _send(client.session, update)) == {"resultType", "_meta"}  # empty ack
        ack = await _send(client.session, CancelTask(params=TaskIdParams(task_id=task_id)))
        assert ack["resultType"] == "complete" and set(ack) == {"resultType", "_meta"}
        async with asyncio.timeout(WAIT):  # cancellation is eventually consistent: poll until it shows
            while (task := await _get(client.session, task_id))["status"] == "working":
                pass
        assert task["status"] == "cancelled" and "result" not in task
        again = await _send(client.session, CancelTask(params=TaskIdParams(task_id=task_id)))
        assert again["resultType"] == "complete"  # cooperative: a finished task is acknowledged
        with pytest.raises(MCPError) as caught:
            await _send(client.session, CancelTask(params=TaskIdParams(task_id=UNKNOWN)))
        assert caught.value.error.code == -32602
    # A client that does not declare the extension gets the job_id hand-back and no tasks/*.
    async with stdio_client(mode="auto") as client:
        result = await client.call_tool("generate_image", CANCELLABLE | {"wait_seconds": 0})
        assert result.structured_content is not None and result.structured_content["status"] != "succeeded"
        job_id = result.structured_content["job_id"]
        with pytest.raises(MCPError) as caught:
            await _get(client.session, job_id)
        assert caught.value.error.code == -32021
        assert caught.value.error.data == {"requiredCapabilities": {"extensions": {EXT: {}}}}
        await client.call_tool("cancel_generation", {"job_id": job_id})


# --- the TypeScript SDK client ------------------------------------------------------------------


@pytest.fixture(scope="module")
def node_client() -> Path:
    """The pinned TypeScript SDK, installed by install.sh (a no-op when already installed)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are required for the TypeScript SDK task client (tests/tasks/install.sh)")
    done = subprocess.run(["bash", str(HERE / "install.sh")], check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return HERE / "tasks_client.mjs"


async def _run_node(script: Path, env: Mapping[str, str]) -> list[dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(
        "node", str(script), cwd=str(HERE), env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        async with asyncio.timeout(100):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode()[-3000:]
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def _assert_typescript_flow(events: list[dict[str, Any]]) -> tuple[str, str]:
    """The whole TS run, in order; returns the (fox, slow) task ids."""
    by: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by.setdefault(event["event"], []).append(event)
    assert events[-1]["event"] == "done"
    [init] = by["initialized"]
    assert init["requested"] == "2025-11-25" and init["capabilities"]["tasks"] == LEGACY_CAPABILITY
    assert "extensions" not in init["capabilities"]
    execution = by["tools"][0]["execution"]
    assert execution.pop("generate_image") == "optional" and set(execution.values()) == {None}

    created = {e["label"]: e["task"] for e in by["task_created"]}
    fox, slow = created["fox"]["taskId"], created["slow"]["taskId"]
    assert created["fox"]["status"] == "working" and created["fox"]["ttl"] == 3_600_000
    fox_statuses = [e["status"] for e in by["task_status"] if e["label"] == "fox"]
    assert fox_statuses[-1] == "completed" and set(fox_statuses[:-1]) <= {"working"}
    [result] = [e for e in by["task_result"] if e["label"] == "fox"]
    assert result["taskId"] == result["jobId"] == result["relatedTask"] == fox
    assert not result["isError"] and result["status"] == "succeeded" and result["images"] == 1
    assert result["contentTypes"] == ["text", "resource_link", "image"]
    assert by["progress"][0]["count"] >= 1
    assert by["get"][0]["task"]["status"] == "completed"
    again, plain = by["result_again"][0], by["plain_result"][0]
    assert again["relatedTask"] == fox and again["jobId"] == fox
    assert (plain["structuredKeys"], plain["contentTypes"]) == (result["structuredKeys"], result["contentTypes"])
    assert plain["relatedTask"] is None

    assert by["cancel"][0]["taskId"] == slow and by["cancel"][0]["status"] == "cancelled"
    assert [e["status"] for e in by["task_status"] if e["label"] == "slow"] == ["cancelled"]
    [slow_error] = by["task_error"]
    assert slow_error["label"] == "slow" and "cancelled" in slow_error["message"]
    assert by["cancel_again"][0]["code"] == -32602
    pushes = {(e["taskId"], e["status"]) for e in by["status_notification"]}
    assert pushes == {(fox, "completed"), (slow, "cancelled")}

    assert by["list"][0]["tasks"] == [{"taskId": slow, "status": "cancelled"}, {"taskId": fox, "status": "completed"}]
    assert {e["label"]: e["code"] for e in by["unknown"]} == {"get": -32602, "result": -32602, "cancel": -32602}
    return fox, slow


async def test_typescript_sdk_client_over_stdio(node_client: Path, tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "TASKS_PYTHON": sys.executable,
        "TASKS_REPO": str(REPO),
        "TASKS_SAVE_DIR": str(tmp_path / "images"),
    }
    _assert_typescript_flow(await _run_node(node_client, env))


async def test_typescript_sdk_client_over_http_and_owner_isolation_in_both_eras(
    node_client: Path, tmp_path: Path
) -> None:
    http_env = {"MCP_TRANSPORT": "http", "MCP_PORT": "0", "MCP_AUTH_TOKEN": "tok-a,tok-b"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mcp_image_server",
        env=server_env(tmp_path / "images", http_env),
        cwd=str(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    drain: asyncio.Task[bytes] | None = None
    try:
        async with asyncio.timeout(WAIT):
            while not (found := re.search(rb"endpoint: (http://127\.0\.0\.1:\d+/mcp)", await proc.stderr.readline())):
                pass
        url = found.group(1).decode()
        drain = asyncio.create_task(proc.stderr.read())  # keep the log pipe from filling up
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "TASKS_SERVER_URL": url, "TASKS_AUTH_TOKEN": "tok-a"}
        fox, slow = _assert_typescript_flow(await _run_node(node_client, env))

        for token, visible in (("tok-b", []), ("tok-a", [slow, fox])):
            headers = {"Authorization": f"Bearer {token}"}
            async with (
                httpx2.AsyncClient(headers=headers) as http,
                Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
            ):
                listed = await _send(client.session, ListTasksRequest())
                assert [t["taskId"] for t in listed["tasks"]] == visible
                if not visible:  # another token's task ids are unknown to this caller
                    with pytest.raises(MCPError) as caught:
                        await _get(client.session, fox)
                    assert caught.value.error.code == -32602

        # The 2026-07-28 extension over HTTP, and the same isolation there.
        clients = {token: TasksClient() for token in ("tok-a", "tok-b")}
        async with AsyncExitStack() as stack:
            modern = {}
            for token, extension in clients.items():
                http = await stack.enter_async_context(httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}))
                transport = streamable_http_client(url, http_client=http)
                modern[token] = await stack.enter_async_context(Client(transport, mode="auto", extensions=[extension]))
            final = await modern["tok-a"].call_tool("generate_image", MEDIUM | {"wait_seconds": 0})
            [handle] = clients["tok-a"].handles
            assert final.structured_content is not None and final.structured_content["job_id"] == handle.task_id
            assert clients["tok-a"].statuses[-1] == "completed"
            with pytest.raises(MCPError) as caught:
                await _get(modern["tok-b"].session, handle.task_id)
            assert caught.value.error.code == -32602
    finally:
        proc.terminate()
        async with asyncio.timeout(WAIT):
            await proc.wait()
            if drain is not None:
                await drain

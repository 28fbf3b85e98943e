"""ModelScope API-Inference emulator (PROVIDERS.md §4): async image tasks over plain HTTP.

``POST /v1/images/generations`` needs ``X-ModelScope-Async-Mode: true`` and returns a task id;
``GET /v1/tasks/{id}`` needs ``X-ModelScope-Task-Type: image_generation`` and walks
PENDING -> RUNNING -> SUCCEED (or FAILED). Error bodies use ``{"errors": {...}}`` [U].

Edit models take ``image_url``: a string or a list of ``data:image/...;base64,`` URIs (decoded
and read as images here, recorded on the task) or http(s) URLs (recorded, never fetched).
Without a ``size`` an edit comes back the shape of its first decoded input.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from aiohttp import web
from PIL import Image, UnidentifiedImageError

from .common import FILE_FAULTS, STREAM_FAULTS, Emulator, json_bytes

__all__ = ["ModelScopeEmulator"]

_SIZE: Final = re.compile(r"^(\d+)x(\d+)$")
_DATA_URI: Final = re.compile(r"^data:(image/[a-z0-9.+-]+);base64,(.*)$", re.DOTALL)
_PIL_MIME: Final = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
EDIT_MODELS: Final = frozenset({"Qwen/Qwen-Image-Edit", "Qwen/Qwen-Image-Edit-2509", "Qwen/Qwen-Image-Edit-2511"})
_FIELDS: Final = frozenset(
    ["model", "prompt", "negative_prompt", "size", "seed", "steps", "guidance", "image_url", "loras"]
)
_FAULTS: Final[dict[str, tuple[int, str, str]]] = {
    "rate_limit": (429, "limit_burst_rate", "Request rate increased too quickly, please try again later."),
    "quota": (429, "limit_requests", "You have exceeded today's quota for API-Inference."),
    "server_error": (500, "InternalError", "Internal server error."),
    "unavailable": (503, "ServiceUnavailable", "Server is busy, please try again later."),
    "moderation": (400, "DataInspectionFailed", "Input data may contain inappropriate content."),
    "invalid_argument": (400, "InvalidParameter", "size is out of range."),
    "auth": (401, "InvalidApiKey", "Authentication failed: invalid token."),
    "unknown_model": (404, "ModelNotFound", "Model not found or not supported by API-Inference."),
}


@dataclass(frozen=True, slots=True)
class InputSeen:
    """One ``image_url`` entry as the emulator understood it: a decoded image, or a URL it did not fetch."""

    mime_type: str | None
    width: int | None
    height: int | None
    size_bytes: int | None = None
    url: str | None = None


@dataclass(slots=True)
class Task:
    task_id: str
    width: int
    height: int
    seed: int
    created: float
    polls: int = 0
    failure: tuple[str, str] | None = None
    urls: list[str] = field(default_factory=list)
    model: str = ""
    inputs: tuple[InputSeen, ...] = ()


class ModelScopeEmulator(Emulator):
    """``async with ModelScopeEmulator(api_key=...) as emu: ...``; fault routes ``submit``, ``task``,
    ``files``, ``result``. ``job_failed`` ends the task FAILED (``code=``/``message=``)."""

    vendor = "modelscope"
    api_route = "submit"
    fault_routes: ClassVar[Mapping[str, str]] = {"job_failed": "task"}
    supported_faults = frozenset({"hang", "malformed", "job_failed", *_FAULTS, *FILE_FAULTS, *STREAM_FAULTS})

    def __init__(
        self,
        *,
        api_key: str = "ms-emulator",
        models: Collection[str] | None = None,
        edit_models: Collection[str] = EDIT_MODELS,
        max_input_images: int = 3,
        max_input_bytes: int = 10 * 1024 * 1024,
        size_range: tuple[int, int] = (64, 1664),
        job_polls: int = 2,
        job_seconds: float = 0.0,
        image_format: str = "png",
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
    ) -> None:
        super().__init__(host=host, port=port, latency=latency)
        self.api_key = api_key
        self.models = set(models) if models is not None else None
        self.edit_models = set(edit_models)
        """Models that take (and need) ``image_url``; every other model refuses it."""
        self.max_input_images = max_input_images
        self.max_input_bytes = max_input_bytes
        """Decoded bytes allowed per inline input."""
        self.size_range = size_range
        self.job_polls = job_polls
        self.job_seconds = job_seconds
        self.image_format = image_format
        self.tasks: dict[str, Task] = {}

    def env(self) -> dict[str, str]:
        return {"MODELSCOPE_API_KEY": self.api_key, "MODELSCOPE_BASE_URL": self.origin}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/images/generations", self._submit)
        app.router.add_get("/v1/tasks/{task_id}", self._task)

    @staticmethod
    def _reply(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        body = {**body, "request_id": str(uuid.uuid4())}
        return web.Response(
            status=status, body=json_bytes(body, ascii_only=False), content_type="application/json", headers=headers
        )

    def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
        return self._reply({"errors": {"code": code, "message": message}}, status, headers)

    def _check_auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._error(401, "InvalidApiKey", "Authentication failed: invalid token.")
        return None

    def _fault_reply(self, kind: str, params: dict[str, Any]) -> web.Response | None:
        if kind == "malformed":
            return web.Response(body=b"<html><body>502 Bad Gateway</body></html>", content_type="text/html")
        if kind not in _FAULTS:
            return None
        status, code, message = _FAULTS[kind]
        headers = {"Retry-After": str(params.get("retry_after", 3))} if kind == "rate_limit" else None
        if kind == "quota":  # the daily allowance is spent: the remaining counters say so
            headers = {"modelscope-ratelimit-requests-limit": "2000", "modelscope-ratelimit-requests-remaining": "0"}
        return self._error(status, code, message, headers)

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        rec, fault = await self.enter(request, "submit")
        if fault is not None and (reply := self._fault_reply(fault.kind, fault.params)) is not None:
            return reply
        if (denied := self._check_auth(request)) is not None:
            return denied
        if rec.headers.get("X-ModelScope-Async-Mode", "").lower() != "true":
            return self._error(
                400, "InvalidParameter", "Synchronous mode is not emulated; send X-ModelScope-Async-Mode: true."
            )
        if not isinstance(rec.body, dict):
            return self._error(400, "InvalidParameter", "The request body is not valid JSON.")
        body = rec.json
        unknown = sorted(set(body) - _FIELDS)
        model, prompt = body.get("model"), body.get("prompt")
        seed, guidance = body.get("seed", 0), body.get("guidance", 4.0)
        lo, hi = self.size_range
        size = body.get("size", "1024x1024")
        m = _SIZE.match(size) if isinstance(size, str) else None
        problems = [
            (not unknown, f"Unknown parameter: {unknown[0] if unknown else ''}"),
            (isinstance(model, str) and bool(model), "model is required"),
            (isinstance(prompt, str) and 0 < len(prompt) < 2000, "prompt is required (< 2000 characters)"),
            (m is not None and all(lo <= int(v) <= hi for v in m.groups()), f"size must be WxH within {lo}..{hi}"),
            (isinstance(seed, int) and 0 <= seed <= 2**31 - 1, "seed must be in [0, 2^31-1]"),
            (body.get("steps", 30) in range(1, 101), "steps must be in [1, 100]"),
            (isinstance(guidance, int | float) and 1.5 <= guidance <= 20, "guidance must be in [1.5, 20]"),
            (len(body.get("negative_prompt", "")) < 2000, "negative_prompt must be < 2000 characters"),
        ]
        for ok, message in problems:
            if not ok:
                return self._error(400, "InvalidParameter", message)
        if self.models is not None and model not in self.models:
            return self._error(404, "ModelNotFound", f"Model {model} not found or not supported by API-Inference.")
        inputs = self._inputs(body.get("image_url"))
        if isinstance(inputs, str):
            return self._error(400, "InvalidParameter", inputs)
        if inputs and model not in self.edit_models:
            return self._error(400, "InvalidParameter", f"Model {model} does not support image_url.")
        if not inputs and model in self.edit_models:
            return self._error(400, "InvalidParameter", f"image_url is required for model {model}.")
        assert m is not None
        width, height = int(m[1]), int(m[2])
        first = next((i for i in inputs if i.width and i.height), None)
        if "size" not in body and first is not None and first.width and first.height:
            scale = min(1.0, hi / max(first.width, first.height))  # the input's shape, within the range
            width, height = max(lo, round(first.width * scale)), max(lo, round(first.height * scale))
        task = Task(str(uuid.uuid4()), width, height, seed, time.monotonic(), model=str(model), inputs=tuple(inputs))
        self.tasks[task.task_id] = task
        quota = {"modelscope-ratelimit-requests-limit": "2000", "modelscope-ratelimit-requests-remaining": "1999"}
        return self._reply({"task_id": task.task_id}, headers=quota)

    def _inputs(self, value: object) -> list[InputSeen] | str:
        """Decode ``image_url``; a string return is the 400 message."""
        if value is None:
            return []
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
            return "image_url must be a string or a non-empty list of strings."
        if len(items) > self.max_input_images:
            return f"image_url takes at most {self.max_input_images} images, got {len(items)}."
        seen: list[InputSeen] = []
        for i, item in enumerate(items):
            if item.startswith(("http://", "https://")):
                seen.append(InputSeen(None, None, None, url=item))
                continue
            m = _DATA_URI.match(item)
            if m is None:
                return f"image_url[{i}] must be an http(s) URL or a data:image/...;base64, URI."
            try:
                data = base64.b64decode(m[2], validate=True)
            except (binascii.Error, ValueError):
                return f"image_url[{i}] is not valid base64."
            if len(data) > self.max_input_bytes:
                return f"image_url[{i}] is larger than {self.max_input_bytes} bytes."
            try:
                with Image.open(io.BytesIO(data)) as img:
                    fmt, (width, height) = img.format, img.size
                    img.load()  # a truncated file fails here, not at the header
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
                return f"image_url[{i}] is not a readable image."
            mime = _PIL_MIME.get(fmt or "")
            if mime is None:
                return f"image_url[{i}] is {fmt}; PNG, JPEG or WebP expected."
            if mime != m[1]:
                return f"image_url[{i}] says {m[1]} but holds {mime}."
            seen.append(InputSeen(mime, width, height, len(data)))
        return seen

    async def _task(self, request: web.Request) -> web.StreamResponse:
        rec, fault = await self.enter(request, "task")
        if fault is not None and (reply := self._fault_reply(fault.kind, fault.params)) is not None:
            return reply
        if (denied := self._check_auth(request)) is not None:
            return denied
        if rec.headers.get("X-ModelScope-Task-Type") != "image_generation":
            return self._error(400, "InvalidParameter", "Missing header X-ModelScope-Task-Type.")
        task = self.tasks.get(request.match_info["task_id"])
        if task is None:
            return self._error(404, "TaskNotFound", "Task not found.")
        task.polls += 1
        if fault is not None and fault.kind == "job_failed":
            task.failure = (
                fault.params.get("code", "InternalError"),
                fault.params.get("message", "Image generation failed."),
            )
        body: dict[str, Any] = {"task_id": task.task_id}
        if task.failure is not None:
            body.update(task_status="FAILED", errors={"code": task.failure[0], "message": task.failure[1]})
        elif task.polls <= self.job_polls or time.monotonic() - task.created < self.job_seconds:
            body["task_status"] = "PENDING" if task.polls == 1 else "RUNNING"
        else:
            if not task.urls:
                data, mime = self.render(task.width, task.height, seed=task.seed)
                task.urls.append(self.put_file(request, f"{task.task_id}.{mime.removeprefix('image/')}", data, mime))
            body.update(task_status="SUCCEED", output_images=task.urls)
        return self._reply(body)

"""ModelScope API-Inference (Qwen-Image and friends) over plain aiohttp (PROVIDERS.md §4).

Each image is one asynchronous task: submit with ``X-ModelScope-Async-Mode: true``, poll
``/v1/tasks/{id}`` with ``X-ModelScope-Task-Type: image_generation``, download the result URL
at once. ``n`` images are ``n`` tasks run side by side, each with its own seed.

Edits are the same task on an edit model (Qwen-Image-Edit-2511) with ``image_url``: the inputs
inline as ``data:`` URIs, a string for one image and a list for several (the first is the one
to change). ModelScope documents ``image_url`` as a public URL; the inline form is [U].
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from ..config import Settings
from ..errors import (
    AuthFailedError,
    ContentRejectedError,
    InvalidArgumentError,
    MaskMismatchError,
    ModelNotFoundError,
    ProviderError,
    ProviderInvalidArgumentError,
    ProviderNotConfiguredError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
    TooManyImagesError,
    UnknownResolutionError,
    UnsupportedOptionError,
)
from ..imaging import fit_input
from ..models import GeneratedImage, GenerationRequest, InputImage, ProgressFn, ProviderCatalog, ProviderResult
from .base import Provider, ProviderSpec
from .download import LazySession, download_image, gather_all, redact, report, retry_after_seconds

__all__ = ["CATALOG", "SPEC", "ModelScopeProvider"]

NAME: Final = "modelscope"
DEFAULT_BASE_URL: Final = "https://api-inference.modelscope.cn"
GENERATION_MODELS: Final = (
    "Qwen/Qwen-Image",
    "Qwen/Qwen-Image-2512",
    "Tongyi-MAI/Z-Image-Turbo",
    "MAILAND/majicflus_v1",
)
"""Text-to-image models: they take no ``image_url``, so an edit on one is refused before any call."""
EDIT_MODELS: Final = ("Qwen/Qwen-Image-Edit-2511", "Qwen/Qwen-Image-Edit-2509", "Qwen/Qwen-Image-Edit")
DEFAULT_EDIT_MODEL: Final = EDIT_MODELS[0]
"""Used for edits unless the request names a model (``Settings.modelscope_edit_model`` once it exists)."""
MAX_INPUT_IMAGES: Final = 3
"""Qwen-Image-Edit-2509/2511 are trained for 1-3 input images (model card)."""
INPUT_TYPES: Final = ("image/png", "image/jpeg")
INPUT_MAX_SIDE: Final = 2048
"""The edit models work at about one megapixel; larger inputs only make the request bigger [U]."""
INPUT_MAX_BYTES: Final = 4 * 1024 * 1024
"""Per input before base64; the request-body limit of the live API is not documented [U]."""

CATALOG: Final = ProviderCatalog(
    name=NAME,
    display_name="ModelScope API-Inference",
    description="Open models (Qwen-Image by default) on ModelScope's free API-Inference quota.",
    models=GENERATION_MODELS + EDIT_MODELS,
    styles=(),
    resolutions=("1328x1328", "1664x928", "928x1664", "1472x1140", "1140x1472", "1584x1056", "1056x1584", "1024x1024"),
    default_resolution="1328x1328",
    formats=("png", "jpeg", "webp"),
    max_n=4,
    max_prompt_chars=2000,
    size_range=(64, 1664),
    options=("steps", "guidance"),
    notes=(
        "Any WxH with sides 64-1664 (Qwen-Image's range). n images are n tasks. Options: steps 1-100, "
        "guidance 1.5-20. Free quota: about 2000 calls a day. Results are converted to the requested format."
    ),
    max_input_images=MAX_INPUT_IMAGES,
    supports_mask=False,
    edit_notes=(
        f"{DEFAULT_EDIT_MODEL} on the same task API, images in image_url: 1-{MAX_INPUT_IMAGES} (the first is "
        "edited, the others are references), no mask. Inputs are sent inline as data URIs (PNG/JPEG, at most "
        f"{INPUT_MAX_SIDE} px a side and {INPUT_MAX_BYTES // (1024 * 1024)} MB each); ModelScope documents a public "
        "URL there, so inline inputs are unverified against the live API. Without a size the output follows "
        "the first image."
    ),
)

Stage = Literal["submit", "poll", "done"]
_DONE: Final = frozenset({"SUCCEED", "SUCCESS", "SUCCEEDED"})
_FAILED: Final = frozenset({"FAILED", "FAILURE", "CANCELED", "CANCELLED", "TIMEOUT"})
_MODERATION_HINTS: Final = ("inappropriate", "datainspection", "sensitive", "moderation", "risk", "green")
_MAX_POLL_ERRORS: Final = 3
"""Transient poll failures tolerated in a row: re-polling a running task beats resubmitting it."""


class _VendorError(Exception):
    """An HTTP error status or a FAILED task, carrying what ``_map_error`` needs."""

    def __init__(self, status: int | None, code: str, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(f"{status or 'task'} {code}: {message}")
        self.status, self.code, self.message, self.headers = status, code, message, dict(headers or {})


def _vendor_error(data: object) -> tuple[str, str]:
    """``(code, message)`` from the shapes ModelScope uses: ``errors`` as dict or list, ``error``, ``message``."""
    if not isinstance(data, dict):
        return "", ""
    err = data.get("errors") or data.get("error") or {}
    if isinstance(err, list):
        err = err[0] if err else {}
    if isinstance(err, str):
        return "", err
    if not isinstance(err, dict):
        return "", str(data.get("message") or "")
    return str(err.get("code") or ""), str(err.get("message") or data.get("message") or "")


@dataclass(frozen=True, slots=True)
class _Task:
    """A parsed ``/v1/tasks/{id}`` reply."""

    task_id: str
    status: str
    images: tuple[str, ...]
    error: tuple[str, str]

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> _Task:
        status, images = data.get("task_status"), data.get("output_images") or []
        if not isinstance(status, str) or not isinstance(images, list):
            raise TypeError("task reply without task_status / output_images")
        return cls(
            str(data.get("task_id", "")),
            status.upper(),
            tuple(u for u in images if isinstance(u, str)),
            _vendor_error(data),
        )


def _map_error(exc: BaseException, secrets: Iterable[str], stage: Stage, **context: Any) -> ProviderError:
    """The one place aiohttp, HTTP-status, task and timeout failures become ``errors.py`` classes.

    While a task may be running (a submit whose answer was lost, or polling) a retry would start
    a second task, so those errors are not ``retryable``.
    """
    import aiohttp

    details = {k: v for k, v in context.items() if v is not None}
    never_sent = isinstance(exc, aiohttp.ClientConnectorError)
    ambiguous = isinstance(exc, TimeoutError | aiohttp.ClientError) and not never_sent
    retryable = False if stage == "poll" or (stage == "submit" and ambiguous) else None
    if isinstance(exc, TimeoutError):
        return ProviderTimeoutError(
            "ModelScope did not finish in time", provider=NAME, details=details, retryable=retryable
        )
    if isinstance(exc, aiohttp.ClientError):
        return ProviderUnavailableError(
            f"cannot reach ModelScope ({type(exc).__name__})", provider=NAME, details=details, retryable=retryable
        )
    if not isinstance(exc, _VendorError):  # ValueError: not JSON; TypeError: JSON of the wrong shape
        return ProviderUnavailableError(
            "ModelScope sent a malformed response",
            provider=NAME,
            details={**details, "reason": type(exc).__name__},
            retryable=retryable,
        )
    status, code = exc.status, exc.code
    message = f"ModelScope error {status or 'task'} {code}: {redact(exc.message, secrets)[:300]}"
    details.update({k: v for k, v in {"status": status, "vendor_code": code}.items() if v})
    text = f"{code} {exc.message}".lower()
    quota_gone = any(
        exc.headers.get(h) == "0"
        for h in ("modelscope-ratelimit-requests-remaining", "modelscope-ratelimit-model-requests-remaining")
    )
    if status == 429 and not quota_gone:
        return RateLimitedError(
            message, provider=NAME, details=details, retry_after=retry_after_seconds(exc.headers), retryable=retryable
        )
    cls: type[ProviderError]
    if status in (401, 403):
        cls = AuthFailedError
    elif any(hint in text for hint in _MODERATION_HINTS):
        cls = ContentRejectedError
    elif status == 404 and stage == "submit":
        cls = ModelNotFoundError
    elif status is None or status in (408, 409) or status >= 500:  # a FAILED task is a failed attempt
        cls = ProviderUnavailableError
    elif status in (400, 422):
        cls = ProviderInvalidArgumentError
    else:  # 429 with the daily quota spent, 404 for a lost task
        cls = ProviderError
    return cls(message, provider=NAME, details=details, retryable=retryable)


@dataclass(slots=True)
class _Running:
    """Tasks that may be running server-side; a timeout with any of them is not retryable."""

    count: int = 0


class ModelScopeProvider(Provider):
    catalog = CATALOG

    def __init__(self, settings: Settings) -> None:
        if settings.modelscope_api_key is None:
            raise ProviderNotConfiguredError(
                "modelscope needs MODELSCOPE_API_KEY (or MODELSCOPE_SDK_TOKEN; Settings.modelscope_api_key)",
                details={"provider": NAME},
            )
        self._key = settings.modelscope_api_key.get()
        self._base = (settings.modelscope_base_url or DEFAULT_BASE_URL).rstrip("/")
        self._model = settings.modelscope_model
        self._edit_model = settings.modelscope_edit_model
        self._timeout = settings.modelscope_timeout
        self._poll_interval = settings.modelscope_poll_interval
        self._max_bytes = settings.download_max_bytes
        self._download_timeout = settings.download_timeout
        self._http = LazySession()

    async def aclose(self) -> None:
        await self._http.aclose()

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        """Validate and build one task's body (no I/O, so errors come early)."""
        if request.style is not None:
            raise InvalidArgumentError("modelscope has no styles", details={"provider": NAME})
        unknown = sorted(set(request.options) - set(CATALOG.options))
        if unknown:
            raise UnsupportedOptionError(
                f"modelscope has no option(s) {', '.join(unknown)}", details={"provider": NAME, "options": unknown}
            )
        model = request.model or (self._edit_model if request.is_edit else self._model)
        if request.is_edit:
            self._check_edit(request, model)
        lo, hi = CATALOG.size_range or (64, 1664)
        width, height = (request.width, request.height) if request.width else (1328, 1328)
        if not (lo <= width <= hi and lo <= (height or 0) <= hi):
            raise UnknownResolutionError(
                f"modelscope sizes must have sides within {lo}..{hi}",
                details={"provider": NAME, "resolution": request.resolution},
            )
        if not 1 <= request.n <= CATALOG.max_n:
            raise InvalidArgumentError(f"modelscope makes 1-{CATALOG.max_n} images per request, got {request.n}")
        if request.seed is not None and not 0 <= request.seed <= 2**31 - 1:
            raise InvalidArgumentError("modelscope seeds must be within 0..2147483647")
        steps, guidance = request.options.get("steps"), request.options.get("guidance")
        if steps is not None and (type(steps) is not int or not 1 <= steps <= 100):
            raise InvalidArgumentError("modelscope option steps must be an integer 1-100", details={"option": "steps"})
        if guidance is not None and (not isinstance(guidance, int | float) or not 1.5 <= guidance <= 20):
            raise InvalidArgumentError("modelscope option guidance must be 1.5-20", details={"option": "guidance"})
        body: dict[str, Any] = {
            "model": model,
            "prompt": request.prompt,
            "size": f"{width}x{height}",
            **request.options,
        }
        if request.is_edit and request.width is None:  # no size: the edit keeps the input's shape
            del body["size"]
        if request.negative_prompt:
            body["negative_prompt"] = request.negative_prompt
        return body

    @staticmethod
    def _check_edit(request: GenerationRequest, model: str) -> None:
        """The service checks count and mask against the catalog; this keeps direct callers honest."""
        if len(request.images) > MAX_INPUT_IMAGES:
            raise TooManyImagesError(
                f"modelscope edits take at most {MAX_INPUT_IMAGES} images, got {len(request.images)}",
                details={"provider": NAME, "max_images": MAX_INPUT_IMAGES, "count": len(request.images)},
            )
        if request.mask is not None:
            raise MaskMismatchError("modelscope edits take no mask", details={"provider": NAME})
        if model in GENERATION_MODELS:
            raise InvalidArgumentError(
                f"modelscope model {model} cannot edit images; use an edit model such as {DEFAULT_EDIT_MODEL}",
                details={"provider": NAME, "model": model, "edit_models": list(EDIT_MODELS)},
            )

    @staticmethod
    async def _image_url(images: tuple[InputImage, ...]) -> str | list[str]:
        """The inputs as data URIs: one string for one image (the documented form), else a list."""
        fitted = [
            await asyncio.to_thread(
                fit_input, image, INPUT_TYPES, max_side=INPUT_MAX_SIDE, max_bytes=INPUT_MAX_BYTES, min_side=64
            )
            for image in images
        ]
        uris = [f"data:{i.mime_type};base64,{base64.b64encode(i.data).decode('ascii')}" for i in fitted]
        return uris[0] if len(uris) == 1 else uris

    async def generate(self, request: GenerationRequest, progress: ProgressFn | None = None) -> ProviderResult:
        body = self._body(request)
        if request.is_edit and not request.resume:  # a resumed task has its inputs already
            body["image_url"] = await self._image_url(request.images)
        running = _Running()
        seeds = [None if request.seed is None else (request.seed + i) % 2**31 for i in range(request.n)]
        # Resumed (a lost replica's job): poll the tasks it is known to have submitted, submit none,
        # since a task whose id was not saved may exist too and must not be paid for twice.
        tasks = (
            (self._task(body, None, request, progress, running, task_id) for task_id in request.resume)
            if request.resume else (self._task(body, seed, request, progress, running) for seed in seeds)
        )
        try:
            async with asyncio.timeout(self._timeout):
                images = await gather_all(tasks)
        except TimeoutError as exc:
            raise _map_error(exc, (self._key,), "poll" if running.count else "done", timeout_s=self._timeout) from exc
        warnings = () if len(images) == request.n else (
            f"modelscope resumed {len(images)} of {request.n} tasks after a replica was lost",
        )
        return ProviderResult(tuple(images), model=body["model"], warnings=warnings)

    async def _json(
        self, method: str, path: str, stage: Stage, body: dict[str, Any] | None = None, **context: Any
    ) -> dict[str, Any]:
        """One API call; every failure leaves through ``_map_error``."""
        import aiohttp

        headers = {"Authorization": f"Bearer {self._key}"}
        if body is not None:
            headers |= {"Content-Type": "application/json", "X-ModelScope-Async-Mode": "true"}
        else:
            headers["X-ModelScope-Task-Type"] = "image_generation"
        payload = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        try:
            async with self._http.get().request(method, self._base + path, headers=headers, data=payload) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    try:
                        parsed = json.loads(raw)
                    except ValueError:
                        parsed = None
                    code, message = _vendor_error(parsed)
                    raise _VendorError(resp.status, code, message or resp.reason or "", resp.headers)
                data = json.loads(raw)
                if not isinstance(data, dict):
                    raise TypeError("reply is not a JSON object")
                return data
        except (aiohttp.ClientError, _VendorError, ValueError, TypeError) as exc:
            raise _map_error(exc, (self._key,), stage, **context) from exc

    async def _task(
        self,
        body: dict[str, Any],
        seed: int | None,
        request: GenerationRequest,
        progress: ProgressFn | None,
        running: _Running,
        task_id: str | None = None,
    ) -> GeneratedImage:
        running.count += 1
        if task_id is None:
            submitted = await self._json(
                "POST", "/v1/images/generations", "submit", body if seed is None else {**body, "seed": seed}
            )
            task_id = submitted.get("task_id")
            if not isinstance(task_id, str) or not task_id:
                running.count -= 1
                raise _map_error(ValueError("no task_id"), (self._key,), "done")
            await report(progress, f"submitted job {task_id}")
        else:
            await report(progress, f"resumed job {task_id}")
        loop = asyncio.get_running_loop()
        started, failures, last = loop.time(), 0, ""
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                task = _Task.parse(await self._json("GET", f"/v1/tasks/{task_id}", "poll", task_id=task_id))
            except ProviderError as exc:
                failures += 1
                if exc.transient and failures <= _MAX_POLL_ERRORS:
                    continue
                raise
            except TypeError as exc:
                raise _map_error(exc, (self._key,), "poll", task_id=task_id) from exc
            failures = 0
            if task.status in _DONE | _FAILED:
                running.count -= 1
            if task.status in _FAILED:
                failed = _VendorError(None, task.error[0] or task.status, task.error[1] or "task failed")
                raise _map_error(failed, (self._key,), "done", task_id=task_id) from failed
            if task.status in _DONE:
                break
            if task.status == "PENDING" and last != "PENDING":
                await report(progress, "queued")
            elif task.status != "PENDING":
                await report(progress, f"running {loop.time() - started:.0f} s")
            last = task.status
        if not task.images:
            raise ProviderUnavailableError(
                "ModelScope finished the task without images", provider=NAME, details={"task_id": task_id}
            )
        await report(progress, "downloading")
        return await download_image(
            self._http.get(),
            task.images[0],
            provider=NAME,
            max_bytes=self._max_bytes,
            timeout=self._download_timeout,
            want=request.output_format,
            seed=seed,
        )


def _is_configured(settings: Settings) -> bool:
    return settings.modelscope_api_key is not None


SPEC: Final = ProviderSpec(
    catalog=CATALOG,
    is_configured=_is_configured,
    factory=ModelScopeProvider,
    order=40,
    credentials_hint="MODELSCOPE_API_KEY (a ModelScope access token)",
)

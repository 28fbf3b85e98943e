"""Tencent Hunyuan image jobs: SubmitHunyuanImageJob, then QueryHunyuanImageJob until done (PROVIDERS.md §1).

Uses the SDK's async client (httpx) so polling never blocks the loop. Result URLs live one
hour, so they are downloaded as soon as the job reports status "5".

Edits are image-to-image on the same job: one input as ``ContentImage.ImageBase64`` (JPEG or
PNG, under 5000 px a side and 8 MB as base64, per the SDK docstring). With an input the job
takes only the four sizes up to 1024x1024 (or none), and keeps prompt rewriting on, so a seed
is not honoured.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

from ..config import Settings
from ..errors import (
    AuthFailedError,
    ContentRejectedError,
    InvalidArgumentError,
    MaskMismatchError,
    ProviderError,
    ProviderInvalidArgumentError,
    ProviderNotConfiguredError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
    TooManyImagesError,
    UnknownResolutionError,
    UnknownStyleError,
    UnsupportedOptionError,
)
from ..imaging import fit_input
from ..models import GeneratedImage, GenerationRequest, ProgressFn, ProviderCatalog, ProviderResult, StyleInfo
from .base import Provider, ProviderSpec
from .download import LazySession, download_image, gather_all, redact, report

if TYPE_CHECKING:
    from tencentcloud.hunyuan.v20230901.hunyuan_client_async import HunyuanClient

__all__ = ["CATALOG", "SPEC", "HunyuanProvider"]

NAME: Final = "hunyuan"
MODEL: Final = "hunyuan-image"
"""The job API has no model parameter; this names what it runs."""

STYLES: Final = tuple(
    StyleInfo(code, label)
    for code, label in (
        ("riman", "Japanese anime (日漫)"),
        ("shuimo", "Ink wash painting (水墨)"),
        ("monai", "Monet (莫奈)"),
        ("bianping", "Flat illustration (扁平)"),
        ("xiangsu", "Pixel art (像素)"),
        ("ertonghuiben", "Children's picture book (儿童绘本)"),
        ("3dxuanran", "3D render (3D 渲染)"),
        ("manhua", "Comic (漫画)"),
        ("heibaimanhua", "Black-and-white comic (黑白漫画)"),
        ("xieshi", "Realistic (写实)"),
        ("dongman", "Anime / cartoon (动漫)"),
        ("bijiasuo", "Picasso (毕加索)"),
        ("saibopengke", "Cyberpunk (赛博朋克)"),
        ("youhua", "Oil painting (油画)"),
        ("masaike", "Mosaic (马赛克)"),
        ("qinghuaci", "Blue-and-white porcelain (青花瓷)"),
        ("xinnianjianzhi", "New-Year paper-cut (新年剪纸)"),
        ("xinnianhuayi", "New-Year floral art (新年花艺)"),
    )
)

EDIT_RESOLUTIONS: Final = ("768x768", "768x1024", "1024x768", "1024x1024")
"""The only sizes a job with a ContentImage takes (SDK docstring); no size lets it adapt."""
INPUT_TYPES: Final = ("image/jpeg", "image/png")
INPUT_MAX_SIDE: Final = 4096
"""Below the documented "each side under 5000" with room to spare."""
INPUT_MAX_BYTES: Final = 6_000_000
"""Its base64 (4/3 larger) stays under the documented 8 MB."""

CATALOG: Final = ProviderCatalog(
    name=NAME,
    display_name="Tencent Hunyuan",
    description="Tencent Hunyuan image generation (asynchronous jobs); strong with Chinese prompts.",
    models=(MODEL,),
    styles=STYLES,
    resolutions=("1024x1024", "768x768", "768x1024", "1024x768", "720x1280", "1280x720", "768x1280", "1280x768"),
    default_resolution="1024x1024",
    formats=("png", "jpeg", "webp"),
    max_n=4,
    max_prompt_chars=1024,
    resolution_separator=":",
    notes=(
        "Sizes are sent as W:H. A seed turns prompt rewriting (Revise) off so the seed is honoured. "
        "No visible AI logo. Results in another format than requested are converted locally."
    ),
    max_input_images=1,
    supports_mask=False,
    edit_resolutions=(*EDIT_RESOLUTIONS, "auto"),
    edit_notes=(
        "Image-to-image through SubmitHunyuanImageJob's ContentImage: one input image, sent inline as base64 "
        f"(converted to JPEG/PNG, at most {INPUT_MAX_SIDE} px a side). The image guides the content of a new "
        "picture (for a style change the output keeps its aspect ratio with a 1024 px long edge); it is not a "
        "pixel-exact edit, and there are no references or masks. Sizes 768x768, 768x1024, 1024x768, 1024x1024 "
        "or auto. Prompt rewriting stays on with an input, so seeds are ignored."
    ),
)

_CODE_CLASSES: Final[tuple[tuple[str, type[ProviderError]], ...]] = (
    # Order matters: the first prefix that matches wins (PROVIDERS.md §1.10).
    ("AuthFailure", AuthFailedError),
    ("RequestLimitExceeded", RateLimitedError),
    ("FailedOperation.EngineServerLimitExceeded", RateLimitedError),
    ("OperationDenied", ContentRejectedError),
    ("InvalidParameter", ProviderInvalidArgumentError),
    ("MissingParameter", ProviderInvalidArgumentError),
    ("UnknownParameter", ProviderInvalidArgumentError),
    ("UnsupportedRegion", ProviderInvalidArgumentError),
    ("InvalidAction", ProviderInvalidArgumentError),
    ("InternalError", ProviderUnavailableError),
    ("ServiceUnavailable", ProviderUnavailableError),
    ("ServerNetworkError", ProviderUnavailableError),
    ("ClientNetworkError", ProviderUnavailableError),
    ("FailedOperation.Engine", ProviderUnavailableError),
    ("FailedOperation.GenerateImageFailed", ProviderUnavailableError),
)
_MAX_POLL_ERRORS: Final = 3
"""Transient Query failures tolerated in a row: re-polling a paid, running job beats resubmitting it."""


Stage = Literal["submit", "poll", "done"]


def _map_error(exc: BaseException, secrets: Iterable[str], stage: Stage, **context: Any) -> ProviderError:
    """The one place Tencent SDK, httpx and timeout failures become ``errors.py`` classes.

    ``stage`` decides ``retryable``: a retry would start a second job, which is wrong while the
    first may still run (after a submit whose answer was lost, or while polling).
    """
    import httpx
    from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

    details = {k: v for k, v in context.items() if v is not None}
    never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
    ambiguous = isinstance(exc, TimeoutError | httpx.TransportError) and not never_sent
    retryable = False if stage == "poll" or (stage == "submit" and ambiguous) else None
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return ProviderTimeoutError(
            "Hunyuan did not finish in time", provider=NAME, details=details, retryable=retryable
        )
    if isinstance(exc, httpx.TransportError):
        return ProviderUnavailableError(
            f"cannot reach Hunyuan ({type(exc).__name__})", provider=NAME, details=details, retryable=retryable
        )
    if isinstance(exc, ValueError | KeyError):  # the SDK lets JSONDecodeError / KeyError escape (§1.8)
        return ProviderUnavailableError(
            "Hunyuan sent a malformed response",
            provider=NAME,
            details={**details, "reason": type(exc).__name__},
            retryable=retryable,
        )
    if not isinstance(exc, TencentCloudSDKException):
        return ProviderError(f"Hunyuan failed: {type(exc).__name__}", provider=NAME, details=details)
    code = str(exc.get_code() or "")
    if code == "ServerNetworkError":  # any non-200; the message is the raw body, not worth echoing
        message = "Hunyuan answered with an HTTP error status"
    else:
        message = f"Hunyuan error {code}: {redact(str(exc.get_message() or ''), secrets)[:300]}"
    details.update(vendor_code=code, request_id=exc.get_request_id() or None)
    details = {k: v for k, v in details.items() if v is not None}
    cls = next((c for prefix, c in _CODE_CLASSES if code.startswith(prefix)), ProviderError)
    return cls(message, provider=NAME, details=details, retryable=retryable)


@dataclass(slots=True)
class _Job:
    """Where one generation is, so a timeout knows whether a retry could duplicate a running job."""

    job_id: str | None = None
    stage: Stage = "submit"


class _RedactAuthorization(logging.Filter):
    """The SDK's DEBUG request dump includes the Authorization header, which names the SecretId."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "Credential=" in message:
            record.msg, record.args = re.sub(r"Credential=[^,\s]*", "Credential=***", message), ()
        return True


class HunyuanProvider(Provider):
    catalog = CATALOG

    def __init__(self, settings: Settings) -> None:
        if settings.tencent_secret_id is None or settings.tencent_secret_key is None:
            raise ProviderNotConfiguredError(
                "hunyuan needs TENCENT_SECRET_ID and TENCENT_SECRET_KEY "
                "(Settings.tencent_secret_id / tencent_secret_key)",
                details={"provider": NAME},
            )
        from tencentcloud.common import credential
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.hunyuan.v20230901 import hunyuan_client_async, models

        self._secrets = (settings.tencent_secret_id.get(), settings.tencent_secret_key.get())
        try:
            cred = credential.Credential(*self._secrets)
        except TencentCloudSDKException as exc:  # its message names the problem, never the value
            raise ProviderNotConfiguredError(
                "TENCENT_SECRET_ID / TENCENT_SECRET_KEY are not valid credentials", details={"provider": NAME}
            ) from exc
        # An override like http://127.0.0.1:8080 becomes protocol + host:port (the signed Host, §1.2).
        endpoint = urlsplit(settings.tencent_endpoint) if settings.tencent_endpoint else None
        http = HttpProfile(
            protocol=endpoint.scheme if endpoint else None,
            endpoint=endpoint.netloc if endpoint else None,
            reqTimeout=settings.hunyuan_timeout,
            keepAlive=True,
        )
        self._client: HunyuanClient = hunyuan_client_async.HunyuanClient(
            cred, settings.tencent_region, ClientProfile(httpProfile=http, language="en-US")
        )
        self._models = models
        self._timeout = settings.hunyuan_timeout
        self._poll_interval = settings.hunyuan_poll_interval
        self._max_bytes = settings.download_max_bytes
        self._download_timeout = settings.download_timeout
        self._http = LazySession()
        sdk_logger = logging.getLogger("tencentcloud_sdk_common")
        if not any(isinstance(f, _RedactAuthorization) for f in sdk_logger.filters):
            sdk_logger.addFilter(_RedactAuthorization())

    async def aclose(self) -> None:
        await self._client.close()
        await self._http.aclose()

    def _submit_body(self, request: GenerationRequest) -> dict[str, Any]:
        """Validate against the catalog and build the Submit body (no I/O, so errors come early)."""
        if request.model not in (None, MODEL):
            raise InvalidArgumentError(f"hunyuan has one model, {MODEL!r}", details={"model": request.model})
        if request.options:
            raise UnsupportedOptionError(
                f"hunyuan takes no options, got {sorted(request.options)}", details={"provider": NAME}
            )
        if request.style is not None and CATALOG.style(request.style) is None:
            raise UnknownStyleError(f"hunyuan has no style {request.style!r}", details={"provider": NAME})
        if request.resolution != "auto" and request.resolution not in CATALOG.resolutions:
            raise UnknownResolutionError(
                f"hunyuan does not offer {request.resolution}",
                details={"provider": NAME, "allowed": list(CATALOG.resolutions)},
            )
        if request.is_edit:
            self._check_edit(request)
        if not 1 <= request.n <= CATALOG.max_n:
            raise InvalidArgumentError(f"hunyuan makes 1-{CATALOG.max_n} images per job, got {request.n}")
        if request.seed is not None and request.seed <= 0:
            raise InvalidArgumentError(f"hunyuan seeds must be positive, got {request.seed}")
        width, height = (request.width, request.height) if request.width else (1024, 1024)
        body: dict[str, Any] = {
            "Prompt": request.prompt,
            "Resolution": f"{width}:{height}",
            "Num": request.n,
            "LogoAdd": 0,
        }
        if request.is_edit and request.width is None:  # no Resolution: the job adapts to the input
            del body["Resolution"]
        if request.style:
            body["Style"] = request.style
        if request.negative_prompt:
            body["NegativePrompt"] = request.negative_prompt
        if request.seed is not None and not request.is_edit:  # with an input, Revise stays on anyway
            body.update(Seed=request.seed, Revise=0)  # the service ignores the seed while Revise is on
        return body

    @staticmethod
    def _check_edit(request: GenerationRequest) -> None:
        """The service checks count and mask against the catalog; this keeps direct callers honest."""
        if len(request.images) > CATALOG.max_input_images:
            raise TooManyImagesError(
                f"hunyuan edits take one image, got {len(request.images)}",
                details={"provider": NAME, "max_images": CATALOG.max_input_images, "count": len(request.images)},
            )
        if request.mask is not None:
            raise MaskMismatchError("hunyuan edits take no mask", details={"provider": NAME})
        if request.resolution != "auto" and request.resolution not in EDIT_RESOLUTIONS:
            raise UnknownResolutionError(
                f"hunyuan edits do not offer {request.resolution}",
                details={"provider": NAME, "allowed": [*EDIT_RESOLUTIONS, "auto"]},
            )

    @staticmethod
    async def _content_image(request: GenerationRequest) -> dict[str, str]:
        fitted = await asyncio.to_thread(
            fit_input, request.images[0], INPUT_TYPES, max_side=INPUT_MAX_SIDE, max_bytes=INPUT_MAX_BYTES
        )
        return {"ImageBase64": base64.b64encode(fitted.data).decode("ascii")}

    async def generate(self, request: GenerationRequest, progress: ProgressFn | None = None) -> ProviderResult:
        body = self._submit_body(request)
        warnings: tuple[str, ...] = ()
        if request.is_edit:
            if not request.resume:  # a resumed job has its input already
                body["ContentImage"] = await self._content_image(request)
            if request.seed is not None:
                warnings = ("hunyuan ignores the seed when it edits (prompt rewriting stays on with an input image)",)
        job = _Job()
        try:
            async with asyncio.timeout(self._timeout):
                result = await self._run(body, request, progress, job)
        except TimeoutError as exc:
            raise _map_error(exc, self._secrets, job.stage, job_id=job.job_id, timeout_s=self._timeout) from exc
        return dataclasses.replace(result, warnings=result.warnings + warnings) if warnings else result

    async def _call(
        self,
        method: Callable[[Any], Awaitable[Any]],
        request_cls: type,
        params: dict[str, Any],
        stage: Stage,
        **context: Any,
    ) -> Any:
        import httpx
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

        req = request_cls()
        req.from_json_string(json.dumps(params))
        try:
            return await method(req)
        except (TencentCloudSDKException, httpx.HTTPError, ValueError, KeyError) as exc:
            raise _map_error(exc, self._secrets, stage, **context) from exc

    async def _run(
        self, body: dict[str, Any], request: GenerationRequest, progress: ProgressFn | None, job: _Job
    ) -> ProviderResult:
        from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException

        m = self._models
        if request.resume:  # taken over from a lost replica: the job exists and is billed already
            job_id = request.resume[0]
            job.job_id, job.stage = job_id, "poll"
            await report(progress, f"resumed job {job_id}")
        else:
            submitted = await self._call(
                self._client.SubmitHunyuanImageJob,
                m.SubmitHunyuanImageJobRequest,
                body,
                "submit",
                action="SubmitHunyuanImageJob",
            )
            job_id = submitted.JobId
            if not isinstance(job_id, str) or not job_id:
                raise ProviderUnavailableError("Hunyuan accepted the job but returned no JobId", provider=NAME)
            job.job_id, job.stage = job_id, "poll"
            await report(progress, f"submitted job {job_id}")
        loop = asyncio.get_running_loop()
        started, failures, last = loop.time(), 0, ""
        while True:
            await asyncio.sleep(self._poll_interval)
            try:
                reply = await self._call(
                    self._client.QueryHunyuanImageJob,
                    m.QueryHunyuanImageJobRequest,
                    {"JobId": job_id},
                    "poll",
                    action="QueryHunyuanImageJob",
                    job_id=job_id,
                )
            except ProviderError as exc:
                failures += 1
                if exc.transient and failures <= _MAX_POLL_ERRORS:
                    continue
                raise
            failures = 0
            status = str(reply.JobStatusCode)
            if status in ("4", "5"):
                job.stage = "done"
            if status == "5":
                break
            if status == "4":
                code = reply.JobErrorCode or "FailedOperation.GenerateImageFailed"
                failed = TencentCloudSDKException(code, reply.JobErrorMsg or "job failed", reply.RequestId)
                raise _map_error(failed, self._secrets, "done", job_id=job_id, job_error_code=code) from failed
            if status == "1" and last != "1":
                await report(progress, "queued")
            elif status != "1":
                await report(progress, f"running {loop.time() - started:.0f} s")
            last = status
        urls = [u for u in (reply.ResultImage or []) if isinstance(u, str) and u]
        if not urls:
            raise ProviderUnavailableError(
                "Hunyuan finished the job without images", provider=NAME, details={"job_id": job_id}
            )
        revised = list(reply.RevisedPrompt or [])
        await report(progress, "downloading")
        images = await gather_all(
            self._download(url, request, revised[i] if i < len(revised) else None) for i, url in enumerate(urls)
        )
        warnings = () if len(images) == request.n else (f"hunyuan returned {len(images)} of {request.n} images",)
        return ProviderResult(tuple(images), model=MODEL, warnings=warnings)

    async def _download(self, url: str, request: GenerationRequest, revised: object) -> GeneratedImage:
        return await download_image(
            self._http.get(),
            url,
            provider=NAME,
            max_bytes=self._max_bytes,
            timeout=self._download_timeout,
            want=request.output_format,
            seed=None if request.is_edit else request.seed,  # not honoured with an input image
            revised_prompt=revised if isinstance(revised, str) and revised else None,
        )


def _is_configured(settings: Settings) -> bool:
    return settings.tencent_secret_id is not None and settings.tencent_secret_key is not None


SPEC: Final = ProviderSpec(
    catalog=CATALOG,
    is_configured=_is_configured,
    factory=HunyuanProvider,
    order=10,
    credentials_hint="TENCENT_SECRET_ID and TENCENT_SECRET_KEY",
)

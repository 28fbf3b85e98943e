"""Shaping tool results: output schemas, the error channel, job hand-backs and progress.

Shared by the tools in ``server`` and the task methods in ``tasks``; no MCP registration here.
"""

from __future__ import annotations

import base64
import time
from collections.abc import MutableMapping
from typing import Any, Literal

import anyio
from mcp.server.mcpserver import Context
from mcp_types import CallToolResult, ContentBlock, ImageContent, ResourceLink, TextContent
from pydantic import BaseModel

from .errors import ImageServerError
from .jobs import Job, Update
from .models import GenerateOutcome, ImageRecord
from .service import ImageService
from .tenants import ANONYMOUS, STDIO, Caller, digest_of, static_caller

__all__ = [
    "ErrorInfo",
    "GenerateImageOutput",
    "ImageDataOutput",
    "ImageInfo",
    "Inline",
    "JobListOutput",
    "JobSummary",
    "ProvidersOutput",
    "ReloadOutput",
    "caller_of",
    "error_result",
    "generate_result",
    "job_result",
    "jobs_result",
    "wait_for_job",
]


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = {}


class ImageInfo(BaseModel):
    image_id: str
    provider: str
    model: str
    style: str | None
    resolution: str
    width: int
    height: int
    mime_type: str
    size_bytes: int
    file_path: str
    url: str | None
    resource_uri: str
    revised_prompt: str | None
    seed: int | None
    cost_estimate_usd: float | None = None
    """The catalog's price of this image (providers://list, MCP_PRICES_FILE); None when unpriced."""
    output_path: str | None = None
    """Where the copy asked for with output_dir/filename was written (stdio)."""


class GenerateImageOutput(BaseModel):
    ok: bool
    status: str = "succeeded"
    """succeeded, or a job state (queued, running...) when the call handed back a job_id."""
    job_id: str | None = None
    message: str | None = None
    images: list[ImageInfo] = []
    cost_estimate_usd: float | None = None
    """Sum of the images' estimates: what the call cost by the catalog's prices."""
    warnings: list[str] = []
    error: ErrorInfo | None = None


class JobSummary(BaseModel):
    job_id: str
    status: str
    message: str
    provider: str | None
    provider_job_id: str | None
    prompt: str
    queue_position: int | None
    created_at: float
    updated_at: float
    finished_at: float | None
    elapsed_s: float
    image_ids: list[str]
    error: ErrorInfo | None


class ProvidersOutput(BaseModel):
    ok: bool
    default_provider: str | None = None
    configured: list[str] = []
    providers: list[dict[str, Any]] = []
    """As providers://list: models, styles, resolutions, aspect_ratios, quality, edit, prices, limits."""
    error: ErrorInfo | None = None


class JobListOutput(BaseModel):
    ok: bool
    jobs: list[JobSummary] = []
    error: ErrorInfo | None = None


class ImageDataOutput(BaseModel):
    ok: bool
    image_id: str | None = None
    mime_type: str | None = None
    size_bytes: int | None = None
    base64: str | None = None
    error: ErrorInfo | None = None


class ReloadOutput(BaseModel):
    ok: bool
    changed: list[str] = []
    restart_required: list[str] = []
    providers: list[str] = []
    default_provider: str | None = None
    notice: str | None = None
    """In words, a change the caller should know of (the default provider moving to a paid one)."""
    error: ErrorInfo | None = None


def error_result(exc: ImageServerError, **extra: Any) -> CallToolResult:
    """A tool error the model can read and act on."""
    return CallToolResult(
        content=[TextContent(text=f"Error [{exc.code}]: {exc.message}")],
        structured_content={"ok": False, "error": exc.to_dict(), **extra},
        is_error=True,
    )


def caller_of(service: ImageService, ctx: Context[Any, Any]) -> Caller:
    """Who calls (tenants.py): the token's caller, the stdio client, or, without tokens, anyone.

    The HTTP transport hands over the caller its access check found, the one ``Caller`` it keeps
    on the aiohttp request (an OAuth caller exists only there); without one, the caller is looked
    up again from the request's token.
    """
    request = getattr(ctx.request_context, "request", None)
    if isinstance(request, MutableMapping):
        for value in request.values():
            if isinstance(value, Caller):
                return value
    headers = ctx.headers
    if headers is None:
        return STDIO
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        lowered.setdefault(name.lower(), value)  # the first copy, the one the transport's auth check reads
    auth = lowered.get("authorization", "")
    token = auth[7:].strip() if auth[:7].lower() == "bearer " else lowered.get("x-api-key", "").strip()
    if not token:
        return ANONYMOUS
    directory = service.directory
    found = directory.caller(token)
    if found is not None:
        return found
    caller = static_caller(digest_of(token))
    # No tokens configured: every caller is trusted, owning by its token as before. With tokens, this
    # one was removed by a reload while its request ran: it may touch nothing but its own.
    return caller if not directory.by_digest else Caller(caller.name, "user", caller.owner)


def _image_info(service: ImageService, record: ImageRecord) -> ImageInfo:
    return ImageInfo(
        image_id=record.image_id,
        provider=record.provider,
        model=record.model,
        style=record.style,
        resolution=record.resolution,
        width=record.width,
        height=record.height,
        mime_type=record.mime_type,
        size_bytes=record.size_bytes,
        file_path=service.store.location_of(record),
        url=service.url_for(record),
        resource_uri=f"images://{record.image_id}",
        revised_prompt=record.revised_prompt,
        seed=record.seed,
        cost_estimate_usd=record.cost_usd,
        output_path=record.output_path,
    )


Inline = Literal["thumbnail", "full", "none"]


async def generate_result(
    service: ImageService, outcome: GenerateOutcome, inline: Inline, job_id: str | None = None
) -> CallToolResult:
    infos = [_image_info(service, r) for r in outcome.records]
    warnings = list(outcome.warnings)
    lines = [f"Generated {len(infos)} image(s) with {outcome.provider} ({outcome.model}):"]
    for info in infos:
        lines.append(
            f"- {info.image_id}: {info.width}x{info.height} {info.mime_type}, {info.size_bytes} bytes, "
            f"file {info.file_path}" + (f", url {info.url}" if info.url else "")
        )
    content: list[ContentBlock] = []
    for record, info in zip(outcome.records, infos, strict=True):
        content.append(
            ResourceLink(
                uri=info.resource_uri,
                name=record.file_name,
                mime_type=record.mime_type,
                size=record.size_bytes,
                description=f"{info.width}x{info.height} image from {record.provider}",
            )
        )
        if inline == "none":
            continue
        limit = service.settings.get_image_data_max_bytes
        if inline == "full" and record.size_bytes <= limit:
            data = await service.image_data(record)
            content.append(ImageContent(data=base64.b64encode(data).decode(), mime_type=record.mime_type))
            continue
        if inline == "full":
            warnings.append(
                f"inline='full' refused for {record.image_id}: {record.size_bytes} bytes is over "
                f"MCP_GET_IMAGE_DATA_MAX_BYTES={limit}; a thumbnail was sent instead"
            )
        thumb, mime = await service.thumbnail(record)
        content.append(ImageContent(data=base64.b64encode(thumb).decode(), mime_type=mime))
    if warnings:
        lines.append("Warnings: " + "; ".join(warnings))
    content.insert(0, TextContent(text="\n".join(lines)))
    costs = [i.cost_estimate_usd for i in infos]
    total = None if not costs or None in costs else round(sum(c or 0.0 for c in costs), 6)
    output = GenerateImageOutput(ok=True, job_id=job_id, images=infos, cost_estimate_usd=total, warnings=warnings)
    return CallToolResult(content=content, structured_content=output.model_dump(mode="json"))


async def job_result(service: ImageService, job: Job, inline: Inline) -> CallToolResult:
    """The result for a job: its images when done, its error, or its state and how to poll it."""
    if job.state == "succeeded" and job.outcome is not None:
        return await generate_result(service, job.outcome, inline, job.job_id)
    if job.error is not None and job.done:
        return error_result(job.error, job_id=job.job_id, status=job.state)
    job.handed_back = True
    message = (
        f"Still generating ({job.message}). The job keeps running: call get_generation(job_id=\"{job.job_id}\") "
        "to wait for it and get the images, or cancel_generation to stop it."
    )
    output = GenerateImageOutput(ok=True, status=job.state, job_id=job.job_id, message=message)
    return CallToolResult(content=[TextContent(text=message)], structured_content=output.model_dump(mode="json"))


async def wait_for_job(
    service: ImageService, ctx: Context[Any, Any], job: Job, wait_seconds: float | None, cancel_on_abandon: bool
) -> None:
    """Wait a bounded time, turning job updates into progress notifications.

    If the caller goes away (``notifications/cancelled``, closed stream) while the job
    was never handed back, the job is cancelled too.
    """
    step = 0

    async def report(update: Update) -> None:
        nonlocal step
        step += 1
        await ctx.report_progress(step, None, update.message)

    timeout = service.settings.generation_wait_seconds if wait_seconds is None else wait_seconds
    try:
        await service.jobs.wait(job, timeout, report, heartbeat=service.settings.progress_interval)
    except anyio.get_cancelled_exc_class():
        if cancel_on_abandon and not job.handed_back:
            if job.task is not None:
                job.task.cancel()
            elif job.remote:  # queued for, or run by, another replica: ask there (this call is ending)
                service.jobs.cancel_soon(job)
        raise


def jobs_result(service: ImageService, jobs: list[Job], text: str) -> CallToolResult:
    now = time.time()
    output = JobListOutput(ok=True, jobs=[JobSummary.model_validate(j.summary(now)) for j in jobs])
    return CallToolResult(content=[TextContent(text=text)], structured_content=output.model_dump(mode="json"))

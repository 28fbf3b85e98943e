"""The MCP surface on the SDK's ``MCPServer``: tools, resources and a prompt over ``ImageService``.

Two error channels (STYLE habit 8): anything the caller or a provider got wrong is a
tool result with ``isError: true`` and ``structuredContent.error = {code, message,
details}``; protocol misuse (unknown tool, bad resource URI) stays a JSON-RPC error.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import warnings
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from urllib.request import url2pathname

from mcp.server._otel import OpenTelemetryMiddleware
from mcp.server.lowlevel import Server
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp_types import (
    INVALID_PARAMS,
    CallToolResult,
    GetPromptResult,
    InputRequiredResult,
    TextContent,
    ToolAnnotations,
)
from pydantic import AnyUrl, Field, ValidationError

from . import __version__, outputs
from .config import Settings
from .errors import ImageServerError, InvalidArgumentError, PathNotAllowedError
from .models import GenerateParams, ImageFormat
from .observe import ToolCall
from .quotas import require_admin
from .results import (
    GenerateImageOutput,
    ImageDataOutput,
    Inline,
    JobListOutput,
    ProvidersOutput,
    ReloadOutput,
    caller_of,
    error_result,
    job_result,
    jobs_result,
    wait_for_job,
)
from .service import ImageService
from .tasks import TasksExtension
from .tenants import STDIO
from .toollist import ToolListCache, lean
from .viewer import build_viewer_apps, image_origins_for, tool_meta

__all__ = ["build_mcp_server"]

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Generates images from text. Call generate_image with a prompt; read providers://list, styles://list "
    "and resolutions://list to choose provider, style and size (values may be written provider:value, e.g. "
    "style='hunyuan:riman'). Results carry image_id, file_path and (over HTTP) a url; call get_image_data "
    "only when you need the bytes as base64."
)


class ImageMCPServer(MCPServer[Any]):
    """``MCPServer`` with our error mapping and typed image resources."""

    def __init__(self, service: ImageService, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service

    @property
    def lowlevel(self) -> Server[Any]:
        """The SDK's low-level server that transports drive (``run`` / per-request handling)."""
        return self._lowlevel_server

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        started = time.perf_counter()
        result: CallToolResult | InputRequiredResult | None = None
        try:
            result = await self._call_tool(name, arguments, context)
            return result
        finally:
            if self.service.observers and self._tool_manager.get_tool(name) is not None:
                self.service.observers.tool_called(
                    _tool_call(self.service, name, arguments, context, result, time.perf_counter() - started)
                )

    async def _call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None
    ) -> CallToolResult | InputRequiredResult:
        if self._tool_manager.get_tool(name) is None:
            known = ", ".join(t.name for t in self._tool_manager.list_tools())
            raise MCPError(INVALID_PARAMS, f"Unknown tool: {name!r}; available tools: {known}", {"tool": name})
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):
                problems = [
                    f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}" for err in cause.errors()
                ]
                return error_result(
                    InvalidArgumentError(
                        "invalid arguments: " + "; ".join(problems),
                        details={"fields": sorted({str(err["loc"][0]) for err in cause.errors() if err["loc"]})},
                    )
                )
            raise

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Context[Any, Any] | None = None
    ) -> GetPromptResult | InputRequiredResult:
        # The SDK answers an unknown prompt or a missing argument with a bare ValueError: JSON-RPC
        # code 0 in a session, -32603 "Internal server error" per request, and an ERROR traceback.
        if self._prompt_manager.get_prompt(name) is None:
            known = ", ".join(p.name for p in self._prompt_manager.list_prompts())
            raise MCPError(INVALID_PARAMS, f"Unknown prompt: {name!r}; available prompts: {known}", {"prompt": name})
        try:
            return await super().get_prompt(name, arguments, context)
        except ValueError as exc:
            raise MCPError(INVALID_PARAMS, str(exc), {"prompt": name}) from exc

    async def read_resource(
        self, uri: AnyUrl | str, context: Context[Any, Any] | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        text = str(uri)
        if text.startswith("images://"):
            try:
                caller = caller_of(self.service, context) if context is not None else STDIO
                record, data = await self.service.image_bytes(caller, text.removeprefix("images://"))
            except ImageServerError as exc:
                raise MCPError(INVALID_PARAMS, exc.message, {"uri": text, "code": exc.code}) from exc
            return [ReadResourceContents(content=data, mime_type=record.mime_type)]
        try:
            return await super().read_resource(uri, context)
        except MCPError:
            raise
        except Exception as exc:
            err = exc.__cause__ if isinstance(exc.__cause__, ImageServerError) else exc
            if isinstance(err, ImageServerError):
                raise MCPError(INVALID_PARAMS, err.message, {"uri": text, "code": err.code}) from exc
            raise


ProviderArg = Annotated[
    str | None, Field(description="Provider name (see list_providers); default: the server's default.")
]
StyleArg = Annotated[str | None, Field(description="Style code, or provider:style (e.g. hunyuan:riman).")]
ResolutionArg = Annotated[
    str | None, Field(description="WxH, W:H, auto, or provider:size (e.g. hunyuan:1024:768); wins over aspect_ratio.")
]
AspectArg = Annotated[
    Literal["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9"] | None,
    Field(description="Shape, mapped to the provider's nearest size (a warning says when approximated)."),
]
QualityArg = Annotated[
    Literal["low", "medium", "high", "auto"] | None,
    Field(description="Render quality, mapped per provider (ignored with a warning where there is none)."),
]
CountArg = Annotated[int, Field(ge=1, le=4, description="Number of images.")]
SeedArg = Annotated[int | None, Field(ge=0, le=2**32 - 1, description="Seed for repeatable output.")]
FormatArg = Annotated[ImageFormat, Field(description="File format.")]
PrefixArg = Annotated[
    str | None, Field(max_length=200, description="Prefix for the saved file name (made file-system safe).")
]
InlineArg = Annotated[
    Inline, Field(description="Image bytes in the result: a <=512 px thumbnail (default), the full image, or none.")
]
BackgroundArg = Annotated[
    Literal["transparent", "opaque", "auto"] | None, Field(description="OpenAI only: background.")
]
CompressionArg = Annotated[int | None, Field(ge=0, le=100, description="OpenAI only: jpeg/webp compression 0-100.")]
ModerationArg = Annotated[Literal["auto", "low"] | None, Field(description="OpenAI only: moderation.")]
WaitArg = Annotated[
    float | None,
    Field(ge=0, le=3600, description="Seconds to wait before handing back a job_id (default 45; 0 = at once)."),
]
OutputDirArg = Annotated[
    str | None,
    Field(max_length=4096, description="stdio only: also write the image(s) to this folder (inside the client's "
          "roots or the save folder; relative to the first of them)."),
]
FilenameArg = Annotated[
    str | None,
    Field(max_length=200, description="stdio only: the copy's file name (extension added; -1, -2... when n > 1)."),
]
OverwriteArg = Annotated[bool, Field(description="stdio only: replace an existing file of that name.")]
KeyArg = Annotated[
    str | None,
    Field(min_length=1, max_length=200, description="Repeat-safe key: the same key and arguments return "
          "the same job instead of generating again."),
]


def _output(output_dir: str | None, filename: str | None, overwrite: bool) -> tuple[str | None, str | None, bool] | None:
    return None if output_dir is None and filename is None else (output_dir, filename, overwrite)


async def _input_folders(service: ImageService, ctx: Context[Any, Any]) -> list[Path] | None:
    """Where an edit's file paths may point: over stdio the client's roots (when it has any) or the
    save folder; over HTTP nowhere (``None``)."""
    if ctx.headers is not None:
        return None
    folders: list[Path] = []
    capabilities = ctx.client_capabilities
    if capabilities is not None and capabilities.roots is not None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)  # roots are deprecated in 2026-07-28
                listed = await ctx.session.list_roots()
        except Exception:  # noqa: BLE001 - a client that cannot answer has no roots
            logger.info("the client declared roots but did not list them; file inputs are confined to the save folder")
        else:
            for root in listed.roots:
                uri = str(root.uri)
                if uri.startswith("file://"):
                    folders.append(Path(url2pathname(urlsplit(uri).path)).resolve())
    if not folders and service.store.save_dir is not None:
        folders.append(service.store.save_dir.resolve())
    return folders


def _tool_call(
    service: ImageService, tool: str, arguments: dict[str, Any], context: Context[Any, Any] | None,
    result: CallToolResult | InputRequiredResult | None, duration: float,
) -> ToolCall:
    """The facts of one finished call for the audit log and /metrics: no prompt, no argument but
    provider, n and size, and the caller's name, never its token."""
    request = getattr(context.request_context, "request", None) if context is not None else None
    headers = context.headers if context is not None else None
    structured: dict[str, Any] = {}
    if result is None:
        outcome = "internal_error"  # raised: a protocol error or a bug, answered as a JSON-RPC error
    elif isinstance(result, CallToolResult):
        structured = result.structured_content or {}
        error = structured.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        outcome = (code or "tool_error") if result.is_error else "ok"
    else:
        outcome = "input_required"
    images = structured.get("images") or []
    first = images[0] if images and isinstance(images[0], dict) else {}
    n = arguments.get("n")
    return ToolCall(
        tool=tool,
        caller=(caller_of(service, context) if context is not None else STDIO).name,
        session=None if headers is None else {k.lower(): v for k, v in headers.items()}.get("mcp-session-id"),
        client=getattr(request, "remote", None),
        outcome=outcome,
        duration_s=duration,
        provider=first.get("provider") or _text(arguments.get("provider")),
        model=first.get("model"),
        n=len(images) if images else n if isinstance(n, int) else None,
        size=first.get("resolution") or _text(arguments.get("resolution")),
        cost_estimate_usd=structured.get("cost_estimate_usd"),
        job_id=structured.get("job_id"),
        status=structured.get("status"),
    )


def _text(value: object) -> str | None:
    return value[:64] if isinstance(value, str) else None


def _tracing_on(settings: Settings) -> bool:
    """Whether spans can go anywhere: an OTLP endpoint is set, or a tracer provider is installed
    (``opentelemetry-instrument``, a host application, a test)."""
    from opentelemetry import trace  # loaded by the SDK already

    return bool(settings.otel_endpoint) or not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def build_mcp_server(service: ImageService) -> ImageMCPServer:
    """The SDK server with every tool, resource and prompt bound to ``service``."""
    tasks = TasksExtension(service)
    mcp = ImageMCPServer(
        service,
        name="mcp-image-server",
        title="MCP Image Server",
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level=service.settings.log_level,
        extensions=[tasks, build_viewer_apps(image_origins_for(service.settings))],
        # The cache is outermost so it keeps the task flag the tasks middleware adds (see toollist.py).
        middleware=[ToolListCache(), tasks.middleware],  # 2025-11-25 tasks: shapes the SDK builds itself
    )

    async def start(
        ctx: Context[Any, Any], params: GenerateParams, idempotency_key: str | None, wait_seconds: float | None,
        inline: Inline, edit: tuple[list[str], str | None] | None = None,
        output: tuple[str | None, str | None, bool] | None = None,
    ) -> CallToolResult:
        """The one path of generate_image and edit_image: check, reserve, start, wait, answer."""
        try:
            caller = caller_of(service, ctx)
            folders = await _input_folders(service, ctx) if edit is not None or output is not None else None
            if output is not None:
                if folders is None:
                    raise PathNotAllowedError(
                        "output_dir and filename are for stdio servers; over HTTP use the image's url",
                        details={"field": "output_dir", "reason": "http"},
                    )
                output_dir, filename, overwrite = output
                planned = outputs.plan(output_dir, filename, folders, params.output_format, params.n, overwrite)
                params = replace(params, output=planned, overwrite=overwrite)
            if edit is not None:
                refs, mask = edit
                params = await service.store_inputs(caller, params, refs, mask, folders)
            # Arguments are checked before a job exists, so a bad call fails fast and costs nothing.
            job = await service.start_job(caller, params, idempotency_key)
        except ImageServerError as exc:
            return error_result(exc)
        await wait_for_job(service, ctx, job, wait_seconds, cancel_on_abandon=True)
        return await job_result(service, job, inline)

    @mcp.tool(
        annotations=ToolAnnotations(title="Generate image", read_only_hint=False, open_world_hint=True),
        meta=tool_meta(),
    )
    async def generate_image(
        ctx: Context[Any, Any],
        prompt: Annotated[str, Field(min_length=1, max_length=32000, description="What to draw.")],
        provider: ProviderArg = None,
        style: StyleArg = None,
        resolution: ResolutionArg = None,
        aspect_ratio: AspectArg = None,
        quality: QualityArg = None,
        negative_prompt: Annotated[str | None, Field(max_length=4000, description="What to avoid.")] = None,
        n: CountArg = 1,
        seed: SeedArg = None,
        output_format: FormatArg = "png",
        file_prefix: PrefixArg = None,
        inline: InlineArg = "thumbnail",
        background: BackgroundArg = None,
        output_compression: CompressionArg = None,
        moderation: ModerationArg = None,
        output_dir: OutputDirArg = None,
        filename: FilenameArg = None,
        overwrite: OverwriteArg = False,
        wait_seconds: WaitArg = None,
        idempotency_key: KeyArg = None,
    ) -> Annotated[CallToolResult, GenerateImageOutput]:
        """Generate image(s) from a text prompt; returns image ids, file paths, URLs and inline previews.

        Long generations hand back a job_id after wait_seconds; poll it with get_generation.
        """
        params = GenerateParams(
            prompt=prompt, provider=provider, style=style, resolution=resolution, negative_prompt=negative_prompt,
            n=n, seed=seed, output_format=output_format, file_prefix=file_prefix, aspect_ratio=aspect_ratio,
            quality=quality,
            options={"background": background, "output_compression": output_compression, "moderation": moderation},
        )
        return await start(ctx, params, idempotency_key, wait_seconds, inline, None, _output(output_dir, filename,
                                                                                          overwrite))

    @mcp.tool(
        annotations=ToolAnnotations(title="Edit image", read_only_hint=False, open_world_hint=True),
        meta=tool_meta(),
    )
    async def edit_image(
        ctx: Context[Any, Any],
        prompt: Annotated[str, Field(min_length=1, max_length=32000, description="The change to make.")],
        images: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=40_000_000)]],
            Field(min_length=1, max_length=16, description=(
                "Images to edit, the first being the one changed and the rest references: each an image_id or "
                "images://{id}, a data:image/...;base64, URI or base64, a file path (stdio, inside the client's "
                "roots or the save folder), or an https URL (when the server allows URL inputs)."
            )),
        ],
        mask: Annotated[
            str | None,
            Field(max_length=40_000_000, description="PNG with alpha, the size of images[0]: transparent pixels "
                  "mark what to change (providers that take masks; see list_providers)."),
        ] = None,
        provider: ProviderArg = None,
        style: StyleArg = None,
        resolution: ResolutionArg = None,
        aspect_ratio: AspectArg = None,
        quality: QualityArg = None,
        n: CountArg = 1,
        seed: SeedArg = None,
        output_format: FormatArg = "png",
        file_prefix: PrefixArg = None,
        inline: InlineArg = "thumbnail",
        input_fidelity: Annotated[
            Literal["low", "high"] | None, Field(description="OpenAI only: how closely to keep the input's details.")
        ] = None,
        background: BackgroundArg = None,
        output_dir: OutputDirArg = None,
        filename: FilenameArg = None,
        overwrite: OverwriteArg = False,
        wait_seconds: WaitArg = None,
        idempotency_key: KeyArg = None,
    ) -> Annotated[CallToolResult, GenerateImageOutput]:
        """Edit or combine images from a text instruction; the same job, result and errors as generate_image.

        Without resolution or aspect_ratio the result keeps the first image's shape.
        """
        params = GenerateParams(
            prompt=prompt, provider=provider, style=style, resolution=resolution, n=n, seed=seed,
            output_format=output_format, file_prefix=file_prefix, aspect_ratio=aspect_ratio, quality=quality,
            options={"input_fidelity": input_fidelity, "background": background},
        )
        return await start(
            ctx, params, idempotency_key, wait_seconds, inline, (images, mask), _output(output_dir, filename, overwrite)
        )

    @mcp.tool(annotations=ToolAnnotations(title="List providers", read_only_hint=True))
    async def list_providers(
        provider: Annotated[str | None, Field(max_length=100, description="Only this provider.")] = None,
    ) -> Annotated[CallToolResult, ProvidersOutput]:
        """The catalog (as providers://list): each provider's models, styles, sizes, aspect-ratio and quality
        mapping, edit support, limits and prices, and whether it is configured. For clients that only call tools."""
        try:
            info = service.providers_info(provider)
        except ImageServerError as exc:
            return error_result(exc)
        output = ProvidersOutput(ok=True, **info)
        names = ", ".join(
            f"{p['name']}{' (default)' if p['default'] else ''}{'' if p['configured'] else ' (not configured)'}"
            for p in info["providers"]
        )
        return CallToolResult(
            content=[TextContent(text=f"Providers: {names}.")], structured_content=output.model_dump(mode="json")
        )

    @mcp.tool(annotations=ToolAnnotations(title="Get generation", read_only_hint=True), meta=tool_meta())
    async def get_generation(
        ctx: Context[Any, Any],
        job_id: Annotated[str, Field(max_length=200, description="job_id from generate_image.")],
        wait_seconds: Annotated[
            float | None, Field(ge=0, le=3600, description="Seconds to wait for the job (default 45; 0 = now).")
        ] = None,
        inline: Annotated[Inline, Field(description="Image bytes in a finished result, as for generate_image.")] = (
            "thumbnail"
        ),
    ) -> Annotated[CallToolResult, GenerateImageOutput]:
        """A generation job's state, or, once finished, the same result generate_image gives."""
        try:
            caller = caller_of(service, ctx)
            job = await service.jobs.get(None if caller.is_admin else caller.owner, job_id.strip())
        except ImageServerError as exc:
            return error_result(exc)
        await wait_for_job(service, ctx, job, wait_seconds, cancel_on_abandon=False)
        return await job_result(service, job, inline)

    @mcp.tool(annotations=ToolAnnotations(title="Cancel generation", read_only_hint=False, idempotent_hint=True))
    async def cancel_generation(
        ctx: Context[Any, Any],
        job_id: Annotated[str, Field(max_length=200, description="job_id from generate_image.")],
    ) -> Annotated[CallToolResult, JobListOutput]:
        """Cancel a running generation job (a finished job is reported unchanged)."""
        try:
            caller = caller_of(service, ctx)
            job = await service.jobs.cancel(None if caller.is_admin else caller.owner, job_id.strip(), settle=5)
        except ImageServerError as exc:
            return error_result(exc)
        return jobs_result(service, [job], f"Job {job.job_id} is {job.state}.")

    @mcp.tool(annotations=ToolAnnotations(title="List generations", read_only_hint=True))
    async def list_generations(
        ctx: Context[Any, Any],
        status: Annotated[
            Literal["queued", "submitted", "running", "downloading", "saving", "succeeded", "failed", "cancelled"]
            | None,
            Field(description="Only jobs in this state."),
        ] = None,
        limit: Annotated[int, Field(ge=1, le=100, description="Most jobs to return, newest first.")] = 20,
        all: Annotated[bool, Field(description="Admin tokens only: every caller's jobs, not just yours.")] = False,
    ) -> Annotated[CallToolResult, JobListOutput]:
        """Your recent generation jobs, newest first."""
        try:
            caller = caller_of(service, ctx)
            if all:
                require_admin(caller, "list_generations(all=true)")
            jobs = await service.jobs.list(None if all else caller.owner, status, limit)
        except ImageServerError as exc:
            return error_result(exc)
        lines = [f"{j.job_id} {j.state} {j.params.prompt[:60]!r}" for j in jobs]
        return jobs_result(service, jobs, "\n".join(lines) or "No generation jobs.")

    @mcp.tool(annotations=ToolAnnotations(title="Get image data", read_only_hint=True))
    async def get_image_data(
        ctx: Context[Any, Any],
        image_id: Annotated[str, Field(max_length=200, description="image_id from generate_image.")],
    ) -> Annotated[CallToolResult, ImageDataOutput]:
        """Return a generated image's full bytes as base64 (refused above MCP_GET_IMAGE_DATA_MAX_BYTES)."""
        try:
            record, data = await service.image_bytes(caller_of(service, ctx), image_id.strip())
        except ImageServerError as exc:
            return error_result(exc)
        encoded = base64.b64encode(data).decode()
        output = ImageDataOutput(
            ok=True, image_id=record.image_id, mime_type=record.mime_type, size_bytes=record.size_bytes, base64=encoded
        )
        return CallToolResult(
            content=[TextContent(text=encoded)], structured_content=output.model_dump(mode="json")
        )

    @mcp.tool(annotations=ToolAnnotations(title="Reload configuration", read_only_hint=False, idempotent_hint=True))
    async def reload_config(
        ctx: Context[Any, Any],
        dotenv_override: Annotated[
            bool, Field(description="Let values in .env win over the process environment.")
        ] = False,
    ) -> Annotated[CallToolResult, ReloadOutput]:
        """Re-read the environment, .env, MCP_TOKENS_FILE and MCP_PRICES_FILE (admin tokens only);
        reports changed settings (names only) and available providers."""
        try:
            require_admin(caller_of(service, ctx), "reload_config")
            before = service.manager.default_name
            result = await service.reload(dotenv_override=dotenv_override)
        except ImageServerError as exc:
            return error_result(exc)
        manager = service.manager
        notice = None
        if manager.default_name != before:
            paid = " It is a paid provider: generations without a provider now cost money." if (
                manager.default_name != "local") else ""
            notice = (f"The default provider changed from {before} to {manager.default_name}.{paid} "
                      f"Set MCP_DEFAULT_PROVIDER to choose it yourself.")
        output = ReloadOutput(
            ok=True,
            changed=list(result.changed),
            restart_required=list(result.restart_required),
            providers=list(manager.configured),
            default_provider=manager.default_name,
            notice=notice,
        )
        text = (
            f"Reloaded. Changed: {', '.join(result.changed) or 'nothing'}. "
            f"Needs restart: {', '.join(result.restart_required) or 'nothing'}. "
            f"Providers: {', '.join(manager.configured)} (default {manager.default_name})."
            + (f" {notice}" if notice else "")
        )
        return CallToolResult(content=[TextContent(text=text)], structured_content=output.model_dump(mode="json"))

    def _json(data: Any) -> str:
        return json.dumps(data, ensure_ascii=False, indent=2)

    @mcp.resource("providers://list", name="providers", mime_type="application/json")
    def providers_list() -> str:
        """Every provider: configured or not, models, styles, resolutions, formats, limits (no secrets)."""
        return _json(service.providers_info())

    @mcp.resource("styles://list", name="styles", mime_type="application/json")
    def styles_list() -> str:
        """Styles of every provider."""
        return _json(service.styles_info())

    @mcp.resource("resolutions://list", name="resolutions", mime_type="application/json")
    def resolutions_list() -> str:
        """Resolutions of every provider."""
        return _json(service.resolutions_info())

    @mcp.resource("styles://provider/{provider_name}", name="provider_styles", mime_type="application/json")
    def provider_styles(provider_name: str) -> str:
        """Styles of one provider."""
        return _json(service.styles_info(provider_name))

    @mcp.resource(
        "resolutions://provider/{provider_name}", name="provider_resolutions", mime_type="application/json"
    )
    def provider_resolutions(provider_name: str) -> str:
        """Resolutions of one provider."""
        return _json(service.resolutions_info(provider_name))

    @mcp.resource("images://{image_id}", name="image", mime_type="image/png")
    def image(image_id: str) -> bytes:
        """A generated image as a blob (its real MIME type is set per image)."""
        raise AssertionError("served by ImageMCPServer.read_resource")  # pragma: no cover

    @mcp.prompt(title="Image generation prompt")
    def image_generation_prompt(
        description: str, provider: str | None = None, style: str | None = None, resolution: str | None = None
    ) -> str:
        """A ready-to-send request that turns a short description into a generate_image call."""
        args = [f"prompt={description!r}"]
        for key, value in (("provider", provider), ("style", style), ("resolution", resolution)):
            if value:
                args.append(f"{key}={value!r}")
        return (
            "Create an image for this description. First expand it into a vivid, specific prompt (subject, "
            "setting, composition, lighting, colour palette, mood); keep any text that must appear in double "
            "quotes. Then call the generate_image tool with "
            + ", ".join(args)
            + " (replacing prompt with your expanded version). If a style or resolution is rejected, read "
            "styles://list or resolutions://list and pick a valid one. Finally show the image and give its "
            "image_id and url or file path.\n\nDescription: "
            + description
        )

    if not _tracing_on(service.settings):
        # The SDK opens a span per message even with nothing to export (tens of microseconds, a
        # fifth of a ping); its guide says to drop the middleware to opt out.
        mcp.lowlevel.middleware[:] = [m for m in mcp.lowlevel.middleware if not isinstance(m, OpenTelemetryMiddleware)]
    for tool in mcp._tool_manager.list_tools():
        tool.parameters = lean(tool.parameters)
        tool.output_schema = lean(tool.output_schema)
    return mcp

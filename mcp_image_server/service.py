"""ImageService: the one core both transports use (generate, records, catalogs, reload)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from . import __version__, outputs
from .audit import AuditLog
from .blobs import open_blob_store
from .config import ReloadResult, Settings, reload_settings
from .errors import (
    ConfigError,
    ImageExpiredError,
    ImageNotFoundError,
    ImageTooLargeError,
    InvalidArgumentError,
    InvalidImageError,
    ProviderError,
    TooManyImagesError,
)
from .imaging import thumbnail
from .inputs import INPUT_PREFIX, Sources, check_mask, decode, input_name, input_size
from .jobs import Job, JobManager
from .models import (
    GenerateOutcome,
    GenerateParams,
    GenerationRequest,
    ImageRecord,
    InputImage,
    ProgressFn,
    ProviderCatalog,
    ProviderResult,
)
from .observe import JobChange, Observers, span
from .prices import Price, price_of
from .providers import ProviderSpec, registry
from .providers.manager import Edit, ProviderManager, Selection
from .quotas import MemoryLedger, Quotas, settle_quietly
from .signing import UrlSigner
from .state import open_state
from .store import ImageStore, RetentionPolicy, sanitize_prefix
from .tenants import STDIO, Caller, Directory

__all__ = ["ImageService"]

logger = logging.getLogger(__name__)


MAX_EDIT_INPUTS: Final = 16
"""The most any provider takes (OpenAI); each provider's own limit is in its catalog."""

FAILOVER_CODES: Final = frozenset({"provider_unavailable", "provider_timeout", "rate_limited"})
"""Failures after which an unpinned request moves on to the next MCP_FALLBACK_PROVIDERS entry."""


@dataclass(frozen=True, slots=True)
class _Prepared:
    manager: ProviderManager
    selection: Selection
    prompt: str
    request: GenerationRequest
    prefix: str | None
    warnings: tuple[str, ...]


def _vendor_request(
    catalog: ProviderCatalog, selection: Selection, params: GenerateParams, prompt: str, resume: tuple[str, ...] = ()
) -> GenerationRequest:
    """The provider-facing request: style modifiers folded into the prompt, unsupported extras dropped
    (an edit's images are added once loaded, in ``generate``)."""
    style_info = catalog.style(selection.style) if selection.style else None
    vendor_prompt = f"{prompt}, {style_info.prompt_modifier}" if style_info and style_info.prompt_modifier else prompt
    options = {**selection.options, **params.options}
    return GenerationRequest(
        prompt=vendor_prompt,
        width=selection.width,
        height=selection.height,
        style=selection.style,
        negative_prompt=params.negative_prompt if catalog.supports_negative_prompt else None,
        n=min(params.n, catalog.max_n),
        seed=params.seed if catalog.supports_seed else None,
        output_format=params.output_format if params.output_format in catalog.formats else catalog.formats[0],
        options={k: v for k, v in options.items() if v is not None and k in catalog.options},
        resume=resume,
    )


THUMBNAIL_CACHE_BYTES: Final = 16 * 1024 * 1024
"""Previews kept in memory: about a thousand typical ones (a 512 px JPEG is 10-60 KB)."""


class _Previews:
    """Least-recently-used previews by (owner, image id), bounded by their total size."""

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._used = 0
        self._items: OrderedDict[tuple[str, str], tuple[bytes, str]] = OrderedDict()

    def get(self, key: tuple[str, str]) -> tuple[bytes, str] | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: tuple[str, str], item: tuple[bytes, str]) -> None:
        if len(item[0]) > self._budget or key in self._items:
            return
        self._items[key] = item
        self._used += len(item[0])
        while self._used > self._budget:
            _, (old, _mime) = self._items.popitem(last=False)
            self._used -= len(old)


class ImageService:
    """Holds the current settings snapshot, the provider manager and the store."""

    def __init__(
        self,
        settings: Settings,
        *,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, str] | None = None,
        extra_providers: Iterable[ProviderSpec] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._environ = environ
        self._overrides = dict(overrides or {})
        self._specs = registry(extra_providers)
        self._manager = ProviderManager(settings, self._specs)
        self._retired: set[asyncio.Task[None]] = set()
        self._reload_lock = asyncio.Lock()
        self.store = ImageStore(
            open_blob_store(settings), clock=clock, policy=lambda: RetentionPolicy.of(self._settings)
        )
        self.signer = UrlSigner.from_settings(settings, clock=clock)
        self._sweeper: asyncio.Task[None] | None = None
        self._thumbnails = _Previews(THUMBNAIL_CACHE_BYTES)
        shared = open_state(settings)
        self.jobs = JobManager(
            self.generate,
            ttl=settings.job_ttl,
            max_running=settings.max_jobs,
            max_queued=settings.max_queued_jobs,
            shared=shared,
            role=settings.role,
            clock=clock,
            on_end=self._job_ended,
            on_change=self._job_changed,
        )
        self.observers = Observers()
        """Listeners to tool calls, job transitions and provider failures (the audit log, /metrics)."""
        self._audit: AuditLog | None = None
        self.quotas = Quotas(shared if shared is not None else MemoryLedger(clock), clock)
        self._directory: tuple[Settings, Directory] | None = None
        self.http_base_url: str | None = None
        """Set by the HTTP transport once bound, so image URLs work without MCP_PUBLIC_BASE_URL."""
        self.started_at = time.monotonic()

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def manager(self) -> ProviderManager:
        return self._manager

    @property
    def directory(self) -> Directory:
        """Every accepted token's caller, for the current settings (rebuilt when they change)."""
        settings = self._settings
        if self._directory is None or self._directory[0] is not settings:
            tokens = tuple(t.get() for t in settings.auth_tokens)
            self._directory = (settings, Directory.build(tokens, settings.tokens_file))
        return self._directory[1]

    # --- admission: who may start what -------------------------------------------------------

    def price(self, provider: str, model: str | None, width: int | None, height: int | None,
              quality: str | None) -> Price | None:
        """The catalog's price of one image (MCP_PRICES_FILE rows first)."""
        size = f"{width}x{height}" if width and height else None
        if model is None:
            model = getattr(self._settings, f"{provider}_model", None) or self._manager.catalog(provider).models[0]
        return price_of(provider, model, size, quality, self._settings.prices_file)

    async def start_job(self, caller: Caller, params: GenerateParams, idempotency_key: str | None) -> Job:
        """Check the request and the caller's limits, reserve them, and start (or repeat) the job.
        Everything is checked before any provider is called; a refused call changes no counter.

        Raises:
            InvalidArgumentError (and subclasses), ProviderNotConfiguredError, ProviderNotAllowedError,
            QuotaExceededError, BudgetExceededError, StateUnavailableError, QueueFullError.
        """
        p = self._prepare(params)
        provider = p.selection.provider
        self.quotas.check_provider(caller, provider)
        price = self.price(provider, None, p.selection.width, p.selection.height, params.options.get("quality"))
        estimate = (price.usd if price else 0.0) * p.request.n
        reserved = await self.quotas.reserve(caller, p.request.n, estimate)
        try:
            job = await self.jobs.submit(caller.owner, params, idempotency_key, reserved)
        except BaseException:
            await self.quotas.settle(reserved, 0, 0.0)
            raise
        if reserved and job.charges is not reserved:  # a repeat of an existing job: it reserved its own
            await self.quotas.settle(reserved, 0, 0.0)
        return job

    async def _job_ended(self, job: Job) -> None:
        """Give back what an ended job reserved and did not use (failed and cancelled: everything)."""
        if not job.charges:
            return
        records = job.outcome.records if job.outcome is not None and job.state == "succeeded" else ()
        usd = sum(r.cost_usd or 0.0 for r in records)
        await settle_quietly(self.quotas, job.charges, len(records), usd, logger.warning)

    def caller_for_owner(self, owner: str) -> Caller | None:
        return STDIO if owner == STDIO.owner else self.directory.by_owner.get(owner)
    def _job_changed(self, job: Job) -> None:
        caller = self.caller_for_owner(job.owner)
        outcome = job.outcome if job.state == "succeeded" else None
        self.observers.job_changed(JobChange(
            job_id=job.job_id,
            caller=caller.name if caller is not None else job.owner.partition(":")[0],
            state=job.state,
            provider=job.provider or job.params.provider,
            model=outcome.model if outcome is not None else None,
            n=job.params.n,
            size=job.params.resolution,
            cost_estimate_usd=None if outcome is None else sum(r.cost_usd or 0.0 for r in outcome.records),
            outcome=job.error.code if job.error is not None else None,
            duration_s=max(0.0, job.updated_at - job.created_at),
            run_s=None if job.started_at is None else max(0.0, job.updated_at - job.started_at),
            done=job.done,
        ))

    async def start(self) -> None:
        """Raises: StorageError when the save directory is unusable; ConfigError when MCP_AUDIT_LOG
        cannot be opened."""
        if self._settings.audit_log and self._audit is None:
            self._audit = await asyncio.to_thread(AuditLog, self._settings.audit_log)
            self.observers.add(self._audit)
        await asyncio.to_thread(self.store.open)
        self._sweeper = asyncio.create_task(self.store.sweep_forever(), name="image-store-sweep")
        await self.jobs.start()
        shared = self.jobs.shared
        logger.info(
            "images are saved in %s; jobs are kept %s; providers configured: %s (default %s)",
            self.store.where,
            "in this process" if shared is None else
            f"in the shared state as {self._settings.role} replica {shared.replica_id}",
            ", ".join(self._manager.configured),
            self._manager.default_name,
        )

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.wait([self._sweeper])  # ends at once; a sweep thread under way finishes on its own
        await self.jobs.drain(self._settings.drain_seconds)
        await self.jobs.aclose()
        await self._manager.aclose(grace=30)
        for task in list(self._retired):
            task.cancel()
        if self._audit is not None:
            self.observers.remove(self._audit)
            await asyncio.to_thread(self._audit.close)
            self._audit = None

    # --- generation ---------------------------------------------------------------------------

    def _prepare(self, params: GenerateParams, resume: tuple[str, ...] = ()) -> _Prepared:
        manager = self._manager  # in-flight calls finish on the snapshot they started with
        edit = None
        if params.images:
            try:
                width, height, _mime = input_size(params.images[0])
            except ValueError:
                raise InvalidArgumentError("images must be stored inputs", details={"field": "images"}) from None
            edit = Edit(len(params.images), params.mask is not None, (width, height))
        selection = manager.select(
            provider=params.provider,
            style=params.style,
            resolution=params.resolution,
            options=params.options,
            output_format=params.output_format,
            n=params.n,
            negative_prompt=params.negative_prompt,
            seed=params.seed,
            aspect_ratio=params.aspect_ratio,
            quality=params.quality,
            edit=edit,
        )
        catalog = manager.catalog(selection.provider)
        prompt = params.prompt.strip()
        if not prompt:
            raise InvalidArgumentError("prompt must not be empty", details={"field": "prompt"})
        if len(prompt) > catalog.max_prompt_chars:
            raise InvalidArgumentError(
                f"prompt has {len(prompt)} characters; {catalog.name} accepts at most {catalog.max_prompt_chars}",
                details={"field": "prompt", "length": len(prompt), "max": catalog.max_prompt_chars},
            )
        warnings = list(selection.warnings)
        prefix, changed = sanitize_prefix(params.file_prefix)
        if changed:
            warnings.append(f"file_prefix was made file-system safe: {prefix!r}")
        request = _vendor_request(catalog, selection, params, prompt, resume)
        return _Prepared(manager, selection, prompt, request, prefix, tuple(warnings))

    def validate(self, params: GenerateParams) -> None:
        """Check a request against the current catalogs without running it.

        Raises:
            InvalidArgumentError (and subclasses), ProviderNotConfiguredError.
        """
        self._prepare(params)

    async def generate(
        self, params: GenerateParams, progress: ProgressFn | None = None, resume: tuple[str, ...] = (),
        owner: str = "",
    ) -> GenerateOutcome:
        """Validate, run on the chosen provider, store every image. With ``resume`` (vendor job ids
        of a job whose replica was lost), poll those instead of submitting, and never fail over.

        Raises:
            InvalidArgumentError (and subclasses), ProviderNotConfiguredError, ProviderError, StorageError.
        """
        p = self._prepare(params, resume)
        if not resume and self.store.may_be_full():  # a resumed job is already paid for: keep its images
            await asyncio.to_thread(self.store.ensure_room)  # storage_full before any provider is called
        if params.images:
            images = tuple([await self._load_input(name, f"images[{i}]") for i, name in enumerate(params.images)])
            mask = await self._load_input(params.mask, "mask") if params.mask else None
            p = replace(p, request=replace(p.request, images=images, mask=mask))
        served, style, warnings = p.selection.provider, p.selection.style, list(p.warnings)
        try:
            result = await self._call(p.manager, served, p.request, progress)
        except ProviderError as exc:
            if p.selection.pinned or resume or exc.code not in FAILOVER_CODES:
                raise
            caller = self.caller_for_owner(owner)
            allowed = caller.limits.providers if caller is not None else None
            result, served, style = await self._failover(p, params, exc, warnings, progress, allowed)
        if progress is not None:
            await progress("saving")
        records = []
        quality = params.options.get("quality") or params.quality
        for image in result.images:
            price = self.price(served, result.model, image.width, image.height, quality)
            record = await asyncio.to_thread(
                self.store.save,
                image,
                provider=served,
                model=result.model,
                style=style,
                prompt=p.prompt,
                ttl=p.manager.settings.image_record_ttl,
                file_prefix=p.prefix,
                owner=owner,
                cost_usd=None if price is None else price.usd,
            )
            records.append(record)
        if params.output:
            records = [await self._copy_out(params, r, i, len(records), warnings) for i, r in enumerate(records)]
        return GenerateOutcome(tuple(records), served, result.model, tuple(warnings) + result.warnings)

    async def _call(
        self, manager: ProviderManager, name: str, request: GenerationRequest, progress: ProgressFn | None
    ) -> ProviderResult:
        """One provider call, in its own span, its failures counted.

        Raises:
            ProviderError.
        """
        with span("image.provider", provider=name, n=request.n, size=request.resolution):
            try:
                return await manager.generate(name, request, progress)
            except ProviderError as exc:
                self.observers.provider_failed(name, exc.code)
                raise

    async def _copy_out(
        self, params: GenerateParams, record: ImageRecord, index: int, count: int, warnings: list[str]
    ) -> ImageRecord:
        """Write the copy the call asked for (checked by ``outputs.plan`` when it was made)."""
        assert params.output is not None
        target = params.output + ("" if count == 1 else f"-{index + 1}") + Path(record.file_name).suffix
        try:
            written = await asyncio.to_thread(outputs.write, target, await self.image_data(record), params.overwrite)
        except OSError as exc:
            warnings.append(f"could not write {target}: {exc.strerror or exc}; the image is in the store")
            return record
        if not written:
            warnings.append(f"{target} appeared meanwhile and was not overwritten; the image is in the store")
            return record
        return replace(record, output_path=target)

    async def _failover(
        self,
        p: _Prepared,
        params: GenerateParams,
        first: ProviderError,
        warnings: list[str],
        progress: ProgressFn | None,
        allowed: frozenset[str] | None = None,
    ) -> tuple[ProviderResult, str, str | None]:
        """Try each configured MCP_FALLBACK_PROVIDERS entry with the nearest style and size.

        Raises:
            ProviderError: the first failure, when no fallback succeeds.
        """
        failed, error = p.selection.provider, first
        size = None if p.selection.width is None else (p.selection.width, p.selection.height or 0)
        for name in p.manager.fallbacks(p.selection.provider):
            if allowed is not None and name not in allowed:
                continue  # the caller's token may not use it
            catalog = p.manager.catalog(name)
            if p.request.is_edit and (
                len(p.request.images) > catalog.max_input_images or (p.request.mask and not catalog.supports_mask)
            ):
                continue  # it cannot do this edit
            selection = p.manager.equivalent(p.selection.provider, name, p.selection.style, size)
            request = replace(
                _vendor_request(catalog, selection, params, p.prompt), images=p.request.images, mask=p.request.mask
            )
            logger.warning("%s failed (%s); failing over to %s", failed, error.code, name)
            if progress is not None:
                await progress(f"running on {name} after {failed} failed ({error.code})")
            try:
                result = await self._call(p.manager, name, request, progress)
            except ProviderError as exc:
                if exc.code not in FAILOVER_CODES:
                    raise
                failed, error = name, exc
                continue
            warnings.append(
                f"{p.selection.provider} failed ({first.code}: {first.message}); served by {name} with style "
                f"{selection.style!r} at {request.resolution}"
            )
            return result, name, selection.style
        raise first

    # --- edit inputs --------------------------------------------------------------------------

    async def store_inputs(
        self, caller: Caller, params: GenerateParams, refs: Sequence[str], mask: str | None,
        folders: Sequence[Path] | None,
    ) -> GenerateParams:
        """Read and check an edit's inputs, check the edit against the catalog and the caller's
        providers, and only then keep the inputs where any replica's job can load them: a refused
        edit writes nothing. Returns ``params`` naming them.

        ``folders``: where file paths may point (stdio); ``None`` refuses paths (HTTP).

        Raises:
            InvalidArgumentError and subclasses (InvalidImageError, MaskMismatchError, PathNotAllowedError,
            UrlNotAllowedError, TooManyImagesError, EditNotSupportedError), ProviderNotConfiguredError,
            ProviderNotAllowedError, ImageNotFoundError, ImageTooLargeError, InputFetchFailedError, StorageError.
        """
        settings = self._settings
        if not refs:
            raise InvalidArgumentError("images must name at least one image", details={"field": "images"})
        if len(refs) > MAX_EDIT_INPUTS:
            raise TooManyImagesError(
                f"at most {MAX_EDIT_INPUTS} images per edit, got {len(refs)}",
                details={"images": len(refs), "max": MAX_EDIT_INPUTS},
            )

        async def stored(image_id: str) -> bytes:
            _record, data = await self.image_bytes(caller, image_id)
            return data

        fetch = None
        if settings.allow_url_inputs:
            from .fetch import fetch_image

            limit = settings.max_input_image_bytes

            async def fetch(url: str, field: str) -> bytes:
                return await fetch_image(url, max_bytes=limit, timeout=settings.input_fetch_timeout, field=field)

        sources = Sources(stored, folders, fetch, settings.max_input_image_bytes)
        fields = [(f"images[{i}]", ref) for i, ref in enumerate(refs)] + ([("mask", mask)] if mask else [])
        decoded = []
        for field, ref in fields:
            data = await sources.read(ref, field)
            decoded.append(await asyncio.to_thread(decode, data, field, settings.max_input_image_bytes))
        if mask:
            await asyncio.to_thread(check_mask, decoded[-1], decoded[0])
        names = [input_name(image) for image in decoded]
        edit = replace(params, images=tuple(names[: len(refs)]), mask=names[-1] if mask else None)
        self.quotas.check_provider(caller, self._prepare(edit).selection.provider)
        for name, image in zip(names, decoded, strict=True):
            await asyncio.to_thread(self.store.blobs.put, INPUT_PREFIX + name, image.data)
        return edit

    async def _load_input(self, name: str, field: str) -> InputImage:
        """Raises: InvalidImageError when the input is gone (swept after MCP_JOB_TTL)."""
        width, height, mime = input_size(name)
        data = await asyncio.to_thread(self.store.blobs.get, INPUT_PREFIX + name)
        if data is None:
            raise InvalidImageError(f"{field} is no longer in the image store; give it again", details={"field": field})
        return InputImage(data, mime, width, height)

    # --- images -------------------------------------------------------------------------------

    def url_for(self, record: ImageRecord) -> str | None:
        base = self._settings.public_base_url or self.http_base_url
        if not base:
            return None
        url = f"{base}/images/{record.file_name}"
        if self._settings.image_url_mode == "signed":
            url += "?" + self.signer.query(record.file_name, self._settings.image_url_ttl)
        return url

    def image_record(self, caller: Caller, image_id: str) -> ImageRecord:
        """``caller``'s image (an admin's: anyone's); another's reads exactly as an unknown id.

        Raises:
            ImageNotFoundError, ImageExpiredError.
        """
        try:
            record: ImageRecord | None = self.store.get(image_id)
        except ImageExpiredError:
            if caller.is_admin:
                raise
            record = None  # a user is not told that someone's image existed once
        if record is not None and (caller.is_admin or record.owner == caller.owner):
            return record
        raise ImageNotFoundError(f"no image with id {image_id}", details={"image_id": image_id})

    async def image_bytes(self, caller: Caller, image_id: str) -> tuple[ImageRecord, bytes]:
        """The full image, refused above ``MCP_GET_IMAGE_DATA_MAX_BYTES``.

        Raises:
            ImageNotFoundError, ImageExpiredError, ImageTooLargeError.
        """
        record = self.image_record(caller, image_id)
        limit = self._settings.get_image_data_max_bytes
        if record.size_bytes > limit:
            raise ImageTooLargeError(
                f"image {image_id} is {record.size_bytes} bytes, over the {limit}-byte limit "
                "(MCP_GET_IMAGE_DATA_MAX_BYTES); fetch it from its URL or file path instead",
                details={"image_id": image_id, "size_bytes": record.size_bytes, "max_bytes": limit},
            )
        return record, await self.image_data(record)

    async def image_data(self, record: ImageRecord) -> bytes:
        """The bytes of a record already checked (its owner's, within the size limit)."""
        return await asyncio.to_thread(self.store.read_bytes, record)

    async def thumbnail(self, record: ImageRecord) -> tuple[bytes, str]:
        """The record's preview, made once (one thread hop: read and shrink) and then reused by
        ``get_generation``, task results and the viewer. Images never change under an id."""
        key = (record.owner, record.image_id)
        if (cached := self._thumbnails.get(key)) is not None:
            return cached
        made = await asyncio.to_thread(lambda: thumbnail(self.store.read_bytes(record)))
        self._thumbnails.put(key, made)
        return made

    # --- catalogs -----------------------------------------------------------------------------

    def providers_info(self, provider: str | None = None) -> dict[str, Any]:
        """The catalog of every provider (or of ``provider``). Raises: UnknownProviderError."""
        m = self._manager
        names = [m.catalog(provider.strip().lower()).name] if provider else list(m.specs)
        return {
            "default_provider": m.default_name,
            "configured": list(m.configured),
            "providers": [m.describe(name) for name in names],
        }

    def styles_info(self, provider: str | None = None) -> dict[str, Any]:
        m = self._manager
        names = [m.catalog(provider).name] if provider else list(m.specs)
        return {
            name: {
                "configured": name in m.configured,
                "default_style": m.catalog(name).default_style,
                "styles": m.describe(name)["styles"],
                "usage": f"style=\"{name}:<code>\" or provider=\"{name}\", style=\"<code>\"",
            }
            for name in names
        }

    def resolutions_info(self, provider: str | None = None) -> dict[str, Any]:
        m = self._manager
        names = [m.catalog(provider).name] if provider else list(m.specs)
        out: dict[str, Any] = {}
        for name in names:
            c = m.catalog(name)
            out[name] = {
                "configured": name in m.configured,
                "default_resolution": c.default_resolution,
                "resolutions": list(c.resolutions),
                "size_range": list(c.size_range) if c.size_range else None,
                "vendor_format": "W:H" if c.resolution_separator == ":" else "WxH",
            }
        return out

    def health_info(self) -> dict[str, Any]:
        backends = self.backends()
        return {
            "status": "ok" if all(v == "ok" for v in backends.values()) else "degraded",
            "version": __version__,
            "transport": self._settings.transport,
            "role": self._settings.role,
            "providers": list(self._manager.configured),
            "default_provider": self._manager.default_name,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "jobs_in_flight": self.jobs.in_flight,
            "backends": backends,
            "storage": self.store.usage_info(),
        }

    def backends(self) -> dict[str, str]:
        """Each shared backend's state, ``ok`` or ``unavailable``, and nothing else about it."""
        found = {"image_store": "ok" if self.store.blobs.healthy() else "unavailable"}
        if self.jobs.shared is not None:
            found["state"] = "ok" if self.jobs.shared.healthy() else "unavailable"
        return found

    # --- reload -------------------------------------------------------------------------------

    async def reload(self, *, dotenv_override: bool = False) -> ReloadResult:
        """Swap in a new validated snapshot; on error the old one stays.

        Raises:
            ConfigError: the new settings are invalid (message names the variable, never a secret).
        """
        async with self._reload_lock:
            try:
                result = await asyncio.to_thread(
                    reload_settings,
                    self._settings,
                    self._environ,
                    self._overrides,
                    dotenv_override=dotenv_override,
                )
            except ConfigError:
                logger.exception("reload_config failed; keeping the current settings")
                raise
            old = self._manager
            self._settings = result.settings
            self._manager = ProviderManager(result.settings, self._specs)
            task = asyncio.create_task(old.aclose())
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)
            logger.info("settings reloaded; changed: %s", ", ".join(result.changed) or "nothing")
            return result

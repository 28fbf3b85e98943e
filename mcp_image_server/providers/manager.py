"""Provider selection, ``provider:value`` parsing, retries with backoff, concurrency limits.

One manager belongs to one settings snapshot; ``reload_config`` builds a new one and
retires the old after its in-flight calls finish.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from ..config import Settings
from ..errors import (
    EditNotSupportedError,
    InvalidArgumentError,
    ProviderError,
    ProviderMismatchError,
    ProviderNotConfiguredError,
    RateLimitedError,
    TooManyImagesError,
    UnknownProviderError,
    UnknownResolutionError,
    UnknownStyleError,
    UnsupportedOptionError,
)
from ..models import GenerationRequest, ImageFormat, ProgressFn, ProviderCatalog, ProviderResult
from .base import Provider, ProviderSpec

__all__ = ["ProviderManager", "Selection", "parse_size"]

logger = logging.getLogger(__name__)

_SIZE_RE: Final = re.compile(r"^\s*(\d{1,5})\s*[x:*×X]\s*(\d{1,5})\s*$")
_BACKOFF_BASE: Final = 0.5
_BACKOFF_CAP: Final = 8.0


def parse_size(text: str) -> tuple[int, int] | None:
    """``1024x768``/``1024:768`` -> (1024, 768); ``auto`` -> None.

    Raises:
        ValueError: not a size.
    """
    if text.strip().lower() == "auto":
        return None
    m = _SIZE_RE.match(text)
    if not m:
        raise ValueError(text)
    return int(m.group(1)), int(m.group(2))


ASPECT_RATIOS: Final = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "21:9")
QUALITIES: Final = ("low", "medium", "high")


def _ratio(text: str) -> float:
    w, _, h = text.partition(":")
    return int(w) / int(h)


@dataclass(frozen=True, slots=True)
class Edit:
    """What an edit asks of a provider: how many inputs, whether a mask, the first input's size."""

    images: int
    mask: bool
    size: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Selection:
    """A request resolved against one provider's catalog."""

    provider: str
    style: str | None
    width: int | None
    height: int | None
    warnings: tuple[str, ...] = ()
    pinned: bool = False
    """The caller named the provider (directly or by prefix): no failover to another."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Vendor options the neutral ``quality`` maps to (the caller's own options win)."""


class ProviderManager:
    """Knows every registered provider, which are configured, and runs calls against them."""

    def __init__(self, settings: Settings, specs: Mapping[str, ProviderSpec]) -> None:
        self.settings = settings
        self.specs = dict(specs)
        self.configured: tuple[str, ...] = tuple(
            name for name, spec in sorted(self.specs.items(), key=lambda kv: kv[1].order) if spec.is_configured(settings)
        )
        self.default_name = self._pick_default()
        self._instances: dict[str, Provider] = {}
        self._creating: dict[str, asyncio.Lock] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def _pick_default(self) -> str:
        wanted = self.settings.default_provider
        if wanted:
            if wanted not in self.specs:
                logger.warning("MCP_DEFAULT_PROVIDER=%s is not a provider; using automatic choice", wanted)
            elif wanted not in self.configured:
                logger.warning("MCP_DEFAULT_PROVIDER=%s is not configured; using automatic choice", wanted)
            else:
                return wanted
        return self.configured[0] if self.configured else "local"

    # --- catalogs ---------------------------------------------------------------------------

    def catalog(self, name: str) -> ProviderCatalog:
        """Raises: UnknownProviderError."""
        return self._spec(name).catalog

    def _spec(self, name: str) -> ProviderSpec:
        spec = self.specs.get(name.strip().lower())
        if spec is None:
            raise UnknownProviderError(
                f"unknown provider {name!r}; choose one of: {', '.join(self.specs)}",
                details={"provider": name, "choices": list(self.specs)},
            )
        return spec

    def describe(self, name: str) -> dict[str, Any]:
        """JSON-ready description of one provider, with no secret."""
        spec = self._spec(name)
        c = spec.catalog
        return {
            "name": c.name,
            "display_name": c.display_name,
            "description": c.description,
            "configured": name in self.configured,
            "default": name == self.default_name,
            "credentials": spec.credentials_hint or None,
            "models": list(c.models),
            "styles": [
                {"code": s.code, "label": s.label, "prompt_modifier": s.prompt_modifier is not None} for s in c.styles
            ],
            "default_style": c.default_style,
            "resolutions": list(c.resolutions),
            "default_resolution": c.default_resolution,
            "size_range": list(c.size_range) if c.size_range else None,
            "formats": list(c.formats),
            "max_n": c.max_n,
            "max_prompt_chars": c.max_prompt_chars,
            "supports_negative_prompt": c.supports_negative_prompt,
            "supports_seed": c.supports_seed,
            "options": list(c.options),
            "notes": c.notes,
            "aspect_ratios": {r: _size_text(_size_for_ratio(c, _ratio(r))) for r in ASPECT_RATIOS},
            "quality": {q: dict(v) for q, v in _quality_map(c).items()} or None,
            "edit": {
                "max_images": c.max_input_images,
                "mask": c.supports_mask,
                "notes": c.edit_notes or None,
            }
            if c.max_input_images
            else None,
        }

    # --- selection --------------------------------------------------------------------------

    def _split_prefix(self, value: str | None) -> tuple[str | None, str | None]:
        """``hunyuan:riman`` -> ("hunyuan", "riman"); plain values have no prefix."""
        if value is None:
            return None, None
        value = value.strip()
        head, sep, rest = value.partition(":")
        if sep and head.lower() in self.specs:
            return head.lower(), rest.strip()
        if sep and not head.isdigit() and head.lower() != "auto":
            raise UnknownProviderError(
                f"{value!r} names provider {head!r}, which does not exist; choose one of: {', '.join(self.specs)}",
                details={"provider": head, "choices": list(self.specs)},
            )
        return None, value

    def select(
        self,
        *,
        provider: str | None,
        style: str | None,
        resolution: str | None,
        options: Mapping[str, Any] | None = None,
        output_format: ImageFormat = "png",
        n: int = 1,
        negative_prompt: str | None = None,
        seed: int | None = None,
        aspect_ratio: str | None = None,
        quality: str | None = None,
        edit: Edit | None = None,
    ) -> Selection:
        """Resolve the provider, style and size of a request (an edit's: a provider that can edit).

        ``resolution`` wins over ``aspect_ratio``; an edit with neither keeps its first image's shape.

        Raises:
            UnknownProviderError, ProviderMismatchError, ProviderNotConfiguredError,
            UnknownStyleError, UnknownResolutionError, UnsupportedOptionError, InvalidArgumentError,
            EditNotSupportedError, TooManyImagesError.
        """
        if aspect_ratio is not None and aspect_ratio not in ASPECT_RATIOS:
            raise InvalidArgumentError(
                f"aspect_ratio {aspect_ratio!r} is not one of {', '.join(ASPECT_RATIOS)}",
                details={"field": "aspect_ratio", "choices": list(ASPECT_RATIOS)},
            )
        if quality is not None and quality not in QUALITIES:
            raise InvalidArgumentError(
                f"quality {quality!r} is not one of {', '.join(QUALITIES)}",
                details={"field": "quality", "choices": list(QUALITIES)},
            )
        style_prefix, style_value = self._split_prefix(style)
        res_prefix, res_value = self._split_prefix(resolution)
        named = provider.strip().lower() if provider and provider.strip() else None
        if named is not None:
            self._spec(named)
        for label, prefix in (("style", style_prefix), ("resolution", res_prefix)):
            if prefix is not None and named is not None and prefix != named:
                raise ProviderMismatchError(
                    f"{label} is for provider {prefix!r} but provider {named!r} was requested",
                    details={"provider": named, label: prefix},
                )
        if style_prefix and res_prefix and style_prefix != res_prefix:
            raise ProviderMismatchError(
                f"style is for provider {style_prefix!r} but resolution is for {res_prefix!r}",
                details={"style": style_prefix, "resolution": res_prefix},
            )
        chosen = named or style_prefix or res_prefix
        pinned = chosen is not None
        name = chosen or (self.default_name if edit is None else self._default_editor(edit))
        spec = self._spec(name)
        if name not in self.configured:
            raise ProviderNotConfiguredError(
                f"provider {name!r} is not configured: set {spec.credentials_hint or 'its credentials'} in the "
                f"server's environment or .env, then call reload_config (no restart needed); configured "
                f"providers: {', '.join(self.configured)}",
                details={"provider": name, "configured": list(self.configured)},
            )
        catalog = spec.catalog
        if edit is not None:
            self._check_edit(catalog, edit)
            if catalog.edit_resolutions:
                sizes = catalog.edit_resolutions
                default = catalog.default_resolution if catalog.default_resolution in sizes else sizes[0]
                catalog = replace(catalog, resolutions=sizes, default_resolution=default, size_range=None)
        warnings: list[str] = []
        chosen_style = self._check_style(catalog, style_value)
        width_height: tuple[int, int] | None
        if res_value or (aspect_ratio is None and edit is None):
            width_height = self._check_size(catalog, res_value)
            if res_value and aspect_ratio is not None:
                warnings.append(f"resolution {res_value} was used; aspect_ratio {aspect_ratio} was ignored")
        elif aspect_ratio is not None:
            width_height = _size_for_ratio(catalog, _ratio(aspect_ratio))
            if width_height is not None and abs(width_height[0] / width_height[1] / _ratio(aspect_ratio) - 1) > 0.02:
                warnings.append(f"{name} has no {aspect_ratio} size; used the nearest, {_size_text(width_height)}")
        elif "auto" in catalog.resolutions:
            width_height = None  # the vendor follows the first image's shape
        else:
            assert edit is not None
            width_height = _size_for_ratio(catalog, edit.size[0] / edit.size[1], edit.size)
        vendor_options: dict[str, Any] = {}
        if quality is not None:
            mapped = _quality_map(catalog).get(quality)
            if mapped is None:
                warnings.append(f"{name} has no quality setting; quality={quality} was ignored")
            else:
                vendor_options = {k: v for k, v in mapped.items() if (options or {}).get(k) is None}
        if output_format not in catalog.formats:
            raise UnsupportedOptionError(
                f"provider {name!r} cannot output {output_format}; formats: {', '.join(catalog.formats)}",
                details={"provider": name, "output_format": output_format, "choices": list(catalog.formats)},
            )
        unsupported = sorted(k for k, v in (options or {}).items() if v is not None and k not in catalog.options)
        if unsupported:
            raise UnsupportedOptionError(
                f"option(s) {', '.join(unsupported)} are not supported by provider {name!r}"
                + (f"; it accepts: {', '.join(catalog.options)}" if catalog.options else ""),
                details={"provider": name, "options": unsupported, "choices": list(catalog.options)},
            )
        if n > catalog.max_n:
            raise UnsupportedOptionError(
                f"provider {name!r} makes at most {catalog.max_n} image(s) per call, got n={n}",
                details={"provider": name, "n": n, "max_n": catalog.max_n},
            )
        if negative_prompt and not catalog.supports_negative_prompt:
            warnings.append(f"{name} has no negative prompt; it was ignored")
        if seed is not None and not catalog.supports_seed:
            warnings.append(f"{name} does not take a seed; it was ignored")
        w, h = width_height if width_height else (None, None)
        return Selection(name, chosen_style, w, h, tuple(warnings), pinned, vendor_options)

    def _default_editor(self, edit: Edit) -> str:
        """The default provider if it can do this edit, else the first configured one that can."""
        for name in (self.default_name, *self.configured):
            if _can_edit(self.catalog(name), edit):
                return name
        return self.default_name  # refused by _check_edit with the list of providers that can

    def _check_edit(self, catalog: ProviderCatalog, edit: Edit) -> None:
        editors = [n for n in self.configured if _can_edit(self.catalog(n), edit)]
        hint = f"configured providers that can: {', '.join(editors)}" if editors else "no configured provider can"
        if catalog.max_input_images == 0:
            raise EditNotSupportedError(
                f"provider {catalog.name!r} cannot edit images ({catalog.edit_notes or 'its API has no image input'}); "
                + hint,
                details={"provider": catalog.name, "editors": editors},
            )
        if edit.images > catalog.max_input_images:
            raise TooManyImagesError(
                f"provider {catalog.name!r} takes at most {catalog.max_input_images} input image(s), got {edit.images}",
                details={"provider": catalog.name, "images": edit.images, "max": catalog.max_input_images},
            )
        if edit.mask and not catalog.supports_mask:
            raise EditNotSupportedError(
                f"provider {catalog.name!r} cannot take a mask; {hint}",
                details={"provider": catalog.name, "field": "mask", "editors": editors},
            )

    @staticmethod
    def _check_style(catalog: ProviderCatalog, value: str | None) -> str | None:
        if value is None or value == "":
            return catalog.default_style
        code = value.strip()
        if catalog.style(code) is None:
            lowered = code.lower()
            match = next((s.code for s in catalog.styles if s.code.lower() == lowered), None)
            if match is None:
                choices = [s.code for s in catalog.styles]
                if not choices:
                    raise UnknownStyleError(
                        f"provider {catalog.name!r} takes no styles: leave style out (got {code!r}), "
                        "or describe the style in the prompt",
                        details={"provider": catalog.name, "style": code, "choices": []},
                    )
                raise UnknownStyleError(
                    f"unknown style {code!r} for provider {catalog.name!r}; choose one of: {', '.join(choices)}",
                    details={"provider": catalog.name, "style": code, "choices": choices},
                )
            code = match
        return code

    @staticmethod
    def _check_size(catalog: ProviderCatalog, value: str | None) -> tuple[int, int] | None:
        text = value if value else catalog.default_resolution
        hint = f"presets: {', '.join(catalog.resolutions)}"
        if catalog.size_range:
            lo, hi = catalog.size_range
            hint += f"; or any WxH with sides {lo}..{hi}"
            if catalog.size_multiple > 1:
                hint += f" divisible by {catalog.size_multiple}"
        details = {"provider": catalog.name, "resolution": text, "choices": list(catalog.resolutions)}
        try:
            size = parse_size(text)
        except ValueError:
            raise UnknownResolutionError(
                f"{text!r} is not a resolution (use WxH, W:H or auto); {hint}", details=details
            ) from None
        canonical = "auto" if size is None else f"{size[0]}x{size[1]}"
        if canonical in catalog.resolutions:
            return size
        if size is not None and catalog.size_range:
            lo, hi = catalog.size_range
            m = catalog.size_multiple
            if all(lo <= side <= hi and side % m == 0 for side in size):
                return size
        raise UnknownResolutionError(
            f"resolution {canonical} is not available for provider {catalog.name!r}; {hint}", details=details
        )

    # --- failover ---------------------------------------------------------------------------

    def fallbacks(self, failed: str) -> list[str]:
        """Configured providers from ``MCP_FALLBACK_PROVIDERS`` to try after ``failed``, in order."""
        return [n for n in self.settings.fallback_providers if n != failed and n in self.configured]

    def equivalent(self, source: str, target: str, style: str | None, size: tuple[int, int] | None) -> Selection:
        """The nearest style and size ``target`` offers for a request made for ``source``."""
        src, dst = self.catalog(source), self.catalog(target)
        return Selection(target, _nearest_style(src, dst, style), *_nearest_size(dst, size))

    # --- running ----------------------------------------------------------------------------

    async def provider(self, name: str) -> Provider:
        """The live instance of ``name``, created on first use.

        Creating it imports the vendor SDK (half a second for ``openai``), so that runs in a
        worker thread, once, while other requests keep being served.
        """
        inst = self._instances.get(name)
        if inst is None:
            lock = self._creating.setdefault(name, asyncio.Lock())
            async with lock:
                inst = self._instances.get(name)
                if inst is None:
                    inst = await asyncio.to_thread(self._spec(name).factory, self.settings)
                    self._instances[name] = inst
        return inst

    def _limit(self, name: str) -> asyncio.Semaphore:
        sem = self._limits.get(name)
        if sem is None:
            # Convention: MCP_<PROVIDER>_MAX_CONCURRENCY -> settings.<provider>_max_concurrency.
            size = int(getattr(self.settings, f"{name}_max_concurrency", 4))
            sem = self._limits[name] = asyncio.Semaphore(size)
        return sem

    def queue_depth(self, name: str) -> int:
        """Callers waiting for a slot of ``name`` (0 when a slot is free)."""
        sem = self._limits.get(name)
        waiters = getattr(sem, "_waiters", None) if sem else None
        return len(waiters) if waiters else 0

    async def generate(
        self, name: str, request: GenerationRequest, progress: ProgressFn | None = None
    ) -> ProviderResult:
        """Run one generation on ``name``: queue for a slot, then retry transient failures with backoff.

        Raises:
            ProviderError: the last failure once attempts or the retry budget are spent.
        """
        self._inflight += 1
        self._idle.clear()
        try:
            sem = self._limit(name)
            if sem.locked() and progress is not None:
                await progress(f"queued for {name}, {self.queue_depth(name) + 1} ahead")
            async with sem:
                if progress is not None:
                    await progress(f"running on {name}")
                return await self._with_retries(name, request, progress)
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()

    async def _with_retries(self, name: str, request: GenerationRequest, progress: ProgressFn | None) -> ProviderResult:
        attempts = self.settings.provider_max_attempts
        budget_end = time.monotonic() + self.settings.provider_retry_budget
        provider = await self.provider(name)
        for attempt in range(1, attempts + 1):
            try:
                return await provider.generate(request, progress)
            except ProviderError as exc:
                if not exc.retryable or attempt == attempts:
                    raise
                delay = random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (attempt - 1)))
                if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                if time.monotonic() + delay > budget_end:
                    raise
                logger.info("%s attempt %d failed (%s); retrying in %.2f s", name, attempt, exc.code, delay)
                if progress is not None:
                    await progress(f"{name} {exc.code}; retrying in {delay:.0f} s")
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self, grace: float = 600.0) -> None:
        """Close every provider once in-flight calls are done (or ``grace`` seconds pass)."""
        try:
            async with asyncio.timeout(grace):
                await self._idle.wait()
        except TimeoutError:
            logger.warning("closing providers with %d call(s) still running", self._inflight)
        instances, self._instances = list(self._instances.values()), {}
        for inst in instances:
            try:
                await inst.aclose()
            except Exception:  # noqa: BLE001 - closing must not stop the others
                logger.exception("error closing provider %s", inst.name)


_WORD_SPLIT: Final = re.compile(r"[^a-z0-9]+")


def _words(text: str) -> set[str]:
    return {w for w in _WORD_SPLIT.split(text.lower()) if w}


def _nearest_style(src: ProviderCatalog, dst: ProviderCatalog, code: str | None) -> str | None:
    """Same code if the target has it, else the style sharing most words of code and label, else its default."""
    if code is None:
        return dst.default_style
    if dst.style(code) is not None:
        return code
    info = src.style(code)
    wanted = _words(code) | (_words(info.label) if info else set())
    best, score = dst.default_style, 0
    for candidate in dst.styles:
        overlap = len(wanted & (_words(candidate.code) | _words(candidate.label)))
        if overlap > score:
            best, score = candidate.code, overlap
    return best


def _can_edit(catalog: ProviderCatalog, edit: Edit) -> bool:
    return edit.images <= catalog.max_input_images and (catalog.supports_mask or not edit.mask)


def _quality_map(catalog: ProviderCatalog) -> Mapping[str, Mapping[str, Any]]:
    """Neutral quality -> vendor options: the catalog's own map, else a ``quality`` option taking the same words."""
    if catalog.quality_options:
        return catalog.quality_options
    return {q: {"quality": q} for q in QUALITIES} if "quality" in catalog.options else {}


def _size_text(size: tuple[int, int] | None) -> str:
    return "auto" if size is None else f"{size[0]}x{size[1]}"


def _size_for_ratio(
    catalog: ProviderCatalog, ratio: float, like: tuple[int, int] | None = None
) -> tuple[int, int] | None:
    """The provider's size nearest ``ratio``: exact within ``size_range`` (about the default's area,
    or ``like``'s), else the preset closest in shape, then in area."""
    default = parse_size(catalog.default_resolution) or (1024, 1024)
    area = (like[0] * like[1]) if like else default[0] * default[1]
    if catalog.size_range:
        lo, hi = catalog.size_range
        m = catalog.size_multiple
        w = math.sqrt(area * ratio)
        h = w / ratio
        scale = min(1.0, hi / max(w, h))
        w, h = w * scale, h * scale
        return _fit(w, lo, hi, m), _fit(h, lo, hi, m)
    presets = [size for size in map(parse_size, catalog.resolutions) if size is not None]
    if not presets:
        return None  # the vendor picks ("auto" only)

    def distance(size: tuple[int, int]) -> float:  # the shape first; the area only between equal shapes
        return abs(math.log(size[0] / size[1] / ratio)) + 0.05 * abs(math.log(size[0] * size[1] / area))

    return min(presets, key=distance)


def _fit(side: float, lo: int, hi: int, multiple: int) -> int:
    return max(lo, min(hi, max(multiple, round(side / multiple) * multiple)))


def _nearest_size(dst: ProviderCatalog, size: tuple[int, int] | None) -> tuple[int | None, int | None]:
    """The target's size closest in aspect ratio first, then area."""
    candidates: list[tuple[int, int] | None] = [parse_size(r) for r in dst.resolutions]
    if size is None:
        return (None, None) if None in candidates else (parse_size(dst.default_resolution) or (None, None))
    if dst.size_range:
        lo, hi = dst.size_range
        m = dst.size_multiple
        candidates.append(tuple(max(lo, min(hi, side // m * m)) for side in size))  # type: ignore[arg-type]
    w, h = size

    def distance(c: tuple[int, int] | None) -> float:
        if c is None:
            return float("inf")
        return 2 * abs(math.log((c[0] / c[1]) / (w / h))) + abs(math.log((c[0] * c[1]) / (w * h)))

    best = min(candidates, key=distance)
    return best if best is not None else (None, None)

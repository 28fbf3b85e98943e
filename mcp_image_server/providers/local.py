"""``local``: an offline, deterministic procedural renderer (Pillow). No AI model is involved.

It exists so the server does its whole job with no keys and no network: the prompt's
nouns (lighthouse, city, cat, river, ...), time of day and weather become a composed
scene (see ``scenes``), colour and mood words pick the palette, text in double quotes
becomes a caption, and the style picks how it is drawn (see ``procedural``). The same
prompt, style, size and seed always give the same bytes.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Final

from ..config import Settings
from ..models import GeneratedImage, GenerationRequest, ProgressFn, ProviderCatalog, ProviderResult, StyleInfo
from .base import Provider, ProviderSpec

__all__ = ["CATALOG", "SPEC", "LocalProvider"]

CATALOG: Final = ProviderCatalog(
    name="local",
    display_name="Local procedural renderer",
    description=(
        "Offline, deterministic procedural art drawn with Pillow; no AI model and no network. "
        "The prompt's nouns (about 30 subjects: lighthouse, mountain, city, cat, boat, river, ...), time of day "
        "(dawn, sunrise, day, sunset, dusk, night) and weather (rain, snow, fog, storm, cloudy) compose the scene; "
        "colour words recolour it; text in double quotes becomes a caption."
    ),
    models=("procedural-v1",),
    styles=(
        StyleInfo("landscape", "Layered landscape (default)"),
        StyleInfo("geometric", "Low-poly geometric facets"),
        StyleInfo("watercolor", "Soft watercolour washes"),
        StyleInfo("pixel_art", "Pixel art"),
        StyleInfo("neon", "Neon outlines on dark"),
        StyleInfo("mosaic", "Tile mosaic"),
        StyleInfo("gradient", "Gradient in the prompt's colours"),
    ),
    default_style="landscape",
    resolutions=("512x512", "768x768", "1024x1024", "1024x768", "768x1024", "1280x720", "720x1280"),
    default_resolution="1024x1024",
    size_range=(64, 2048),
    formats=("png", "jpeg", "webp"),
    max_n=4,
    max_prompt_chars=4000,
    notes="Procedural renderer for offline use and tests; it does not understand the prompt beyond keywords.",
    max_input_images=4,
    supports_mask=True,
    edit_notes=(
        "A procedural edit, not a model: the prompt's rendering is laid into the first image (inside the "
        "mask's transparent area, or over all of it at 45 %); further images become insets along the bottom."
    ),
)

class LocalProvider(Provider):
    """Renders in worker threads, bounded by the manager's concurrency limit."""

    catalog = CATALOG

    async def generate(self, request: GenerationRequest, progress: ProgressFn | None = None) -> ProviderResult:
        from . import procedural  # Pillow loads on first use, not at server start

        width, height = (request.width or 1024), (request.height or 1024)
        style = request.style or "landscape"
        base_seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
        mime = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}[request.output_format]
        images = []
        for i in range(request.n):
            seed = (base_seed + i) % 2**32
            if progress is not None:
                await progress(f"rendering image {i + 1} of {request.n}")
            if request.is_edit:
                data = await asyncio.to_thread(
                    procedural.edit,
                    [i.data for i in request.images],
                    request.mask.data if request.mask else None,
                    request.prompt,
                    style,
                    width,
                    height,
                    seed,
                    request.output_format,
                )
            else:
                data = await asyncio.to_thread(
                    procedural.render, request.prompt, style, width, height, seed, request.output_format
                )
            images.append(GeneratedImage(data=data, mime_type=mime, width=width, height=height, seed=seed))
        return ProviderResult(images=tuple(images), model=CATALOG.models[0])


def _factory(settings: Settings) -> Provider:
    return LocalProvider()


SPEC: Final = ProviderSpec(catalog=CATALOG, is_configured=lambda s: True, factory=_factory, order=1000)

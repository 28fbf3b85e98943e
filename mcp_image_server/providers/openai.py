"""OpenAI Images (GPT-image models) through ``AsyncOpenAI`` (PROVIDERS.md §3).

One synchronous call returns base64 images in the requested ``output_format``: ``images.generate``
(JSON) for a prompt, ``images.edit`` (multipart: up to 16 images as ``(name, bytes, mime)`` file
tuples, an optional PNG mask for the first) for an edit. The SDK's own retries are off
(``max_retries=0``): the provider manager owns retrying. One client per provider instance (over
HTTP on the SDK's aiohttp transport, ``DefaultAioHttpClient``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from ..config import Settings
from ..errors import (
    AuthFailedError,
    BadImageDataError,
    ContentRejectedError,
    ImageTooLargeError,
    InvalidArgumentError,
    InvalidImageError,
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
    UnknownStyleError,
    UnsupportedOptionError,
)
from ..imaging import fit_input
from ..models import (
    EXTENSIONS,
    GeneratedImage,
    GenerationRequest,
    ImageFormat,
    InputImage,
    ProgressFn,
    ProviderCatalog,
    ProviderResult,
    StyleInfo,
)
from .base import Provider, ProviderSpec
from .download import decode_b64, decode_image, redact, report, retry_after_seconds

if TYPE_CHECKING:
    from openai import AsyncOpenAI

__all__ = ["CATALOG", "SPEC", "OpenAIProvider"]

NAME: Final = "openai"

STYLES: Final = (
    StyleInfo("natural", "Natural", "natural lighting, true-to-life colours, unstylised"),
    StyleInfo("vivid", "Vivid", "hyper-real, vivid saturated colours, dramatic lighting"),
    StyleInfo("realistic", "Photorealistic", "photorealistic photograph, sharp focus, detailed textures"),
    StyleInfo("artistic", "Artistic", "expressive fine-art illustration, painterly composition"),
    StyleInfo("anime", "Anime", "anime style, cel shading, clean line art"),
    StyleInfo("cinematic", "Cinematic", "cinematic film still, anamorphic lens, moody colour grading"),
    StyleInfo("watercolor", "Watercolour", "watercolour painting, soft washes, paper texture"),
    StyleInfo("oil_painting", "Oil painting", "oil painting on canvas, visible brush strokes"),
    StyleInfo("sketch", "Pencil sketch", "pencil sketch, graphite shading, hand-drawn lines"),
    StyleInfo("pixel_art", "Pixel art", "pixel art, 16-bit retro game sprite style, limited palette"),
    StyleInfo("3d_render", "3D render", "3D render, global illumination, physically based materials"),
    StyleInfo("minimalist", "Minimalist", "minimalist design, flat shapes, generous negative space"),
)

_OPTION_VALUES: Final[Mapping[str, tuple[str, ...]]] = {
    "quality": ("low", "medium", "high", "auto"),
    "background": ("transparent", "opaque", "auto"),
    "moderation": ("auto", "low"),
    "input_fidelity": ("low", "high"),
}
_EDIT_ONLY: Final = frozenset({"input_fidelity"})
"""Options only ``images.edit`` takes."""
_GENERATE_ONLY: Final = frozenset({"moderation"})
"""Options only ``images.generate`` takes (the edit endpoint has no ``moderation``)."""

MAX_INPUT_IMAGES: Final = 16
INPUT_MIME_TYPES: Final = ("image/png", "image/jpeg", "image/webp")
INPUT_MAX_BYTES: Final = 50 * 1024 * 1024 - 1
"""Each edit input must be under 50 MB (PROVIDERS.md §3.3)."""
MASK_MAX_BYTES: Final = 4 * 1024 * 1024 - 1
"""The mask must be a PNG under 4 MB, the size of the first image."""

CATALOG: Final = ProviderCatalog(
    name=NAME,
    display_name="OpenAI Images",
    description="OpenAI GPT-image models; PNG, JPEG or WebP, optional transparent background.",
    models=("gpt-image-2", "gpt-image-1.5", "gpt-image-1-mini", "chatgpt-image-latest"),
    styles=STYLES,
    resolutions=("1024x1024", "1536x1024", "1024x1536", "auto"),
    default_resolution="1024x1024",
    formats=("png", "jpeg", "webp"),
    max_n=4,
    max_prompt_chars=32000,
    supports_negative_prompt=False,
    supports_seed=False,
    options=("quality", "background", "output_compression", "moderation", "input_fidelity"),
    notes=(
        "Styles are prompt modifiers: OpenAI has no style parameter, so the style's text is appended "
        "to the prompt. Options: quality low|medium|high|auto, background transparent|opaque|auto "
        "(transparent needs png or webp), output_compression 0-100 (jpeg/webp), moderation auto|low "
        "(generation only), input_fidelity low|high (edits only; gpt-image-1.5 takes both, gpt-image-1-mini "
        "low only, gpt-image-2 sets it itself so it is not sent)."
    ),
    max_input_images=MAX_INPUT_IMAGES,
    supports_mask=True,
    edit_notes=(
        "images.edit (multipart) with GPT-image models: 1-16 PNG, JPEG or WebP images under 50 MB each, the "
        "first being the one to change and the rest references; an optional mask (PNG with alpha under 4 MB, "
        "the size of the first image) whose transparent pixels mark what to change. auto size follows the "
        "first image's shape."
    ),
)


def _dropped(exc: BaseException) -> bool:
    """A refused or dropped connection that the SDK's aiohttp transport reports as ``ConnectTimeout``
    (its exception map prefers that class for every ``aiohttp.ClientConnectionError``): the aiohttp
    error underneath is no timeout."""
    import aiohttp

    root = exc.__cause__.__cause__ if exc.__cause__ is not None else None
    return isinstance(root, aiohttp.ClientConnectionError) and not isinstance(root, TimeoutError)


def _map_error(exc: BaseException, secrets: Iterable[str]) -> ProviderError:
    """The one place OpenAI SDK and timeout failures become ``errors.py`` classes."""
    import openai

    if isinstance(exc, TimeoutError | openai.APITimeoutError) and not _dropped(exc):
        return ProviderTimeoutError("OpenAI did not answer in time", provider=NAME)
    if isinstance(exc, openai.APITimeoutError):
        return ProviderUnavailableError("cannot reach OpenAI", provider=NAME)
    if isinstance(exc, openai.APIConnectionError):
        return ProviderUnavailableError("cannot reach OpenAI", provider=NAME)
    if isinstance(exc, openai.APIResponseValidationError):
        return ProviderUnavailableError(
            "OpenAI sent a malformed response",
            provider=NAME,
            details={"status": exc.status_code, "reason": "malformed_response"},
        )
    if not isinstance(exc, openai.APIStatusError):
        return ProviderUnavailableError(
            f"OpenAI sent an unusable response ({type(exc).__name__})",
            provider=NAME,
            details={"reason": "malformed_response"},
        )
    status, code = exc.status_code, exc.code
    vendor = exc.body.get("message") if isinstance(exc.body, dict) else None
    message = f"OpenAI error {status}" + (f" {code}" if code else "") + f": {redact(str(vendor or ''), secrets)[:300]}"
    details = {k: v for k, v in {"status": status, "vendor_code": code, "request_id": exc.request_id}.items() if v}
    if status == 429 and code != "insufficient_quota":
        return RateLimitedError(
            message, provider=NAME, details=details, retry_after=retry_after_seconds(dict(exc.response.headers))
        )
    cls: type[ProviderError]
    if status in (401, 403):
        cls = AuthFailedError
    elif status == 404 and code == "model_not_found":
        cls = ModelNotFoundError
    elif code in ("moderation_blocked", "content_policy_violation"):
        cls = ContentRejectedError
    elif status in (400, 422):
        cls = ProviderInvalidArgumentError
    elif status in (408, 409) or status >= 500:
        cls = ProviderUnavailableError
    else:  # 404 without a model code (wrong base URL), 429 insufficient_quota (billing): not retryable
        cls = ProviderError
    return cls(message, provider=NAME, details=details)


class OpenAIProvider(Provider):
    catalog = CATALOG

    def __init__(self, settings: Settings) -> None:
        if settings.openai_api_key is None:
            raise ProviderNotConfiguredError(
                "openai needs OPENAI_API_KEY (Settings.openai_api_key)", details={"provider": NAME}
            )
        from openai import AsyncOpenAI, DefaultAioHttpClient

        self._secrets = (settings.openai_api_key.get(),)
        self._client: AsyncOpenAI = AsyncOpenAI(
            api_key=settings.openai_api_key.get(),
            base_url=settings.openai_base_url,  # None: the SDK default
            max_retries=0,
            timeout=settings.openai_timeout,
            # Over HTTP the server runs on aiohttp already, so use the SDK's aiohttp backend (its
            # session opens on the first call, in the running loop): about 1 ms less CPU per call
            # than the default httpcore over anyio. A stdio server keeps the default rather than
            # import aiohttp (about 12 MB) for it.
            http_client=DefaultAioHttpClient() if settings.transport == "http" else None,
        )
        self._model = settings.openai_model
        self._timeout = settings.openai_timeout
        self._max_bytes = settings.download_max_bytes

    async def aclose(self) -> None:
        await self._client.close()

    def _params(self, request: GenerationRequest) -> tuple[dict[str, Any], list[str]]:
        """Validate and build ``images.generate``/``images.edit`` keyword arguments (files aside)
        plus warnings; no I/O, so errors come early.

        The style's prompt modifier is already in ``request.prompt`` (the service adds it); the
        catalog says there is no seed or negative prompt, so the service never sends them.
        """
        if request.style is not None and CATALOG.style(request.style) is None:
            raise UnknownStyleError(f"openai has no style {request.style!r}", details={"provider": NAME})
        if request.resolution not in CATALOG.resolutions:
            raise UnknownResolutionError(
                f"openai does not offer {request.resolution}",
                details={"provider": NAME, "allowed": list(CATALOG.resolutions)},
            )
        if not 1 <= request.n <= CATALOG.max_n:
            raise InvalidArgumentError(f"openai makes 1-{CATALOG.max_n} images per call, got {request.n}")
        if len(request.images) > MAX_INPUT_IMAGES:
            raise TooManyImagesError(
                f"openai edits take at most {MAX_INPUT_IMAGES} images, got {len(request.images)}",
                details={"provider": NAME, "images": len(request.images), "max": MAX_INPUT_IMAGES},
            )
        model = request.model or self._model
        warnings: list[str] = []
        params: dict[str, Any] = {
            "model": model,
            "prompt": request.prompt,
            "n": request.n,
            "size": request.resolution,
            "output_format": request.output_format,
        }
        for key, value in request.options.items():
            if key not in CATALOG.options:
                raise UnsupportedOptionError(
                    f"openai has no option {key!r}; it takes {', '.join(CATALOG.options)}",
                    details={"provider": NAME, "option": key},
                )
            allowed = _OPTION_VALUES.get(key)
            if allowed is not None and value not in allowed:
                raise InvalidArgumentError(
                    f"openai option {key} must be one of {', '.join(allowed)}",
                    details={"provider": NAME, "option": key},
                )
            if key == "output_compression" and (type(value) is not int or not 0 <= value <= 100):
                raise InvalidArgumentError(
                    "openai option output_compression must be an integer 0-100",
                    details={"provider": NAME, "option": key},
                )
            if (key in _EDIT_ONLY and not request.is_edit) or (key in _GENERATE_ONLY and request.is_edit):
                applies = "edits" if key in _EDIT_ONLY else "generation"
                warnings.append(f"openai option {key} applies to {applies} only; it was not sent")
                continue
            if key == "input_fidelity":
                # SDK docstring: gpt-image-1.5 takes high|low, gpt-image-1-mini low only, gpt-image-2 omits it
                if model.startswith("gpt-image-2"):
                    warnings.append(f"{model} sets input fidelity itself; input_fidelity was not sent")
                    continue
                if model.startswith("gpt-image-1-mini") and value != "low":
                    raise InvalidArgumentError(
                        f"{model} takes input_fidelity low only", details={"provider": NAME, "option": key}
                    )
            params[key] = value
        if params.get("background") == "transparent" and request.output_format == "jpeg":
            raise InvalidArgumentError(
                "a transparent background needs png or webp output", details={"provider": NAME, "option": "background"}
            )
        return params, warnings

    async def generate(self, request: GenerationRequest, progress: ProgressFn | None = None) -> ProviderResult:
        params, warnings = self._params(request)
        if request.is_edit:
            params.update(await _edit_files(request))  # local conversion: outside the vendor timeout
        try:
            async with asyncio.timeout(self._timeout):
                images = await self._run(params, request, progress)
        except TimeoutError as exc:
            raise _map_error(exc, self._secrets) from exc
        if len(images) != request.n:
            warnings.append(f"openai returned {len(images)} of {request.n} images")
        return ProviderResult(tuple(images), model=params["model"], warnings=tuple(warnings))

    async def _run(
        self, params: dict[str, Any], request: GenerationRequest, progress: ProgressFn | None
    ) -> list[GeneratedImage]:
        import openai

        want: ImageFormat = request.output_format
        if request.is_edit:
            inputs = f"{len(request.images)} input image(s)" + (" and a mask" if request.mask else "")
            await report(progress, f"requested {params['n']} edited image(s) from {params['model']} ({inputs})")
        else:
            await report(progress, f"requested {params['n']} image(s) from {params['model']}")
        try:
            if request.is_edit:
                response = await self._client.images.edit(**params)
            else:
                response = await self._client.images.generate(**params)
        except (openai.OpenAIError, ValueError) as exc:
            raise _map_error(exc, self._secrets) from exc
        items = list(getattr(response, "data", None) or [])
        if not items:
            raise BadImageDataError("openai returned no images", provider=NAME)
        await report(progress, "decoding")
        images = []
        for item in items:
            data = decode_b64(item.b64_json, provider=NAME, max_bytes=self._max_bytes)
            images.append(
                await decode_image(data, provider=NAME, want=want, revised_prompt=item.revised_prompt or None)
            )
        return images


def _file(image: InputImage, stem: str) -> tuple[str, bytes, str]:
    """A multipart file tuple: without a name and type the SDK sends application/octet-stream, which
    the API rejects (PROVIDERS.md §3.3)."""
    return (f"{stem}.{EXTENSIONS.get(image.mime_type, 'png')}", image.data, image.mime_type)


async def _edit_files(request: GenerationRequest) -> dict[str, Any]:
    """``image`` (one tuple, or a list for several: repeated ``image[]`` parts) and ``mask`` for
    ``images.edit``, converted to what the endpoint takes (inputs already fitting pass untouched).

    Raises:
        InvalidImageError: an input Pillow cannot re-encode.
        ImageTooLargeError: the mask is 4 MB or more even as an optimised PNG of its size.
        MaskMismatchError: the mask is not the size of the first image as sent.
    """
    mask = request.mask
    try:
        images = [
            await asyncio.to_thread(fit_input, image, INPUT_MIME_TYPES, max_bytes=INPUT_MAX_BYTES)
            for image in request.images
        ]
        if mask is not None:
            fitted = await asyncio.to_thread(fit_input, mask, ("image/png",), max_bytes=MASK_MAX_BYTES)
    except (OSError, ValueError) as exc:
        raise InvalidImageError(f"openai: cannot convert an input image ({exc})", details={"provider": NAME}) from exc
    files: dict[str, Any] = {
        "image": _file(images[0], "image")
        if len(images) == 1
        else [_file(image, f"image-{i + 1}") for i, image in enumerate(images)]
    }
    if mask is None:
        return files
    if (fitted.width, fitted.height) != (mask.width, mask.height) or len(fitted.data) > MASK_MAX_BYTES:
        # fit_input only shrinks a PNG's pixels to meet max_bytes, and a mask must keep its size
        raise ImageTooLargeError(
            f"openai takes masks under 4 MB; this {mask.width}x{mask.height} one is {len(mask.data)} bytes",
            details={
                "provider": NAME,
                "field": "mask",
                "size_bytes": len(mask.data),
                "limit_bytes": MASK_MAX_BYTES + 1,
            },
        )
    first = images[0]
    if (mask.width, mask.height) != (first.width, first.height):
        raise MaskMismatchError(
            f"the mask is {mask.width}x{mask.height} but the first image is sent as {first.width}x{first.height}",
            details={"provider": NAME, "field": "mask"},
        )
    files["mask"] = _file(fitted, "mask")
    return files


def _is_configured(settings: Settings) -> bool:
    return settings.openai_api_key is not None


SPEC: Final = ProviderSpec(
    catalog=CATALOG,
    is_configured=_is_configured,
    factory=OpenAIProvider,
    order=20,
    credentials_hint="OPENAI_API_KEY (and OPENAI_BASE_URL for a compatible endpoint)",
)

"""Doubao Seedream on Volcengine Ark through ``AsyncArk`` (PROVIDERS.md §2).

One synchronous call per image (``n`` images = ``n`` concurrent calls, each with group mode
off), so the count is exact and seeds can differ per image. An edit is one call carrying the
inputs as ``image`` (a data URI, or a list of up to 14) and, for ``n > 1``, group output
(``sequential_image_generation="auto"``, ``max_images=n``), where the model may make fewer.
Results come back as ``b64_json``: no second download and no 24-hour URL to race; each item
is checked for its own ``error``. When the configured model is missing or closed the fallback
model (if set) is tried once, with a warning in the result.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ..config import Settings
from ..errors import (
    AuthFailedError,
    BadImageDataError,
    ContentRejectedError,
    EditNotSupportedError,
    InvalidArgumentError,
    InvalidImageError,
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
    GeneratedImage,
    GenerationRequest,
    InputImage,
    ProgressFn,
    ProviderCatalog,
    ProviderResult,
    StyleInfo,
)
from .base import Provider, ProviderSpec
from .download import decode_b64, decode_image, gather_all, redact, report, retry_after_seconds

if TYPE_CHECKING:
    from volcenginesdkarkruntime import AsyncArk

__all__ = ["CATALOG", "SPEC", "DoubaoProvider", "size_problem"]

logger = logging.getLogger(__name__)

NAME: Final = "doubao"
DEFAULT_BASE_URL: Final = "https://ark.cn-beijing.volces.com/api/v3"

MAX_REFERENCES: Final = 14
"""Seedream 4.0 and later take up to 14 input images (Ark docs, 图片传入限制)."""
MAX_GROUP: Final = 15
"""References plus images made in one group request."""
REFERENCE_MIME_TYPES: Final = ("image/jpeg", "image/png")
"""What every Seedream model reads; others (WebP) are converted to the first."""
REFERENCE_MAX_BYTES: Final = 10 * 1024 * 1024
REFERENCE_MAX_SIDE: Final = 4096
"""Ark allows 6000x6000 px, but Seedream makes at most 4096x4096: more only costs upload time."""
REFERENCE_MIN_SIDE: Final = 15
"""Ark wants both sides > 14 px."""
REFERENCE_MAX_ASPECT: Final = 16

STYLES: Final = (
    StyleInfo("general", "General", "high quality, detailed, balanced composition"),
    StyleInfo("anime", "Anime", "anime illustration, cel shading, vibrant colours"),
    StyleInfo("chinese_painting", "Chinese painting (国画)", "traditional Chinese ink painting, xuan paper, brushwork"),
    StyleInfo("cyberpunk", "Cyberpunk", "cyberpunk, neon lights, rainy futuristic city, high contrast"),
    StyleInfo("realistic", "Photorealistic", "photorealistic photograph, natural light, sharp detail"),
    StyleInfo("oil_painting", "Oil painting", "oil painting, thick impasto brush strokes, canvas texture"),
    StyleInfo("watercolor", "Watercolour", "watercolour painting, soft translucent washes"),
    StyleInfo("sketch", "Sketch", "pencil sketch, cross-hatching, monochrome"),
    StyleInfo("3d", "3D render", "3D render, soft global illumination, clay-like materials"),
    StyleInfo("fantasy", "Fantasy", "epic fantasy art, magical atmosphere, dramatic lighting"),
    StyleInfo("pixel_art", "Pixel art", "pixel art, retro 16-bit palette"),
    StyleInfo("minimalist", "Minimalist", "minimalist, flat colours, clean shapes, negative space"),
)

CATALOG: Final = ProviderCatalog(
    name=NAME,
    display_name="Doubao Seedream (Volcengine Ark)",
    description=(
        "ByteDance Seedream on Volcengine Ark: text-to-image and editing with reference images; large (2K-4K) "
        "images, good with Chinese."
    ),
    models=(
        "doubao-seedream-4-0-250828",
        "doubao-seedream-4-5-251128",
        "doubao-seedream-5-0-260128",
        "doubao-seedream-5-0-lite-260128",
        "doubao-seedream-3-0-t2i-250415",
    ),
    styles=STYLES,
    resolutions=(
        "2048x2048",
        "2304x1728",
        "1728x2304",
        "2560x1440",
        "1440x2560",
        "2496x1664",
        "1664x2496",
        "3024x1296",
        "1024x1024",
        "auto",
    ),
    default_resolution="2048x2048",
    formats=("png", "jpeg", "webp"),
    max_n=4,
    max_prompt_chars=4000,
    size_range=(512, 4096),
    supports_negative_prompt=False,
    options=("guidance_scale",),
    notes=(
        "Styles are prompt modifiers. Sizes are checked per model: Seedream 4.0 takes 1K/2K/4K or WxH with "
        "921600-16777216 pixels, 4.5 and 5.0 need at least 3686400 pixels, 3.0 takes sides 512-2048; auto lets "
        "the model pick (2K). Seeds and guidance_scale (1-10) apply to Seedream 3.0 only. n images are n calls. "
        "Seedream answers JPEG; other formats are converted locally."
    ),
    max_input_images=MAX_REFERENCES,
    supports_mask=False,
    edit_notes=(
        "Seedream 4.0, 4.5 and 5.0 edit with 1-14 input images, the first being the one to change and the "
        "rest references (sent as JPEG or PNG data URIs, long side <= 4096, <= 10 MB, aspect ratio within "
        "1:16..16:1). n > 1 asks for a group of related images (references + images <= 15); the model may "
        "make fewer, so say how many you want in the prompt. Seedream 3.0 (t2i) cannot edit. No mask: "
        "describe the part to change in the prompt."
    ),
)


@dataclass(frozen=True, slots=True)
class _Family:
    """What one Seedream generation accepts (PROVIDERS.md §2.3)."""

    marker: str
    named_sizes: tuple[str, ...]
    min_pixels: int
    max_pixels: int
    side_range: tuple[int, int] | None
    auto_size: str
    seed_and_guidance: bool
    group_mode: bool
    native_formats: tuple[str, ...]
    max_references: int
    """Input images an edit may carry (0: text-to-image only)."""


_FAMILIES: Final = (
    _Family("seedream-3-0", (), 0, 1 << 62, (512, 2048), "1024x1024", True, False, (), 0),
    _Family("seedream-4-0", ("1K", "2K", "4K"), 921_600, 16_777_216, None, "2K", False, True, (), MAX_REFERENCES),
    _Family("seedream-4-5", ("2K", "4K"), 3_686_400, 16_777_216, None, "2K", False, True, (), MAX_REFERENCES),
    _Family(
        "seedream-5-0", ("2K", "3K"), 3_686_400, 16_777_216, None, "2K", False, True, ("png", "jpeg"), MAX_REFERENCES
    ),
)
_SIZE: Final = re.compile(r"^(\d+)x(\d+)$")
_MODEL_GONE: Final = frozenset(
    {"InvalidEndpointOrModel.NotFound", "ModelNotOpen", "InvalidEndpoint.ClosedEndpoint", "InvalidEndpoint.NotFound"}
)
_NOT_RETRYABLE_429: Final = frozenset({"QuotaExceeded", "SetLimitExceeded", "AccountOverdueError"})


def _family(model: str) -> _Family | None:
    """``None`` for custom endpoints (``ep-...``) and unknown ids: nothing is checked locally."""
    return next((f for f in _FAMILIES if f.marker in model), None)


def size_problem(model: str, size: str) -> str | None:
    """Why ``size`` (``WxH`` or ``1K``/``2K``...) does not suit ``model``, or ``None``."""
    fam = _family(model)
    if fam is None or size in fam.named_sizes:
        return None
    m = _SIZE.match(size)
    if m is None:
        return f"{model} takes {', '.join(fam.named_sizes) or 'WxH'} sizes, not {size!r}"
    w, h = int(m[1]), int(m[2])
    if fam.side_range and not all(fam.side_range[0] <= v <= fam.side_range[1] for v in (w, h)):
        return f"{model} needs both sides within {fam.side_range[0]}..{fam.side_range[1]}"
    if not fam.min_pixels <= w * h <= fam.max_pixels or not 1 / 16 <= w / h <= 16:
        return f"{model} needs {fam.min_pixels}..{fam.max_pixels} pixels and an aspect ratio within 1:16..16:1"
    return None


def _map_error(exc: BaseException, secrets: Iterable[str]) -> ProviderError:
    """The one place Ark SDK, item-level and timeout failures become ``errors.py`` classes."""
    from volcenginesdkarkruntime._exceptions import (
        ArkAPIConnectionError,
        ArkAPIError,
        ArkAPIResponseValidationError,
        ArkAPIStatusError,
        ArkAPITimeoutError,
    )

    if isinstance(exc, TimeoutError | ArkAPITimeoutError):
        return ProviderTimeoutError("Doubao did not answer in time", provider=NAME)
    if isinstance(exc, ArkAPIConnectionError):
        return ProviderUnavailableError("cannot reach Doubao (Ark)", provider=NAME)
    if isinstance(exc, ArkAPIResponseValidationError) or not isinstance(exc, ArkAPIError):
        return ProviderUnavailableError(
            "Doubao sent a malformed response", provider=NAME, details={"reason": type(exc).__name__}
        )
    status = exc.status_code if isinstance(exc, ArkAPIStatusError) else None
    code = exc.code or ""
    vendor = exc.body.get("message") if isinstance(exc.body, dict) else exc.message
    message = f"Doubao error {status or ''} {code}: {redact(str(vendor or ''), secrets)[:300]}".replace("  ", " ")
    details = {k: v for k, v in {"status": status, "vendor_code": code or None}.items() if v is not None}
    if status == 429 and code not in _NOT_RETRYABLE_429:
        headers = dict(exc.response.headers) if isinstance(exc, ArkAPIStatusError) else None
        return RateLimitedError(message, provider=NAME, details=details, retry_after=retry_after_seconds(headers))
    cls: type[ProviderError]
    if status in (401, 403):
        cls = AuthFailedError
    elif code in _MODEL_GONE or status == 404:
        cls = ModelNotFoundError
    elif "SensitiveContentDetected" in code:
        cls = ContentRejectedError
    elif code == "ServerOverloaded" or status in (408, 409) or (status or 0) >= 500:
        cls = ProviderUnavailableError
    elif status in (400, 422):
        cls = ProviderInvalidArgumentError
    else:
        cls = ProviderError
    return cls(message, provider=NAME, details=details)


def _field(obj: Any, name: str) -> Any:
    """Ark's models keep unknown keys as plain dicts (item ``error``), so read either shape."""
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


class DoubaoProvider(Provider):
    catalog = CATALOG

    def __init__(self, settings: Settings) -> None:
        if settings.doubao_api_key is None:
            raise ProviderNotConfiguredError(
                "doubao needs DOUBAO_API_KEY (Settings.doubao_api_key)", details={"provider": NAME}
            )
        from volcenginesdkarkruntime import AsyncArk

        self._secrets = (settings.doubao_api_key.get(),)
        self._client: AsyncArk = AsyncArk(
            base_url=settings.doubao_endpoint or DEFAULT_BASE_URL,
            api_key=settings.doubao_api_key.get(),
            max_retries=0,
            timeout=settings.doubao_timeout,
        )
        self._model = settings.doubao_model
        self._fallback = settings.doubao_fallback_model
        self._timeout = settings.doubao_timeout
        self._max_bytes = settings.download_max_bytes

    async def aclose(self) -> None:
        await self._client.close()

    def _calls(self, request: GenerationRequest, model: str) -> tuple[list[dict[str, Any]], list[str]]:
        """Keyword arguments for each of the ``n`` calls, plus warnings (no I/O, so errors come early)."""
        if request.style is not None and CATALOG.style(request.style) is None:
            raise UnknownStyleError(f"doubao has no style {request.style!r}", details={"provider": NAME})
        unknown = sorted(set(request.options) - set(CATALOG.options))
        if unknown:
            raise UnsupportedOptionError(
                f"doubao has no option(s) {', '.join(unknown)}", details={"provider": NAME, "options": unknown}
            )
        if not 1 <= request.n <= CATALOG.max_n:
            raise InvalidArgumentError(f"doubao makes 1-{CATALOG.max_n} images per request, got {request.n}")
        fam = _family(model)
        if request.is_edit:
            _check_edit(request, model, fam)
        size = request.resolution if request.width else (fam.auto_size if fam else "2048x2048")
        if (why := size_problem(model, size)) is not None:
            raise UnknownResolutionError(why, details={"provider": NAME, "model": model, "resolution": size})
        warnings: list[str] = []
        base: dict[str, Any] = {
            "model": model,
            "prompt": request.prompt,
            "size": size,
            "response_format": "b64_json",
            "watermark": False,
        }
        if fam is not None and fam.group_mode:
            base["sequential_image_generation"] = "disabled"  # one image per call, so n is exact
        if fam is not None and request.output_format in fam.native_formats:
            base["output_format"] = request.output_format
        scale = request.options.get("guidance_scale")
        if scale is not None and (not isinstance(scale, int | float) or not 1 <= scale <= 10):
            raise InvalidArgumentError(
                "doubao option guidance_scale must be a number 1-10",
                details={"provider": NAME, "option": "guidance_scale"},
            )
        takes = fam is not None and fam.seed_and_guidance
        if not takes and (request.seed is not None or scale is not None):
            warnings.append(f"{model} ignores seed and guidance_scale; they were not sent")
        elif scale is not None:
            base["guidance_scale"] = float(scale)
        if request.is_edit:  # one call: the references go once, several images come as a group
            return [self._edit_call(base, request, warnings)], warnings
        calls = []
        for i in range(request.n):
            call = dict(base)
            if takes and request.seed is not None:
                call["seed"] = (request.seed + i) % 2_147_483_648  # distinct images, reproducible
            calls.append(call)
        return calls, warnings

    @staticmethod
    def _edit_call(base: dict[str, Any], request: GenerationRequest, warnings: list[str]) -> dict[str, Any]:
        """``base`` for an edit (``image`` is added once the inputs are converted)."""
        from volcenginesdkarkruntime.types.images import SequentialImageGenerationOptions

        call = dict(base)
        if request.n == 1:
            return call
        count = min(request.n, MAX_GROUP - len(request.images))
        if count < request.n:
            warnings.append(
                f"Seedream makes at most {MAX_GROUP} images with its references; asked for {count}, not {request.n}"
            )
        call["sequential_image_generation"] = "auto"
        call["sequential_image_generation_options"] = SequentialImageGenerationOptions(max_images=count)
        return call

    async def generate(self, request: GenerationRequest, progress: ProgressFn | None = None) -> ProviderResult:
        model = request.model or self._model
        calls, warnings = self._calls(request, model)
        image = await _references(request.images) if request.is_edit else None  # local: outside the timeout
        for call in calls:
            call["image"] = image
        try:
            async with asyncio.timeout(self._timeout):
                try:
                    images, more = await self._batch(calls, request, progress)
                except ModelNotFoundError as exc:
                    fallback = self._fallback
                    if not fallback or fallback == model or model != self._model:
                        raise
                    try:
                        calls, warnings = self._calls(request, fallback)  # its size and edit rules may differ
                        for call in calls:
                            call["image"] = image
                    except InvalidArgumentError as why:
                        exc.details.update(fallback_model=fallback, fallback_skipped=why.message)
                        raise exc from exc.__cause__
                    note = f"doubao model {model} is unavailable ({exc.details.get('vendor_code')}); used {fallback}"
                    logger.warning("%s", note)
                    await report(progress, f"falling back to {fallback}")
                    images, more = await self._batch(calls, request, progress)
                    warnings.insert(0, note)
                    model = fallback
        except TimeoutError as exc:
            raise _map_error(exc, self._secrets) from exc
        return ProviderResult(tuple(images), model=model, warnings=tuple(warnings + more))

    async def _batch(
        self, calls: list[dict[str, Any]], request: GenerationRequest, progress: ProgressFn | None
    ) -> tuple[list[GeneratedImage], list[str]]:
        inputs = f" ({len(request.images)} input image(s))" if request.is_edit else ""
        what = f"{request.n} edited image(s)" if request.is_edit else f"{len(calls)} image(s)"
        await report(progress, f"requested {what} from {calls[0]['model']}{inputs}")
        results = await gather_all(self._one(call, request) for call in calls)
        images = [img for found, _ in results for img in found][: request.n]
        rejected = [err for _, errs in results for err in errs]
        if not images:
            raise rejected[0]
        made = len(images) + len(rejected)
        asked = sum(_asked(call) for call in calls)
        more = [f"doubao withheld {len(rejected)} of {made} images: {rejected[0].message}"] if rejected else []
        if made < asked:  # group mode: the model decides how many images the set has
            more.append(f"Seedream made {made} of the {asked} images asked for; say how many in the prompt")
        return images, more

    async def _one(
        self, call: dict[str, Any], request: GenerationRequest
    ) -> tuple[list[GeneratedImage], list[ProviderError]]:
        """One Ark call; item-level errors (output moderation) are returned, not raised."""
        from volcenginesdkarkruntime._exceptions import ArkAPIError, ArkError

        try:
            response = await self._client.images.generate(**call)
        except (ArkError, ValueError) as exc:
            raise _map_error(exc, self._secrets) from exc
        items = _field(response, "data")
        if not isinstance(items, list):  # a non-JSON 200 comes back as a plain str (§2.4)
            bad = TypeError(f"images.generate returned {type(response).__name__}")
            raise _map_error(bad, self._secrets) from bad
        images: list[GeneratedImage] = []
        failures: list[ProviderError] = []
        for item in items:
            if (err := _field(item, "error")) is not None:
                vendor = ArkAPIError(
                    str(_field(err, "message") or ""),
                    None,
                    body={"code": _field(err, "code"), "message": _field(err, "message")},
                )
                failure = _map_error(vendor, self._secrets)
                failure.__cause__ = vendor  # what ``raise ... from vendor`` would record
                failures.append(failure)
                continue
            data = decode_b64(_field(item, "b64_json"), provider=NAME, max_bytes=self._max_bytes)
            images.append(await decode_image(data, provider=NAME, want=request.output_format, seed=call.get("seed")))
        if not images and not failures:
            raise BadImageDataError("doubao returned no images", provider=NAME)
        return images, failures


def _asked(call: dict[str, Any]) -> int:
    """Images one call asks for: ``max_images`` in group mode, else 1."""
    options = call.get("sequential_image_generation_options")
    return int(getattr(options, "max_images", None) or 1)


def _check_edit(request: GenerationRequest, model: str, fam: _Family | None) -> None:
    """Whether ``model`` can make this edit; custom endpoints (``ep-...``) are not checked.

    Raises:
        EditNotSupportedError: a text-to-image model (Seedream 3.0), or a mask (``field: mask``).
        TooManyImagesError: more inputs than the model takes.
    """
    if request.mask is not None:
        raise EditNotSupportedError(
            "doubao (Seedream) takes no mask; describe the part to change in the prompt",
            details={"provider": NAME, "model": model, "field": "mask"},
        )
    limit = MAX_REFERENCES if fam is None else fam.max_references
    if limit == 0:
        raise EditNotSupportedError(
            f"{model} is a text-to-image model and cannot edit; edits need Seedream 4.0 or later "
            f"(e.g. DOUBAO_MODEL={CATALOG.models[0]})",
            details={"provider": NAME, "model": model},
        )
    if len(request.images) > limit:
        raise TooManyImagesError(
            f"{model} takes at most {limit} input images, got {len(request.images)}",
            details={"provider": NAME, "model": model, "images": len(request.images), "max": limit},
        )


async def _references(images: tuple[InputImage, ...]) -> str | list[str]:
    """The inputs as Ark's ``image``: one data URI, or a list of them (in order).

    Raises:
        InvalidImageError: an input outside Ark's aspect ratio range, or one Pillow cannot re-encode.
    """
    uris = []
    for i, image in enumerate(images):
        if max(image.width, image.height) > REFERENCE_MAX_ASPECT * min(image.width, image.height):
            raise InvalidImageError(
                f"Seedream takes images with an aspect ratio within 1:16..16:1; image {i + 1} is "
                f"{image.width}x{image.height}",
                details={"provider": NAME, "field": f"images[{i}]"},
            )
        try:
            fitted = await asyncio.to_thread(
                fit_input,
                image,
                REFERENCE_MIME_TYPES,
                max_side=REFERENCE_MAX_SIDE,
                max_bytes=REFERENCE_MAX_BYTES,
                min_side=REFERENCE_MIN_SIDE,
            )
        except (OSError, ValueError) as exc:
            raise InvalidImageError(
                f"doubao: cannot convert image {i + 1} ({exc})", details={"provider": NAME, "field": f"images[{i}]"}
            ) from exc
        uris.append(f"data:{fitted.mime_type};base64,{base64.b64encode(fitted.data).decode('ascii')}")
    return uris[0] if len(uris) == 1 else uris


def _is_configured(settings: Settings) -> bool:
    return settings.doubao_api_key is not None


SPEC: Final = ProviderSpec(
    catalog=CATALOG,
    is_configured=_is_configured,
    factory=DoubaoProvider,
    order=30,
    credentials_hint="DOUBAO_API_KEY (Volcengine Ark API key)",
)

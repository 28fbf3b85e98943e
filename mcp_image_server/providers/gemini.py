"""Google Gemini image models ("Nano Banana") through the ``google-genai`` SDK.

``client.aio.models.generate_content`` with ``response_modalities=["IMAGE"]`` and an
``ImageConfig`` aspect ratio; the image comes back as an ``inline_data`` part. The model makes
one image per call, so ``n`` images are ``n`` concurrent calls. The SDK's own retries are off
(``HttpRetryOptions(attempts=1)``, which also stops its hidden reconnect-and-retry): the
provider manager owns retrying. ``output_mime_type`` is never sent (the Gemini API rejects it):
PNG comes back and other formats are converted locally.

The SDK is given its own ``httpx2.AsyncClient`` (``trust_env=False``), so it never builds its
aiohttp session (a ``ClientSession`` subclass that aiohttp deprecates, with ``trust_env=True``).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from ..config import Settings
from ..errors import (
    AuthFailedError,
    BadImageDataError,
    ContentRejectedError,
    InvalidArgumentError,
    ModelNotFoundError,
    ProviderError,
    ProviderInvalidArgumentError,
    ProviderNotConfiguredError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RateLimitedError,
    UnknownResolutionError,
    UnknownStyleError,
    UnsupportedOptionError,
)
from ..imaging import fit_input
from ..models import GeneratedImage, GenerationRequest, ProgressFn, ProviderCatalog, ProviderResult, StyleInfo
from .base import Provider, ProviderSpec
from .download import decode_image, gather_all, redact, report, retry_after_seconds

if TYPE_CHECKING:
    import httpx2
    from google import genai
    from google.genai import types

__all__ = ["ASPECT_RATIOS", "CATALOG", "SPEC", "GeminiProvider"]

NAME: Final = "gemini"
API_VERSION: Final = "v1beta"
"""Pinned: google-genai 3.x defaults to ``v1`` (and ``GOOGLE_GENAI_API_VERSION`` can change it)."""

ASPECT_RATIOS: Final[Mapping[str, str]] = {
    "1024x1024": "1:1",
    "832x1248": "2:3",
    "1248x832": "3:2",
    "864x1184": "3:4",
    "1184x864": "4:3",
    "896x1152": "4:5",
    "1152x896": "5:4",
    "768x1344": "9:16",
    "1344x768": "16:9",
    "1536x672": "21:9",
}
"""Preset size -> ``ImageConfig.aspect_ratio``: Gemini 2.5 Flash Image's 1K sizes per ratio
(ai.google.dev image-generation docs). Gemini 3 image models answer a few pixels off these
(1376x768 for 16:9); the stored record has the size actually returned."""

STYLES: Final = (
    StyleInfo("photorealistic", "Photorealistic", "photorealistic photograph, natural light, sharp focus"),
    StyleInfo("cinematic", "Cinematic", "cinematic film still, shallow depth of field, dramatic lighting"),
    StyleInfo("illustration", "Illustration", "detailed digital illustration, clean lines, rich colour"),
    StyleInfo("anime", "Anime", "anime style, cel shading, clean line art"),
    StyleInfo("watercolor", "Watercolour", "watercolour painting, soft washes, paper texture"),
    StyleInfo("oil_painting", "Oil painting", "oil painting on canvas, visible brush strokes"),
    StyleInfo("sketch", "Pencil sketch", "pencil sketch, graphite shading, hand-drawn lines"),
    StyleInfo("pixel_art", "Pixel art", "pixel art, 16-bit retro game style, limited palette"),
    StyleInfo("3d_render", "3D render", "3D render, global illumination, physically based materials"),
    StyleInfo("minimalist", "Minimalist", "minimalist design, flat shapes, generous negative space"),
    StyleInfo("product", "Product shot", "studio product photograph, seamless backdrop, softbox lighting"),
    StyleInfo("sticker", "Sticker", "die-cut sticker, bold outline, flat colours, white border"),
)

CATALOG: Final = ProviderCatalog(
    name=NAME,
    display_name="Google Gemini (Nano Banana)",
    description="Google's Gemini image models; strong at text in images and following long prompts.",
    models=("gemini-2.5-flash-image", "gemini-3.1-flash-image-preview", "gemini-3-pro-image-preview"),
    styles=STYLES,
    resolutions=(*ASPECT_RATIOS, "auto"),
    default_resolution="1024x1024",
    formats=("png", "jpeg", "webp"),
    max_n=4,
    max_prompt_chars=16000,
    supports_negative_prompt=False,
    supports_seed=True,
    notes=(
        "Resolutions are Gemini's aspect ratios (1:1, 2:3, 3:2, 3:4, 4:3, 4:5, 5:4, 9:16, 16:9, 21:9) at 1K; "
        "auto lets the model choose (square for a text prompt). Styles are prompt modifiers. n images are n "
        "calls, seeds seed+i (best effort: Gemini does not promise identical images). Gemini answers PNG; "
        "JPEG and WebP are converted locally. Every image carries Google's invisible SynthID watermark."
    ),
    max_input_images=3,
    edit_notes=(
        "The instruction and up to 3 images (Gemini 2.5 Flash Image's limit) go as inline parts of one turn; "
        "no mask: say in the prompt what to change. Inputs over 7 MB are re-encoded smaller."
    ),
)

_MAX_INPUT_BYTES: Final = 7 * 1024 * 1024
"""Per inline input: three of them stay under the API's 20 MB request limit."""

_SAFETY: Final = frozenset(
    {
        "SAFETY",
        "IMAGE_SAFETY",
        "PROHIBITED_CONTENT",
        "IMAGE_PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "JAILBREAK",
        "RECITATION",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)
"""``promptFeedback.blockReason`` / ``finishReason`` values that mean a policy refused the request."""
_DELAY: Final = re.compile(r"^(\d+(?:\.\d+)?)s$")


def _error_info(body: Any) -> tuple[str | None, float | None]:
    """``ErrorInfo.reason`` and ``RetryInfo.retryDelay`` (seconds) from a Google error body."""
    error = body.get("error", body) if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    reason, delay = None, None
    for item in details if isinstance(details, list) else ():
        if not isinstance(item, dict):
            continue
        kind = str(item.get("@type", ""))
        if kind.endswith("google.rpc.ErrorInfo") and isinstance(item.get("reason"), str):
            reason = item["reason"]
        elif kind.endswith("google.rpc.RetryInfo") and (m := _DELAY.match(str(item.get("retryDelay", "")))):
            delay = float(m[1])
    return reason, delay


def _scrub(exc: BaseException, secrets: Iterable[str]) -> None:
    """Redact keys from an SDK error kept as ``__cause__``: Google echoes a rejected key in its
    ``DebugInfo`` detail, and ``APIError.__str__`` prints the whole body."""
    secrets = tuple(secrets)
    exc.args = tuple(redact(a, secrets) if isinstance(a, str) else a for a in exc.args)
    if isinstance(getattr(exc, "message", None), str):
        exc.message = redact(exc.message, secrets)  # type: ignore[attr-defined]
    body = getattr(exc, "details", None)
    if isinstance(body, dict | list):
        try:
            exc.details = json.loads(redact(json.dumps(body), secrets))  # type: ignore[attr-defined]
        except ValueError:
            exc.details = None  # type: ignore[attr-defined]


def _map_error(exc: BaseException, secrets: Iterable[str]) -> ProviderError:
    """The one place google-genai, transport and timeout failures become ``errors.py`` classes."""
    import httpx2
    from google.genai import errors

    _scrub(exc, secrets)
    if isinstance(exc, TimeoutError | httpx2.TimeoutException):
        return ProviderTimeoutError("Gemini did not answer in time", provider=NAME)
    if isinstance(exc, httpx2.TransportError):
        return ProviderUnavailableError(f"cannot reach Gemini ({type(exc).__name__})", provider=NAME)
    if not isinstance(exc, errors.APIError):
        return ProviderUnavailableError(
            f"Gemini sent an unusable response ({type(exc).__name__})",
            provider=NAME,
            details={"reason": "malformed_response"},
        )
    code, status = int(exc.code or 0), exc.status
    reason, delay = _error_info(exc.details)
    text = redact(str(exc.message or ""), secrets)[:300]
    message = f"Gemini error {code}" + (f" {status}" if status else "") + f": {text}"
    details = {k: v for k, v in {"status": code, "vendor_code": status, "reason": reason}.items() if v}
    if code == 429:
        headers = dict(exc.response.headers) if getattr(exc, "response", None) is not None else None
        retry_after = delay if delay is not None else retry_after_seconds(headers)
        return RateLimitedError(message, provider=NAME, details=details, retry_after=retry_after)
    cls: type[ProviderError]
    if code in (401, 403) or (reason or "").startswith("API_KEY_"):
        cls = AuthFailedError  # a wrong key is 400 INVALID_ARGUMENT with ErrorInfo reason API_KEY_INVALID
    elif code == 404:
        cls = ModelNotFoundError
    elif code in (408, 409) or code >= 500:
        cls = ProviderUnavailableError
    elif code in (400, 422) and status != "FAILED_PRECONDITION":
        cls = ProviderInvalidArgumentError
    else:  # FAILED_PRECONDITION (region not served, billing off): not retryable, not the caller's fault
        cls = ProviderError
    return cls(message, provider=NAME, details=details)


def _enum(value: Any) -> str | None:
    """An SDK enum (or the raw string of a value it does not know) as its wire name."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


class GeminiProvider(Provider):
    catalog = CATALOG

    def __init__(self, settings: Settings) -> None:
        if settings.gemini_api_key is None:
            raise ProviderNotConfiguredError(
                "gemini needs GEMINI_API_KEY (Settings.gemini_api_key)", details={"provider": NAME}
            )
        import httpx2
        from google import genai
        from google.genai import types

        self._types = types
        self._secrets = (settings.gemini_api_key.get(),)
        # Built here (the manager runs factories in a worker thread): the SSL contexts cost tens of ms.
        self._http: httpx2.AsyncClient = httpx2.AsyncClient(trust_env=False)
        self._client: genai.Client = genai.Client(
            api_key=settings.gemini_api_key.get(),
            vertexai=False,  # explicit: GOOGLE_GENAI_USE_VERTEXAI must not reroute us
            http_options=types.HttpOptions(
                base_url=settings.gemini_base_url,  # None: the SDK default
                api_version=API_VERSION,
                timeout=int(settings.gemini_timeout * 1000),  # milliseconds
                retry_options=types.HttpRetryOptions(attempts=1),
                httpx_async_client=self._http,
            ),
        )
        self._model = settings.gemini_model
        self._timeout = settings.gemini_timeout
        self._max_bytes = settings.download_max_bytes

    async def aclose(self) -> None:
        await self._client.aio.aclose()
        self._client.close()  # the sync httpx2 client the SDK made for itself
        await self._http.aclose()

    def _configs(self, request: GenerationRequest) -> list[types.GenerateContentConfig]:
        """One ``GenerateContentConfig`` per image (no I/O, so errors come early).

        The style's prompt modifier is already in ``request.prompt`` (the service adds it).
        """
        if request.style is not None and CATALOG.style(request.style) is None:
            raise UnknownStyleError(f"gemini has no style {request.style!r}", details={"provider": NAME})
        if request.options:
            raise UnsupportedOptionError(
                f"gemini has no option(s) {', '.join(sorted(request.options))}",
                details={"provider": NAME, "options": sorted(request.options)},
            )
        if not 1 <= request.n <= CATALOG.max_n:
            raise InvalidArgumentError(f"gemini makes 1-{CATALOG.max_n} images per request, got {request.n}")
        aspect = None
        if request.width is not None:
            aspect = ASPECT_RATIOS.get(request.resolution)
            if aspect is None:
                raise UnknownResolutionError(
                    f"gemini does not offer {request.resolution}",
                    details={"provider": NAME, "allowed": list(CATALOG.resolutions)},
                )
        if request.seed is not None and not 0 <= request.seed <= 2**31 - 1:
            raise InvalidArgumentError("gemini seeds must be within 0..2147483647", details={"provider": NAME})
        types = self._types
        configs = []
        for i in range(request.n):
            configs.append(
                types.GenerateContentConfig(
                    response_modalities=["IMAGE"],
                    image_config=types.ImageConfig(aspect_ratio=aspect) if aspect else None,
                    seed=None if request.seed is None else (request.seed + i) % 2**31,
                )
            )
        return configs

    async def generate(self, request: GenerationRequest, progress: ProgressFn | None = None) -> ProviderResult:
        configs = self._configs(request)
        model = request.model or self._model
        try:
            async with asyncio.timeout(self._timeout):
                await report(progress, f"requested {len(configs)} image(s) from {model}")
                results = await gather_all(self._one(model, request, config) for config in configs)
        except TimeoutError as exc:
            raise _map_error(exc, self._secrets) from exc
        images = [image for image, _ in results if image is not None]
        refused = [err for _, err in results if err is not None]
        if not images:
            raise refused[0]
        warnings = (
            (f"gemini withheld {len(refused)} of {len(configs)} images: {refused[0].message}",) if refused else ()
        )
        return ProviderResult(tuple(images), model=model, warnings=warnings)

    async def _one(
        self, model: str, request: GenerationRequest, config: types.GenerateContentConfig
    ) -> tuple[GeneratedImage | None, ProviderError | None]:
        """One call; a refusal (safety block, no image) is returned, not raised, so the other
        images of the request survive it."""
        import httpx2
        from google.genai import errors

        types = self._types
        # One user turn: the instruction, then an edit's input images as inline_data parts.
        parts = [types.Part(text=request.prompt)]
        for given in request.images:
            fitted = await asyncio.to_thread(fit_input, given, max_bytes=_MAX_INPUT_BYTES)
            parts.append(types.Part(inline_data=types.Blob(data=fitted.data, mime_type=fitted.mime_type)))
        contents = [types.Content(role="user", parts=parts)]
        try:
            response = await self._client.aio.models.generate_content(model=model, contents=contents, config=config)
        except (errors.APIError, httpx2.HTTPError, ValueError) as exc:  # ValueError: a body that is not JSON
            raise _map_error(exc, self._secrets) from exc
        feedback = response.prompt_feedback
        blocked = _enum(feedback.block_reason) if feedback is not None else None
        if blocked:
            return None, ContentRejectedError(
                f"Gemini blocked the prompt ({blocked})"
                + (f": {feedback.block_reason_message}" if feedback and feedback.block_reason_message else ""),
                provider=NAME,
                details={"vendor_code": blocked, "stage": "prompt"},
            )
        candidate = response.candidates[0] if response.candidates else None
        finish = _enum(candidate.finish_reason) if candidate is not None else None
        parts = (candidate.content.parts if candidate is not None and candidate.content else None) or []
        said = " ".join(p.text for p in parts if p.text and not p.thought).strip()
        for part in parts:
            blob = part.inline_data
            if part.thought or blob is None or not (blob.mime_type or "").startswith("image/"):
                continue  # Gemini 3 models send draft images as thoughts before the final one
            if not blob.data:
                raise BadImageDataError("gemini returned an empty image part", provider=NAME)
            if len(blob.data) > self._max_bytes:
                raise BadImageDataError(
                    f"gemini image is larger than the {self._max_bytes} byte limit",
                    provider=NAME,
                    details={"limit_bytes": self._max_bytes},
                )
            image = await decode_image(blob.data, provider=NAME, want=request.output_format, seed=config.seed)
            return image, None
        details = {k: v for k, v in {"vendor_code": finish, "model_text": said[:300] or None}.items() if v}
        if finish in _SAFETY:
            return None, ContentRejectedError(
                f"Gemini refused to make this image ({finish})", provider=NAME, details={**details, "stage": "output"}
            )
        reply = f"; it replied: {said[:200]!r}" if said else ""
        return None, BadImageDataError(
            f"gemini returned no image (finish reason {finish or 'none'}){reply}", provider=NAME, details=details
        )


def _is_configured(settings: Settings) -> bool:
    return settings.gemini_api_key is not None


SPEC: Final = ProviderSpec(
    catalog=CATALOG,
    is_configured=_is_configured,
    factory=GeminiProvider,
    order=25,
    credentials_hint="GEMINI_API_KEY (a Google AI Studio key; GEMINI_BASE_URL for a compatible endpoint)",
)

"""Volcengine Ark (Doubao Seedream) emulator (PROVIDERS.md §2): ``POST /api/v3/images/generations``.

The SDK sends every named parameter, unset ones as explicit ``null`` (§2.2), so nulls are
dropped before validation. Sizes are checked per model family (§2.3); results are URLs
served from ``/files/...`` or ``b64_json``. Reference images (``image``: one string or a list)
are checked as Ark documents its input limits (data URIs decoded and sniffed, JPEG or PNG,
at most 14 and only for Seedream 4.0 and later, references + group outputs <= 15) and recorded,
decoded, in ``references``.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from PIL import Image

from .common import FILE_FAULTS, STREAM_FAULTS, Emulator, json_bytes

__all__ = ["MAX_REFERENCES", "DoubaoEmulator", "Reference", "size_error"]

MAX_REFERENCES: Final = 14
MAX_GROUP: Final = 15
"""References plus generated images in one group request (§2.3)."""
_REF_MAX_BYTES: Final = 10 * 1024 * 1024
_REF_MAX_PIXELS: Final = 6000 * 6000
_REF_FORMATS: Final = {"jpeg": "JPEG", "png": "PNG"}
"""``data:image/<fmt>;base64,`` formats taken (lower case), and what the bytes must really be."""
_DATA_URI: Final = re.compile(r"^data:image/([A-Za-z0-9.+-]+);base64,(.*)$", re.DOTALL)
_SIZE: Final = re.compile(r"^(\d+)x(\d+)$")
_NAMED: Final = {"1K": 1024, "2K": 2048, "3K": 3072, "4K": 4096}
_FAULTS: Final[dict[str, tuple[int, str, str]]] = {
    "rate_limit": (
        429,
        "RateLimitExceeded.EndpointRPMExceeded",
        "Your account has exceeded the images per minute limit for this endpoint.",
    ),
    "quota": (429, "QuotaExceeded", "Your account has exhausted its quota."),
    "server_error": (500, "InternalServiceError", "The service encountered an unexpected internal error."),
    "unavailable": (503, "ServerOverloaded", "The service is currently unable to handle additional requests."),
    "moderation": (
        400,
        "InputTextSensitiveContentDetected",
        "The request failed because the input text may contain sensitive information.",
    ),
    "invalid_argument": (400, "InvalidParameter", "The parameter `size` specified in the request is not valid."),
    "auth": (401, "AuthenticationError", "The API key or AK/SK in the request is missing or invalid."),
    "unknown_model": (
        404,
        "InvalidEndpointOrModel.NotFound",
        "The model or endpoint does not exist or you do not have access to it.",
    ),
    "model_closed": (400, "InvalidEndpoint.ClosedEndpoint", "The requested endpoint is closed."),
}


def size_error(model: str, size: str) -> str | None:
    """Why ``size`` is invalid for ``model`` per §2.3, or None; unknown families are not checked."""
    m = _SIZE.match(size)
    if "seedream-3-0" in model:
        if not m or not all(512 <= int(v) <= 2048 for v in m.groups()):
            return "size must be WxH with each side in [512, 2048]"
        return None
    named: tuple[str, ...]
    if "seedream-4-0" in model:
        named, lo = ("1K", "2K", "4K"), 921_600
    elif "seedream-4-5" in model:
        named, lo = ("2K", "4K"), 3_686_400
    elif "seedream-5-0" in model:
        named, lo = ("2K", "3K"), 3_686_400
    else:
        return None
    if size in named:
        return None
    if not m:
        return f"size must be one of {named} or WxH"
    w, h = int(m[1]), int(m[2])
    if not lo <= w * h <= 16_777_216 or not 1 / 16 <= w / h <= 16:
        return f"size WxH must have total pixels in [{lo}, 16777216] and aspect ratio in [1/16, 16]"
    return None


@dataclass(frozen=True, slots=True)
class Reference:
    """One ``image`` entry of a request, decoded (``data`` is empty for a URL, which is not fetched)."""

    source: str
    """``data_uri`` or ``url``."""
    mime_type: str
    """The declared type: ``image/<fmt>`` of the data URI (``""`` for a URL)."""
    data: bytes = field(repr=False)
    width: int = 0
    height: int = 0
    url: str | None = None


class _Invalid(Exception):
    """A 400 ``InvalidParameter``: args are (message, param[, code])."""


class DoubaoEmulator(Emulator):
    """``async with DoubaoEmulator(api_key=...) as emu: AsyncArk(base_url=emu.base_url)``.

    Routes for faults: ``generate``, ``files``, ``result``. ``output_moderation`` answers 200
    with an item-level ``error`` instead of an image (§2.4): for every item, or with
    ``items=[0, 2]`` only for those (the others are images, as in a group answer).
    ``models`` limits which ids exist.
    """

    vendor = "doubao"
    api_route = "generate"
    supported_faults = frozenset({"hang", "malformed", "output_moderation", *_FAULTS, *FILE_FAULTS, *STREAM_FAULTS})

    def __init__(
        self,
        *,
        api_key: str = "ark-emulator",
        models: Collection[str] | None = None,
        image_format: str = "jpeg",
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
    ) -> None:
        super().__init__(host=host, port=port, latency=latency)
        self.api_key = api_key
        self.models = set(models) if models is not None else None
        self.image_format = image_format
        self.references: list[tuple[Reference, ...]] = []
        """The ``image`` entries of every request that passed the checks and had any, in order."""
        self.group_limit: int | None = None
        """At most this many images per group answer (the model judging the prompt to want fewer)."""

    @property
    def base_url(self) -> str:
        return f"{self.origin}/api/v3"

    def env(self) -> dict[str, str]:
        return {"DOUBAO_API_KEY": self.api_key, "DOUBAO_ENDPOINT": self.base_url}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v3/images/generations", self._generate)

    @staticmethod
    def _error(
        status: int, code: str, message: str, param: str = "", headers: dict[str, str] | None = None
    ) -> web.Response:
        request_id = f"{time.strftime('%Y%m%d%H%M%S')}{uuid.uuid4().hex[:20]}"
        body = {
            "error": {
                "code": code,
                "message": f"{message} Request id: {request_id}",
                "param": param,
                "type": "BadRequest" if status == 400 else "Error",
            }
        }
        return web.Response(
            status=status,
            body=json_bytes(body, ascii_only=False),
            content_type="application/json",
            headers={"x-request-id": request_id, **(headers or {})},
        )

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        rec, fault = await self.enter(request, "generate")
        kind = fault.kind if fault else None
        if kind == "malformed":
            return web.Response(
                text="upstream connect error or disconnect/reset before headers", content_type="text/plain"
            )
        if fault is not None and kind in _FAULTS:
            status, code, message = _FAULTS[kind]
            headers = {"Retry-After": str(fault.params["retry_after"])} if "retry_after" in fault.params else {}
            return self._error(status, code, message, headers=headers)
        if rec.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._error(401, "AuthenticationError", "The API key in the request is missing or invalid.")
        if not isinstance(rec.body, dict):
            return self._error(400, "InvalidParameter", "The request body is not valid JSON.")
        body = {k: v for k, v in rec.json.items() if v is not None}  # explicit nulls mean "absent"
        refused: Collection[int] | None = None
        if kind == "output_moderation" and fault is not None:
            refused = fault.params.get("items") or range(MAX_GROUP)
        return self._render(request, body, refused=refused)

    def _render(self, request: web.Request, body: dict[str, Any], *, refused: Collection[int] | None) -> web.Response:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return self._error(400, "MissingParameter.model", "The request is missing the parameter `model`.", "model")
        if self.models is not None and model not in self.models:
            return self._error(
                404,
                "InvalidEndpointOrModel.NotFound",
                f"The model or endpoint {model} does not exist or you do not have access to it.",
            )
        if not isinstance(body.get("prompt"), str) or not body["prompt"]:
            return self._error(
                400, "MissingParameter.prompt", "The request is missing the parameter `prompt`.", "prompt"
            )
        is_v3 = "seedream-3-0" in model
        size = body.get("size", "1024x1024" if is_v3 else "2048x2048")
        if (why := size_error(model, size)) is not None:
            return self._error(400, "InvalidParameter", f"The parameter `size` is invalid: {why}.", "size")
        seed = body.get("seed", -1)
        if not isinstance(seed, int) or not -1 <= seed <= 2_147_483_647:
            return self._error(400, "InvalidParameter", "The parameter `seed` is invalid.", "seed")
        scale = body.get("guidance_scale", 2.5)
        if not isinstance(scale, int | float) or not 1 <= scale <= 10:
            return self._error(400, "InvalidParameter", "The parameter `guidance_scale` is invalid.", "guidance_scale")
        fmt = body.get("response_format", "url")
        if fmt not in ("url", "b64_json"):
            return self._error(
                400, "InvalidParameter", "The parameter `response_format` is invalid.", "response_format"
            )
        try:
            references = _references(model, body.get("image"))
            count = _group_size(body, len(references))
            if self.group_limit is not None and body.get("sequential_image_generation") == "auto":
                count = min(count, self.group_limit)
        except _Invalid as bad:
            return self._error(400, bad.args[2] if len(bad.args) > 2 else "InvalidParameter", bad.args[0], bad.args[1])
        if references:
            self.references.append(references)
        m = _SIZE.match(size)
        width, height = (int(m[1]), int(m[2])) if m else (_NAMED[size], _NAMED[size])
        items: list[dict[str, Any]] = []
        for i in range(count):
            if refused is not None and i in refused:
                items.append(
                    {
                        "error": {
                            "code": "OutputImageSensitiveContentDetected",
                            "message": "The generated image may contain sensitive content.",
                        }
                    }
                )
                continue
            data, mime = self.render(width, height, seed=max(seed, 0) + i)
            if fmt == "b64_json":
                items.append({"b64_json": base64.b64encode(self.result_bytes(data)).decode(), "size": size})
            else:
                name = f"{uuid.uuid4().hex}.{mime.removeprefix('image/')}"
                items.append({"url": self.put_file(request, name, data, mime, "X-Tos-Expires=86400"), "size": size})
        generated = sum(1 for item in items if "error" not in item)
        reply = {
            "model": model,
            "created": int(time.time()),
            "data": items,
            "usage": {
                "generated_images": generated,
                "output_tokens": 16384 * generated,
                "total_tokens": 16384 * generated,
            },
        }
        return web.Response(body=json_bytes(reply, ascii_only=False), content_type="application/json")


def _group_size(body: dict[str, Any], references: int) -> int:
    """How many images the request makes: 1, or ``max_images`` in group mode (default: all it may)."""
    mode = body.get("sequential_image_generation", "disabled")
    if mode not in ("auto", "disabled"):
        raise _Invalid(
            "The parameter `sequential_image_generation` specified in the request is not valid.",
            "sequential_image_generation",
        )
    if mode == "disabled":
        return 1
    options = body.get("sequential_image_generation_options") or {}
    count = options.get("max_images", MAX_GROUP - references) if isinstance(options, dict) else None
    if type(count) is not int or not 1 <= count <= MAX_GROUP:
        raise _Invalid(
            "The parameter `sequential_image_generation_options.max_images` must be an integer in [1, 15].",
            "sequential_image_generation_options.max_images",
        )
    if references + count > MAX_GROUP:
        raise _Invalid(
            f"The number of reference images ({references}) plus max_images ({count}) must not exceed {MAX_GROUP}.",
            "sequential_image_generation_options.max_images",
        )
    return count


def _references(model: str, image: object) -> tuple[Reference, ...]:
    """The request's ``image`` (a string or a list of strings), checked; raises ``_Invalid``."""
    if image is None:
        if "seededit" in model:
            raise _Invalid("The request is missing the parameter `image`.", "image", "MissingParameter.image")
        return ()
    entries = [image] if isinstance(image, str) else image
    if not isinstance(entries, list) or not entries or not all(isinstance(e, str) for e in entries):
        raise _Invalid("The parameter `image` must be a string or a non-empty list of strings.", "image")
    if "seedream-3-0" in model:
        raise _Invalid(f"The model {model} does not support image input.", "image", "InvalidParameter.UnsupportedImage")
    limit = 1 if "seededit" in model else MAX_REFERENCES
    if len(entries) > limit:
        raise _Invalid(f"The parameter `image` accepts at most {limit} images, got {len(entries)}.", "image")
    return tuple(_reference(i, entry) for i, entry in enumerate(entries))


def _reference(index: int, entry: str) -> Reference:
    param = f"image[{index}]"
    if entry.startswith(("http://", "https://")):
        return Reference("url", "", b"", url=entry)
    m = _DATA_URI.match(entry)
    if m is None:
        raise _Invalid(
            f"The parameter `{param}` must be an image URL or data:image/<format>;base64,<data>.",
            param,
            "InvalidParameter.UnsupportedImageFormat",
        )
    fmt = m[1]
    if fmt not in _REF_FORMATS:  # lower case only, as the docs insist
        raise _Invalid(
            f"The image format `{fmt}` of `{param}` is not supported; use jpeg or png.",
            param,
            "InvalidParameter.UnsupportedImageFormat",
        )
    try:
        data = base64.b64decode(m[2], validate=True)
    except (binascii.Error, ValueError):
        raise _Invalid(f"The parameter `{param}` is not valid base64.", param) from None
    if len(data) > _REF_MAX_BYTES:
        raise _Invalid(
            f"The image `{param}` is larger than 10 MB ({len(data)} bytes).", param, "InvalidParameter.OversizedImage"
        )
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            real, width, height = img.format, img.width, img.height
    except (OSError, ValueError, Image.DecompressionBombError):
        raise _Invalid(
            f"The image `{param}` could not be decoded.", param, "InvalidParameter.UnsupportedImageFormat"
        ) from None
    if real != _REF_FORMATS[fmt]:
        raise _Invalid(
            f"The image `{param}` is declared {fmt} but is {real}.", param, "InvalidParameter.UnsupportedImageFormat"
        )
    if min(width, height) <= 14 or width * height > _REF_MAX_PIXELS or not 1 / 16 <= width / height <= 16:
        raise _Invalid(
            f"The image `{param}` is {width}x{height}: sides must exceed 14 px, the aspect ratio be within "
            "[1/16, 16] and the total at most 6000x6000 pixels.",
            param,
            "InvalidParameter.OversizedImage",
        )
    return Reference("data_uri", f"image/{fmt}", data, width, height)

"""Volcengine Ark (Doubao Seedream) emulator (PROVIDERS.md §2): ``POST /api/v3/images/generations``.

The SDK sends every named parameter, unset ones as explicit ``null`` (§2.2), so nulls are
dropped before validation. Sizes are checked per model family (§2.3); results are URLs
served from ``/files/...`` or ``b64_json``.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Collection
from typing import Any, Final

from aiohttp import web

from .common import FILE_FAULTS, STREAM_FAULTS, Emulator, json_bytes

__all__ = ["DoubaoEmulator", "size_error"]

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


class DoubaoEmulator(Emulator):
    """``async with DoubaoEmulator(api_key=...) as emu: AsyncArk(base_url=emu.base_url)``.

    Routes for faults: ``generate``, ``files``, ``result``. ``output_moderation`` answers 200
    with an item-level ``error`` instead of an image (§2.4). ``models`` limits which ids exist.
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
        return self._render(request, body, output_moderation=kind == "output_moderation")

    def _render(self, request: web.Request, body: dict[str, Any], *, output_moderation: bool) -> web.Response:
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
        count = 1
        if body.get("sequential_image_generation") == "auto":
            count = int((body.get("sequential_image_generation_options") or {}).get("max_images", 15))
        m = _SIZE.match(size)
        width, height = (int(m[1]), int(m[2])) if m else (_NAMED[size], _NAMED[size])
        items: list[dict[str, Any]] = []
        for i in range(count):
            if output_moderation:
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

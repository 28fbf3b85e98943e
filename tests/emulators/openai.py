"""OpenAI Images emulator (PROVIDERS.md §3): ``POST /v1/images/generations`` with bearer auth.

GPT-image models always answer with ``b64_json``; errors are ``{"error": {...}}`` with the
HTTP status the SDK maps to its exception classes, and every reply carries ``x-request-id``.
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

__all__ = ["OpenAIEmulator"]

_FIELDS: Final = frozenset(
    [
        "prompt",
        "model",
        "n",
        "size",
        "quality",
        "background",
        "output_format",
        "output_compression",
        "moderation",
        "stream",
        "partial_images",
        "user",
        "safety_identifier",
        "response_format",
        "style",
    ]
)
_ENUMS: Final = {
    "quality": ("low", "medium", "high", "auto"),
    "background": ("transparent", "opaque", "auto"),
    "output_format": ("png", "jpeg", "webp"),
    "moderation": ("auto", "low"),
}
_SIZE: Final = re.compile(r"^(\d+)x(\d+)$")
_FAULTS: Final[dict[str, tuple[int, str, str, str]]] = {
    # kind: (status, code, type, message)
    "rate_limit": (
        429,
        "rate_limit_exceeded",
        "requests",
        "Rate limit reached for images per minute. Please try again in 7s.",
    ),
    "quota": (
        429,
        "insufficient_quota",
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    "server_error": (500, "server_error", "server_error", "The server had an error while processing your request."),
    "unavailable": (503, "engine_overloaded", "server_error", "The engine is currently overloaded."),
    "moderation": (
        400,
        "moderation_blocked",
        "image_generation_user_error",
        "Your request was rejected by the safety system.",
    ),
    "invalid_argument": (400, "invalid_value", "invalid_request_error", "Invalid value for 'size'."),
    "auth": (401, "invalid_api_key", "invalid_request_error", "Incorrect API key provided."),
    "unknown_model": (404, "model_not_found", "invalid_request_error", "The model does not exist."),
}


class OpenAIEmulator(Emulator):
    """``async with OpenAIEmulator(api_key=...) as emu: AsyncOpenAI(base_url=emu.base_url)``.

    Routes for faults: ``generate`` and ``result`` (spoils the inlined ``b64_json``).
    ``models`` limits which model ids exist (``None``: every id does).
    """

    vendor = "openai"
    api_route = "generate"
    supported_faults = frozenset({"hang", "malformed", *_FAULTS, *FILE_FAULTS, *STREAM_FAULTS})

    def __init__(
        self,
        *,
        api_key: str = "sk-emulator",
        models: Collection[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
    ) -> None:
        super().__init__(host=host, port=port, latency=latency)
        self.api_key = api_key
        self.models = set(models) if models is not None else None

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def env(self) -> dict[str, str]:
        return {"OPENAI_API_KEY": self.api_key, "OPENAI_BASE_URL": self.base_url}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/images/generations", self._generate)

    @staticmethod
    def _error(
        status: int,
        code: str | None,
        kind: str,
        message: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> web.Response:
        body = {"error": {"message": message, "type": kind, "param": param, "code": code, **extra}}
        return web.Response(
            status=status,
            body=json_bytes(body),
            content_type="application/json",
            headers={"x-request-id": f"req_{uuid.uuid4().hex}", **(headers or {})},
        )

    def _invalid(self, message: str, param: str, code: str = "invalid_value") -> web.Response:
        return self._error(400, code, "invalid_request_error", message, param)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        rec, fault = await self.enter(request, "generate")
        if fault is not None and fault.kind == "malformed":
            return web.Response(body=b'{"created": 17', content_type="application/json")
        if fault is not None and fault.kind in _FAULTS:
            status, code, kind, message = _FAULTS[fault.kind]
            headers = {}
            if fault.kind == "rate_limit":
                headers = {
                    "retry-after": str(fault.params.get("retry_after", 7)),
                    "x-ratelimit-remaining-requests": "0",
                }
            extra: dict[str, Any] = (
                {"moderation_details": {"moderation_stage": "input", "categories": ["violence"]}}
                if fault.kind == "moderation"
                else {}
            )
            return self._error(status, code, kind, message, headers=headers, **extra)
        auth = rec.headers.get("Authorization", "")
        if auth != f"Bearer {self.api_key}":
            shown = auth.removeprefix("Bearer ")
            shown = f"{shown[:6]}{'*' * 8}{shown[-4:]}" if len(shown) > 10 else "***"
            return self._error(
                401,
                "invalid_api_key",
                "invalid_request_error",
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
            )
        if not isinstance(rec.body, dict):
            return self._invalid("We could not parse the JSON body of your request.", "body", "invalid_json")
        return self._validate_and_render(rec.json)

    def _validate_and_render(self, body: dict[str, Any]) -> web.Response:
        for key in body:
            if key not in _FIELDS:
                return self._invalid(f"Unknown parameter: '{key}'.", key, "unknown_parameter")
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt:
            return self._invalid("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
        model = body.get("model", "gpt-image-2")
        if self.models is not None and model not in self.models:
            return self._error(
                404,
                "model_not_found",
                "invalid_request_error",
                f"The model '{model}' does not exist or you do not have access to it.",
            )
        for key, allowed in _ENUMS.items():
            if key in body and body[key] not in allowed:
                return self._invalid(f"Invalid value: '{body[key]}'. Supported values are: {allowed}.", key)
        n = body.get("n", 1)
        if not isinstance(n, int) or not 1 <= n <= 10:
            return self._invalid("Invalid 'n': must be between 1 and 10.", "n")
        fmt = body.get("output_format", "png")
        if body.get("background") == "transparent" and fmt == "jpeg":
            return self._invalid("Transparent background requires png or webp output.", "background")
        compression = body.get("output_compression")
        if compression is not None and (not isinstance(compression, int) or not 0 <= compression <= 100):
            return self._invalid("output_compression must be 0-100.", "output_compression")
        size = body.get("size", "auto")
        m = _SIZE.match(size) if isinstance(size, str) else None
        if size == "auto":
            width, height = 1024, 1024
        elif m and int(m[1]) % 16 == 0 and int(m[2]) % 16 == 0 and max(int(m[1]), int(m[2])) <= 3840:
            width, height = int(m[1]), int(m[2])
        else:
            return self._invalid(
                f"Invalid size '{size}'. Supported sizes are 1024x1024, 1024x1536, 1536x1024, and auto.", "size"
            )
        data = []
        for i in range(n):
            raw, _ = self.render(width, height, seed=i, fmt=fmt)
            data.append({"b64_json": base64.b64encode(self.result_bytes(raw)).decode()})
        reply = {
            "created": int(time.time()),
            "background": body.get("background", "opaque"),
            "output_format": fmt,
            "quality": body.get("quality", "high"),
            "size": f"{width}x{height}",
            "data": data,
            "usage": {
                "input_tokens": 50,
                "input_tokens_details": {"text_tokens": 50, "image_tokens": 0},
                "output_tokens": 1056 * n,
                "total_tokens": 50 + 1056 * n,
            },
        }
        return web.Response(
            body=json_bytes(reply, ascii_only=False),
            content_type="application/json",
            headers={"x-request-id": f"req_{uuid.uuid4().hex}"},
        )

"""Google Gemini API emulator: ``POST /v1beta/models/{model}:generateContent`` with ``x-goog-api-key``.

Errors are Google's ``{"error": {"code", "message", "status", "details"}}``. A wrong key is
what Google sends: 400 ``INVALID_ARGUMENT`` with ``ErrorInfo.reason = API_KEY_INVALID`` and a
``DebugInfo`` that echoes the key back (adapters must keep it out of messages and logs); a
missing key is 403 ``PERMISSION_DENIED``. A 429 carries ``RetryInfo.retryDelay``. Refusals are
HTTP 200: ``promptFeedback.blockReason`` (prompt blocked, no candidates) or a candidate whose
``finishReason`` is ``IMAGE_SAFETY`` (or ``NO_IMAGE``, or text only) with no image part.

The request is checked: ``contents`` parts are ``text`` or ``inlineData`` (base64 image, kept in
``inline_images`` for edit tests), ``generationConfig.responseModalities`` has ``IMAGE``,
``imageConfig.aspectRatio`` is one Gemini knows, and ``outputMimeType`` is refused.
"""

from __future__ import annotations

import base64
import binascii
import io
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from PIL import Image

from .common import FILE_FAULTS, STREAM_FAULTS, Emulator, json_bytes

__all__ = ["ASPECT_SIZES", "GeminiEmulator", "InlineImage"]

ASPECT_SIZES: Final[Mapping[str, Mapping[str, tuple[int, int]]]] = {
    # 1K sizes per aspect ratio (ai.google.dev image-generation docs); 2K and 4K double and quadruple.
    "2.5": {
        "1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184), "4:3": (1184, 864),
        "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344), "16:9": (1344, 768), "21:9": (1536, 672),
    },
    "3": {
        "1:1": (1024, 1024), "2:3": (848, 1264), "3:2": (1264, 848), "3:4": (896, 1200), "4:3": (1200, 896),
        "4:5": (928, 1152), "5:4": (1152, 928), "9:16": (768, 1376), "16:9": (1376, 768), "21:9": (1584, 672),
    },
}
_SCALE: Final = {"1K": 1, "2K": 2, "4K": 4}
_INPUT_MIME: Final = frozenset({"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"})
_IMAGE_TOKENS: Final = 1290

_FAULTS: Final[dict[str, tuple[int, str, str]]] = {
    # kind: (HTTP status, status, message)
    "rate_limit": (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    "quota": (
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    "server_error": (
        500,
        "INTERNAL",
        "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    ),
    "unavailable": (503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
    "invalid_argument": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
    "location": (400, "FAILED_PRECONDITION", "User location is not supported for the API use."),
    "auth": (401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
    "permission": (403, "PERMISSION_DENIED", "The caller does not have permission"),
    "unknown_model": (404, "NOT_FOUND", "models/x is not found for API version v1beta."),
}
_REFUSALS: Final = frozenset({"moderation", "image_safety", "no_image"})


@dataclass(frozen=True, slots=True)
class InlineImage:
    """An ``inlineData`` part a request carried (the input of an edit)."""

    mime_type: str
    data: bytes
    width: int
    height: int


class _Invalid(Exception):
    """A 400 INVALID_ARGUMENT with this message."""


class GeminiEmulator(Emulator):
    """``async with GeminiEmulator(api_key=...) as emu: genai.Client(http_options={"base_url": emu.base_url})``.

    Routes for faults: ``generate`` and ``result`` (spoils the inlined base64). Refusal faults:
    ``moderation`` (``promptFeedback.blockReason``, param ``block_reason``, default ``SAFETY``),
    ``image_safety`` (``finishReason``, param ``finish_reason``, default ``IMAGE_SAFETY``) and
    ``no_image`` (a text-only answer, params ``text`` and ``finish_reason``). ``rate_limit`` takes
    ``retry_after`` (seconds, sent as ``RetryInfo.retryDelay``). ``models`` limits which ids exist.
    """

    vendor = "gemini"
    api_route = "generate"
    supported_faults = frozenset({"hang", "malformed", *_FAULTS, *_REFUSALS, *FILE_FAULTS, *STREAM_FAULTS})

    def __init__(
        self,
        *,
        api_key: str = "AIza-emulator",
        models: Collection[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
    ) -> None:
        super().__init__(host=host, port=port, latency=latency)
        self.api_key = api_key
        self.models = set(models) if models is not None else None
        self.inline_images: list[InlineImage] = []
        """Every ``inlineData`` image part received, in order (valid requests only)."""

    def env(self) -> dict[str, str]:
        return {"GEMINI_API_KEY": self.api_key, "GEMINI_BASE_URL": self.base_url}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1beta/models/{model}:generateContent", self._generate)

    # ---- replies --------------------------------------------------------------------------

    @staticmethod
    def _error(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> web.Response:
        error: dict[str, Any] = {"code": status, "message": message, "status": code}
        if details:
            error["details"] = details
        return web.Response(status=status, body=json_bytes({"error": error}), content_type="application/json")

    def _invalid(self, message: str) -> web.Response:
        return self._error(400, "INVALID_ARGUMENT", message)

    def _fault_reply(self, kind: str, params: Mapping[str, Any], model: str) -> web.Response:
        status, code, message = _FAULTS[kind]
        details: list[dict[str, Any]] = []
        if kind == "rate_limit":
            details = [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                 "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                                 "quotaId": "GenerateRequestsPerMinutePerProjectPerModel"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{params.get('retry_after', 7)}s"},
            ]
        elif kind == "quota":
            details = [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                 "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "52813s"},
            ]
        elif kind == "unknown_model":
            message = message.replace("models/x", f"models/{model}")
        return self._error(status, code, message, details)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        rec, fault = await self.enter(request, "generate")
        model = request.match_info["model"]
        if fault is not None and fault.kind == "malformed":
            return web.Response(body=b'{"candidates": [{"content": ', content_type="application/json")
        if fault is not None and fault.kind in _FAULTS:
            return self._fault_reply(fault.kind, fault.params, model)
        key = rec.headers.get("x-goog-api-key") or rec.query.get("key")
        if not key:
            return self._error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
            )
        if key != self.api_key:
            message = "API key not valid. Please pass a valid API key."
            return self._error(400, "INVALID_ARGUMENT", message, [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                 "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}},
                {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message},
                {"@type": "type.googleapis.com/google.rpc.DebugInfo", "detail": f"Invalid API key: {key}"},
            ])
        if self.models is not None and model not in self.models:
            return self._fault_reply("unknown_model", {}, model)
        if not isinstance(rec.body, dict):
            return self._invalid("Invalid JSON payload received.")
        try:
            size, images = self._validate(model, rec.json)
        except _Invalid as exc:
            return self._invalid(str(exc))
        self.inline_images.extend(images)
        if fault is not None and fault.kind in _REFUSALS:
            return self._refusal(fault.kind, fault.params, model)
        raw, mime = self.render(*size, seed=len(self.requests))
        part = {"inlineData": {"mimeType": mime, "data": base64.b64encode(self.result_bytes(raw)).decode()}}
        return self._reply(model, {"content": {"parts": [part], "role": "model"}, "finishReason": "STOP", "index": 0})

    def _reply(self, model: str, candidate: dict[str, Any] | None, **extra: Any) -> web.Response:
        body: dict[str, Any] = {
            **({"candidates": [candidate]} if candidate is not None else {}),
            **extra,
            "usageMetadata": {
                "promptTokenCount": 12,
                "candidatesTokenCount": _IMAGE_TOKENS if candidate else 0,
                "totalTokenCount": 12 + (_IMAGE_TOKENS if candidate else 0),
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12}],
            },
            "modelVersion": model,
            "responseId": uuid.uuid4().hex[:22],
        }
        return web.Response(body=json_bytes(body, ascii_only=False), content_type="application/json")

    def _refusal(self, kind: str, params: Mapping[str, Any], model: str) -> web.Response:
        if kind == "moderation":
            return self._reply(model, None, promptFeedback={"blockReason": params.get("block_reason", "SAFETY")})
        if kind == "image_safety":
            finish = params.get("finish_reason", "IMAGE_SAFETY")
            return self._reply(model, {"content": {"role": "model"}, "finishReason": finish, "index": 0})
        text = params.get("text", "I can't make that image, but here is a description instead.")
        content = {"parts": [{"text": text}], "role": "model"}
        return self._reply(model, {"content": content, "finishReason": params.get("finish_reason", "STOP"), "index": 0})

    # ---- request checks -------------------------------------------------------------------

    def _validate(self, model: str, body: dict[str, Any]) -> tuple[tuple[int, int], list[InlineImage]]:
        """The output size and the inline images of a valid request; raises ``_Invalid``."""
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise _Invalid("* GenerateContentRequest.contents: contents is not specified")
        images: list[InlineImage] = []
        has_text = False
        for i, content in enumerate(contents):
            if not isinstance(content, dict):
                raise _Invalid(f"* GenerateContentRequest.contents[{i}]: must be a Content object")
            parts = content.get("parts")
            if content.get("role", "user") not in ("user", "model") or not isinstance(parts, list) or not parts:
                raise _Invalid(f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
            for j, part in enumerate(parts):
                where = f"contents[{i}].parts[{j}]"
                if not isinstance(part, dict) or len(set(part) & {"text", "inlineData", "fileData"}) != 1:
                    raise _Invalid(f"* GenerateContentRequest.{where}.data: required oneof field 'data' must have "
                                   "one initialized field")
                if "text" in part:
                    has_text = has_text or bool(str(part["text"]).strip())
                elif "inlineData" in part:
                    images.append(self._inline(where, part["inlineData"]))
                else:
                    raise _Invalid(f"* GenerateContentRequest.{where}.file_data: not emulated")
        if not has_text and not images:
            raise _Invalid("* GenerateContentRequest.contents: no text or image to generate from")
        config = body.get("generationConfig")
        if not isinstance(config, dict):
            raise _Invalid("generationConfig is required by image models (responseModalities)")
        modalities = config.get("responseModalities")
        if not isinstance(modalities, list) or "IMAGE" not in [str(m).upper() for m in modalities]:
            raise _Invalid("Model only supports IMAGE and TEXT output; responseModalities must include IMAGE.")
        seed = config.get("seed")
        if seed is not None and (type(seed) is not int or not -(2**31) <= seed < 2**31):
            raise _Invalid("* GenerateContentRequest.generation_config.seed: invalid int32 value")
        image_config = config.get("imageConfig", {})
        if not isinstance(image_config, dict):
            raise _Invalid("* GenerateContentRequest.generation_config.image_config: must be an object")
        for key in ("outputMimeType", "outputCompressionQuality", "personGeneration", "imageOutputOptions"):
            if key in image_config:
                raise _Invalid(f"{key} parameter is not supported in Gemini API.")
        family = "2.5" if "2.5" in model else "3"
        aspect = image_config.get("aspectRatio")
        if aspect is not None and aspect not in ASPECT_SIZES[family]:
            raise _Invalid(f"Unsupported aspect ratio: {aspect}. Supported: {', '.join(ASPECT_SIZES[family])}.")
        image_size = image_config.get("imageSize", "1K")
        if image_size not in _SCALE or (family == "2.5" and image_size != "1K"):
            raise _Invalid(f"Unsupported image size: {image_size}.")
        if aspect is None and images:  # no ratio asked: the output follows the (first) input image
            return (images[0].width, images[0].height), images
        width, height = ASPECT_SIZES[family][aspect or "1:1"]
        return (width * _SCALE[image_size], height * _SCALE[image_size]), images

    @staticmethod
    def _inline(where: str, blob: Any) -> InlineImage:
        # Google's JSON mapping takes a field by its lowerCamelCase or its proto (snake_case) name; the
        # SDK sends the Blob's ``mime_type`` as is.
        mime_field = blob.get("mimeType", blob.get("mime_type")) if isinstance(blob, dict) else None
        if not isinstance(blob, dict) or not isinstance(blob.get("data"), str) or not mime_field:
            raise _Invalid(f"* GenerateContentRequest.{where}.inline_data: mimeType and data are required")
        mime = str(mime_field)
        if mime not in _INPUT_MIME:
            raise _Invalid(f"Unsupported MIME type: {mime}")
        try:
            # Proto JSON bytes may be standard or URL-safe base64 (the SDK sends URL-safe).
            text = str(blob["data"]).replace("-", "+").replace("_", "/")
            data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise _Invalid(f"Invalid value at '{where}.inline_data.data' (TYPE_BYTES), Base64 decoding failed") from None
        try:
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
        except (OSError, ValueError):
            raise _Invalid("Unable to process input image. Please retry or report in "
                           "https://developers.generativeai.google/guide/troubleshooting") from None
        return InlineImage(mime, data, width, height)

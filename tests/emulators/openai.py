"""OpenAI Images emulator (PROVIDERS.md §3): ``POST /v1/images/generations`` (JSON) and
``POST /v1/images/edits`` (multipart: ``image`` or repeated ``image[]`` file parts, ``mask``), bearer auth.

GPT-image models always answer with ``b64_json``; errors are ``{"error": {...}}`` with the
HTTP status the SDK maps to its exception classes, and every reply carries ``x-request-id``.
Edits are checked the way §3.3 describes the real endpoint (image MIME types and bytes, at most
16 images, a PNG mask with alpha the size of the first image, GPT-image models only) and
recorded, decoded, in ``edits``.
"""

from __future__ import annotations

import base64
import email.message
import email.parser
import email.policy
import io
import re
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from PIL import Image

from .common import FILE_FAULTS, STREAM_FAULTS, Emulator, Fault, RecordedRequest, json_bytes

__all__ = ["MAX_EDIT_IMAGES", "OpenAIEmulator", "ReceivedEdit", "Upload"]

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
_EDIT_FIELDS: Final = frozenset(
    [
        "prompt",
        "model",
        "n",
        "size",
        "quality",
        "background",
        "output_format",
        "output_compression",
        "input_fidelity",
        "stream",
        "partial_images",
        "user",
        "safety_identifier",
        "response_format",
    ]
)
"""Text fields ``images.edit`` takes; unlike generations there is no ``moderation``."""
_FILE_FIELDS: Final = frozenset({"image", "image[]", "mask", "markup"})
_EDIT_MODEL_PREFIXES: Final = ("gpt-image-", "chatgpt-image-")
MAX_EDIT_IMAGES: Final = 16
_IMAGE_MIME: Final = ("image/png", "image/jpeg", "image/webp")
_IMAGE_MAX_BYTES: Final = 50 * 1024 * 1024
_MASK_MAX_BYTES: Final = 4 * 1024 * 1024
_PIL_MIME: Final = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
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

    Routes for faults: ``generate``, ``edit`` (``fail_next(kind, on="edit")``) and ``result``
    (spoils the inlined ``b64_json`` of either).
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
        self.edits: list[ReceivedEdit] = []
        """Every edit whose form parsed, in order, valid or not (faulted requests are not parsed)."""

    @property
    def base_url(self) -> str:
        return f"{self.origin}/v1"

    def env(self) -> dict[str, str]:
        return {"OPENAI_API_KEY": self.api_key, "OPENAI_BASE_URL": self.base_url}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/images/generations", self._generate)
        app.router.add_post("/v1/images/edits", self._edit)

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

    def _fault_reply(self, fault: Fault | None) -> web.Response | None:
        """The reply a queued vendor fault produces (``None``: no such fault, serve normally)."""
        if fault is not None and fault.kind == "malformed":
            return web.Response(body=b'{"created": 17', content_type="application/json")
        if fault is None or fault.kind not in _FAULTS:
            return None
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

    def _auth_error(self, rec: RecordedRequest) -> web.Response | None:
        auth = rec.headers.get("Authorization", "")
        if auth == f"Bearer {self.api_key}":
            return None
        shown = auth.removeprefix("Bearer ")
        shown = f"{shown[:6]}{'*' * 8}{shown[-4:]}" if len(shown) > 10 else "***"
        return self._error(
            401,
            "invalid_api_key",
            "invalid_request_error",
            f"Incorrect API key provided: {shown}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
        )

    def _model_error(self, model: object) -> web.Response | None:
        if self.models is not None and model not in self.models:
            return self._error(
                404,
                "model_not_found",
                "invalid_request_error",
                f"The model '{model}' does not exist or you do not have access to it.",
            )
        return None

    # ---- generations ----------------------------------------------------------------------

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        rec, fault = await self.enter(request, "generate")
        if (reply := self._fault_reply(fault) or self._auth_error(rec)) is not None:
            return reply
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
        if (reply := self._model_error(body.get("model", "gpt-image-2"))) is not None:
            return reply
        try:
            width, height, n = self._common(body, default_size=(1024, 1024))
        except _Invalid as bad:
            return self._invalid(*bad.args)
        return self._reply(body, width, height, n, image_tokens=0)

    def _common(self, body: Mapping[str, Any], *, default_size: tuple[int, int]) -> tuple[int, int, int]:
        """Checks generations and edits share; the output size and count. Raises ``_Invalid``."""
        for key, allowed in _ENUMS.items():
            if key in body and body[key] not in allowed:
                raise _Invalid(f"Invalid value: '{body[key]}'. Supported values are: {allowed}.", key)
        n = body.get("n", 1)
        if not isinstance(n, int) or not 1 <= n <= 10:
            raise _Invalid("Invalid 'n': must be between 1 and 10.", "n")
        fmt = body.get("output_format", "png")
        if body.get("background") == "transparent" and fmt == "jpeg":
            raise _Invalid("Transparent background requires png or webp output.", "background")
        compression = body.get("output_compression")
        if compression is not None and (not isinstance(compression, int) or not 0 <= compression <= 100):
            raise _Invalid("output_compression must be 0-100.", "output_compression")
        size = body.get("size", "auto")
        m = _SIZE.match(size) if isinstance(size, str) else None
        if size == "auto":
            return (*default_size, n)
        if m and int(m[1]) % 16 == 0 and int(m[2]) % 16 == 0 and max(int(m[1]), int(m[2])) <= 3840:
            return int(m[1]), int(m[2]), n
        raise _Invalid(f"Invalid size '{size}'. Supported sizes are 1024x1024, 1024x1536, 1536x1024, and auto.", "size")

    def _reply(self, body: Mapping[str, Any], width: int, height: int, n: int, *, image_tokens: int) -> web.Response:
        fmt = body.get("output_format", "png")
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
                "input_tokens": 50 + image_tokens,
                "input_tokens_details": {"text_tokens": 50, "image_tokens": image_tokens},
                "output_tokens": 1056 * n,
                "total_tokens": 50 + image_tokens + 1056 * n,
            },
        }
        return web.Response(
            body=json_bytes(reply, ascii_only=False),
            content_type="application/json",
            headers={"x-request-id": f"req_{uuid.uuid4().hex}"},
        )

    # ---- edits (multipart) ----------------------------------------------------------------

    async def _edit(self, request: web.Request) -> web.StreamResponse:
        rec, fault = await self.enter(request, "edit")
        if (reply := self._fault_reply(fault) or self._auth_error(rec)) is not None:
            return reply
        if request.content_type != "multipart/form-data":
            return self._invalid(
                f"Invalid Content-Type header ({request.content_type}), expected multipart/form-data.",
                "body",
                "invalid_content_type",
            )
        try:
            edit = _parse_edit(request.headers["Content-Type"], rec.raw)
        except _Invalid as bad:
            return self._invalid(*bad.args)
        self.edits.append(edit)
        try:
            body = self._check_edit(edit)
        except _Invalid as bad:
            return self._invalid(*bad.args)
        except _NoModel as gone:
            return self._model_error(gone.args[0]) or self._invalid("model not found", "model")
        first = edit.images[0]
        try:
            width, height, n = self._common(body, default_size=_auto_size(first.width, first.height))
        except _Invalid as bad:
            return self._invalid(*bad.args)
        return self._reply(body, width, height, n, image_tokens=258 * len(edit.images))

    def _check_edit(self, edit: ReceivedEdit) -> dict[str, Any]:
        """The edit's text fields as typed values, after the checks the real endpoint makes."""
        for key in edit.fields:
            if key not in _EDIT_FIELDS:
                raise _Invalid(f"Unknown parameter: '{key}'.", key, "unknown_parameter")
        body: dict[str, Any] = dict(edit.fields)
        for key in ("n", "output_compression", "partial_images"):
            if key in body:
                try:
                    body[key] = int(body[key])
                except ValueError:
                    raise _Invalid(f"Invalid type for '{key}': expected an integer.", key, "invalid_type") from None
        if not body.get("prompt"):
            raise _Invalid("Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
        model = body.get("model", "gpt-image-2")
        if not model.startswith(_EDIT_MODEL_PREFIXES):
            raise _Invalid(
                f"Invalid value: '{model}'. Image edits support GPT image models only.", "model", "invalid_value"
            )
        if self.models is not None and model not in self.models:
            raise _NoModel(model)
        fidelity = body.get("input_fidelity")
        if fidelity is not None:
            if fidelity not in ("high", "low"):
                raise _Invalid(
                    f"Invalid value: '{fidelity}'. Supported values are: 'high' and 'low'.", "input_fidelity"
                )
            if model.startswith("gpt-image-2") or (model.startswith("gpt-image-1-mini") and fidelity != "low"):
                raise _Invalid(
                    f"input_fidelity '{fidelity}' is not supported with model '{model}'.",
                    "input_fidelity",
                    "unsupported_parameter",
                )
        if not edit.images:
            raise _Invalid("Missing required parameter: 'image'.", "image", "missing_required_parameter")
        if len(edit.images) > MAX_EDIT_IMAGES:
            raise _Invalid(
                f"Invalid 'image': too many images ({len(edit.images)}); at most {MAX_EDIT_IMAGES} are allowed.",
                "image",
                "too_many_images",
            )
        for i, image in enumerate(edit.images):
            _check_upload(image, f"image[{i}]" if edit.as_array else "image", _IMAGE_MIME, _IMAGE_MAX_BYTES)
        if edit.mask is not None:
            mask = edit.mask
            _check_upload(mask, "mask", ("image/png",), _MASK_MAX_BYTES)
            if not mask.has_alpha:
                raise _Invalid("Invalid mask image: the mask must have an alpha channel.", "mask", "invalid_image_file")
            first = edit.images[0]
            if (mask.width, mask.height) != (first.width, first.height):
                raise _Invalid(
                    f"Invalid mask image: mask size {mask.width}x{mask.height} does not match image size "
                    f"{first.width}x{first.height}.",
                    "mask",
                    "invalid_image_dimensions",
                )
        return body


class _Invalid(Exception):
    """A 400 ``invalid_request_error``: args are (message, param[, code])."""


class _NoModel(Exception):
    """The model is not in ``models`` (a 404 ``model_not_found``)."""


@dataclass(frozen=True, slots=True)
class Upload:
    """One file part of an edit request, as the emulator decoded it."""

    name: str
    """The form field: ``image``, ``image[]`` or ``mask``."""
    filename: str | None
    content_type: str | None
    data: bytes = field(repr=False)
    width: int = 0
    """0 when the bytes are not an image Pillow reads."""
    height: int = 0
    image_format: str | None = None
    """Pillow's name for what the bytes really are (``PNG``, ``JPEG``, ``WEBP``), ``None`` if not an image."""
    has_alpha: bool = False


@dataclass(frozen=True, slots=True)
class ReceivedEdit:
    """An ``/v1/images/edits`` request: its text fields (as sent: strings), images and mask."""

    fields: Mapping[str, str]
    images: tuple[Upload, ...]
    mask: Upload | None
    as_array: bool
    """Whether the images came as repeated ``image[]`` parts (a list) rather than one ``image``."""


def _parse_edit(content_type: str, raw: bytes) -> ReceivedEdit:
    """Split a multipart body into fields and files (stdlib parser: the body was already read)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
    )
    if not isinstance(message, email.message.EmailMessage) or not message.is_multipart():
        raise _Invalid("Could not parse multipart form data.", "body", "invalid_multipart")
    fields: dict[str, str] = {}
    images: list[Upload] = []
    mask: Upload | None = None
    as_array = False
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise _Invalid("A form part has no name.", "body", "invalid_multipart")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is None and name not in _FILE_FIELDS:
            fields[name] = data.decode()
            continue
        upload = _upload(name, filename, part.get("Content-Type"), data)
        if name == "mask":
            mask = upload
        elif name in ("image", "image[]"):
            as_array = as_array or name == "image[]"
            images.append(upload)
        else:
            raise _Invalid(f"Unknown parameter: '{name}'.", name, "unknown_parameter")
    return ReceivedEdit(fields, tuple(images), mask, as_array)


def _upload(name: str, filename: str | None, content_type: object, data: bytes) -> Upload:
    ctype = str(content_type).split(";")[0].strip().lower() if content_type is not None else None
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
            return Upload(name, filename, ctype, data, img.width, img.height, img.format, alpha)
    except (OSError, ValueError, Image.DecompressionBombError):
        return Upload(name, filename, ctype, data)


def _check_upload(upload: Upload, param: str, accepted: tuple[str, ...], max_bytes: int) -> None:
    if upload.content_type not in accepted:
        listed = ", ".join(f"'{m}'" for m in accepted)
        raise _Invalid(
            f"Invalid file '{param}': unsupported mimetype ('{upload.content_type}'). "
            f"Supported file formats are {listed}.",
            param,
            "unsupported_file_mimetype",
        )
    if upload.image_format is None or _PIL_MIME.get(upload.image_format) != upload.content_type:
        raise _Invalid(
            f"Invalid image file or mode for '{param}', please check your image file.", param, "invalid_image_file"
        )
    if len(upload.data) >= max_bytes:
        raise _Invalid(
            f"Invalid file '{param}': file too large ({len(upload.data)} bytes); the limit is {max_bytes} bytes.",
            param,
            "image_too_large",
        )


def _auto_size(width: int, height: int) -> tuple[int, int]:
    """What ``size=auto`` gives for an edit: the preset nearest the first image's shape."""
    if width > height * 1.2:
        return 1536, 1024
    if height > width * 1.2:
        return 1024, 1536
    return 1024, 1024

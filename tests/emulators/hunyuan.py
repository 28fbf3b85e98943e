"""Tencent Cloud Hunyuan image-job emulator (PROVIDERS.md §1).

Speaks the TC3-HMAC-SHA256 signed JSON API on ``POST /`` (action in ``X-TC-Action``), always
answers HTTP 200 with the exact ``application/json`` Content-Type the SDK insists on (§1.8),
and runs each job through Submit -> Query "1" -> "2" ... -> "5" (or "4").

``ContentImage`` (image-to-image) takes exactly one of ``ImageUrl`` (recorded, never fetched)
or ``ImageBase64`` (plain base64 of a JPEG or PNG, each side under 5000 px, under 8 MB as
base64): it is decoded, read as an image and recorded on the job. With it only the four
sizes up to 1024:1024 are accepted; without a size the result keeps the input's aspect ratio
with a 1024 px long edge (the documented style-transfer behaviour).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

from aiohttp import web
from PIL import Image, UnidentifiedImageError

from .common import FILE_FAULTS, STREAM_FAULTS, Emulator, RecordedRequest, json_bytes

__all__ = ["RESOLUTIONS", "STYLES", "HunyuanEmulator"]

API_VERSION: Final = "2023-09-01"
STYLES: Final = frozenset(
    [
        "riman",
        "shuimo",
        "monai",
        "bianping",
        "xiangsu",
        "ertonghuiben",
        "3dxuanran",
        "manhua",
        "heibaimanhua",
        "xieshi",
        "dongman",
        "bijiasuo",
        "saibopengke",
        "youhua",
        "masaike",
        "qinghuaci",
        "xinnianjianzhi",
        "xinnianhuayi",
    ]
)
RESOLUTIONS: Final = frozenset(
    ("768:768", "768:1024", "1024:768", "1024:1024", "720:1280", "1280:720", "768:1280", "1280:768")
)
EDIT_RESOLUTIONS: Final = frozenset(("768:768", "768:1024", "1024:768", "1024:1024"))
"""What Submit accepts together with a ContentImage."""
_CONTENT_FIELDS: Final = frozenset(("ImageUrl", "ImageBase64"))
_CONTENT_MIME: Final = {"PNG": "image/png", "JPEG": "image/jpeg"}
_SUBMIT_FIELDS: Final = frozenset(
    [
        "Prompt",
        "NegativePrompt",
        "Style",
        "Resolution",
        "Num",
        "Clarity",
        "ContentImage",
        "Revise",
        "Seed",
        "LogoAdd",
        "LogoParam",
    ]
)
_STATUS_MSG: Final = {"1": "排队中", "2": "处理中", "4": "处理失败", "5": "处理完成"}
_API_FAULTS: Final = {
    "rate_limit": ("RequestLimitExceeded", "Your current request times equals to `21` in a second."),
    "internal_error": ("InternalError", "An internal error has occurred."),
    "engine_busy": ("FailedOperation.EngineServerLimitExceeded", "Engine concurrency limit exceeded."),
    "moderation": ("OperationDenied.TextIllegalDetected", "Text contains illegal content."),
    "invalid_argument": ("InvalidParameterValue", "The value of Resolution is invalid."),
    "auth": ("AuthFailure.SignatureFailure", "The provided credentials could not be validated."),
    "unsupported_region": ("UnsupportedRegion", "The action does not support this region."),
}


@dataclass(frozen=True, slots=True)
class ContentSeen:
    """The ContentImage of a job as the emulator understood it."""

    mime_type: str | None
    width: int | None
    height: int | None
    size_bytes: int | None = None
    url: str | None = None


@dataclass(slots=True)
class Job:
    job_id: str
    prompt: str
    width: int
    height: int
    num: int
    seed: int
    created: float
    polls: int = 0
    failure: tuple[str, str] | None = None
    urls: list[str] = field(default_factory=list)
    content: ContentSeen | None = None


class HunyuanEmulator(Emulator):
    """``async with HunyuanEmulator(secret_id=..., secret_key=...) as emu: emu.base_url``.

    Routes for faults: ``submit``, ``query``, ``files``, ``result``. ``job_failed`` lands on
    ``query`` and makes the job end with status "4" (``code=``/``message=`` pick JobErrorCode).
    """

    vendor = "hunyuan"
    api_route = "submit"
    fault_routes: ClassVar[Mapping[str, str]] = {"job_failed": "query"}
    supported_faults = frozenset(
        {"hang", "server_error", "malformed", "missing_request_id", "job_failed", *_API_FAULTS, *FILE_FAULTS}
        | STREAM_FAULTS
    )

    def __init__(
        self,
        *,
        secret_id: str = "AKIDemulator0000",
        secret_key: str = "emulator-secret-key",
        credentials: Mapping[str, str] | None = None,
        region: str = "ap-guangzhou",
        job_polls: int = 2,
        job_seconds: float = 0.0,
        clock_offset: float = 0.0,
        status_as_int: bool = False,
        image_format: str = "png",
        content_max_side: int = 4999,
        content_max_b64: int = 8 * 1024 * 1024 - 1,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
    ) -> None:
        super().__init__(host=host, port=port, latency=latency)
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.credentials = {secret_id: secret_key, **(credentials or {})}
        self.region = region
        self.job_polls = job_polls
        """Queries answered "1"/"2" before a job is done."""
        self.job_seconds = job_seconds
        """Seconds after submission before a job can be done (both limits must pass)."""
        self.clock_offset = clock_offset
        """Added to the server clock; > 300 s makes every signature ``AuthFailure.SignatureExpire``."""
        self.status_as_int = status_as_int
        """Send JobStatusCode as an int (the SDK does not type-check, §1.5)."""
        self.image_format = image_format
        self.content_max_side = content_max_side
        """Largest side a ContentImage may have (documented: under 5000)."""
        self.content_max_b64 = content_max_b64
        """Longest ImageBase64 string (documented: under 8 MB)."""
        self.jobs: dict[str, Job] = {}

    def env(self) -> dict[str, str]:
        return {
            "TENCENT_SECRET_ID": self.secret_id,
            "TENCENT_SECRET_KEY": self.secret_key,
            "TENCENT_ENDPOINT": self.origin,
        }

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/", self._api)

    # ---- protocol -------------------------------------------------------------------------

    @staticmethod
    def _reply(payload: Mapping[str, Any], request_id: str | None = None) -> web.Response:
        body = {"Response": {**payload, **({"RequestId": request_id} if request_id else {})}}
        # Exactly "application/json": with "; charset=utf-8" the SDK ignores Response.Error (§1.8).
        return web.Response(body=json_bytes(body), content_type="application/json")

    def _error(self, code: str, message: str) -> web.Response:
        return self._reply({"Error": {"Code": code, "Message": message}}, str(uuid.uuid4()))

    def _authenticate(self, rec: RecordedRequest) -> tuple[str, str] | None:
        """Verify TC3-HMAC-SHA256 as the real gateway does (§1.4); return an error or None."""
        h = rec.headers
        auth = h.get("Authorization", "")
        if not auth.startswith("TC3-HMAC-SHA256 ") or "Credential=" not in auth or "Signature=" not in auth:
            return "AuthFailure.SignatureFailure", "The Authorization header is missing or malformed."
        try:
            scope = auth.split("Credential=", 1)[1].split(",", 1)[0]
            sid, date, service, terminator = scope.split("/")
            signature = auth.split("Signature=", 1)[1].strip()
            timestamp = int(h["X-TC-Timestamp"])
        except (KeyError, ValueError):
            return "AuthFailure.SignatureFailure", "The Authorization header is malformed."
        if abs(time.time() + self.clock_offset - timestamp) > 300:
            return "AuthFailure.SignatureExpire", "Signature expired: the request timestamp is too far off."
        key = self.credentials.get(sid)
        if key is None:
            return "AuthFailure.SecretIdNotFound", "The SecretId is not found, please ensure it is correct."
        if terminator != "tc3_request" or service != "hunyuan" or not _date_matches(date, timestamp):
            return "AuthFailure.SignatureFailure", "The credential scope is invalid."
        canonical = "\n".join(
            [
                rec.method,
                rec.path,
                "&".join(f"{k}={v}" for k, v in rec.query.items()),
                f"content-type:{h.get('Content-Type', '')}\nhost:{h.get('Host', '')}\n",
                "content-type;host",
                hashlib.sha256(rec.raw).hexdigest(),
            ]
        )
        to_sign = "\n".join(
            [
                "TC3-HMAC-SHA256",
                h["X-TC-Timestamp"],
                f"{date}/{service}/tc3_request",
                hashlib.sha256(canonical.encode()).hexdigest(),
            ]
        )
        k = hmac.new(("TC3" + key).encode(), date.encode(), hashlib.sha256).digest()
        for part in (service, "tc3_request"):
            k = hmac.new(k, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return "AuthFailure.SignatureFailure", "The provided credentials could not be validated."
        return None

    async def _api(self, request: web.Request) -> web.StreamResponse:
        action = request.headers.get("X-TC-Action", "")
        route = {"SubmitHunyuanImageJob": "submit", "QueryHunyuanImageJob": "query"}.get(action, "other")
        rec, fault = await self.enter(request, route)
        if fault is not None:
            if fault.kind == "server_error":
                return web.Response(status=502, text="<html>502 Bad Gateway</html>", content_type="text/html")
            if fault.kind == "malformed":
                return web.Response(body=b'{"Response": {"JobId": ', content_type="application/json")
            if fault.kind == "missing_request_id":
                return web.Response(
                    body=json_bytes({"Response": {"Error": {"Code": "InternalError", "Message": "x"}}}),
                    content_type="application/json",
                )
            if fault.kind in _API_FAULTS:
                return self._error(*_API_FAULTS[fault.kind])
        problem = self._authenticate(rec)
        if problem is not None:
            return self._error(*problem)
        if rec.headers.get("X-TC-Version") != API_VERSION:
            return self._error("InvalidParameter", f"Version must be {API_VERSION}.")
        if rec.headers.get("X-TC-Region") != self.region:
            return self._error("UnsupportedRegion", "The action does not support this region.")
        if not isinstance(rec.body, dict):
            return self._error("InvalidParameter", "The request body is not a JSON object.")
        if route == "submit":
            return self._submit(rec.json)
        if route == "query":
            return self._query(request, rec.json, fault.params if fault and fault.kind == "job_failed" else None)
        return self._error("InvalidAction", f"The action `{action}` is not found.")

    def _submit(self, body: dict[str, Any]) -> web.Response:
        unknown = sorted(set(body) - _SUBMIT_FIELDS)
        if unknown:
            return self._error("UnknownParameter", f"The parameter `{unknown[0]}` is not recognized.")
        prompt = body.get("Prompt")
        if not isinstance(prompt, str) or not prompt:
            return self._error("MissingParameter", "The request is missing a required parameter `Prompt`.")
        checks = [
            (len(prompt) <= 1024, "Prompt is too long."),
            (len(body.get("NegativePrompt", "")) <= 1024, "NegativePrompt is too long."),
            (body.get("Style", "riman") in STYLES, "The value of Style is invalid."),
            (body.get("Resolution", "1024:1024") in RESOLUTIONS, "The value of Resolution is invalid."),
            (body.get("Num", 1) in (1, 2, 3, 4), "Num must be 1-4."),
            (body.get("Revise", 1) in (0, 1), "Revise must be 0 or 1."),
            (isinstance(body.get("Seed", 1), int) and body.get("Seed", 1) > 0, "Seed must be a positive integer."),
            (isinstance(body.get("LogoAdd", 1), int), "LogoAdd must be an integer."),
        ]
        for ok, message in checks:
            if not ok:
                return self._error("InvalidParameterValue", message)
        content: ContentSeen | None = None
        if "ContentImage" in body:
            seen = self._content_image(body["ContentImage"])
            if isinstance(seen, tuple):
                return self._error(*seen)
            content = seen
            if body.get("Resolution", "1024:1024") not in EDIT_RESOLUTIONS:
                return self._error("InvalidParameterValue", "With ContentImage, Resolution must be at most 1024:1024.")
        width, height = (int(v) for v in body.get("Resolution", "1024:1024").split(":"))
        if content is not None and "Resolution" not in body and content.width and content.height:
            scale = 1024 / max(content.width, content.height)  # the input's aspect, 1024 px long edge
            width, height = max(1, round(content.width * scale)), max(1, round(content.height * scale))
        job_id = f"1300000000-{int(time.time())}-{uuid.uuid4()}-0"
        self.jobs[job_id] = Job(
            job_id, prompt, width, height, body.get("Num", 1), body.get("Seed", 0), time.monotonic(), content=content
        )
        return self._reply({"JobId": job_id}, str(uuid.uuid4()))

    def _content_image(self, value: object) -> ContentSeen | tuple[str, str]:
        """Check one ContentImage; a tuple return is the (Code, Message) to answer with."""
        bad = "InvalidParameterValue"
        if not isinstance(value, dict):
            return bad, "ContentImage must be an object."
        unknown = sorted(set(value) - _CONTENT_FIELDS)
        if unknown:
            return "UnknownParameter", f"The parameter `ContentImage.{unknown[0]}` is not recognized."
        given = [k for k in ("ImageUrl", "ImageBase64") if value.get(k)]
        if not given:
            return "MissingParameter", "ContentImage needs ImageUrl or ImageBase64."
        if len(given) > 1:
            return bad, "ContentImage takes ImageUrl or ImageBase64, not both."
        if given == ["ImageUrl"]:
            url = value["ImageUrl"]
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                return bad, "ContentImage.ImageUrl must be an http(s) URL."
            return ContentSeen(None, None, None, url=url)
        encoded = value["ImageBase64"]
        if not isinstance(encoded, str):
            return bad, "ContentImage.ImageBase64 must be a string."
        if len(encoded) > self.content_max_b64:
            return bad, "ContentImage.ImageBase64 must be under 8 MB."
        try:
            data = base64.b64decode(encoded, validate=True)  # plain base64: a data: prefix is refused here
        except (binascii.Error, ValueError):
            return bad, "ContentImage.ImageBase64 is not valid base64."
        try:
            with Image.open(io.BytesIO(data)) as img:
                fmt, (width, height) = img.format, img.size
                img.load()  # a truncated file fails here, not at the header
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            return bad, "ContentImage.ImageBase64 is not a readable image."
        mime = _CONTENT_MIME.get(fmt or "")
        if mime is None:
            return bad, f"ContentImage format {fmt} is not supported; use jpg, jpeg or png."
        if max(width, height) > self.content_max_side:
            return bad, "ContentImage sides must be under 5000 px."
        return ContentSeen(mime, width, height, len(data))

    def _query(self, request: web.Request, body: dict[str, Any], failure: dict[str, Any] | None) -> web.Response:
        job = self.jobs.get(body.get("JobId", ""))
        if job is None:
            return self._error("ResourceNotFound", "The JobId does not exist.")
        job.polls += 1
        if failure is not None:
            job.failure = (
                failure.get("code", "FailedOperation.GenerateImageFailed"),
                failure.get("message", "Image generation failed."),
            )
        if job.failure is not None:
            status = "4"
        elif job.polls <= self.job_polls or time.monotonic() - job.created < self.job_seconds:
            status = "1" if job.polls == 1 else "2"
        else:
            status = "5"
        fields: dict[str, Any] = {
            "JobStatusCode": int(status) if self.status_as_int else status,
            "JobStatusMsg": _STATUS_MSG[status],
            "JobErrorCode": job.failure[0] if job.failure else "",
            "JobErrorMsg": job.failure[1] if job.failure else "",
            "ResultImage": [],
            "ResultDetails": [],
            "RevisedPrompt": [],
        }
        if status == "5":
            if not job.urls:
                ext = "jpg" if self.image_format == "jpeg" else self.image_format
                for i in range(job.num):
                    data, mime = self.render(job.width, job.height, seed=job.seed + i)
                    sign = f"q-sign-algorithm=sha1&q-ak=AKIDcosFAKE&q-sign-time={int(time.time())};{int(time.time()) + 3600}"
                    job.urls.append(self.put_file(request, f"{job.job_id}-{i}.{ext}", data, mime, sign))
            fields.update(
                ResultImage=job.urls, ResultDetails=["Success"] * job.num, RevisedPrompt=[job.prompt] * job.num
            )
        return self._reply(fields, str(uuid.uuid4()))


def _date_matches(date: str, timestamp: int) -> bool:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d") == date

"""Shared machinery for the vendor emulators: lifecycle, request log, fault queue, result images.

Each vendor emulator is a real aiohttp app on ``127.0.0.1`` so adapters run the real
vendor SDK over real HTTP. Tests steer it through one small API that is the same for
every vendor: ``fail_next``/``fail_always``/``clear_faults``, ``release`` for hangs,
``requests`` for what was sent, ``env()`` for the variables that point the server here.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Self

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "FILE_FAULTS",
    "STREAM_FAULTS",
    "Emulator",
    "Fault",
    "RecordedRequest",
    "render_image",
]

FILE_FAULTS: Final = frozenset({"not_image", "corrupt", "truncated", "oversized"})
"""Faults that spoil result bytes. They queue on the pseudo-route ``result`` and are used up
when the emulator hands out image bytes: at ``GET /files/...`` or when inlining base64."""

STREAM_FAULTS: Final = frozenset({"stall"})
"""Faults of the connection itself, on any route (``on="files"`` for result downloads). ``stall``
sends the status, the headers and half of the body the request would have got, then holds
the rest until ``release()`` (a vendor or CDN that stops mid-body)."""

_STALL: Final = web.RequestKey("emulator_stall", bool)

NOT_AN_IMAGE: Final = b"<html><body>403 Forbidden: signature expired</body></html>"
"""What a CDN serves instead of an image when things go wrong."""

_PIL_FORMATS: Final = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
_MIME: Final = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


_TINTS: Final = {
    "openai": (16, 150, 120),
    "gemini": (66, 120, 230),
    "doubao": (230, 100, 40),
    "hunyuan": (190, 50, 120),
    "modelscope": (110, 80, 230),
}
"""Each vendor's images carry its colour, so a person looking at a result sees who answered."""


def _tint(label: str, seed: int) -> tuple[int, int, int]:
    if not label:
        return (seed * 97 % 256, seed * 57 % 256, 160)
    base = _TINTS.get(label) or tuple(b % 200 + 30 for b in hashlib.sha256(label.encode()).digest()[:3])
    shift = (seed % 8) * 6 - 21  # seeds stay tellable apart within a vendor
    return tuple(max(0, min(255, v + shift)) for v in base)  # type: ignore[return-value]


@functools.lru_cache(maxsize=256)
def render_image(width: int, height: int, fmt: str = "png", *, seed: int = 0, label: str = "") -> bytes:
    """Encode a real ``width`` x ``height`` image so adapters can check format and size.

    With ``label`` (the vendor's name) the image is tinted in that vendor's colour and the name
    is written across it, so a result shows which emulator produced it.
    Cached: the emulator shares the test's event loop, and load tests ask for the same few
    images many times; re-encoding each would measure the emulator, not the server.
    """
    img = Image.new("RGB", (width, height), _tint(label, seed))
    draw = ImageDraw.Draw(img)
    draw.rectangle((width // 4, height // 4, width // 2, height // 2), fill=(250, 250, 250))
    if label and min(width, height) >= 32:
        size = max(8, min(height // 6, int(width / (0.62 * len(label) + 1))))
        font = ImageFont.load_default(size=size)
        box = draw.textbbox((0, 0), label, font=font)
        x, y = (width - (box[2] - box[0])) // 2 - box[0], height - (box[3] - box[1]) - height // 12 - box[1]
        draw.rectangle((0, y + box[1] - size // 4, width, y + box[3] + size // 4), fill=(0, 0, 0))
        draw.text((x, y), label, font=font, fill=(255, 255, 255))
    out = io.BytesIO()
    img.save(out, _PIL_FORMATS[fmt], **({"quality": 80} if fmt != "png" else {}))
    return out.getvalue()


def oversized_png(size: int) -> bytes:
    """A PNG signature followed by ``size`` bytes of padding: looks like an image, far too big."""
    head = b"\x89PNG\r\n\x1a\n"
    return head + b"\0" * max(0, size - len(head))


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the emulator saw it; ``body`` is parsed JSON when the body was JSON."""

    route: str
    method: str
    path: str
    query: Mapping[str, str]
    headers: CIMultiDictProxy[str]
    body: Any
    raw: bytes
    fault: str | None = None

    @property
    def json(self) -> dict[str, Any]:
        if not isinstance(self.body, dict):
            raise TypeError(f"{self.route} body is not a JSON object: {self.raw[:80]!r}")
        return self.body


@dataclass(slots=True)
class Fault:
    """A queued fault; ``remaining`` is ``None`` for a fault that applies until cleared."""

    kind: str
    route: str
    remaining: int | None
    params: dict[str, Any] = field(default_factory=dict)


class Emulator:
    """Base class: start/stop an aiohttp app, record requests, hand out queued faults."""

    vendor: ClassVar[str] = ""
    api_route: ClassVar[str] = ""
    """Route a fault lands on when neither ``on=`` nor ``fault_routes`` says otherwise."""
    fault_routes: ClassVar[Mapping[str, str]] = {}
    supported_faults: ClassVar[frozenset[str]] = frozenset()
    image_format: str = "png"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0) -> None:
        self.host = host
        self.port = port
        self.latency = latency
        """Seconds every API reply is delayed (emulates a slow but healthy vendor)."""
        self.requests: list[RecordedRequest] = []
        self.files: dict[str, tuple[bytes, str]] = {}
        self.hangs = 0
        """How many requests are (or were) held by a ``hang`` fault."""
        self.hanging = asyncio.Event()
        """Set when the first hang begins, so a test can wait for it instead of sleeping."""
        self._faults: list[Fault] = []
        self._release = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._stall_middleware])
        self.add_routes(app)
        app.router.add_get("/files/{name}", self._serve_file)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site.port

    async def stop(self) -> None:
        self._closing = True
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The URL the vendor SDK is pointed at (vendor-specific path included)."""
        return self.origin

    def env(self) -> dict[str, str]:
        """Environment variables that point the image server at this emulator."""
        raise NotImplementedError

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    # ---- test controls --------------------------------------------------------------------

    def fail_next(self, kind: str, times: int = 1, *, on: str | None = None, **params: Any) -> Self:
        """Make the next ``times`` requests to ``on`` (default: where ``kind`` belongs) fail with ``kind``."""
        if times < 1:
            raise ValueError(f"times must be >= 1, got {times}")
        return self._queue(kind, times, on, params)

    def fail_always(self, kind: str, *, on: str | None = None, **params: Any) -> Self:
        """Like ``fail_next`` but until ``clear_faults``."""
        return self._queue(kind, None, on, params)

    def clear_faults(self) -> None:
        self._faults.clear()

    def release(self) -> None:
        """Let the requests held by ``hang`` so far continue (they then complete normally);
        later ``hang`` faults hold again."""
        self._release.set()
        self._release = asyncio.Event()

    def requests_to(self, route: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.route == route]

    def _queue(self, kind: str, times: int | None, on: str | None, params: dict[str, Any]) -> Self:
        if kind not in self.supported_faults:
            raise ValueError(f"{self.vendor} emulator has no fault {kind!r}; known: {sorted(self.supported_faults)}")
        route = on or self.fault_routes.get(kind) or ("result" if kind in FILE_FAULTS else self.api_route)
        self._faults.append(Fault(kind, route, times, params))
        return self

    # ---- helpers for subclasses -----------------------------------------------------------

    def take_fault(self, route: str) -> Fault | None:
        """Pop one use of the first fault queued for ``route``."""
        for fault in self._faults:
            if fault.route == route:
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                return fault
        return None

    async def enter(self, request: web.Request, route: str) -> tuple[RecordedRequest, Fault | None]:
        """Record ``request``, pick its fault, and serve ``hang`` and ``latency`` before the handler runs."""
        raw = await request.read()
        body: Any = raw
        if raw and request.content_type == "application/json":
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw
        fault = self.take_fault(route)
        rec = RecordedRequest(
            route=route,
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            body=body,
            raw=raw,
            fault=fault.kind if fault else None,
        )
        self.requests.append(rec)
        if fault is not None and fault.kind == "stall":
            request[_STALL] = True  # the reply is produced as usual; the middleware cuts it short
        if fault is not None and fault.kind == "hang":
            self.hangs += 1
            self.hanging.set()
            if not self._closing:
                await self._release.wait()
        if self.latency and route != "files":
            await asyncio.sleep(self.latency)
        return rec, fault

    def put_file(self, request: web.Request, name: str, data: bytes, mime: str, query: str = "") -> str:
        """Store a result and return the absolute URL a client downloads it from."""
        self.files[name] = (data, mime)
        return f"http://{request.host}/files/{name}" + (f"?{query}" if query else "")

    def render(self, width: int, height: int, *, seed: int = 0, fmt: str | None = None) -> tuple[bytes, str]:
        fmt = fmt or self.image_format
        return render_image(width, height, fmt, seed=seed % 8, label=self.vendor), _MIME[fmt]

    def result_bytes(self, data: bytes) -> bytes:
        """Bytes to inline as base64, spoiled when a ``result`` fault is queued."""
        fault = self.take_fault("result")
        return data if fault is None else self._spoil(fault, data)

    @staticmethod
    def _spoil(fault: Fault, data: bytes) -> bytes:
        if fault.kind == "not_image":
            return NOT_AN_IMAGE
        if fault.kind in ("corrupt", "truncated"):
            return data[: max(16, len(data) // 2)]
        if fault.kind == "oversized":
            return oversized_png(int(fault.params.get("size", 4 * 1024 * 1024)))
        return data

    @web.middleware
    async def _stall_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await handler(request)
        if not request.get(_STALL) or not isinstance(response, web.Response) or response.body is None:
            return response
        body = bytes(response.body)  # type: ignore[arg-type]  # emulator replies are always bytes
        stalled = web.StreamResponse(status=response.status, headers=response.headers)
        stalled.content_length = len(body)
        await stalled.prepare(request)
        try:
            await stalled.write(body[: len(body) // 2])
            self.hangs += 1
            self.hanging.set()
            if not self._closing:
                await self._release.wait()
            await stalled.write(body[len(body) // 2 :])
            await stalled.write_eof()
        except ConnectionError:
            pass  # the client gave up on the rest, as it should
        return stalled

    async def _serve_file(self, request: web.Request) -> web.StreamResponse:
        _, fault = await self.enter(request, "files")
        found = self.files.get(request.match_info["name"])
        if found is None:
            return web.Response(status=404, text="NoSuchKey")
        data, mime = found
        if fault is not None and fault.kind == "server_error":
            return web.Response(status=500, text="InternalError")
        spoil = self.take_fault("result")
        if spoil is None:
            return web.Response(body=data, content_type=mime)
        if spoil.kind == "truncated":
            return await self._stream(request, data, mime, cut=True)
        if spoil.kind == "oversized" and not spoil.params.get("declare_length", False):
            return await self._stream(request, self._spoil(spoil, data), mime)
        return web.Response(body=self._spoil(spoil, data), content_type=mime)

    @staticmethod
    async def _stream(request: web.Request, data: bytes, mime: str, *, cut: bool = False) -> web.StreamResponse:
        """Chunked body (no Content-Length), or with ``cut`` a Content-Length the body never reaches."""
        resp = web.StreamResponse(headers={"Content-Type": mime})
        if cut:
            resp.content_length = len(data)
        await resp.prepare(request)
        if cut:
            await resp.write(data[: len(data) // 2])
            if request.transport is not None:
                request.transport.close()
            return resp
        for start in range(0, len(data), 64 * 1024):
            await resp.write(data[start : start + 64 * 1024])
        await resp.write_eof()
        return resp


def json_bytes(obj: Any, *, ascii_only: bool = True) -> bytes:
    return json.dumps(obj, ensure_ascii=ascii_only).encode()

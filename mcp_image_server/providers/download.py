"""Shared adapter plumbing: fetch and check result images, and keep secrets out of messages.

Vendors hand back URLs that expire (Hunyuan 1 h, Ark 24 h) or base64 blobs; either way the
bytes are untrusted until Pillow has read them as a complete PNG, JPEG or WebP of known size.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import io
import sys
import warnings
from collections.abc import Coroutine, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ..errors import BadImageDataError, ProviderTimeoutError, ProviderUnavailableError
from ..models import GeneratedImage, ImageFormat, ProgressFn

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "LazySession",
    "decode_image",
    "download_image",
    "gather_all",
    "redact",
    "report",
    "retry_after_seconds",
    "safe_url",
]

T = TypeVar("T")

PIL_MIME: Final = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
"""Pillow format name -> MIME type of the formats the store accepts."""

_CHUNK: Final = 64 * 1024
INLINE_CHECK_BYTES: Final = 256 * 1024
"""Images up to this size, already in the wanted format, are checked on the event loop: reading the
header and the chunk CRCs takes tens of microseconds, less than handing them to a worker thread."""
_SIGNATURES: Final = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"))


class LazySession:
    """One aiohttp session per provider, opened inside the running loop on first use."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            import aiohttp

            self._session = aiohttp.ClientSession()  # trust_env=False: no proxy surprises (§1.2)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every secret value in ``text`` (vendor messages sometimes echo what they got)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from ``retry-after-ms`` / ``Retry-After`` (delta or HTTP date), if the vendor sent one."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lowered:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000)
        value = lowered.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def safe_url(url: str) -> str:
    """A result URL without its query: presigned URLs carry signatures that must not be logged."""
    return url.split("?", 1)[0]


async def report(progress: ProgressFn | None, status: str) -> None:
    if progress is not None:
        await progress(status)


def _complete(fmt: str | None, data: bytes, img: Any) -> bool:
    """Cheap completeness checks that avoid decoding every pixel (the hot path of a busy server).

    PNG: every chunk's CRC and the IEND chunk (``verify``). JPEG: the end-of-image marker.
    WebP: the RIFF length matches the bytes. Anything else is fully decoded by the caller.
    """
    if fmt == "PNG":
        img.verify()
        return True
    if fmt == "JPEG":
        return data.rstrip(b"\x00").endswith(b"\xff\xd9")
    if fmt == "WEBP":
        return int.from_bytes(data[4:8], "little") + 8 == len(data)
    return False


def _format_of(data: bytes) -> str | None:
    """The output format the bytes' signature claims (``_inspect`` checks the claim)."""
    for signature, fmt in _SIGNATURES:
        if data.startswith(signature):
            return fmt
    return "webp" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else None


def _inspect(data: bytes, want: str | None) -> tuple[bytes, str, int, int]:
    """Check the bytes are a whole image; re-encode (decoding fully) only when ``want`` differs.

    Returns the (possibly converted) bytes, MIME type, width and height.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt, (width, height) = img.format, img.size
                convert = want is not None and fmt in PIL_MIME and fmt != want.upper()
                if not convert and fmt in PIL_MIME and not _complete(fmt, data, img):
                    raise ValueError("truncated")
            if convert and want is not None:
                with Image.open(io.BytesIO(data)) as img:
                    img.load()  # a full decode: truncation fails here
                    data, fmt = _convert(img, want), want.upper()
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"not a readable image ({type(exc).__name__})") from exc
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow reports truncation and bad chunks this way
        raise ValueError(f"damaged image data ({type(exc).__name__})") from exc
    mime = PIL_MIME.get(fmt or "")
    if mime is None:
        raise ValueError(f"unsupported image format {fmt}")
    return data, mime, width, height


def _convert(img: Any, want: str) -> bytes:
    """Re-encode a loaded Pillow image so the caller gets the ``output_format`` it asked for."""
    out = io.BytesIO()
    if want == "jpeg":
        img = img.convert("RGB")
    elif img.mode not in ("RGB", "RGBA", "L", "LA"):
        img = img.convert("RGBA")
    img.save(out, want.upper(), **({} if want == "png" else {"quality": 92}))
    return out.getvalue()


def decode_b64(b64: object, *, provider: str, max_bytes: int) -> bytes:
    """Base64 image bytes from a vendor response, size-checked before decoding.

    Raises:
        BadImageDataError: missing, over ``max_bytes``, or not valid base64.
    """
    if not isinstance(b64, str) or not b64:
        raise BadImageDataError(f"{provider} returned an item without b64_json", provider=provider)
    if len(b64) * 3 // 4 > max_bytes:
        raise BadImageDataError(
            f"{provider} image is larger than the {max_bytes} byte limit",
            provider=provider,
            details={"limit_bytes": max_bytes},
        )
    try:
        return base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadImageDataError(f"{provider} returned invalid base64", provider=provider) from exc


async def decode_image(
    data: bytes,
    *,
    provider: str,
    want: ImageFormat | None = None,
    seed: int | None = None,
    revised_prompt: str | None = None,
) -> GeneratedImage:
    """Check ``data`` is a complete PNG/JPEG/WebP and wrap it, converted to ``want`` if given
    (vendors such as Seedream answer JPEG whatever was asked).

    Raises:
        BadImageDataError: the bytes are empty, not an image, damaged or of another format.
    """
    if not data:
        raise BadImageDataError(f"{provider} returned an empty image", provider=provider)
    try:
        fmt = _format_of(data)
        if len(data) <= INLINE_CHECK_BYTES and fmt is not None and want in (None, fmt) and "PIL.Image" in sys.modules:
            # (Pillow's first import stays in the worker thread: it takes tens of milliseconds.)
            data, mime, width, height = _inspect(data, want)  # a few CRCs: cheaper than a thread hop
        else:
            data, mime, width, height = await asyncio.to_thread(_inspect, data, want)
    except ValueError as exc:
        raise BadImageDataError(
            f"{provider} returned bytes that are not a usable image: {exc}",
            provider=provider,
            details={"size_bytes": len(data), "head": data[:8].hex()},
        ) from exc
    return GeneratedImage(data, mime, width, height, seed=seed, revised_prompt=revised_prompt)


async def download_image(
    session: aiohttp.ClientSession,
    url: str,
    *,
    provider: str,
    max_bytes: int,
    timeout: float,
    want: ImageFormat | None = None,
    seed: int | None = None,
    revised_prompt: str | None = None,
) -> GeneratedImage:
    """Stream ``url`` into memory, stopping at ``max_bytes``, then ``decode_image`` it.

    Raises:
        BadImageDataError: too large, cut short, or not an image.
        ProviderTimeoutError: the download took longer than ``timeout`` seconds.
        ProviderUnavailableError: connection failure or an HTTP error status.
    """
    import aiohttp

    shown = safe_url(url)
    details = {"url": shown, "limit_bytes": max_bytes}
    try:
        async with asyncio.timeout(timeout):
            async with session.get(url) as resp:
                if resp.status >= 400:
                    raise ProviderUnavailableError(
                        f"{provider} result download failed with HTTP {resp.status}",
                        provider=provider,
                        details={**details, "status": resp.status},
                    )
                if resp.content_length is not None and resp.content_length > max_bytes:
                    raise _too_large(provider, details, resp.content_length)
                buf = bytearray()
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    buf += chunk
                    if len(buf) > max_bytes:
                        raise _too_large(provider, details, len(buf))
    except TimeoutError as exc:
        raise ProviderTimeoutError(
            f"{provider} result download took longer than {timeout:g} s", provider=provider, details=details
        ) from exc
    except aiohttp.ClientPayloadError as exc:
        raise BadImageDataError(
            f"{provider} result download was cut short", provider=provider, details=details
        ) from exc
    except aiohttp.ClientError as exc:
        raise ProviderUnavailableError(
            f"{provider} result download failed: {type(exc).__name__}", provider=provider, details=details
        ) from exc
    return await decode_image(bytes(buf), provider=provider, want=want, seed=seed, revised_prompt=revised_prompt)


def _too_large(provider: str, details: dict[str, object], size: int) -> BadImageDataError:
    return BadImageDataError(
        f"{provider} result image is larger than the {details['limit_bytes']} byte limit",
        provider=provider,
        details={**details, "size_bytes_at_least": size},
    )


async def gather_all(coros: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run coroutines concurrently; the first failure cancels the rest and is raised on its own
    (callers map single errors, not exception groups). Pass a generator: each coroutine is
    created only as its task starts, so none is left un-awaited."""
    tasks: list[asyncio.Task[T]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coro) for coro in coros]
    except BaseExceptionGroup as group_exc:
        raise group_exc.exceptions[0]  # noqa: B904 - keeps the error's own __cause__ chain
    return [t.result() for t in tasks]

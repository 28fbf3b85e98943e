"""Small Pillow helpers shared by the service and providers."""

from __future__ import annotations

import io
from typing import Final

from .models import InputImage

__all__ = ["THUMBNAIL_EDGE", "THUMBNAIL_MAX_BYTES", "fit_input", "sniff", "thumbnail"]

THUMBNAIL_EDGE: Final = 512
THUMBNAIL_MAX_BYTES: Final = 256 * 1024

_MAGIC: Final = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))


def sniff(data: bytes) -> str | None:
    """The MIME type of PNG/JPEG/WebP bytes, from their magic numbers; ``None`` for anything else."""
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def thumbnail(data: bytes) -> tuple[bytes, str]:
    """A preview with the long edge <= 512 px and <= 256 KB (JPEG, or PNG when it has alpha).

    Runs on every generation with the default ``inline``, so it does as little as it can: a
    PNG or JPEG that already fits is returned as is (no decode), a JPEG is decoded straight at
    a power-of-two fraction of its size (libjpeg's DCT scaling), and large images are shrunk
    by an integer box reduction before the final bilinear step. Blocking: run off the loop.
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        if (
            img.format in ("PNG", "JPEG")
            and max(img.size) <= THUMBNAIL_EDGE
            and len(data) <= THUMBNAIL_MAX_BYTES
        ):
            return data, "image/png" if img.format == "PNG" else "image/jpeg"
        if img.format == "JPEG":
            img.draft("RGB", (THUMBNAIL_EDGE, THUMBNAIL_EDGE))
        img.thumbnail((THUMBNAIL_EDGE, THUMBNAIL_EDGE), Image.Resampling.BILINEAR, reducing_gap=1.0)
        has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
        if has_alpha:
            buf = io.BytesIO()
            img.save(buf, "PNG", compress_level=3)
            if buf.tell() <= THUMBNAIL_MAX_BYTES:
                return buf.getvalue(), "image/png"
        rgb = img.convert("RGB")
        for quality in (85, 70, 50, 30):
            buf = io.BytesIO()
            rgb.save(buf, "JPEG", quality=quality)
            if buf.tell() <= THUMBNAIL_MAX_BYTES:
                break
        return buf.getvalue(), "image/jpeg"


_PIL_FORMATS: Final = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


def fit_input(
    image: InputImage,
    accepted: tuple[str, ...] = ("image/png", "image/jpeg", "image/webp"),
    *,
    max_side: int | None = None,
    max_bytes: int | None = None,
    min_side: int | None = None,
) -> InputImage:
    """``image`` as a vendor takes it: one of the ``accepted`` MIME types (the first when its own
    is not; PNG keeps alpha), the long side at most ``max_side``, the short side at least
    ``min_side`` (scaled up), and at most ``max_bytes`` (JPEG/WebP quality stepped down, then
    the size halved). Returns ``image`` itself when it already fits. Blocking: run off the loop.
    """
    fits = (
        image.mime_type in accepted
        and (max_side is None or max(image.width, image.height) <= max_side)
        and (min_side is None or min(image.width, image.height) >= min_side)
        and (max_bytes is None or len(image.data) <= max_bytes)
    )
    if fits:
        return image
    from PIL import Image

    mime = image.mime_type if image.mime_type in accepted else accepted[0]
    with Image.open(io.BytesIO(image.data)) as opened:
        img = opened.convert("RGBA") if mime == "image/png" else opened.convert("RGB")
    scale = 1.0
    if max_side is not None and max(img.size) > max_side:
        scale = max_side / max(img.size)
    if min_side is not None and min(img.size) * scale < min_side:
        scale = min_side / min(img.size)
    for _ in range(8):
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        resized = img if size == img.size else img.resize(size, Image.Resampling.LANCZOS)
        for quality in (92, 80, 65) if mime != "image/png" else (None,):
            buf = io.BytesIO()
            if quality is None:
                resized.save(buf, "PNG", optimize=True)
            else:
                resized.save(buf, _PIL_FORMATS[mime], quality=quality)
            if max_bytes is None or buf.tell() <= max_bytes:
                return InputImage(buf.getvalue(), mime, resized.width, resized.height)
        scale *= 0.7
    return InputImage(buf.getvalue(), mime, resized.width, resized.height)

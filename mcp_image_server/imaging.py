"""Small Pillow helpers shared by the service and providers."""

from __future__ import annotations

import io
from typing import Final

__all__ = ["THUMBNAIL_EDGE", "THUMBNAIL_MAX_BYTES", "sniff", "thumbnail"]

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
    """A preview with the long edge <= 512 px and <= 256 KB (JPEG, or PNG when it has alpha)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.thumbnail((THUMBNAIL_EDGE, THUMBNAIL_EDGE))
        has_alpha = img.mode in ("RGBA", "LA") or "transparency" in img.info
        if has_alpha:
            buf = io.BytesIO()
            img.save(buf, "PNG", optimize=True)
            if buf.tell() <= THUMBNAIL_MAX_BYTES:
                return buf.getvalue(), "image/png"
        rgb = img.convert("RGB")
        for quality in (85, 70, 50, 30):
            buf = io.BytesIO()
            rgb.save(buf, "JPEG", quality=quality)
            if buf.tell() <= THUMBNAIL_MAX_BYTES:
                break
        return buf.getvalue(), "image/jpeg"

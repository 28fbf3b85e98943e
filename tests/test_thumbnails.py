"""Previews: small sources pass through untouched, large ones shrink within both limits, and
each image's preview is made once."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from mcp_image_server.config import load_settings
from mcp_image_server.imaging import THUMBNAIL_EDGE, THUMBNAIL_MAX_BYTES, thumbnail
from mcp_image_server.models import GenerateParams
from mcp_image_server.service import ImageService, _Previews


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _noise(size: tuple[int, int], mode: str) -> Image.Image:
    return Image.frombytes(mode, size, os.urandom(size[0] * size[1] * len(mode)))


@pytest.mark.parametrize(("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg")])
def test_a_source_that_already_fits_is_returned_as_is(fmt: str, mime: str) -> None:
    data = _encode(Image.new("RGB", (512, 300), (10, 200, 30)), fmt)
    out, got = thumbnail(data)
    assert out is data and got == mime


@pytest.mark.parametrize(
    ("source", "fmt", "mime", "mode"),
    [
        (Image.new("RGB", (1536, 1024), (200, 40, 40)), "PNG", "image/jpeg", "RGB"),
        (_noise((2048, 1536), "RGB"), "JPEG", "image/jpeg", "RGB"),
        (Image.new("RGBA", (1024, 1024), (0, 0, 255, 90)), "PNG", "image/png", "RGBA"),
        (_noise((600, 400), "RGB"), "WEBP", "image/jpeg", "RGB"),
        # A small PNG over the byte limit is re-encoded even though its size fits.
        (_noise((500, 500), "RGB"), "PNG", "image/jpeg", "RGB"),
    ],
    ids=["png", "jpeg-draft", "alpha", "webp", "heavy-png"],
)
def test_a_large_source_shrinks_within_both_limits(source: Image.Image, fmt: str, mime: str, mode: str) -> None:
    data = _encode(source, fmt)
    out, got = thumbnail(data)
    assert got == mime and len(out) <= THUMBNAIL_MAX_BYTES
    with Image.open(io.BytesIO(out)) as img:
        assert max(img.size) == min(THUMBNAIL_EDGE, max(source.size))
        assert abs(img.width / img.height - source.width / source.height) < 0.01
        assert img.mode == mode


def test_noisy_alpha_that_cannot_fit_as_png_falls_back_to_jpeg() -> None:
    out, mime = thumbnail(_encode(_noise((1024, 1024), "RGBA"), "PNG"))
    assert mime == "image/jpeg" and len(out) <= THUMBNAIL_MAX_BYTES


def test_previews_are_evicted_oldest_first_within_the_budget() -> None:
    cache = _Previews(100)
    cache.put(("o", "a"), (b"x" * 40, "image/png"))
    cache.put(("o", "b"), (b"y" * 40, "image/png"))
    assert cache.get(("o", "a")) is not None  # a is now the most recent
    cache.put(("o", "c"), (b"z" * 40, "image/png"))
    assert cache.get(("o", "b")) is None and cache.get(("o", "a")) and cache.get(("o", "c"))
    cache.put(("o", "big"), (b"w" * 101, "image/png"))
    assert cache.get(("o", "big")) is None


async def test_an_images_preview_is_made_once(tmp_path: Path) -> None:
    service = ImageService(load_settings({"MCP_IMAGE_SAVE_DIR": str(tmp_path)}))
    service.store.open()
    try:
        outcome = await service.generate(GenerateParams(prompt="a lighthouse at dusk", resolution="1024x1024"))
        record = outcome.records[0]
        first = await service.thumbnail(record)
        (tmp_path / record.file_name).unlink()  # a second preview cannot come from the file
        assert await service.thumbnail(record) is first
        with Image.open(io.BytesIO(first[0])) as img:
            assert img.size == (THUMBNAIL_EDGE, THUMBNAIL_EDGE)
    finally:
        await service.aclose()

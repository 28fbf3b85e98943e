"""Shared adapter plumbing: image checks and conversion, Retry-After parsing, redaction, gather_all."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from PIL import Image

from mcp_image_server.errors import BadImageDataError, ProviderUnavailableError
from mcp_image_server.providers.download import decode_image, gather_all, redact, retry_after_seconds, safe_url
from tests.emulators import render_image

pytestmark = pytest.mark.asyncio


def _rgba_png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (width, height), (10, 20, 30, 128)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
async def test_decode_reads_format_and_size(fmt: str) -> None:
    image = await decode_image(render_image(64, 48, fmt), provider="x", seed=3)
    assert (image.mime_type, image.width, image.height, image.seed) == (f"image/{fmt}", 64, 48, 3)


async def test_decode_converts_to_the_wanted_format_dropping_alpha_for_jpeg() -> None:
    image = await decode_image(_rgba_png(32, 16), provider="x", want="jpeg")
    assert (image.mime_type, image.width, image.height) == ("image/jpeg", 32, 16)
    assert image.data[:3] == b"\xff\xd8\xff"


async def test_decode_keeps_bytes_that_already_match() -> None:
    data = render_image(16, 16, "webp")
    assert (await decode_image(data, provider="x", want="webp")).data == data


@pytest.mark.parametrize(
    "data",
    [b"", b"GIF89a" + b"\0" * 32, render_image(64, 64, "png")[:100], b"<html>nope</html>"],
    ids=["empty", "gif-header", "truncated-png", "html"],
)
async def test_decode_rejects_what_is_not_a_complete_supported_image(data: bytes) -> None:
    with pytest.raises(BadImageDataError) as info:
        await decode_image(data, provider="vendor")
    assert info.value.provider == "vendor"


async def test_retry_after_forms() -> None:
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds({"Retry-After": "7"}) == 7.0
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert 25 <= (retry_after_seconds({"Retry-After": soon}) or 0) <= 30
    assert retry_after_seconds({"Retry-After": "soon-ish"}) is None
    assert retry_after_seconds(None) is None


async def test_redact_and_safe_url() -> None:
    assert redact("key sk-FAKE-1 rejected", ["sk-FAKE-1", None, ""]) == "key *** rejected"
    assert safe_url("http://cos/x.png?q-sign=abc") == "http://cos/x.png"


async def test_gather_all_raises_the_first_error_alone_and_cancels_the_rest() -> None:
    cancelled = asyncio.Event()

    async def fails() -> int:
        raise ProviderUnavailableError("down", provider="x")

    async def waits() -> int:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 0

    with pytest.raises(ProviderUnavailableError):
        await gather_all(c for c in (waits(), fails()))
    assert cancelled.is_set()
    assert await gather_all(asyncio.sleep(0, result=i) for i in range(3)) == [0, 1, 2]

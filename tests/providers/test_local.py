from __future__ import annotations

import io

import pytest
from PIL import Image

from mcp_image_server.models import GenerationRequest
from mcp_image_server.providers.local import CATALOG, LocalProvider
from mcp_image_server.providers.procedural import render


def test_same_inputs_give_the_same_bytes() -> None:
    assert render("a red fox", "neon", 200, 120, 7, "png") == render("a red fox", "neon", 200, 120, 7, "png")


def test_seed_style_and_prompt_each_change_the_image() -> None:
    base = render("a red fox", "landscape", 128, 128, 7, "png")
    assert render("a red fox", "landscape", 128, 128, 8, "png") != base
    assert render("a red fox", "geometric", 128, 128, 7, "png") != base
    assert render("a blue whale", "landscape", 128, 128, 7, "png") != base


def _mean_rgb(data: bytes) -> tuple[float, float, float]:
    img = Image.open(io.BytesIO(data)).convert("RGB").resize((1, 1), Image.Resampling.BOX)
    return img.getpixel((0, 0))  # type: ignore[return-value]


def test_colour_words_in_the_prompt_shape_the_palette() -> None:
    blues = [_mean_rgb(render("deep blue ocean", "gradient", 96, 96, s, "png")) for s in range(3)]
    reds = [_mean_rgb(render("red fire", "gradient", 96, 96, s, "png")) for s in range(3)]
    assert all(b[2] > b[0] for b in blues)
    assert all(r[0] > r[2] for r in reds)


def test_a_quoted_caption_is_drawn() -> None:
    plain = render("poster", "gradient", 256, 256, 1, "png")
    captioned = render('poster "HELLO"', "gradient", 256, 256, 1, "png")
    assert plain != captioned


@pytest.mark.parametrize("style", [s.code for s in CATALOG.styles])
@pytest.mark.parametrize(("fmt", "mime"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_every_style_renders_every_format_at_the_requested_size(style: str, fmt: str, mime: str) -> None:
    data = render("mountains at dusk", style, 97, 64, 3, fmt)
    img = Image.open(io.BytesIO(data))
    assert img.format == mime and img.size == (97, 64)


def test_catalog_has_at_least_five_styles_and_the_size_range() -> None:
    assert len(CATALOG.styles) >= 5 and CATALOG.size_range == (64, 2048)


async def test_provider_returns_n_images_with_consecutive_seeds() -> None:
    result = await LocalProvider().generate(
        GenerationRequest(prompt="city", width=64, height=80, n=3, seed=41, output_format="webp", style="mosaic")
    )
    assert [i.seed for i in result.images] == [41, 42, 43]
    assert {(i.width, i.height, i.mime_type) for i in result.images} == {(64, 80, "image/webp")}
    assert len({i.data for i in result.images}) == 3

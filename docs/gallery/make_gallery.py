"""Render the ``local`` provider's contact sheet: sixteen prompts, each image with its prompt under it.

Run from anywhere: ``.venv/bin/python docs/gallery/make_gallery.py`` (writes ``docs/gallery/gallery.png``).
The renderer is deterministic, so the sheet only changes when the renderer does.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mcp_image_server.providers.procedural import render

OUT = Path(__file__).with_name("gallery.png")
TILE = 300
LABEL = 44
COLUMNS = 4
SEED = 7

PROMPTS: tuple[tuple[str, str], ...] = (
    ("a lighthouse at dusk", "landscape"),
    ("neon city skyline at night", "neon"),
    ("snowy mountains", "landscape"),
    ("a cat under a tree by a river", "landscape"),
    ("a red car on a road on a rainy evening", "landscape"),
    ("a castle on a hill at dawn", "watercolor"),
    ("sailing boats on the ocean at sunset", "landscape"),
    ("a dog in a meadow of flowers at sunrise", "landscape"),
    ("a rocket flying past a planet in space", "landscape"),
    ("a desert with cactus at noon", "pixel_art"),
    ("a house in the forest, stormy night", "landscape"),
    ("a bridge over a river in fog", "landscape"),
    ("a tall tower in the city on a cloudy day", "mosaic"),
    ("a violet house with trees on a hill", "gradient"),
    ("birds over a beach with palm trees", "geometric"),
    ('the moon and stars over a village "GOOD NIGHT"', "landscape"),
)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _tile(prompt: str, style: str) -> Image.Image:
    """One image with its prompt and style written in a strip underneath."""
    with Image.open(io.BytesIO(render(prompt, style, TILE, TILE, SEED, "png"))) as drawn:
        art = drawn.convert("RGB")
    tile = Image.new("RGB", (TILE, TILE + LABEL), (24, 24, 28))
    tile.paste(art, (0, 0))
    draw = ImageDraw.Draw(tile)
    font = _font(14)
    label = prompt
    while draw.textlength(label, font=font) > TILE - 16 and len(label) > 4:
        label = label[:-2].rstrip() + "…" if not label.endswith("…") else label[:-2] + "…"
    draw.text((8, TILE + 5), label, font=font, fill=(240, 240, 240))
    draw.text((8, TILE + 24), f"style={style}", font=_font(12), fill=(160, 170, 190))
    return tile


def make_sheet() -> Image.Image:
    """All tiles on a grid with a small gutter."""
    gap = 6
    rows = -(-len(PROMPTS) // COLUMNS)
    sheet = Image.new("RGB", (COLUMNS * (TILE + gap) + gap, rows * (TILE + LABEL + gap) + gap), (12, 12, 14))
    for i, (prompt, style) in enumerate(PROMPTS):
        x, y = gap + (i % COLUMNS) * (TILE + gap), gap + (i // COLUMNS) * (TILE + LABEL + gap)
        sheet.paste(_tile(prompt, style), (x, y))
    return sheet


def main() -> None:
    sheet = make_sheet()
    sheet.save(OUT, "PNG", optimize=True)
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size // 1024} KB, {sheet.width}x{sheet.height})")


if __name__ == "__main__":
    main()

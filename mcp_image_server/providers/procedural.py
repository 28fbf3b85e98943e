"""The procedural renderer behind the ``local`` provider (imports Pillow; load it lazily).

The prompt's nouns, time-of-day and weather words become a composed scene (see
``scenes``: sky, horizon, ground, subjects drawn by ``shapes``); colour and mood
words pick the palette; text in double quotes becomes a caption; the style picks how
the scene is drawn (flat, low-poly, watercolour, pixels, neon outlines, tiles, a
gradient map). Output is a pure function of the arguments.
"""

from __future__ import annotations

import colorsys
import dataclasses
import hashlib
import io
import random
import re
from collections.abc import Sequence
from typing import Final

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont, ImageOps

from . import scenes

__all__ = ["render"]

RGB = tuple[int, int, int]

_HUES: Final[dict[str, float]] = {
    "red": 0.0, "crimson": 0.97, "orange": 0.07, "sunset": 0.05, "fire": 0.03, "autumn": 0.08,
    "gold": 0.12, "yellow": 0.15, "desert": 0.1, "lime": 0.25, "green": 0.33, "forest": 0.3,
    "jungle": 0.35, "teal": 0.48, "cyan": 0.5, "ice": 0.52, "ocean": 0.56, "sea": 0.55, "blue": 0.6,
    "sky": 0.58, "night": 0.66, "indigo": 0.7, "purple": 0.78, "violet": 0.76, "magenta": 0.85,
    "pink": 0.92, "rose": 0.95, "cyberpunk": 0.83,
}
_MOODS: Final[dict[str, tuple[float, float]]] = {  # word -> (saturation, value)
    "dark": (0.6, 0.35), "night": (0.6, 0.35), "moody": (0.45, 0.45), "pastel": (0.3, 0.95),
    "bright": (0.85, 1.0), "vivid": (0.95, 1.0), "muted": (0.3, 0.7), "snow": (0.1, 1.0), "misty": (0.2, 0.85),
}
_CAPTION_RE: Final = re.compile(r'"([^"]{1,80})"|“([^”]{1,80})”')
_WORD_RE: Final = re.compile(r"[a-z]+")


def _seed_from(*parts: object) -> int:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _palette(words: Sequence[str], rng: random.Random) -> list[RGB]:
    hues = [_HUES[w] for w in words if w in _HUES]
    base = hues[0] if hues else rng.random()
    second = hues[1] if len(hues) > 1 else (base + rng.choice((0.08, 0.5, 0.33, -0.1))) % 1.0
    sat, val = next((_MOODS[w] for w in words if w in _MOODS), (0.65, 0.9))
    colours: list[RGB] = []
    for i in range(6):
        hue = (base if i % 2 == 0 else second) + rng.uniform(-0.04, 0.04)
        s = min(1.0, max(0.0, sat + rng.uniform(-0.15, 0.1)))
        v = min(1.0, max(0.1, val - 0.12 * i + rng.uniform(-0.05, 0.05)))
        r, g, b = colorsys.hsv_to_rgb(hue % 1.0, s, v)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


def _gradient(size: tuple[int, int], top: RGB, bottom: RGB) -> Image.Image:
    mask = Image.linear_gradient("L").resize(size)
    return Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), mask)


def _abstract(img: Image.Image, pal: list[RGB], rng: random.Random) -> None:
    """Overlapping translucent discs: for prompts that ask for "abstract" and name no subject."""
    w, h = img.size
    draw = ImageDraw.Draw(img, "RGBA")
    for _ in range(7):
        r = min(w, h) * rng.uniform(0.08, 0.3)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(*rng.choice(pal), 150))


def _low_poly(img: Image.Image, rng: random.Random) -> Image.Image:
    """Geometric style: the scene re-laid as flat triangles on a jittered grid, each filled with
    the colour under its centre, so subjects keep their silhouettes in facets."""
    w, h = img.size
    cell = max(4.0, min(w, h) / 28)
    cols, rows = max(1, round(w / cell)), max(1, round(h / cell))
    cw, rh = w / cols, h / rows
    grid = [[(c * cw + (rng.uniform(-0.3, 0.3) * cw if 0 < c < cols else 0),
              r * rh + (rng.uniform(-0.3, 0.3) * rh if 0 < r < rows else 0)) for c in range(cols + 1)]
            for r in range(rows + 1)]
    src = img.load()
    assert src is not None
    out = Image.new("RGB", img.size)
    draw = ImageDraw.Draw(out)
    for r in range(rows):
        for c in range(cols):
            a, b, d, e = grid[r][c], grid[r][c + 1], grid[r + 1][c], grid[r + 1][c + 1]
            for tri in ((a, b, d), (b, e, d)) if (r + c) % 2 else ((a, b, e), (a, e, d)):
                cx = min(w - 1, max(0, int(sum(p[0] for p in tri) / 3)))
                cy = min(h - 1, max(0, int(sum(p[1] for p in tri) / 3)))
                colour = src[cx, cy]
                draw.polygon(tri, fill=colour)
    return out


def _neon(img: Image.Image, pal: list[RGB]) -> Image.Image:
    """Neon style: the scene's outlines as glowing tubes in the prompt's palette over a dark copy."""
    w, h = img.size
    half = img.reduce(2) if min(w, h) >= 64 else img
    grey = ImageOps.autocontrast(half.convert("L"), cutoff=1)  # night scenes are dark on dark: stretch first
    edges = grey.filter(ImageFilter.FIND_EDGES).point(lambda v: 0 if v < 12 else min(255, v * 5))
    ImageDraw.Draw(edges).rectangle((0, 0, edges.width - 1, edges.height - 1), outline=0)  # no frame
    colour = Image.linear_gradient("L").rotate(90).resize(half.size)
    field = ImageOps.colorize(colour, pal[0], pal[2], mid=pal[1])
    lines = ImageChops.multiply(field, edges.convert("RGB"))
    radius = max(1.5, min(half.size) / 90)
    glow = lines.filter(ImageFilter.GaussianBlur(radius=radius))
    lit = ImageChops.add(ImageChops.add(glow, glow), lines).resize(img.size, Image.Resampling.BILINEAR)
    dark = img.point(lambda v: v // 6)
    return ImageChops.add(dark, lit)


def _gradient_map(img: Image.Image, pal: list[RGB]) -> Image.Image:
    """Gradient style: the scene's light and shade re-coloured along the prompt's palette, softened."""
    w, h = img.size
    grey = img.convert("L").filter(ImageFilter.GaussianBlur(radius=max(1, min(w, h) // 256)))
    dark = tuple(v // 3 for v in pal[5])
    light = tuple(v + (255 - v) * 3 // 5 for v in pal[0])
    return ImageOps.colorize(grey, dark, light, mid=pal[2])


def _mosaic(img: Image.Image) -> Image.Image:
    w, h = img.size
    tile = max(4, min(w, h) // 24)
    small = img.resize((max(1, w // tile), max(1, h // tile)), Image.Resampling.BILINEAR)
    out = small.resize(img.size, Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(out)
    for x in range(0, w, tile):
        draw.line((x, 0, x, h), fill=(20, 20, 20), width=max(1, tile // 10))
    for y in range(0, h, tile):
        draw.line((0, y, w, y), fill=(20, 20, 20), width=max(1, tile // 10))
    return out


def _caption(img: Image.Image, text: str) -> None:
    w, h = img.size
    size = max(10, min(w // max(8, len(text)) * 2, h // 8))
    try:
        font: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow without FreeType
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(img, "RGBA")
    box = draw.textbbox((0, 0), text, font=font)
    tw, th = box[2] - box[0], box[3] - box[1]
    x, y = (w - tw) / 2, h - th - h * 0.08
    pad = size * 0.4
    draw.rounded_rectangle((x - pad, y - pad, x + tw + pad, y + th + pad * 1.6), radius=pad, fill=(0, 0, 0, 140))
    draw.text((x - box[0], y - box[1] + pad * 0.3), text, font=font, fill=(255, 255, 255, 255))


def render(prompt: str, style: str, width: int, height: int, seed: int, output_format: str) -> bytes:
    """Draw one image; pure function of its arguments (CPU-bound: call it off the event loop)."""
    return _encode(_draw(prompt, style, width, height, seed), output_format)


def edit(
    images: Sequence[bytes],
    mask: bytes | None,
    prompt: str,
    style: str,
    width: int,
    height: int,
    seed: int,
    output_format: str,
) -> bytes:
    """A procedural "edit": the prompt's rendering laid into the first image, inside the mask's
    transparent area when there is one, else over all of it at 45 %; further images become insets
    along the bottom edge. Deterministic, like ``render``; no model reads the instruction."""
    with Image.open(io.BytesIO(images[0])) as opened:
        base = opened.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    drawn = _draw(prompt, style, width, height, seed)
    if mask is not None:
        with Image.open(io.BytesIO(mask)) as opened:
            alpha = opened.convert("RGBA").getchannel("A").resize((width, height), Image.Resampling.NEAREST)
        out = Image.composite(base, drawn, alpha)  # opaque keeps the original; transparent takes the rendering
    else:
        out = Image.blend(base, drawn, 0.45)
    inset = max(16, min(width, height) // 5)
    for i, ref in enumerate(images[1:]):
        with Image.open(io.BytesIO(ref)) as opened:
            thumb = opened.convert("RGB")
            thumb.thumbnail((inset, inset))
        x = 8 + i * (inset + 8)
        if x + thumb.width > width:
            break
        out.paste(thumb, (x, height - thumb.height - 8))
    return _encode(out, output_format)


def _encode(img: Image.Image, output_format: str) -> bytes:
    buf = io.BytesIO()
    if output_format == "jpeg":
        img.save(buf, "JPEG", quality=90, optimize=False)
    elif output_format == "webp":
        img.save(buf, "WEBP", quality=90, method=4)
    else:
        img.save(buf, "PNG", compress_level=6)
    return buf.getvalue()


def _draw(prompt: str, style: str, width: int, height: int, seed: int) -> Image.Image:
    words = _WORD_RE.findall(prompt.lower())
    pal = _palette(words, random.Random(_seed_from(prompt, style, width, height, seed)))
    scene = scenes.parse(prompt)
    if style == "neon":  # outlines come from shapes, and a night scene's shapes are dark on dark
        scene = dataclasses.replace(scene, time="day", weather=scene.weather - {"fog", "storm", "cloudy"})
    # layout follows only the structural words (not colour or style), so those recolour in place
    rng = random.Random(_seed_from(scene.key, width, height, seed))
    size = (width, height)
    pixel = style == "pixel_art"
    if pixel:  # draw small, scale up without smoothing
        size = (max(8, width // 12), max(8, height // 12))
    img = Image.new("RGB", size)
    if not scene.subjects and ("abstract" in words or "pattern" in words):
        img = _gradient(size, pal[0], pal[5])
        _abstract(img, pal, rng)
    else:
        img = scenes.compose(img, scene, rng)
    if style == "geometric":
        img = _low_poly(img, rng)
    elif style == "gradient":
        img = _gradient_map(img, pal)
    elif style == "neon":
        img = _neon(img, pal)
    elif style == "watercolor":
        img = img.filter(ImageFilter.GaussianBlur(radius=max(1, min(width, height) // 90)))
        paper = Image.effect_noise(size, 18).convert("RGB")
        img = ImageChops.multiply(img, ImageChops.invert(ImageChops.invert(paper).point(lambda v: v // 6)))
    elif style == "mosaic":
        img = _mosaic(img)
    if pixel:
        img = img.resize((width, height), Image.Resampling.NEAREST)
    match = _CAPTION_RE.search(prompt)
    if match:
        _caption(img, (match.group(1) or match.group(2)).strip())
    return img

"""The procedural renderer behind the ``local`` provider (imports Pillow; load it lazily).

The prompt picks a palette (colour and mood words), a scene (mountains, sea, city,
space, forest or abstract) and an optional caption (text in double quotes); the
style picks how it is drawn. Output is a pure function of the arguments.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import random
import re
from collections.abc import Sequence
from typing import Final

from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

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
_SCENES: Final[dict[str, str]] = {
    "mountain": "mountains", "mountains": "mountains", "landscape": "mountains", "hill": "mountains",
    "sea": "sea", "ocean": "sea", "lake": "sea", "beach": "sea", "wave": "sea", "river": "sea",
    "city": "city", "skyline": "city", "building": "city", "street": "city", "cyberpunk": "city",
    "space": "space", "star": "space", "stars": "space", "galaxy": "space", "planet": "space", "night": "space",
    "forest": "forest", "tree": "forest", "trees": "forest", "garden": "forest", "jungle": "forest",
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


def _ridge(rng: random.Random, w: int, h: int, base: float, rough: float) -> list[tuple[float, float]]:
    points = [(0.0, float(h))]
    y = base * h
    steps = 24
    for i in range(steps + 1):
        y += rng.uniform(-rough, rough) * h
        y = min(max(y, 0.15 * h), 0.95 * h)
        points.append((i * w / steps, y))
    points.append((float(w), float(h)))
    return points


def _scene(img: Image.Image, scene: str, pal: list[RGB], rng: random.Random) -> None:
    w, h = img.size
    draw = ImageDraw.Draw(img, "RGBA")
    if scene in ("mountains", "sea", "forest"):
        r = min(w, h) * rng.uniform(0.06, 0.12)
        cx, cy = w * rng.uniform(0.2, 0.8), h * rng.uniform(0.15, 0.35)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(*pal[1], 230))
    if scene == "mountains":
        for layer in range(4):
            draw.polygon(_ridge(rng, w, h, 0.45 + 0.12 * layer, 0.05), fill=(*pal[2 + layer % 4], 235))
    elif scene == "sea":
        horizon = h * rng.uniform(0.5, 0.62)
        draw.rectangle((0, horizon, w, h), fill=(*pal[3], 255))
        for i in range(18):
            y = horizon + (h - horizon) * (i + rng.random()) / 18
            x = rng.uniform(-0.2, 0.8) * w
            draw.line((x, y, x + w * rng.uniform(0.1, 0.4), y), fill=(*pal[0], 120), width=max(1, h // 200))
    elif scene == "city":
        x = 0.0
        while x < w:
            bw = w * rng.uniform(0.04, 0.1)
            bh = h * rng.uniform(0.25, 0.7)
            draw.rectangle((x, h - bh, x + bw, h), fill=(*pal[4 + int(x) % 2], 255))
            for wy in range(int(h - bh + 8), h - 8, max(6, h // 60)):
                if bw > 8 and rng.random() < 0.45:
                    draw.rectangle((x + 3, wy, x + bw - 3, wy + max(2, h // 200)), fill=(*pal[1], 200))
            x += bw + w * 0.005
    elif scene == "space":
        for _ in range(int(w * h / 1800)):
            x, y, s = rng.uniform(0, w), rng.uniform(0, h), rng.choice((1, 1, 1, 2))
            draw.ellipse((x, y, x + s, y + s), fill=(255, 255, 255, rng.randint(120, 255)))
        r = min(w, h) * rng.uniform(0.12, 0.22)
        cx, cy = w * rng.uniform(0.3, 0.7), h * rng.uniform(0.3, 0.7)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(*pal[1], 255))
        draw.ellipse((cx - r * 1.6, cy - r * 0.25, cx + r * 1.6, cy + r * 0.25), outline=(*pal[2], 200),
                     width=max(2, int(r // 12)))
    elif scene == "forest":
        draw.rectangle((0, h * 0.75, w, h), fill=(*pal[4], 255))
        for _ in range(40):
            x, base = rng.uniform(0, w), h * rng.uniform(0.7, 1.0)
            th = h * rng.uniform(0.2, 0.45)
            tw = th * 0.35
            draw.polygon([(x, base - th), (x - tw, base), (x + tw, base)], fill=(*pal[2 + rng.randint(0, 3)], 240))
    else:  # abstract
        for _ in range(7):
            r = min(w, h) * rng.uniform(0.08, 0.3)
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(*rng.choice(pal), 150))


def _geometric(img: Image.Image, pal: list[RGB], rng: random.Random) -> None:
    w, h = img.size
    draw = ImageDraw.Draw(img, "RGBA")
    for _ in range(28):
        colour = (*rng.choice(pal), rng.randint(90, 200))
        x, y = rng.uniform(-0.1, 1.0) * w, rng.uniform(-0.1, 1.0) * h
        s = min(w, h) * rng.uniform(0.05, 0.3)
        kind = rng.randrange(3)
        if kind == 0:
            draw.rectangle((x, y, x + s, y + s * rng.uniform(0.5, 1.5)), fill=colour)
        elif kind == 1:
            draw.ellipse((x, y, x + s, y + s), fill=colour)
        else:
            draw.polygon([(x, y + s), (x + s / 2, y), (x + s, y + s)], fill=colour)


def _neon(img: Image.Image, pal: list[RGB], rng: random.Random) -> Image.Image:
    w, h = img.size
    dark = Image.new("RGB", img.size, tuple(c // 8 for c in pal[5]))
    lines = Image.new("RGB", img.size, (0, 0, 0))
    draw = ImageDraw.Draw(lines)
    width = max(2, min(w, h) // 120)
    for i in range(14):
        colour = pal[i % 3]
        points = [(rng.uniform(0, w), rng.uniform(0, h)) for _ in range(4)]
        draw.line(points, fill=colour, width=width, joint="curve")
    glow = lines.filter(ImageFilter.GaussianBlur(radius=max(2, width * 3)))
    return ImageChops.add(ImageChops.add(dark, glow), lines)


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
    rng = random.Random(_seed_from(prompt, style, width, height, seed))
    lowered = prompt.lower()
    words = _WORD_RE.findall(lowered)
    pal = _palette(words, rng)
    scene = next((_SCENES[w] for w in words if w in _SCENES), "abstract")
    size = (width, height)
    pixel = style == "pixel_art"
    if pixel:  # draw small, scale up without smoothing
        size = (max(8, width // 12), max(8, height // 12))
    img = _gradient(size, pal[0], pal[5] if style != "neon" else (0, 0, 0))
    if style == "geometric":
        _geometric(img, pal, rng)
    elif style == "gradient":
        field = Image.effect_noise((max(2, size[0] // 128), max(2, size[1] // 128)), 80).resize(
            size, Image.Resampling.BICUBIC
        )
        img = Image.composite(img, Image.new("RGB", size, pal[2]), field)
    elif style == "neon":
        img = _neon(img, pal, rng)
    else:
        _scene(img, scene, pal, rng)
    if style == "watercolor":
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

"""Vector drawings of sky, nature and animals for the ``local`` renderer (Pillow ``ImageDraw``
only; built things are in ``buildings``), plus the ``Look`` and ``Canvas`` they share.

Each drawer takes a ``Canvas``, a horizontal centre ``x``, the ``base`` line it stands on
(or its centre, for things in the sky) and a ``size`` in pixels (its height), so the scene
composer decides placement, scale and layering and the drawers only decide shape.
All colours go through ``Look.c`` so time of day, weather and mood light them consistently.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw

RGB = tuple[int, int, int]
RGBA = tuple[int, int, int, int]
Point = tuple[float, float]

WINDOW_LIT: RGBA = (255, 214, 120, 255)


@dataclass(frozen=True, slots=True)
class Look:
    """How the scene is lit: colours are dimmed by ``light`` and pulled toward ``tint``."""

    light: float = 1.0
    tint: RGB = (255, 255, 255)
    tint_amount: float = 0.0
    accent: RGB | None = None
    night: bool = False
    saturation: float = 1.0
    snow: bool = False

    def c(self, rgb: RGB, alpha: int = 255) -> RGBA:
        """``rgb`` as seen under this light (night darkens, sunset warms, pastel lightens)."""
        out = []
        grey = sum(rgb) / 3
        for v, t in zip(rgb, self.tint, strict=True):
            lit = (grey + (v - grey) * self.saturation) * self.light
            lit += (t * self.light - lit) * self.tint_amount
            out.append(max(0, min(255, int(lit))))
        return (out[0], out[1], out[2], alpha)

    def accent_or(self, rgb: RGB) -> RGB:
        return self.accent if self.accent is not None else rgb


@dataclass(slots=True)
class Canvas:
    """The image being drawn plus what every drawer needs (draw handle, light, random source)."""

    img: Image.Image
    draw: ImageDraw.ImageDraw
    look: Look
    rng: random.Random

    @property
    def w(self) -> int:
        return self.img.width

    @property
    def h(self) -> int:
        return self.img.height

    def lw(self, size: float, frac: float = 0.02) -> int:
        """A line width proportional to ``size``, never below one pixel."""
        return max(1, int(size * frac))


def box(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
    """An ordered box: Pillow rejects boxes whose corners are swapped."""
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def disc(cv: Canvas, x: float, y: float, r: float, fill: RGBA) -> None:
    cv.draw.ellipse(box(x - r, y - r, x + r, y + r), fill=fill)


def rotated(points: Sequence[Point], cx: float, cy: float, angle: float) -> list[Point]:
    """``points`` turned by ``angle`` radians about (cx, cy): for tilted subjects (rockets)."""
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + (px - cx) * ca - (py - cy) * sa, cy + (px - cx) * sa + (py - cy) * ca) for px, py in points]


# ---- sky ----------------------------------------------------------------------------------


def glow(cv: Canvas, x: float, y: float, r: float, colour: RGB, rings: int = 4, alpha: int = 40) -> None:
    """A soft halo as concentric translucent discs (no blur: blur is slow at 2048 px)."""
    for i in range(rings, 0, -1):
        disc(cv, x, y, r * (1 + 0.3 * i), (*colour, alpha))


def sun(cv: Canvas, x: float, y: float, r: float, colour: RGB) -> None:
    glow(cv, x, y, r, colour, rings=3, alpha=30)
    disc(cv, x, y, r, (*colour, 255))


def moon(cv: Canvas, x: float, y: float, r: float, pale: bool = False) -> None:
    glow(cv, x, y, r, (200, 210, 255), rings=3, alpha=18 if pale else 30)
    disc(cv, x, y, r, (236, 236, 224, 170 if pale else 255))
    for dx, dy, k in ((-0.3, -0.2, 0.22), (0.25, 0.1, 0.16), (-0.05, 0.4, 0.12)):
        disc(cv, x + dx * r, y + dy * r, r * k, (200, 200, 190, 120 if pale else 255))


def stars(cv: Canvas, count: int, bottom: float, alpha: int = 255) -> None:
    for _ in range(count):
        x, y = cv.rng.uniform(0, cv.w), cv.rng.uniform(0, bottom) ** 1.0
        s = cv.rng.choice((0.6, 0.8, 1.0, 1.0, 1.6)) * max(1.0, cv.h / 700)
        disc(cv, x, y, s, (255, 255, 240, cv.rng.randint(alpha // 2, alpha)))
    for _ in range(max(1, count // 60)):  # a few bright ones with rays
        x, y = cv.rng.uniform(0, cv.w), cv.rng.uniform(0, bottom * 0.8)
        r = cv.h * 0.012
        cv.draw.line((x - r, y, x + r, y), fill=(255, 255, 255, alpha), width=1)
        cv.draw.line((x, y - r, x, y + r), fill=(255, 255, 255, alpha), width=1)
        disc(cv, x, y, r * 0.25, (255, 255, 255, alpha))


def cloud(cv: Canvas, x: float, y: float, size: float, colour: RGB, alpha: int = 230) -> None:
    """A cumulus: a row of overlapping puffs over a flat base."""
    fill = cv.look.c(colour, alpha)
    puffs = 5
    for i in range(puffs):
        px = x + (i - (puffs - 1) / 2) * size * 0.32
        r = size * (0.22 + 0.16 * math.sin(math.pi * (i + 0.5) / puffs)) * cv.rng.uniform(0.85, 1.1)
        disc(cv, px, y - r * 0.4, r, fill)
    cv.draw.rounded_rectangle(box(x - size * 0.8, y - size * 0.15, x + size * 0.8, y + size * 0.12),
                              radius=size * 0.12, fill=fill)


def bird(cv: Canvas, x: float, y: float, size: float) -> None:
    """A gull seen from afar: two shallow arcs."""
    width = cv.lw(size, 0.12)
    fill = cv.look.c((30, 30, 40)) if not cv.look.night else (10, 10, 20, 255)
    cv.draw.line([(x - size, y - size * 0.3), (x - size * 0.45, y - size * 0.45), (x, y)], fill=fill, width=width,
                 joint="curve")
    cv.draw.line([(x, y), (x + size * 0.45, y - size * 0.45), (x + size, y - size * 0.3)], fill=fill, width=width,
                 joint="curve")


def planet(cv: Canvas, x: float, y: float, r: float) -> None:
    """A ringed planet: back of the ring, the globe with a shadow, then the front of the ring."""
    body = cv.look.accent_or((214, 170, 110))
    ring = (236, 214, 170, 230)
    width = cv.lw(r, 0.07)
    rbox = box(x - r * 1.9, y - r * 0.45, x + r * 1.9, y + r * 0.45)
    cv.draw.arc(rbox, 180, 360, fill=ring, width=width)
    disc(cv, x, y, r, (*body, 255))
    for k, dy in ((0.9, -0.35), (0.93, 0.1), (0.86, 0.45)):
        cv.draw.chord(box(x - r * k, y + dy * r - r * 0.08, x + r * k, y + dy * r + r * 0.08), 0, 360,
                      fill=(*[max(0, v - 40) for v in body], 140))
    cv.draw.chord(box(x - r, y - r, x + r, y + r), 300, 120, fill=(0, 0, 0, 70))
    cv.draw.arc(rbox, 0, 180, fill=ring, width=width)


def rocket(cv: Canvas, x: float, y: float, size: float, angle: float = 0.35) -> None:
    """A rocket climbing at ``angle`` with flame and a smoke trail behind it."""
    s = size
    trail_dx, trail_dy = -math.sin(angle), math.cos(angle)
    for i in range(1, 9):
        d = s * (0.45 + 0.28 * i)
        disc(cv, x + trail_dx * d, y + trail_dy * d, s * (0.07 + 0.025 * i), cv.look.c((225, 225, 230), 200 - i * 18))
    body = cv.look.c((236, 238, 242))
    accent = cv.look.c(cv.look.accent_or((210, 40, 40)))
    w2 = s * 0.11
    hull = [(x - w2, y - s * 0.25), (x - w2, y + s * 0.3), (x + w2, y + s * 0.3), (x + w2, y - s * 0.25)]
    nose = [(x - w2, y - s * 0.25), (x, y - s * 0.5), (x + w2, y - s * 0.25)]
    fins_l = [(x - w2, y + s * 0.05), (x - w2 * 2.2, y + s * 0.35), (x - w2, y + s * 0.3)]
    fins_r = [(x + w2, y + s * 0.05), (x + w2 * 2.2, y + s * 0.35), (x + w2, y + s * 0.3)]
    flame = [(x - w2 * 0.8, y + s * 0.3), (x, y + s * 0.62), (x + w2 * 0.8, y + s * 0.3)]
    core = [(x - w2 * 0.4, y + s * 0.3), (x, y + s * 0.48), (x + w2 * 0.4, y + s * 0.3)]
    for pts, fill in ((flame, (255, 140, 30, 255)), (core, (255, 236, 120, 255)), (hull, body), (nose, accent),
                      (fins_l, accent), (fins_r, accent)):
        cv.draw.polygon(rotated(pts, x, y, angle), fill=fill)
    wx, wy = rotated([(x, y - s * 0.08)], x, y, angle)[0]
    disc(cv, wx, wy, w2 * 0.55, cv.look.c((60, 90, 140)))
    disc(cv, wx, wy, w2 * 0.35, cv.look.c((140, 200, 240)))


# ---- nature -------------------------------------------------------------------------------


def peaks(cv: Canvas, horizon: float, height: float, colour: RGB, snow: bool, n: int) -> None:
    """A ridge of triangular peaks on the horizon; white caps when ``snow``."""
    step = cv.w / max(1, n - 1)
    for i in range(n):
        px = i * step + cv.rng.uniform(-0.3, 0.3) * step
        ph = height * cv.rng.uniform(0.55, 1.0)
        half = ph * cv.rng.uniform(1.1, 1.7)
        apex = (px, horizon - ph)
        left, right = (px - half, horizon + 2), (px + half, horizon + 2)
        cv.draw.polygon([left, apex, right], fill=cv.look.c(colour))
        cv.draw.polygon([apex, right, (px + half * 0.15, horizon + 2)], fill=cv.look.c(tuple(
            int(v * 0.82) for v in colour)))  # type: ignore[arg-type]
        if snow or ph > height * 0.85:
            f = 0.34 if snow else 0.2
            cap = [apex, (px + half * f, apex[1] + ph * f)]
            for k in range(4, -1, -1):
                cap.append((px - half * f + half * f * 2 * k / 4, apex[1] + ph * f * (0.75 if k % 2 else 1.0)))
            cap.append((px - half * f, apex[1] + ph * f))
            cv.draw.polygon(cap, fill=cv.look.c((246, 248, 252)))


def hills(cv: Canvas, horizon: float, height: float, colour: RGB) -> None:
    """Low rolling hills as overlapping wide ellipses along the horizon."""
    x = -cv.w * 0.1
    while x < cv.w * 1.1:
        r = cv.w * cv.rng.uniform(0.18, 0.32)
        hh = height * cv.rng.uniform(0.5, 1.0)
        cv.draw.ellipse(box(x - r, horizon - hh, x + r, horizon + hh), fill=cv.look.c(colour))
        x += r * 1.2


def tree(cv: Canvas, x: float, base: float, size: float, kind: str = "round") -> None:
    """A tree: ``round`` (broadleaf), ``pine`` (conifer) or ``palm``; snow on pines under snow."""
    trunk = cv.look.c((104, 70, 44))
    if kind == "pine":
        cv.draw.rectangle(box(x - size * 0.04, base - size * 0.2, x + size * 0.04, base), fill=trunk)
        green = cv.look.c((34, 96, 58))
        for i in range(3):
            y0 = base - size * (0.15 + 0.28 * i)
            half = size * (0.3 - 0.07 * i)
            top = y0 - size * 0.42
            cv.draw.polygon([(x - half, y0), (x, top), (x + half, y0)], fill=green)
            if cv.look.snow:
                cv.draw.polygon([(x - half * 0.45, top + size * 0.19), (x, top), (x + half * 0.45, top + size * 0.19)],
                                fill=cv.look.c((246, 248, 252)))
        return
    if kind == "palm":
        pts = [(x + size * 0.12 * math.sin(t / 6 * 1.2), base - size * 0.85 * t / 6) for t in range(7)]
        cv.draw.line(pts, fill=trunk, width=cv.lw(size, 0.06), joint="curve")
        tx, ty = pts[-1]
        for ang in (-160, -130, -100, -70, -40, -15):
            a = math.radians(ang)
            ex, ey = tx + math.cos(a) * size * 0.42, ty + math.sin(a) * size * 0.2 + size * 0.18
            mx, my = tx + math.cos(a) * size * 0.22, ty + math.sin(a) * size * 0.25
            cv.draw.line([(tx, ty), (mx, my), (ex, ey)], fill=cv.look.c((40, 120, 60)), width=cv.lw(size, 0.05),
                         joint="curve")
        return
    cv.draw.rectangle(box(x - size * 0.06, base - size * 0.45, x + size * 0.06, base), fill=trunk)
    leaf = cv.look.c(cv.rng.choice(((52, 128, 60), (70, 140, 64), (44, 112, 54))))
    for dx, dy, r in ((0, -0.68, 0.3), (-0.2, -0.52, 0.22), (0.2, -0.52, 0.22), (0, -0.45, 0.2)):
        disc(cv, x + dx * size, base + dy * size, r * size, leaf)
    if cv.look.snow:
        cv.draw.chord(box(x - size * 0.26, base - size * 0.98, x + size * 0.26, base - size * 0.6), 180, 360,
                      fill=cv.look.c((246, 248, 252)))


def cactus(cv: Canvas, x: float, base: float, size: float) -> None:
    green = cv.look.c((60, 130, 70))
    w = size * 0.16
    cv.draw.rounded_rectangle(box(x - w / 2, base - size, x + w / 2, base), radius=w / 2, fill=green)
    for side, y in ((-1, 0.55), (1, 0.7)):
        ax = x + side * w * 1.3
        cv.draw.rounded_rectangle(box(ax - w * 0.4, base - size * y - size * 0.28, ax + w * 0.4, base - size * y),
                                  radius=w * 0.4, fill=green)
        cv.draw.rectangle(box(min(x, ax), base - size * y - w * 0.4, max(x, ax), base - size * y), fill=green)


def flower(cv: Canvas, x: float, base: float, size: float) -> None:
    """Stem, leaf and five round petals around a yellow heart."""
    cv.draw.line((x, base, x, base - size), fill=cv.look.c((50, 120, 50)), width=cv.lw(size, 0.06))
    cv.draw.ellipse(box(x, base - size * 0.45, x + size * 0.25, base - size * 0.35), fill=cv.look.c((60, 140, 60)))
    petal = cv.look.c(cv.look.accent or cv.rng.choice(((230, 60, 90), (250, 250, 250), (240, 180, 40),
                                                       (170, 90, 210), (240, 120, 160))))
    cy, r = base - size, size * 0.16
    for k in range(5):
        a = 2 * math.pi * k / 5
        disc(cv, x + math.cos(a) * r * 1.1, cy + math.sin(a) * r * 1.1, r, petal)
    disc(cv, x, cy, r * 0.8, cv.look.c((250, 210, 60)))


def boat(cv: Canvas, x: float, water: float, size: float) -> None:
    """A sailing boat: hull on the waterline, mast and two sails."""
    hull = cv.look.c(cv.look.accent_or((150, 60, 40)))
    w = size * 1.1
    cv.draw.polygon([(x - w / 2, water - size * 0.18), (x + w / 2, water - size * 0.18), (x + w * 0.35, water),
                     (x - w * 0.35, water)], fill=hull)
    mast_top = water - size
    cv.draw.line((x, water - size * 0.18, x, mast_top), fill=cv.look.c((80, 60, 40)), width=cv.lw(size, 0.03))
    sail = cv.look.c((246, 244, 236))
    cv.draw.polygon([(x + size * 0.03, mast_top + size * 0.05), (x + w * 0.42, water - size * 0.24),
                     (x + size * 0.03, water - size * 0.24)], fill=sail)
    cv.draw.polygon([(x - size * 0.03, mast_top + size * 0.15), (x - w * 0.32, water - size * 0.24),
                     (x - size * 0.03, water - size * 0.24)], fill=sail)
    if cv.look.night:
        disc(cv, x, mast_top, size * 0.025, (255, 220, 140, 255))


def fish(cv: Canvas, x: float, y: float, size: float, facing: int = 1) -> None:
    """A fish leaping: oval body, forked tail, eye, with a splash ring under it."""
    body = cv.look.c(cv.look.accent_or((244, 140, 40)))
    length = size
    cv.draw.ellipse(box(x - length * 0.5, y - length * 0.2, x + length * 0.3, y + length * 0.2), fill=body)
    tail_x = x - facing * length * 0.45
    cv.draw.polygon([(tail_x, y), (tail_x - facing * length * 0.3, y - length * 0.22),
                     (tail_x - facing * length * 0.3, y + length * 0.22)], fill=body)
    cv.draw.polygon([(x - length * 0.1, y - length * 0.15), (x + length * 0.05, y - length * 0.32),
                     (x + length * 0.12, y - length * 0.14)], fill=body)
    disc(cv, x + facing * length * 0.16, y - length * 0.04, length * 0.045, (20, 20, 20, 255))


def cat(cv: Canvas, x: float, base: float, size: float) -> None:
    """A sitting cat from the front: body, head, pointed ears, curled tail, eyes that shine at night."""
    fur = cv.look.c(cv.look.accent_or((70, 64, 66)))
    cv.draw.line([(x + size * 0.22, base - size * 0.05), (x + size * 0.45, base - size * 0.1),
                  (x + size * 0.5, base - size * 0.35)], fill=fur, width=cv.lw(size, 0.08), joint="curve")
    cv.draw.ellipse(box(x - size * 0.26, base - size * 0.6, x + size * 0.26, base), fill=fur)
    hy = base - size * 0.7
    r = size * 0.19
    disc(cv, x, hy, r, fur)
    for side in (-1, 1):
        cv.draw.polygon([(x + side * r * 0.95, hy - r * 0.15), (x + side * r * 0.85, hy - r * 1.65),
                         (x + side * r * 0.15, hy - r * 0.85)], fill=fur)
        eye = (250, 230, 80, 255) if cv.look.night else (140, 200, 90, 255)
        disc(cv, x + side * r * 0.4, hy - r * 0.05, r * 0.16, eye)
    disc(cv, x, hy + r * 0.3, r * 0.09, (230, 140, 150, 255))


def dog(cv: Canvas, x: float, base: float, size: float) -> None:
    """A standing dog in profile: body, four legs, head with snout and a floppy ear, raised tail."""
    fur = cv.look.c(cv.look.accent_or((150, 100, 60)))
    dark = cv.look.c((90, 60, 36))
    lw = cv.lw(size, 0.09)
    cv.draw.line([(x - size * 0.45, base - size * 0.55), (x - size * 0.62, base - size * 0.85)], fill=fur, width=lw)
    cv.draw.ellipse(box(x - size * 0.5, base - size * 0.72, x + size * 0.35, base - size * 0.35), fill=fur)
    for lx in (-0.4, -0.25, 0.15, 0.28):
        cv.draw.rectangle(box(x + lx * size, base - size * 0.45, x + (lx + 0.09) * size, base), fill=fur)
    hx, hy = x + size * 0.4, base - size * 0.85
    disc(cv, hx, hy, size * 0.17, fur)
    cv.draw.ellipse(box(hx + size * 0.05, hy - size * 0.02, hx + size * 0.33, hy + size * 0.13), fill=fur)
    disc(cv, hx + size * 0.32, hy + size * 0.03, size * 0.04, (20, 20, 20, 255))
    cv.draw.ellipse(box(hx - size * 0.14, hy - size * 0.1, hx - size * 0.02, hy + size * 0.2), fill=dark)
    disc(cv, hx + size * 0.06, hy - size * 0.05, size * 0.03, (20, 20, 20, 255))


def lightning(cv: Canvas, x: float, top: float, bottom: float) -> None:
    """A forked bolt with a wide faint halo under the bright core."""
    pts = [(x, top)]
    y = top
    while y < bottom:
        y += (bottom - top) / 7
        x += cv.rng.uniform(-1, 1) * (bottom - top) * 0.12
        pts.append((x, min(y, bottom)))
    width = cv.lw(cv.h, 0.006)
    cv.draw.line(pts, fill=(220, 220, 255, 70), width=width * 5)
    cv.draw.line(pts, fill=(255, 255, 240, 255), width=width)
    fx, fy = pts[3]
    cv.draw.line([(fx, fy), (fx + (bottom - top) * 0.15, fy + (bottom - top) * 0.2)], fill=(255, 255, 240, 220),
                 width=max(1, width // 2))

"""Vector drawings of built things for the ``local`` renderer: towers, houses, castles, bridges, cars.

Same contract as ``shapes``: ``x`` is the horizontal centre, ``base`` the line it stands on,
``size`` its height in pixels; colours go through ``Look.c``; windows light up at night.
"""

from __future__ import annotations

import itertools
import math

from .shapes import WINDOW_LIT, Canvas, box, disc, glow


def windows(cv: Canvas, x0: float, y0: float, x1: float, y1: float, cols: int, rows: int,
            lit_share: float = 0.6) -> None:
    """A grid of windows; at night a share of them is lit."""
    if cols < 1 or rows < 1 or x1 - x0 < 3 or y1 - y0 < 3:
        return
    cw, rh = (x1 - x0) / cols, (y1 - y0) / rows
    dark = cv.look.c((150, 180, 210)) if not cv.look.night else (24, 28, 44, 255)
    for r in range(rows):
        for c in range(cols):
            lit = cv.look.night and cv.rng.random() < lit_share
            fill = WINDOW_LIT if lit else dark
            cv.draw.rectangle(box(x0 + c * cw + cw * 0.2, y0 + r * rh + rh * 0.2, x0 + (c + 1) * cw - cw * 0.2,
                                  y0 + (r + 1) * rh - rh * 0.25), fill=fill)


def skyline(cv: Canvas, horizon: float, height: float, x0: float = 0.0, x1: float | None = None) -> None:
    """A row of towers and blocks standing on the horizon, windows lit at night."""
    x1 = cv.w if x1 is None else x1
    x = x0 - cv.rng.uniform(0, height * 0.1)
    tones = ((88, 98, 122), (70, 80, 104), (104, 112, 134)) if not cv.look.night else ((22, 26, 44), (30, 34, 56),
                                                                                       (18, 20, 36))
    while x < x1:
        bw = height * cv.rng.uniform(0.16, 0.34)
        bh = height * cv.rng.uniform(0.35, 1.0)
        top = horizon - bh
        colour = cv.look.c(cv.rng.choice(tones)) if not cv.look.night else (*cv.rng.choice(tones), 255)
        cv.draw.rectangle(box(x, top, x + bw, horizon), fill=colour)
        kind = cv.rng.random()
        if kind < 0.25:  # spire
            cv.draw.line((x + bw / 2, top, x + bw / 2, top - bh * 0.18), fill=colour, width=cv.lw(bw, 0.06))
        elif kind < 0.5:  # stepped top
            cv.draw.rectangle(box(x + bw * 0.2, top - bh * 0.08, x + bw * 0.8, top), fill=colour)
        cols = max(1, int(bw / max(3.0, height * 0.06)))
        rows = max(1, int(bh / max(3.0, height * 0.07)))
        windows(cv, x + bw * 0.08, top + bh * 0.05, x + bw * 0.92, horizon - bh * 0.04, cols, rows, 0.55)
        x += bw + height * cv.rng.uniform(0.0, 0.05)


def house(cv: Canvas, x: float, base: float, size: float) -> None:
    """Walls, pitched roof, chimney, door and two windows (lit at night; roof white under snow)."""
    w = size * 1.15
    wall_top = base - size * 0.55
    walls = cv.look.c(cv.rng.choice(((236, 226, 200), (214, 190, 160), (240, 240, 236))))
    roof = cv.look.c(cv.look.accent_or((170, 60, 50)))
    cv.draw.rectangle(box(x + w * 0.22, base - size * 1.0, x + w * 0.34, wall_top - size * 0.1), fill=cv.look.c(
        (120, 70, 60)))
    cv.draw.rectangle(box(x - w / 2, wall_top, x + w / 2, base), fill=walls)
    roof_pts = [(x - w * 0.6, wall_top), (x, base - size), (x + w * 0.6, wall_top)]
    cv.draw.polygon(roof_pts, fill=roof)
    if cv.look.snow:
        cv.draw.polygon([(x - w * 0.42, wall_top - size * 0.12), (x, base - size), (x + w * 0.42, wall_top - size * 0.12)],
                        fill=cv.look.c((246, 248, 252)))
    cv.draw.rectangle(box(x - w * 0.08, base - size * 0.3, x + w * 0.08, base), fill=cv.look.c((100, 60, 40)))
    for side in (-1, 1):
        wx = x + side * w * 0.28
        fill = WINDOW_LIT if cv.look.night else cv.look.c((120, 170, 210))
        cv.draw.rectangle(box(wx - w * 0.09, base - size * 0.42, wx + w * 0.09, base - size * 0.24), fill=fill)


def lighthouse(cv: Canvas, x: float, base: float, size: float, beam: bool) -> None:
    """A striped tapering tower with gallery and lantern; ``beam`` casts its light sideways."""
    bw, tw = size * 0.2, size * 0.12
    top = base - size * 0.78
    stripe = cv.look.c(cv.look.accent_or((200, 40, 40)))
    white = cv.look.c((244, 244, 240))
    bands = 6
    for i in range(bands):
        t0, t1 = i / bands, (i + 1) / bands
        y0, y1 = base - (base - top) * t0, base - (base - top) * t1
        w0, w1 = bw + (tw - bw) * t0, bw + (tw - bw) * t1
        cv.draw.polygon([(x - w0 / 2, y0), (x - w1 / 2, y1), (x + w1 / 2, y1), (x + w0 / 2, y0)],
                        fill=stripe if i % 2 else white)
    dark = cv.look.c((40, 40, 48))
    cv.draw.rectangle(box(x - tw * 0.8, top - size * 0.03, x + tw * 0.8, top), fill=dark)
    lamp_top = top - size * 0.13
    lamp = WINDOW_LIT if beam else cv.look.c((250, 236, 170))
    cv.draw.rectangle(box(x - tw * 0.45, lamp_top, x + tw * 0.45, top - size * 0.03), fill=lamp)
    cv.draw.polygon([(x - tw * 0.6, lamp_top), (x, lamp_top - size * 0.09), (x + tw * 0.6, lamp_top)], fill=dark)
    cv.draw.rectangle(box(x - bw * 0.12, base - size * 0.14, x + bw * 0.12, base), fill=dark)
    if beam:
        ly = (lamp_top + top) / 2
        reach = cv.w * 0.7
        for side in (-1, 1):
            cv.draw.polygon([(x, ly), (x + side * reach, ly - size * 0.16), (x + side * reach, ly + size * 0.1)],
                            fill=(255, 236, 160, 60))
        glow(cv, x, ly, size * 0.05, (255, 230, 150), rings=3, alpha=60)


def tower(cv: Canvas, x: float, base: float, size: float) -> None:
    """An observation tower: slender shaft, a pod near the top and an antenna."""
    grey = cv.look.c((150, 150, 160))
    shaft = size * 0.07
    cv.draw.polygon([(x - shaft * 1.4, base), (x - shaft * 0.5, base - size * 0.72),
                     (x + shaft * 0.5, base - size * 0.72), (x + shaft * 1.4, base)], fill=grey)
    py = base - size * 0.72
    pod = box(x - size * 0.12, py - size * 0.06, x + size * 0.12, py + size * 0.05)
    cv.draw.ellipse(pod, fill=cv.look.c((110, 112, 126)))
    band = WINDOW_LIT if cv.look.night else cv.look.c((160, 200, 230))
    cv.draw.rectangle(box(x - size * 0.1, py - size * 0.015, x + size * 0.1, py + size * 0.015), fill=band)
    cv.draw.line((x, py - size * 0.06, x, base - size), fill=grey, width=cv.lw(size, 0.012))
    if cv.look.night:
        disc(cv, x, base - size, size * 0.01, (255, 60, 60, 255))


def castle(cv: Canvas, x: float, base: float, size: float) -> None:
    """Curtain wall with battlements, a keep, two round towers with pointed roofs and flags."""
    stone = cv.look.c((150, 146, 140))
    shade = cv.look.c((120, 116, 112))
    roof = cv.look.c(cv.look.accent_or((70, 80, 150)))
    w = size * 1.3
    wall_top = base - size * 0.45
    cv.draw.rectangle(box(x - w / 2, wall_top, x + w / 2, base), fill=stone)
    keep_w = w * 0.34
    keep_top = base - size * 0.75
    cv.draw.rectangle(box(x - keep_w / 2, keep_top, x + keep_w / 2, base), fill=shade)
    merlon = max(2.0, size * 0.05)
    for left, right, ytop in ((x - w / 2, x + w / 2, wall_top), (x - keep_w / 2, x + keep_w / 2, keep_top)):
        m = left
        while m + merlon <= right:
            cv.draw.rectangle(box(m, ytop - merlon, m + merlon, ytop), fill=stone)
            m += merlon * 2
    for side in (-1, 1):
        tx = x + side * w / 2
        tw = size * 0.2
        ttop = base - size * 0.78
        cv.draw.rectangle(box(tx - tw / 2, ttop, tx + tw / 2, base), fill=stone)
        cv.draw.polygon([(tx - tw * 0.65, ttop), (tx, ttop - size * 0.3), (tx + tw * 0.65, ttop)], fill=roof)
        fy = ttop - size * 0.3
        cv.draw.line((tx, fy, tx, fy - size * 0.1), fill=shade, width=cv.lw(size, 0.01))
        cv.draw.polygon([(tx, fy - size * 0.1), (tx + size * 0.08, fy - size * 0.075), (tx, fy - size * 0.05)],
                        fill=cv.look.c((220, 40, 40)))
        lit = WINDOW_LIT if cv.look.night else cv.look.c((40, 40, 50))
        cv.draw.rectangle(box(tx - tw * 0.12, ttop + size * 0.12, tx + tw * 0.12, ttop + size * 0.2), fill=lit)
    gate = box(x - size * 0.1, base - size * 0.26, x + size * 0.1, base)
    cv.draw.rounded_rectangle(gate, radius=size * 0.09, fill=cv.look.c((50, 40, 36)))


def bridge_arch(cv: Canvas, x0: float, x1: float, deck: float, water: float) -> None:
    """A stone bridge: a deck on arches whose feet stand in the water."""
    stone = cv.look.c((156, 140, 120))
    thick = max(2.0, (water - deck) * 0.28)
    cv.draw.rectangle(box(x0, deck - thick * 0.4, x1, deck + thick), fill=stone)
    spans = 3
    sw = (x1 - x0) / spans
    for i in range(spans):
        ax0 = x0 + i * sw
        cv.draw.rectangle(box(ax0, deck, ax0 + sw * 0.14, water), fill=stone)
        cv.draw.rectangle(box(ax0 + sw * 0.86, deck, ax0 + sw, water), fill=stone)
        cv.draw.chord(box(ax0 + sw * 0.1, deck + thick * 0.3, ax0 + sw * 0.9, deck + (water - deck) * 1.6),
                      180, 360, fill=stone)
        cv.draw.pieslice(box(ax0 + sw * 0.14, deck + thick, ax0 + sw * 0.86, water + (water - deck - thick)),
                         180, 360, fill=cv.look.c((40, 40, 50), 160))
    cv.draw.line((x0, deck - thick * 0.4, x1, deck - thick * 0.4), fill=cv.look.c((110, 100, 90)),
                 width=cv.lw(thick, 0.3))


def bridge_suspension(cv: Canvas, x0: float, x1: float, deck: float, height: float) -> None:
    """A suspension bridge: two towers, sagging main cables and hangers."""
    colour = cv.look.c(cv.look.accent_or((196, 70, 40)))
    lw = cv.lw(height, 0.03)
    cv.draw.rectangle(box(x0, deck, x1, deck + height * 0.06), fill=colour)
    towers = (x0 + (x1 - x0) * 0.25, x0 + (x1 - x0) * 0.75)
    top = deck - height
    for tx in towers:
        cv.draw.rectangle(box(tx - height * 0.04, top, tx + height * 0.04, deck + height * 0.25), fill=colour)
    segments = [(x0, deck), (towers[0], top), (towers[1], top), (x1, deck)]
    for (ax, ay), (bx, by) in itertools.pairwise(segments):
        pts = []
        for i in range(13):
            t = i / 12
            sag = (deck - top) * 0.75 * math.sin(math.pi * t) if ay == by else 0.0
            pts.append((ax + (bx - ax) * t, ay + (by - ay) * t + sag))
        cv.draw.line(pts, fill=colour, width=lw, joint="curve")
        for px, py in pts[1:-1]:
            cv.draw.line((px, py, px, deck), fill=colour, width=max(1, lw // 3))


def car(cv: Canvas, x: float, base: float, size: float) -> None:
    """A small car in profile: body, cabin with windows, two wheels; headlights at night."""
    body = cv.look.c(cv.look.accent_or((200, 40, 40)))
    length = size * 2.4
    wheel = size * 0.22
    cv.draw.rounded_rectangle(box(x - length / 2, base - size * 0.6, x + length / 2, base - wheel * 0.9),
                              radius=size * 0.14, fill=body)
    cv.draw.polygon([(x - length * 0.3, base - size * 0.58), (x - length * 0.18, base - size),
                     (x + length * 0.14, base - size), (x + length * 0.3, base - size * 0.58)], fill=body)
    glass = cv.look.c((150, 200, 230)) if not cv.look.night else (40, 50, 70, 255)
    cv.draw.polygon([(x - length * 0.25, base - size * 0.6), (x - length * 0.16, base - size * 0.92),
                     (x - length * 0.02, base - size * 0.92), (x - length * 0.02, base - size * 0.6)], fill=glass)
    cv.draw.polygon([(x + length * 0.02, base - size * 0.6), (x + length * 0.02, base - size * 0.92),
                     (x + length * 0.12, base - size * 0.92), (x + length * 0.25, base - size * 0.6)], fill=glass)
    for wx in (x - length * 0.3, x + length * 0.3):
        disc(cv, wx, base - wheel, wheel, (30, 30, 34, 255))
        disc(cv, wx, base - wheel, wheel * 0.45, cv.look.c((170, 170, 176)))
    if cv.look.night:
        hx = x + length / 2
        cv.draw.polygon([(hx, base - size * 0.42), (hx + length * 0.8, base - size * 0.7), (hx + length * 0.8, base)],
                        fill=(255, 240, 180, 60))
        disc(cv, hx, base - size * 0.42, size * 0.07, (255, 244, 200, 255))

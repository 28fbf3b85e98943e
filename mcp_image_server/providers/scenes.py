"""Prompt words to a composed scene for the ``local`` renderer: sky, horizon, ground, subjects.

``parse`` reads the prompt into a ``Scene`` (subjects in prompt order with counts, time of
day, weather, colour and mood words); ``compose`` lays it out back to front: sky and
light, sky objects, far background on the horizon, ground or water, then subjects at a
depth and scale that suit them, then weather. Layout depends only on the structural words
and the seed, so a colour word ("a red lighthouse") recolours without moving anything.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field
from typing import Final

from PIL import Image, ImageDraw

from . import buildings, shapes
from .shapes import RGB, Canvas, Look

__all__ = ["NOUNS", "TIMES", "WEATHER", "Scene", "compose", "parse"]

_CANON: Final = (
    "lighthouse", "mountain", "hill", "snow", "sea", "beach", "city", "skyline", "tower", "house", "tree",
    "palm", "forest", "flower", "moon", "sun", "stars", "cloud", "rain", "boat", "bridge", "road", "car",
    "cat", "dog", "bird", "fish", "planet", "rocket", "castle", "desert", "cactus", "river", "space",
)
_SYNONYMS: Final[dict[str, str]] = {
    "ocean": "sea", "lake": "sea", "wave": "sea", "coast": "sea", "coastal": "sea", "seaside": "sea",
    "harbor": "sea", "harbour": "sea", "bay": "sea", "shore": "beach", "sand": "beach", "sandy": "beach",
    "building": "city", "skyscraper": "city", "downtown": "city", "town": "city", "metropolis": "city",
    "urban": "city", "street": "city", "cityscape": "city", "spire": "tower", "home": "house", "cottage": "house",
    "cabin": "house", "hut": "house", "village": "house", "farmhouse": "house", "oak": "tree", "pine": "tree",
    "woods": "forest", "woodland": "forest", "jungle": "forest", "flower": "flower", "blossom": "flower",
    "tulip": "flower", "daisy": "flower", "garden": "flower", "meadow": "flower", "floral": "flower",
    "moonlight": "moon", "moonlit": "moon", "crescent": "moon", "sunny": "sun", "sunshine": "sun", "star": "stars",
    "starry": "stars", "constellation": "stars", "ship": "boat", "sailboat": "boat", "yacht": "boat",
    "sailing": "boat", "ferry": "boat", "highway": "road", "path": "road", "lane": "road", "taxi": "car",
    "vehicle": "car", "kitten": "cat", "kitty": "cat", "puppy": "dog", "hound": "dog", "seagull": "bird",
    "gull": "bird", "eagle": "bird", "crow": "bird", "flock": "bird", "goldfish": "fish", "whale": "fish",
    "saturn": "planet", "jupiter": "planet", "mars": "planet", "spaceship": "rocket", "spacecraft": "rocket",
    "shuttle": "rocket", "palace": "castle", "fortress": "castle", "fort": "castle", "kingdom": "castle",
    "dune": "desert", "sahara": "desert", "stream": "river", "creek": "river", "brook": "river",
    "peak": "mountain", "alps": "mountain", "volcano": "mountain", "galaxy": "space", "cosmos": "space",
    "universe": "space", "snowy": "snow", "winter": "snow", "snowfall": "snow", "snowflake": "snow",
    "snowing": "snow", "blizzard": "snow", "rainy": "rain", "raining": "rain", "drizzle": "rain",
    "downpour": "rain", "rainfall": "rain", "palms": "palm", "cacti": "cactus",
}
NOUNS: Final[dict[str, str]] = {**{c: c for c in _CANON}, **_SYNONYMS}
"""Every noun (singular; plurals are folded) and what it draws."""

TIMES: Final[dict[str, str]] = {
    "dawn": "dawn", "daybreak": "dawn", "sunrise": "sunrise", "morning": "sunrise", "day": "day",
    "daytime": "day", "noon": "day", "midday": "day", "afternoon": "day", "dusk": "dusk", "twilight": "dusk",
    "evening": "dusk", "sunset": "sunset", "night": "night", "midnight": "night", "nighttime": "night",
}
WEATHER: Final[dict[str, str]] = {
    "rain": "rain", "rainy": "rain", "raining": "rain", "drizzle": "rain", "downpour": "rain", "rainfall": "rain",
    "snow": "snow", "snowy": "snow", "snowing": "snow", "snowfall": "snow", "blizzard": "snow", "winter": "snow",
    "snowflake": "snow", "fog": "fog", "foggy": "fog", "mist": "fog", "misty": "fog", "haze": "fog",
    "hazy": "fog", "storm": "storm", "stormy": "storm", "thunder": "storm", "thunderstorm": "storm",
    "lightning": "storm", "cloudy": "cloudy", "overcast": "cloudy", "gloomy": "cloudy",
}
COLOURS: Final[dict[str, RGB]] = {
    "red": (210, 40, 44), "crimson": (170, 20, 50), "orange": (240, 130, 30), "gold": (230, 180, 40),
    "golden": (230, 180, 40), "yellow": (245, 210, 40), "lime": (150, 210, 50), "green": (50, 150, 60),
    "teal": (30, 140, 140), "cyan": (40, 200, 220), "blue": (40, 90, 210), "navy": (20, 30, 100),
    "indigo": (70, 40, 160), "purple": (130, 50, 170), "violet": (140, 80, 210), "magenta": (210, 40, 170),
    "pink": (240, 120, 170), "black": (28, 28, 32), "white": (244, 244, 240), "gray": (130, 130, 136), "grey": (130, 130, 136),
    "brown": (120, 76, 44), "silver": (190, 194, 200), "ginger": (220, 120, 40),
}
_MOODS: Final[dict[str, tuple[float, float]]] = {  # word -> (saturation, brightness) multipliers
    "dark": (0.9, 0.6), "moody": (0.7, 0.75), "pastel": (0.5, 1.15), "bright": (1.2, 1.1), "vivid": (1.35, 1.05),
    "muted": (0.55, 0.95), "gloomy": (0.6, 0.8),
}
_NUMBERS: Final = {"two": 2, "three": 3, "four": 4, "five": 5, "several": 4, "many": 6, "some": 3, "few": 3}
_PLURAL_COUNT: Final = 3
_COLLECTIVE: Final = frozenset({"village", "flock", "meadow", "garden", "constellation"})  # singular, yet several
_WORD_RE: Final = re.compile(r"[a-z]+")
_CAPTION_RE: Final = re.compile(r'"[^"]{1,80}"|“[^”]{1,80}”')

# time -> (sky top, sky at horizon, light, light tint, tint amount)
_SKIES: Final[dict[str, tuple[RGB, RGB, float, RGB, float]]] = {
    "dawn": ((38, 48, 104), (236, 164, 150), 0.72, (230, 160, 170), 0.22),
    "sunrise": ((80, 120, 196), (255, 196, 120), 0.88, (255, 190, 120), 0.18),
    "day": ((58, 124, 214), (176, 214, 246), 1.0, (255, 255, 255), 0.0),
    "sunset": ((70, 58, 138), (255, 142, 66), 0.78, (255, 130, 70), 0.26),
    "dusk": ((24, 26, 72), (196, 104, 118), 0.5, (120, 80, 150), 0.3),
    "night": ((6, 8, 26), (30, 40, 80), 0.32, (50, 70, 140), 0.35),
}
_LAND: Final = {"grass": (96, 150, 70), "sand": (228, 196, 140), "snow": (236, 240, 246), "rock": (96, 92, 96)}
_WATER: Final = (40, 100, 160)
_LAND_SUBJECTS: Final = frozenset({"house", "tree", "palm", "forest", "flower", "road", "car", "cat", "dog",
                                   "castle", "desert", "cactus", "river", "tower", "bridge", "hill"})


@dataclass(frozen=True, slots=True)
class Scene:
    """What the prompt asks to be drawn; ``key`` holds only the words that move things."""

    subjects: dict[str, int] = field(default_factory=dict)  # canonical noun -> count, prompt order
    time: str = "day"
    weather: frozenset[str] = frozenset()
    accent: RGB | None = None
    mood: tuple[float, float] = (1.0, 1.0)
    key: str = ""

    def has(self, *names: str) -> bool:
        return any(n in self.subjects for n in names)


def _noun(word: str) -> tuple[str, bool] | None:
    """The canonical noun for ``word`` and whether it was plural (cats, cities, beaches)."""
    if word in NOUNS:
        return NOUNS[word], word in ("stars", "woods", "alps")
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", "")):
        stem = word[: -len(suffix)] + repl
        if word.endswith(suffix) and stem in NOUNS:
            return NOUNS[stem], True
    return None


def parse(prompt: str) -> Scene:
    """Read subjects, counts, time, weather, colour and mood words (the caption is not read)."""
    words = _WORD_RE.findall(_CAPTION_RE.sub(" ", prompt.lower()))
    subjects: dict[str, int] = {}
    times: list[str] = []
    weather: set[str] = set()
    accent: RGB | None = None
    mood = (1.0, 1.0)
    structural: list[str] = []
    for i, word in enumerate(words):
        if word in TIMES:
            times.append(TIMES[word])
        if word in WEATHER:
            weather.add(WEATHER[word])
        if word in COLOURS and accent is None:
            accent = COLOURS[word]
        if word in _MOODS:
            mood = _MOODS[word]
        found = _noun(word)
        if found is not None:
            name, plural = found
            plural = plural or word in _COLLECTIVE
            count = _NUMBERS.get(words[i - 1], 0) if i else 0
            subjects[name] = max(subjects.get(name, 1), count or (_PLURAL_COUNT if plural else 1))
        if word not in COLOURS and word not in _MOODS:
            structural.append(word)
    if "storm" in weather:
        weather.add("rain")
    if "rain" in subjects:
        weather.add("rain")
    if "snow" in subjects:
        weather.add("snow")
    if "sunset" in times or "sunrise" in times:
        subjects.setdefault("sun", 1)
    time = times[0] if times else "night" if {"neon", "cyberpunk"} & set(words) else _default_time(subjects)
    return Scene(subjects, time, frozenset(weather), accent, mood, " ".join(structural))


def _default_time(subjects: dict[str, int]) -> str:
    """Stars, moon or space with no time word mean night; otherwise it is day."""
    if "sun" not in subjects and any(s in subjects for s in ("stars", "moon", "space", "planet")):
        return "night"
    return "day"


def _look(scene: Scene) -> Look:
    _, _, light, tint, amount = _SKIES[scene.time]
    if scene.weather & {"storm"}:
        light *= 0.62
    elif scene.weather & {"rain", "cloudy"}:
        light *= 0.82
    sat, val = scene.mood
    return Look(light=light * val, tint=tint, tint_amount=amount, accent=scene.accent,
                night=scene.time in ("night", "dusk") or "storm" in scene.weather, saturation=sat,
                snow="snow" in scene.weather)


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (int(a[0] + (b[0] - a[0]) * t), int(a[1] + (b[1] - a[1]) * t), int(a[2] + (b[2] - a[2]) * t))


def _sky_colours(scene: Scene, space: bool) -> tuple[RGB, RGB]:
    top, bottom, *_ = _SKIES[scene.time]
    if space:
        top, bottom = (4, 4, 16), (30, 20, 60)
    if "storm" in scene.weather:
        top, bottom = _mix(top, (50, 54, 64), 0.75), _mix(bottom, (90, 94, 104), 0.7)
    elif scene.weather & {"rain", "cloudy"}:
        top, bottom = _mix(top, (120, 126, 138), 0.6), _mix(bottom, (170, 174, 182), 0.55)
    elif "snow" in scene.weather:
        top, bottom = _mix(top, (190, 196, 210), 0.35), _mix(bottom, (220, 224, 232), 0.4)
    if scene.accent is not None and max(scene.accent) - min(scene.accent) > 100:  # hues tint; black does not
        top, bottom = _mix(top, scene.accent, 0.15), _mix(bottom, scene.accent, 0.22)
    sat, val = scene.mood
    return _graded(top, sat, val), _graded(bottom, sat, val)


def _graded(rgb: RGB, sat: float, val: float) -> RGB:
    grey = sum(rgb) / 3
    return tuple(max(0, min(255, int((grey + (v - grey) * sat) * val))) for v in rgb)  # type: ignore[return-value]


def _vertical(size: tuple[int, int], top: RGB, bottom: RGB) -> Image.Image:
    mask = Image.linear_gradient("L").resize(size)
    return Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), mask)


@dataclass(slots=True)
class _Layout:
    """Where the horizon, shoreline, river and road are, so subjects can avoid them."""

    horizon: float
    shore: float | None = None  # water between horizon and shore when there is a sea
    river: tuple[float, float, float, float] | None = None  # x centre at horizon/bottom, width at horizon/bottom
    road: bool = False
    blocked: list[tuple[float, float]] = field(default_factory=list)

    def river_at(self, y: float, h: float) -> tuple[float, float]:
        assert self.river is not None
        c0, c1, w0, w1 = self.river
        t = max(0.0, min(1.0, (y - self.horizon) / max(1.0, h - self.horizon)))
        c = c0 + (c1 - c0) * t + math.sin(t * 5.0) * 0.04
        half = (w0 + (w1 - w0) * t) / 2
        return c - half, c + half


def _free(lay: _Layout, fx: float, y: float, h: float) -> bool:
    """Whether ``fx`` (a fraction of width) at height ``y`` is clear of the river and road."""
    if lay.river is not None:
        lo, hi = lay.river_at(y, h)
        if lo - 0.05 < fx < hi + 0.05:
            return False
    t = (y - lay.horizon) / max(1.0, h - lay.horizon)
    return not (lay.road and abs(fx - 0.5) < 0.06 + 0.3 * t) and 0.05 < fx < 0.95


def _spread(n: int, lay: _Layout, y: float, h: float, rng: random.Random) -> list[float]:
    """``n`` x positions (fractions of width) spread over the ground not taken by river or road."""
    blocked = list(lay.blocked)
    if lay.river is not None:
        lo, hi = lay.river_at(y, h)
        blocked.append((lo - 0.04, hi + 0.04))
    if lay.road:
        t = (y - lay.horizon) / max(1.0, h - lay.horizon)
        blocked.append((0.5 - 0.04 - 0.3 * t, 0.5 + 0.04 + 0.3 * t))
    segments = [(0.08, 0.92)]
    for b0, b1 in blocked:
        nxt = []
        for s0, s1 in segments:
            if b1 <= s0 or b0 >= s1:
                nxt.append((s0, s1))
                continue
            if b0 > s0:
                nxt.append((s0, b0))
            if b1 < s1:
                nxt.append((b1, s1))
        segments = nxt or [(0.05, 0.2)]
    total = sum(s1 - s0 for s0, s1 in segments)
    out = []
    for i in range(n):
        t = (i + 0.5 + rng.uniform(-0.25, 0.25)) / n * total
        for s0, s1 in segments:
            if t <= s1 - s0:
                out.append(s0 + t)
                break
            t -= s1 - s0
        else:
            out.append(segments[-1][1])
    return out


def compose(img: Image.Image, scene: Scene, rng: random.Random) -> Image.Image:
    """Draw ``scene`` over all of ``img`` (its size sets the scale) and return the image."""
    w, h = img.size
    subj = scene.subjects
    space = scene.has("space", "planet") and not (subj.keys() & _LAND_SUBJECTS) and not scene.has("sea")
    sea = scene.has("sea", "beach", "lighthouse") or (scene.has("boat", "fish") and not scene.has("river"))
    lay = _Layout(horizon=h * (0.55 if sea else 0.62))
    if space:
        lay.horizon = h * (1.0 if not scene.has("rocket") else 0.86)
    if sea and (subj.keys() & _LAND_SUBJECTS or scene.has("beach")):
        lay.shore = h * 0.78
    if scene.has("river") or (scene.has("bridge") and not sea):
        lay.river = (rng.uniform(0.45, 0.6), rng.uniform(0.55, 0.75), 0.03, 0.42)
    lay.road = scene.has("road", "car") and not space
    top, bottom = _sky_colours(scene, space)
    img.paste(_vertical((w, max(1, int(lay.horizon))), top, bottom), (0, 0))
    cv = Canvas(img, ImageDraw.Draw(img, "RGBA"), _look(scene), rng)
    _sky(cv, scene, lay, space)
    _background(cv, scene, lay, sea)
    _ground(cv, scene, lay, sea)
    _subjects(cv, scene, lay, sea)
    _weather(cv, scene, lay)
    return cv.img


def _sky(cv: Canvas, scene: Scene, lay: _Layout, space: bool) -> None:
    w, h, hz = cv.w, cv.h, lay.horizon
    rng, t = cv.rng, scene.time
    clear = not (scene.weather & {"storm", "rain", "cloudy", "fog"})
    if t == "night" or space:
        cv_stars = int(w * h / (2200 if clear else 9000))
        shapes.stars(cv, cv_stars, hz * 0.95)
    elif t == "dusk":
        shapes.stars(cv, int(w * h / 14000), hz * 0.5, alpha=150)
    r = min(w, h) * 0.07
    sun_at = {"dawn": (0.22, hz - r * 0.6), "sunrise": (0.26, hz - r * 1.6), "day": (0.78, h * 0.16),
              "sunset": (0.72, hz - r * 1.2), "dusk": (0.7, hz + r * 0.4)}
    if t in sun_at and (clear or scene.has("sun")) and not space:
        fx, sy = sun_at[t]
        colour = {"dawn": (255, 214, 170), "sunrise": (255, 200, 90), "day": (255, 246, 210),
                  "sunset": (255, 120, 50), "dusk": (255, 110, 80)}[t]
        big = 1.35 if scene.has("desert") or t in ("sunset", "sunrise") else 1.0
        shapes.sun(cv, w * fx, sy, r * big, colour)
    if (t in ("night", "dusk") and not space) or scene.has("moon"):
        pale = t not in ("night", "dusk")
        shapes.moon(cv, w * (0.22 if t in ("day", "dusk", "sunset") else 0.76), h * 0.17, r * 0.85, pale=pale)
    if scene.has("planet"):
        count = scene.subjects["planet"]
        for i in range(count):
            pr = min(w, h) * (0.16 if i == 0 else 0.06)
            shapes.planet(cv, w * (0.35 + 0.45 * i / max(1, count)), h * (0.38 if space else 0.24) - i * h * 0.1, pr)
    clouds = scene.subjects.get("cloud", 0) * 2 + (7 if scene.weather & {"cloudy", "rain", "storm"} else 0)
    if clouds:
        dark = "storm" in scene.weather or "rain" in scene.weather
        tone = (110, 112, 122) if dark else (250, 250, 252)
        for i in range(clouds):
            cx = w * ((i + rng.uniform(0.1, 0.9)) / clouds)
            shapes.cloud(cv, cx, h * rng.uniform(0.08, 0.3), min(w, h) * rng.uniform(0.12, 0.2), tone,
                         alpha=235 if dark else 225)
    if "bird" in scene.subjects:
        n = scene.subjects["bird"]
        size = h * (0.045 if n == 1 else 0.028)
        for _ in range(n if n == 1 else n * 2):
            shapes.bird(cv, w * rng.uniform(0.15, 0.85), h * rng.uniform(0.12, 0.35), size * rng.uniform(0.7, 1.2))


def _background(cv: Canvas, scene: Scene, lay: _Layout, sea: bool) -> None:
    w, h, hz = cv.w, cv.h, lay.horizon
    snow = "snow" in scene.weather
    if scene.has("mountain"):
        shapes.peaks(cv, hz, h * 0.36, (120, 134, 168), snow, 5)
        shapes.peaks(cv, hz, h * 0.22, (78, 88, 110), snow, 4)
    elif scene.has("hill") or (not scene.subjects and not sea):
        shapes.hills(cv, hz, h * 0.08, (110, 160, 84) if not snow else (230, 234, 242))
    if scene.has("desert") and not sea:
        shapes.hills(cv, hz, h * 0.05, (214, 176, 118))
    if scene.has("city", "skyline"):
        buildings.skyline(cv, hz + 1, h * (0.3 if not sea else 0.22))
    if scene.has("forest"):
        n = int(w / (h * 0.05)) + 1
        for i in range(n):
            shapes.tree(cv, w * (i + cv.rng.uniform(0, 0.8)) / n, hz + h * 0.02, h * cv.rng.uniform(0.1, 0.16), "pine")


def _ground(cv: Canvas, scene: Scene, lay: _Layout, sea: bool) -> None:
    w, h, hz = cv.w, cv.h, lay.horizon
    snow = "snow" in scene.weather
    if hz >= h:
        return
    land = _LAND["snow"] if snow else _LAND["sand"] if scene.has("desert") else _LAND["grass"]
    if sea:
        cv.draw.rectangle((0, hz, w, h), fill=cv.look.c(_WATER))
        shimmer = cv.look.c((200, 224, 240), 110)
        for i in range(int(18 * h / 512) + 6):
            y = hz + (h - hz) * ((i + cv.rng.random()) / (int(18 * h / 512) + 6)) ** 1.4
            x = cv.rng.uniform(-0.1, 0.9) * w
            cv.draw.line((x, y, x + w * cv.rng.uniform(0.04, 0.16) * (y - hz) / (h - hz + 1) + 2, y), fill=shimmer,
                         width=max(1, int(h / 400)))
        if lay.shore is not None:
            shore_land = _LAND["sand"] if scene.has("beach") and not snow else land
            pts = [(0.0, float(h))]
            for i in range(13):
                pts.append((w * i / 12, lay.shore + math.sin(i * 1.3 + cv.rng.random()) * h * 0.015))
            pts.append((float(w), float(h)))
            cv.draw.polygon(pts, fill=cv.look.c(shore_land))
            cv.draw.line(pts[1:-1], fill=cv.look.c((246, 250, 252), 200), width=max(1, int(h / 150)))
    else:
        cv.draw.rectangle((0, hz, w, h), fill=cv.look.c(land))
        cv.draw.rectangle((0, hz, w, hz + (h - hz) * 0.12), fill=cv.look.c(tuple(int(v * 0.9) for v in land)))  # type: ignore[arg-type]
    if lay.river is not None:
        left, right = [], []
        for i in range(17):
            y = hz + (h - hz) * i / 16
            lo, hi = lay.river_at(y, h)
            left.append((lo * w, y))
            right.append((hi * w, y))
        cv.draw.polygon(left + right[::-1], fill=cv.look.c((60, 120, 180) if not snow else (120, 160, 200)))
    if lay.road:
        cv.draw.polygon([(w * 0.48, hz), (w * 0.52, hz), (w * 0.85, h), (w * 0.15, h)], fill=cv.look.c((70, 70, 76)))
        for i in range(8):
            t0, t1 = (i / 8) ** 1.6, ((i + 0.5) / 8) ** 1.6
            half0, half1 = 0.003 + 0.01 * t0, 0.003 + 0.01 * t1
            y0, y1 = hz + (h - hz) * t0, hz + (h - hz) * t1
            cv.draw.polygon([(w * (0.5 - half0), y0), (w * (0.5 + half0), y0), (w * (0.5 + half1), y1),
                             (w * (0.5 - half1), y1)], fill=cv.look.c((240, 230, 170)))
    if scene.has("desert"):
        for i in range(3):
            y = hz + (h - hz) * (0.25 + 0.25 * i)
            cv.draw.arc(shapes.box(w * (-0.2 + 0.35 * i), y - h * 0.04, w * (0.6 + 0.35 * i), y + h * 0.1), 200, 340,
                        fill=cv.look.c((200, 160, 100)), width=max(1, int(h / 220)))


def _subjects(cv: Canvas, scene: Scene, lay: _Layout, sea: bool) -> None:
    """Midground then foreground: things further back are drawn first and smaller."""
    w, h, hz = cv.w, cv.h, lay.horizon
    rng, subj = cv.rng, scene.subjects
    water_bottom = lay.shore if lay.shore is not None else h
    land_top = lay.shore if lay.shore is not None else hz
    if scene.has("bridge"):
        if lay.river is not None:
            y = hz + (h - hz) * 0.3
            lo, hi = lay.river_at(y, h)
            buildings.bridge_arch(cv, (lo - 0.08) * w, (hi + 0.08) * w, y - h * 0.05, y + h * 0.02)
        else:
            buildings.bridge_suspension(cv, -w * 0.05, w * 1.05, hz + (water_bottom - hz) * 0.25, h * 0.2)
    if scene.has("castle"):
        x = w * (_spread(1, lay, hz + h * 0.02, h, rng)[0] if lay.river or lay.road else rng.uniform(0.3, 0.7))
        cv.draw.ellipse(shapes.box(x - h * 0.4, hz - h * 0.05, x + h * 0.4, hz + h * 0.12),
                        fill=cv.look.c(_LAND["snow"] if "snow" in scene.weather else (86, 136, 64)))
        buildings.castle(cv, x, hz + h * 0.01, h * 0.28)
    if sea:
        boats = subj.get("boat", 0)
        for i, fx in enumerate(_spread(boats, _Layout(hz), hz, h, rng) if boats else []):
            depth = (0.25 + 0.5 * ((i * 0.37) % 1)) if boats > 1 else 0.5
            y = hz + (water_bottom - hz) * depth
            shapes.boat(cv, fx * w, y, h * (0.06 + 0.12 * depth))
        fish_n = subj.get("fish", 0)
        for i in range(fish_n):
            y = hz + (water_bottom - hz) * (0.55 + 0.3 * (i % 2))
            shapes.fish(cv, w * (0.3 + 0.4 * i / max(1, fish_n)), y, h * (0.2 if fish_n == 1 else 0.12))
    elif lay.river is not None:
        for i in range(subj.get("boat", 0)):
            y = hz + (h - hz) * (0.4 + 0.2 * i)
            lo, hi = lay.river_at(y, h)
            shapes.boat(cv, w * (lo + hi) / 2, y, h * 0.1)
        for i in range(subj.get("fish", 0)):
            y = hz + (h - hz) * (0.65 + 0.1 * i)
            lo, hi = lay.river_at(y, h)
            shapes.fish(cv, w * (lo + (hi - lo) * (0.35 + 0.3 * (i % 2))), y, h * 0.1)
    standing = [n for n in subj if n in ("lighthouse", "tower", "house", "tree", "palm", "cactus")]
    slots: list[tuple[str, int]] = [(n, k) for n in standing for k in range(subj[n])]
    base_y = (land_top + (h - land_top) * 0.35) if lay.shore is not None else hz + (h - hz) * 0.42
    anchors: list[float] = []
    xs = _spread(len(slots), lay, base_y, h, rng) if slots else []
    for (name, k), fx in sorted(zip(slots, xs, strict=True), key=lambda s: s[0][1]):
        x = fx * w
        anchors.append(x)
        y = base_y + (h * 0.04 * k if k else 0.0)
        if name == "lighthouse":
            if lay.shore is None:  # a rocky islet in the sea
                y = hz + (h - hz) * 0.45
            rock = [(x - h * 0.14, y + h * 0.03), (x - h * 0.08, y - h * 0.02), (x + h * 0.07, y - h * 0.015),
                    (x + h * 0.15, y + h * 0.03)]
            cv.draw.polygon(rock, fill=cv.look.c(_LAND["rock"]))
            beam = scene.time in ("dusk", "night", "sunset") or bool(scene.weather & {"storm", "fog"})
            buildings.lighthouse(cv, x, y, h * 0.5, beam)
        elif name == "tower":
            buildings.tower(cv, x, y, h * 0.55)
        elif name == "house":
            buildings.house(cv, x, y, h * (0.18 if k == 0 else 0.14))
        elif name == "cactus":
            shapes.cactus(cv, x, y, h * 0.2)
        else:
            kind = "palm" if name == "palm" or scene.has("beach", "desert") else (
                "pine" if "snow" in scene.weather else "round")
            shapes.tree(cv, x, y + h * 0.02, h * (0.34 if k == 0 else 0.28), kind)
    if scene.has("desert") and not scene.has("cactus"):
        for fx in _spread(2, lay, base_y, h, rng):
            shapes.cactus(cv, fx * w, base_y + h * 0.06, h * 0.12)
    if scene.has("rocket"):
        shapes.rocket(cv, w * 0.62, h * 0.3, h * 0.32)
    _foreground(cv, scene, lay, anchors)


def _foreground(cv: Canvas, scene: Scene, lay: _Layout, anchors: list[float]) -> None:
    """Cars on the road, animals beside the first standing subjects, flowers in front."""
    w, h = cv.w, cv.h
    rng, subj = cv.rng, scene.subjects
    for i in range(subj.get("car", 0)):
        y = lay.horizon + (h - lay.horizon) * (0.82 - 0.25 * i)
        t = (y - lay.horizon) / (h - lay.horizon)
        buildings.car(cv, w * (0.5 + (0.08 + 0.1 * t) * (-1 if i % 2 else 1)), y, h * (0.03 + 0.09 * t))
    if "flower" in subj:
        n = 5 * subj["flower"] + 3
        for i in range(n):
            fy = h * (0.88 + 0.1 * rng.random())
            fx = _spread(1, lay, fy, h, rng)[0] if (lay.river or lay.road) else (i + rng.random()) / n
            shapes.flower(cv, fx * w, fy, h * rng.uniform(0.07, 0.11))
    animals = [(n, k) for n in subj if n in ("cat", "dog") for k in range(subj[n])]
    base = h * 0.95
    xs = _spread(len(animals), lay, base, h, rng) if animals else []
    for i, ((name, _), fx) in enumerate(zip(animals, xs, strict=True)):
        x = fx * w
        if i < len(anchors):  # beside a tree or house, on the side that is dry ground
            sides = [anchors[i] + d * h * 0.12 for d in (1, -1)]
            x = next((s for s in sides if _free(lay, s / w, base, h)), x)
        x = min(max(x, h * 0.15), w - h * 0.15)
        hero = 1.7 if len(animals) == 1 and not anchors else 1.0  # a lone animal is the picture
        (shapes.cat if name == "cat" else shapes.dog)(cv, x, base, h * 0.2 * hero)


def _weather(cv: Canvas, scene: Scene, lay: _Layout) -> None:
    w, h, rng = cv.w, cv.h, cv.rng
    if "fog" in scene.weather:
        profile = [int(150 * math.exp(-(((y - lay.horizon) / (h * 0.28)) ** 2))) + 30 for y in range(h)]
        mask = Image.new("L", (1, h))
        mask.putdata(profile)
        fog = Image.new("RGB", (w, h), shapes.Look.c(cv.look, (226, 230, 236))[:3])
        cv.img.paste(Image.composite(fog, cv.img, mask.resize((w, h))), (0, 0))
        cv.draw = ImageDraw.Draw(cv.img, "RGBA")
    if "storm" in scene.weather:
        shapes.lightning(cv, w * rng.uniform(0.2, 0.8), h * 0.22, lay.horizon * 0.95)
    if "rain" in scene.weather:
        length, lw = h * 0.045, max(1, int(h / 500))
        for _ in range(int(w * h / 3500)):
            x, y = rng.uniform(-0.05, 1.05) * w, rng.uniform(0, 1) * h
            cv.draw.line((x, y, x - length * 0.25, y + length), fill=(210, 220, 236, 120), width=lw)
    if "snow" in scene.weather:
        for _ in range(int(w * h / 3000)):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            shapes.disc(cv, x, y, max(1.0, h / 400) * rng.uniform(0.6, 1.6), (255, 255, 255, rng.randint(160, 240)))

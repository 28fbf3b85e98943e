"""The ``local`` renderer draws what the prompt names: subjects, time of day, weather.

Structure is compared through edge maps (where the shapes' outlines are), so a test can
tell "a different picture" from "the same picture in other colours".
"""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops, ImageFilter, ImageOps, ImageStat

from mcp_image_server.providers import scenes
from mcp_image_server.providers.procedural import render

SIZE = 128


def _image(prompt: str, style: str = "landscape", seed: int = 5, size: int = SIZE) -> Image.Image:
    return Image.open(io.BytesIO(render(prompt, style, size, size, seed, "png"))).convert("RGB")


def _edges(prompt: str, style: str = "landscape") -> Image.Image:
    """Binary outline map, thickened by a pixel so a one-pixel shift is not a difference."""
    grey = _image(prompt, style).convert("L")
    edges = grey.filter(ImageFilter.FIND_EDGES).point(lambda v: 255 if v > 24 else 0)
    return edges.filter(ImageFilter.MaxFilter(3)).crop((1, 1, SIZE - 1, SIZE - 1)).convert("1")


def _structure_distance(a: str, b: str, style: str = "landscape") -> float:
    """1 - Jaccard overlap of the two outline maps: 0 is the same drawing, 1 nothing in common."""
    ea, eb = _edges(a, style), _edges(b, style)
    inter = ImageStat.Stat(ImageChops.logical_and(ea, eb).convert("L")).sum[0]
    union = ImageStat.Stat(ImageChops.logical_or(ea, eb).convert("L")).sum[0]
    return 1.0 - inter / union if union else 0.0


def _mean(img: Image.Image, top: float, bottom: float) -> tuple[float, ...]:
    """Mean RGB of the horizontal band between fractions ``top`` and ``bottom`` of the height."""
    band = img.crop((0, int(img.height * top), img.width, int(img.height * bottom)))
    return tuple(ImageStat.Stat(band).mean)


def _brightness(img: Image.Image, top: float, bottom: float) -> float:
    return sum(_mean(img, top, bottom)) / 3


@pytest.mark.parametrize(("a", "b"), [("a lighthouse", "a cat"), ("a lighthouse", "a car"), ("a cat", "a car"),
                                      ("a castle", "a rocket"), ("a house", "a boat")])
def test_different_subjects_give_different_compositions(a: str, b: str) -> None:
    assert _structure_distance(a, b) > 0.3


@pytest.mark.parametrize("noun", ["lighthouse", "car", "cat"])
def test_a_colour_word_recolours_without_recomposing(noun: str) -> None:
    recoloured = _structure_distance(f"a red {noun}", f"a blue {noun}")
    changed_subject = _structure_distance(f"a red {noun}", "a red boat")
    assert _image(f"a red {noun}") != _image(f"a blue {noun}")
    assert recoloured < 0.15 and changed_subject > 3 * recoloured


def test_several_subjects_appear_together() -> None:
    scene = scenes.parse("a cat under a tree by a river")
    assert {"cat", "tree", "river"} <= scene.subjects.keys()
    both = _edges("a cat under a tree by a river")
    for part in ("a tree by a river", "a cat by a river", "a cat under a tree"):
        assert _structure_distance("a cat under a tree by a river", part) > 0.1, part
    assert ImageStat.Stat(both.convert("L")).mean[0] > 0


@pytest.mark.parametrize(
    ("word", "canonical"),
    [("lighthouses", "lighthouse"), ("mountains", "mountain"), ("cities", "city"), ("beaches", "beach"),
     ("ocean", "sea"), ("buildings", "city"), ("ships", "boat"), ("kitten", "cat"), ("puppies", "dog"),
     ("stars", "stars"), ("skyscrapers", "city"), ("woods", "forest"), ("flowers", "flower"), ("fish", "fish")],
)
def test_plurals_and_synonyms_fold_to_one_subject(word: str, canonical: str) -> None:
    assert canonical in scenes.parse(f"some {word} here").subjects


def test_plurals_and_number_words_draw_several() -> None:
    assert scenes.parse("a boat").subjects["boat"] == 1
    assert scenes.parse("boats").subjects["boat"] > 1
    assert scenes.parse("two cats").subjects["cat"] == 2


REQUIRED = (
    "lighthouse", "mountain", "snow", "sea", "beach", "city", "skyline", "tower", "house", "tree", "forest", "flower",
    "moon", "sun", "stars", "cloud", "rain", "boat", "bridge", "road", "car", "cat", "dog", "bird", "fish", "planet",
    "rocket", "castle", "desert", "river",
)


@pytest.mark.parametrize("noun", REQUIRED)
def test_every_listed_noun_is_known_and_drawn(noun: str) -> None:
    scene = scenes.parse(f"a {noun}")
    assert noun in scene.subjects or noun in scene.weather
    assert _image(f"a {noun}", size=64) != _image("a thing", size=64)


def test_time_words_are_read_and_default_to_day() -> None:
    assert scenes.parse("a house").time == "day"
    for word, time in (("dawn", "dawn"), ("sunrise", "sunrise"), ("dusk", "dusk"), ("sunset", "sunset"),
                       ("night", "night"), ("evening", "dusk"), ("morning", "sunrise")):
        assert scenes.parse(f"a house at {word}").time == time
    assert scenes.parse("the moon and stars").time == "night"


def test_night_has_a_darker_sky_than_day_and_dusk_sits_between() -> None:
    day, dusk, night = (_brightness(_image(f"a house at {t}"), 0.0, 0.4) for t in ("noon", "dusk", "night"))
    assert night < dusk < day
    assert night < 0.4 * day


def test_sunset_glows_warm_at_the_horizon() -> None:
    r, _, b = _mean(_image("mountains at sunset"), 0.3, 0.45)
    dr, _, db = _mean(_image("mountains at noon"), 0.3, 0.45)
    assert r > b and dr < db


def _count(mask: Image.Image) -> int:
    """How many pixels of a 0/255 mask are set."""
    return mask.histogram()[255]


def test_city_windows_are_lit_at_night_only() -> None:
    def lit(img: Image.Image) -> int:
        r, g, b = img.split()
        warm = ImageChops.multiply(r.point(lambda v: 255 if v > 200 else 0), g.point(lambda v: 255 if v > 170 else 0))
        return _count(ImageChops.multiply(warm, b.point(lambda v: 255 if v < 150 else 0)))

    assert lit(_image("a city at night")) > 20
    assert lit(_image("a city at noon")) == 0


def test_stars_at_night_not_at_noon() -> None:
    def specks(img: Image.Image) -> int:
        sky = img.crop((0, 0, int(img.width * 0.6), int(img.height * 0.4))).convert("L")  # left of sun and moon
        return _count(sky.point(lambda v: 255 if v > 200 else 0))

    assert specks(_image("a road at night", size=256)) > specks(_image("a road at noon", size=256))


def test_snow_adds_white_near_the_ground() -> None:
    plain = _brightness(_image("mountains"), 0.75, 1.0)
    snowy = _brightness(_image("snowy mountains"), 0.75, 1.0)
    assert snowy > plain + 60


@pytest.mark.parametrize("weather", ["rain", "snow", "fog", "storm", "cloudy"])
def test_weather_words_change_the_picture(weather: str) -> None:
    assert weather in scenes.parse(f"a house, {weather}").weather
    assert _image(f"a house, {weather}") != _image("a house")


def test_storm_darkens_and_fog_flattens_contrast() -> None:
    assert _brightness(_image("a house in a storm"), 0, 1) < _brightness(_image("a house"), 0, 1) - 30
    assert ImageStat.Stat(_image("a castle in fog").convert("L")).stddev[0] < ImageStat.Stat(
        _image("a castle").convert("L")).stddev[0]


@pytest.mark.parametrize("style", ["landscape", "geometric", "watercolor", "pixel_art", "neon", "mosaic", "gradient"])
def test_styles_keep_the_subject(style: str) -> None:
    """Every style draws the composition: changing the subject changes the picture's light and
    shade far more than changing its colour word does (mosaic's grid hides edge maps, so this
    compares small greyscale thumbnails)."""

    def thumb(prompt: str) -> Image.Image:
        grey = _image(prompt, style).convert("L").resize((32, 32), Image.Resampling.BOX)
        return ImageOps.equalize(grey)  # light and shade, not how bright the palette is

    def apart(a: str, b: str) -> float:
        return ImageStat.Stat(ImageChops.difference(thumb(a), thumb(b))).mean[0]

    assert apart("a red lighthouse", "a red car") > 20
    assert apart("a red lighthouse", "a red car") > 3 * apart("a red lighthouse", "a blue lighthouse")


def test_the_caption_is_not_read_as_subjects() -> None:
    assert scenes.parse('a poster "CAT AND DOG"').subjects == {}

"""The web demo's edit flow in a real browser (Debian chromium via Playwright) against a real server.

Same fixtures and skips as ``test_demo_browser.py``: ``/demo/`` from a server on 127.0.0.1:0 with
the ``local`` provider (whose edit is procedural and keeps the input's shape) and a token. The
page edits an image from the gallery or an uploaded file, with the generate flow's progress,
shows before and after side by side, and puts the server's sentence in the error box when an
input is refused. All waits are Playwright's ``expect``/``wait_for_*`` with timeouts; nothing sleeps.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from PIL import Image

from .conftest import TOKEN, LiveServer, serve_live
from .test_demo_browser import ALL_LOADED, DESKTOP, PHONE, UNNAMED_CONTROLS, WAIT_MS, connect, demo_page, generate

# Before and after, each with the size the browser decoded and where it sits on the page.
COMPARE = """() => ['edit-before', 'edit-after'].map((id) => {
  const img = document.getElementById(id);
  const box = img.getBoundingClientRect();
  return { src: img.src, w: img.naturalWidth, h: img.naturalHeight, alt: img.alt, x: box.x, y: box.y,
           visible: !img.hidden && box.width > 0 };
})"""

# Every value the progress bar shows, to see it move while the call runs.
WATCH_PROGRESS = """() => {
  window.__progress = [];
  const bar = document.getElementById('progress-bar');
  new MutationObserver(() => window.__progress.push(Number(bar.getAttribute('aria-valuenow'))))
    .observe(bar, { attributes: true, attributeFilter: ['aria-valuenow'] });
}"""

BOTH_LOADED = "() => ['edit-before', 'edit-after'].every((id) => { const i = document.getElementById(id); " \
    "return !i.hidden && i.complete && i.naturalWidth > 0; })"


def png(width: int, height: int, colour: tuple[int, int, int] = (30, 120, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, "PNG")
    return buf.getvalue()


def tool_calls(bodies: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(tool, arguments) for each tools/call the page POSTed."""
    calls = []
    for body in bodies:
        try:
            message = json.loads(body)
        except ValueError:
            continue
        for m in message if isinstance(message, list) else [message]:
            if isinstance(m, dict) and m.get("method") == "tools/call":
                calls.append((m["params"]["name"], m["params"].get("arguments") or {}))
    return calls


def record_posts(page: Any, server: LiveServer) -> list[str]:
    bodies: list[str] = []
    page.on(
        "request", lambda r: bodies.append(r.post_data or "") if r.method == "POST" and r.url == server.mcp else None
    )
    return bodies


def local_size(server: LiveServer, ratio: str) -> tuple[int, int]:
    """The size the local provider's catalog gives an aspect ratio."""
    info = server.service.providers_info("local")["providers"][0]
    w, h = info["aspect_ratios"][ratio].split("x")
    return int(w), int(h)


async def test_edit_a_generated_image_shows_progress_then_before_and_after_side_by_side(
    browser: Any, live_server: LiveServer
) -> None:
    from playwright.async_api import expect

    async with demo_page(browser, live_server, viewport=DESKTOP) as (page, problems):
        bodies = record_posts(page, live_server)
        await connect(page, live_server.token)
        await generate(page, "Calm sea at sunset, pastel colours", resolution="1280x720", count="1")
        cards = page.locator("#gallery-root .g-card")
        await expect(cards).to_have_count(1)
        await page.wait_for_function(ALL_LOADED, arg="#gallery-root .g-img", timeout=WAIT_MS)
        original = await page.eval_on_selector("#gallery-root .g-img", "e => e.src")
        source_id = await cards.first.get_attribute("data-id")

        # The card's Edit button opens the edit form with that image as Before.
        await cards.first.get_by_role("button", name="Edit", exact=True).click()
        await expect(page.locator("#edit-form")).to_be_visible()
        await expect(page.locator("#generate-form")).to_be_hidden()
        await expect(page.locator("#mode-edit")).to_have_attribute("aria-pressed", "true")
        await expect(page.locator("#edit-prompt")).to_be_focused()
        await expect(page.locator("#edit-before")).to_be_visible()
        await expect(page.locator("#edit-before")).to_have_attribute("src", original)
        await expect(page.locator("#edit-source-info")).to_contain_text("From the gallery: Calm sea at sunset")
        await expect(page.locator("#edit-after-empty")).to_have_text("The edited image appears here.")
        # Only providers that can edit are offered; the aspect ratio defaults to the original's.
        await expect(page.locator("#edit-provider option")).to_have_count(1)
        await expect(page.locator("#edit-provider")).to_have_value("local")
        await expect(page.locator("#edit-aspect")).to_have_value("")
        assert await page.evaluate(UNNAMED_CONTROLS) == []

        await page.evaluate(WATCH_PROGRESS)
        await page.fill("#edit-prompt", "Make it a starry night")
        await page.click("#edit-button")
        await expect(page.locator("#progress-title")).to_have_text("Done")
        log = page.locator("#progress-log")
        await expect(log).to_contain_text("running on local")
        await expect(log).to_contain_text("rendering image 1 of 1")
        await expect(page.locator("#progress-bar")).to_have_attribute("aria-valuenow", "100")
        seen = await page.evaluate("window.__progress")
        assert any(0 < v < 100 for v in seen), seen

        # Before and after, side by side; the edit kept the original's 1280x720.
        await page.wait_for_function(BOTH_LOADED, timeout=WAIT_MS)
        before, after = await page.evaluate(COMPARE)
        assert before["visible"] and after["visible"], (before, after)
        assert before["src"] == original and after["src"].startswith(live_server.base + "/images/"), (before, after)
        assert after["src"] != before["src"]
        assert (after["w"], after["h"]) == (before["w"], before["h"]) == (1280, 720), (before, after)
        assert abs(before["y"] - after["y"]) < 2 and before["x"] < after["x"], (before, after)
        assert after["alt"] == "After: Make it a starry night"
        after_link = page.locator("#edit-after-frame")
        await expect(after_link).to_have_attribute("href", after["src"])

        # The edit went to edit_image by image id (not re-uploaded) and into the gallery, marked as an edit.
        edits = [args for name, args in tool_calls(bodies) if name == "edit_image"]
        assert len(edits) == 1 and edits[0]["images"] == [source_id], edits
        assert edits[0]["provider"] == "local" and "aspect_ratio" not in edits[0], edits
        assert edits[0]["wait_seconds"] > 0 and edits[0]["idempotency_key"]
        await expect(cards).to_have_count(2)
        await expect(cards.first.locator(".g-prompt")).to_have_text("Make it a starry night")
        await expect(cards.first.locator(".g-badge")).to_have_text("Edited")
        await page.wait_for_function(ALL_LOADED, arg="#gallery-root .g-img", timeout=WAIT_MS)

        # Regenerate on the edited card edits the same original again: a third image, the same Before.
        await cards.first.locator("button[data-action='regenerate']").click()
        await expect(cards).to_have_count(3)
        await expect(page.locator("#progress-title")).to_have_text("Done")
        await page.wait_for_function(BOTH_LOADED, timeout=WAIT_MS)
        before2, after2 = await page.evaluate(COMPARE)
        assert before2["src"] == original and after2["src"] not in (after["src"], original), (before2, after2)
        edits = [args for name, args in tool_calls(bodies) if name == "edit_image"]
        assert len(edits) == 2 and edits[1]["images"] == [source_id] and edits[1]["prompt"] == "Make it a starry night"

        # Switching back to Generate shows the untouched generate form.
        await page.click("#mode-generate")
        await expect(page.locator("#generate-form")).to_be_visible()
        await expect(page.locator("#edit-form")).to_be_hidden()
        await expect(page.locator("#prompt")).to_have_value("Calm sea at sunset, pastel colours")
        assert problems == []


async def test_upload_a_png_and_edit_it_to_another_aspect_ratio(browser: Any, live_server: LiveServer) -> None:
    from playwright.async_api import expect

    async with demo_page(browser, live_server, viewport=DESKTOP) as (page, problems):
        bodies = record_posts(page, live_server)
        await connect(page, live_server.token)
        await page.click("#mode-edit")
        await expect(page.locator("#edit-file")).to_be_focused()

        upload = png(320, 200)
        await page.set_input_files(
            "#edit-file", files=[{"name": "photo.png", "mimeType": "image/png", "buffer": upload}]
        )
        before = page.locator("#edit-before")
        await expect(before).to_be_visible()
        await expect(before).to_have_attribute("alt", "Before: photo.png")
        await expect(page.locator("#edit-source-info")).to_contain_text("Uploaded: photo.png · 320×200 · ")
        size = await before.evaluate("e => [e.naturalWidth, e.naturalHeight]")
        assert size == [320, 200]

        # A square result from a 320x200 upload: the aspect select names the size the provider will make.
        square = local_size(live_server, "1:1")
        await expect(page.locator("#edit-aspect option[value='1:1']")).to_have_text(f"1:1 · {square[0]}×{square[1]}")
        await page.select_option("#edit-aspect", "1:1")
        await page.fill("#edit-prompt", "Add a red balloon")
        await page.click("#edit-button")
        await expect(page.locator("#progress-title")).to_have_text("Done")
        await page.wait_for_function(BOTH_LOADED, timeout=WAIT_MS)
        shown_before, shown_after = await page.evaluate(COMPARE)
        assert (shown_before["w"], shown_before["h"]) == (320, 200)
        assert (shown_after["w"], shown_after["h"]) == square, shown_after
        assert shown_after["src"].startswith(live_server.base + "/images/")

        # The file went as a data: URI of exactly its bytes, with the aspect ratio and no resolution.
        edits = [args for name, args in tool_calls(bodies) if name == "edit_image"]
        assert len(edits) == 1, edits
        prefix = "data:image/png;base64,"
        assert edits[0]["images"][0].startswith(prefix)
        assert base64.b64decode(edits[0]["images"][0][len(prefix):]) == upload
        assert edits[0]["aspect_ratio"] == "1:1" and "resolution" not in edits[0], edits
        await expect(page.locator("#gallery-root .g-card")).to_have_count(1)
        await expect(page.locator("#generate-error")).to_be_hidden()
        assert await page.evaluate(UNNAMED_CONTROLS) == []
        assert problems == []


async def test_a_non_image_upload_shows_the_servers_invalid_image_sentence(
    browser: Any, live_server: LiveServer
) -> None:
    from playwright.async_api import expect

    async with demo_page(browser, live_server, viewport=DESKTOP) as (page, _problems):
        bodies = record_posts(page, live_server)
        await connect(page, live_server.token)
        await page.click("#mode-edit")
        alert = page.locator("#generate-error")

        # Nothing picked yet: said before anything is sent.
        await page.fill("#edit-prompt", "Make it blue")
        await page.click("#edit-button")
        await expect(alert).to_have_text("Pick the image to edit first: press Edit on a gallery image, or upload one.")
        await expect(page.locator("#edit-file")).to_be_focused()

        # A text file: the browser cannot show it, and the server says what is wrong with it.
        await page.set_input_files(
            "#edit-file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image at all\n"}]
        )
        await expect(page.locator("#edit-source-info")).to_contain_text("not an image your browser can show")
        await expect(page.locator("#edit-before-empty")).to_have_text("Your browser can't show this file as an image.")
        await page.click("#edit-button")
        await expect(alert).to_have_text("Images[0] is not a PNG, JPEG or WebP image.")
        await expect(page.locator("#progress-title")).to_have_text("Not edited")
        await expect(page.locator("#edit-after-empty")).to_have_text("The edited image appears here.")
        await expect(page.locator("#gallery-root .g-card")).to_have_count(0)
        await expect(page.locator("#edit-button")).to_be_enabled()
        sent = [args for name, args in tool_calls(bodies) if name == "edit_image"]
        assert len(sent) == 1 and sent[0]["images"][0].startswith("data:;base64,"), sent

        # Too large for a request: refused in the page with a clear sentence, nothing is sent.
        big = b"\x89PNG\r\n\x1a\n" + bytes(5 * 1024 * 1024)
        await page.set_input_files("#edit-file", files=[{"name": "huge.png", "mimeType": "image/png", "buffer": big}])
        await expect(alert).to_contain_text("huge.png is too large to upload: 5.0 MB, over this page's 3.0 MB limit")
        await expect(page.locator("#edit-file")).to_be_focused()
        await expect(page.locator("#edit-file")).to_have_value("")
        assert len([1 for name, _ in tool_calls(bodies) if name == "edit_image"]) == 1

        # An empty file, too.
        await page.set_input_files("#edit-file", files=[{"name": "empty.png", "mimeType": "image/png", "buffer": b""}])
        await expect(alert).to_have_text("empty.png is empty. Pick a PNG, JPEG or WebP image.")

        # After all that, a good upload edits fine and clears the error.
        await page.set_input_files(
            "#edit-file", files=[{"name": "ok.png", "mimeType": "image/png", "buffer": png(96, 64)}]
        )
        await expect(alert).to_be_hidden()
        await page.click("#edit-button")
        await expect(page.locator("#progress-title")).to_have_text("Done")
        await page.wait_for_function(BOTH_LOADED, timeout=WAIT_MS)
        _before, after = await page.evaluate(COMPARE)
        assert (after["w"], after["h"]) == (96, 64)


async def test_generate_still_works_with_an_aspect_ratio(browser: Any, live_server: LiveServer) -> None:
    from playwright.async_api import expect

    async with demo_page(browser, live_server, viewport=DESKTOP) as (page, problems):
        bodies = record_posts(page, live_server)
        await connect(page, live_server.token)
        wide = local_size(live_server, "16:9")
        aspect = page.locator("#aspect")
        await expect(aspect).to_have_value("")
        await expect(page.locator("#aspect option[value='16:9']")).to_have_text(f"16:9 · {wide[0]}×{wide[1]}")
        # local has no quality setting, so the page offers none.
        await expect(page.locator("#quality")).to_be_disabled()

        await page.select_option("#aspect", "16:9")
        await expect(page.locator("#resolution")).to_be_disabled()  # the ratio picks the size
        await generate(page, "Neon city skyline at night", count="1")
        await expect(page.locator("#generate-error")).to_be_hidden()
        await page.wait_for_function(ALL_LOADED, arg="#gallery-root .g-img", timeout=WAIT_MS)
        size = await page.eval_on_selector("#gallery-root .g-img", "e => [e.naturalWidth, e.naturalHeight]")
        assert tuple(size) == wide

        # Back to "From size": the size list applies again, and neither new argument is sent.
        await page.select_option("#aspect", "")
        await expect(page.locator("#resolution")).to_be_enabled()
        await generate(page, "Neon city skyline at night", resolution="1280x720", count="1")
        await page.wait_for_function(ALL_LOADED, arg="#gallery-root .g-img", timeout=WAIT_MS)
        size = await page.eval_on_selector("#gallery-root .g-img", "e => [e.naturalWidth, e.naturalHeight]")
        assert size == [1280, 720]
        first, second = [args for name, args in tool_calls(bodies) if name == "generate_image"]
        assert first["aspect_ratio"] == "16:9" and "resolution" not in first, first
        assert second["resolution"] == "1280x720" and "aspect_ratio" not in second and "quality" not in second
        assert problems == []


@pytest_asyncio.fixture
async def mixed_server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    """``live_server`` plus two configured local-like providers: ``plain`` cannot edit, ``nomask`` can."""
    from mcp_image_server.providers.local import CATALOG, SPEC

    plain = dataclasses.replace(SPEC, catalog=dataclasses.replace(
        CATALOG, name="plain", display_name="Plain", max_input_images=0, supports_mask=False))
    nomask = dataclasses.replace(SPEC, catalog=dataclasses.replace(
        CATALOG, name="nomask", display_name="No mask", max_input_images=2, supports_mask=False))
    async with serve_live(tmp_path, TOKEN, [plain, nomask]) as server:
        yield server


async def test_only_providers_that_can_edit_are_offered_and_a_refusal_is_the_servers_sentence(
    browser: Any, mixed_server: LiveServer
) -> None:
    from playwright.async_api import expect

    async with demo_page(browser, mixed_server, viewport=DESKTOP) as (page, _problems):
        await connect(page, mixed_server.token)
        generate_options = await page.eval_on_selector_all("#provider option", "os => os.map(o => o.value)")
        assert {"local", "plain", "nomask"} <= set(generate_options)
        edit_options = await page.eval_on_selector_all("#edit-provider option", "os => os.map(o => o.value)")
        assert edit_options == ["local", "nomask"]
        await page.click("#mode-edit")
        await page.select_option("#edit-provider", "nomask")
        await expect(page.locator("#edit-provider-notes")).to_contain_text("procedural edit")

        # A provider that cannot edit (as a stale page might still offer): the server's sentence, in the box.
        await page.eval_on_selector(
            "#edit-provider", "s => { s.append(new Option('Plain', 'plain')); s.value = 'plain'; }"
        )
        await page.set_input_files(
            "#edit-file", files=[{"name": "photo.png", "mimeType": "image/png", "buffer": png(64, 64)}]
        )
        await page.fill("#edit-prompt", "Make it blue")
        await page.click("#edit-button")
        alert = page.locator("#generate-error")
        await expect(alert).to_contain_text("Provider 'plain' cannot edit images")
        await expect(alert).to_contain_text("configured providers that can: ")
        await expect(alert).to_contain_text("nomask")
        await expect(page.locator("#progress-title")).to_have_text("Not edited")


async def test_phone_edit_from_the_gallery_tab_side_by_side_without_sideways_scroll(
    browser: Any, live_server: LiveServer
) -> None:
    from playwright.async_api import expect

    no_overflow = "() => document.documentElement.scrollWidth <= window.innerWidth"
    async with demo_page(
        browser, live_server, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True
    ) as (page, problems):
        await connect(page, live_server.token)
        await generate(page, "Misty pine forest at dawn", resolution="1280x720", count="1")
        await page.click(".tab[data-view='gallery']")
        await page.wait_for_function(ALL_LOADED, arg="#gallery-root .g-img", timeout=WAIT_MS)
        await page.locator("#gallery-root .g-card").first.get_by_role("button", name="Edit", exact=True).click()
        # Edit takes the person to the Create tab, in edit mode.
        await expect(page.locator("#create")).to_be_visible()
        await expect(page.locator("#gallery")).to_be_hidden()
        await expect(page.locator("#edit-form")).to_be_visible()
        await page.fill("#edit-prompt", "Add falling snow")
        await page.click("#edit-button")
        await expect(page.locator("#progress-title")).to_have_text("Done")
        await page.wait_for_function(BOTH_LOADED, timeout=WAIT_MS)
        before, after = await page.evaluate(COMPARE)
        assert abs(before["y"] - after["y"]) < 2 and before["x"] < after["x"], (before, after)
        assert (after["w"], after["h"]) == (1280, 720)
        assert await page.evaluate(no_overflow)
        assert await page.evaluate(UNNAMED_CONTROLS) == []
        assert problems == []

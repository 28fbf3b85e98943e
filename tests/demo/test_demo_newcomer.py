"""A newcomer's first visit to the web demo (issue 16, item 7), in Debian's chromium against a real server.

Besides ``local``, the server has a stand-in for the paid ``hunyuan`` provider (its real catalog:
the long style names, its 1024-character prompt limit; no network) that reports a vendor job id
the way the real one does, and a ``roomy`` provider whose prompt limit exceeds the tool's own.
The server's default provider is ``local``. Same fixtures and skips as ``test_demo_browser.py``;
every wait is Playwright's ``expect``/``wait_for_*`` with a timeout, nothing sleeps.

1. Nothing paid or styled is picked for the user: the provider starts at the server's default,
   style and size at "Default (provider's own)", which sends no ``style``/``resolution``.
2. Vendor job ids stay out of the progress text, in a collapsed "Job details".
3. At 1366x768 every select shows its whole text (every option, every provider).
4. An empty token is asked for, without calling the server; a wrong one is "rejected".
5. The prompt boxes allow what the server allows: the tool schema's maxLength (and the provider's).
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from PIL import Image

from mcp_image_server.models import GeneratedImage, GenerationRequest, ProviderResult
from mcp_image_server.providers import ProviderSpec
from mcp_image_server.providers.base import Provider
from mcp_image_server.providers.hunyuan import CATALOG as HUNYUAN
from mcp_image_server.providers.local import CATALOG as LOCAL

from .conftest import TOKEN, LiveServer, serve_live
from .test_demo_browser import ALL_LOADED, WAIT_MS, connect, demo_page
from .test_demo_edit import record_posts, tool_calls

LAPTOP = {"width": 1366, "height": 768}
VENDOR_JOB = "1258915678-1733500000-a1b2c3d4e5"
DEFAULT_LABEL = "Default (provider's own)"
ROOMY = dataclasses.replace(LOCAL, name="roomy", display_name="Roomy", max_prompt_chars=100_000)

# Every option of every shown select whose text is wider than the room the select gives it.
CUT_OFF_SELECTS = """() => {
  const ctx = document.createElement('canvas').getContext('2d');
  const cut = [];
  for (const sel of document.querySelectorAll('select')) {
    if (!sel.getClientRects().length) continue;
    const cs = getComputedStyle(sel);
    ctx.font = `${cs.fontStyle} ${cs.fontWeight} ${cs.fontSize} ${cs.fontFamily}`;
    const room = sel.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
    for (const o of sel.options) {
      const need = ctx.measureText(o.text).width;
      if (need > room + 0.5) cut.push(`#${sel.id} "${o.text}": ${need.toFixed(0)} > ${room.toFixed(0)} px`);
    }
  }
  return cut;
}"""

# The generate_image and edit_image input schemas, fetched with the demo's own client.
TOOL_SCHEMAS = """async ([url, token]) => {
  const { McpHttpClient } = await import(new URL("mcp-client.js", location.href).href);
  const client = new McpHttpClient({ url, token });
  await client.connect();
  try {
    const { tools } = await client.request("tools/list", {});
    return Object.fromEntries(tools.map((t) => [t.name, t.inputSchema]));
  } finally {
    await client.close();
  }
}"""


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 90, 40)).save(buf, "PNG")
    return buf.getvalue()


@dataclasses.dataclass
class FakePaid(Provider):
    """Answers like Hunyuan's job API: "submitted job <vendor id>", then running, then the images."""

    catalog: Any
    calls: list[GenerationRequest] = dataclasses.field(default_factory=list)

    async def generate(self, request: GenerationRequest, progress: Any = None) -> ProviderResult:
        self.calls.append(request)
        if progress is not None:
            await progress(f"submitted job {VENDOR_JOB}")
            await progress("running 0 s")
        w, h = request.width or 1024, request.height or 1024
        image = GeneratedImage(png(w, h), "image/png", w, h)
        return ProviderResult(images=(image,) * request.n, model="fake")


@dataclasses.dataclass
class Newcomer:
    server: LiveServer
    paid: FakePaid


@pytest_asyncio.fixture
async def newcomer(tmp_path: Path) -> AsyncIterator[Newcomer]:
    """``local`` (the server's default), a stand-in for paid ``hunyuan`` and ``roomy``, with a token."""
    paid = FakePaid(HUNYUAN)
    specs = (
        ProviderSpec(catalog=HUNYUAN, is_configured=lambda s: True, factory=lambda s: paid, order=1),
        ProviderSpec(catalog=ROOMY, is_configured=lambda s: True, factory=lambda s: FakePaid(ROOMY), order=2),
    )
    async with serve_live(tmp_path, TOKEN, extra_providers=specs, default_provider="local") as server:
        yield Newcomer(server, paid)


async def test_nothing_paid_or_styled_is_picked_unless_the_user_picks_it(browser: Any, newcomer: Newcomer) -> None:
    from playwright.async_api import expect

    server = newcomer.server
    async with demo_page(browser, server, viewport=LAPTOP) as (page, problems):
        # What an older version of the page remembered (a paid provider, its anime style) is not reused.
        await page.evaluate(
            """() => localStorage.setItem('wdd.form',
                 JSON.stringify({provider: 'hunyuan', style: 'riman', resolution: '1280x720'}))"""
        )
        await page.reload()
        bodies = record_posts(page, server)
        await connect(page, server.token)

        # The provider select starts at the server's default; the paid one is configured, but not picked.
        providers = await page.eval_on_selector_all("#provider option", "os => os.map(o => [o.value, o.disabled])")
        assert ["hunyuan", False] in providers, providers
        await expect(page.locator("#provider")).to_have_value("local")
        for select in ("#style", "#resolution"):
            await expect(page.locator(f"{select} option").first).to_have_text(DEFAULT_LABEL)
            await expect(page.locator(select)).to_have_value("")

        # The paid provider, chosen by hand, still starts at its own default style and size.
        await page.select_option("#provider", "hunyuan")
        await expect(page.locator("#style option").first).to_have_text(DEFAULT_LABEL)
        await expect(page.locator("#style")).to_have_value("")
        await expect(page.locator("#resolution")).to_have_value("")
        await page.select_option("#count", "1")
        await page.fill("#prompt", "A quiet harbour at dawn")
        await page.click("#generate-button")
        await expect(page.locator("#progress-title")).to_have_text("Done")
        generated = [args for name, args in tool_calls(bodies) if name == "generate_image"]
        assert len(generated) == 1, generated
        assert generated[0]["provider"] == "hunyuan"
        assert "style" not in generated[0] and "resolution" not in generated[0], generated[0]
        assert newcomer.paid.calls[-1].style is None
        card = page.locator("#gallery-root .g-card").first
        await expect(card.locator(".g-meta")).to_have_text(re.compile(r"^hunyuan · 1024×1024 · [\d.]+ KB$"))
        meta = await card.locator(".g-meta").inner_text()
        assert meta.startswith("hunyuan · 1024×1024 · ") and "riman" not in meta, meta

        # A style the user picks is sent, and kept for that provider (a reload in the same tab keeps both).
        await page.select_option("#style", "shuimo")
        await page.fill("#prompt", "A quiet harbour at dawn, ink")
        await page.click("#generate-button")
        await expect(page.locator("#gallery-root .g-card")).to_have_count(2)
        generated = [args for name, args in tool_calls(bodies) if name == "generate_image"]
        assert generated[-1]["style"] == "shuimo" and "resolution" not in generated[-1], generated[-1]
        await page.reload()
        await expect(page.locator("#status-text")).to_have_text("Connected")
        await expect(page.locator("#provider")).to_have_value("hunyuan")
        await expect(page.locator("#style")).to_have_value("shuimo")
        await page.select_option("#provider", "local")
        await expect(page.locator("#style")).to_have_value("")
        assert problems == []

    # A new visit (a fresh browser profile keeps nothing of this tab) starts at the default again.
    async with demo_page(browser, server, viewport=LAPTOP) as (page, problems):
        await connect(page, server.token)
        await expect(page.locator("#provider")).to_have_value("local")
        assert problems == []


async def test_the_provider_starts_at_the_servers_default_wherever_it_is_listed(
    browser: Any, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    specs = (
        ProviderSpec(catalog=HUNYUAN, is_configured=lambda s: True, factory=lambda s: FakePaid(HUNYUAN), order=1),
        ProviderSpec(catalog=ROOMY, is_configured=lambda s: True, factory=lambda s: FakePaid(ROOMY), order=2),
    )
    async with serve_live(tmp_path, TOKEN, extra_providers=specs, default_provider="roomy") as server:
        async with demo_page(browser, server, viewport=LAPTOP) as (page, problems):
            await connect(page, server.token)
            names = await page.eval_on_selector_all("#provider option:not([disabled])", "os => os.map(o => o.value)")
            assert names.index("roomy") > names.index("hunyuan"), names  # listed after a paid one
            await expect(page.locator("#provider")).to_have_value("roomy")
            await expect(page.locator("#style")).to_have_value("")
            assert problems == []


async def test_vendor_job_ids_are_only_in_a_collapsed_details_view(browser: Any, newcomer: Newcomer) -> None:
    from playwright.async_api import expect

    server = newcomer.server
    async with demo_page(browser, server, viewport=LAPTOP) as (page, problems):
        await connect(page, server.token)
        await page.select_option("#provider", "hunyuan")
        await page.select_option("#count", "1")
        await page.fill("#prompt", "Paper lanterns over a river")
        await page.click("#generate-button")
        await expect(page.locator("#progress-title")).to_have_text("Done")
        await page.wait_for_function(ALL_LOADED, arg="#gallery-root .g-img", timeout=WAIT_MS)

        # The stage is in the log, the id is not: not in the log, the message, the cards, anywhere shown.
        log = page.locator("#progress-log")
        await expect(log).to_contain_text("submitted to the provider")
        assert VENDOR_JOB not in await log.inner_text()
        assert VENDOR_JOB not in await page.locator("#progress-msg").inner_text()
        assert VENDOR_JOB not in await page.locator("#gallery-root").inner_text()
        assert VENDOR_JOB not in await page.inner_text("body")

        # It is one click away, in a <details> that starts closed.
        details = page.locator("#progress-details")
        await expect(details).to_be_visible()
        assert await details.evaluate("d => d.tagName === 'DETAILS' && !d.open")
        ids = page.locator("#progress-ids")
        await expect(ids).to_be_hidden()
        await details.locator("summary").click()
        await expect(ids).to_be_visible()
        await expect(ids).to_contain_text("Provider job")
        await expect(ids).to_contain_text(VENDOR_JOB)

        # The next generation starts with a clean, closed details view.
        await page.fill("#prompt", "Paper lanterns over a river, night")
        await page.click("#generate-button")
        await expect(page.locator("#gallery-root .g-card")).to_have_count(2)
        await expect(page.locator("#progress-title")).to_have_text("Done")
        assert await details.evaluate("d => !d.open")
        await expect(ids.locator("dt", has_text="Provider job")).to_have_count(1)
        assert VENDOR_JOB not in await page.inner_text("body")

        # local reports no vendor job: none in the details either.
        await page.select_option("#provider", "local")
        await page.fill("#prompt", "A meadow")
        await page.click("#generate-button")
        await expect(page.locator("#gallery-root .g-card")).to_have_count(3)
        await expect(page.locator("#progress-title")).to_have_text("Done")
        await expect(ids.locator("dt", has_text="Provider job")).to_have_count(0)
        assert VENDOR_JOB not in await ids.inner_text()
        assert problems == []


async def test_every_select_shows_its_whole_text_at_1366_px(
    browser: Any, newcomer: Newcomer, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    server = newcomer.server
    no_overflow = "() => document.documentElement.scrollWidth <= window.innerWidth"
    async with demo_page(browser, server, viewport=LAPTOP) as (page, problems):
        await connect(page, server.token)
        await page.click("#generate-form details.more summary")
        for provider in ("local", "hunyuan", "roomy"):
            await page.select_option("#provider", provider)
            await expect(page.locator("#style option").first).to_have_text(DEFAULT_LABEL)
            assert await page.evaluate(CUT_OFF_SELECTS) == [], provider
        assert await page.evaluate(no_overflow)
        await page.evaluate("() => { document.getElementById('toasts').replaceChildren(); window.scrollTo(0, 0); }")
        await page.select_option("#provider", "hunyuan")
        await page.select_option("#style", "ertonghuiben")  # "Children's picture book (儿童绘本)", the longest
        await page.screenshot(path=str(tmp_path / "laptop-1366.png"), animations="disabled")
        assert await page.evaluate(CUT_OFF_SELECTS) == []

        await page.click("#mode-edit")
        await expect(page.locator("#edit-form")).to_be_visible()
        assert await page.evaluate(CUT_OFF_SELECTS) == []
        assert await page.evaluate(no_overflow)
        assert problems == []


async def test_an_empty_token_is_asked_for_without_calling_the_server(browser: Any, newcomer: Newcomer) -> None:
    from playwright.async_api import expect

    server = newcomer.server
    async with demo_page(browser, server, viewport=LAPTOP) as (page, _problems):
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.method) if r.url == server.mcp else None)
        alert = page.locator("#connect-error")
        for token in ("", "   "):
            await page.fill("#token", token)
            await page.click("#connect-button")
            await expect(alert).to_contain_text("Enter the token (MCP_AUTH_TOKEN) first")
            await expect(alert).not_to_contain_text("rejected")
            await expect(page.locator("#token")).to_be_focused()
            await expect(page.locator("#status-text")).to_have_text("Not connected")
            await expect(page.locator("#generate-button")).to_be_disabled()
        assert requests == []

        # A wrong token is the server's refusal.
        await page.fill("#token", "not-the-token")
        await page.click("#connect-button")
        await expect(alert).to_contain_text("The server rejected the token")
        await expect(page.locator("#status-text")).to_have_text("Connection failed")

        # "No token" on a server that wants one says it needs one, not that it was rejected.
        await page.fill("#token", "")
        await page.click("#connect-button")
        await page.click("#connect-tokenless")
        await expect(alert).to_contain_text("This server needs a token")
        await expect(alert).not_to_contain_text("rejected")

        await connect(page, server.token)
        await expect(alert).to_be_hidden()


async def test_a_server_without_a_token_is_reached_by_saying_so(browser: Any, tmp_path: Path) -> None:
    from playwright.async_api import expect

    async with serve_live(tmp_path, "", auth_tokens=()) as server:
        async with demo_page(browser, server, viewport=LAPTOP) as (page, problems):
            await page.click("#connect-button")
            await expect(page.locator("#connect-error")).to_contain_text("Enter the token (MCP_AUTH_TOKEN) first")
            await page.click("#connect-tokenless")
            await expect(page.locator("#status-text")).to_have_text("Connected")
            # A reload in the same tab reconnects the same way.
            await page.reload()
            await expect(page.locator("#status-text")).to_have_text("Connected")
            assert problems == []


async def test_the_prompt_boxes_allow_what_the_server_allows(browser: Any, newcomer: Newcomer) -> None:
    from playwright.async_api import expect

    server = newcomer.server
    async with demo_page(browser, server, viewport=LAPTOP) as (page, problems):
        schemas = await page.evaluate(TOOL_SCHEMAS, [server.mcp, server.token])
        generate_max = schemas["generate_image"]["properties"]["prompt"]["maxLength"]
        edit_max = schemas["edit_image"]["properties"]["prompt"]["maxLength"]
        negative = schemas["generate_image"]["properties"]["negative_prompt"]
        negative_max = next(a["maxLength"] for a in negative.get("anyOf", [negative]) if "maxLength" in a)
        assert ROOMY.max_prompt_chars > generate_max > HUNYUAN.max_prompt_chars  # the cases below differ

        await connect(page, server.token)
        prompt = page.locator("#prompt")
        # The server checks the tool's limit and the provider's; the box allows exactly the smaller.
        for provider, allowed in (
            ("roomy", generate_max),
            ("hunyuan", HUNYUAN.max_prompt_chars),
            ("local", min(generate_max, LOCAL.max_prompt_chars)),
        ):
            await page.select_option("#provider", provider)
            await expect(prompt).to_have_attribute("maxlength", str(allowed))
        await expect(page.locator("#negative")).to_have_attribute("maxlength", str(negative_max))
        edit_allowed = min(edit_max, LOCAL.max_prompt_chars)
        await expect(page.locator("#edit-prompt")).to_have_attribute("maxlength", str(edit_allowed))

        # What the box takes, the server takes: a prompt of exactly the limit generates.
        await page.select_option("#provider", "roomy")
        await page.select_option("#count", "1")
        await prompt.fill("a" * (generate_max + 10))
        assert len(await prompt.input_value()) == generate_max
        await page.click("#generate-button")
        await expect(page.locator("#progress-title")).to_have_text("Done")
        await expect(page.locator("#generate-error")).to_be_hidden()
        assert problems == []

"""The web demo keeps working with a ``user`` token from MCP_TOKENS_FILE (not an admin token).

A real server (``local`` provider) with an admin ``MCP_AUTH_TOKEN`` and one named ``user`` token
limited to two images a day, driven in Debian's chromium through Playwright like
``test_demo_browser.py`` (same fixtures, same skips). The user connects, generates an image and
sees it; what a user may not do fails with the server's own sentence and breaks nothing: a
generation over the daily quota, and the admin-only tools (``reload_config``,
``list_generations(all=true)``), which the page itself never calls.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from mcp_image_server.config import Secret
from mcp_image_server.tenants import load_tokens_file

from .conftest import TOKEN as ADMIN
from .conftest import LiveServer, serve_live
from .test_demo_browser import ALL_LOADED, DESKTOP, WAIT_MS, connect, demo_page, generate

USER = "ursula-token-0123456789"
USER_NAME = "ursula"
ADMIN_ONLY = ("reload_config",)

# The admin-only calls, made from the page with the demo's own client, as the page would make them.
CALL_AS_PAGE = """async ([url, token, calls]) => {
  const { McpHttpClient } = await import(new URL("mcp-client.js", location.href).href);
  const client = new McpHttpClient({ url, token });
  await client.connect();
  const out = [];
  try {
    for (const [name, args] of calls) {
      const result = await client.callTool(name, args);
      out.push({ name, isError: !!result.isError, structured: result.structuredContent ?? null });
    }
  } finally {
    await client.close();
  }
  return out;
}"""


@pytest_asyncio.fixture
async def user_server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    """``live_server`` with an MCP_TOKENS_FILE; ``token`` is the ``user`` token, not the admin's."""
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(
        "[[tokens]]\n"
        f'name = "{USER_NAME}"\n'
        f'token_sha256 = "{hashlib.sha256(USER.encode()).hexdigest()}"\n'
        'role = "user"\n'
        "images_per_day = 2\n"
    )
    async with serve_live(
        tmp_path, USER, auth_tokens=(Secret(ADMIN),), tokens_file=load_tokens_file(str(tokens))
    ) as server:
        yield server


def _tool_calls(bodies: list[str]) -> list[str]:
    """Tool names in the JSON-RPC bodies the page POSTed."""
    names = []
    for body in bodies:
        try:
            message = json.loads(body)
        except ValueError:
            continue
        for m in message if isinstance(message, list) else [message]:
            if isinstance(m, dict) and m.get("method") == "tools/call":
                names.append(m["params"]["name"])
    return names


async def test_a_user_token_generates_and_shows_images_and_is_refused_politely(
    browser: Any, user_server: LiveServer
) -> None:
    from playwright.async_api import expect

    async with demo_page(browser, user_server, viewport=DESKTOP) as (page, problems):
        bodies: list[str] = []
        page.on(
            "request",
            lambda r: bodies.append(r.post_data or "") if r.method == "POST" and r.url == user_server.mcp else None,
        )
        await connect(page, user_server.token)
        await expect(page.locator("#provider")).to_have_value("local")
        await expect(page.locator("#connect-error")).to_be_hidden()

        # The user generates an image and the gallery shows it, from /images/, owned by the user.
        prompt = "Quiet harbour at dawn"
        await generate(page, prompt, resolution="1280x720", count="1")
        cards = page.locator("#gallery-root .g-card")
        await expect(cards).to_have_count(1)
        await page.wait_for_function(ALL_LOADED, arg="#gallery-root .g-img", timeout=WAIT_MS)
        image = await page.eval_on_selector(
            "#gallery-root .g-img", "e => ({src: e.src, w: e.naturalWidth, h: e.naturalHeight})"
        )
        assert image["src"].startswith(user_server.base + "/images/") and (image["w"], image["h"]) == (1280, 720)
        await expect(cards.first.locator(".g-prompt")).to_have_text(prompt)
        image_id = re.search(r"([0-9a-f]{32})\.png$", image["src"])
        assert image_id is not None
        assert user_server.service.store.get(image_id[1]).owner == f"tenant:{USER_NAME}"

        # Over the daily quota: the server's sentence, as a sentence; nothing is added, the page goes on.
        await page.fill("#prompt", "Two more lighthouses")
        await page.select_option("#count", "2")
        await page.click("#generate-button")
        alert = page.locator("#generate-error")
        await expect(alert).to_contain_text(f"Token '{USER_NAME}' is at 1 of 2 images today (images_per_day)")
        await expect(page.locator("#progress-title")).to_have_text("Not generated")
        await expect(cards).to_have_count(1)
        await expect(page.locator("#generate-button")).to_be_enabled()
        await expect(page.locator("#status-text")).to_have_text("Connected")

        # The one image left today still works: the page was not broken by the refusal.
        await generate(page, "One more lighthouse", count="1")
        await expect(alert).to_be_hidden()
        await expect(cards).to_have_count(2)
        await page.wait_for_function(ALL_LOADED, arg="#gallery-root .g-img", timeout=WAIT_MS)

        # The page never calls an admin-only tool, so a user token never meets a refusal on its own.
        called = _tool_calls(bodies)
        assert "generate_image" in called and not set(called) & set(ADMIN_ONLY), called

        # Called from the page with the demo's own client, admin-only tools are tool errors with
        # code forbidden and a sentence naming the role, not protocol errors; the user's own list works.
        out = await page.evaluate(
            CALL_AS_PAGE,
            [user_server.mcp, user_server.token,
             [["reload_config", {}], ["list_generations", {"all": True}], ["list_generations", {}]]],
        )
        reload, everyone, mine = out
        for refused in (reload, everyone):
            assert refused["isError"], refused
            error = refused["structured"]["error"]
            assert error["code"] == "forbidden" and "needs an admin token" in error["message"], refused
            assert USER_NAME in error["message"] and USER not in json.dumps(refused)
        assert not mine["isError"] and mine["structured"]["ok"], mine
        assert len(mine["structured"]["jobs"]) == 2, mine  # its two jobs; the refused one never started

        # The demo page itself is still connected and usable after all that.
        await expect(page.locator("#status-text")).to_have_text("Connected")
        await expect(page.locator("#generate-button")).to_be_enabled()
        assert problems == []

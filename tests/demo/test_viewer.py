"""The MCP Apps viewer: the ui:// resource, its wiring on the real server, and the view in a browser."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp.server.mcpserver import MCPServer
from mcp_types import TextResourceContents

from mcp_image_server.config import Settings
from mcp_image_server.viewer import (
    DEMO_DIR,
    VIEWER_TOOLS,
    VIEWER_URI,
    build_viewer_apps,
    image_origins_for,
    tool_meta,
    viewer_html,
)

from .conftest import LiveServer

WAIT_MS = 15_000


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_viewer_html_is_one_self_contained_document_built_from_the_demo_gallery() -> None:
    html = viewer_html()
    parser = _Tags()
    parser.feed(html)
    tags = parser.tags
    assert [t for t, _ in tags if t in ("link", "iframe", "object", "embed")] == []
    scripts = [a for t, a in tags if t == "script"]
    assert scripts == [{"type": "module"}]  # inline only, nothing to fetch
    assert not re.search(r"^\s*(import|export)\b", html, re.MULTILINE)
    # The gallery is the demo's gallery.js, and its styles are the demo's gallery.css.
    gallery_js = (DEMO_DIR / "gallery.js").read_text()
    assert "function createGallery(root, options = {})" in gallery_js
    assert "function createGallery(root, options = {})" in html
    assert (DEMO_DIR / "gallery.css").read_text() in html
    assert html.lower().count("</script>") == 1 and html.lower().count("</style>") == 2


def test_resource_metadata_declares_image_origins_for_the_host_csp() -> None:
    [binding] = build_viewer_apps(
        ["https://img.example.com/base/path", "not a url", "http://127.0.0.1:8000"]
    ).resources()
    resource = binding.resource
    assert resource.uri == VIEWER_URI
    assert resource.mime_type == APP_MIME_TYPE
    assert resource.meta == {
        "ui": {"prefersBorder": True, "csp": {"resourceDomains": ["http://127.0.0.1:8000", "https://img.example.com"]}}
    }
    [bare] = build_viewer_apps().resources()
    assert bare.resource.meta == {"ui": {"prefersBorder": True}}
    assert tool_meta() == {"ui": {"resourceUri": VIEWER_URI}}


def test_image_origins_follow_the_public_base_url_or_a_concrete_http_bind() -> None:
    base = Settings()
    assert image_origins_for(dataclasses.replace(base, public_base_url="https://cdn.example/x")) == [
        "https://cdn.example/x"
    ]
    assert image_origins_for(dataclasses.replace(base, transport="http", host="127.0.0.1", port=8000)) == [
        "http://127.0.0.1:8000"
    ]
    assert image_origins_for(dataclasses.replace(base, transport="http", host="::1", port=8000)) == [
        "http://[::1]:8000"
    ]
    assert image_origins_for(dataclasses.replace(base, transport="http", host="0.0.0.0", port=8000)) == []
    assert image_origins_for(dataclasses.replace(base, transport="http", host="127.0.0.1", port=0)) == []
    assert image_origins_for(dataclasses.replace(base, transport="stdio")) == []


async def test_extension_serves_the_resource_and_tags_tools_through_the_sdk_client() -> None:
    mcp: MCPServer[Any] = MCPServer("probe", extensions=[build_viewer_apps(["http://127.0.0.1:8000"])])

    @mcp.tool(meta=tool_meta())
    def generate_image(prompt: str) -> str:
        return prompt

    async with Client(mcp) as client:
        assert EXTENSION_ID in (client.server_capabilities.extensions or {})
        listed = {r.uri: r for r in (await client.list_resources()).resources}
        assert listed[VIEWER_URI].mime_type == APP_MIME_TYPE
        [contents] = (await client.read_resource(VIEWER_URI)).contents
        assert contents.mime_type == APP_MIME_TYPE
        assert isinstance(contents, TextResourceContents)
        assert contents.text == viewer_html()
        assert contents.meta == {"ui": {"prefersBorder": True, "csp": {"resourceDomains": ["http://127.0.0.1:8000"]}}}
        [tool] = (await client.list_tools()).tools
        assert tool.meta == {"ui": {"resourceUri": VIEWER_URI}}


async def test_real_server_over_stdio_carries_the_viewer_and_keeps_plain_results(
    stdio_client: Callable[..., Any],
) -> None:
    """Needs the wiring in server.py (extensions=[build_viewer_apps(...)], meta=tool_meta() on both tools)."""
    async with stdio_client() as client:
        assert EXTENSION_ID in (client.server_capabilities.extensions or {})
        tools = {t.name: t for t in (await client.list_tools()).tools}
        for name in VIEWER_TOOLS:
            assert (tools[name].meta or {}).get("ui") == {"resourceUri": VIEWER_URI}, name
        listed = {r.uri: r for r in (await client.list_resources()).resources}
        assert listed[VIEWER_URI].mime_type == APP_MIME_TYPE
        [contents] = (await client.read_resource(VIEWER_URI)).contents
        assert contents.mime_type == APP_MIME_TYPE
        assert isinstance(contents, TextResourceContents)
        assert contents.text == viewer_html()

        # A client that did not negotiate Apps gets the usual result: text, resource link, thumbnail.
        result = await client.call_tool("generate_image", {"prompt": "a calm sea", "resolution": "256x256"})
        assert not result.is_error
        assert [block.type for block in result.content] == ["text", "resource_link", "image"]
        assert set(result.structured_content or {}) == {
            "ok",
            "status",
            "job_id",
            "message",
            "images",
            "cost_estimate_usd",
            "warnings",
            "error",
        }


HOST_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A chat app</title>
<style>
  body { margin: 0; font-family: system-ui, sans-serif; background: #eceef4; }
  .chat { max-width: 760px; margin: 24px auto; padding: 18px; background: #fff; border-radius: 18px; }
  .bubble { margin: 0 0 12px; padding: 10px 14px; border-radius: 14px; background: #eef0ff; width: fit-content; }
  iframe { display: block; width: 100%; height: 160px; border: 1px solid #dfe2ea; border-radius: 14px; }
</style></head>
<body><div class="chat"><p class="bubble" id="ask"></p><div id="slot"></div></div>
<script type="module">
import { McpHttpClient } from "./mcp-client.js";
// A minimal MCP Apps host: renders the view in a sandboxed iframe with a CSP built like the
// spec's (restrictive default, plus the resource's declared resourceDomains), answers
// ui/initialize, sends tool-input and tool-result, and proxies tools/call to the server.
window.hostLog = [];
window.startHost = async ({ url, token, html, imageOrigins, args, theme, sandbox }) => {
  document.getElementById("ask").textContent = "Draw: " + args.prompt;
  const client = new McpHttpClient({ url, token });
  await client.connect();
  const csp = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; " +
    "img-src data: " + imageOrigins.join(" ") + "; connect-src 'none'; frame-src 'none'; object-src 'none'";
  const iframe = document.createElement("iframe");
  iframe.setAttribute("sandbox", sandbox);
  iframe.title = "Generated images";
  iframe.srcdoc = html.replace("<head>", `<head><meta http-equiv="Content-Security-Policy" content="${csp}">`);
  const send = (message) => iframe.contentWindow.postMessage({ jsonrpc: "2.0", ...message }, "*");
  window.addEventListener("message", async (event) => {
    if (event.source !== iframe.contentWindow) return;
    const msg = event.data;
    window.hostLog.push(msg.method || "response");
    if (msg.method === "ui/initialize") {
      send({ id: msg.id, result: {
        protocolVersion: "2026-01-26",
        hostInfo: { name: "test-host", version: "1.0.0" },
        hostCapabilities: { serverTools: {}, openLinks: {} },
        hostContext: { theme, displayMode: "inline", toolInfo: { tool: { name: "generate_image" } } },
      } });
    } else if (msg.method === "ui/notifications/initialized") {
      send({ method: "ui/notifications/tool-input", params: { arguments: args } });
      send({ method: "ui/notifications/tool-result", params: await client.callTool("generate_image", args) });
    } else if (msg.method === "ui/notifications/size-changed") {
      iframe.style.height = `${msg.params.height}px`;
    } else if (msg.method === "tools/call") {
      try {
        send({ id: msg.id, result: await client.callTool(msg.params.name, msg.params.arguments) });
      } catch (err) {
        send({ id: msg.id, error: { code: -32000, message: err.message } });
      }
    } else if (msg.id !== undefined) {
      send({ id: msg.id, error: { code: -32601, message: "not supported by this host" } });
    }
  });
  document.getElementById("slot").append(iframe);
};
</script></body></html>
"""

ALL_LOADED = """() => {
  const imgs = [...document.querySelectorAll('.g-img')];
  return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);
}"""


async def open_host(
    browser: Any,
    server: LiveServer,
    args: dict[str, Any],
    *,
    image_origins: list[str],
    theme: str,
    sandbox: str = "allow-scripts",
) -> Any:
    """A page playing the chat app, with the viewer rendered for a real generate_image call.

    ``sandbox="allow-scripts"`` gives the view an opaque origin, as web hosts do; chromium then
    also refuses it loopback URLs (Local Network Access), so only a same-origin view (a desktop
    host) can load ``http://127.0.0.1`` images.
    """
    context = await browser.new_context(viewport={"width": 900, "height": 900})
    page = await context.new_page()
    host_url = server.base + "/demo/__test_host__.html"
    await page.route(host_url, lambda route: route.fulfill(status=200, content_type="text/html", body=HOST_PAGE))
    await page.goto(host_url)
    await page.wait_for_function("() => typeof window.startHost === 'function'", timeout=WAIT_MS)
    await page.evaluate(
        "(opts) => window.startHost(opts)",
        {
            "url": server.mcp,
            "token": server.token,
            "html": viewer_html(),
            "imageOrigins": image_origins,
            "args": args,
            "theme": theme,
            "sandbox": sandbox,
        },
    )
    return page


async def test_view_shows_images_under_the_default_csp_and_regenerates_through_the_host(
    browser: Any, live_server: LiveServer, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    prompt = "Snowy mountains, clear blue sky"
    page = await open_host(
        browser,
        live_server,
        {"prompt": prompt, "n": 2, "resolution": "512x512", "style": "geometric"},
        image_origins=[],
        theme="light",
    )
    try:
        view = page.frame_locator("iframe")
        cards = view.locator(".g-card")
        await expect(cards).to_have_count(2)
        frame = await (await page.query_selector("iframe")).content_frame()
        await frame.wait_for_function(ALL_LOADED, timeout=WAIT_MS)
        # The CSP blocks the http URLs, so the view fell back to the inline thumbnails.
        sources = await frame.eval_on_selector_all(".g-img", "els => els.map(e => e.currentSrc)")
        assert all(s.startswith("data:image/") for s in sources), [s[:40] for s in sources]
        await expect(cards.first.locator(".g-prompt")).to_have_text(prompt)
        await expect(cards.first.locator(".g-meta")).to_contain_text("local · geometric · 512×512 · ")
        await expect(view.locator("#v-status")).to_have_text("2 images · local")
        # It told the host its size, and the host grew the frame to fit.
        assert "ui/notifications/size-changed" in await page.evaluate("window.hostLog")
        assert (await page.locator("iframe").bounding_box() or {}).get("height", 0) > 300

        await cards.first.get_by_role("button", name="Regenerate").click()
        await expect(cards).to_have_count(3)
        await frame.wait_for_function(ALL_LOADED, timeout=WAIT_MS)
        assert "tools/call" in await page.evaluate("window.hostLog")
        await expect(cards.first.locator(".g-prompt")).to_have_text(prompt)
        await expect(view.locator("#v-status")).to_have_text("3 images · local")
        await page.screenshot(path=str(tmp_path / "viewer-light.png"))
    finally:
        await page.context.close()


async def test_view_loads_image_urls_when_the_host_allows_their_origin(
    browser: Any, live_server: LiveServer, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    page = await open_host(
        browser,
        live_server,
        {"prompt": "Neon city skyline at night", "style": "neon", "resolution": "1280x720"},
        image_origins=[live_server.base],
        theme="dark",
        sandbox="allow-scripts allow-same-origin",
    )
    try:
        cards = page.frame_locator("iframe").locator(".g-card")
        await expect(cards).to_have_count(1)
        frame = await (await page.query_selector("iframe")).content_frame()
        await frame.wait_for_function(ALL_LOADED, timeout=WAIT_MS)
        [source] = await frame.eval_on_selector_all(".g-img", "els => els.map(e => e.currentSrc)")
        assert source.startswith(live_server.base + "/images/")
        assert await frame.evaluate("document.documentElement.dataset.theme") == "dark"
        await page.screenshot(path=str(tmp_path / "viewer-dark.png"))
    finally:
        await page.context.close()


async def test_view_explains_a_failed_generation(browser: Any, live_server: LiveServer) -> None:
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    page = await open_host(
        browser, live_server, {"prompt": "A lighthouse", "style": "bogus"}, image_origins=[], theme="light"
    )
    try:
        view = page.frame_locator("iframe")
        await expect(view.locator("#v-error")).to_contain_text("Unknown style 'bogus' for provider 'local'")
        await expect(view.locator(".g-card")).to_have_count(0)
    finally:
        await page.context.close()


@pytest.mark.parametrize("name", ["viewer.html", "viewer.js", "viewer.css", "gallery.js", "gallery.css"])
def test_viewer_sources_live_in_the_demo_folder(name: str) -> None:
    assert (DEMO_DIR / name).is_file()

"""The project's real MCP surface (``build_mcp_server``) over HTTP: progress, image URLs, reload."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import ClientSession

from mcp_image_server.server import build_mcp_server

TOKEN = "tok-e2e-99"
pytestmark = pytest.mark.usefixtures("backends")


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_generate_image_streams_progress_and_its_url_needs_no_token(
    start_server: Any, http: ClientSession, h: Any, mode: str
) -> None:
    server = await start_server(tokens=(TOKEN,), mcp=build_mcp_server)
    progress: list[str | None] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message)

    async with h.mcp_client(server.url, token=TOKEN, mode=mode) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"generate_image", "get_image_data", "reload_config"} <= names
        async with asyncio.timeout(60):
            result = await client.call_tool(
                "generate_image",
                {"prompt": "a red sunset over the sea", "resolution": "128x128", "inline": "none"},
                progress_callback=on_progress,
            )
    assert result.is_error is not True, result.content
    assert result.structured_content is not None
    image = result.structured_content["images"][0]
    file_name = image["file_path"].rsplit("/", 1)[1]
    assert image["url"] == f"{server.base}/images/{file_name}"
    assert "saving" in progress  # progress travelled over the call's SSE stream
    async with http.get(image["url"]) as resp:  # public on purpose: <img> tags carry no token
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "image/png"
        assert (await resp.read())[:8] == b"\x89PNG\r\n\x1a\n"


async def test_the_public_base_url_wins_for_image_urls(start_server: Any, h: Any) -> None:
    server = await start_server(mcp=build_mcp_server, public_base_url="https://img.example.org")
    async with h.mcp_client(server.url, mode="legacy") as client:
        result = await client.call_tool(
            "generate_image", {"prompt": "blue sea", "resolution": "64x64", "inline": "none"}
        )
    assert result.structured_content is not None
    assert result.structured_content["images"][0]["url"].startswith("https://img.example.org/images/")

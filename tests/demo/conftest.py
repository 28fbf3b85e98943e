"""Fixtures for the web demo and the viewer: a real HTTP server on 127.0.0.1:0 serving ``/demo/``,
and a headless Debian chromium driven by Playwright (skipped, with the reason, when either is missing).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from mcp_image_server.config import Secret, Settings
from mcp_image_server.demo import add_demo_routes
from mcp_image_server.providers import ProviderSpec
from mcp_image_server.server import build_mcp_server
from mcp_image_server.service import ImageService
from mcp_image_server.transports.http import create_http_app

TOKEN = "demo-token"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    # The flags from ../shared/CLIENTS.md §2: quiet, sandbox-less headless chromium for CI containers.
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--metrics-recording-only",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
]


@dataclass
class LiveServer:
    base: str
    token: str
    service: ImageService
    app: web.Application

    @property
    def demo(self) -> str:
        return self.base + "/demo/"

    @property
    def mcp(self) -> str:
        return self.base + "/mcp"


@asynccontextmanager
async def serve_live(
    tmp_path: Path, token: str, extra_providers: Sequence[ProviderSpec] = (), **settings: Any
) -> AsyncIterator[LiveServer]:
    """The real MCP surface (``local`` provider, plus ``extra_providers``) over HTTP on 127.0.0.1:0,
    with ``/demo/``; ``settings`` override ``Settings`` fields (tokens, a tokens file)."""
    config = dataclasses.replace(
        Settings(), transport="http", port=0, image_save_dir=tmp_path / "images",
        **{"auth_tokens": (Secret(TOKEN),), **settings},
    )
    service = ImageService(config, environ={}, extra_providers=extra_providers)
    await service.start()
    app = create_http_app(service, build_mcp_server(service), config)
    add_demo_routes(app)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=5)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        service.http_base_url = base
        yield LiveServer(base, token, service, app)
    finally:
        await runner.cleanup()
        await service.aclose()


@pytest_asyncio.fixture
async def live_server(tmp_path: Path) -> AsyncIterator[LiveServer]:
    """The real MCP surface (``local`` provider) over HTTP with a token, plus ``/demo/``."""
    async with serve_live(tmp_path, TOKEN) as server:
        yield server


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Any]:
    """Debian's chromium under Playwright; no browser is downloaded."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1)")
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip(f"chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            await instance.close()

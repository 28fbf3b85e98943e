"""Signed image URLs (MCP_IMAGE_URL_MODE=signed) through a real server on loopback and the SDK client.

Images come from ``generate_image`` on the local provider; ``/images/*`` is fetched with aiohttp.
Expiry runs on a fake clock handed to the service, so nothing sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import ClientSession, web
from mcp import Client
from yarl import URL

from mcp_image_server.config import load_settings
from mcp_image_server.server import build_mcp_server
from mcp_image_server.service import ImageService
from mcp_image_server.transports.http import create_http_app

from .s3 import S3Server

pytestmark = pytest.mark.timeout(60)
KEY = "k" * 20 + "-signing-key-for-tests"
TTL = 300


class FakeClock:
    """Wall-clock-shaped (starts now, so blob mtimes compare sensibly) but moves only when told."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def store_env(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings for a folder store, or for a fresh bucket on the session's moto server."""
    if kind == "file":
        return {"MCP_IMAGE_SAVE_DIR": str(tmp_path / "images")}
    s3: S3Server = request.getfixturevalue("s3_server")
    return {"MCP_IMAGE_SAVE_DIR": str(tmp_path / "unused"), **s3.env(s3.bucket())}


@asynccontextmanager
async def serve(env: Mapping[str, str], clock: FakeClock) -> AsyncIterator[tuple[str, ImageService]]:
    """The real service and MCP surface on an aiohttp server at 127.0.0.1:0; yields (base URL, service)."""
    settings = load_settings({"MCP_TRANSPORT": "http", "MCP_PORT": "0", **env}, env_file=None)
    service = ImageService(settings, environ={}, clock=clock)
    await service.start()
    try:
        app = create_http_app(service, build_mcp_server(service), settings)
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=5)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            base = f"http://127.0.0.1:{runner.addresses[0][1]}"
            service.http_base_url = base
            yield base, service
        finally:
            await runner.cleanup()
    finally:
        await service.aclose()


async def generate(base: str, prompt: str = "a lighthouse at dusk") -> Any:
    """``generate_image`` over HTTP with the SDK client; the tool result."""
    async with Client(base + "/mcp") as client, asyncio.timeout(30):
        return await client.call_tool("generate_image", {"prompt": prompt, "resolution": "64x64", "inline": "none"})


async def image_url(base: str, prompt: str = "a lighthouse at dusk") -> str:
    result = await generate(base, prompt)
    assert result.is_error is not True, result.content
    url: str = result.structured_content["images"][0]["url"]
    return url


async def forbidden(http: ClientSession, url: str | URL) -> dict[str, Any]:
    """GET ``url``, assert the 403 JSON refusal, and return its body."""
    async with http.get(url) as resp:
        assert resp.status == 403, await resp.text()
        assert resp.headers["Content-Type"].startswith("application/json")
        body: dict[str, Any] = await resp.json()
    assert body["error"] == "forbidden" and body["status"] == 403 and body["message"]
    assert KEY not in str(body)
    return body


@pytest.mark.parametrize("kind", ["file", "s3"])
async def test_a_signed_url_is_served_and_any_change_to_it_is_refused(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    env = {**store_env(kind, tmp_path, request), "MCP_IMAGE_URL_MODE": "signed", "MCP_URL_SIGNING_KEY": KEY,
           "MCP_IMAGE_URL_TTL": str(TTL)}
    async with serve(env, FakeClock()) as (base, _), ClientSession() as http:
        url = await image_url(base)
        other = await image_url(base, "a second lighthouse")
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        assert set(query) == {"exp", "sig"} and len(query["sig"]) == 43
        async with http.get(url) as resp:
            assert resp.status == 200
            assert (await resp.read())[:8] == b"\x89PNG\r\n\x1a\n"
            assert resp.headers["Cache-Control"] == f"private, max-age={TTL}"
        bare = f"{base}{parts.path}"
        assert (await forbidden(http, bare))["message"].startswith("this image URL needs a signature")
        await forbidden(http, f"{bare}?exp={query['exp']}")  # sig stripped
        await forbidden(http, f"{bare}?sig={query['sig']}")  # exp stripped
        flipped = ("A" if query["sig"][0] != "A" else "B") + query["sig"][1:]
        await forbidden(http, f"{bare}?exp={query['exp']}&sig={flipped}")
        await forbidden(http, f"{bare}?exp={int(query['exp']) + 3600}&sig={query['sig']}")  # a longer life
        # The same exp and sig on another image: the signature covers the file name.
        await forbidden(http, f"{base}{urlsplit(other).path}?{parts.query}")
        await forbidden(http, f"{url}&sig={query['sig']}")  # repeated: ambiguous, refused
        # Hostile values are a 403, never a 500.
        for hostile in ("sig=%C3%A9%00", "sig=" + "A" * 5000, "exp=-1&sig=x", "exp=1e99&sig=" + query["sig"]):
            await forbidden(http, URL(f"{bare}?{hostile}", encoded=True))
        async with http.get(f"{base}/images/{'f' * 32}.png?{parts.query}") as resp:
            assert resp.status == 403  # a file that does not exist is refused the same way: no oracle


async def test_a_signed_url_expires_on_the_injected_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    env = {"MCP_IMAGE_SAVE_DIR": str(tmp_path / "images"), "MCP_IMAGE_URL_MODE": "signed",
           "MCP_URL_SIGNING_KEY": KEY, "MCP_IMAGE_URL_TTL": str(TTL)}
    async with serve(env, clock) as (base, _), ClientSession() as http:
        url = await image_url(base)
        clock.advance(TTL - 1)
        async with http.get(url) as resp:
            assert resp.status == 200 and resp.headers["Cache-Control"] == "private, max-age=1"
        clock.advance(1)
        assert "expired" in (await forbidden(http, url))["message"]
        fresh = await image_url(base, "another one, signed later")  # a fresh URL lives TTL from now
        async with http.get(fresh) as resp:
            assert resp.status == 200


async def test_public_mode_is_unchanged(tmp_path: Path) -> None:
    async with serve({"MCP_IMAGE_SAVE_DIR": str(tmp_path / "images")}, FakeClock()) as (base, _):
        url = await image_url(base)
        assert "?" not in url
        async with ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200
            assert resp.headers["Cache-Control"] == "public, max-age=86400, immutable"


async def test_the_key_never_leaves_the_server(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    env = {"MCP_IMAGE_SAVE_DIR": str(tmp_path / "images"), "MCP_IMAGE_URL_MODE": "signed",
           "MCP_URL_SIGNING_KEY": KEY}
    async with serve(env, FakeClock()) as (base, service), ClientSession() as http:
        result = await generate(base)
        async with http.get(base + "/health") as resp:
            health = await resp.text()
        await forbidden(http, f"{base}/images/{'a' * 32}.png?exp=1&sig=x")
    seen = [health, str(result.content), str(result.structured_content), caplog.text, repr(service.signer),
            str(service.settings.public_dict()), repr(service.settings)]
    assert all(KEY not in text for text in seen)
    assert "random key" not in caplog.text


async def test_without_a_key_a_random_one_is_made_and_the_log_says_what_that_means(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    clock = FakeClock()
    env = {"MCP_IMAGE_SAVE_DIR": str(tmp_path / "images"), "MCP_IMAGE_URL_MODE": "signed"}
    async with serve(env, clock) as (base, _), ClientSession() as http:
        url = await image_url(base)
        async with http.get(url) as resp:
            assert resp.status == 200
    (line,) = [r.getMessage() for r in caplog.records if "MCP_URL_SIGNING_KEY" in r.getMessage()]
    assert "random key" in line and "restart" in line and "replicas" in line
    async with serve(env, clock) as (base2, _), ClientSession() as http:  # a restart: a new key
        path = urlsplit(url)
        await forbidden(http, f"{base2}{path.path}?{path.query}")

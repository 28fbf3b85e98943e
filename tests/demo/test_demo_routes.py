"""``add_demo_routes``: /demo/ serves the demo folder, with the right types and nothing else."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import ClientSession, web
from yarl import URL

from mcp_image_server.demo import CONTENT_TYPES, DEMO_DIR, add_demo_routes

from .conftest import LiveServer

Serve = Callable[[web.Application], Awaitable[str]]


@pytest_asyncio.fixture
async def serve() -> AsyncIterator[Serve]:
    """Run an app on 127.0.0.1:0; returns its base URL."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[ClientSession]:
    async with ClientSession() as session:
        yield session


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    """A small demo folder with a nested file, a hidden file, an unlisted type and a symlink out."""
    root = tmp_path / "site"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>t</title>")
    (root / "app.js").write_text("export const x = 1;")
    (root / "sub" / "deep.css").write_text("body{}")
    (root / ".env").write_text("SECRET=1")
    (root / "notes.md").write_text("# notes")
    outside = tmp_path / "outside.js"
    outside.write_text("secret")
    (root / "link.js").symlink_to(outside)
    (root / "sub" / "inner-link.css").symlink_to(root / "sub" / "deep.css")
    return root


def raw(base: str, path: str) -> URL:
    """A URL sent exactly as written (no client-side normalisation of ``..`` or ``%2e``)."""
    return URL(base + path, encoded=True)


async def test_demo_index_redirect_and_content_types_from_the_real_folder(serve: Serve, http: ClientSession) -> None:
    app = web.Application()
    add_demo_routes(app)
    base = await serve(app)

    async with http.get(base + "/demo", allow_redirects=False) as resp:
        assert resp.status == 301
        assert resp.headers["Location"] == "/demo/"
    async with http.get(base + "/demo/") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        assert "Landing Studio" in await resp.text()
    for name in sorted(p.name for p in DEMO_DIR.iterdir() if p.suffix in CONTENT_TYPES):
        async with http.get(f"{base}/demo/{name}") as resp:
            assert resp.status == 200, name
            assert resp.headers["Content-Type"] == CONTENT_TYPES[Path(name).suffix], name
            assert await resp.read() == (DEMO_DIR / name).read_bytes()
    async with http.head(base + "/demo/app.js") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"


async def test_every_module_the_page_loads_exists(serve: Serve, http: ClientSession) -> None:
    """index.html's stylesheets and scripts and every relative import in them are served."""
    import re

    app = web.Application()
    add_demo_routes(app)
    base = await serve(app)
    index = (DEMO_DIR / "index.html").read_text()
    wanted = set(re.findall(r'(?:href|src)="([\w.-]+\.(?:css|js|svg))"', index))
    for js in list(wanted):
        if js.endswith(".js"):
            wanted |= set(re.findall(r'from "\./([\w.-]+\.js)"', (DEMO_DIR / js).read_text()))
    assert {"app.js", "gallery.js", "mcp-client.js", "app.css", "gallery.css"} <= wanted
    for name in wanted:
        async with http.get(f"{base}/demo/{name}") as resp:
            assert resp.status == 200, name


@pytest.mark.parametrize(
    "path",
    [
        "/demo/../pyproject.toml",
        "/demo/%2e%2e/pyproject.toml",
        "/demo/..%2fpyproject.toml",
        "/demo/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/demo/sub/../../outside.js",
        "/demo/./index.html",
        "/demo//index.html",
        "/demo/sub/",
        "/demo/sub",
        "/demo/.env",
        "/demo/notes.md",
        "/demo/link.js",
        "/demo/..\\outside.js",
        "/demo/missing.js",
        "/demo/%00.js",
    ],
)
async def test_traversal_hidden_unlisted_and_directories_are_404(
    serve: Serve, http: ClientSession, site_dir: Path, path: str
) -> None:
    app = web.Application()
    add_demo_routes(app, root=site_dir)
    base = await serve(app)
    async with http.get(raw(base, path), allow_redirects=False) as resp:
        assert resp.status == 404, (path, resp.status)
        body = await resp.read()
    assert b"secret" not in body and b"SECRET" not in body


async def test_nested_files_and_links_inside_the_folder_are_served(
    serve: Serve, http: ClientSession, site_dir: Path
) -> None:
    app = web.Application()
    add_demo_routes(app, root=site_dir)
    base = await serve(app)
    for path in ("/demo/sub/deep.css", "/demo/sub/inner-link.css"):
        async with http.get(base + path) as resp:
            assert resp.status == 200, path
            assert resp.headers["Content-Type"] == "text/css; charset=utf-8"
            assert await resp.text() == "body{}"


async def test_missing_folder_adds_no_route_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = web.Application()
    with caplog.at_level(logging.WARNING, logger="mcp_image_server.demo"):
        add_demo_routes(app, root=tmp_path / "nowhere")
    assert len(app.router.routes()) == 0
    assert "web demo not served" in caplog.text


async def test_demo_is_public_on_the_mcp_app_while_mcp_needs_the_token(
    live_server: LiveServer, http: ClientSession
) -> None:
    async with http.get(live_server.demo) as resp:
        assert resp.status == 200
    async with http.get(live_server.base + "/demo/gallery.js", headers={"Origin": live_server.base}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
    async with http.post(live_server.mcp, json={}) as resp:
        assert resp.status == 401
    async with http.get(raw(live_server.base, "/demo/%2e%2e/images/x.png")) as resp:
        assert resp.status == 404


async def test_the_real_server_serves_the_demo_on_loopback_only_when_enabled(http_server: Any) -> None:
    import httpx2

    async with http_server() as url:
        async with httpx2.AsyncClient() as http:
            page = await http.get(url.removesuffix("/mcp") + "/demo/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    async with http_server(env={"MCP_SERVE_DEMO": "false"}) as url:
        async with httpx2.AsyncClient() as http:
            assert (await http.get(url.removesuffix("/mcp") + "/demo/")).status_code == 404

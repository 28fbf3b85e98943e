"""The public routes (/health, /images, /.well-known) and a sweep of hostile input: never a 500."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession

TOKEN = "tok-routes-5521"
HEX = "0123456789abcdef" * 2
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


async def test_health_is_public_and_says_what_runs(start_server: Any, http: ClientSession) -> None:
    server = await start_server(tokens=(TOKEN,))
    async with http.get(server.base + "/health") as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store"
        text = await resp.text()
        info = await resp.json()
    assert info["status"] == "ok"
    assert info["transport"] == "http"
    assert info["version"]
    assert "local" in info["providers"]
    assert info["sessions"] == 0 and info["uptime_s"] >= 0
    assert TOKEN not in text


def _save(server: Any, name: str, data: bytes = PNG) -> Path:
    path: Path = server.service.store.save_dir / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "mime"),
    [(f"{HEX}.png", "image/png"), (f"cat-{HEX}.jpg", "image/jpeg"), (f"a_b-{HEX}.webp", "image/webp")],
)
async def test_images_are_served_publicly_with_cache_validators(
    start_server: Any, http: ClientSession, name: str, mime: str
) -> None:
    server = await start_server(tokens=(TOKEN,))
    _save(server, name)
    url = f"{server.base}/images/{name}"
    async with http.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == mime
        assert await resp.read() == PNG
        etag, modified = resp.headers["ETag"], resp.headers["Last-Modified"]
        assert "max-age" in resp.headers["Cache-Control"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
    async with http.head(url) as resp:
        assert resp.status == 200 and resp.headers["ETag"] == etag
        assert await resp.read() == b""
    async with http.get(url, headers={"If-None-Match": etag}) as resp:
        assert resp.status == 304
    async with http.get(url, headers={"If-Modified-Since": modified}) as resp:
        assert resp.status == 304


async def test_generated_image_urls_resolve(start_server: Any, http: ClientSession) -> None:
    server = await start_server()
    path = _save(server, f"{HEX}.png")
    assert str(path.parent) not in f"{server.base}/images/{path.name}"
    async with http.get(f"{server.base}/images/{path.name}") as resp:
        assert resp.status == 200


@pytest.mark.parametrize(
    "raw_path",
    [
        f"/images/{'f' * 32}.png",  # ours by name, not on disk
        f"/images/{HEX.upper()}.png",
        f"/images/{HEX}.gif",
        f"/images/{HEX}.png.txt",
        "/images/notes.txt",
        "/images/..%2F..%2Fetc%2Fpasswd",
        f"/images/..%2F{HEX}.png",
        f"/images/%2e%2e%2f{HEX}.png",
        f"/images/sub%2F{HEX}.png",
        f"/images/{HEX}%2Epng",
        f"/images/{HEX}.png%00",
        "/images/..\\secret.png",
        "/images/.records",
        "/images/",
        "/images/../config.py",
    ],
)
async def test_anything_but_our_own_files_is_a_bare_404(server: Any, http: ClientSession, raw_path: str) -> None:
    save_dir = server.service.store.save_dir
    _save(server, f"{HEX}.png")
    (save_dir / "notes.txt").write_text("private")
    from yarl import URL

    async with http.get(URL(server.base + raw_path, encoded=True)) as resp:
        assert resp.status == 404
        body = await resp.text()
    assert str(save_dir) not in body and "private" not in body


async def test_symlinks_and_directories_with_our_names_are_404(
    server: Any, http: ClientSession, tmp_path: Path
) -> None:
    save_dir = server.service.store.save_dir
    outside = tmp_path / "outside.png"
    outside.write_bytes(PNG)
    link = f"{'1' * 32}.png"
    os.symlink(outside, save_dir / link)
    folder = f"{'2' * 32}.png"
    (save_dir / folder).mkdir()
    for name in (link, folder):
        async with http.get(f"{server.base}/images/{name}") as resp:
            assert resp.status == 404


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-authorization-server/mcp",
        "/.well-known/openid-configuration",
    ],
)
async def test_oauth_discovery_is_404_not_401(start_server: Any, http: ClientSession, path: str) -> None:
    server = await start_server(tokens=(TOKEN,))
    async with http.get(server.base + path) as resp:
        assert resp.status == 404
        assert resp.content_type == "application/json"


def _hostile_requests(h: Any) -> list[tuple[str, dict[str, str], bytes]]:
    legacy = h.LEGACY_HEADERS
    modern = h.modern_headers("tools/call", "add")
    bodies = [
        b"",
        b"null",
        b"\xff\xfe\x00garbage",
        b'{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}',
        b'{"jsonrpc":"2.0","id":null,"method":"tools/list"}',
        b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":"nope"}',
        b'{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":[],"capabilities":7}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}',
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":"x"}}}',
        b'{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"\\u0000"}}',
        b'{"jsonrpc":"2.0","id":' + b"9" * 5000 + b',"method":"ping"}',
        b'{"jsonrpc":"2.0","id":1,"method":"ping","params":' + b'{"a":' * 3000 + b"1" + b"}" * 3000 + b"}",
        b'{"jsonrpc":"2.0","error":{"code":1,"message":"x"},"id":99}',
        b'{"jsonrpc":"2.0","result":{},"id":"unknown"}',
        b"[]",
        b'"string"',
    ]
    header_sets = [
        legacy,
        {**legacy, "Mcp-Session-Id": "\u00e9t\u00e9"},
        {**legacy, "Mcp-Session-Id": "x" * 5000},
        {**legacy, "MCP-Protocol-Version": "garbage"},
        {**legacy, "MCP-Protocol-Version": ""},
        {**legacy, "Accept": ""},
        {**legacy, "Content-Type": "application/json; charset=latin-1"},
        {**legacy, "Last-Event-ID": "nope"},
        modern,
        {**modern, "Mcp-Name": "=?base64?###?="},
        {**modern, "Mcp-Param-A": "1"},
    ]
    return [
        (method, headers, body)
        for method in ("POST", "GET", "DELETE", "PATCH")
        for headers in header_sets
        for body in bodies[:4]
        if method != "POST"
    ] + [("POST", headers, body) for headers in header_sets for body in bodies]


async def test_nothing_a_client_sends_produces_a_500(server: Any, http: ClientSession, h: Any) -> None:
    sid = await h.initialize(http, server.url)
    statuses: dict[int, int] = {}
    for method, headers, body in _hostile_requests(h):
        with_session = {
            **headers,
            "Mcp-Session-Id": sid,
            "MCP-Protocol-Version": headers.get("MCP-Protocol-Version", "2025-11-25"),
        }
        for hdrs in (headers,) if method == "DELETE" else (headers, with_session):
            async with http.request(method, server.url, data=body, headers=hdrs) as resp:
                if not (method == "GET" and resp.status == 200):  # a GET stream stays open: just drop it
                    await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
                assert resp.status < 500, (method, hdrs, body[:80], resp.status)
    for path in ("/health?x=1", "/images/%ff%fe", "/mcp/../health", "/nope", "/images/" + "a" * 5000):
        async with http.get(server.base + path) as resp:
            assert resp.status < 500
    assert max(statuses) < 500
    # The session survived all of it.
    last = {"jsonrpc": "2.0", "id": 77, "method": "tools/list"}
    async with http.post(server.url, json=last, headers=h.session_headers(sid)) as resp:
        assert resp.status == 200

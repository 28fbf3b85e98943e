"""Check a running mcp-image-server end to end and print a pass/fail table.

    python examples/test_mcp_server.py [--url http://127.0.0.1:8000/mcp] [--token T] [--with-api]

Checks /health, the handshake in both protocol eras, tools, resources, templates, the prompt,
sessions, auth and /images, using the official MCP SDK client and plain HTTP. ``--with-api`` also
generates one image with every configured cloud provider (this costs money). Exit code 0 when
every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

ACCEPT = "application/json, text/event-stream"
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "checker", "version": "1"}}}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float


class Checker:
    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        parts = urlsplit(url)
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.token = token
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.results: list[Check] = []

    async def run(self, name: str, fn: Callable[[], Awaitable[str]]) -> None:
        start = time.perf_counter()
        try:
            detail, ok = await fn(), True
        except Exception as exc:  # noqa: BLE001 - every failure becomes a row
            root: BaseException = exc
            while isinstance(root, BaseExceptionGroup):
                root = root.exceptions[0]
            detail, ok = f"{type(root).__name__}: {root}", False
        self.results.append(Check(name, ok, detail, time.perf_counter() - start))

    def client(self, http: httpx2.AsyncClient, mode: str) -> Client:
        return Client(streamable_http_client(self.url, http_client=http), mode=mode)  # type: ignore[arg-type]

    async def health(self) -> str:
        async with httpx2.AsyncClient() as http:
            r = await http.get(f"{self.base}/health")
        r.raise_for_status()
        body = r.json()
        assert body["status"] == "ok", body
        return f"v{body.get('version')} providers={body.get('providers')}"

    async def handshake(self, mode: str) -> str:
        async with httpx2.AsyncClient(headers=self.headers, timeout=60) as http:
            async with self.client(http, mode) as c:
                return f"protocol {c.protocol_version}"

    async def surface(self) -> str:
        async with httpx2.AsyncClient(headers=self.headers, timeout=120) as http:
            async with self.client(http, "auto") as c:
                tools = {t.name for t in (await c.list_tools()).tools}
                missing = {"generate_image", "get_image_data", "reload_config", "get_generation"} - tools
                assert not missing, f"missing tools {missing}"
                resources = {str(r.uri) for r in (await c.list_resources()).resources}
                assert {"providers://list", "styles://list", "resolutions://list"} <= resources, resources
                templates = {t.uri_template for t in (await c.list_resource_templates()).resource_templates}
                assert "images://{image_id}" in templates, templates
                for uri in ("providers://list", "styles://provider/local", "resolutions://provider/local"):
                    json.loads((await c.read_resource(uri)).contents[0].text)  # type: ignore[union-attr]
                prompt = await c.get_prompt("image_generation_prompt", {"description": "a fox"})
                assert "generate_image" in prompt.messages[0].content.text  # type: ignore[union-attr]
                return f"{len(tools)} tools, {len(resources)} resources, {len(templates)} templates, 1 prompt"

    async def generate(self, provider: str) -> str:
        async with httpx2.AsyncClient(headers=self.headers, timeout=600) as http:
            async with self.client(http, "auto") as c:
                result = await c.call_tool(
                    "generate_image",
                    {"prompt": "a lighthouse on a cliff at dusk", "provider": provider, "inline": "none",
                     "wait_seconds": 300},
                )
                sc = result.structured_content or {}
                assert not result.is_error, sc.get("error")
                image = sc["images"][0]
            async with httpx2.AsyncClient() as anonymous:  # /images is public on purpose
                r = await anonymous.get(image["url"])
        assert r.status_code == 200 and r.headers["content-type"] == image["mime_type"], r.status_code
        assert len(r.content) == image["size_bytes"]
        return f"{image['width']}x{image['height']} {image['mime_type']} via {image['url']}"

    async def sessions(self) -> str:
        async with httpx2.AsyncClient(headers={**self.headers, "Accept": ACCEPT}, timeout=30) as http:
            r = await http.post(self.url, json=INIT)
            sid = r.headers.get("mcp-session-id")
            assert r.status_code == 200 and sid, (r.status_code, r.text[:200])
            h = {"mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"}
            r = await http.post(self.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=h)
            assert r.status_code == 202, r.status_code
            r = await http.post(self.url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
            assert r.status_code == 400, f"no session id -> {r.status_code}, expected 400"
            r = await http.delete(self.url, headers=h)
            assert r.status_code in (200, 204), r.status_code
            r = await http.post(self.url, json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, headers=h)
            assert r.status_code == 404, f"ended session -> {r.status_code}, expected 404"
        return "initialize -> id, 202 notification, 400 without id, DELETE, 404 after"

    async def auth(self) -> str:
        if not self.token:
            return "skipped: no token given (server may be open)"
        async with httpx2.AsyncClient(headers={"Accept": ACCEPT}, timeout=30) as http:
            r = await http.post(self.url, json=INIT)
            assert r.status_code == 401, f"no token -> {r.status_code}"
            assert "bearer" in r.headers.get("www-authenticate", "").lower()
            r = await http.post(self.url, json=INIT, headers={"Authorization": "Bearer wrong-" + "x" * 8})
            assert r.status_code == 401, f"wrong token -> {r.status_code}"
        return "401 + WWW-Authenticate without or with a wrong token"

    async def images_route(self) -> str:
        async with httpx2.AsyncClient() as http:
            for probe in ("/images/../pyproject.toml", "/images/%2e%2e%2fetc%2fpasswd", "/images/nope.png"):
                r = await http.get(self.base + probe)
                assert r.status_code == 404, f"{probe} -> {r.status_code}"
        return "traversal and unknown names -> 404"

    async def configured_cloud_providers(self) -> list[str]:
        async with httpx2.AsyncClient(headers=self.headers, timeout=60) as http:
            async with self.client(http, "auto") as c:
                data = json.loads((await c.read_resource("providers://list")).contents[0].text)  # type: ignore[union-attr]
        return [p["name"] for p in data["providers"] if p["configured"] and p["name"] != "local"]


async def main_async(args: argparse.Namespace) -> int:
    c = Checker(args.url, args.token)
    await c.run("health", c.health)
    await c.run("handshake 2025-11-25 (legacy)", lambda: c.handshake("legacy"))
    await c.run("handshake 2026-07-28 (auto)", lambda: c.handshake("auto"))
    await c.run("tools, resources, templates, prompt", c.surface)
    await c.run("sessions", c.sessions)
    await c.run("auth", c.auth)
    await c.run("generate (local) + public /images", lambda: c.generate("local"))
    await c.run("/images refuses strangers", c.images_route)
    if args.with_api:
        providers: list[str] = []
        await c.run("configured cloud providers", lambda: _names(c, providers))
        for name in providers:
            await c.run(f"generate ({name})", lambda name=name: c.generate(name))  # type: ignore[misc]
    width = max(len(r.name) for r in c.results)
    for r in c.results:
        print(f"{'PASS' if r.ok else 'FAIL'}  {r.name:<{width}}  {r.seconds:6.2f}s  {r.detail}")
    failed = sum(not r.ok for r in c.results)
    print(f"{len(c.results) - failed} passed, {failed} failed")
    return 1 if failed else 0


async def _names(c: Checker, out: list[str]) -> str:
    out.extend(await c.configured_cloud_providers())
    return ", ".join(out) or "none configured"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=os.environ.get("MCP_URL", "http://127.0.0.1:8000/mcp"))
    p.add_argument("--token", default=os.environ.get("MCP_AUTH_TOKEN"))
    p.add_argument("--with-api", action="store_true", help="also generate with every configured cloud provider")
    return asyncio.run(main_async(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())


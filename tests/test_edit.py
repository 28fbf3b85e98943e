"""``edit_image`` end to end on the local provider, through the SDK client over stdio and HTTP.

Every input form (an id, ``images://``, a data URI, plain base64, a file path, a URL), the
confinement of file paths to the client's roots (or the save folder), masks, references, and each
error code a bad input gets; plus the provider-neutral ``aspect_ratio`` and ``quality`` and the
``list_providers`` tool. URL inputs that must be refused are aimed at a loopback listener that
counts connections: it must see none.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_types import ListRootsResult, Root
from PIL import Image

from .conftest import server_env

pytestmark = pytest.mark.timeout(120)


def png(width: int, height: int, colour: tuple[int, ...] = (200, 40, 40), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buf, "PNG")
    return buf.getvalue()


def half_mask(width: int, height: int) -> bytes:
    """Opaque, with the left half transparent: the left half is what changes."""
    img = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    img.paste((0, 0, 0, 0), (0, 0, width // 2, height))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert result.structured_content is not None, result
    return result.structured_content


def code(out: dict[str, Any]) -> str | None:
    return out["error"]["code"] if out.get("error") else None


@asynccontextmanager
async def listener() -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP port that records every connection made to it (none is the point)."""
    connections: list[int] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], connections
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def stdio(tmp_path: Path, roots: list[Path] | None, env: dict[str, str] | None = None) -> AsyncIterator[Client]:
    """A stdio server; a handshake-era client that lists ``roots`` (or declares none)."""

    async def list_roots(_ctx: Any) -> ListRootsResult:
        return ListRootsResult(roots=[Root(uri=root.as_uri(), name=root.name) for root in roots or []])

    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mcp_image_server"], env=server_env(tmp_path / "images", env),
        cwd=str(tmp_path),
    )
    kwargs: dict[str, Any] = {"list_roots_callback": list_roots} if roots is not None else {}
    with (tmp_path / "stdio.log").open("w") as log:
        from mcp.client.stdio import stdio_client

        async with Client(stdio_client(params, errlog=log), mode="legacy", **kwargs) as client:
            yield client


def decoded(out: dict[str, Any]) -> Image.Image:
    return Image.open(out["images"][0]["file_path"])


async def test_every_input_form_and_mask_over_stdio_with_roots(tmp_path: Path) -> None:
    work, outside = tmp_path / "work", tmp_path / "outside"
    work.mkdir()
    outside.mkdir()
    (work / "photo.png").write_bytes(png(320, 200))
    (outside / "secret.png").write_bytes(png(32, 32))
    (work / "link.png").symlink_to(outside / "secret.png")
    (work / "notes.txt").write_text("not an image")
    async with stdio(tmp_path, [work]) as client:
        # A file path inside the client's root; no size given: the result keeps the input's shape.
        out = await call(client, "edit_image", prompt="make the sky a sunset", images=[str(work / "photo.png")],
                         inline="none")
        assert out["ok"] and out["status"] == "succeeded", out
        assert (out["images"][0]["width"], out["images"][0]["height"]) == (320, 200)
        assert set(out) == set(await call(client, "generate_image", prompt="a fox", inline="none", n=1))
        made = out["images"][0]["image_id"]

        # An id, images://, a data URI and plain base64; a mask (left half changes) and a reference.
        red = png(320, 200, (220, 20, 20))
        masked = await call(
            client, "edit_image", prompt="a green forest", images=[f"images://{made}", b64(png(64, 64, (0, 0, 255)))],
            mask="data:image/png;base64," + b64(half_mask(320, 200)), inline="none", seed=7,
        )
        assert masked["ok"], masked
        again = await call(client, "edit_image", prompt="a green forest", images=[made, b64(png(64, 64, (0, 0, 255)))],
                           mask=b64(half_mask(320, 200)), inline="none", seed=7)
        assert decoded(masked).tobytes() == decoded(again).tobytes()  # deterministic, whatever form named it
        kept = await call(client, "edit_image", prompt="a green forest", images=[b64(red)],
                          mask=b64(half_mask(320, 200)), inline="none", seed=1)
        right = decoded(kept).convert("RGB").getpixel((300, 100))
        assert right == (220, 20, 20)  # outside the mask's transparent half: the original pixel

        # Paths: outside the roots, through a symlink leading out, missing, not a file: one answer.
        for path in (outside / "secret.png", work / "link.png", work / "missing.png"):
            refused = await call(client, "edit_image", prompt="x", images=[str(path)])
            assert code(refused) == "path_not_allowed", refused
            assert refused["error"]["message"].startswith("images[0]: no such file, or not inside the allowed")
        assert code(await call(client, "edit_image", prompt="x", images=[str(work / "notes.txt")])) == "invalid_image"

        # Bad images and masks.
        bomb = png(9000, 9000, 0, mode="1")  # 81 Mpx of zeros: a few KB compressed
        out = await call(client, "edit_image", prompt="x", images=[b64(bomb)])
        assert code(out) == "invalid_image" and out["error"]["details"]["max_pixels"] == 50_000_000
        assert code(await call(client, "edit_image", prompt="x", images=["data:image/png;base64,AAAA"])) == (
            "invalid_image"
        )
        truncated = png(64, 64)[:-30]
        assert code(await call(client, "edit_image", prompt="x", images=[b64(truncated)])) == "invalid_image"
        wrong_size = await call(client, "edit_image", prompt="x", images=[b64(red)], mask=b64(half_mask(32, 32)))
        assert code(wrong_size) == "mask_mismatch" and "320x200" in wrong_size["error"]["message"]
        no_alpha = await call(client, "edit_image", prompt="x", images=[b64(red)], mask=b64(png(320, 200)))
        assert code(no_alpha) == "mask_mismatch"
        five = await call(client, "edit_image", prompt="x", images=[b64(png(8, 8))] * 5)
        assert code(five) == "too_many_images" and five["error"]["details"]["max"] == 4
        assert code(await call(client, "edit_image", prompt="x", images=[])) == "invalid_argument"

        # URL inputs are off by default: refused without a connection.
        async with listener() as (port, connections):
            out = await call(client, "edit_image", prompt="x", images=[f"https://127.0.0.1:{port}/a.png"])
            assert code(out) == "url_not_allowed" and out["error"]["details"]["reason"] == "url_inputs_disabled"
            assert connections == []
    log = (tmp_path / "stdio.log").read_text()
    assert "Traceback" not in log


async def test_without_roots_paths_are_confined_to_the_save_folder(tmp_path: Path) -> None:
    save = tmp_path / "images"
    save.mkdir()
    (save / "inside.png").write_bytes(png(64, 48))
    (tmp_path / "elsewhere.png").write_bytes(png(64, 48))
    async with stdio(tmp_path, None, {"MCP_MAX_INPUT_IMAGE_BYTES": "4KB"}) as client:
        out = await call(client, "edit_image", prompt="x", images=[str(save / "inside.png")], inline="none")
        assert out["ok"], out
        refused = await call(client, "edit_image", prompt="x", images=[str(tmp_path / "elsewhere.png")])
        assert code(refused) == "path_not_allowed" and refused["error"]["details"]["allowed"] == [str(save)]
        noise = Image.effect_noise((128, 128), 100).convert("RGB")
        buf = io.BytesIO()
        noise.save(buf, "PNG")
        big = await call(client, "edit_image", prompt="x", images=[b64(buf.getvalue())])
        assert code(big) == "image_too_large" and big["error"]["details"]["max_bytes"] == 4000


async def test_url_inputs_refuse_private_addresses_without_connecting(tmp_path: Path) -> None:
    async with stdio(tmp_path, None, {"MCP_ALLOW_URL_INPUTS": "1"}) as client, listener() as (port, connections):
        for url in (f"https://127.0.0.1:{port}/a.png", f"https://[::ffff:127.0.0.1]:{port}/a.png",
                    f"https://2130706433:{port}/a.png", f"https://localhost:{port}/a.png",
                    f"http://example.com:{port}/a.png"):
            out = await call(client, "edit_image", prompt="x", images=[url])
            assert code(out) == "url_not_allowed", (url, out)
            assert out["error"]["details"]["reason"], out
        assert connections == []


TOKENS = """
[[tokens]]
name = "ann"
token = "ann-token-0123456789abcdef"
role = "user"

[[tokens]]
name = "ben"
token = "ben-token-0123456789abcdef"
role = "user"
"""


@asynccontextmanager
async def http_client(url: str, token: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


async def test_over_http_paths_are_refused_and_ids_follow_owner_rules(http_server: Any, tmp_path: Path) -> None:
    (tmp_path / "tokens.toml").write_text(TOKENS)
    (tmp_path / "photo.png").write_bytes(png(64, 64))
    env = {"MCP_TOKENS_FILE": str(tmp_path / "tokens.toml")}
    async with (
        http_server(env=env, token="admin-token-0123456789abcd") as url,
        http_client(url, "ann-token-0123456789abcdef") as ann,
        http_client(url, "ben-token-0123456789abcdef") as ben,
    ):
        path = await call(ann, "edit_image", prompt="x", images=[str(tmp_path / "photo.png")])
        assert code(path) == "path_not_allowed" and path["error"]["details"]["reason"] == "http"
        mine = await call(ann, "generate_image", prompt="a boat", resolution="96x64", inline="none")
        image_id = mine["images"][0]["image_id"]
        edited = await call(ann, "edit_image", prompt="at night", images=[image_id], inline="thumbnail")
        assert edited["ok"] and (edited["images"][0]["width"], edited["images"][0]["height"]) == (96, 64), edited
        theirs = await call(ben, "edit_image", prompt="at night", images=[image_id])
        unknown = await call(ben, "edit_image", prompt="at night", images=["0" * 32])
        assert code(theirs) == code(unknown) == "image_not_found"
        assert theirs["error"]["message"].replace(image_id, "0" * 32) == unknown["error"]["message"]
        # A repeat with the same key and the same input (given another way) is the same job.
        first = await call(ann, "edit_image", prompt="snow", images=[image_id], idempotency_key="e1", inline="none")
        repeat = await call(ann, "edit_image", prompt="snow", images=[f"images://{image_id}"], idempotency_key="e1",
                            inline="none")
        assert first["job_id"] == repeat["job_id"]


async def test_aspect_ratio_quality_and_list_providers(stdio_client: Any) -> None:
    async with stdio_client() as client:
        wide = await call(client, "generate_image", prompt="a valley", aspect_ratio="16:9", inline="none")
        w, h = wide["images"][0]["width"], wide["images"][0]["height"]
        assert abs(w / h - 16 / 9) < 0.01 and wide["warnings"] == [], wide
        both = await call(client, "generate_image", prompt="a valley", aspect_ratio="16:9", resolution="256x256",
                          quality="high", inline="none")
        assert (both["images"][0]["width"], both["images"][0]["height"]) == (256, 256)
        assert any("aspect_ratio 16:9 was ignored" in x for x in both["warnings"]), both
        assert any("no quality setting" in x for x in both["warnings"]), both
        bad = await client.call_tool("generate_image", {"prompt": "x", "aspect_ratio": "5:4"})
        assert bad.is_error and bad.structured_content["error"]["code"] == "invalid_argument"  # type: ignore[index]

        listed = await call(client, "list_providers")
        resource = await client.read_resource("providers://list")
        text = resource.contents[0].text  # type: ignore[union-attr]
        assert listed["providers"] == json.loads(text)["providers"]
        local = (await call(client, "list_providers", provider="local"))["providers"]
        assert [p["name"] for p in local] == ["local"]
        assert local[0]["edit"]["max_images"] == 4 and local[0]["edit"]["mask"] is True
        assert local[0]["aspect_ratios"]["21:9"] == "1564x670"
        openai = (await call(client, "list_providers", provider="openai"))["providers"][0]
        assert openai["aspect_ratios"]["16:9"] == "1536x1024" and openai["quality"]["high"] == {"quality": "high"}
        assert code(await call(client, "list_providers", provider="nope")) == "unknown_provider"


async def test_a_provider_that_cannot_edit_says_so(tmp_path: Path) -> None:
    from dataclasses import replace

    from mcp_image_server.config import load_settings
    from mcp_image_server.providers.local import CATALOG, SPEC
    from mcp_image_server.server import build_mcp_server
    from mcp_image_server.service import ImageService

    plain = replace(SPEC, catalog=replace(CATALOG, name="plain", max_input_images=0, supports_mask=False))
    masks_not = replace(SPEC, catalog=replace(CATALOG, name="nomask", max_input_images=2, supports_mask=False))
    settings = load_settings({"MCP_IMAGE_SAVE_DIR": str(tmp_path / "images")}, env_file=None)
    service = ImageService(settings, environ={}, extra_providers=[plain, masks_not])
    await service.start()
    try:
        async with Client(build_mcp_server(service)) as client:
            image = b64(png(64, 64))
            out = await call(client, "edit_image", prompt="x", images=[image], provider="plain")
            assert code(out) == "edit_not_supported" and "local" in out["error"]["details"]["editors"], out
            out = await call(client, "edit_image", prompt="x", images=[image], mask=b64(half_mask(64, 64)),
                             provider="nomask")
            assert code(out) == "edit_not_supported" and out["error"]["details"]["field"] == "mask"
            out = await call(client, "edit_image", prompt="x", images=[image] * 3, provider="nomask")
            assert code(out) == "too_many_images"
    finally:
        await service.aclose()
    assert not any(p.name.startswith(".tmp") for p in (tmp_path / "images").iterdir())
    inputs = tmp_path / "images" / ".inputs"
    assert not inputs.exists() or not os.listdir(inputs)  # refused edits store nothing


async def test_output_files_land_inside_the_roots_and_never_clobber(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "outside").mkdir()
    async with stdio(tmp_path, [work]) as client:
        out = await call(client, "generate_image", prompt="a cat", resolution="64x64", inline="none",
                         output_dir="renders", filename="cat")
        assert out["ok"], out
        target = work / "renders" / "cat.png"
        assert out["images"][0]["output_path"] == str(target)
        assert target.read_bytes() == Path(out["images"][0]["file_path"]).read_bytes()
        again = await call(client, "generate_image", prompt="a cat", resolution="64x64", output_dir="renders",
                           filename="cat.png")
        assert code(again) == "file_exists" and again["error"]["details"]["path"] == str(target)
        replaced = await call(client, "generate_image", prompt="a dog", resolution="64x64", inline="none",
                              output_dir=str(work / "renders"), filename="cat", overwrite=True)
        assert replaced["ok"] and target.read_bytes() == Path(replaced["images"][0]["file_path"]).read_bytes()
        two = await call(client, "edit_image", prompt="snow", images=[str(target)], n=2, inline="none",
                         filename="snowy", output_format="jpeg")
        assert [i["output_path"] for i in two["images"]] == [str(work / "snowy-1.jpg"), str(work / "snowy-2.jpg")]
        for bad_dir in (str(tmp_path / "outside"), "../outside", str(work / ".." / "outside")):
            refused = await call(client, "generate_image", prompt="x", output_dir=bad_dir, filename="x")
            assert code(refused) == "path_not_allowed", (bad_dir, refused)
        (work / "escape").symlink_to(tmp_path / "outside")
        refused = await call(client, "generate_image", prompt="x", output_dir="escape", filename="x")
        assert code(refused) == "path_not_allowed"
        for bad_name in ("../x", "a/b", ".hidden", ""):
            refused = await call(client, "generate_image", prompt="x", filename=bad_name)
            assert code(refused) == "invalid_argument", (bad_name, refused)
    assert not list((tmp_path / "outside").iterdir())
    assert not [p for p in work.rglob(".tmp-*")]


async def test_output_files_are_refused_over_http(http_server: Any) -> None:
    async with http_server() as url, http_client(url, "interop-token") as client:
        out = await call(client, "generate_image", prompt="x", filename="cat")
        assert code(out) == "path_not_allowed" and out["error"]["details"]["reason"] == "http"


async def test_a_relative_input_path_is_taken_inside_the_first_root(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "photo.png").write_bytes(png(120, 90))
    (tmp_path / "photo.png").write_bytes(png(10, 10))  # the server's working directory: not used
    async with stdio(tmp_path, [work]) as client:
        out = await call(client, "edit_image", prompt="x", images=["photo.png"], inline="none")
        assert out["ok"] and (out["images"][0]["width"], out["images"][0]["height"]) == (120, 90), out

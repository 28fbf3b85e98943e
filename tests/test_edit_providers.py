"""``edit_image``, ``aspect_ratio`` and ``quality`` on every provider: SDK client -> stdio server ->
real vendor SDK -> emulator (each extended for its edit input: OpenAI's multipart form, Seedream's
data URIs, ModelScope's image_url, Hunyuan's ContentImage, Gemini's inline parts)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from .test_providers_mcp import PROVIDERS, _assert_no_secrets, _sc, running

pytestmark = pytest.mark.timeout(120)


def png(width: int, height: int, colour: tuple[int, int, int] = (30, 90, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, "PNG")
    return buf.getvalue()


def mask(width: int, height: int) -> bytes:
    img = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    img.paste((0, 0, 0, 0), (0, 0, width // 2, height))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


async def test_every_provider_edits_within_its_catalog(stdio_client: Any, tmp_path: Path) -> None:
    async with running(stdio_client, tmp_path) as (client, emus, log):
        catalog = {p["name"]: p for p in _sc(await client.call_tool("list_providers", {}))["providers"]}
        made = _sc(await client.call_tool("generate_image", {"prompt": "a mug", "provider": "local",
                                                             "resolution": "512x512", "inline": "none"}))
        stored = made["images"][0]["image_id"]
        for provider in PROVIDERS:
            edit = catalog[provider]["edit"]
            if edit is None:
                out = _sc(await client.call_tool("edit_image", {"prompt": "x", "images": [stored],
                                                                "provider": provider}))
                assert out["error"]["code"] == "edit_not_supported", (provider, out)
                continue
            before = len(emus[provider].requests)
            images = [stored] + [data_uri(png(64, 64, (200, 0, 0)))] * (min(edit["max_images"], 3) - 1)
            args: dict[str, Any] = {"prompt": "put the logo on the mug", "images": images, "provider": provider,
                                    "inline": "none"}
            if edit["mask"]:
                args["mask"] = data_uri(mask(512, 512))
            out = _sc(await client.call_tool("edit_image", args))
            assert out["ok"] and out["status"] == "succeeded", (provider, out)
            assert out["images"][0]["provider"] == provider
            assert len(emus[provider].requests) > before, f"{provider}'s emulator saw no edit request"
            too_many = _sc(await client.call_tool("edit_image", {**args, "images": [stored] * (edit["max_images"] + 1)}))
            assert too_many["error"]["code"] in ("too_many_images", "invalid_argument"), (provider, too_many)
            if not edit["mask"]:
                refused = _sc(await client.call_tool("edit_image", {**args, "mask": data_uri(mask(512, 512))}))
                assert refused["error"]["code"] == "edit_not_supported", (provider, refused)
    _assert_no_secrets(log.read_text())


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_aspect_ratio_and_quality_map_per_provider(stdio_client: Any, tmp_path: Path, provider: str) -> None:
    async with running(stdio_client, tmp_path) as (client, _emus, _log):
        entry = _sc(await client.call_tool("list_providers", {"provider": provider}))["providers"][0]
        out = _sc(await client.call_tool("generate_image", {"prompt": "a valley", "provider": provider,
                                                            "aspect_ratio": "16:9", "quality": "high",
                                                            "inline": "none"}))
        assert out["ok"], out
        image = out["images"][0]
        mapped = entry["aspect_ratios"]["16:9"]
        if mapped != "auto":
            assert image["resolution"] == mapped, (provider, image, mapped)
        quality_ignored = any("no quality setting" in w for w in out["warnings"])
        assert quality_ignored == (entry["quality"] is None), (provider, out["warnings"])
        shape = json.dumps(out["warnings"])
        width, height = (int(v) for v in mapped.split("x")) if mapped != "auto" else (16, 9)
        assert ("has no 16:9 size" in shape) == (abs(width / height / (16 / 9) - 1) > 0.02), (provider, shape)

"""The whole MCP surface through the SDK client over a real ``python -m mcp_image_server`` subprocess."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from PIL import Image

from mcp_image_server.errors import all_error_codes

from .conftest import server_env

pytestmark = pytest.mark.timeout(90)

SECRET = "sk-FAKE-openai-SECRET-7731"


def _sc(result: Any) -> dict[str, Any]:
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def _error_code(result: Any) -> str:
    assert result.is_error, result
    code = _sc(result)["error"]["code"]
    assert code in all_error_codes()
    return code


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_handshake_lists_tools_resources_templates_and_prompt(stdio_client: Any, mode: str) -> None:
    async with stdio_client(mode=mode) as client:
        assert client.server_info.name == "mcp-image-server"
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert {"generate_image", "get_image_data", "reload_config"} <= set(tools)
        gen = tools["generate_image"]
        assert gen.output_schema is not None and "images" in gen.output_schema["properties"]
        assert gen.input_schema["properties"]["n"]["maximum"] == 4
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        assert {"providers://list", "styles://list", "resolutions://list"} <= resources
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert templates >= {"styles://provider/{provider_name}", "resolutions://provider/{provider_name}",
                             "images://{image_id}"}
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert "image_generation_prompt" in prompts


async def test_generate_image_saves_files_and_returns_links_thumbnails_and_structured_output(
    stdio_client: Any, tmp_path: Path
) -> None:
    async with stdio_client() as client:
        result = await client.call_tool(
            "generate_image",
            {"prompt": 'a "Hi" sign in a blue city', "n": 2, "resolution": "1600x900", "seed": 5,
             "output_format": "jpeg", "file_prefix": "hero"},
        )
        assert not result.is_error
        sc = _sc(result)
        assert sc["ok"] is True and len(sc["images"]) == 2
        kinds = [b.type for b in result.content]
        assert kinds == ["text", "resource_link", "image", "resource_link", "image"]
        for info, link, thumb in zip(sc["images"], result.content[1::2], result.content[2::2], strict=True):
            path = Path(info["file_path"])
            assert path.parent == tmp_path / "images" and path.name.startswith("hero-")
            assert path.stat().st_size == info["size_bytes"]
            assert (info["width"], info["height"], info["mime_type"]) == (1600, 900, "image/jpeg")
            assert info["url"] is None  # stdio without MCP_PUBLIC_BASE_URL
            assert str(link.uri) == info["resource_uri"] == f"images://{info['image_id']}"
            raw = base64.b64decode(thumb.data)
            assert len(raw) <= 256 * 1024
            assert max(Image.open(io.BytesIO(raw)).size) <= 512
        assert [i["seed"] for i in sc["images"]] == [5, 6]
        assert "base64" not in json.dumps(sc)


async def test_inline_full_and_none(stdio_client: Any) -> None:
    async with stdio_client() as client:
        full = await client.call_tool("generate_image", {"prompt": "x", "resolution": "300x200", "inline": "full"})
        info = _sc(full)["images"][0]
        data = base64.b64decode(full.content[2].data)
        assert Image.open(io.BytesIO(data)).size == (300, 200) and len(data) == info["size_bytes"]
        none = await client.call_tool("generate_image", {"prompt": "x", "inline": "none"})
        assert [b.type for b in none.content] == ["text", "resource_link"]


async def test_inline_full_over_the_limit_is_refused_with_a_warning(stdio_client: Any) -> None:
    async with stdio_client(env={"MCP_GET_IMAGE_DATA_MAX_BYTES": "2048"}) as client:
        result = await client.call_tool(
            "generate_image", {"prompt": "noise", "style": "watercolor", "resolution": "512x512", "inline": "full"}
        )
        sc = _sc(result)
        assert sc["ok"] and any("inline='full' refused" in w for w in sc["warnings"])
        assert len(base64.b64decode(result.content[2].data)) <= 256 * 1024


async def test_get_image_data_returns_the_exact_bytes(stdio_client: Any) -> None:
    async with stdio_client() as client:
        gen = await client.call_tool("generate_image", {"prompt": "x", "output_format": "webp", "inline": "none"})
        info = _sc(gen)["images"][0]
        got = await client.call_tool("get_image_data", {"image_id": info["image_id"]})
        sc = _sc(got)
        assert base64.b64decode(sc["base64"]) == Path(info["file_path"]).read_bytes()
        assert got.content[0].text == sc["base64"] and sc["mime_type"] == "image/webp"
        blob = await client.read_resource(info["resource_uri"])
        assert blob.contents[0].mime_type == "image/webp"
        assert base64.b64decode(blob.contents[0].blob) == Path(info["file_path"]).read_bytes()


async def test_error_codes_for_bad_arguments(stdio_client: Any) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"prompt": "x", "n": 7}, "invalid_argument"),
        ({"prompt": ""}, "invalid_argument"),
        ({"prompt": "   "}, "invalid_argument"),
        ({"prompt": "x", "seed": -1}, "invalid_argument"),
        ({"prompt": "x", "output_format": "gif"}, "invalid_argument"),
        ({"prompt": "x", "provider": "dalle"}, "unknown_provider"),
        ({"prompt": "x", "style": "nope:riman"}, "unknown_provider"),
        ({"prompt": "x", "style": "hunyuan:riman"}, "provider_not_configured"),
        ({"prompt": "x", "provider": "local", "style": "hunyuan:riman"}, "provider_mismatch"),
        ({"prompt": "x", "style": "riman"}, "unknown_style"),
        ({"prompt": "x", "resolution": "9000x9000"}, "unknown_resolution"),
        ({"prompt": "x", "resolution": "wide"}, "unknown_resolution"),
        ({"prompt": "x", "background": "transparent"}, "unsupported_option"),  # OpenAI only; quality is neutral
        ({"prompt": "x" * 4001}, "invalid_argument"),
    ]
    async with stdio_client() as client:
        for args, code in cases:
            result = await client.call_tool("generate_image", args)
            assert _error_code(result) == code, args
            assert result.content[0].text.startswith(f"Error [{code}]")
        assert _error_code(await client.call_tool("get_image_data", {"image_id": "f" * 32})) == "image_not_found"
        assert _error_code(await client.call_tool("get_image_data", {"image_id": "../../x"})) == "image_not_found"
        assert _error_code(await client.call_tool("get_image_data", {})) == "invalid_argument"


async def test_protocol_misuse_is_a_json_rpc_error(stdio_client: Any) -> None:
    async with stdio_client() as client:
        with pytest.raises(MCPError) as info:
            await client.call_tool("paint", {})
        assert info.value.code == -32602
        with pytest.raises(MCPError):
            await client.read_resource("styles://provider/nope")
        with pytest.raises(MCPError) as info:
            await client.read_resource("images://" + "0" * 32)
        assert info.value.data["code"] == "image_not_found"
        assert (await client.list_tools()).tools  # still serving


async def test_too_large_image_is_refused_with_its_size(stdio_client: Any) -> None:
    async with stdio_client(env={"MCP_GET_IMAGE_DATA_MAX_BYTES": "1024"}) as client:
        gen = await client.call_tool("generate_image", {"prompt": "x", "style": "neon", "inline": "none"})
        info = _sc(gen)["images"][0]
        got = await client.call_tool("get_image_data", {"image_id": info["image_id"]})
        assert _error_code(got) == "image_too_large"
        assert _sc(got)["error"]["details"]["size_bytes"] == info["size_bytes"]


async def test_records_survive_a_restart_and_then_expire(stdio_client: Any, tmp_path: Path) -> None:
    async with stdio_client() as client:
        gen = await client.call_tool("generate_image", {"prompt": "persist", "inline": "none", "n": 2})
        first, second = _sc(gen)["images"]
    async with stdio_client() as client:  # a new process, same save dir
        got = await client.call_tool("get_image_data", {"image_id": first["image_id"]})
        assert base64.b64decode(_sc(got)["base64"]) == Path(first["file_path"]).read_bytes()
    sidecar = tmp_path / "images" / ".records" / f"{second['image_id']}.json"
    record = json.loads(sidecar.read_text())
    record["expires_at"] = record["created_at"]
    sidecar.write_text(json.dumps(record))
    async with stdio_client() as client:
        got = await client.call_tool("get_image_data", {"image_id": second["image_id"]})
        assert _error_code(got) == "image_expired"


async def test_catalog_resources(stdio_client: Any) -> None:
    async with stdio_client() as client:
        providers = json.loads((await client.read_resource("providers://list")).contents[0].text)
        by_name = {p["name"]: p for p in providers["providers"]}
        assert providers["default_provider"] == "local" and by_name["local"]["configured"] is True
        styles = json.loads((await client.read_resource("styles://list")).contents[0].text)
        assert len(styles["local"]["styles"]) >= 5
        one = json.loads((await client.read_resource("styles://provider/local")).contents[0].text)
        assert list(one) == ["local"]
        res = json.loads((await client.read_resource("resolutions://provider/local")).contents[0].text)
        assert res["local"]["size_range"] == [64, 2048]
        assert "1024x1024" in json.loads((await client.read_resource("resolutions://list")).contents[0].text)[
            "local"]["resolutions"]


async def test_prompt_template(stdio_client: Any) -> None:
    async with stdio_client() as client:
        got = await client.get_prompt(
            "image_generation_prompt", {"description": "a lighthouse", "style": "local:neon"}
        )
        text = got.messages[0].content.text
        assert "a lighthouse" in text and "style='local:neon'" in text and "generate_image" in text


async def test_reload_config_applies_changes_and_names_restart_only_fields(stdio_client: Any, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MCP_IMAGE_RECORD_TTL=100\n")
    async with stdio_client() as client:
        (tmp_path / ".env").write_text(
            f"MCP_IMAGE_RECORD_TTL=200\nMCP_PORT=9123\nOPENAI_API_KEY={SECRET}\nMCP_GET_IMAGE_DATA_MAX_BYTES=1024\n"
        )
        result = await client.call_tool("reload_config", {})
        sc = _sc(result)
        assert sc["ok"] and set(sc["changed"]) == {
            "MCP_IMAGE_RECORD_TTL", "OPENAI_API_KEY", "MCP_GET_IMAGE_DATA_MAX_BYTES"}
        assert sc["restart_required"] == ["MCP_PORT"]
        assert SECRET not in json.dumps(sc) and SECRET not in result.content[0].text
        assert sc["providers"] == ["openai", "local"] and sc["default_provider"] == "openai"
        gen = await client.call_tool("generate_image", {"prompt": "x", "style": "local:neon", "inline": "none"})
        got = await client.call_tool("get_image_data", {"image_id": _sc(gen)["images"][0]["image_id"]})
        assert _error_code(got) == "image_too_large"  # the new limit applies
        (tmp_path / ".env").write_text("MCP_IMAGE_RECORD_TTL=-1\n")
        bad = await client.call_tool("reload_config", {})
        assert _error_code(bad) == "config_error" and "MCP_IMAGE_RECORD_TTL" in _sc(bad)["error"]["message"]
        again = await client.call_tool("generate_image", {"prompt": "still works", "provider": "local"})
        assert not again.is_error


async def test_reload_with_dotenv_override_lets_the_file_win(stdio_client: Any, tmp_path: Path) -> None:
    async with stdio_client(env={"MCP_IMAGE_RECORD_TTL": "100"}) as client:
        (tmp_path / ".env").write_text("MCP_IMAGE_RECORD_TTL=300\n")
        assert _sc(await client.call_tool("reload_config", {}))["changed"] == []
        sc = _sc(await client.call_tool("reload_config", {"dotenv_override": True}))
        assert sc["changed"] == ["MCP_IMAGE_RECORD_TTL"]


@pytest.mark.filterwarnings("ignore:ping is removed:mcp.shared.exceptions.MCPDeprecationWarning")
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_requests_are_answered_while_a_generation_runs(stdio_client: Any, mode: str) -> None:
    async with stdio_client(mode=mode) as client:
        gen = asyncio.create_task(
            client.call_tool(
                "generate_image",
                {"prompt": "slow", "style": "watercolor", "resolution": "2048x2048", "n": 2, "inline": "none"},
            )
        )
        async with asyncio.timeout(30):
            if mode == "legacy":
                await client.send_ping()  # ping exists only in the handshake era
            else:
                await client.read_resource("providers://list")
            assert not gen.done()
            result = await gen
        assert len(_sc(result)["images"]) == 2


async def test_twenty_concurrent_generations_give_twenty_distinct_files(stdio_client: Any, tmp_path: Path) -> None:
    async with stdio_client() as client:
        results = await asyncio.gather(
            *(client.call_tool("generate_image", {"prompt": f"p{i}", "resolution": "64x64", "inline": "none"})
              for i in range(20))
        )
    ids = {_sc(r)["images"][0]["image_id"] for r in results}
    files = [p for p in (tmp_path / "images").iterdir() if p.is_file()]
    assert len(ids) == 20 and len(files) == 20


async def test_progress_notifications_reach_the_client(stdio_client: Any) -> None:
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    async with stdio_client() as client:
        await client.call_tool("generate_image", {"prompt": "x", "n": 2}, progress_callback=on_progress)
    assert [m for _, m in seen] == [
        "started", "running on local", "rendering image 1 of 2", "rendering image 2 of 2", "saving",
        "succeeded: 2 image(s)",
    ]
    assert [p for p, _ in seen] == sorted(p for p, _ in seen)


async def test_secrets_never_reach_results_or_logs(tmp_path: Path) -> None:
    env = server_env(tmp_path / "images", {"OPENAI_API_KEY": SECRET, "MCP_AUTH_TOKEN": "tok-FAKE-9", "MCP_LOG_LEVEL": "DEBUG"})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mcp_image_server", cwd=tmp_path, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    lines = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
         "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "resources/read", "params": {"uri": "providers://list"}},
        {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "reload_config", "arguments": {}}},
        {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
         "params": {"name": "generate_image", "arguments": {"prompt": "x", "provider": "openai", "quality": "bogus"}}},
    ]
    assert proc.stdin is not None
    proc.stdin.write("".join(json.dumps(m) + "\n" for m in lines).encode())
    await proc.stdin.drain()
    out: list[str] = []
    assert proc.stdout is not None
    async with asyncio.timeout(20):
        while len([o for o in out if '"id"' in o]) < 4:
            out.append((await proc.stdout.readline()).decode())
    proc.stdin.close()
    async with asyncio.timeout(20):
        _, err = await proc.communicate()
    everything = "".join(out) + err.decode()
    assert SECRET not in everything and "tok-FAKE-9" not in everything
    assert any('"id":2' in o.replace(" ", "") and "providers" in o for o in out)


async def test_a_malformed_line_gets_a_parse_error_and_the_server_keeps_serving(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mcp_image_server", cwd=tmp_path, env=server_env(tmp_path / "images"),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
            "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    proc.stdin.write((json.dumps(init) + "\n").encode())
    proc.stdin.write(b"{this is not json\n")
    proc.stdin.write(b"[1, 2]\n")
    proc.stdin.write(b'{"jsonrpc": "2.0", "id": 7, "method": "ping"}\n')
    await proc.stdin.drain()
    replies = []
    async with asyncio.timeout(20):
        while not any(r.get("id") == 7 for r in replies):
            line = await proc.stdout.readline()
            assert line, "server exited"
            replies.append(json.loads(line))
    assert {"jsonrpc": "2.0", "id": None, "error": {"code": -32700,
            "message": "Parse error: the line is not valid JSON"}} in replies
    assert any(r.get("error", {}).get("code") == -32600 for r in replies)
    assert next(r for r in replies if r.get("id") == 7)["result"] == {}
    proc.stdin.close()
    async with asyncio.timeout(20):
        await proc.wait()

"""The examples run for real: the tiny server against the OpenAI wire emulator through the SDK client."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters

from .conftest import REPO, server_env
from .emulators import OpenAIEmulator


async def test_legacy_single_api_server_generates_through_openai(tmp_path: Path) -> None:
    async with OpenAIEmulator(api_key="sk-FAKE-example-0001") as emu:
        env = server_env(tmp_path / "img", {"OPENAI_API_KEY": "sk-FAKE-example-0001", "OPENAI_BASE_URL": emu.base_url})
        params = StdioServerParameters(
            command=sys.executable, args=[str(REPO / "examples" / "legacy_single_api_server.py")], env=env,
            cwd=str(tmp_path),
        )
        async with Client(params) as client:
            tools = [t.name for t in (await client.list_tools()).tools]
            result = await client.call_tool("generate_image", {"prompt": "a cat", "size": "1024x1024"})
    assert tools == ["generate_image"] and not result.is_error
    saved = list((tmp_path / "img").glob("*.png"))
    assert len(saved) == 1 and str(saved[0]) in result.content[0].text
    assert saved[0].read_bytes().startswith(b"\x89PNG")


async def _example(*args: str, cwd: Path) -> tuple[int, str, str]:
    import asyncio

    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=server_env(cwd / "unused"),
    )
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_example_http_client_basic_generate_status_and_exit_codes(http_server: Any, tmp_path: Path) -> None:
    client = str(REPO / "examples" / "example_http_client.py")
    async with http_server(token="example-token-1") as url:
        common = ["--url", url, "--token", "example-token-1"]
        code, out, err = await _example(client, *common, "basic", cwd=tmp_path)
        assert code == 0, err
        assert "tools:    generate_image" in out and "local" in out and "prompt:" in out
        code, out, err = await _example(client, *common, "generate", "--provider", "local",
                                        "--out", str(tmp_path / "dl"), cwd=tmp_path)
        assert code == 0, err
        assert "running on local" in err  # progress printed
        assert len(list((tmp_path / "dl").iterdir())) == 1 and "/images/" in out
        code, out, err = await _example(client, *common, "status", cwd=tmp_path)
        assert code == 0 and "succeeded" in out
        code, _, err = await _example(client, "--url", url, "--token", "wrong", "basic", cwd=tmp_path)
        assert code == 3 and "rejected the token" in err
        code, _, err = await _example(client, *common, "generate", "--provider", "nope", cwd=tmp_path)
        assert code == 1 and "unknown_provider" in err
    code, _, err = await _example(client, "--url", url, "basic", cwd=tmp_path)
    assert code == 3 and "cannot reach" in err


async def test_server_checker_passes_against_a_real_server(http_server: Any, tmp_path: Path) -> None:
    async with http_server(token="checker-token-1") as url:
        code, out, err = await _example(str(REPO / "examples" / "test_mcp_server.py"), "--url", url,
                                        "--token", "checker-token-1", "--with-api", cwd=tmp_path)
    assert code == 0, out + err
    assert "FAIL" not in out and out.strip().endswith("0 failed")
    assert "configured cloud providers" in out

"""The examples run for real: the tiny server against the OpenAI wire emulator through the SDK client."""

from __future__ import annotations

import sys
from pathlib import Path

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

"""The smallest useful image server: one provider (OpenAI), one tool, stdio, about 50 lines.

Read this to see the core idea; run the real server (``./mcp-server``) for everything else
(many providers, HTTP, jobs, progress, safe storage, stable error codes).

    OPENAI_API_KEY=sk-... python examples/legacy_single_api_server.py

Settings: OPENAI_API_KEY (required), OPENAI_BASE_URL, OPENAI_MODEL (default gpt-image-2),
MCP_IMAGE_SAVE_DIR (default ./generated_images).
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Literal

from mcp.server.mcpserver import MCPServer

SAVE_DIR = Path(os.environ.get("MCP_IMAGE_SAVE_DIR", "generated_images")).resolve()
MODEL = os.environ.get("OPENAI_MODEL", "gpt-image-2")

mcp = MCPServer("legacy-single-api-image-server")


@mcp.tool()
async def generate_image(
    prompt: str, size: Literal["1024x1024", "1536x1024", "1024x1536", "auto"] = "1024x1024"
) -> str:
    """Generate one image with OpenAI and return the path of the saved PNG."""
    from openai import AsyncOpenAI  # imported on first use: keeps start-up fast

    client = AsyncOpenAI(base_url=os.environ.get("OPENAI_BASE_URL") or None, max_retries=2, timeout=180)
    try:
        result = await client.images.generate(model=MODEL, prompt=prompt, size=size, n=1, output_format="png")
    finally:
        await client.close()
    data = base64.b64decode(result.data[0].b64_json or "")
    SAVE_DIR.mkdir(parents=True, exist_ok=True)
    path = SAVE_DIR / f"{secrets.token_hex(16)}.png"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # atomic: readers never see half a file
    return f"Saved {len(data)} bytes to {path}"


if __name__ == "__main__":
    mcp.run("stdio")

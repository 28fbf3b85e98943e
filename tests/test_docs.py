"""The docs cannot drift from the code: settings, tools, error codes and the Quick start."""

from __future__ import annotations

import re

from mcp_image_server.config import FIELDS, Field, load_settings
from mcp_image_server.errors import all_error_codes
from mcp_image_server.server import build_mcp_server
from mcp_image_server.service import ImageService

from .conftest import REPO

README = (REPO / "README.md").read_text()


def readme_row(f: Field) -> str:
    """The README configuration row for ``f`` (printed on failure, ready to paste)."""
    default = f"`{f.default}`" if f.default else "(unset)"
    alias = f" (or `{f.aliases[0]}`)" if f.aliases else ""
    applies = "restart" if f.restart_only else "reload_config"
    return f"| `{f.env}`{alias} | {default} | {applies} | {f.doc} |"


def test_every_setting_is_in_the_readme_table() -> None:
    missing = [readme_row(f) for f in FIELDS if readme_row(f) not in README]
    assert not missing, "README configuration rows missing or stale:\n" + "\n".join(missing)


def test_env_example_documents_every_setting() -> None:
    assert (REPO / ".env.example").read_text() == env_example(), "run: python -m tests.test_docs"


def test_readme_error_codes_match_the_hierarchy() -> None:
    section = README.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.M))
    assert documented == set(all_error_codes())


async def test_readme_tool_list_matches_the_server(tmp_path) -> None:
    mcp = build_mcp_server(ImageService(load_settings({"MCP_IMAGE_SAVE_DIR": str(tmp_path)})))
    tools = {t.name for t in await mcp.list_tools()}
    listed = set(re.findall(r"`(\w+)`", README.split("| Tools |", 1)[1].split("\n", 1)[0]))
    headed = set(re.findall(r"^### `(\w+)`", README, re.M))
    assert listed == tools == headed


def test_quick_start_has_exactly_two_commands_and_ci_runs_the_second() -> None:
    section = README.split("## Quick start", 1)[1]
    block = re.search(r"```(?:sh|bash)?\n(.*?)```", section, re.S)
    assert block is not None
    commands = [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2
    ci = (REPO / ".ci" / "run").read_text()
    assert commands[1] in ci


def env_example() -> str:
    """``.env.example`` as generated from ``FIELDS`` (section headers come from the field order)."""
    sections = {
        "MCP_TRANSPORT": "Server", "MCP_SESSION_IDLE_TIMEOUT": "HTTP transport", "TENCENT_SECRET_ID": "Tencent Hunyuan",
        "OPENAI_API_KEY": "OpenAI GPT Image", "DOUBAO_API_KEY": "Doubao / Seedream",
        "MODELSCOPE_API_KEY": "ModelScope Qwen-Image", "GEMINI_API_KEY": "Google Gemini",
        "MCP_IMAGE_STORE_URL": "Image store (S3)",
        "MCP_STATE_URL": "Shared job state (several replicas)",
        "MCP_GENERATION_WAIT_SECONDS": "Generation jobs",
        "MCP_FALLBACK_PROVIDERS": "Provider behaviour",
    }
    lines = [
        "# mcp-image-server settings. Copy to .env and edit; the environment beats this file,",
        "# command-line flags beat both. Everything is optional: with no keys set the server",
        "# runs on the offline 'local' provider.",
    ]
    for f in FIELDS:
        if f.env in sections:
            lines += ["", f"# --- {sections[f.env]} ---"]
        lines.append(f"# {f.doc}" + (" Restart to apply." if f.restart_only else ""))
        lines.append(f"# {f.env}={f.default}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # regenerate: python -m tests.test_docs
    start, end = README.index("| Variable | Default | Applies on | Meaning |"), README.index("\nSecrets (`MCP_AUTH")
    table = "\n".join(["| Variable | Default | Applies on | Meaning |", "|---|---|---|---|"]
                      + [readme_row(f) for f in FIELDS]) + "\n"
    (REPO / "README.md").write_text(README[:start] + table + README[end:])
    (REPO / ".env.example").write_text(env_example())

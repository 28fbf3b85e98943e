"""Talk to a running mcp-image-server over Streamable HTTP with the official MCP SDK client.

    python examples/example_http_client.py basic    [--url URL] [--token T]
    python examples/example_http_client.py generate --prompt "a red fox" [--provider local] [--out DIR]
    python examples/example_http_client.py status   --job-id JOB [--wait 30]

URL defaults to $MCP_URL or http://127.0.0.1:8000/mcp; the token to $MCP_AUTH_TOKEN.
Exit codes: 0 ok, 1 the server reported an error, 2 bad usage, 3 cannot connect or not authorised.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

EXIT_OK, EXIT_TOOL_ERROR, EXIT_USAGE, EXIT_CONNECT = 0, 1, 2, 3


class NotAuthorised(Exception):
    pass


@asynccontextmanager
async def connect(url: str, token: str | None, mode: str = "auto"):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http:
        # The SDK reports a refused token only as "an error response"; ask first to say what happened.
        probe = await http.post(url, json={"jsonrpc": "2.0", "id": 0, "method": "ping"},
                                headers={"Accept": "application/json, text/event-stream"})
        if probe.status_code in (401, 403):
            raise NotAuthorised(f"{url} answered {probe.status_code}: " + (
                "the server rejected the token (pass --token or set MCP_AUTH_TOKEN)" if token
                else "the server needs a token (pass --token or set MCP_AUTH_TOKEN)"))
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:  # type: ignore[arg-type]
            yield client


def _structured(result: Any) -> dict[str, Any]:
    return result.structured_content if isinstance(result.structured_content, dict) else {}


async def basic(args: argparse.Namespace) -> int:
    async with connect(args.url, args.token) as client:
        info = client.server_info
        print(f"server:   {info.name if info else '?'} {info.version if info else ''} "
              f"(protocol {client.protocol_version})")
        print("tools:    " + ", ".join(t.name for t in (await client.list_tools()).tools))
        print("resources: " + ", ".join(str(r.uri) for r in (await client.list_resources()).resources))
        templates = (await client.list_resource_templates()).resource_templates
        print("templates: " + ", ".join(t.uri_template for t in templates))
        print("prompts:  " + ", ".join(p.name for p in (await client.list_prompts()).prompts))
        providers = json.loads((await client.read_resource("providers://list")).contents[0].text)  # type: ignore[union-attr]
        for p in providers["providers"]:
            mark = "configured" if p["configured"] else "not configured"
            default = " (default)" if p["default"] else ""
            print(f"  - {p['name']:<11} {mark}{default}: {len(p['styles'])} styles, sizes {p['resolutions'][:3]}...")
        prompt = await client.get_prompt("image_generation_prompt", {"description": "a lighthouse at dusk"})
        print("prompt:   " + prompt.messages[0].content.text[:100] + "...")  # type: ignore[union-attr]
    return EXIT_OK


def _report(result: Any) -> int:
    sc = _structured(result)
    if result.is_error:
        err = sc.get("error", {})
        print(f"error [{err.get('code', '?')}]: {err.get('message', result.content[0].text)}", file=sys.stderr)
        return EXIT_TOOL_ERROR
    if sc.get("status") != "succeeded":
        print(f"job {sc.get('job_id')} is {sc.get('status')}: {sc.get('message')}")
        print(f"poll it: python {sys.argv[0]} status --job-id {sc.get('job_id')}")
        return EXIT_OK
    for image in sc["images"]:
        print(f"{image['image_id']}  {image['width']}x{image['height']} {image['mime_type']} "
              f"{image['size_bytes']} bytes  by {image['provider']}/{image['model']}")
        print(f"    url:  {image['url']}\n    file: {image['file_path']}")
    for warning in sc.get("warnings", []):
        print(f"warning: {warning}")
    return EXIT_OK


async def _save(client: Client, result: Any, out: Path) -> None:
    for image in _structured(result).get("images", []):
        data = await client.call_tool("get_image_data", {"image_id": image["image_id"]})
        payload = _structured(data)
        if data.is_error:
            print(f"could not download {image['image_id']}: {payload['error']['message']}", file=sys.stderr)
            continue
        ext = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}[payload["mime_type"]]
        path = out / f"{image['image_id']}.{ext}"
        path.write_bytes(base64.b64decode(payload["base64"]))
        print(f"saved {path}")


async def generate(args: argparse.Namespace) -> int:
    arguments: dict[str, Any] = {"prompt": args.prompt, "inline": "none", "wait_seconds": args.wait}
    for key in ("provider", "style", "resolution"):
        if getattr(args, key):
            arguments[key] = getattr(args, key)
    if args.n:
        arguments["n"] = args.n

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        print(f"  [{progress:>3.0f}] {message or ''}", file=sys.stderr)

    async with connect(args.url, args.token) as client:
        result = await client.call_tool("generate_image", arguments, progress_callback=on_progress)
        code = _report(result)
        if code == EXIT_OK and args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            await _save(client, result, args.out)
    return code


async def status(args: argparse.Namespace) -> int:
    async with connect(args.url, args.token) as client:
        if not args.job_id:
            listing = _structured(await client.call_tool("list_generations", {"limit": 20}))
            for job in listing.get("jobs", []):
                print(f"{job['job_id']}  {job['status']:<10} {job['elapsed_s']:>6.1f}s  {job['prompt'][:50]!r}")
            return EXIT_OK
        result = await client.call_tool("get_generation", {"job_id": args.job_id, "wait_seconds": args.wait,
                                                           "inline": "none"})
        return _report(result)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=os.environ.get("MCP_URL", "http://127.0.0.1:8000/mcp"))
    p.add_argument("--token", default=os.environ.get("MCP_AUTH_TOKEN"))
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("basic", help="server info, tools, resources, prompt")
    g = sub.add_parser("generate", help="generate an image, printing progress")
    g.add_argument("--prompt", default="a lighthouse on a cliff at dusk, \"BEACON\"")
    g.add_argument("--provider")
    g.add_argument("--style")
    g.add_argument("--resolution")
    g.add_argument("-n", type=int)
    g.add_argument("--wait", type=float, default=45, help="seconds before a job_id is handed back")
    g.add_argument("--out", type=Path, help="download the images into this directory")
    s = sub.add_parser("status", help="a job's state (or your recent jobs without --job-id)")
    s.add_argument("--job-id")
    s.add_argument("--wait", type=float, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    command = {"basic": basic, "generate": generate, "status": status}[args.command]
    try:
        return asyncio.run(command(args))
    except NotAuthorised as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONNECT
    except MCPError as exc:
        print(f"server error: {exc.error.message}", file=sys.stderr)
        return EXIT_CONNECT if "401" in exc.error.message or exc.error.code == -32000 else EXIT_TOOL_ERROR
    except (httpx2.HTTPError, OSError) as exc:
        print(f"cannot reach {args.url}: {exc}", file=sys.stderr)
        return EXIT_CONNECT
    except BaseExceptionGroup as group:  # anyio task groups wrap transport failures
        root: BaseException = group
        while isinstance(root, BaseExceptionGroup):
            root = root.exceptions[0]
        if isinstance(root, MCPError) and root.error.code != -32000:
            print(f"server error: {root.error.message}", file=sys.stderr)
        else:
            print(f"cannot talk to {args.url}: {root}", file=sys.stderr)
        return EXIT_CONNECT


if __name__ == "__main__":
    sys.exit(main())

"""The in-chat image viewer: an MCP Apps (``io.modelcontextprotocol/ui``) view for image results.

Hosts that negotiate MCP Apps render ``ui://mcp-image-server/viewer.html`` next to the
results of ``generate_image`` and ``get_generation`` (the tools carry ``_meta.ui.resourceUri``,
see ``tool_meta``); it shows the images with their prompt, provider and size and offers
regenerate. Hosts without Apps ignore the metadata and see the normal result.

The view is built from the web demo's own files (``web-design-demo/viewer.html`` with
``gallery.js``/``gallery.css``, the same gallery the demo uses), inlined into one document
because the host's iframe is sandboxed and may not load anything else. It is built on the
first read, not at server start, so an install without the demo files still serves everything
else.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from mcp.server.apps import APP_MIME_TYPE, Apps
from mcp.server.mcpserver.resources import FunctionResource

from .assets import DEMO_DIR
from .config import Settings

__all__ = [
    "DEMO_DIR",
    "VIEWER_TOOLS",
    "VIEWER_URI",
    "build_viewer_apps",
    "image_origins_for",
    "tool_meta",
    "viewer_html",
]

VIEWER_URI: Final = "ui://mcp-image-server/viewer.html"
VIEWER_TOOLS: Final = ("generate_image", "get_generation")
"""The tools whose results the viewer renders."""


_STYLESHEET = re.compile(r'<link rel="stylesheet" href="([\w.-]+\.css)">')
_SCRIPT = re.compile(r'<script type="module" src="([\w.-]+\.js)"></script>')
_IMPORT = re.compile(r'^import \{([^}]*)\} from "\./([\w.-]+\.js)";\n', re.MULTILINE)
_EXPORT = re.compile(r"^export (?=(?:async )?function |const |let |class )", re.MULTILINE)
_EXPORTED_NAME = re.compile(r"^export (?:async )?(?:function\*? |const |let |class )([A-Za-z_$][\w$]*)", re.MULTILINE)


def tool_meta() -> dict[str, Any]:
    """The ``_meta`` for a tool whose results the viewer shows (``@mcp.tool(meta=tool_meta())``)."""
    return {"ui": {"resourceUri": VIEWER_URI}}


def _read(folder: Path, name: str) -> str:
    return (folder / name).read_text(encoding="utf-8")


def _module_as_block(folder: Path, name: str, wanted: Sequence[str]) -> str:
    """ES module ``name`` as a plain block that binds the names ``wanted`` (no imports allowed inside)."""
    source = _read(folder, name)
    if re.search(r"^\s*import\b", source, re.MULTILINE):
        raise ValueError(f"{name} may not import anything: it is inlined into the viewer")
    exported = set(_EXPORTED_NAME.findall(source))
    missing = [n for n in wanted if n not in exported]
    if missing:
        raise ValueError(f"{name} does not export {', '.join(missing)}")
    body = _EXPORT.sub("", source)
    names = ", ".join(wanted)
    return f"const {{ {names} }} = (() => {{\n{body}\nreturn {{ {names} }};\n}})();\n"


def _inline_script(folder: Path, name: str) -> str:
    source = _read(folder, name)

    def replace_import(match: re.Match[str]) -> str:
        wanted = [n.strip() for n in match.group(1).split(",") if n.strip()]
        return _module_as_block(folder, match.group(2), wanted)

    return _IMPORT.sub(replace_import, source)


def _check_embeddable(text: str, closing: str, name: str) -> str:
    if closing in text.lower():
        raise ValueError(f"{name} contains {closing!r}, which would end the inline element early")
    return text


@functools.cache
def viewer_html(folder: Path = DEMO_DIR) -> str:
    """The viewer as one self-contained HTML document (styles and scripts inlined).

    Raises:
        OSError: the demo files are missing.
        ValueError: a file cannot be inlined safely.
    """
    html = _read(folder, "viewer.html")

    def style(match: re.Match[str]) -> str:
        css = _check_embeddable(_read(folder, match.group(1)), "</style", match.group(1))
        return f"<style>\n{css}</style>"

    def script(match: re.Match[str]) -> str:
        js = _check_embeddable(_inline_script(folder, match.group(1)), "</script", match.group(1))
        return f'<script type="module">\n{js}</script>'

    html = _SCRIPT.sub(script, _STYLESHEET.sub(style, html))
    if re.search(r"<link\b|<script\b[^>]*\bsrc=", html):
        raise ValueError("viewer.html references an external file the sandboxed view could not load")
    return html


def image_origins_for(settings: Settings) -> list[str]:
    """Where this server's image URLs point: ``MCP_PUBLIC_BASE_URL``, else a concrete HTTP bind address."""
    if settings.public_base_url:
        return [settings.public_base_url]
    if settings.transport == "http" and settings.port and settings.host not in ("", "0.0.0.0", "::"):
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        return [f"http://{host}:{settings.port}"]
    return []


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def build_viewer_apps(image_origins: Sequence[str] = (), folder: Path | None = None) -> Apps:
    """The MCP Apps extension carrying the viewer resource; pass it to ``MCPServer(extensions=[...])``.

    Args:
        image_origins: where ``images[].url`` point (e.g. ``MCP_PUBLIC_BASE_URL``); declared as the
            view's CSP ``resourceDomains`` so the host lets it load them. Without them the view shows
            the inline thumbnails, or fetches the bytes with ``get_image_data``.
        folder: the demo folder (default: ``web-design-demo/`` of the source tree).
    """
    source = folder or DEMO_DIR
    origins = sorted({o for o in (_origin(u) for u in image_origins) if o})
    ui: dict[str, Any] = {"prefersBorder": True}
    if origins:
        ui["csp"] = {"resourceDomains": origins}
    apps = Apps()
    apps.add_resource(
        FunctionResource(
            uri=VIEWER_URI,
            name="image_viewer",
            title="Generated images",
            description="Shows generated images with their prompt, provider and size, and can regenerate them.",
            mime_type=APP_MIME_TYPE,
            meta={"ui": ui},
            fn=functools.partial(viewer_html, source),
        )
    )
    return apps

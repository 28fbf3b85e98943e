"""Serve the web-design demo (the ``web-design-demo/`` folder) at ``/demo/`` on the HTTP app.

Static files only, from an allow-list of types, with no directory listing: a path with an
empty, dot or dot-dot segment, a hidden name, an unknown extension or anything that resolves
outside the folder is a bare 404. The page needs no token (it asks for one and sends it to
``/mcp`` itself). The HTTP app factory calls ``add_demo_routes`` when ``MCP_SERVE_DEMO`` is on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final

from aiohttp import web

from .assets import DEMO_DIR

__all__ = ["CONTENT_TYPES", "DEMO_DIR", "DEMO_PREFIX", "add_demo_routes"]

logger = logging.getLogger(__name__)


DEMO_PREFIX: Final = "/demo"

CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
}
"""The only file types served; anything else (``.md``, ``.py``, dotfiles) is a 404."""

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    # The user may point the page at another MCP server, whose /images/ it then shows.
    "connect-src 'self' http: https:; img-src 'self' data: blob: http: https:; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_HEADERS: Final = {
    # Revalidate every time (ETag / Last-Modified make that a 304), so an edited file shows at once.
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _resolve(root: Path, relative: str) -> Path | None:
    """The file ``relative`` names under ``root``, or ``None`` for anything that is not a plain served file."""
    if "\\" in relative or "\0" in relative:
        return None
    parts = relative.split("/")
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        return None
    if Path(parts[-1]).suffix.lower() not in CONTENT_TYPES:
        return None
    try:
        path = root.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def _file_handler(root: Path) -> Handler:
    async def serve(request: web.Request) -> web.StreamResponse:
        relative = request.match_info.get("path") or "index.html"
        path = _resolve(root, relative)
        if path is None:
            raise web.HTTPNotFound()
        headers = {**_HEADERS, "Content-Type": CONTENT_TYPES[path.suffix.lower()]}
        return web.FileResponse(path, headers=headers)

    return serve


async def _redirect(request: web.Request) -> web.StreamResponse:
    location = f"{DEMO_PREFIX}/" + (f"?{request.query_string}" if request.query_string else "")
    raise web.HTTPMovedPermanently(location)


def add_demo_routes(app: web.Application, root: Path | None = None) -> None:
    """Serve ``root`` (default ``DEMO_DIR``) at ``/demo/``; ``/demo`` redirects there.

    A missing folder (an install without the demo files) logs a warning and adds no route.
    """
    folder = (root or DEMO_DIR).resolve()
    if not (folder / "index.html").is_file():
        logger.warning("web demo not served: %s has no index.html", folder)
        return
    serve = _file_handler(folder)
    app.router.add_get(DEMO_PREFIX, _redirect)
    app.router.add_get(f"{DEMO_PREFIX}/", serve)
    app.router.add_get(DEMO_PREFIX + "/{path:.+}", serve)

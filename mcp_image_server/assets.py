"""Where the web demo's files are (the demo at ``/demo/`` and the MCP Apps viewer use them).

A source checkout has ``web-design-demo/`` beside the package; ``pip install`` puts the same
files under ``<prefix>/share/mcp-image-server/web-design-demo`` (``data-files`` in
pyproject.toml). Without either, the demo and viewer are simply not offered.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

__all__ = ["DEMO_DIR"]


def _find_demo_dir() -> Path:
    checkout = Path(__file__).resolve().parent.parent / "web-design-demo"
    installed = Path(sys.prefix) / "share" / "mcp-image-server" / "web-design-demo"
    return installed if not checkout.is_dir() and installed.is_dir() else checkout


DEMO_DIR: Final = _find_demo_dir()

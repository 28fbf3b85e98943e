"""The package builds offline into a wheel whose console script runs and which carries the web demo."""

from __future__ import annotations

import email.parser
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from mcp_image_server import __version__

from .conftest import REPO

pytestmark = pytest.mark.timeout(180)


def test_wheel_installs_the_console_script_and_the_demo_files(tmp_path: Path) -> None:
    # Build from a copy: an in-tree build leaves build/ and *.egg-info in the checkout, and pip
    # must not mistake the checkout on PYTHONPATH (as ./mcp-server sets it) for an installed copy.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "mcp_image_server", "web-design-demo"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, src / name)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True, text=True, timeout=150, env=env, cwd=tmp_path,
    )
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "dist").glob("mcp_imagegen_server-*.whl"))
    # Our distribution name, never the unrelated PyPI project called mcp-image-server.
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(zf.read(meta).decode())
    assert metadata["Name"] == "mcp-imagegen-server"
    assert "Homepage, https://github.com/mcp-imagegen/mcp-imagegen-server" in metadata.get_all("Project-URL", [])
    prefix = tmp_path / "prefix"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q",
         "--prefix", str(prefix), str(wheel)],
        capture_output=True, text=True, timeout=150, env=env, cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(prefix)}))
    script = prefix / "bin" / "mcp-image-server"
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": str(purelib), "PATH": "/usr/bin:/bin"}, cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == f"mcp-image-server {__version__}", out.stderr
    demo = prefix / "share" / "mcp-image-server" / "web-design-demo"
    assert {"index.html", "gallery.js", "viewer.html"} <= {p.name for p in demo.iterdir()}

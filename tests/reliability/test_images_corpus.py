"""``/images/...``: a corpus of traversal attempts, and hostile things planted in the save dir.

Paths go out as raw bytes on a socket, so no client normalises them. Every attempt is a bare
404 that names no path; request targets that HTTP/1.1 itself forbids (raw NUL, raw non-ASCII,
spaces, overlong lines) are refused by the parser with a 400 before any route runs. Nothing
planted in the save dir (symlinks, a FIFO, a socket, a directory) is served or blocks.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from .support import Served, leaks, raw_request, serve

pytestmark = pytest.mark.timeout(60)

HEX = "0123456789abcdef" * 2
OURS = f"{HEX}.png"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
SECRET = b"TOP-SECRET-outside-the-save-dir"
BOUND = 5.0
"""Seconds any one request may take: a FIFO or /dev/zero that was opened would blow it."""

TRAVERSALS = [
    # plain and encoded ../
    "../../../../etc/passwd",
    "..%2f..%2f..%2fetc%2fpasswd",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "%2e%2e/%2e%2e/etc/passwd",
    "%2E%2E%2Fsecret.png",
    f"..%2f{OURS}",
    f"..%2fimages%2f{OURS}",
    # double-encoded
    "..%252f..%252fetc%252fpasswd",
    "%252e%252e%252fsecret.png",
    f"%25{OURS}",
    "..%25252f..%25252fetc",
    # backslashes, raw and encoded
    "..\\..\\etc\\passwd",
    "..\\secret.png",
    "..%5c..%5cetc%5cpasswd",
    "..%255csecret.png",
    f".\\{OURS}",
    # absolute paths
    "%2fetc%2fpasswd",
    "/etc/passwd",
    "%2F" + HEX + ".png",
    "C:%5cWindows%5cwin.ini",
    "C:\\Windows\\win.ini",
    "file:%2f%2f%2fetc%2fpasswd",
    "%5c%5cserver%5cshare%5cx.png",
    # NUL
    "%00",
    f"{OURS}%00",
    f"{OURS}%00.txt",
    f"%00{OURS}",
    f"secret.png%00{OURS}",
    # overlong UTF-8 for '.', '/', '\\'
    "%c0%ae%c0%ae%c0%afetc%c0%afpasswd",
    "%c0%ae%c0%ae/secret.png",
    "%e0%80%ae%e0%80%ae%e0%80%afsecret.png",
    "..%c0%af..%c0%afetc",
    "..%c1%9csecret.png",
    "%c0%2e%c0%2e%c0%2fsecret.png",
    f"%c0%ae%c0%ae%c0%af{OURS}",
    "%f0%80%80%ae%f0%80%80%ae%2fsecret.png",
    # ..;/ and friends (path parameters on some servers)
    "..;/..;/etc/passwd",
    "..;/secret.png",
    ".;/secret.png",
    f";/../{OURS}",
    f"{OURS};.png",
    f"..;{OURS}",
    # unicode dots and slashes (percent-encoded UTF-8; IIS-style %u)
    "%e2%80%a4%e2%80%a4%2fsecret.png",
    "%ef%bc%8e%ef%bc%8e%ef%bc%8fsecret.png",
    "%e3%80%82%e3%80%82%2fsecret.png",
    "%u002e%u002e%u2215secret.png",
    "%uff0e%uff0e%u2215etc%u2215passwd",
    "%e2%88%95etc%e2%88%95passwd",
    # dot segments and odd separators (not normalised: never our file by another name)
    f"./{OURS}",
    f".%2f{OURS}",
    f"%2e/{OURS}",
    f"/{OURS}",
    f"{OURS}/",
    f"{OURS}/.",
    f"{OURS}/..",
    ".",
    "..",
    "...",
    "....//....//etc",
    f"{OURS}..",
    f"{OURS}.",
    f"{OURS}%20",
    f"{OURS}%09",
    f"{OURS}%0a",
    f"{OURS}%0d%0a",
    f"{OURS}::$DATA",
    f"{OURS}%3a%3a%24DATA",
    # our internals
    ".records",
    f".records%2f{HEX}.json",
    f"..%2f.records%2f{HEX}.json",
    f".records/{HEX}.json",
    ".tmp-probe",
    # very long names
    "a" * 255 + ".png",
    "a" * 5000,
    "x" * 65 + f"-{HEX}.png",
    "%2e" * 1000,
    "..%2f" * 500 + "etc%2fpasswd",
    # case variants and near-misses of our names
    f"{HEX.upper()}.png",
    f"{HEX}.PNG",
    f"{HEX}.Png",
    f"{HEX}.jpeg",
    f"{HEX}.JPG",
    f"{HEX}.gif",
    f"{HEX[:-1]}.png",
    f"{HEX}0.png",
    f"{HEX}.png.png",
    f"{HEX}.png.txt",
    f"-{HEX}.png",
    f"a.b-{HEX}.png",
    f"{'f' * 32}.png",
    f"cat-{HEX.upper()}.jpg",
    f"{HEX}.webp.png",
    f"{HEX}%2epng",
    f"{HEX}.p%6eg",
]
"""Everything after ``/images/``, sent byte for byte."""

PARSER_REFUSED = [
    b"/images/..\x00/etc/passwd",
    b"/images/" + OURS.encode() + b"\x00",
    b"/images/\xc0\xae\xc0\xae/secret.png",
    "/images/\u2024\u2024/secret.png".encode(),
    "/images/\uff0e\uff0e\uff0fsecret.png".encode(),
    b"/images/ ../secret.png",
    b"/images/" + OURS.encode() + b"\t",
    b"/images/" + b"a" * 9000,
]
"""Request targets HTTP/1.1 forbids: refused by the parser (400) before any route runs."""


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with serve(tmp_path) as server:
        (server.save_dir / OURS).write_bytes(PNG)
        (server.save_dir / "notes.txt").write_bytes(SECRET)
        (tmp_path / "secret.png").write_bytes(SECRET)
        (tmp_path / "passwd").write_bytes(SECRET)
        yield server


async def _get(served: Served, target: str | bytes, method: str = "GET") -> tuple[int | None, bytes]:
    async with asyncio.timeout(BOUND):
        resp = await raw_request(served.port, method, target, timeout=BOUND)
    return resp.status, resp.body


def _reveals(served: Served, body: bytes) -> list[str]:
    found = leaks(body, served.save_dir, served.save_dir.parent, Path(__file__).parents[2])
    if SECRET in body or PNG in body:
        found.append("file contents")
    return found


async def test_our_own_file_is_served(served: Served) -> None:
    for target in (f"/images/{OURS}", f"/images/{OURS}?v=2", f"/images/{OURS}?../../etc/passwd"):
        status, body = await _get(served, target)
        assert (status, body) == (200, PNG), target


@pytest.mark.parametrize("tail", TRAVERSALS)
async def test_traversal_attempts_are_a_bare_404(served: Served, tail: str) -> None:
    for method in ("GET", "HEAD"):
        status, body = await _get(served, "/images/" + tail, method)
        assert status == 404, (tail, method, status, body[:200])
        assert not _reveals(served, body), (tail, _reveals(served, body))
        if method == "GET":
            assert body == b'{"error": "not_found", "status": 404}'


@pytest.mark.parametrize("target", PARSER_REFUSED, ids=range(len(PARSER_REFUSED)))
async def test_targets_http_forbids_never_reach_the_route(served: Served, target: bytes) -> None:
    status, body = await _get(served, target)
    assert status == 400, (target[:80], status)
    assert not _reveals(served, body)


def _plant(served: Served, tmp_path: Path) -> dict[str, str]:
    """Hostile entries in the save dir, each under a name our files could have; name -> what."""
    save = served.save_dir
    fifo_outside = tmp_path / "outside.fifo"
    os.mkfifo(fifo_outside)

    def unix_socket(path: Path) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.bind(str(path))

    entries: list[tuple[str, str, Callable[[Path], object]]] = [
        (f"{1:032x}.png", "symlink to a file outside", lambda p: p.symlink_to(tmp_path / "secret.png")),
        (f"{2:032x}.png", "symlink to our own image", lambda p: p.symlink_to(save / OURS)),
        (f"{3:032x}.jpg", "symlink to /etc/passwd", lambda p: p.symlink_to("/etc/passwd")),
        (f"{4:032x}.webp", "symlink to /dev/zero (endless if followed)", lambda p: p.symlink_to("/dev/zero")),
        (f"{5:032x}.png", "dangling symlink", lambda p: p.symlink_to(tmp_path / "missing.png")),
        (f"{6:032x}.png", "symlink loop", lambda p: p.symlink_to(save / f"{7:032x}.png")),
        (f"{7:032x}.png", "symlink loop", lambda p: p.symlink_to(save / f"{6:032x}.png")),
        (f"{8:032x}.png", "symlink to the parent directory", lambda p: p.symlink_to("..")),
        (f"{9:032x}.png", "directory", lambda p: p.mkdir()),
        (f"{10:032x}.png", "FIFO (blocks whoever opens it)", os.mkfifo),
        (f"{11:032x}.png", "symlink to a FIFO", lambda p: p.symlink_to(fifo_outside)),
        (f"{12:032x}.png", "UNIX socket", unix_socket),
        (f"cat-{13:032x}.jpg", "prefixed name, symlink outside", lambda p: p.symlink_to(tmp_path / "passwd")),
    ]
    for name, _, make in entries:
        make(save / name)
    return {name: what for name, what, _ in entries}


async def test_things_planted_in_the_save_dir_are_never_served_or_followed(served: Served, tmp_path: Path) -> None:
    planted = _plant(served, tmp_path)
    # Every request is bounded: a FIFO or /dev/zero that got opened would hang or stream forever.
    results = await asyncio.gather(*(_get(served, f"/images/{n}", m) for n in planted for m in ("GET", "HEAD")))
    for (name, what), (status, body) in zip(
        [(n, w) for n, w in planted.items() for _ in ("GET", "HEAD")], results, strict=True
    ):
        assert status == 404, (name, what, status)
        assert not _reveals(served, body), (what, _reveals(served, body))
    # The FIFOs were never opened: a non-blocking open for writing finds no reader.
    for fifo in (served.save_dir / f"{10:032x}.png", tmp_path / "outside.fifo"):
        with pytest.raises(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    # And the server still serves its own file.
    assert await _get(served, f"/images/{OURS}") == (200, PNG)


async def test_a_save_dir_entry_swapped_for_a_symlink_is_not_served(served: Served, tmp_path: Path) -> None:
    """Once served, a file replaced by a symlink (same name) is 404 from then on."""
    name = f"{20:032x}.png"
    path = served.save_dir / name
    path.write_bytes(PNG)
    assert await _get(served, f"/images/{name}") == (200, PNG)
    path.unlink()
    path.symlink_to(tmp_path / "secret.png")
    status, body = await _get(served, f"/images/{name}")
    assert status == 404 and SECRET not in body

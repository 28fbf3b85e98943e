"""A folder as a blob store: atomic writes (temp file, fsync, rename), today's layout."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from ..errors import StorageError
from . import BlobInfo

__all__ = ["TMP_PREFIX", "FileBlobStore"]

TMP_PREFIX: Final = ".tmp-"
_NAME_RE: Final = re.compile(r"^(?:\.records/|\.inputs/)?[A-Za-z0-9_-][A-Za-z0-9_.-]{0,200}\Z")
"""Names this store accepts: one level below the folder (or its ``.records``), never ``..``."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(directory: Path, final_name: str, data: bytes) -> Path:
    """Write ``data`` to ``directory/final_name`` so readers see all of it or nothing."""
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        target = directory / final_name
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)
    return target


class FileBlobStore:
    kind = "file"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, name: str) -> Path:
        if not _NAME_RE.match(name) or ".." in name:
            raise FileNotFoundError(f"not a name this store writes: {name[:80]!r}")
        return self.directory / name

    def open(self) -> None:
        try:
            (self.directory / ".records").mkdir(parents=True, exist_ok=True)
            probe = _atomic_write(self.directory, f"{TMP_PREFIX}probe-{secrets.token_hex(4)}", b"")
            probe.unlink()
        except OSError as exc:
            raise StorageError(
                f"MCP_IMAGE_SAVE_DIR={self.directory} is not a writable directory: {exc.strerror or exc}",
                details={"path": str(self.directory)},
            ) from exc

    def sweep_temp(self, older_than: float) -> list[str]:
        """Remove temp files (``.tmp-*``, here and in ``.records``) last modified before ``older_than``.

        A younger one may be a write in progress, here or in another process sharing the folder.
        Returns the names removed.
        """
        removed = []
        for prefix in ("", ".records/"):
            for name, info in self.scan(prefix).items():
                if name.removeprefix(prefix).startswith(TMP_PREFIX) and info.last_modified < older_than:
                    try:
                        (self.directory / name).unlink(missing_ok=True)
                    except OSError:
                        continue
                    removed.append(name)
        return removed

    def put(self, name: str, data: bytes) -> None:
        path = self._path(name)
        try:
            try:
                _atomic_write(path.parent, path.name, data)
            except FileNotFoundError:
                # A first write under a new prefix (``.inputs/``), or someone removed the save directory
                # while we run: create it rather than fail forever.
                path.parent.mkdir(parents=True, exist_ok=True)
                _atomic_write(path.parent, path.name, data)
        except OSError as exc:
            raise StorageError(
                f"could not save the image in {self.directory}: {exc.strerror or exc}",
                details={"path": str(self.directory)},
            ) from exc

    def get(self, name: str) -> bytes | None:
        try:
            return self._path(name).read_bytes()
        except OSError:
            return None

    def stat(self, name: str) -> BlobInfo | None:
        path = self.local_path(name)
        if path is None:
            return None
        st = path.stat()
        return BlobInfo(st.st_size, f'"{st.st_mtime_ns:x}-{st.st_size:x}"', st.st_mtime)

    async def stream(self, name: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        data = await asyncio.to_thread(self.get, name)
        if data is None:
            raise FileNotFoundError(name)
        for start in range(0, len(data), chunk_size):
            yield data[start : start + chunk_size]

    def delete(self, name: str) -> None:
        try:
            self._path(name).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"could not delete {name} in {self.directory}: {exc.strerror or exc}") from exc

    def names(self, prefix: str = "") -> list[str]:
        """Names directly under ``prefix`` (``""``: the images; ``.records/``: the sidecars)."""
        base = self.directory / prefix
        try:
            return [prefix + e.name for e in os.scandir(base) if e.is_file(follow_symlinks=False)]
        except OSError:
            return []

    def scan(self, prefix: str = "") -> dict[str, BlobInfo]:
        found: dict[str, BlobInfo] = {}
        try:
            with os.scandir(self.directory / prefix) as entries:
                for e in entries:
                    try:
                        if not e.is_file(follow_symlinks=False):
                            continue
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue  # removed while we listed
                    found[prefix + e.name] = BlobInfo(st.st_size, f'"{st.st_mtime_ns:x}-{st.st_size:x}"', st.st_mtime)
        except OSError:
            pass  # a folder removed while we run holds nothing (put recreates it)
        return found

    async def presign(self, name: str, ttl: float) -> str | None:
        return None

    def local_path(self, name: str) -> Path | None:
        try:
            path = self._path(name)
            st = os.lstat(path)
        except OSError:
            return None
        return path if stat.S_ISREG(st.st_mode) else None

    def location(self, name: str) -> str:
        return str(self.directory / name)

    def healthy(self) -> bool:
        return os.access(self.directory, os.W_OK)

"""A folder as a blob store: atomic writes (temp file, fsync, rename, fsync of the folder), today's layout."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import stat
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from ..errors import StorageError
from . import BlobInfo

__all__ = ["TMP_PREFIX", "FileBlobStore"]

TMP_PREFIX: Final = ".tmp-"
_NAME_RE: Final = re.compile(r"^(?:\.records/|\.inputs/)?[A-Za-z0-9_-][A-Za-z0-9_.-]{0,200}\Z")
"""Names this store accepts: one level below the folder (or its ``.records``), never ``..``."""


class _DirSync:
    """Group commit for one directory's fsync: an fsync covers every rename made in the directory
    before it began, so saves running at once share one instead of queueing for one each."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._count = threading.Lock()  # guards the two counters, held only briefly
        self._one = threading.Lock()  # one fsync of this directory at a time
        self._renamed = 0
        self._synced = 0

    def sync(self) -> None:
        """Return once the renames made before this call are durable (errors ignored, as before)."""
        with self._count:
            self._renamed += 1
            mine = self._renamed
        with self._one:
            if self._synced >= mine:
                return  # an fsync that began after our rename already made it durable
            with self._count:
                upto = self._renamed
            _fsync_dir(self._path)
            self._synced = upto


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


_OPEN_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _create_temp(directory: Path) -> tuple[int, str]:
    """A new, empty temp file only we opened (``mkstemp`` without its per-call overhead)."""
    for _ in range(16):
        tmp = os.path.join(directory, f"{TMP_PREFIX}{secrets.token_hex(8)}")
        try:
            return os.open(tmp, _OPEN_FLAGS, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temp file name in {directory}")


def _atomic_write(directory: Path, final_name: str, data: bytes, dir_sync: _DirSync | None = None) -> Path:
    """Write ``data`` to ``directory/final_name`` so readers see all of it or nothing, and durably:
    the bytes are fsynced before the rename and the directory after it (most of a save's cost)."""
    fd, tmp = _create_temp(directory)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o644)
            os.fsync(fd)
        finally:
            os.close(fd)
        if not hasattr(os, "fchmod"):
            os.chmod(tmp, 0o644)
        target = directory / final_name
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if dir_sync is None:
        _fsync_dir(directory)
    else:
        dir_sync.sync()
    return target


class FileBlobStore:
    kind = "file"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._syncs: dict[Path, _DirSync] = {}
        """One per folder written (the images, ``.records``, ``.inputs``): shared directory fsyncs."""
        self._syncs_lock = threading.Lock()

    def _dir_sync(self, folder: Path) -> _DirSync:
        with self._syncs_lock:
            found = self._syncs.get(folder)
            if found is None:
                found = self._syncs[folder] = _DirSync(folder)
            return found

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
                _atomic_write(path.parent, path.name, data, self._dir_sync(path.parent))
            except FileNotFoundError:
                # A first write under a new prefix (``.inputs/``), or someone removed the save directory
                # while we run: create it rather than fail forever.
                path.parent.mkdir(parents=True, exist_ok=True)
                _atomic_write(path.parent, path.name, data, self._dir_sync(path.parent))
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

"""ImageStore: atomic image files under collision-free ids, plus TTL records that survive restarts.

Layout of the save directory::

    [prefix-]<32 hex id>.<png|jpg|webp>   the image, written to a temp file then renamed
    .records/<id>.json                    the record sidecar, written the same way after the image

A sidecar is only ever written after its image is in place, and a result is only
reported after both, so a crash can leave temp files or an unreported image without a
record, never a record without its image; ``open`` removes both kinds of leftover.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from cachetools import TTLCache

from .errors import ImageExpiredError, ImageNotFoundError, StorageError
from .models import EXTENSIONS, GeneratedImage, ImageRecord

__all__ = ["FILE_NAME_RE", "ImageStore", "sanitize_prefix"]

logger = logging.getLogger(__name__)

ID_RE: Final = re.compile(r"^[0-9a-f]{32}\Z")
FILE_NAME_RE: Final = re.compile(r"^(?:(?P<prefix>[A-Za-z0-9_-]{1,64})-)?(?P<id>[0-9a-f]{32})\.(?:png|jpg|webp)\Z")
"""The only file names the store writes, and so the only ones ``/images`` serves."""

_PREFIX_BAD: Final = re.compile(r"[^A-Za-z0-9_-]+")
_TMP_PREFIX: Final = ".tmp-"
_RECORDS: Final = ".records"


def sanitize_prefix(raw: str | None) -> tuple[str | None, bool]:
    """Return a prefix safe in any file system (letters, digits, ``_``, ``-``; <= 64) and whether it changed."""
    if raw is None or raw == "":
        return None, False
    cleaned = _PREFIX_BAD.sub("_", raw).strip("_-")[:64].strip("_-")
    return (cleaned or None), cleaned != raw


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
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=directory)
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


class ImageStore:
    """Saves images and resolves ids to records; safe to call from worker threads."""

    def __init__(
        self,
        save_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
        max_items: int = 2048,
    ) -> None:
        self.save_dir = save_dir
        self._records_dir = save_dir / _RECORDS
        self._clock = clock
        # Entries carry their own expiry; the cache's ttl only bounds memory. A miss reads the
        # sidecar from disk, so the cache stays small: it holds the recently used records only.
        self._cache: TTLCache[str, ImageRecord] = TTLCache(maxsize=max_items, ttl=10 * 365 * 86400, timer=clock)

    def open(self) -> None:
        """Create the directories, prove they are writable and sweep crash leftovers.

        Raises:
            StorageError: naming ``MCP_IMAGE_SAVE_DIR`` and the reason.
        """
        try:
            self._records_dir.mkdir(parents=True, exist_ok=True)
            probe = _atomic_write(self.save_dir, f"{_TMP_PREFIX}probe-{secrets.token_hex(4)}", b"")
            probe.unlink()
        except OSError as exc:
            raise StorageError(
                f"MCP_IMAGE_SAVE_DIR={self.save_dir} is not a writable directory: {exc.strerror or exc}",
                details={"path": str(self.save_dir)},
            ) from exc
        self._sweep()

    def _sweep(self) -> None:
        """Remove what a crash can leave: temp files, and images whose record was never written.

        Such an image was never reported to anyone (results are sent after both writes), so
        deleting it loses nothing and keeps the directory consistent.
        """
        for directory in (self.save_dir, self._records_dir):
            for leftover in directory.glob(f"{_TMP_PREFIX}*"):
                leftover.unlink(missing_ok=True)
        for entry in os.scandir(self.save_dir):
            m = FILE_NAME_RE.match(entry.name)
            if m and entry.is_file(follow_symlinks=False) and not (self._records_dir / f"{m['id']}.json").exists():
                logger.warning("removing %s: written before a crash, never reported", entry.name)
                os.unlink(entry.path)

    def save(
        self,
        image: GeneratedImage,
        *,
        provider: str,
        model: str,
        style: str | None,
        prompt: str,
        ttl: float,
        file_prefix: str | None = None,
    ) -> ImageRecord:
        """Write one image and its record atomically.

        Raises:
            StorageError: the disk refused (full, read-only, removed directory).
        """
        ext = EXTENSIONS.get(image.mime_type)
        if ext is None:
            raise StorageError(f"unsupported image type {image.mime_type!r}")
        image_id = secrets.token_hex(16)
        prefix, _ = sanitize_prefix(file_prefix)
        file_name = f"{prefix}-{image_id}.{ext}" if prefix else f"{image_id}.{ext}"
        now = self._clock()
        record = ImageRecord(
            image_id=image_id,
            file_name=file_name,
            provider=provider,
            model=model,
            style=style,
            resolution=f"{image.width}x{image.height}",
            width=image.width,
            height=image.height,
            mime_type=image.mime_type,
            size_bytes=len(image.data),
            prompt=prompt,
            revised_prompt=image.revised_prompt,
            seed=image.seed,
            created_at=now,
            expires_at=now + ttl,
        )
        try:
            try:
                _atomic_write(self.save_dir, file_name, image.data)
            except FileNotFoundError:
                # Someone removed the save directory while we run: recreate it rather than fail forever.
                logger.warning("save directory %s vanished; recreating it", self.save_dir)
                self._records_dir.mkdir(parents=True, exist_ok=True)
                _atomic_write(self.save_dir, file_name, image.data)
            try:
                _atomic_write(self._records_dir, f"{image_id}.json", json.dumps(record.to_json()).encode())
            except OSError:
                (self.save_dir / file_name).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageError(
                f"could not save the image in {self.save_dir}: {exc.strerror or exc}",
                details={"path": str(self.save_dir)},
            ) from exc
        self._cache[image_id] = record
        return record

    def get(self, image_id: str) -> ImageRecord:
        """The record for ``image_id``.

        Raises:
            ImageNotFoundError: malformed or unknown id, or its file is gone.
            ImageExpiredError: the record's TTL has passed.
        """
        if not ID_RE.match(image_id):
            raise ImageNotFoundError(
                f"{image_id!r} is not an image id (expected 32 lowercase hex characters)",
                details={"image_id": image_id[:80]},
            )
        record = self._cache.get(image_id) or self._load_sidecar(image_id)
        if record is None:
            raise ImageNotFoundError(f"no image with id {image_id}", details={"image_id": image_id})
        if self._clock() >= record.expires_at:
            self._cache.pop(image_id, None)
            raise ImageExpiredError(
                f"image {image_id} expired; its record lived {int(record.expires_at - record.created_at)} s "
                "(MCP_IMAGE_RECORD_TTL). Generate it again.",
                details={"image_id": image_id, "expired_at": record.expires_at},
            )
        self._cache[image_id] = record
        return record

    def read_bytes(self, record: ImageRecord) -> bytes:
        """The image's bytes.

        Raises:
            ImageNotFoundError: the file was deleted from the save directory.
        """
        try:
            return (self.save_dir / record.file_name).read_bytes()
        except OSError as exc:
            raise ImageNotFoundError(
                f"the file of image {record.image_id} is no longer in the save directory",
                details={"image_id": record.image_id},
            ) from exc

    def path_of(self, record: ImageRecord) -> Path:
        return self.save_dir / record.file_name

    def resolve_file(self, name: str) -> Path | None:
        """The path of a file we wrote, or ``None`` for anything else (traversal, symlinks, strangers)."""
        if not FILE_NAME_RE.match(name):
            return None
        path = self.save_dir / name
        try:
            st = os.lstat(path)
        except OSError:
            return None
        return path if stat.S_ISREG(st.st_mode) else None

    def _load_sidecar(self, image_id: str) -> ImageRecord | None:
        path = self._records_dir / f"{image_id}.json"
        try:
            data = json.loads(path.read_bytes())
            record = ImageRecord.from_json(data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            logger.warning("ignoring unreadable record %s", path.name)
            return None
        if record.image_id != image_id or not FILE_NAME_RE.match(record.file_name):
            logger.warning("ignoring inconsistent record %s", path.name)
            return None
        return record

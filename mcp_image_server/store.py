"""ImageStore: images under collision-free ids, plus TTL records that survive restarts.

Layout in the blob store (a folder by default, or an S3 bucket, see ``blobs``)::

    [prefix-]<32 hex id>.<png|jpg|webp>   the image, written whole or not at all
    .records/<id>.json                    the record sidecar, written after the image

A sidecar is only ever written after the store accepted its image, and a result is only
reported after both, so a crash can leave an unreported image without a record, never a
record without its image; ``open`` removes such leftovers from a folder. The record lives
beside its image, so every replica sharing the store reads the same records.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from cachetools import TTLCache

from .blobs import BlobStore
from .blobs.file import FileBlobStore
from .errors import ImageExpiredError, ImageNotFoundError, StorageError
from .models import EXTENSIONS, GeneratedImage, ImageRecord

__all__ = ["FILE_NAME_RE", "ImageStore", "sanitize_prefix"]

logger = logging.getLogger(__name__)

ID_RE: Final = re.compile(r"^[0-9a-f]{32}\Z")
FILE_NAME_RE: Final = re.compile(r"^(?:(?P<prefix>[A-Za-z0-9_-]{1,64})-)?(?P<id>[0-9a-f]{32})\.(?:png|jpg|webp)\Z")
"""The only file names the store writes, and so the only ones ``/images`` serves."""

_PREFIX_BAD: Final = re.compile(r"[^A-Za-z0-9_-]+")
_RECORDS: Final = ".records/"


def sanitize_prefix(raw: str | None) -> tuple[str | None, bool]:
    """Return a prefix safe in any file system (letters, digits, ``_``, ``-``; <= 64) and whether it changed."""
    if raw is None or raw == "":
        return None, False
    cleaned = _PREFIX_BAD.sub("_", raw).strip("_-")[:64].strip("_-")
    return (cleaned or None), cleaned != raw


class ImageStore:
    """Saves images and resolves ids to records; safe to call from worker threads."""

    def __init__(
        self,
        blobs: BlobStore | Path,
        *,
        clock: Callable[[], float] = time.time,
        max_items: int = 2048,
    ) -> None:
        self.blobs: BlobStore = FileBlobStore(blobs) if isinstance(blobs, Path) else blobs
        self._clock = clock
        # Entries carry their own expiry; the cache's ttl only bounds memory. A miss reads the
        # sidecar from disk, so the cache stays small: it holds the recently used records only.
        self._cache: TTLCache[str, ImageRecord] = TTLCache(maxsize=max_items, ttl=10 * 365 * 86400, timer=clock)

    @property
    def save_dir(self) -> Path | None:
        """The local folder, when the store is one."""
        return self.blobs.directory if isinstance(self.blobs, FileBlobStore) else None

    @property
    def where(self) -> str:
        """The store for people and logs: a folder or ``s3://bucket/prefix`` (never credentials)."""
        return self.blobs.location("").rstrip("/")

    def open(self) -> None:
        """Prove the store is writable and, in a folder, sweep crash leftovers.

        Raises:
            StorageError: naming the setting and the reason.
        """
        self.blobs.open()
        if isinstance(self.blobs, FileBlobStore):
            self._sweep(self.blobs)

    def _sweep(self, folder: FileBlobStore) -> None:
        """Remove images whose record was never written.

        Such an image was never reported to anyone (results are sent after both writes), so
        deleting it loses nothing and keeps the folder consistent.
        """
        records = {name[len(_RECORDS):] for name in folder.names(_RECORDS)}
        for name in folder.names():
            m = FILE_NAME_RE.match(name)
            if m and f"{m['id']}.json" not in records and folder.local_path(name) is not None:
                logger.warning("removing %s: written before a crash, never reported", name)
                folder.delete(name)

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
            StorageError: the store refused (full, read-only); StorageUnavailableError: it did not answer.
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
        self.blobs.put(file_name, image.data)
        try:
            self.blobs.put(f"{_RECORDS}{image_id}.json", json.dumps(record.to_json()).encode())
        except StorageError:
            try:
                self.blobs.delete(file_name)
            except StorageError:
                logger.warning("could not remove %s after its record failed; it is never reported", file_name)
            raise
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
            ImageNotFoundError: the file was deleted from the store; StorageUnavailableError.
        """
        data = self.blobs.get(record.file_name)
        if data is None:
            raise ImageNotFoundError(
                f"the file of image {record.image_id} is no longer in the image store",
                details={"image_id": record.image_id},
            )
        return data

    def resolve_file(self, name: str) -> Path | None:
        """The local file of an image we wrote, or ``None`` (traversal, symlinks, strangers, not a folder)."""
        return self.blobs.local_path(name) if FILE_NAME_RE.match(name) else None

    def location_of(self, record: ImageRecord) -> str:
        return self.blobs.location(record.file_name)

    def _load_sidecar(self, image_id: str) -> ImageRecord | None:
        name = f"{_RECORDS}{image_id}.json"
        raw = self.blobs.get(name)
        if raw is None:
            return None
        try:
            record = ImageRecord.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            logger.warning("ignoring unreadable record %s", name)
            return None
        if record.image_id != image_id or not FILE_NAME_RE.match(record.file_name):
            logger.warning("ignoring inconsistent record %s", name)
            return None
        return record

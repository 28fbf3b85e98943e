"""ImageStore: images under collision-free ids, plus TTL records that survive restarts.

Layout in the blob store (a folder by default, or an S3 bucket, see ``blobs``)::

    [prefix-]<32 hex id>.<png|jpg|webp>   the image, written whole or not at all
    .records/<id>.json                    the record sidecar, written after the image

A sidecar is only ever written after the store accepted its image, and a result is only
reported after both, so a crash can leave an unreported image without a record, never a
record without its image; ``open`` removes such leftovers (and temp files) from a folder once
they are older than ``WRITE_GRACE``, since a younger one may be another process's write in
progress. The record lives beside its image, so every replica sharing the store reads the same
records.

Retention (``MCP_IMAGE_RETENTION``) and the size cap (``MCP_IMAGE_STORE_MAX_BYTES``) are kept by
``sweep``, run every minute by ``sweep_forever`` and on demand by ``ensure_room``. It deletes the
record first, then the image, so the only half state it can leave is the harmless one above. It
never deletes an image this process is writing or reading, nor one without its record that is
younger than ``WRITE_GRACE`` (another replica may be writing it). Across replicas the reader
protection is best effort: a read already started completes (an open file outlives its unlink; an
S3 GET already answering finishes), but one replica cannot see another's readers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cachetools import TTLCache

from .blobs import BlobInfo, BlobStore
from .blobs.file import FileBlobStore
from .config import Settings
from .errors import ImageExpiredError, ImageNotFoundError, StorageError, StorageFullError
from .inputs import INPUT_PREFIX
from .models import EXTENSIONS, GeneratedImage, ImageRecord

__all__ = ["FILE_NAME_RE", "ImageStore", "RetentionPolicy", "Usage", "sanitize_prefix"]

logger = logging.getLogger(__name__)

ID_RE: Final = re.compile(r"^[0-9a-f]{32}\Z")
FILE_NAME_RE: Final = re.compile(r"^(?:(?P<prefix>[A-Za-z0-9_-]{1,64})-)?(?P<id>[0-9a-f]{32})\.(?:png|jpg|webp)\Z")
"""The only file names the store writes, and so the only ones ``/images`` serves."""

_PREFIX_BAD: Final = re.compile(r"[^A-Za-z0-9_-]+")
_RECORDS: Final = ".records/"

INPUT_TTL: Final = 86400.0
"""An edit's inputs are kept a day: long enough for any queued job to load them."""
WRITE_GRACE: Final = 600.0
"""Seconds an image without its record (or a record without its image) is left alone: it may be
mid-write on another replica. Older ones were left by a crash and are never reported."""
SWEEP_INTERVAL: Final = 60.0
"""Seconds between sweeps while a retention or a size cap is set."""
IDLE_SWEEP_INTERVAL: Final = 900.0
"""Seconds between sweeps without either: they only recount usage and clear crash leftovers."""


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    retention_s: float = 0.0
    """Seconds after ``created_at`` an image is deleted; 0: kept forever."""
    max_bytes: int = 0
    """Cap on the bytes of images and records together; 0: no cap."""
    grace_s: float = WRITE_GRACE

    def __post_init__(self) -> None:
        if self.retention_s < 0:
            raise ValueError(f"retention_s must be >= 0, got {self.retention_s}")
        if self.max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {self.max_bytes}")
        if self.grace_s < 0:
            raise ValueError(f"grace_s must be >= 0, got {self.grace_s}")

    @classmethod
    def of(cls, settings: Settings) -> RetentionPolicy:
        return cls(settings.image_retention, settings.image_store_max_bytes)

    @property
    def limited(self) -> bool:
        return bool(self.retention_s or self.max_bytes)


@dataclass(frozen=True, slots=True)
class Usage:
    images: int
    bytes: int
    """Images and their records together."""


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
        policy: Callable[[], RetentionPolicy] = RetentionPolicy,
    ) -> None:
        self.blobs: BlobStore = FileBlobStore(blobs) if isinstance(blobs, Path) else blobs
        self._clock = clock
        self._policy = policy
        """Read at each use, so ``reload_config`` applies a new retention or cap."""
        self._lock = threading.Lock()  # guards the sets and counters below; held only briefly
        self._sweep_lock = threading.Lock()  # one sweep at a time
        self._readers: Counter[str] = Counter()
        self._writing: set[str] = set()
        self._doomed: set[str] = set()
        """File names being deleted: a reader that arrives now is told not found."""
        self._created: dict[str, float] = {}
        """``created_at`` by image id, so a sweep reads each sidecar once, not once a minute."""
        self._usage: Usage | None = None
        self._pending = Usage(0, 0)
        """Saved since the running sweep listed the store (added to its count)."""
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
        """Prove the store is writable and, in a folder, sweep crash leftovers older than the grace.

        Raises:
            StorageError: naming the setting and the reason.
        """
        self.blobs.open()
        if isinstance(self.blobs, FileBlobStore):
            self._sweep(self.blobs, self._policy().grace_s)

    def _sweep(self, folder: FileBlobStore, grace: float) -> None:
        """Remove temp files, and images whose record was never written, last modified over ``grace`` s ago.

        Such an image was never reported to anyone (results are sent after both writes), so
        deleting it loses nothing and keeps the folder consistent. A younger one, or a younger
        temp file, may be a write in progress in another process sharing the folder (a replica,
        or a second server started on it), so it is left to a later sweep.
        """
        cutoff = self._clock() - grace
        for name in folder.sweep_temp(cutoff):
            logger.warning("removed %s: a temp file left by a crash", name)
        records = {name[len(_RECORDS):] for name in folder.names(_RECORDS)}
        for name, info in folder.scan().items():
            m = FILE_NAME_RE.match(name)
            if (m and f"{m['id']}.json" not in records and info.last_modified < cutoff
                    and folder.local_path(name) is not None):
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
        owner: str = "",
        cost_usd: float | None = None,
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
            owner=owner,
            cost_usd=cost_usd,
        )
        sidecar = json.dumps(record.to_json()).encode()
        with self._lock:
            self._writing.add(file_name)
        try:
            self.blobs.put(file_name, image.data)
            try:
                self.blobs.put(f"{_RECORDS}{image_id}.json", sidecar)
            except StorageError:
                try:
                    self.blobs.delete(file_name)
                except StorageError:
                    logger.warning("could not remove %s after its record failed; it is never reported", file_name)
                raise
            self._cache[image_id] = record
            self._count(image_id, now, len(image.data) + len(sidecar))
        finally:
            with self._lock:
                self._writing.discard(file_name)
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
        if record is None or self._retired(record):
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
        with self.reading(record.file_name):
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

    # --- retention, size cap and usage ---------------------------------------------------------

    def _retired(self, record: ImageRecord) -> bool:
        """Past retention (the sweep may not have run yet) or being deleted: it reads as unknown."""
        retention = self._policy().retention_s
        if retention and self._clock() >= record.created_at + retention:
            return True
        with self._lock:
            return record.file_name in self._doomed

    def _count(self, image_id: str, created_at: float, size: int) -> None:
        limited = self._policy().limited  # only a retention or a cap sorts by age; else the map would only grow
        with self._lock:
            if limited:
                self._created[image_id] = created_at
            self._pending = Usage(self._pending.images + 1, self._pending.bytes + size)
            if self._usage is not None:
                self._usage = Usage(self._usage.images + 1, self._usage.bytes + size)

    @contextmanager
    def reading(self, file_name: str) -> Iterator[None]:
        """Keep the sweep off ``file_name`` while this process reads or streams it.

        Raises:
            ImageNotFoundError: the sweep is deleting it.
        """
        with self._lock:
            if file_name in self._doomed:
                raise ImageNotFoundError(f"{file_name} is no longer in the image store")
            self._readers[file_name] += 1
        try:
            yield
        finally:
            with self._lock:
                self._readers[file_name] -= 1
                if self._readers[file_name] <= 0:
                    del self._readers[file_name]

    def usage(self) -> Usage | None:
        """Images and bytes held, as of the last sweep plus saves since (``None`` before the first sweep)."""
        with self._lock:
            return self._usage

    def usage_info(self) -> dict[str, Any]:
        """For ``/health``: counts and limits, never a path or a credential."""
        usage, policy = self.usage(), self._policy()
        return {
            "images": None if usage is None else usage.images,
            "bytes": None if usage is None else usage.bytes,
            "max_bytes": policy.max_bytes,
            "retention_s": policy.retention_s,
        }

    def may_be_full(self) -> bool:
        """Whether ``ensure_room`` could have work to do (a cap is set and not known to be met): a
        cheap check on the event loop, so a save without a cap skips a worker-thread hop."""
        cap = self._policy().max_bytes
        if not cap:
            return False
        usage = self.usage()
        return usage is None or usage.bytes >= cap

    def ensure_room(self) -> None:
        """Below ``MCP_IMAGE_STORE_MAX_BYTES``, or made so by a sweep (the oldest images go first).

        Raises:
            StorageFullError: still at the cap after the sweep (what is left is being written or read).
            StorageUnavailableError: the store did not answer the sweep's listing.
        """
        cap = self._policy().max_bytes
        if not cap:
            return
        usage = self.usage()
        if usage is not None and usage.bytes < cap:
            return
        usage = self.sweep()
        if usage.bytes >= cap:
            raise StorageFullError(
                f"the image store holds {usage.bytes} bytes, at its cap of {cap} (MCP_IMAGE_STORE_MAX_BYTES), and "
                "nothing more can be deleted now (the rest is being written or read); try again shortly",
                details={"used_bytes": usage.bytes, "max_bytes": cap},
            )

    def sweep(self) -> Usage:
        """Delete images past retention, the oldest past the size cap, and crash leftovers older than the
        grace; recount usage from a full listing. One sweep runs at a time.

        Raises:
            StorageUnavailableError: the store did not answer (nothing is deleted on a partial view).
        """
        with self._sweep_lock:
            return self._sweep_once(self._policy())

    def _sweep_once(self, policy: RetentionPolicy) -> Usage:
        now = self._clock()
        with self._lock:
            self._pending = Usage(0, 0)
        if isinstance(self.blobs, FileBlobStore):
            for name in self.blobs.sweep_temp(now - policy.grace_s):
                logger.warning("removed %s: a temp file left by a crash", name)
        # Records first: a save between the two listings then shows as a young image without its
        # record (left alone), never as a record without its image.
        records: dict[str, BlobInfo] = {}
        for name, info in self.blobs.scan(_RECORDS).items():
            image_id = name[len(_RECORDS):].removesuffix(".json")
            if name.endswith(".json") and ID_RE.match(image_id):
                records[image_id] = info
        pairs: dict[str, tuple[str, int]] = {}  # image id -> (file name, bytes of image and record)
        used = sum(info.size for info in records.values())
        leftovers = 0
        for name, info in self.blobs.scan().items():
            m = FILE_NAME_RE.match(name)
            if m is None:
                continue
            used += info.size
            if m["id"] in records:
                pairs[m["id"]] = (name, info.size + records[m["id"]].size)
            elif now - info.last_modified > policy.grace_s and self._delete(None, name):
                logger.warning("removing %s: its record was never written (a crash), so it was never reported", name)
                used -= info.size
            else:
                leftovers += 1
        for image_id, info in records.items():
            if image_id not in pairs and now - info.last_modified > policy.grace_s and self._delete(image_id, None):
                logger.warning("removing the record of %s: its image is gone", image_id)
                used -= info.size
        for name, info in self.blobs.scan(INPUT_PREFIX).items():
            if now - info.last_modified > INPUT_TTL:  # an edit's input, long since used by its job
                self.blobs.delete(name)
        expired = evicted = 0
        if policy.limited:
            oldest = sorted(pairs, key=lambda i: self._created_at(i, records[i]))
            for image_id in oldest:
                file_name, size = pairs[image_id]
                created = self._created_at(image_id, records[image_id])
                past = bool(policy.retention_s) and now >= created + policy.retention_s
                if not past and not (policy.max_bytes and used >= policy.max_bytes):
                    break  # oldest first: nothing younger is past retention, and we are under the cap
                if self._delete(image_id, file_name):  # else being read or written: try the next
                    used -= size
                    del pairs[image_id]
                    if past:
                        expired += 1
                    else:
                        evicted += 1
        if expired or evicted:
            logger.info(
                "image store sweep: deleted %d image(s) past MCP_IMAGE_RETENTION and %d of the oldest over "
                "MCP_IMAGE_STORE_MAX_BYTES; %d bytes left", expired, evicted, used,
            )
        with self._lock:
            self._usage = Usage(len(pairs) + leftovers + self._pending.images, used + self._pending.bytes)
            stale = [i for i, t in self._created.items() if i not in pairs and t < now - policy.grace_s]
            for image_id in stale:
                del self._created[image_id]
            return self._usage

    def _created_at(self, image_id: str, sidecar: BlobInfo) -> float:
        known = self._created.get(image_id)
        if known is None:
            record = self._cache.get(image_id) or self._load_sidecar(image_id)
            known = record.created_at if record is not None else sidecar.last_modified
            with self._lock:
                self._created[image_id] = known
        return known

    def _delete(self, image_id: str | None, file_name: str | None) -> bool:
        """Delete a record, then its image; ``False`` (nothing deleted) while the image is written or read."""
        with self._lock:
            if file_name is not None:
                if self._readers[file_name] or file_name in self._writing:
                    return False
                self._doomed.add(file_name)
        try:
            if image_id is not None:
                self.blobs.delete(f"{_RECORDS}{image_id}.json")
                self._cache.pop(image_id, None)
                with self._lock:
                    self._created.pop(image_id, None)
            if file_name is not None:
                self.blobs.delete(file_name)
        finally:
            if file_name is not None:
                with self._lock:
                    self._doomed.discard(file_name)
        return True

    async def sweep_forever(self) -> None:
        """Sweep now and then every minute (every 15 with no limit set) until cancelled; failures are logged."""
        policy = self._policy()
        if policy.limited:
            logger.info(
                "image retention: %s; size cap: %s",
                f"{policy.retention_s:g} s" if policy.retention_s else "none",
                f"{policy.max_bytes} bytes" if policy.max_bytes else "none",
            )
        while True:
            try:
                await asyncio.to_thread(self.sweep)
            except StorageError as exc:
                logger.warning("image store sweep failed (%s: %s); trying again later", exc.code, exc.message)
            except Exception:
                logger.exception("image store sweep failed; trying again later")
            await asyncio.sleep(SWEEP_INTERVAL if self._policy().limited else IDLE_SWEEP_INTERVAL)

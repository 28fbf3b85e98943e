"""Blob stores: where image bytes and their record sidecars live (a folder, or an S3 bucket).

``ImageStore`` is written against :class:`BlobStore` only; ``open_blob_store`` picks the
implementation from ``MCP_IMAGE_STORE_URL``. Both are synchronous (callers run them off the
event loop) except ``stream``, which the HTTP handler awaits chunk by chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..config import Settings

__all__ = ["BlobInfo", "BlobStore", "open_blob_store"]


@dataclass(frozen=True, slots=True)
class BlobInfo:
    size: int
    etag: str
    """A quoted entity tag, as the HTTP ``ETag`` header carries it."""
    last_modified: float


class BlobStore(Protocol):
    kind: str
    """``file`` or ``s3``: what ``/health`` names."""

    def open(self) -> None:
        """Prove the store is reachable and writable. Raises: StorageError naming the setting."""

    def put(self, name: str, data: bytes) -> None:
        """Write ``name`` whole or not at all. Raises: StorageError, StorageUnavailableError."""

    def get(self, name: str) -> bytes | None:
        """The bytes, or ``None`` when absent. Raises: StorageUnavailableError."""

    def stat(self, name: str) -> BlobInfo | None:
        """Raises: StorageUnavailableError."""

    def stream(self, name: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        """The bytes in chunks. Raises: StorageUnavailableError, FileNotFoundError."""

    def delete(self, name: str) -> None:
        """Remove ``name`` if present. Raises: StorageUnavailableError."""

    def scan(self, prefix: str = "") -> dict[str, BlobInfo]:
        """Every object directly under ``prefix`` (``""``: the images; ``.records/``: the sidecars), by name.

        One listing (paged by the store), no per-object request. Raises: StorageUnavailableError.
        """

    async def presign(self, name: str, ttl: float) -> str | None:
        """A URL the store itself serves ``name`` at for ``ttl`` s, or ``None`` (a folder has none)."""

    def local_path(self, name: str) -> Path | None:
        """A regular local file to send with ``sendfile``, or ``None`` (not local, or not ours)."""

    def location(self, name: str) -> str:
        """Where ``name`` lives, for people: a path, or ``s3://bucket/prefix/name``."""

    def healthy(self) -> bool:
        """A cheap reachability check for ``/health``."""


def open_blob_store(settings: Settings) -> BlobStore:
    """The store ``MCP_IMAGE_STORE_URL`` names (default: the folder ``MCP_IMAGE_SAVE_DIR``)."""
    url = settings.image_store_url
    if url is not None and url.startswith("s3://"):
        from .s3 import S3BlobStore  # obstore is imported only when S3 is configured

        return S3BlobStore.from_settings(settings)
    from .file import FileBlobStore

    directory = Path(url[len("file://"):]) if url else settings.image_save_dir
    return FileBlobStore(directory)

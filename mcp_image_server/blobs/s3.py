"""An S3-compatible bucket as a blob store, on obstore (one Rust client: retries, timeouts,
conditional create, presigning; sync and async calls without a thread pool of its own).

Objects are written with ``If-None-Match: *`` so a name is written once; a store that does not
answer becomes ``storage_unavailable`` after obstore's bounded retries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import obstore
from obstore.exceptions import AlreadyExistsError, BaseError
from obstore.store import S3Store

from ..config import Settings
from ..errors import StorageError, StorageUnavailableError
from . import BlobInfo

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig

__all__ = ["S3BlobStore"]

T = TypeVar("T")

_CLIENT: ClientConfig = {"timeout": "30s", "connect_timeout": "5s"}
_RETRY: RetryConfig = {
    "max_retries": 2,
    "retry_timeout": timedelta(seconds=10),
    "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=2), "base": 2.0},
}


def _unavailable(action: str, exc: Exception) -> StorageUnavailableError:
    # obstore's message names the URL and the HTTP status, never the credentials; keep only its first line.
    reason = str(exc).split("\n", 1)[0][:300]
    return StorageUnavailableError(
        f"the image store did not {action} ({type(exc).__name__}); try again", details={"reason": reason}
    )


class S3BlobStore:
    kind = "s3"

    def __init__(self, store: S3Store, bucket: str, prefix: str) -> None:
        self._store = store
        self.bucket, self.prefix = bucket, prefix
        self._ok = True

    def _down(self, action: str, exc: Exception) -> StorageUnavailableError:
        self._ok = False
        return _unavailable(action, exc)

    @classmethod
    def from_settings(cls, settings: Settings) -> S3BlobStore:
        url = settings.image_store_url or ""
        bucket, _, prefix = url[len("s3://"):].partition("/")
        config: dict[str, Any] = {"region": settings.aws_region}
        client: dict[str, Any] = dict(_CLIENT)
        if settings.aws_endpoint_url:
            config["endpoint"] = settings.aws_endpoint_url
            client["allow_http"] = settings.aws_endpoint_url.startswith("http://")
        if settings.aws_access_key_id and settings.aws_secret_access_key:
            config["access_key_id"] = settings.aws_access_key_id.get()
            config["secret_access_key"] = settings.aws_secret_access_key.get()
        store = S3Store(
            bucket, prefix=prefix or None, client_options=cast("ClientConfig", client), retry_config=_RETRY, **config
        )
        return cls(store, bucket, prefix)

    def open(self) -> None:
        try:
            obstore.put(self._store, ".probe", b"")
            obstore.delete(self._store, ".probe")
        except BaseError as exc:
            self._ok = False
            raise StorageError(
                f"MCP_IMAGE_STORE_URL=s3://{self.bucket}/{self.prefix} is not a writable bucket: "
                + str(exc).split("\n", 1)[0][:300],
                details={"bucket": self.bucket},
            ) from exc

    def put(self, name: str, data: bytes) -> None:
        try:
            obstore.put(self._store, name, data, mode="create")
            self._ok = True
        except AlreadyExistsError as exc:
            raise StorageError(f"the image store already holds {name}; refusing to overwrite it") from exc
        except BaseError as exc:
            raise self._down("accept the image", exc) from exc

    def _read(self, action: str, call: Callable[[], T]) -> T | None:
        """Run one store call: ``None`` for a missing object, ``storage_unavailable`` when it fails."""
        try:
            result = call()
        except FileNotFoundError:
            result = None
        except BaseError as exc:
            raise self._down(action, exc) from exc
        self._ok = True
        return result

    def get(self, name: str) -> bytes | None:
        return self._read("return the image", lambda: bytes(obstore.get(self._store, name).bytes()))

    def stat(self, name: str) -> BlobInfo | None:
        meta = self._read("answer", lambda: obstore.head(self._store, name))
        if meta is None:
            return None
        etag = meta["e_tag"] or f'"{meta["size"]:x}-{int(meta["last_modified"].timestamp()):x}"'
        return BlobInfo(meta["size"], etag, meta["last_modified"].timestamp())

    async def stream(self, name: str, chunk_size: int = 256 * 1024) -> AsyncIterator[bytes]:
        try:
            result = await obstore.get_async(self._store, name)
            async for chunk in result.stream(min_chunk_size=chunk_size):
                yield bytes(chunk)
        except FileNotFoundError:
            raise
        except BaseError as exc:
            raise self._down("return the image", exc) from exc

    def delete(self, name: str) -> None:
        self._read("delete the image", lambda: obstore.delete(self._store, name))

    def scan(self, prefix: str = "") -> dict[str, BlobInfo]:
        listed = self._read(
            "list the images", lambda: obstore.list_with_delimiter(self._store, prefix.rstrip("/") or None)
        )
        found: dict[str, BlobInfo] = {}
        for meta in listed["objects"] if listed is not None else ():
            modified = meta["last_modified"].timestamp()
            etag = meta["e_tag"] or f'"{meta["size"]:x}-{int(modified):x}"'
            found[meta["path"]] = BlobInfo(meta["size"], etag, modified)
        return found

    async def presign(self, name: str, ttl: float) -> str | None:
        """A GET URL for ``name`` that S3 honours for ``ttl`` seconds (``MCP_IMAGE_URL_MODE=presigned``)."""
        try:
            return await obstore.sign_async(self._store, "GET", name, timedelta(seconds=ttl))
        except BaseError as exc:
            raise self._down("sign a URL", exc) from exc

    def local_path(self, name: str) -> Path | None:
        return None

    def location(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.prefix + '/' if self.prefix else ''}{name}"

    def healthy(self) -> bool:
        """The outcome of the latest call (``/health`` must not wait on a store that hangs)."""
        return self._ok

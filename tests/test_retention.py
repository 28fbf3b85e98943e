"""Image retention and the store's size cap, on a real folder and a real S3 endpoint (moto).

The store runs on a fake clock; a test that needs a write or a delete held half-way wraps the real
blob store in ``Held``, which stops before one call until the test releases it (no sleeps).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from mcp import Client

from mcp_image_server.blobs import BlobStore, open_blob_store
from mcp_image_server.config import load_settings
from mcp_image_server.errors import ImageNotFoundError, StorageFullError
from mcp_image_server.models import GeneratedImage, ImageRecord
from mcp_image_server.store import WRITE_GRACE, ImageStore, RetentionPolicy

from .test_signed_urls import FakeClock, generate, serve, store_env

pytestmark = [pytest.mark.timeout(60), pytest.mark.parametrize("kind", ["file", "s3"])]
PNG = b"\x89PNG\r\n\x1a\n" + b"0" * 100
HOUR = 3600.0


class Knob:
    """The policy the store reads at each use; tests turn it."""

    def __init__(self, policy: RetentionPolicy | None = None) -> None:
        self.policy = policy or RetentionPolicy()

    def __call__(self) -> RetentionPolicy:
        return self.policy


class Held:
    """A real blob store whose ``call`` (``put`` or ``delete``) on names ``match`` accepts waits for ``release``."""

    def __init__(self, inner: BlobStore, call: str, match: Callable[[str], bool]) -> None:
        self._inner, self._call, self._match = inner, call, match
        self.reached, self.release = threading.Event(), threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _hold(self, call: str, name: str) -> None:
        if call == self._call and self._match(name) and not self.release.is_set():
            self.reached.set()
            assert self.release.wait(10), "the test never released the held call"

    def put(self, name: str, data: bytes) -> None:
        self._hold("put", name)
        self._inner.put(name, data)

    def delete(self, name: str) -> None:
        self._hold("delete", name)
        self._inner.delete(name)


def make_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest, clock: FakeClock, knob: Knob,
               wrap: Callable[[BlobStore], Any] | None = None) -> ImageStore:
    blobs = open_blob_store(load_settings(store_env(kind, tmp_path, request)))
    store = ImageStore(wrap(blobs) if wrap else blobs, clock=clock, policy=knob)
    store.open()
    return store


def save(store: ImageStore) -> ImageRecord:
    image = GeneratedImage(data=PNG, mime_type="image/png", width=8, height=8, seed=1)
    return store.save(image, provider="local", model="m", style=None, prompt="p", ttl=30 * 86400)


def gone(store: ImageStore, record: ImageRecord) -> bool:
    """Neither the image nor its record is left in the blob store, and the id reads as unknown."""
    try:
        store.get(record.image_id)
    except ImageNotFoundError:
        unknown = True
    else:
        unknown = False
    sidecar = store.blobs.get(f".records/{record.image_id}.json")
    return unknown and store.blobs.get(record.file_name) is None and sidecar is None


def test_images_past_retention_vanish_with_their_records(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    clock, knob = FakeClock(), Knob(RetentionPolicy(retention_s=HOUR))
    store = make_store(kind, tmp_path, request, clock, knob)
    old = save(store)
    clock.advance(HOUR / 2)
    young = save(store)
    clock.advance(HOUR / 2)
    with pytest.raises(ImageNotFoundError) as info:  # unknown at once, before any sweep
        store.get(old.image_id)
    assert info.value.code == "image_not_found"
    assert store.blobs.get(old.file_name) == PNG  # still there until the sweep
    usage = store.sweep()
    assert gone(store, old)
    assert store.get(young.image_id) == young and store.read_bytes(young) == PNG
    assert usage.images == 1 and usage == store.usage()
    assert usage.bytes == sum(i.size for i in {**store.blobs.scan(), **store.blobs.scan(".records/")}.values())


def test_over_the_cap_the_oldest_go_first_and_a_new_save_is_counted(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    clock, knob = FakeClock(), Knob()
    store = make_store(kind, tmp_path, request, clock, knob)
    records = []
    for _ in range(3):
        records.append(save(store))
        clock.advance(60)
    full = store.sweep()
    assert full.images == 3
    knob.policy = RetentionPolicy(max_bytes=full.bytes - 1)  # one image over: only the oldest goes
    after = store.sweep()
    assert gone(store, records[0])
    assert [store.get(r.image_id) for r in records[1:]] == records[1:]
    assert after.images == 2 and after.bytes < full.bytes - 1
    fourth = save(store)  # the running total moves with each save, between sweeps
    usage = store.usage()
    assert usage is not None and usage.images == 3 and usage.bytes > after.bytes
    store.ensure_room()  # over the cap again: makes room by deleting the oldest
    assert gone(store, records[1]) and store.get(fourth.image_id) == fourth


def test_an_image_being_read_is_not_deleted(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    clock, knob = FakeClock(), Knob()
    store = make_store(kind, tmp_path, request, clock, knob)
    oldest = save(store)
    clock.advance(60)
    second = save(store)
    clock.advance(60)
    third = save(store)
    with store.reading(oldest.file_name):
        knob.policy = RetentionPolicy(max_bytes=store.sweep().bytes - 1)
        store.sweep()
        assert store.read_bytes(oldest) == PNG  # the read in progress keeps it; the next oldest went instead
        assert gone(store, second)
        knob.policy = RetentionPolicy(retention_s=60)
        store.sweep()
        assert store.blobs.get(oldest.file_name) == PNG
    store.sweep()  # the read is over
    assert gone(store, oldest) and store.get(third.image_id) == third


def test_an_image_being_written_is_not_deleted(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """In this process by its name; from another replica (an image without its record) by age."""
    clock, knob = FakeClock(), Knob(RetentionPolicy(max_bytes=1, grace_s=0))
    held: list[Held] = []

    def wrap(blobs: BlobStore) -> Held:
        held.append(Held(blobs, "put", lambda name: name.startswith(".records/")))
        return held[0]

    store = make_store(kind, tmp_path, request, clock, knob, wrap)
    saved: list[ImageRecord] = []
    writer = threading.Thread(target=lambda: saved.append(save(store)))
    writer.start()
    assert held[0].reached.wait(10)  # the image is written, its record not yet
    (name,) = store.blobs.scan()
    store.sweep()  # grace 0 and a 1-byte cap: only the in-process mark protects it
    assert store.blobs.get(name) == PNG
    held[0].release.set()
    writer.join(10)
    assert saved and store.get(saved[0].image_id) == saved[0] and saved[0].file_name == name

    # Another replica's write: an image whose record is not there yet, younger than the grace.
    knob.policy = RetentionPolicy(max_bytes=1)
    foreign = "f" * 32 + ".png"
    store.blobs.put(foreign, PNG)
    store.sweep()
    assert store.blobs.get(foreign) == PNG and store.blobs.get(saved[0].file_name) is None
    clock.advance(WRITE_GRACE + 5)  # now it is a crash leftover, never reported
    store.sweep()
    assert store.blobs.get(foreign) is None


def test_mid_delete_the_image_already_reads_as_not_found(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    clock, knob = FakeClock(), Knob()
    held: list[Held] = []

    def wrap(blobs: BlobStore) -> Held:
        held.append(Held(blobs, "delete", lambda name: not name.startswith(".records/")))
        return held[0]

    store = make_store(kind, tmp_path, request, clock, knob, wrap)
    record = save(store)
    knob.policy = RetentionPolicy(max_bytes=1)
    sweeper = threading.Thread(target=store.sweep)
    sweeper.start()
    assert held[0].reached.wait(10)  # the record is deleted; the image is next
    assert store.blobs.get(record.file_name) == PNG
    with pytest.raises(ImageNotFoundError):
        store.get(record.image_id)
    with pytest.raises(ImageNotFoundError):
        store.read_bytes(record)
    held[0].release.set()
    sweeper.join(10)
    assert gone(store, record)


def test_a_full_store_refuses_with_storage_full_and_nothing_else_is_deleted(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    clock, knob = FakeClock(), Knob(RetentionPolicy(max_bytes=1))
    store = make_store(kind, tmp_path, request, clock, knob)
    record = save(store)
    with store.reading(record.file_name), pytest.raises(StorageFullError) as info:
        store.ensure_room()
    assert info.value.code == "storage_full"
    assert info.value.details["max_bytes"] == 1 and info.value.details["used_bytes"] > 1
    assert store.read_bytes(record) == PNG
    store.ensure_room()  # the read is over: the image goes and there is room
    assert gone(store, record)


async def test_through_the_server_generation_refuses_before_the_provider_and_retention_applies(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    clock = FakeClock()
    env = {**store_env(kind, tmp_path, request), "MCP_IMAGE_STORE_MAX_BYTES": "1KB", "MCP_IMAGE_RETENTION": "1h"}
    async with serve(env, clock) as (base, service), ClientSession() as http:
        store = service.store
        foreign = "a" * 32 + ".png"  # another replica is writing a big image: it may not be deleted yet
        store.blobs.put(foreign, b"x" * 2000)
        await asyncio.to_thread(store.sweep)  # the minute's sweep: how a replica learns of others' writes
        before = set(store.blobs.scan()) | set(store.blobs.scan(".records/"))
        result = await generate(base)
        assert result.is_error is True
        error = result.structured_content["error"]
        assert error["code"] == "storage_full" and error["details"]["max_bytes"] == 1000
        assert error["details"]["used_bytes"] >= 2000
        # The local provider never ran: nothing new was written.
        assert set(store.blobs.scan()) | set(store.blobs.scan(".records/")) == before
        async with http.get(base + "/health") as resp:
            storage = (await resp.json())["storage"]
        assert storage == {"images": 1, "bytes": 2000, "max_bytes": 1000, "retention_s": HOUR}

        clock.advance(WRITE_GRACE + 5)  # the foreign image is now a crash leftover: it makes room
        made = await generate(base)
        assert made.is_error is not True, made.content
        image = made.structured_content["images"][0]
        assert store.blobs.get(foreign) is None
        clock.advance(HOUR)
        async with Client(base + "/mcp") as client, asyncio.timeout(30):
            lookup = await client.call_tool("get_image_data", {"image_id": image["image_id"]})
        assert lookup.is_error is True and lookup.structured_content["error"]["code"] == "image_not_found"
        await asyncio.to_thread(store.sweep)
        file_name = image["url"].rsplit("/", 1)[1]
        assert store.blobs.get(file_name) is None
        assert store.blobs.get(f".records/{image['image_id']}.json") is None
        async with http.get(image["url"]) as resp:
            assert resp.status == 404

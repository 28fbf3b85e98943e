from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mcp_image_server.blobs.file import FileBlobStore
from mcp_image_server.errors import (
    ImageExpiredError,
    ImageNotFoundError,
    StorageError,
    StorageFullError,
    StorageUnavailableError,
    error_from_dict,
)
from mcp_image_server.models import GeneratedImage
from mcp_image_server.store import FILE_NAME_RE, WRITE_GRACE, ImageStore, sanitize_prefix

PNG = b"\x89PNG\r\n\x1a\n" + b"0" * 100


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _image(data: bytes = PNG) -> GeneratedImage:
    return GeneratedImage(data=data, mime_type="image/png", width=8, height=8, seed=1)


def _store(tmp_path: Path, clock: FakeClock | None = None) -> ImageStore:
    store = ImageStore(tmp_path / "imgs", clock=clock or FakeClock())
    store.open()
    return store


def _age(path: Path, clock: FakeClock, seconds: float) -> Path:
    """Set ``path``'s mtime to ``seconds`` before the fake clock's now."""
    os.utime(path, (clock.now - seconds, clock.now - seconds))
    return path


def _save(store: ImageStore, prefix: str | None = None, ttl: float = 60) -> object:
    return store.save(_image(), provider="local", model="m", style=None, prompt="p", ttl=ttl, file_prefix=prefix)


def test_saved_image_is_readable_by_id(tmp_path: Path) -> None:
    store = _store(tmp_path)
    rec = store.save(_image(), provider="local", model="m", style="s", prompt="p", ttl=60)
    assert FILE_NAME_RE.match(rec.file_name) and len(rec.image_id) == 32
    assert store.get(rec.image_id) == rec
    assert store.read_bytes(rec) == PNG
    assert store.resolve_file(rec.file_name) == Path(store.location_of(rec))


def test_records_expire_on_the_injected_clock_with_a_distinct_error(tmp_path: Path) -> None:
    clock = FakeClock()
    store = _store(tmp_path, clock)
    rec = store.save(_image(), provider="local", model="m", style=None, prompt="p", ttl=10)
    clock.now += 9.9
    assert store.get(rec.image_id).image_id == rec.image_id
    clock.now += 0.2
    with pytest.raises(ImageExpiredError) as info:
        store.get(rec.image_id)
    assert info.value.code == "image_expired"
    with pytest.raises(ImageNotFoundError) as info2:
        store.get("0" * 32)
    assert info2.value.code == "image_not_found"


def test_records_survive_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    rec = _store(tmp_path, clock).save(_image(), provider="local", model="m", style=None, prompt="p", ttl=100)
    reopened = _store(tmp_path, clock)
    assert reopened.get(rec.image_id) == rec
    clock.now += 101
    with pytest.raises(ImageExpiredError):
        _store(tmp_path, clock).get(rec.image_id)


@pytest.mark.parametrize("bad", ["", "../etc/passwd", "A" * 32, "0" * 31, "0" * 32 + "/..", "\x00" * 32])
def test_malformed_ids_are_not_found(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ImageNotFoundError):
        _store(tmp_path).get(bad)


def test_twenty_concurrent_saves_give_twenty_distinct_files(tmp_path: Path) -> None:
    store = _store(tmp_path)
    barrier = threading.Barrier(20)

    def save(_: int) -> str:
        barrier.wait(timeout=10)
        return store.save(_image(), provider="local", model="m", style=None, prompt="p", ttl=60).file_name

    with ThreadPoolExecutor(20) as pool:
        names = list(pool.map(save, range(20)))
    assert len(set(names)) == 20
    assert sorted(p.name for p in store.save_dir.iterdir() if p.is_file()) == sorted(names)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("hero", "hero"),
        ("hero-banner_2", "hero-banner_2"),
        ("../../etc/passwd", "etc_passwd"),
        ("a/b\\c", "a_b_c"),
        ("..", None),
        ("nul\x00byte", "nul_byte"),
        ("CON", "CON"),
        ("日本語", None),
        ("x" * 300, "x" * 64),
    ],
)
def test_prefixes_are_made_safe(raw: str, expected: str | None) -> None:
    assert sanitize_prefix(raw)[0] == expected


@pytest.mark.parametrize("prefix", ["../../escape", "/abs/path", "..\\..\\win", "a\x00b", ".hidden", "-"])
def test_nothing_is_written_outside_the_save_dir(tmp_path: Path, prefix: str) -> None:
    store = _store(tmp_path)
    rec = store.save(_image(), provider="local", model="m", style=None, prompt="p", ttl=60, file_prefix=prefix)
    assert Path(store.location_of(rec)).parent == store.save_dir
    assert FILE_NAME_RE.match(rec.file_name)
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and store.save_dir not in p.parents]
    assert outside == []


def test_resolve_file_refuses_strangers_and_symlinks(tmp_path: Path) -> None:
    store = _store(tmp_path)
    rec = store.save(_image(), provider="local", model="m", style=None, prompt="p", ttl=60)
    secret = tmp_path / "secret.png"
    secret.write_bytes(PNG)
    link = store.save_dir / ("b" * 32 + ".png")
    os.symlink(secret, link)
    assert store.resolve_file(link.name) is None
    (store.save_dir / "notes.txt").write_text("x")
    for name in ("notes.txt", "../secret.png", "%2e%2e/secret.png", rec.file_name + "/", ".records", ""):
        assert store.resolve_file(name) is None


def test_open_sweeps_temp_files_left_by_a_crash_once_past_the_grace(tmp_path: Path) -> None:
    clock = FakeClock()
    store = _store(tmp_path, clock)
    old = [store.save_dir / ".tmp-abc", store.save_dir / ".records" / ".tmp-def"]
    young = [store.save_dir / ".tmp-ghi", store.save_dir / ".records" / ".tmp-jkl"]
    for path in old + young:
        path.write_bytes(b"half")
        _age(path, clock, WRITE_GRACE + 1 if path in old else 5)
    _store(tmp_path, clock)
    # A young temp file may be another process's write in progress: it survives the start.
    assert sorted(store.save_dir.rglob(".tmp-*")) == sorted(young)
    clock.now += WRITE_GRACE
    store.sweep()  # the periodic sweep clears it once it is past the grace
    assert not list(store.save_dir.rglob(".tmp-*"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_save_dir_is_a_clear_error(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(StorageError) as info:
        ImageStore(ro / "imgs").open()
    assert "MCP_IMAGE_SAVE_DIR" in info.value.message


def test_save_dir_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError) as info:
        ImageStore(blocker).open()
    assert info.value.code == "storage_error" and "MCP_IMAGE_SAVE_DIR" in info.value.message


def test_failed_save_leaves_no_partial_file(tmp_path: Path) -> None:
    store = _store(tmp_path)
    (store.save_dir / ".records").rename(tmp_path / "moved")
    (store.save_dir / ".records").write_text("not a dir")  # sidecar write will fail
    with pytest.raises(StorageError):
        store.save(_image(), provider="local", model="m", style=None, prompt="p", ttl=60)
    assert [p.name for p in store.save_dir.iterdir()] == [".records"]


def test_open_removes_images_whose_record_was_never_written(tmp_path: Path) -> None:
    clock = FakeClock()
    store = _store(tmp_path, clock)
    kept = store.save(_image(), provider="local", model="m", style=None, prompt="p", ttl=60)
    _age(Path(store.location_of(kept)), clock, WRITE_GRACE + 1)  # old, but it has its record
    orphan = store.save_dir / ("c" * 32 + ".png")
    orphan.write_bytes(PNG)
    _age(orphan, clock, WRITE_GRACE + 1)
    stranger = store.save_dir / "notes.txt"
    stranger.write_text("mine")
    _age(stranger, clock, WRITE_GRACE + 1)
    reopened = _store(tmp_path, clock)
    assert not orphan.exists() and stranger.exists()
    assert reopened.read_bytes(reopened.get(kept.image_id)) == PNG


def test_open_leaves_a_fresh_image_without_its_record_alone(tmp_path: Path) -> None:
    """Another replica or process on the same folder may have written the image and not yet its record."""
    clock = FakeClock()
    store = _store(tmp_path, clock)
    fresh = store.save_dir / ("d" * 32 + ".png")
    fresh.write_bytes(PNG)
    _age(fresh, clock, WRITE_GRACE - 1)
    _store(tmp_path, clock)
    assert fresh.read_bytes() == PNG
    (store.save_dir / ".records" / ("d" * 32 + ".json")).write_bytes(b"{}")  # its writer finishes
    clock.now += 2  # now past the grace, but it has its record: it stays
    _store(tmp_path, clock)
    assert fresh.read_bytes() == PNG


class _Unanswering(FileBlobStore):
    """A folder whose writes fail as an S3 endpoint that went away does."""

    def put(self, name: str, data: bytes) -> None:
        raise StorageUnavailableError("the image store did not answer")


def test_an_unanswering_store_is_a_transient_error_and_a_full_one_is_not(tmp_path: Path) -> None:
    store = ImageStore(_Unanswering(tmp_path / "imgs"), clock=FakeClock())
    store.open()
    with pytest.raises(StorageUnavailableError) as info:
        _save(store)
    assert info.value.code == "storage_unavailable" and info.value.transient
    assert isinstance(info.value, StorageError) and not list((tmp_path / "imgs" / ".records").iterdir())
    # Another replica reporting it (error_from_dict) keeps the class and so the hint to try again.
    assert error_from_dict(info.value.to_dict()).transient
    assert not StorageFullError("full").transient and not StorageError("read-only").transient


def test_a_removed_save_dir_is_recreated_on_the_next_save(tmp_path: Path) -> None:
    import shutil

    store = _store(tmp_path)
    shutil.rmtree(store.save_dir)
    rec = store.save(_image(), provider="local", model="m", style=None, prompt="p", ttl=60)
    assert store.get(rec.image_id) == rec and Path(store.location_of(rec)).exists()


def test_folder_fsyncs_are_shared_by_saves_waiting_at_once_and_never_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save returns only after a folder fsync that began after its rename; saves that queue
    behind one fsync share the next instead of each waiting for its own."""
    import mcp_image_server.blobs.file as file_module

    fsyncs = 0
    first_inside, release = threading.Event(), threading.Event()
    real = file_module._fsync_dir

    def held_fsync(path: Path) -> None:
        nonlocal fsyncs
        fsyncs += 1
        if fsyncs == 1:
            first_inside.set()
            assert release.wait(10)
        real(path)

    class CountedLock:
        """The counters' lock, noting when the three later saves have counted their renames."""

        def __init__(self, releases_wanted: int) -> None:
            self._lock, self._releases, self._wanted = threading.Lock(), 0, releases_wanted
            self.reached = threading.Event()

        def __enter__(self) -> None:
            self._lock.acquire()

        def __exit__(self, *exc: object) -> None:
            self._releases += 1
            if self._releases == self._wanted:
                self.reached.set()
            self._lock.release()

    monkeypatch.setattr(file_module, "_fsync_dir", held_fsync)
    sync = file_module._DirSync(tmp_path)
    counted = sync._count = CountedLock(releases_wanted=2 + 3)  # the first save takes it twice
    done: list[tuple[str, int]] = []

    def save(name: str) -> None:
        sync.sync()
        done.append((name, fsyncs))

    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(save, "first")
        assert first_inside.wait(10)
        later = [pool.submit(save, f"later-{i}") for i in range(3)]
        assert counted.reached.wait(10)  # their renames are counted, after the held fsync began
        assert done == []  # nobody returns while the only fsync under way predates their renames
        release.set()
        for f in (first, *later):
            f.result(timeout=10)
    assert fsyncs == 2  # the three queued saves shared one fsync
    assert sorted(n for name, n in done if name != "first") == [2, 2, 2]
    for _ in range(3):  # one at a time, each needs its own
        sync.sync()
    assert fsyncs == 5

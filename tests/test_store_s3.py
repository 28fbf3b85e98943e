"""The image store on a real S3 endpoint (moto's server) through obstore, and the whole server on it.

The end-to-end tests drive a real HTTP server subprocess with the SDK client: images land in the
bucket (no local file), ``get_image_data`` and ``/images/*`` read them back from any replica that
shares the bucket, and an endpoint that goes away gives ``storage_unavailable``, never a record.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_image_server.blobs import open_blob_store
from mcp_image_server.config import load_settings
from mcp_image_server.errors import ImageNotFoundError, StorageError, StorageUnavailableError
from mcp_image_server.store import ImageStore

from .conftest import server_env
from .s3 import SECRET_KEY, S3Server
from .test_store import PNG, FakeClock, _image

pytestmark = pytest.mark.timeout(120)
TOKEN = "s3-test-token"


def _s3_store(server: S3Server, bucket: str, clock: FakeClock | None = None) -> ImageStore:
    store = ImageStore(open_blob_store(load_settings(server.env(bucket))), clock=clock or FakeClock())
    store.open()
    return store


def test_images_and_records_round_trip_through_the_bucket(s3_server: S3Server) -> None:
    bucket = s3_server.bucket()
    store = _s3_store(s3_server, bucket)
    rec = store.save(_image(), provider="local", model="m", style="s", prompt="p", ttl=60, file_prefix="cat")
    assert store.save_dir is None and store.resolve_file(rec.file_name) is None  # nothing local
    assert store.location_of(rec) == f"s3://{bucket}/team-a/{rec.file_name}"
    # A second store on the same bucket (another replica) reads the record and the bytes.
    other = _s3_store(s3_server, bucket)
    assert other.get(rec.image_id) == rec and other.read_bytes(rec) == PNG
    info = other.blobs.stat(rec.file_name)
    assert info is not None and info.size == len(PNG) and info.etag.startswith('"')
    with pytest.raises(ImageNotFoundError):
        other.get("0" * 32)


def test_a_name_is_written_once(s3_server: S3Server) -> None:
    store = _s3_store(s3_server, s3_server.bucket())
    store.blobs.put("a" * 32 + ".png", PNG)
    with pytest.raises(StorageError) as info:
        store.blobs.put("a" * 32 + ".png", b"other bytes")
    assert info.value.code == "storage_error" and store.blobs.get("a" * 32 + ".png") == PNG


def test_an_unreachable_endpoint_is_a_clear_start_error_and_unavailable_later(private_s3: S3Server) -> None:
    bucket = private_s3.bucket()
    store = _s3_store(private_s3, bucket)
    private_s3.stop()
    with pytest.raises(StorageUnavailableError) as info:
        store.save(_image(), provider="local", model="m", style=None, prompt="p", ttl=60)
    assert info.value.code == "storage_unavailable" and not store.blobs.healthy()
    assert SECRET_KEY not in str(info.value.to_dict())
    with pytest.raises(StorageError) as start:
        _s3_store(private_s3, bucket)
    assert "MCP_IMAGE_STORE_URL" in start.value.message and SECRET_KEY not in start.value.message


def test_a_bad_store_url_is_refused_naming_the_variable() -> None:
    for bad in ("s3://", "ftp://host/dir", "s3://key:secret@bucket/p", "file://relative"):
        with pytest.raises(Exception) as info:
            load_settings({"MCP_IMAGE_STORE_URL": bad})
        assert "MCP_IMAGE_STORE_URL" in str(info.value) and "expected file:///" in str(info.value)


async def _call(url: str, tool: str, args: dict[str, Any]) -> Any:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        return await client.call_tool(tool, args)


async def test_two_replicas_share_images_through_the_bucket(
    s3_server: S3Server, http_server: Any, tmp_path: Path
) -> None:
    env = s3_server.env(s3_server.bucket())
    async with http_server(env, TOKEN, "one") as url1, http_server(env, TOKEN, "two") as url2:
        base1, base2 = url1.removesuffix("/mcp"), url2.removesuffix("/mcp")
        made = await _call(url1, "generate_image", {"prompt": "a red fox", "resolution": "256x256", "inline": "none"})
        assert not made.is_error, made
        image = made.structured_content["images"][0]
        assert image["file_path"].startswith("s3://") and image["url"].startswith(base1)
        assert not list((tmp_path / "one-images").glob("*.png"))  # nothing written locally

        data = await _call(url2, "get_image_data", {"image_id": image["image_id"]})
        assert not data.is_error, data
        raw = base64.b64decode(data.structured_content["base64"])
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"

        name = image["url"].rsplit("/", 1)[1]
        async with httpx2.AsyncClient() as http:
            got = await http.get(f"{base2}/images/{name}")
            assert got.status_code == 200 and got.content == raw
            assert got.headers["content-type"] == "image/png" and got.headers["etag"]
            assert got.headers["last-modified"].endswith("GMT")
            head = await http.head(f"{base2}/images/{name}")
            assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(raw))
            again = await http.get(f"{base2}/images/{name}", headers={"If-None-Match": got.headers["etag"]})
            assert again.status_code == 304 and again.content == b""
            for stranger in ("b" * 32 + ".png", "..%2f" + name, "notes.txt"):
                assert (await http.get(f"{base2}/images/{stranger}")).status_code == 404
            health = await http.get(base2 + "/health")
            assert health.json()["backends"] == {"image_store": "ok"} and SECRET_KEY not in health.text
    # A restart of a replica loses nothing: the record and the image are in the bucket.
    async with http_server(env, TOKEN, "three") as url3:
        data = await _call(url3, "get_image_data", {"image_id": image["image_id"]})
        assert not data.is_error, data


async def test_a_store_that_goes_away_fails_the_job_cleanly_and_recovers(
    private_s3: S3Server, http_server: Any, tmp_path: Path
) -> None:
    env = private_s3.env(private_s3.bucket())
    async with http_server(env, TOKEN, "server") as url:
        base = url.removesuffix("/mcp")
        private_s3.stop()
        failed = await _call(url, "generate_image", {"prompt": "a fox", "resolution": "256x256", "inline": "none"})
        assert failed.is_error and failed.structured_content["error"]["code"] == "storage_unavailable", failed
        text = "".join(c.text for c in failed.content if c.type == "text")
        assert SECRET_KEY not in text and "Traceback" not in text
        async with httpx2.AsyncClient() as http:
            assert (await http.get(base + "/health")).json()["backends"]["image_store"] == "unavailable"
            assert (await http.get(f"{base}/images/{'c' * 32}.png")).status_code == 503
        private_s3.start()  # moto comes back empty: recreate the bucket, as an operator would
        await asyncio.to_thread(private_s3.bucket, env["MCP_IMAGE_STORE_URL"].split("/")[2])
        made = await _call(url, "generate_image", {"prompt": "a fox", "resolution": "256x256", "inline": "none"})
        assert not made.is_error, made
        async with httpx2.AsyncClient() as http:
            assert (await http.get(base + "/health")).json()["backends"]["image_store"] == "ok"
    log = (tmp_path / "server.log").read_text()
    assert SECRET_KEY not in log


def test_a_bad_store_at_start_is_one_line_exit(tmp_path: Path) -> None:
    env = server_env(tmp_path / "imgs", {
        "MCP_IMAGE_STORE_URL": "s3://nobucket/p", "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    })
    done = subprocess.run([sys.executable, "-m", "mcp_image_server"], check=False, env=env, cwd=tmp_path, input=b"",
                          capture_output=True, timeout=60)
    err = done.stderr.decode()
    assert done.returncode != 0 and "MCP_IMAGE_STORE_URL" in err and SECRET_KEY not in err
    assert "Traceback" not in err




def test_presigned_mode_needs_an_s3_store() -> None:
    with pytest.raises(Exception) as info:
        load_settings({"MCP_IMAGE_URL_MODE": "presigned"})
    assert "MCP_IMAGE_URL_MODE" in str(info.value) and "MCP_IMAGE_STORE_URL=s3://" in str(info.value)


async def test_presigned_mode_redirects_to_a_short_lived_url_the_store_serves(
    s3_server: S3Server, http_server: Any
) -> None:
    env = s3_server.env(s3_server.bucket()) | {"MCP_IMAGE_URL_MODE": "presigned", "MCP_IMAGE_URL_TTL": "60"}
    async with http_server(env, TOKEN, "presigned") as url:
        base = url.removesuffix("/mcp")
        made = await _call(url, "generate_image", {"prompt": "a fox", "resolution": "256x256", "inline": "none"})
        assert not made.is_error, made
        image = made.structured_content["images"][0]
        async with httpx2.AsyncClient() as http:
            hop = await http.get(image["url"])
            assert hop.status_code == 307 and hop.headers["cache-control"] == "no-store"
            location = hop.headers["location"]
            assert location.startswith(s3_server.endpoint) and "X-Amz-Expires=60" in location
            assert "X-Amz-Signature=" in location and SECRET_KEY not in location
            got = await http.get(location)  # the store itself serves the signed URL
            assert got.status_code == 200 and got.content[:8] == b"\x89PNG\r\n\x1a\n"
            assert (await http.get(f"{base}/images/{'d' * 32}.png")).status_code == 404  # no redirect for strangers

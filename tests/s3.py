"""A real S3 endpoint on loopback: moto's server mode in a subprocess on a free port.

``S3Server.start()`` waits until it answers; ``stop()``/``start()`` again on the same port stand
for an object store that goes away and comes back (moto keeps no data across a restart).
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ACCESS_KEY, SECRET_KEY = "test-access-key", "test-secret-key-for-moto"


class S3Server:
    def __init__(self, log: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 30
        while True:  # poll the port: moto prints nothing we could wait on before it listens
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1).close()
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start; see {self._log}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(10)

    def bucket(self, name: str | None = None) -> str:
        """Create a bucket (default: a fresh name; one per test keeps tests apart on a shared server)."""
        name = name or f"images-{secrets.token_hex(4)}"
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/{name}", method="PUT"), timeout=5).close()
        return name

    def env(self, bucket: str, prefix: str = "team-a") -> dict[str, str]:
        return {
            "MCP_IMAGE_STORE_URL": f"s3://{bucket}/{prefix}",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
        }


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("s3") / "moto.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_s3(tmp_path: Path) -> Iterator[S3Server]:
    """An S3 server of this test's own, which the test may stop and start."""
    server = S3Server(tmp_path / "moto.log")
    server.start()
    yield server
    server.stop()

"""A real S3 endpoint on loopback: moto's server mode in a subprocess on a free port.

``S3Server.start()`` waits until it says it listens; ``stop()``/``start()`` again on the same port stand
for an object store that goes away and comes back (moto keeps no data across a restart).
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import threading
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
        self._pump: threading.Thread | None = None

    def start(self) -> None:
        """Start moto and return once it says it listens (werkzeug's "Running on" line)."""
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )
        listening = threading.Event()
        stderr = self._proc.stderr
        assert stderr is not None

        def pump() -> None:  # keeps the pipe drained into the log for the server's whole life
            with stderr, self._log.open("ab") as log:
                for line in stderr:
                    log.write(line)
                    log.flush()
                    if b"Running on" in line:
                        listening.set()
            listening.set()  # exited: let start() see it

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        if not listening.wait(30) or self._proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"moto server did not start; see {self._log}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(10)
        if self._pump is not None:
            self._pump.join(10)  # its pipe is closed once moto's stderr ends

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

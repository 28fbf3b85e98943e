"""A real Redis on loopback: Debian's ``redis-server`` in a subprocess on a free port, no persistence.

``RedisServer.start()`` waits for its "Ready to accept connections" line; ``kill()`` (SIGKILL)
and ``start()`` again on the same port stand for a Redis that dies and comes back empty.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server")


class RedisServer:
    def __init__(self, log: Path, password: str | None = None) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.password = password
        self.url = f"redis://{f':{password}@' if password else ''}127.0.0.1:{self.port}/0"
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None

    def start(self) -> None:
        if REDIS_SERVER is None:
            pytest.skip("redis-server is not installed (Debian: apt-get install redis-server; tests/setup.sh)")
        self._proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(self._log.parent),
             *(["--requirepass", self.password] if self.password else [])],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        ready = threading.Event()
        out = self._proc.stdout
        assert out is not None

        def pump() -> None:  # keeps the pipe drained into the log for the server's whole life
            with out, self._log.open("ab") as log:
                for line in out:
                    log.write(line)
                    log.flush()
                    if b"Ready to accept connections" in line:
                        ready.set()
            ready.set()  # exited: let start() see it

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        if not ready.wait(30) or self._proc.poll() is not None:
            self.kill()
            raise RuntimeError(f"redis-server did not start; see {self._log}")

    def kill(self) -> None:
        """SIGKILL: no goodbye to clients, and (no persistence) every key is gone."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        if self._pump is not None:
            self._pump.join(10)

    def freeze(self) -> None:
        """SIGSTOP: the server keeps its keys but answers nothing (a hung Redis, a partition)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            if self.password:
                s.sendall(f"AUTH {self.password}\r\n".encode())
                assert s.recv(64).startswith(b"+OK")
            s.sendall(b"FLUSHALL\r\n")
            assert s.recv(64).startswith(b"+OK")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One Redis for the session, emptied before each test that asks for ``redis_url``."""
    server = RedisServer(tmp_path_factory.mktemp("redis") / "redis.log")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    redis_server.flush()
    return redis_server.url


REDIS_PASSWORD = "redis-test-password-7f3a"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A password-protected Redis of this test's own, which the test may kill and start again."""
    server = RedisServer(tmp_path / "redis.log", REDIS_PASSWORD)
    server.start()
    yield server
    server.kill()

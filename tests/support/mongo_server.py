"""A real MongoDB-wire server for tests: the `mongoeco` proxy in a subprocess, or BUZZI_TEST_MONGODB_URL.

Register as a pytest plugin (`pytest_plugins = ["tests.support.mongo_server"]`) to get:
- `mongo_url` (session): a server URL whose path names a per-session database;
- `mongo_db_url` (function): a URL naming a fresh database, dropped after the test.
`MongoWireServer` is the plain helper behind them, for tests that stop/restart a server or share it
between processes. Run `python -m tests.support.mongo_server [--port N] [--db-path FILE]` to serve in
the foreground; it prints the URI on stdout once listening and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ENV_URL = "BUZZI_TEST_MONGODB_URL"
_ROOT = Path(__file__).resolve().parents[2]


def with_database(url: str, database: str) -> str:
    """The same server URL with its path (the default database) replaced."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class MongoWireServer:
    """A mongoeco wire server in a child process. The port stays fixed across stop()/start(), so a
    store pointed at `url` sees the server go away and come back; with `db_path` the data survives."""

    def __init__(self, port: int | None = None, database: str = "buzzi_test", db_path: str | Path | None = None,
                 startup_timeout: float = 20.0) -> None:
        self.port = port or _free_port()
        self.database = database
        self.db_path = str(db_path) if db_path else None
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/{self.database}?directConnection=true"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> str:
        if self.running:
            return self.url
        cmd = [sys.executable, "-m", "tests.support.mongo_server", "--port", str(self.port)]
        if self.db_path:
            cmd += ["--db-path", self.db_path]
        self._proc = subprocess.Popen(cmd, cwd=_ROOT, stdout=subprocess.PIPE, text=True)
        # The child prints its URI once listening; reading that line is the readiness signal.
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.startswith("mongodb://"):
            self.stop()
            raise RuntimeError(f"mongoeco wire server did not start (got {line!r})")
        deadline = time.monotonic() + self.startup_timeout
        while not _answers(self.port):
            if time.monotonic() > deadline or not self.running:
                self.stop()
                raise RuntimeError(f"mongoeco wire server on port {self.port} does not answer")
            time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stdout:
            proc.stdout.close()

    def __enter__(self) -> MongoWireServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ----------------------------------------------------------------------------- pytest fixtures

@pytest.fixture(scope="session")
def mongo_url() -> Iterator[str]:
    """A MongoDB server for the session; the URL path names a database unique to this session."""
    session_db = f"buzzi_test_{secrets.token_hex(4)}"
    external = os.environ.get(ENV_URL)
    if external:
        yield with_database(external, session_db)
        return
    server = MongoWireServer(database=session_db)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def mongo_db_url(mongo_url: str) -> Iterator[str]:
    """A URL naming a fresh database for one test; the database is dropped afterwards.
    Synchronous on purpose: other sync fixtures may pull it with request.getfixturevalue()."""
    from pymongo import MongoClient

    database = f"{urlsplit(mongo_url).path.lstrip('/') or 'buzzi_test'}_{secrets.token_hex(4)}"
    yield with_database(mongo_url, database)
    with MongoClient(mongo_url, serverSelectionTimeoutMS=3000) as client:
        client.drop_database(database)


# ----------------------------------------------------------------------------- the child process

async def _serve(port: int, db_path: str | None) -> None:
    from mongoeco.wire import AsyncMongoEcoProxyServer

    engine = None
    if db_path:
        from mongoeco.engines.sqlite import SQLiteEngine

        engine = SQLiteEngine(db_path)
    server = AsyncMongoEcoProxyServer(host="127.0.0.1", port=port, engine=engine)
    address = await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"mongodb://{address.host}:{address.port}/?directConnection=true", flush=True)
    # Nobody reads the pipe after that line: later output goes to stderr so it can never fill up.
    os.dup2(2, 1)
    try:
        await stop.wait()
    finally:
        await server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the MongoDB wire protocol with mongoeco.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--db-path", default=None, help="SQLite file to keep data across restarts")
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.db_path))


if __name__ == "__main__":
    main()

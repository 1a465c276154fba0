"""Real gateway node processes for cluster tests: `run.py` in subprocesses sharing one store and broker.

A `Cluster` holds the settings every node shares (store URL, broker URL, secret key, short leases
and TTLs) and starts `Node`s, each on a free port with its own log file. Starting is split from
waiting (spawn all, then wait all) so three nodes boot in parallel. Everything a cluster started is
killed in `close()`, whatever state the test left it in.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from buzzi.crypto import SecretBox
from buzzi.ids import new_id
from buzzi.models import Agent, Company
from buzzi.store.mongo import MongoStore
from tests.support.mongo_server import with_database
from tests.support.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 20.0
ADMIN_PASSWORD = "cluster-admin-password-1"

# Short leases and TTLs keep failover tests in seconds; a high IP limit because every request of
# a test comes from 127.0.0.1.
CLUSTER_ENV = {
    "BUZZI_INBOX_LEASE_SECONDS": "2",
    "BUZZI_INBOX_POLL_SECONDS": "0.5",
    "BUZZI_BROKER_NODE_TTL_SECONDS": "2",
    "BUZZI_SERVER_LOG_LEVEL": "info",
    "BUZZI_SERVER_SHUTDOWN_GRACE_SECONDS": "5",
    "BUZZI_LIMITS_IP_PER_MINUTE": "100000",
    "BUZZI_CHAT_CREATE_DEMO": "false",
    "BUZZI_SECURITY_ALLOW_PRIVATE_NETWORKS": "true",  # the fake platforms and agents run on 127.0.0.1
}


class NodeFailed(AssertionError):
    """A node did not become ready (or exited); the message carries its log."""


@dataclass
class Node:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _ready_once(self) -> bool:
        try:
            with urllib.request.urlopen(self.base_url + "/readyz", timeout=1) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _fail(self, why: str) -> NodeFailed:
        return NodeFailed(f"node {self.name} (port {self.port}) {why}; its log:\n{self.log()[-4000:]}")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Block until GET /readyz answers 200 (for fixtures, before any event loop work)."""
        deadline = time.monotonic() + timeout
        while not self._ready_once():
            if not self.running:
                raise self._fail(f"exited with {self.proc.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise self._fail(f"was not ready within {timeout}s")
            time.sleep(0.05)

    async def ready(self, timeout: float = READY_TIMEOUT) -> None:
        """The same, without blocking the test's event loop (its local servers keep serving)."""
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(self._ready_once):
            if not self.running:
                raise self._fail(f"exited with {self.proc.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise self._fail(f"was not ready within {timeout}s")
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the node dies without cleaning anything up, as on a crash or OOM kill."""
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM: the graceful shutdown of docs/contract.md §5 starts; use `wait_exit` for the outcome."""
        if self.running:
            self.proc.send_signal(signal.SIGTERM)

    async def wait_exit(self, timeout: float) -> int:
        """The exit code, waiting up to `timeout` seconds without blocking the event loop."""
        try:
            return await asyncio.to_thread(self.proc.wait, timeout)
        except subprocess.TimeoutExpired:
            raise self._fail(f"did not exit within {timeout}s") from None


@dataclass
class Cluster:
    """Nodes sharing one MongoDB-wire database and one Redis; `store()` opens the same database."""

    tmp_dir: Path
    store_url: str
    broker_url: str
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    env: dict[str, str] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    redis: RedisServer | None = None  # when the cluster owns its Redis (tests that restart it)

    @classmethod
    def fresh(cls, tmp_dir: Path, mongo_url: str, broker: str | RedisServer, **env: str) -> Cluster:
        """A cluster on a new database of the given MongoDB server, and a Redis URL or server."""
        database = f"buzzi_cluster_{secrets.token_hex(4)}"
        redis = broker if isinstance(broker, RedisServer) else None
        url = broker.url if isinstance(broker, RedisServer) else broker
        return cls(tmp_dir, with_database(mongo_url, database), url, env=dict(env), redis=redis)

    def node_env(self, name: str, port: int, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BUZZI_")}
        env.update(CLUSTER_ENV)
        env.update({
            "BUZZI_NODE_ID": name,
            "BUZZI_SECRET_KEY": self.secret_key,
            "BUZZI_STORE_URL": self.store_url,
            "BUZZI_BROKER_URL": self.broker_url,
            "BUZZI_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "BUZZI_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "BUZZI_SERVER_DATA_DIR": str(self.tmp_dir / name / "var"),
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.env)
        env.update(extra)
        return env

    def spawn(self, name: str, **extra_env: str) -> Node:
        """Start a node process (not waiting for it); a dead node's name may be reused."""
        old = self.nodes.get(name)
        if old is not None and old.running:
            raise RuntimeError(f"node {name} is already running")
        port = free_port()
        log_dir = self.tmp_dir / name
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"node-{port}.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, str(ROOT / "run.py"), "--port", str(port)],
                cwd=ROOT, env=self.node_env(name, port, **extra_env),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        node = Node(name, port, proc, log_path)
        self.nodes[name] = node
        return node

    def start(self, *names: str, **extra_env: str) -> list[Node]:
        """Spawn the nodes together, then block until each is ready."""
        started = [self.spawn(name, **extra_env) for name in names]
        for node in started:
            node.wait_ready()
        return started

    async def start_async(self, *names: str, **extra_env: str) -> list[Node]:
        started = [self.spawn(name, **extra_env) for name in names]
        await asyncio.gather(*(node.ready() for node in started))
        return started

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def close(self) -> None:
        for node in self.nodes.values():
            if node.running:
                node.proc.send_signal(signal.SIGKILL)
        for node in self.nodes.values():
            try:
                node.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not wait on anything
                pass

    @contextmanager
    def running(self) -> Iterator[Cluster]:
        try:
            yield self
        finally:
            self.close()

    def store(self) -> MongoStore:
        """A (not yet opened) store on the cluster's database, decrypting what the nodes encrypt."""
        return MongoStore(self.store_url, SecretBox(self.secret_key))


async def create_agent(store: MongoStore, kind: str = "faq", settings: dict | None = None,
                       name: str = "Helper") -> Agent:
    """A company and an active agent, written straight into the cluster's store."""
    company = await store.add(Company(id=new_id("company"), name="Acme"))
    return await store.add(Agent(id=new_id("agent"), company_id=company.id, name=name, kind=kind,
                                 settings=settings or {}))

"""`python run.py` as a separate process for tests that need a real node outside their own event loop:
the fuzzer (schemathesis calls synchronously) and the resource test (an honest RSS)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.gateway import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
ADMIN_PASSWORD = "admin-password-123"


@dataclass
class NodeProcess:
    proc: subprocess.Popen
    base_url: str
    stderr_path: Path

    def rss_bytes(self) -> int:
        """Resident set size now, from /proc (Linux)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def _ready(node: NodeProcess) -> bool:
    if node.proc.poll() is not None:
        raise AssertionError(f"node exited {node.proc.returncode}: {node.stderr()[-3000:]}")
    try:
        with urllib.request.urlopen(node.base_url + "/readyz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def node_process(tmp_path: Path, **env: str) -> Iterator[NodeProcess]:
    """A node on a free port with its own SQLite store under tmp_path; stopped with SIGTERM."""
    port = free_port()
    full_env = {
        "PATH": os.environ.get("PATH", ""), "BUZZI_PORT": str(port),
        "BUZZI_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "BUZZI_SERVER_DATA_DIR": str(tmp_path / "var"),
        "BUZZI_STORE_URL": f"sqlite:///{tmp_path / 'var' / 'buzzi.sqlite3'}",
        "BUZZI_ADMIN_PASSWORD": ADMIN_PASSWORD, "BUZZI_CHAT_CREATE_DEMO": "false",
        "BUZZI_SERVER_SHUTDOWN_GRACE_SECONDS": "3", "BUZZI_SECURITY_ALLOW_PRIVATE_NETWORKS": "true",
        "BUZZI_SERVER_LOG_LEVEL": "error", **env,
    }
    stderr_path = tmp_path / f"node-{port}.stderr"
    with open(tmp_path / f"node-{port}.stdout", "w") as out, open(stderr_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "run.py"], cwd=ROOT, env=full_env, stdout=out, stderr=err)
    node = NodeProcess(proc, f"http://127.0.0.1:{port}", stderr_path)
    try:
        deadline = time.monotonic() + 30
        while not _ready(node):
            assert time.monotonic() < deadline, "node not ready within 30 s"
            time.sleep(0.1)
        yield node
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

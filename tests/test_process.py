"""`python run.py` as a real process: first start, readiness, logs without secrets, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
from pathlib import Path

import aiohttp

from tests.support.gateway import free_port
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


async def start_node(tmp_path: Path, **env: str) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    full_env = {
        "PATH": os.environ.get("PATH", ""), "BUZZI_PORT": str(port),
        "BUZZI_SERVER_DATA_DIR": str(tmp_path / "var"),
        "BUZZI_STORE_URL": f"sqlite:///{tmp_path / 'var' / 'buzzi.sqlite3'}",
        "BUZZI_SERVER_SHUTDOWN_GRACE_SECONDS": "5", "BUZZI_SECURITY_ALLOW_PRIVATE_NETWORKS": "true", **env,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "run.py", cwd=ROOT, env=full_env,
        stdout=open(tmp_path / f"stdout-{port}.log", "w"), stderr=open(tmp_path / f"stderr-{port}.log", "w"),
    )
    base = f"http://127.0.0.1:{port}"

    async def ready() -> bool:
        if proc.returncode is not None:
            raise AssertionError((tmp_path / f"stderr-{port}.log").read_text())
        try:
            async with aiohttp.ClientSession() as http, http.get(base + "/readyz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    await wait_until(ready, 30, 0.1)
    return proc, base


async def test_first_start_then_sigterm_ends_streams_and_exits_zero(tmp_path: Path):
    proc, base = await start_node(tmp_path, BUZZI_SERVER_LOG_FORMAT="json")
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/demo") as resp:
            page = await resp.text()
            assert resp.status == 200 and 'data-company="c_' in page and 'data-agent="a_' in page
        company = page.split('data-company="')[1].split('"')[0]
        agent = page.split('data-agent="')[1].split('"')[0]
        async with http.post(base + "/api/chat/sessions", json={"companyId": company, "agentId": agent}) as resp:
            assert resp.status == 201
            sid = (await resp.json())["sessionId"]
        async with http.get(f"{base}/api/chat/{sid}/stream") as stream:
            assert await stream.content.readline() == b"retry: 2000\n"
            proc.send_signal(signal.SIGTERM)
            rest = await asyncio.wait_for(stream.content.read(), 10)  # the server ended the stream
            assert b"event:" not in rest
    assert await asyncio.wait_for(proc.wait(), 15) == 0

    stdout = next(tmp_path.glob("stdout-*.log")).read_text()
    stderr = next(tmp_path.glob("stderr-*.log")).read_text()
    assert "generated admin password (shown once): " in stdout
    password = stdout.split("generated admin password (shown once): ")[1].split()[0]
    key_file = tmp_path / "var" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert any(line["msg"].startswith("GET /demo 200") for line in lines)
    assert password not in stderr and key_file.read_text() not in stderr and sid not in stderr

    # A second start reuses the key and the owner: no new password.
    proc, _ = await start_node(tmp_path)
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 15) == 0
    second = sorted(tmp_path.glob("stdout-*.log"), key=lambda p: p.stat().st_mtime)[-1].read_text()
    assert "generated admin password" not in second


async def test_unreachable_broker_stops_the_start_with_a_clear_error(tmp_path: Path):
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "run.py", cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "BUZZI_PORT": str(port),
             "BUZZI_SERVER_DATA_DIR": str(tmp_path / "var"),
             "BUZZI_STORE_URL": f"sqlite:///{tmp_path / 'buzzi.sqlite3'}",
             "BUZZI_BROKER_URL": f"redis://:hunter2@127.0.0.1:{free_port()}/0"},
        stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1
    text = stderr.decode()
    assert "cannot start" in text and "127.0.0.1" in text
    assert "hunter2" not in text

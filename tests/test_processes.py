"""A node as several processes (server.processes web processes on one port, inbox.processes answer
processes) under run.py's supervisor: real processes, a real Redis, one SQLite file, a fake Graph."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from buzzi.crypto import SecretBox
from buzzi.models import Agent, Company, Message, Webhook
from buzzi.signing import hub_signature
from buzzi.store import Store, open_store
from tests.support.fake_meta import APP_SECRET, GRAPH_PREFIX, WA_METADATA, Reply, ScriptedServer, wa_envelope
from tests.support.gateway import free_port
from tests.support.sse import read_sse
from tests.support.waiting import wait_until
from tests.webhooks.kit import ANSWER, FAQ_SETTINGS, WA_SEND, meta_wire

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "processes-test-secret-key-0123456789"
NODE = "hm-node"
WEBHOOKS = 300


@dataclass
class Node:
    proc: asyncio.subprocess.Process
    base: str
    tmp: Path

    def stderr(self) -> str:
        return (self.tmp / "stderr.log").read_text(errors="replace")

    def stdout(self) -> str:
        return (self.tmp / "stdout.log").read_text(errors="replace")

    def ready_pids(self) -> dict[str, int]:
        """node id -> pid of its latest ready process, from the supervisor's log."""
        return {m[0]: int(m[1]) for m in re.findall(r"process (\S+) \(\w+\) ready, pid (\d+)", self.stderr())}


def node_env(tmp: Path, port: int, **env: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""), "BUZZI_PORT": str(port), "BUZZI_NODE_ID": NODE,
        "BUZZI_PUBLIC_URL": f"http://127.0.0.1:{port}", "BUZZI_SERVER_DATA_DIR": str(tmp / "var"),
        "BUZZI_STORE_URL": f"sqlite:///{tmp / 'var' / 'buzzi.sqlite3'}", "BUZZI_SECRET_KEY": SECRET_KEY,
        "BUZZI_ADMIN_PASSWORD": "admin-password-123", "BUZZI_CHAT_CREATE_DEMO": "false",
        "BUZZI_SERVER_SHUTDOWN_GRACE_SECONDS": "3", "BUZZI_SECURITY_ALLOW_PRIVATE_NETWORKS": "true",
        "BUZZI_SERVER_LOG_LEVEL": "info", "BUZZI_INBOX_POLL_SECONDS": "0.5", **env,
    }


async def spawn(tmp: Path, port: int, **env: str) -> asyncio.subprocess.Process:
    with open(tmp / "stdout.log", "w") as out, open(tmp / "stderr.log", "w") as err:
        return await asyncio.create_subprocess_exec(sys.executable, "run.py", cwd=ROOT,
                                                    env=node_env(tmp, port, **env), stdout=out, stderr=err)


@contextlib.asynccontextmanager
async def supervised(tmp: Path, redis_url: str, **env: str) -> AsyncIterator[Node]:
    """run.py with 2 web processes and 1 answer process (unless env says otherwise), once all are ready."""
    port = free_port()
    env = {"BUZZI_SERVER_PROCESSES": "2", "BUZZI_INBOX_PROCESSES": "1", **env}
    proc = await spawn(tmp, port, BUZZI_BROKER_URL=redis_url, **env)
    node = Node(proc, f"http://127.0.0.1:{port}", tmp)

    def all_ready() -> bool:
        assert proc.returncode is None, node.stderr()[-3000:]
        return "listening on" in node.stdout()

    try:
        await wait_until(all_ready, 60, 0.1)
        yield node
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def seed(tmp: Path) -> Webhook:
    """A company, an FAQ agent and a WhatsApp webhook in the node's SQLite file, before it starts."""
    async with node_store(tmp) as store:
        await store.add(Company(id="c_proc", name="Processes Co"))
        await store.add(Agent(id="a_proc", company_id="c_proc", name="FAQ", kind="faq", settings=FAQ_SETTINGS))
        return await store.add(Webhook(
            id="wh_proc", company_id="c_proc", agent_id="a_proc", channel="whatsapp", secret=APP_SECRET,
            verify_token="verify-token-123",
            credentials={"phoneNumberId": WA_METADATA["phone_number_id"], "accessToken": "EAAG-token"},
            settings={"throughput": 1000}))


@contextlib.asynccontextmanager
async def node_store(tmp: Path) -> AsyncIterator[Store]:
    """The node's SQLite file, opened by the test as one more process."""
    (tmp / "var").mkdir(parents=True, exist_ok=True)
    store = open_store(f"sqlite:///{tmp / 'var' / 'buzzi.sqlite3'}", SecretBox(SECRET_KEY), timeout=5)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def whatsapp_message(i: int) -> tuple[bytes, dict[str, str], str]:
    """A signed WhatsApp text from customer i (one conversation each: no answer waits on another)."""
    customer = f"4915550{i:05d}"
    item = {"from": customer, "id": f"wamid.PROC{i:06d}", "timestamp": str(int(time.time())),
            "type": "text", "text": {"body": "Does it come in another color?"}}
    body = meta_wire(wa_envelope({"metadata": WA_METADATA, "contacts": [{"profile": {"name": f"C {i}"},
                                                                         "wa_id": customer}],
                                  "messages": [item]}))
    return body, {"Content-Type": "application/json", "X-Hub-Signature-256": hub_signature(APP_SECRET, body)}, customer


async def node_ids_seen(base: str, connections: int) -> set[str]:
    """/healthz over `connections` fresh connections: which processes accepted them."""
    seen: set[str] = set()
    for _ in range(connections):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http, \
                http.get(base + "/healthz") as resp:
            seen.add((await resp.json())["node"])
    return seen


async def post_all(base: str, count: int) -> list[int]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as http:
        async def post(i: int) -> int:
            body, headers, _ = whatsapp_message(i)
            async with http.post(f"{base}/api/webhooks/c_proc/a_proc/whatsapp/wh_proc", data=body,
                                 headers=headers) as resp:
                await resp.read()
                return resp.status

        return await asyncio.gather(*(post(i) for i in range(count)))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_two_web_processes_share_the_port_and_the_answer_process_answers_each_webhook_once(
        tmp_path: Path, redis_url: str):
    await seed(tmp_path)
    async with ScriptedServer() as graph:
        graph.always("POST", WA_SEND, Reply(200, {"messaging_product": "whatsapp", "contacts": [{"wa_id": "x"}],
                                                  "messages": [{"id": "wamid.OUTBOUND"}]}))
        async with supervised(tmp_path, redis_url, BUZZI_WHATSAPP_API_BASE=graph.url + GRAPH_PREFIX) as node:
            assert node.stdout().count("listening on") == 1  # one banner for the node, not one per process
            assert await node_ids_seen(node.base, 60) == {f"{NODE}-w1", f"{NODE}-w2"}

            statuses = await post_all(node.base, WEBHOOKS)
            assert statuses == [200] * WEBHOOKS

            def texts() -> list[dict]:
                return [r.json() for r in graph.to(WA_SEND) if r.json().get("type") == "text"]

            await wait_until(lambda: len(texts()) >= WEBHOOKS, 60, 0.1)
            await asyncio.sleep(1.0)  # a duplicate answer would arrive now
            replies = texts()
            per_customer = collections.Counter(r["to"] for r in replies)
            assert len(replies) == WEBHOOKS and set(per_customer.values()) == {1}
            assert set(per_customer) == {whatsapp_message(i)[2] for i in range(WEBHOOKS)}

            async with node_store(tmp_path) as store:
                users = await store.find(Message, webhook_id="wh_proc", role="user")
            assert len(users) == WEBHOOKS
            assert len({m.channel_message_id for m in users}) == WEBHOOKS  # each stored once
            assert {m.state for m in users} == {"done"}
            # Only the answer process claims: the web processes store and acknowledge.
            assert {m.lease_owner for m in users} == {f"{NODE}-a1"}

            node.proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(node.proc.wait(), 30) == 0


async def test_without_answer_processes_the_web_processes_answer_each_webhook_once(tmp_path: Path, redis_url: str):
    await seed(tmp_path)
    async with ScriptedServer() as graph:
        graph.always("POST", WA_SEND, Reply(200, {"messaging_product": "whatsapp", "contacts": [{"wa_id": "x"}],
                                                  "messages": [{"id": "wamid.OUTBOUND"}]}))
        async with supervised(tmp_path, redis_url, BUZZI_INBOX_PROCESSES="0",
                              BUZZI_WHATSAPP_API_BASE=graph.url + GRAPH_PREFIX) as node:
            count = 100
            assert await post_all(node.base, count) == [200] * count

            def texts() -> list[dict]:
                return [r.json() for r in graph.to(WA_SEND) if r.json().get("type") == "text"]

            await wait_until(lambda: len(texts()) >= count, 60, 0.1)
            await asyncio.sleep(1.0)  # a duplicate answer would arrive now
            assert sorted(collections.Counter(r["to"] for r in texts()).values()) == [1] * count
            async with node_store(tmp_path) as store:
                users = await store.find(Message, webhook_id="wh_proc", role="user")
            assert {m.state for m in users} == {"done"} and len(users) == count
            assert {m.lease_owner for m in users} <= {f"{NODE}-w1", f"{NODE}-w2"}
            node.proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(node.proc.wait(), 30) == 0


async def chat_answer(base: str) -> tuple[str, str]:
    """One web chat message: (the streamed answer, the message id), the stream read from one web
    process while the answer process answers."""
    async with aiohttp.ClientSession() as http:
        async with http.post(base + "/api/chat/sessions", json={"companyId": "c_proc", "agentId": "a_proc"}) as resp:
            assert resp.status == 201, await resp.text()
            sid = (await resp.json())["sessionId"]
        async with http.get(f"{base}/api/chat/{sid}/stream") as stream:
            assert (await stream.content.readline()).startswith(b"retry:")
            async with http.post(f"{base}/api/chat/{sid}/message",
                                 json={"content": "Which colors does it come in?"}) as resp:
                assert resp.status == 202, await resp.text()
                message_id = (await resp.json())["messageId"]

            async def complete() -> dict:
                async for event in read_sse(stream):
                    if event.event == "complete":
                        return event.data
                raise AssertionError("stream ended without complete")

            return (await asyncio.wait_for(complete(), 20))["content"], message_id


async def test_chat_crosses_processes_a_killed_web_process_restarts_and_sigterm_stops_all(
        tmp_path: Path, redis_url: str):
    await seed(tmp_path)
    async with supervised(tmp_path, redis_url) as node:
        answer, message_id = await chat_answer(node.base)
        assert answer == ANSWER
        async with node_store(tmp_path) as store:
            assert (await store.get(Message, message_id)).lease_owner == f"{NODE}-a1"

        pids = node.ready_pids()
        assert set(pids) == {f"{NODE}-w1", f"{NODE}-w2", f"{NODE}-a1"}
        os.kill(pids[f"{NODE}-w1"], signal.SIGKILL)

        def restarted() -> bool:
            return node.ready_pids()[f"{NODE}-w1"] != pids[f"{NODE}-w1"]

        await wait_until(restarted, 30, 0.1)
        assert f"process {NODE}-w1 (pid {pids[f'{NODE}-w1']}) exited unexpectedly with -9" in node.stderr()
        assert await node_ids_seen(node.base, 60) == {f"{NODE}-w1", f"{NODE}-w2"}

        children = set(node.ready_pids().values())
        node.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(node.proc.wait(), 30) == 0
        assert not [pid for pid in children if pid_alive(pid)]
        assert node.stdout().count("listening on") == 1  # a restart prints no second banner


async def test_several_processes_with_the_memory_broker_exit_2_naming_the_settings(tmp_path: Path):
    proc = await spawn(tmp_path, free_port(), BUZZI_SERVER_PROCESSES="2", BUZZI_BROKER_URL="memory://")
    assert await asyncio.wait_for(proc.wait(), 30) == 2
    err = (tmp_path / "stderr.log").read_text().strip().splitlines()
    assert len(err) == 1
    assert "server.processes=2" in err[0] and "inbox.processes=0" in err[0] and "Redis" in err[0]
    assert "listening on" not in (tmp_path / "stdout.log").read_text()


async def test_a_process_that_keeps_dying_at_start_makes_the_supervisor_give_up(tmp_path: Path, redis_url: str):
    # The port is held by a listener without SO_REUSEPORT: no web process can bind it.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = await spawn(tmp_path, port, BUZZI_BROKER_URL=redis_url, BUZZI_SERVER_PROCESSES="2")
        assert await asyncio.wait_for(proc.wait(), 60) == 1
    err = (tmp_path / "stderr.log").read_text()
    assert "cannot listen" in err and "before it was ready, 3 times in a row: giving up" in err
    assert "listening on" not in (tmp_path / "stdout.log").read_text()


def test_process_counts_are_checked_and_several_processes_need_redis():
    from buzzi.config import ConfigError, load_settings
    from buzzi.processes import is_multi, plan

    redis = {"BUZZI_BROKER_URL": "redis://127.0.0.1:6379/0"}
    for env, message in (({"BUZZI_SERVER_PROCESSES": "0"}, "server.processes: expected 1 to 64 web processes"),
                         ({"BUZZI_INBOX_PROCESSES": "-1"}, "inbox.processes: expected 0 to 64 answer processes"),
                         ({"BUZZI_INBOX_PROCESSES": "1"}, "inbox.processes=1 run 2 processes, which need a Redis")):
        with pytest.raises(ConfigError, match=message):
            load_settings(env=env)
    assert not is_multi(load_settings(env={}))  # the default stays one process, no supervisor
    settings = load_settings(env={**redis, "BUZZI_NODE_ID": "n", "BUZZI_SERVER_PROCESSES": "2",
                                  "BUZZI_INBOX_PROCESSES": "1"})
    assert [(c.role, c.node_id) for c in plan(settings)] == [("web", "n-w1"), ("web", "n-w2"), ("answer", "n-a1")]
    alone = load_settings(env={**redis, "BUZZI_NODE_ID": "n", "BUZZI_SERVER_PROCESSES": "2"})
    assert [(c.role, c.node_id) for c in plan(alone)] == [("all", "n-w1"), ("all", "n-w2")]  # they answer too
    assert is_multi(load_settings(env={**redis, "BUZZI_INBOX_PROCESSES": "1"}))

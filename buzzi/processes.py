"""Several processes per node (server.processes web processes, inbox.processes answer processes):
the plan of who runs what, and the supervisor that run.py becomes when there is more than one.

The supervisor starts every child with multiprocessing's "spawn" start method (Python docs,
multiprocessing "Contexts and start methods": a fresh interpreter inheriting only what the child
needs, so no event loop, socket, thread or lock is copied from the parent), waits until each
reports ready over its pipe, forwards SIGTERM/SIGINT, restarts a child that dies unexpectedly
(with backoff) and gives up when one keeps dying before it is ready. It knows nothing of HTTP:
run.py passes the child entry point.

Each child is its own node in the cluster view ("<node_id>-w1", "-a1"): presence keys a node's
stream count and session list by node id, and leases are owned by node id, so processes sharing
one id would overwrite each other's sessions and could finish or release each other's claims.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from buzzi.config import Settings
from buzzi.runtime import ROLE_ALL, ROLE_ANSWER, ROLE_WEB

log = logging.getLogger("buzzi.processes")

READY = "ready"
MAX_START_FAILURES = 3       # a child dying this many times in a row before it is ready: give up
STABLE_SECONDS = 10.0        # a child that ran this long after ready starts its backoff afresh
BACKOFF_BASE_SECONDS = 0.5   # first restart delay; doubles per quick death
BACKOFF_MAX_SECONDS = 10.0
START_TIMEOUT_SECONDS = 60.0  # a child not ready by then is killed and counted as a failed start
STOP_MARGIN_SECONDS = 10.0   # beyond shutdown_grace_seconds before a child is killed at stop
TICK_SECONDS = 0.25


@dataclass(frozen=True)
class ChildSpec:
    role: str   # buzzi.runtime ROLE_WEB or ROLE_ANSWER
    settings: Settings  # the node's settings with this child's node id

    @property
    def node_id(self) -> str:
        return self.settings.node_id


def is_multi(settings: Settings) -> bool:
    """True unless the node is the single-process default (1 web process answering itself)."""
    return settings.server.processes > 1 or settings.inbox.processes > 0


def plan(settings: Settings) -> list[ChildSpec]:
    """server.processes web children, then inbox.processes answer children, each with its node id."""
    base = settings.node_id

    def child(role: str, suffix: str) -> ChildSpec:
        server = dataclasses.replace(settings.server, node_id=f"{base}-{suffix}")
        return ChildSpec(role, dataclasses.replace(settings, server=server))

    # Without answer processes the web processes answer too (each claims from the shared store).
    web_role = ROLE_WEB if settings.inbox.processes > 0 else ROLE_ALL
    return ([child(web_role, f"w{i}") for i in range(1, settings.server.processes + 1)]
            + [child(ROLE_ANSWER, f"a{i}") for i in range(1, settings.inbox.processes + 1)])


ChildTarget = Callable[[ChildSpec, Connection], None]


@dataclass
class _Slot:
    spec: ChildSpec
    process: Any = None            # multiprocessing.Process (spawn context)
    conn: Connection | None = None
    started_at: float = 0.0
    ready_at: float | None = None
    failures: int = 0              # quick deaths in a row
    restart_at: float | None = None


@dataclass
class Supervisor:
    specs: list[ChildSpec]
    target: ChildTarget
    grace_seconds: float
    on_all_ready: Callable[[], None] = lambda: None
    slots: list[_Slot] = field(init=False)
    _stopping: bool = field(default=False, init=False)
    _announced: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.slots = [_Slot(spec) for spec in self.specs]
        self._ctx = multiprocessing.get_context("spawn")

    def run(self) -> int:
        """Start everything, supervise until SIGTERM/SIGINT; 0 on a clean stop, 1 on giving up."""
        previous = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in self.slots:
                self._start(slot)
            while not self._stopping:
                if not self._tick():
                    self._stop_all()
                    return 1
            return self._stop_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _request_stop(self, _signum: int, _frame: object) -> None:
        self._stopping = True

    def _start(self, slot: _Slot) -> None:
        parent_end, child_end = self._ctx.Pipe()
        process = self._ctx.Process(target=self.target, args=(slot.spec, child_end), name=slot.spec.node_id)
        process.start()
        child_end.close()  # the child holds the only other end: EOF tells each side the other is gone
        slot.process, slot.conn = process, parent_end
        slot.started_at, slot.ready_at, slot.restart_at = time.monotonic(), None, None

    def _tick(self) -> bool:
        """One round: readiness messages, deaths, due restarts. False = give up."""
        live = [s for s in self.slots if s.process is not None]
        handles = [s.process.sentinel for s in live] + [s.conn for s in live if s.conn is not None]
        wait(handles, timeout=TICK_SECONDS)
        now = time.monotonic()
        for slot in self.slots:
            if slot.process is None:
                if slot.restart_at is not None and now >= slot.restart_at and not self._stopping:
                    self._start(slot)
                continue
            self._read(slot, now)
            if not slot.process.is_alive() or self._start_timed_out(slot, now):
                if not self._died(slot, now):
                    return False
        if not self._announced and all(s.ready_at is not None for s in self.slots):
            self._announced = True
            self.on_all_ready()
        return True

    def _read(self, slot: _Slot, now: float) -> None:
        conn = slot.conn
        with contextlib.suppress(EOFError, OSError):
            while conn is not None and conn.poll():
                if conn.recv() == READY:
                    slot.ready_at = now
                    log.info("process %s (%s) ready, pid %s", slot.spec.node_id, slot.spec.role, slot.process.pid)

    def _start_timed_out(self, slot: _Slot, now: float) -> bool:
        if slot.ready_at is None and now - slot.started_at > START_TIMEOUT_SECONDS:
            log.error("process %s not ready after %.0f s: killing it", slot.spec.node_id, START_TIMEOUT_SECONDS)
            slot.process.kill()
            slot.process.join()
            return True
        return False

    def _died(self, slot: _Slot, now: float) -> bool:
        """Record an unexpected exit and schedule the restart; False when it keeps dying at start."""
        process, started = slot.process, slot.ready_at is not None
        process.join()
        if slot.conn is not None:
            slot.conn.close()
        slot.process = slot.conn = None
        if self._stopping:
            return True
        stable = started and now - (slot.ready_at or now) >= STABLE_SECONDS
        slot.failures = 0 if stable else slot.failures + 1
        if not started and slot.failures >= MAX_START_FAILURES:
            log.error("process %s exited with %s before it was ready, %d times in a row: giving up",
                      slot.spec.node_id, process.exitcode, slot.failures)
            return False
        delay = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, slot.failures - 1))
        log.error("process %s (pid %s) exited unexpectedly with %s %s; restarting it in %.1f s",
                  slot.spec.node_id, process.pid, process.exitcode,
                  "after it was ready" if started else "while starting", delay)
        slot.restart_at = now + delay
        return True

    def _stop_all(self) -> int:
        """SIGTERM to every child, wait for their graceful shutdown, kill what outlives the grace."""
        self._stopping = True
        running = [s for s in self.slots if s.process is not None]
        for slot in running:
            with contextlib.suppress(ProcessLookupError):
                slot.process.terminate()  # SIGTERM: the child drains and stops like a single node
        deadline = time.monotonic() + self.grace_seconds + STOP_MARGIN_SECONDS
        clean = True
        for slot in running:
            slot.process.join(max(0.0, deadline - time.monotonic()))
            if slot.process.is_alive():
                log.error("process %s did not stop within the grace period: killing it", slot.spec.node_id)
                slot.process.kill()
                slot.process.join()
            # A child stopped by our SIGTERM before it installed its handler ends with -SIGTERM.
            clean = clean and slot.process.exitcode in (0, -signal.SIGTERM)
            if slot.conn is not None:
                slot.conn.close()
        return 0 if clean else 1

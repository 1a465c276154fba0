"""The inbox worker: every node claims stored user messages and answers them.

Work arrives by wake-up (broker.notify_inbox, so any node reacts at once to a message stored on
another) and by a slow poll that also picks up messages whose lease expired on a dead node, and
replies scheduled for a later send (a Retry-After too long to wait for inline) once their time has
come: kept in the store, such a resend survives a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from buzzi.broker.base import WakeUps, wake_inboxes
from buzzi.config import InboxSettings
from buzzi.models import FAILED, Message
from buzzi.processing import MessageProcessor
from buzzi.store.base import Store

log = logging.getLogger("buzzi.inbox")

ORDER_DEFER_SECONDS = 0.3


class InboxWorker:
    def __init__(self, store: Store, broker: WakeUps, processor: MessageProcessor, settings: InboxSettings,
                 node_id: str) -> None:
        self.store = store
        self.broker = broker
        self.processor = processor
        self.settings = settings
        self.node_id = node_id
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._kick = asyncio.Event()

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="inbox")

    def kick(self) -> None:
        """Local wake-up (the broker's wake-up reaches the other nodes)."""
        self._kick.set()

    def take(self, message_id: str) -> None:
        """Fast path for a message this node just stored: claim that very message and answer it
        now, without waiting for the loop to wake and claim the oldest. With no free slot (or if
        another node claims it first) the claim loop covers it as for any other message."""
        if self._stopping or self._slots.locked():
            self.kick()
            return
        task = asyncio.create_task(self._take(message_id), name=f"take-{message_id}")
        self._running[f"take:{message_id}"] = task

    async def _take(self, message_id: str) -> None:
        try:
            await self._slots.acquire()
            try:
                message = await self.store.claim_message(message_id, self.node_id, self.settings.lease_seconds)
            except Exception as exc:  # noqa: BLE001 - the claim loop will pick it up
                log.warning("claim of %s failed: %s", message_id, exc)
                message = None
            if message is None:
                self._slots.release()
                self.kick()
                return
            await self._process(message)
        finally:
            self._running.pop(f"take:{message_id}", None)

    async def _loop(self) -> None:
        while not self._stopping:
            await self._slots.acquire()
            try:
                message = await self.store.claim_next_message(self.node_id, self.settings.lease_seconds)
            except Exception as exc:  # noqa: BLE001 - store down: keep the node alive and try again
                self._slots.release()
                log.warning("claim failed: %s", exc)
                await asyncio.sleep(self.settings.poll_seconds)
                continue
            if message is None:
                self._slots.release()
                await self._wait_for_work()
                continue
            task = asyncio.create_task(self._process(message), name=f"answer-{message.id}")
            self._running[message.id] = task

    async def _wait_for_work(self) -> None:
        self._kick.clear()
        kicked = asyncio.ensure_future(self._kick.wait())
        woken = asyncio.ensure_future(self.broker.wait_inbox(self.settings.poll_seconds))
        try:
            await asyncio.wait({kicked, woken}, timeout=self.settings.poll_seconds,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (kicked, woken):
                fut.cancel()
            with contextlib.suppress(BaseException):
                await woken

    async def _process(self, message: Message) -> None:
        try:
            # A scheduled reply is claimed once per resend: its claims count the platform's
            # "later"s, not crashes, and the delivery service bounds its send attempts itself.
            user = message.role == "user"
            if user and message.attempts > self.settings.max_attempts:
                current = await self.store.get(Message, message.id) or message  # keep edits recorded meanwhile
                await self.store.finish_message(
                    message.id, self.node_id, FAILED, metadata={**current.metadata, "error": "too many attempts"}
                )
                return
            if user and await self.store.earlier_unanswered(message):
                # One answer at a time per conversation, in order: come back shortly.
                await self.store.defer_message(message.id, self.node_id, ORDER_DEFER_SECONDS)
                asyncio.get_running_loop().call_later(ORDER_DEFER_SECONDS, self.kick)
                return
            await self.processor.process(message)
            self.kick()  # a deferred follow-up of this conversation may be waiting
            await wake_inboxes(self.broker)
        except asyncio.CancelledError:
            # Shutdown ran out of grace: hand the message back so another node answers it now.
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.release_message(message.id, self.node_id))
            raise
        except Exception:
            log.exception("inbox task for %s crashed", message.id)
        finally:
            self._running.pop(message.id, None)
            self._slots.release()

    async def stop(self, grace: float) -> None:
        """Stop claiming; let running answers finish within `grace`, release the rest."""
        self._stopping = True
        self._kick.set()
        if self._loop_task:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        running = list(self._running.values())
        if running:
            _, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

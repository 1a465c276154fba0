"""The inbox worker: every node claims stored user messages and answers them.

Work arrives by wake-up (broker.notify_inbox, so any node reacts at once to a message stored on
another) and by a slow poll that also picks up messages whose lease expired on a dead node, and
replies scheduled for a later send (a Retry-After too long to wait for inline) once their time has
come: kept in the store, such a resend survives a restart.

One answer at a time per conversation, in order. A claimed message of a conversation this worker
is answering already is parked, not bounced: its claim is handed back hidden from other claims for
a lease (so the claim loop moves on to other conversations instead of claiming it again and again),
and when the answer before it ends, this worker takes it back by id and answers it in the same
slot. A backlog of N messages in one conversation thus costs about N claims, N parks and N
take-backs, whatever the agent's speed. The store's earlier_unanswered check stays for what this
worker cannot know (an earlier message answered by another node): the processor hands such a
message back for ORDER_DEFER_SECONDS (buzzi/processing.py) and it is claimed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from dataclasses import dataclass, field

from buzzi import clock
from buzzi.answer_slots import AnswerSlots, LoopLagGovernor
from buzzi.broker.base import WakeUps, wake_inboxes
from buzzi.config import InboxSettings
from buzzi.models import FAILED, PROCESSING, Message
from buzzi.processing import ORDER_DEFER_SECONDS, MessageProcessor
from buzzi.store.base import Store

log = logging.getLogger("buzzi.inbox")



class Reservation:
    """One answer slot held for a message being stored: `claim` the lease it is stored with, then
    `answer` it once stored, or `cancel` if it was not."""

    def __init__(self, worker: InboxWorker) -> None:
        self._worker = worker
        self._open = True

    def claim(self) -> tuple[str, float]:
        """(owner, lease_until) to store the message with: claimed by this node, attempt 1."""
        return self._worker.node_id, clock.now() + self._worker.settings.lease_seconds

    def answer(self, message: Message) -> None:
        if self._open:
            self._open = False
            self._worker.answer_claimed(message)

    def cancel(self) -> None:
        if self._open:
            self._open = False
            self._worker.release_slot()


@dataclass
class _Answering:
    """A conversation this worker is answering: the follow-ups it parked meanwhile (id -> sort key)."""

    parked: dict[str, tuple[float, str]] = field(default_factory=dict)

    def next_parked(self) -> str | None:
        if not self.parked:
            return None
        message_id = min(self.parked, key=self.parked.__getitem__)
        del self.parked[message_id]
        return message_id


class InboxWorker:
    def __init__(self, store: Store, broker: WakeUps, processor: MessageProcessor, settings: InboxSettings,
                 node_id: str) -> None:
        self.store = store
        self.broker = broker
        self.processor = processor
        self.settings = settings
        self.node_id = node_id
        # Fewer answers at once while intake saturates the loop (buzzi/answer_slots.py).
        self._slots = AnswerSlots(settings.concurrency)
        self.governor = LoopLagGovernor(self._slots, settings.concurrency, settings.busy_concurrency,
                                        settings.busy_lag_ms / 1000)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._kick = asyncio.Event()
        self._answering: dict[str, _Answering] = {}
        # claims (loop and fast path), parked, taken_back, order_defers: what tests and benches
        # read to see how much store work the answers cost.
        self.counts: Counter[str] = Counter()

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._loop(), name="inbox")
        self.governor.start()

    def kick(self) -> None:
        """Local wake-up (the broker's wake-up reaches the other nodes)."""
        self._kick.set()

    async def reserve(self) -> Reservation | None:
        """A free answer slot held for a message about to be stored (None when all are busy or the
        worker stops): the message is stored already claimed by this node (Reservation.claim), so
        answering it needs no claim round trip."""
        if self._stopping or not self._slots.try_acquire():
            return None
        return Reservation(self)

    def take(self, message_id: str) -> None:
        """Fast path for a message this node just stored: claim that very message and answer it
        now, without waiting for the loop to wake and claim the oldest. With no free slot (or if
        another node claims it first) the claim loop covers it as for any other message."""
        if self._stopping or self._slots.locked():
            self.kick()
            return
        task = asyncio.create_task(self._take(message_id), name=f"take-{message_id}")
        self._running[f"take:{message_id}"] = task

    def answer_claimed(self, message: Message) -> None:
        """Answer a message stored already claimed by this node, in the slot reserved for it."""
        self.counts["claims"] += 1
        task = asyncio.create_task(self._process(message), name=f"answer-{message.id}")
        self._running[message.id] = task

    def release_slot(self) -> None:
        self._slots.release()

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
            self.counts["claims"] += 1
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
            self.counts["claims"] += 1
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
        """Answer a claimed message, then the follow-ups of its conversation parked meanwhile, in
        order and in the same slot; park it instead if its conversation is being answered here."""
        conversation = message.conversation_id if message.role == "user" else None
        current: Message | None = message
        try:
            if conversation is not None and conversation in self._answering:
                current = None  # the conversation stays another task's
                current = await self._park(message)
            elif conversation is not None:
                self._answering[conversation] = _Answering()
            while current is not None:
                await self._answer_one(current)
                current = None if conversation is None else await self._take_back(conversation)
        except asyncio.CancelledError:
            # Shutdown ran out of grace: hand the message back so another node answers it now.
            if current is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.store.release_message(current.id, self.node_id))
            raise
        finally:
            if conversation is not None and current is not None:
                self._drop(conversation)
            self._running.pop(message.id, None)
            self._slots.release()

    async def _answer_one(self, message: Message) -> None:
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
            if not await self.processor.process(message):
                # An earlier message is being answered elsewhere (or still waits): the processor
                # handed it back for ORDER_DEFER_SECONDS; look again then.
                self.counts["order_defers"] += 1
                asyncio.get_running_loop().call_later(ORDER_DEFER_SECONDS, self.kick)
                return
            self.kick()  # a deferred follow-up of this conversation may be waiting
            await wake_inboxes(self.broker)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("inbox task for %s crashed", message.id)

    async def _park(self, message: Message) -> Message | None:
        """Hand the claim back hidden for a lease (not counted as an attempt) and remember it: the
        answer before it takes it back by id. Should this node die, it is claimed after the lease.
        Returns the message taken back at once when that answer ended meanwhile (it is then this
        task's to answer)."""
        try:
            if not await self.store.defer_message(message.id, self.node_id, self.settings.lease_seconds):
                return None
        except Exception as exc:  # noqa: BLE001 - still our claim: the lease brings it back
            log.warning("parking %s failed: %s", message.id, exc)
            return None
        self.counts["parked"] += 1
        conversation = message.conversation_id
        answering = self._answering.get(conversation)
        if answering is not None:
            answering.parked[message.id] = (message.created_at, message.id)
            return None
        self._answering[conversation] = _Answering()
        taken = None
        try:
            taken = await self._claim_back(message.id)
        finally:
            if taken is None:  # never leave a conversation marked that nobody answers
                self._drop(conversation)
        return taken

    async def _take_back(self, conversation: str) -> Message | None:
        """The oldest follow-up parked for this conversation, claimed again by this worker; None
        (and the conversation no longer marked) when none is left or none could be taken back."""
        answering = self._answering[conversation]
        while (message_id := answering.next_parked()) is not None:
            message = await self._claim_back(message_id)
            if message is not None:
                return message
        self._drop(conversation)
        return None

    async def _claim_back(self, message_id: str) -> Message | None:
        """Claim a parked message again; None if another node claimed it after its lease, or gone."""
        try:
            message = await self.store.update(
                Message, message_id, {"lease_owner": self.node_id,
                                      "lease_until": clock.now() + self.settings.lease_seconds},
                inc={"attempts": 1}, expect={"lease_owner": None, "state": PROCESSING})
        except Exception as exc:  # noqa: BLE001 - the lease brings it back to a claim
            log.warning("taking back %s failed: %s", message_id, exc)
            return None
        if message is not None:
            self.counts["taken_back"] += 1
        return message

    def _drop(self, conversation: str) -> None:
        """Stop answering a conversation here; follow-ups still parked come back after their lease."""
        answering = self._answering.pop(conversation, None)
        if answering is not None and answering.parked:
            self.kick()

    async def stop(self, grace: float) -> None:
        """Stop claiming; let running answers finish within `grace`, release the rest."""
        self._stopping = True
        self._kick.set()
        await self.governor.stop()
        await self._unpark_all()
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

    async def _unpark_all(self) -> None:
        """Parked follow-ups become claimable at once: this worker will not take them back."""
        for answering in list(self._answering.values()):
            for message_id in list(answering.parked):
                with contextlib.suppress(Exception):
                    await self._unhide(message_id)
            answering.parked.clear()

    async def _unhide(self, message_id: str) -> None:
        """End a parked message's hidden lease so that any claim takes it now."""
        await self.store.update(Message, message_id, {"lease_until": clock.now()},
                                expect={"lease_owner": None, "state": PROCESSING})

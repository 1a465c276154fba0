"""Answering one claimed user message: handover rules, the agent run, the stored reply, delivery.
A claimed reply (role != "user") is a send scheduled for later (a Retry-After past
channels.send_inline_wait_seconds): its time has come, and the delivery service resends it.

Exactly-once answers rest on two store guarantees: the claim lease (one node works on a message at
a time; a dead node's message is claimed again after the lease) and the reply's unique dedupe key
"reply:{message id}" (a second attempt can never store a second answer).

A store or broker that does not answer says nothing about the message: the claim is handed back
with a backoff and the message is answered once they are back. Such retries never use up the last
attempt; only the agent's own failures (and a node dying mid-answer) end a message as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from buzzi import clock
from buzzi.agents.base import AgentContext
from buzzi.agents.public_error import admin_detail, customer_error
from buzzi.agents.registry import AgentRegistry
from buzzi.broker.base import BrokerUnavailable, StreamLog
from buzzi.chat import conversation_stream
from buzzi.config import Settings
from buzzi.conversations import ConversationService
from buzzi.delivery import ReplyDelivery
from buzzi.events import AgentEvent
from buzzi.events import error as error_event
from buzzi.ids import new_id
from buzzi.logs import log_fields
from buzzi.metrics import Metrics
from buzzi.models import DONE, FAILED, SKIPPED, STORED, WEB_CHANNEL, Agent, Company, Conversation, Message
from buzzi.store.base import Store, StoreUnavailable

log = logging.getLogger("buzzi.processing")

HISTORY_LIMIT = 20
RETRY = "retry"  # not a stored state: the claim is handed back to be tried again later
NOT_YET = "not_yet"  # not a stored state: an earlier message of the conversation is still unanswered
ORDER_DEFER_SECONDS = 0.3  # how long such a message is handed back before it is claimed again
UNAVAILABLE = (StoreUnavailable, BrokerUnavailable)


@dataclass(frozen=True)
class Outcome:
    """How handling a claimed message ended. DONE, SKIPPED and FAILED are stored on the message,
    with `note` merged into its metadata; RETRY hands the claim back for `delay` seconds."""

    state: str
    note: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0

    @classmethod
    def done(cls, **note: Any) -> Outcome:
        return cls(DONE, note)

    @classmethod
    def skipped(cls) -> Outcome:
        return cls(SKIPPED)

    @classmethod
    def failed(cls, error: str | None = None) -> Outcome:
        return cls(FAILED, {"error": error} if error else {})

    @classmethod
    def retry(cls, delay: float) -> Outcome:
        return cls(RETRY, delay=delay)

    @classmethod
    def not_yet(cls) -> Outcome:
        return cls(NOT_YET, delay=ORDER_DEFER_SECONDS)

    def fields(self, message: Message) -> dict[str, Any]:
        """What finishing the message stores besides its state."""
        return {"metadata": {**message.metadata, **self.note}} if self.note else {}


@dataclass(frozen=True)
class AgentFailure:
    code: str
    retryable: bool
    detail: str = ""  # the agent's own code and message: for admins, never for the customer

    def note(self) -> str:
        """What the failed message's metadata keeps (the admin API and the dashboard show it)."""
        return f"agent error: {self.detail or self.code}"


TYPING_STOP_GRACE_SECONDS = 2.0


class TypingIndicator:
    """The channel's typing indicator, refreshed every `interval` seconds while the agent works
    (each channel's own: its indicator fades after a few seconds; None = shown once, it lasts
    until the reply). Only the first call is `first`: a read receipt goes out once, not per refresh.

    The first indicator always goes out, and stop() lets one in flight finish (bounded) instead of
    cancelling it: a fast agent would otherwise never show one, and a request cut mid-flight can
    still reach the platform after the reply and leave "typing..." under the answer."""

    def __init__(self, delivery: ReplyDelivery, conversation: Conversation, message: Message,
                 interval: float | None) -> None:
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._run(delivery, conversation, message, interval),
                                         name=f"typing-{message.id}")

    async def _run(self, delivery: ReplyDelivery, conversation: Conversation, message: Message,
                   interval: float | None) -> None:
        first = True
        while True:
            try:
                await delivery.typing(conversation, message, first=first)
            except StoreUnavailable as exc:  # a cosmetic indicator: the answer meets the outage on its own
                log.debug("typing indicator skipped: %s", exc)
            if interval is None or interval <= 0:
                return
            first = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)
                return

    async def stop(self) -> None:
        self._stopping.set()
        try:
            await asyncio.wait({self._task}, timeout=TYPING_STOP_GRACE_SECONDS)
        finally:
            if not self._task.done():
                self._task.cancel()


def complete_event(reply: Message) -> AgentEvent:
    return AgentEvent("complete", {"content": reply.content, "metadata": {"messageId": reply.id, **reply.metadata}})


class MessageProcessor:
    def __init__(self, store: Store, broker: StreamLog, agents: AgentRegistry, delivery: ReplyDelivery,
                 conversations: ConversationService, settings: Settings, metrics: Metrics, node_id: str) -> None:
        self.store = store
        self.broker = broker
        self.agents = agents
        self.delivery = delivery
        self.conversations = conversations
        self.settings = settings
        self.metrics = metrics
        self.node_id = node_id
        phrases = [re.escape(p.strip().lower()) for p in settings.chat.handover_keywords if p.strip()]
        self._handover = re.compile(r"\b(" + "|".join(phrases) + r")\b") if phrases else None

    def wants_human(self, text: str) -> bool:
        return bool(self._handover and self._handover.search(text.lower()))

    async def process(self, message: Message) -> bool:
        """Handle a message this node has claimed; always ends by finishing the claim. False when
        it was not its turn (an earlier message of its conversation is still unanswered): it was
        handed back for ORDER_DEFER_SECONDS, not counted as an attempt."""
        lease = asyncio.create_task(self._keep_lease(message.id), name=f"lease-{message.id}")
        try:
            outcome = await (self._answer(message) if message.role == "user" else self._resend(message))
        except asyncio.CancelledError:
            raise
        except UNAVAILABLE as exc:
            log_fields(log, logging.WARNING, "answer deferred: dependency unavailable", message=message.id,
                       attempt=message.attempts, error=str(exc))
            outcome = self._retry(message)
        except Exception:
            log.exception("processing %s failed", message.id)
            outcome = Outcome.failed("internal error")
        finally:
            lease.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lease
        try:
            await self._finish(message, outcome)
        except UNAVAILABLE as exc:
            # Still our claim: once its lease runs out, whichever node claims it first answers it.
            log_fields(log, logging.WARNING, "message left to its lease: store unavailable", message=message.id,
                       error=str(exc))
        return outcome.state != NOT_YET

    async def _finish(self, message: Message, outcome: Outcome) -> None:
        if message.role != "user" and outcome.state != RETRY:
            # A reply keeps its state (its delivery says how the send went). When the resend was
            # put off again, the delivery service already handed the claim back with the new
            # lease_until: finishing finds the lease gone, as it should.
            await self.store.finish_message(message.id, self.node_id, STORED)
            return
        if outcome.state == NOT_YET:
            await self.store.defer_message(message.id, self.node_id, outcome.delay)
            return
        if outcome.state == RETRY:
            # A counted attempt marks the message as retried (the next attempt looks for a stored
            # reply and has the widget drop a partial one), so the first retry always counts, and
            # it lengthens the backoff. At the budget the attempt stops counting: a dependency
            # outage outlasting the budget must not hit the inbox's "too many attempts", which is
            # for messages that crash or kill their node. (An agent retry is always under budget.)
            counted = message.attempts < max(2, self.settings.inbox.max_attempts)
            if await self.store.defer_message(message.id, self.node_id, outcome.delay, count_attempt=counted):
                return
            outcome = Outcome.failed()
        if not await self.store.finish_message(message.id, self.node_id, outcome.state,
                                               **outcome.fields(await self._current(message))):
            log.warning("lease on %s was lost before it finished; another node owns it", message.id)

    async def _current(self, message: Message) -> Message:
        """The message as stored now: an edit may have been recorded on its metadata while it was
        answered, and finishing must not write the claimed copy's older metadata over it."""
        current = await self.store.get(Message, message.id)
        return current if current is not None else message

    async def _resend(self, reply: Message) -> Outcome:
        """A reply scheduled for a later send whose notBefore has passed: the delivery service
        sends the parts not yet sent (and reschedules it, should the platform say "later" again)."""
        conversation = await self.store.get(Conversation, reply.conversation_id)
        if conversation is None:
            return Outcome.skipped()  # deleted meanwhile: nobody to send it to
        try:
            await self.delivery.resend(conversation, reply)
        except UNAVAILABLE:
            raise
        except Exception:  # recorded on the reply, so it does not wait "pending" forever
            log.exception("resend of %s failed", reply.id)
            delivery = {**reply.delivery, "status": "failed", "updatedAt": clock.now(),
                        "error": {"code": "internal_error", "title": "the scheduled resend failed"}}
            await self.store.update(Message, reply.id, {"delivery": delivery})
        return Outcome.done()

    def _retry(self, message: Message) -> Outcome:
        base = self.settings.inbox.retry_base_seconds
        return Outcome.retry(min(60.0, base * 2 ** (message.attempts - 1)))

    async def _answer(self, message: Message) -> Outcome:
        # What an answer reads first, in one hop: the order check (one answer at a time per
        # conversation, in order), with the records and the history queued right behind it (a
        # handover or skip just ignores the history; a message whose turn has not come, all of it).
        earlier, (conversation, agent, company), history = await asyncio.gather(
            self.store.earlier_unanswered(message),
            self.store.get_many((Conversation, message.conversation_id), (Agent, message.agent_id),
                                (Company, message.company_id)),
            self._history(message),
        )
        if earlier:
            return Outcome.not_yet()
        if not isinstance(conversation, Conversation) or not isinstance(agent, Agent) \
                or not isinstance(company, Company):
            return Outcome.failed("conversation, agent or company is gone")
        stream = conversation_stream(conversation.id)
        guarded = await self._guard(message, conversation, agent, company)
        if guarded is None and message.attempts > 1:  # only a retried message can have an earlier attempt
            guarded = await self._resume(message, conversation, stream)
        if guarded is not None:
            return guarded
        answer = await self._run_with_typing(agent, conversation, message, history, stream)
        if isinstance(answer, AgentFailure):
            return await self._agent_failed(message, conversation, answer)
        return await self._reply(message, conversation, agent, answer, stream)

    async def _guard(self, message: Message, conversation: Conversation, agent: Agent, company: Company
                     ) -> Outcome | None:
        """The outcome when the agent must not run: a person has the conversation or is asked
        for, the agent or the subscription is off, or the message is one the agent cannot read."""
        if conversation.owner == "human":
            return Outcome.skipped()  # a person has the conversation: the bot stays silent
        if self.wants_human(message.content):
            note = self.settings.chat.handover_message
            await self.conversations.handover(conversation, "take", "customer", note=note)
            await self._tell_channel(conversation, message, note, "handover")
            return Outcome.done(handover=True)
        if agent.status != "active" or not company.subscription_active():
            return Outcome.skipped()
        if message.metadata.get("kind") == "unsupported":
            # A WhatsApp "unsupported" message and the like (text may be ""): say so politely
            # rather than run the agent on nothing.
            await self._tell_channel(conversation, message, self.settings.channels.unreadable_message, "unreadable")
            return Outcome.done()
        return None

    async def _resume(self, message: Message, conversation: Conversation, stream: str) -> Outcome | None:
        """A retried message: deliver the answer an earlier attempt stored (never answer twice),
        else tell the widget to drop the partial answer the interrupted attempt streamed."""
        stored = await self.store.find_one(Message, dedupe_key=f"reply:{message.id}")
        if stored is None:
            await self._publish(stream, error_event(
                "interrupted", "The answer was interrupted and is being generated again.", True))
            return None
        if stored.delivery.get("status") != "sent":
            await self.delivery.deliver(conversation, stored, message)
        if conversation.channel == WEB_CHANNEL:
            # The widget may never have seen the earlier attempt's complete event; it dedupes
            # by messageId, so a second one is harmless.
            await self._publish(stream, complete_event(stored))
        return Outcome.done()

    async def _run_with_typing(self, agent: Agent, conversation: Conversation, message: Message,
                               history: list[Message], stream: str) -> tuple[str, dict[str, Any]] | AgentFailure:
        typing = None
        if conversation.channel != WEB_CHANNEL:
            interval = self.delivery.channels.adapter(conversation.channel).typing_interval
            typing = TypingIndicator(self.delivery, conversation, message, interval)
        try:
            return await self._run_agent(agent, conversation, message, history, stream)
        finally:
            if typing:
                await typing.stop()

    async def _agent_failed(self, message: Message, conversation: Conversation, failure: AgentFailure) -> Outcome:
        if conversation.channel == WEB_CHANNEL:
            # The widget showed the error; the customer can ask again.
            return Outcome.failed(failure.note())
        # Nobody watches a stream on a channel: retry what may pass, then say sorry.
        if failure.retryable and message.attempts < self.settings.inbox.max_attempts:
            return self._retry(message)
        await self._tell_channel(conversation, message, self.settings.agents.failure_message, "failure")
        return Outcome.failed(failure.note())

    async def _reply(self, message: Message, conversation: Conversation, agent: Agent,
                     answer: tuple[str, dict[str, Any]], stream: str) -> Outcome:
        """Store the agent's answer once, publish it to the conversation's stream and deliver it."""
        content, metadata = answer
        reply = Message(
            id=new_id("message"), conversation_id=conversation.id, company_id=conversation.company_id,
            agent_id=agent.id, role="assistant", content=content, channel=conversation.channel,
            webhook_id=conversation.webhook_id, dedupe_key=f"reply:{message.id}", reply_to=message.id,
            metadata=metadata,
        )
        if not await self.store.add_message_once(reply):
            return Outcome.done()  # another attempt answered first
        await self.store.record_message(conversation.id, reply.created_at)
        unpublished: BrokerUnavailable | None = None
        try:
            await self._publish(stream, complete_event(reply))
        except BrokerUnavailable as exc:
            unpublished = exc  # the stored reply goes out on its channel regardless
        await self.delivery.deliver(conversation, reply, message)
        if unpublished is None:
            return Outcome.done()
        log_fields(log, logging.WARNING, "complete event not published", message=message.id,
                   channel=conversation.channel, error=str(unpublished))
        # The widget learns of the answer only from the stream: the retry publishes it again.
        return self._retry(message) if conversation.channel == WEB_CHANNEL else Outcome.done()

    async def _tell_channel(self, conversation: Conversation, message: Message, text: str, kind: str) -> None:
        """A short system message to a channel customer (handover note, apology), stored once."""
        if conversation.channel == WEB_CHANNEL or not text:
            return
        note = Message(
            id=new_id("message"), conversation_id=conversation.id, company_id=conversation.company_id,
            agent_id=conversation.agent_id, role="system", content=text, channel=conversation.channel,
            webhook_id=conversation.webhook_id, dedupe_key=f"{kind}:{message.id}", reply_to=message.id,
            metadata={"kind": kind},
        )
        if await self.store.add_message_once(note):
            await self.delivery.deliver(conversation, note, message)

    async def _run_agent(self, agent: Agent, conversation: Conversation, message: Message,
                         history: list[Message], stream: str) -> tuple[str, dict[str, Any]] | AgentFailure:
        """Stream the agent's events to the conversation; return (content, metadata) of its
        answer, or an AgentFailure after publishing an error."""
        ctx = AgentContext(agent=agent, conversation=conversation, message=message, history=history)
        started = time.perf_counter()
        first = True
        deltas: list[str] = []
        try:
            async with asyncio.timeout(self.settings.agents.timeout_seconds), \
                    contextlib.aclosing(self.agents.run(ctx)) as events:
                async for event in events:
                    if first:
                        self.metrics.agent_latency.labels(agent.kind).observe(time.perf_counter() - started)
                        first = False
                    if event.name == "complete":
                        self.metrics.agent_runs.labels(agent.kind, "complete").inc()
                        content = "".join(deltas)
                        metadata = dict(event.data.get("metadata") or {})
                        return content, metadata
                    if event.name == "error":
                        return await self._agent_error(agent, message, event, stream)
                    if event.name == "delta":
                        deltas.append(str(event.data.get("content", "")))
                    await self._publish(stream, event)
        except TimeoutError:
            self.metrics.agent_runs.labels(agent.kind, "timeout").inc()
            await self._publish(stream, error_event("agent_timeout", "The agent took too long to answer.", True))
            return AgentFailure("agent_timeout", True)
        self.metrics.agent_runs.labels(agent.kind, "no_answer").inc()
        await self._publish(stream, error_event("agent_error", "The agent ended without an answer.", True))
        return AgentFailure("agent_error", True)

    async def _agent_error(self, agent: Agent, message: Message, event: AgentEvent, stream: str) -> AgentFailure:
        """An agent's error: the customer's stream gets a generic text (the agent's message can name
        internal hosts and settings); the detail goes to the log and onto the message for admins."""
        self.metrics.agent_runs.labels(agent.kind, "error").inc()
        detail = admin_detail(event)
        log_fields(log, logging.WARNING, "agent failed", message=message.id, agent=agent.id, error=detail)
        await self._publish(stream, customer_error(event))
        return AgentFailure(str(event.data.get("code")), bool(event.data.get("retryable")), detail)

    async def _history(self, message: Message) -> list[Message]:
        recent = await self.store.find(Message, conversation_id=message.conversation_id, order_by="created_at",
                                       descending=True, limit=HISTORY_LIMIT + 1)
        return [m for m in reversed(recent) if m.id != message.id and m.created_at <= message.created_at]

    async def _publish(self, stream: str, event: AgentEvent) -> None:
        await self.broker.publish(stream, event.name, event.data)

    async def _keep_lease(self, message_id: str) -> None:
        lease = self.settings.inbox.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            try:
                if not await self.store.extend_lease(message_id, self.node_id, lease):
                    log_fields(log, logging.WARNING, "lease lost", message=message_id)
                    return
            except Exception as exc:  # noqa: BLE001 - a store hiccup must not kill the answer
                log.warning("lease extension failed: %s", exc)

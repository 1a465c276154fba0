"""The composition root: one Gateway per process wires the store, the broker, the registries and
the services, and owns their start and stop. Handlers reach services only through it."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import secrets
from dataclasses import dataclass

from buzzi.admin import AdminServices
from buzzi.admin.agents import AgentService
from buzzi.admin.auth import AdminAuth
from buzzi.admin.companies import CompanyService
from buzzi.admin.conversations import AdminConversations
from buzzi.admin.live import LiveViews
from buzzi.admin.login_guard import LoginGuard, LoginPolicy
from buzzi.admin.monitoring import Monitoring
from buzzi.admin.samples import SampleSender
from buzzi.admin.users import UserService
from buzzi.admin.webhooks import WebhookAdmin
from buzzi.agents.registry import AgentRegistry
from buzzi.auth import TokenService
from buzzi.bootstrap import ensure_demo, ensure_owner
from buzzi.broker import open_broker
from buzzi.broker.base import Broker
from buzzi.channels.registry import ChannelRegistry
from buzzi.chat import ChatService
from buzzi.config import Settings
from buzzi.conversations import ConversationService
from buzzi.crypto import SecretBox, derive_key
from buzzi.delivery import ReplyDelivery
from buzzi.delivery_log import DeliveryLog
from buzzi.inbox import InboxWorker
from buzzi.media import MediaFetcher
from buzzi.metrics import Metrics
from buzzi.netguard import NetPolicy
from buzzi.open_streams import OpenStreams
from buzzi.processing import MessageProcessor
from buzzi.ratelimit import RateLimiter
from buzzi.receipts import ReceiptBook
from buzzi.store import Store, open_store
from buzzi.streams import StreamHub
from buzzi.webhooks import WebhookIntake

log = logging.getLogger("buzzi.runtime")

DRAIN_TIMEOUT_SECONDS = 5.0  # how long drain() waits for open streams to end their responses

# What one process of a node does (server.processes / inbox.processes, buzzi/processes.py):
ROLE_ALL = "all"        # the single-process default: serve every route and answer
ROLE_WEB = "web"        # serve every route, store and acknowledge; answer processes answer
ROLE_ANSWER = "answer"  # no HTTP: claim stored messages and answer them
ROLES = (ROLE_ALL, ROLE_WEB, ROLE_ANSWER)


class NoAnswers:
    """The inbox of a web process when answer processes exist: it claims nothing. Stored work
    reaches the answer processes through the broker's wake-up (wake_inboxes), which the chat and
    webhook services send after every commit anyway."""

    def start(self) -> None:
        pass

    async def reserve(self) -> None:
        """No answer slot here: a chat message is stored pending for the answer processes."""
        return None

    def take(self, message_id: str) -> None:
        pass

    async def stop(self, grace: float) -> None:
        pass


@dataclass(frozen=True)
class Bootstrapped:
    generated_admin_password: str | None
    demo: tuple[str, str] | None


async def bootstrap(settings: Settings) -> Bootstrapped:
    """First-start work done once by the supervisor before it starts a node's processes: the secret
    key file, the store schema, the owner account and the demo, so the processes do not race for
    them and the one banner can show the generated password. Also proves the broker is reachable
    (StoreUnavailable / BrokerUnavailable otherwise), as a single process does at start."""
    box = SecretBox(resolve_secret_key(settings))
    store = open_store(settings.store.url, box, timeout=settings.store.timeout_seconds,
                       database=settings.store.mongodb_database)
    broker = open_broker(settings.broker.url, settings.broker, f"{settings.node_id}-supervisor")
    await store.open()
    try:
        await broker.open()
        await broker.close()
        security = settings.security
        password = await ensure_owner(store, security.admin_email, security.admin_password)
        demo = None
        if settings.chat.create_demo:
            company, agent = await ensure_demo(store)
            demo = (company.id, agent.id)
        return Bootstrapped(password, demo)
    finally:
        await store.close()


def resolve_secret_key(settings: Settings) -> str:
    """BUZZI_SECRET_KEY, else a key generated once into data_dir (mode 0600) and reused."""
    if settings.security.secret_key:
        return settings.security.secret_key
    path = settings.data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # the SQLite store keeps it so
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    log.info("generated a secret key into %s", path)
    return key


class Gateway:
    def __init__(self, settings: Settings, role: str = ROLE_ALL) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown process role {role!r}")
        self.settings = settings
        self.role = role
        self.node_id = settings.node_id
        self.draining = False
        self.trusted_proxies = [ipaddress.ip_network(c, strict=False) for c in settings.server.trusted_proxies]
        secret_key = resolve_secret_key(settings)
        self.box = SecretBox(secret_key)
        self.metrics = Metrics()
        self.tokens = TokenService(secret_key, settings.security.token_ttl_seconds)
        self.csrf_key = derive_key(secret_key, "dashboard-csrf")
        self.store: Store = open_store(
            settings.store.url, self.box, timeout=settings.store.timeout_seconds,
            database=settings.store.mongodb_database,
        )
        self.broker: Broker = open_broker(settings.broker.url, settings.broker, self.node_id)
        self.net_policy = NetPolicy.from_settings(settings.security)
        self.agents = AgentRegistry(settings.agents, self.net_policy)
        self.channels = ChannelRegistry(
            settings.channels, replay_window_seconds=settings.webhooks.replay_window_seconds,
            net_policy=self.net_policy,
            # A number's throughput is per number: the processes that answer split it (pacing.py).
            pacing_share=settings.inbox.processes or settings.server.processes,
        )
        self.limiter = RateLimiter(self.broker, settings.limits, self.metrics)
        self.streams = StreamHub(self.broker, self.broker, settings, self.node_id, self.metrics)
        self.chat = ChatService(self.store, self.broker, self.limiter, settings)
        self.delivery = ReplyDelivery(self.store, self.channels, settings.channels, self.metrics, self.broker)
        self.conversations = ConversationService(self.store, self.broker, self.delivery)
        self.processor = MessageProcessor(
            self.store, self.broker, self.agents, self.delivery, self.conversations, settings, self.metrics,
            self.node_id,
        )
        self.inbox: InboxWorker | NoAnswers = (
            NoAnswers() if role == ROLE_WEB else
            InboxWorker(self.store, self.broker, self.processor, settings.inbox, self.node_id)
        )
        self.receipts = ReceiptBook(self.store, self.delivery, self.metrics)
        self.webhooks = WebhookIntake(
            self.store, self.broker, self.channels, self.limiter, settings.webhooks, self.metrics,
            MediaFetcher(self.store, self.channels, settings.channels),
            DeliveryLog(self.store, settings.webhooks, self.metrics),
            self.receipts,
        )
        self.admin = self._admin_services()
        self.admin_streams = OpenStreams()  # the dashboard's live pages; chat streams are self.streams'
        self.demo: tuple[str, str] | None = None
        self.generated_admin_password: str | None = None

    def _admin_services(self) -> AdminServices:
        store, settings = self.store, self.settings
        return AdminServices(
            auth=AdminAuth(store, self.broker, self.tokens,
                           LoginGuard(self.broker, self.limiter, LoginPolicy.of(settings.security))),
            users=UserService(store),
            companies=CompanyService(store),
            agents=AgentService(store, self.agents),
            webhooks=WebhookAdmin(store, self.channels, settings.server.public_url),
            conversations=AdminConversations(store, self.conversations),
            monitoring=Monitoring(store, self.broker),
            live=LiveViews(store, self.broker),
            samples=SampleSender(store, self.channels, settings.server.public_url),
        )

    async def start(self) -> None:
        await self.store.open()
        await self.broker.open()
        if self.role != ROLE_ANSWER:  # an answer process serves no page and holds no stream
            security = self.settings.security
            self.generated_admin_password = await ensure_owner(
                self.store, security.admin_email, security.admin_password)
            if self.settings.chat.create_demo:
                company, agent = await ensure_demo(self.store)
                self.demo = (company.id, agent.id)
            await self.streams.start()  # presence: only processes holding streams are nodes on the dashboard
        self.inbox.start()
        log.info("node %s started as %s (store %s, broker %s)", self.node_id, self.role,
                 self.settings.store.url.split("://")[0], self.settings.broker.url.split("://")[0])

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        for name, dep in (("store", self.store), ("broker", self.broker)):
            try:
                await asyncio.wait_for(dep.ping(), timeout=2.0)
                checks[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
                checks[name] = f"error: {exc.__class__.__name__}"
        return checks

    async def drain(self) -> None:
        """SIGTERM, first half: end open streams cleanly so clients reconnect to another node."""
        self.draining = True
        await asyncio.gather(self.streams.drain(), self.admin_streams.close_all(DRAIN_TIMEOUT_SECONDS))

    async def stop(self) -> None:
        """Finish or release in-flight work within the grace period, then close everything."""
        self.draining = True
        await self.inbox.stop(self.settings.server.shutdown_grace_seconds)
        await self.streams.stop()
        await self.agents.close()
        await self.channels.close()
        await self.broker.close()
        await self.store.close()
        log.info("node %s stopped", self.node_id)

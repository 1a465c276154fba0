"""First start: the owner account and the demo company, agent and web chat."""

from __future__ import annotations

import logging
import secrets

from buzzi.crypto import hash_password
from buzzi.ids import new_id
from buzzi.models import Agent, Company, User
from buzzi.store.base import DuplicateKey, Store

log = logging.getLogger("buzzi.bootstrap")

DEMO_COMPANY = "Buzzi Demo"
DEMO_AGENT = "Demo FAQ agent"
DEMO_DOCUMENTS = [
    {"title": "Opening hours", "content": "We are open Monday to Friday, 9:00 to 18:00, and Saturday 10:00 to 14:00."},
    {"title": "Shipping", "content": "Orders ship within 2 business days. Standard shipping takes 3 to 5 days "
                                     "and is free above 50 euros."},
    {"title": "Returns", "content": "You can return any item within 30 days of delivery for a full refund. "
                                    "Start a return from your order page."},
    {"title": "Channels", "content": "Buzzi answers on WhatsApp, Telegram, Slack, Teams, Messenger, Instagram "
                                     "and this web chat, all with the same agent."},
]
DEMO_FALLBACK = "I don't know that yet. Ask for a person and a human will take over."


async def ensure_owner(store: Store, email: str, password: str) -> str | None:
    """Create the first owner if there is no user at all; returns the generated password, if any."""
    if await store.count(User) > 0:
        return None
    generated = None
    if not password:
        generated = password = secrets.token_urlsafe(12)
    user = User(id=new_id("user"), email=email, password_hash=hash_password(password), role="owner")
    try:
        await store.add(user)
    except DuplicateKey:  # another node of the cluster won the race
        return None
    log.info("created owner account %s", email)
    return generated


async def ensure_demo(store: Store) -> tuple[Company, Agent]:
    company = await store.find_one(Company, name=DEMO_COMPANY)
    if company is None:
        company = await store.add(Company(id=new_id("company"), name=DEMO_COMPANY))
    agent = await store.find_one(Agent, company_id=company.id, name=DEMO_AGENT)
    if agent is None:
        agent = await store.add(Agent(
            id=new_id("agent"), company_id=company.id, name=DEMO_AGENT, kind="faq",
            settings={"documents": DEMO_DOCUMENTS, "fallback": DEMO_FALLBACK},
        ))
    return company, agent

"""Picks the AgentRunner for an Agent.kind and owns the one HTTP session the runners share.

Every URL that session calls comes from a company admin (http url, openai baseUrl), so its
connector enforces the network policy (buzzi/netguard.py)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from buzzi.agents.base import AgentContext, AgentRunner, SettingsError
from buzzi.agents.faq import FaqAgent
from buzzi.agents.http import HttpAgent
from buzzi.agents.openai import OpenAIAgent
from buzzi.config import AgentSettings
from buzzi.events import AgentEvent, error
from buzzi.guarded_http import connector
from buzzi.models import AGENT_KINDS
from buzzi.netguard import BlockedAddressError, NetPolicy

log = logging.getLogger("buzzi.agents")
RUNNER_CLASSES: dict[str, type[AgentRunner]] = {"faq": FaqAgent, "openai": OpenAIAgent, "http": HttpAgent}
assert set(RUNNER_CLASSES) == set(AGENT_KINDS)


def common_settings(settings: Any) -> dict[str, Any]:
    """The settings every agent kind takes, read by the gateway rather than the runner:
    `answerEdits` (bool, default false): a customer's edit of a message is answered again instead of
    only being recorded on the message (buzzi/webhooks.py)."""
    value = settings.get("answerEdits") if isinstance(settings, dict) else None
    if value is None:
        return {}
    if not isinstance(value, bool):
        raise SettingsError("settings.answerEdits", "must be true or false")
    return {"answerEdits": value}


class AgentRegistry:
    def __init__(self, settings: AgentSettings, net_policy: NetPolicy | None = None) -> None:
        self.settings = settings
        self.net_policy = net_policy if net_policy is not None else NetPolicy()
        self._session: aiohttp.ClientSession | None = None
        self._runners: dict[str, AgentRunner] = {
            "faq": FaqAgent(),
            "openai": OpenAIAgent(self.session),
            "http": HttpAgent(self.session),
        }

    def session(self) -> aiohttp.ClientSession:
        """The shared session, created on first use (it must be made inside the running loop)."""
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds,
                                            connect=self.settings.http_connect_timeout_seconds)
            self._session = aiohttp.ClientSession(timeout=timeout, connector=connector(self.net_policy, limit=256))
        return self._session

    def runner(self, kind: str) -> AgentRunner:
        try:
            return self._runners[kind]
        except KeyError:
            raise SettingsError("kind", f"unknown agent kind {kind!r}") from None

    def validate_settings(self, kind: str, settings: Any) -> dict[str, Any]:
        """Normalised settings for an agent of `kind`; SettingsError names the bad field."""
        cls = RUNNER_CLASSES.get(kind)
        if cls is None:
            raise SettingsError("kind", f"must be one of {', '.join(AGENT_KINDS)}")
        valid = cls.validate_settings(settings)
        for key in cls.url_settings:
            try:
                self.net_policy.check_url(valid[key])
            except BlockedAddressError as exc:
                raise SettingsError(f"settings.{key}", str(exc)) from None
        return {**valid, **common_settings(settings)}

    async def run(self, ctx: AgentContext) -> AsyncIterator[AgentEvent]:
        """The agent's events with the seam's promise enforced whatever the runner does: exactly
        one terminal event, last. A runner bug becomes an `agent_failed` error."""
        try:
            runner = self.runner(ctx.agent.kind)
        except SettingsError:
            yield error("agent_misconfigured", "The agent is misconfigured (kind)", False)
            return
        stream = runner.run(ctx)
        try:
            async for event in stream:
                yield event
                if event.terminal:
                    return
        except Exception:
            log.exception("agent runner crashed", extra={"fields": {"agent_id": ctx.agent.id, "kind": ctx.agent.kind}})
            yield error("agent_failed", "The agent failed to answer", False)
            return
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        yield error("agent_failed", "The agent ended without an answer", False)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

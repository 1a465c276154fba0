"""The AgentRunner seam: an agent answers one user message as an async stream of AgentEvents.

Implementations side by side: faq.py, openai.py, http.py; registry.py picks one by Agent.kind.
Every run ends with exactly one terminal event (`complete` or `error`); the concatenated `delta`
contents equal the `complete` content.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar

from buzzi.events import AgentEvent
from buzzi.models import Agent, Conversation, Message


class SettingsError(ValueError):
    """Agent settings are invalid; `field` names the offending key (e.g. "settings.baseUrl")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass
class AgentContext:
    agent: Agent
    conversation: Conversation
    message: Message  # the user message being answered
    history: list[Message]  # earlier messages of the conversation, oldest first (message excluded)


class AgentRunner(abc.ABC):
    kind: str
    # Settings holding a URL the gateway calls: checked against the network policy when saved.
    url_settings: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def run(self, ctx: AgentContext) -> AsyncIterator[AgentEvent]:
        """Yield thinking/tool_call/delta events, then one complete or error event."""

    @classmethod
    @abc.abstractmethod
    def validate_settings(cls, settings: Any) -> dict[str, Any]:
        """Return normalised settings or raise SettingsError naming the field."""

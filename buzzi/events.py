"""The events an agent emits and the widget receives (docs/contract.md §3 "SSE stream")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TERMINAL = ("complete", "error")


@dataclass(frozen=True)
class AgentEvent:
    name: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.name in TERMINAL


def thinking(step: str, progress: float) -> AgentEvent:
    return AgentEvent("thinking", {"step": step, "progress": max(0.0, min(1.0, float(progress)))})


def tool_call(tool: str, status: str, result: Any = None) -> AgentEvent:
    data: dict[str, Any] = {"tool": tool, "status": status}
    if result is not None:
        data["result"] = result
    return AgentEvent("tool_call", data)


def delta(content: str) -> AgentEvent:
    return AgentEvent("delta", {"content": content})


def complete(content: str, metadata: dict[str, Any]) -> AgentEvent:
    return AgentEvent("complete", {"content": content, "metadata": metadata})


def error(code: str, message: str, retryable: bool) -> AgentEvent:
    return AgentEvent("error", {"code": code, "message": message, "retryable": retryable})


def notification(type_: str, data: Any = None) -> AgentEvent:
    return AgentEvent("notification", {"type": type_, "data": data})

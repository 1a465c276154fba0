"""Handlers stay thin: nothing under handlers/ reaches the store or the broker except through the
services the Gateway builds. Read from the syntax trees, so it holds for code no test runs."""

from __future__ import annotations

import ast
from pathlib import Path

HANDLERS = Path(__file__).resolve().parent.parent / "handlers"
SEAMS = ("store", "broker")


def _is_gateway(node: ast.expr) -> bool:
    """`gateway` or `<anything>.gateway` (self.gateway, handler.gateway)."""
    return (isinstance(node, ast.Name) and node.id == "gateway") or (
        isinstance(node, ast.Attribute) and node.attr == "gateway")


def _seam_module(module: str) -> bool:
    return any(module == f"buzzi.{seam}" or module.startswith(f"buzzi.{seam}.") for seam in SEAMS)


def violations(source: str, filename: str) -> list[str]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute) and node.attr in SEAMS and _is_gateway(node.value):
            found.append((node.lineno, f"gateway.{node.attr}"))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names if _seam_module(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "buzzi" else [node.module]
            if any(_seam_module(name) for name in names):
                found.append((node.lineno, f"from {node.module} import"))
    return [f"{filename}:{line}: {what}" for line, what in sorted(found)]


def test_handlers_do_not_touch_the_store_or_the_broker() -> None:
    found = []
    for path in sorted(HANDLERS.rglob("*.py")):
        found += violations(path.read_text(), str(path.relative_to(HANDLERS.parent)))
    assert not found, "handlers must go through a service:\n" + "\n".join(found)


def test_the_check_sees_every_way_in() -> None:
    source = "\n".join([
        "import buzzi.store.sqlite",
        "from buzzi.broker.base import Broker",
        "from buzzi import store",
        "from buzzi import clock",
        "from buzzi.storekeeper import x",
        "async def f(self, gateway):",
        "    await self.gateway.store.get(1)",
        "    gateway.broker.publish()",
        "    self.store, self.gateway.streams",
    ])
    assert violations(source, "h.py") == [
        "h.py:1: import buzzi.store.sqlite", "h.py:2: from buzzi.broker.base import",
        "h.py:3: from buzzi import", "h.py:7: gateway.store", "h.py:8: gateway.broker",
    ]

"""The figures a bench hands to the summary table (`python -m bench all`).

Every bench takes `--json PATH` and, when given, writes its headline figures there as
{"bench": NAME, "figures": [Figure, ...]}: each one measured value, its goal, and the bare
baseline (or reference) measured in the same run, so the summary never mixes runs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Figure:
    name: str  # what was measured, with its conditions: "webhook intake req/s, 64 conns (2 processes)"
    value: float | None  # None when the bench could not measure it (the note says why)
    unit: str  # "req/s", "ms", "ev/s", "KiB", "x", "count"
    goal: str = ""  # as the issue states it: ">= 0.5x bare", "< 50 ms", "0"
    met: bool | None = None  # None when there is no goal
    bare: float | None = None  # the baseline measured in the same run, in the same unit
    baseline: str = ""  # what `bare` is: "bare Tornado HMAC handler", "memory broker"
    note: str = ""


def write_figures(path: str | Path | None, bench: str, figures: list[Figure]) -> None:
    if not path:
        return
    Path(path).write_text(json.dumps({"bench": bench, "figures": [asdict(f) for f in figures]}, indent=1))


def read_figures(path: str | Path) -> tuple[str, list[Figure]]:
    data = json.loads(Path(path).read_text())
    return data["bench"], [Figure(**f) for f in data["figures"]]

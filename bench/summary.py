"""`python -m bench all [--quick] [--write]`: every bench in turn, one table of their headline figures.

Each bench runs in its own interpreter with `--json FILE` (bench/figures.py) and prints its own
report as usual; then this prints ONE markdown table, figure | gateway | goal | bare baseline
(measured in the same run) | met, under a line with the date, the machine (CPU model, cores, RAM)
and the load average before and after. `--write` puts that section into bench/README.md between
the SUMMARY_START / SUMMARY_END markers (replacing what was there, or appended once).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.figures import Figure, read_figures

README = Path(__file__).resolve().parent / "README.md"
SUMMARY_START = "<!-- bench-summary:start (written by `python -m bench all --write`) -->"
SUMMARY_END = "<!-- bench-summary:end -->"


@dataclass(frozen=True)
class Run:
    """One bench invocation of `all`: its name and arguments, full and --quick."""

    bench: str
    args: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()


# The figures: chat (streams, RSS, first delta), broker and cluster (Redis between nodes),
# store, and webhook intake in the embedded default and in the multi-process goal configuration.
RUNS = (
    Run("chat", (), ("--quick",)),
    Run("broker"),
    Run("cluster"),
    Run("store"),
    Run("webhook", (), ("--quick",)),
    Run("webhook", ("--processes", "2", "--answer-processes", "1"),
        ("--processes", "2", "--answer-processes", "1", "--quick")),
)


@dataclass
class Outcome:
    """What one run left: its figures, or why there are none."""

    run: Run
    figures: list[Figure] = field(default_factory=list)
    failure: str = ""


def machine() -> str:
    """CPU model, cores and RAM, from /proc where there is one."""
    model, ram = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f", {int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores{ram}"


def load_average() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def number(value: float) -> str:
    """1234.5 -> "1,234.5"; whole numbers without decimals."""
    return f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:,.3g}"


def cell(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{number(value)} {unit}".strip()


def row(figure: Figure) -> str:
    gateway = cell(figure.value, figure.unit)
    if figure.value is not None and figure.bare and figure.unit not in ("x", "count"):
        gateway += f" ({figure.value / figure.bare:.2f}x)"  # beside its baseline of the same run
    if figure.note:
        gateway += f"; {figure.note}"
    bare = "-" if figure.bare is None else cell(figure.bare, figure.unit)
    if figure.bare is not None and figure.baseline:
        bare += f" ({figure.baseline})"
    met = "-" if figure.met is None else ("yes" if figure.met else "**no**")
    return f"| {figure.name} | {gateway} | {figure.goal or '-'} | {bare} | {met} |"


def table(outcomes: list[Outcome]) -> str:
    """The markdown table of every figure; a bench that left none gets a row saying why."""
    lines = ["| figure | gateway | goal | bare baseline (same run) | met |", "| --- | --- | --- | --- | --- |"]
    for outcome in outcomes:
        if not outcome.figures:
            what = " ".join([outcome.run.bench, *outcome.run.args])
            lines.append(f"| {what} | n/a: {outcome.failure or 'no figures'} | - | - | **no** |")
        lines += [row(f) for f in outcome.figures]
    return "\n".join(lines)


def header(started: float, load_before: str, load_after: str, quick: bool) -> str:
    day = time.strftime("%Y-%m-%d %H:%M", time.localtime(started))
    return (f"{day}, {machine()}; load average (1/5/15 min) {load_before} before, {load_after} after"
            f"{'; --quick' if quick else ''}")


def section(head: str, body: str) -> str:
    return f"{SUMMARY_START}\n{head}\n\n{body}\n{SUMMARY_END}"


def replace_section(text: str, new: str) -> str:
    """`text` with the marked section replaced by `new`, or `new` appended when there is none."""
    start, end = text.find(SUMMARY_START), text.find(SUMMARY_END)
    if start == -1 or end < start:
        return text.rstrip("\n") + "\n\n## Summary: `python -m bench all`\n\n" + new + "\n"
    return text[:start] + new + text[end + len(SUMMARY_END):]


def run_one(run: Run, quick: bool, out: Path) -> Outcome:
    args = run.quick if quick else run.args
    print(f"\n## bench {run.bench} {' '.join(args)}\n", flush=True)
    code = subprocess.call([sys.executable, "-m", f"bench.{run.bench}_bench", *args, "--json", str(out)])
    if not out.exists():
        return Outcome(run, failure=f"exit {code}, no --json figures")
    _, figures = read_figures(out)
    return Outcome(run, figures, "" if code == 0 else f"exit {code}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench all", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="each bench's quick mode where it has one")
    parser.add_argument("--write", action="store_true", help="put the table into bench/README.md")
    args = parser.parse_args(argv)
    started, load_before = time.time(), load_average()
    with tempfile.TemporaryDirectory(prefix="buzzi-bench-all-") as tmp:
        outcomes = [run_one(run, args.quick, Path(tmp) / f"{i}-{run.bench}.json") for i, run in enumerate(RUNS)]
    text = section(header(started, load_before, load_average(), args.quick), table(outcomes))
    print("\n" + text)
    if args.write:
        README.write_text(replace_section(README.read_text(), text))
        print(f"\nwritten to {README}")
    return 0 if all(o.figures and not o.failure for o in outcomes) else 1

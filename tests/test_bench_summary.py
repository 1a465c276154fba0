"""`python -m bench all`'s table (bench/summary.py), built from figure files as the benches write
them (bench/figures.py); no bench runs here."""

from __future__ import annotations

from pathlib import Path

from bench import summary
from bench.figures import Figure, read_figures, write_figures
from bench.summary import SUMMARY_END, SUMMARY_START, Outcome, Run, replace_section, section, table


def outcomes_from(tmp_path: Path, benches: dict[str, list[Figure]]) -> list[Outcome]:
    out = []
    for name, figures in benches.items():
        path = tmp_path / f"{name}.json"
        write_figures(path, name, figures)
        bench, read = read_figures(path)
        assert bench == name
        out.append(Outcome(Run(name), read))
    return out


def rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()[2:]]


def test_one_row_per_figure_beside_its_goal_and_same_run_baseline(tmp_path: Path) -> None:
    webhook = [Figure("webhook intake req/s, 64 conns (embedded)", 1545, "req/s", ">= 0.5x bare", False, 7843,
                      "bare Tornado HMAC handler", "p99 70 ms"),
               Figure("webhooks answered twice", 0, "count", "0", True)]
    broker = [Figure("redis events/s node to node", 41234.5, "ev/s", ">= 40,000", True, 218619, "memory broker"),
              Figure("cross-node p99 at 1,000 ev/s", 4.25, "ms", "< 10 ms", True)]
    text = table(outcomes_from(tmp_path, {"webhook": webhook, "broker": broker}))
    assert text.splitlines()[0] == "| figure | gateway | goal | bare baseline (same run) | met |"
    assert rows(text) == [
        ["webhook intake req/s, 64 conns (embedded)", "1,545 req/s (0.20x); p99 70 ms", ">= 0.5x bare",
         "7,843 req/s (bare Tornado HMAC handler)", "**no**"],
        ["webhooks answered twice", "0 count", "0", "-", "yes"],
        ["redis events/s node to node", "41,234 ev/s (0.19x)", ">= 40,000", "218,619 ev/s (memory broker)", "yes"],
        ["cross-node p99 at 1,000 ev/s", "4.25 ms", "< 10 ms", "-", "yes"],
    ]


def test_a_figure_not_measured_and_a_bench_without_figures_say_so(tmp_path: Path) -> None:
    [chat] = outcomes_from(tmp_path, {"chat": [
        Figure("RSS per stream @ 19,500 streams", None, "KiB", "<= 1.3x bare", None, 13.6, "bare SSE", "fd limit")]})
    failed = Outcome(Run("webhook", ("--processes", "2")), failure="exit 2, no --json figures")
    assert rows(table([chat, failed])) == [
        ["RSS per stream @ 19,500 streams", "n/a; fd limit", "<= 1.3x bare", "13.6 KiB (bare SSE)", "-"],
        ["webhook --processes 2", "n/a: exit 2, no --json figures", "-", "-", "**no**"],
    ]


def test_write_replaces_only_the_marked_section() -> None:
    first = section("2026-11-28, CPU, 2 cores; load average 0.40 before, 0.50 after", "| old |")
    readme = f"# Benchmarks\n\nintro\n\n{first}\n\n## Web chat SSE\n\nkept\n"
    new = section("2026-11-29, CPU, 2 cores; load average 1.00 before, 2.00 after", "| new |")
    replaced = replace_section(readme, new)
    assert replaced == f"# Benchmarks\n\nintro\n\n{new}\n\n## Web chat SSE\n\nkept\n"
    assert replaced.count(SUMMARY_START) == 1 and replaced.count(SUMMARY_END) == 1
    assert replace_section(replaced, new) == replaced

    appended = replace_section("# Benchmarks\n\nno section yet\n", new)
    assert appended.startswith("# Benchmarks\n\nno section yet\n\n## Summary")
    assert appended.endswith(new + "\n")


def test_header_names_date_machine_and_load() -> None:
    head = summary.header(0.0, "0.40 / 0.50 / 0.60", "1.10 / 0.70 / 0.60", quick=True)
    assert "1970-01-01" in head or "1969-12-31" in head
    assert "cores" in head and "0.40 / 0.50 / 0.60 before" in head and "1.10 / 0.70 / 0.60 after" in head
    assert head.endswith("--quick")

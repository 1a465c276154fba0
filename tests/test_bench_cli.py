"""`make bench` / `python -m bench`: every benchmark is listed and reachable by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.__main__ import BENCHES, main

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


def test_every_bench_module_is_listed_and_every_name_has_a_module() -> None:
    modules = {p.stem.removesuffix("_bench") for p in BENCH_DIR.glob("*_bench.py")}
    assert modules == set(BENCHES)


def test_listing_and_unknown_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in BENCHES)
    assert main(["nope"]) == 2
    assert "unknown bench 'nope'" in capsys.readouterr().err


def test_a_bench_runs_by_name_with_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["store", "--help"]) == 0  # runs bench.store_bench in its own interpreter

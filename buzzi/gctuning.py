"""Garbage-collector settings for a long-running node holding thousands of open streams.

CPython's default (a young collection every 2,000 net container allocations) was a third of a
node's CPU fanning events out to 5,000 open SSE streams (py-spy --native: gc_collect_main 32%):
every event allocates a few short-lived containers, each stream's waiting future survives into
the older generations, and the full collections then walk every object of every open stream.
Collecting the young generation every 50,000 allocations instead, and freezing what startup
loaded (modules, settings: never garbage), cut the node's CPU per fanned-out event by about a
quarter and its p99 latency by an order of magnitude (bench/cluster_bench.py; /tmp/readme/hR.md).
Cycles are still collected, only less often: tens of thousands of young objects at most.
gc.freeze moves every tracked object to a permanent generation that collections skip (Python's
`gc` module documentation; cpython PR 3705, which added it).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # net container allocations between young collections (CPython: 2,000)
OLDER_THRESHOLDS = (20, 100)  # young collections per middle one, middle per full (CPython: 10, 10)


def tune_for_serving() -> None:
    """Call once the node has started: what is allocated by then lives as long as the process."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)

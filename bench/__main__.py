"""`python -m bench [NAME [ARGS...]]`: list the benchmarks, run one by name with its own arguments,
or `python -m bench all [--quick] [--write]`: every one, then one table of their figures (bench/summary.py).

Each runs in its own interpreter (`python -m bench.NAME_bench`), exactly as the README quotes it,
so a bench's servers and limits never leak into another's.
"""

from __future__ import annotations

import subprocess
import sys

from bench.summary import main as summary

BENCHES = {
    "chat": "web chat SSE vs a bare Tornado SSE server: RSS per stream, events/s, first delta",
    "webhook": "signed WhatsApp webhooks acknowledged/s and p99 vs a bare Tornado HMAC handler",
    "store": "SQLite and MongoDB-wire store operations per second",
    "broker": "memory and Redis broker publish -> receive events/s and latency",
    "cluster": "real run.py nodes on one Redis: cross-node latency and fan-out",
    "hostile": "parsing worst-case JSON bodies (64 KiB and webhook-sized) vs plain json.loads",
}


def main(argv: list[str]) -> int:
    if argv and argv[0] == "all":
        return summary(argv[1:])
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m bench NAME [ARGS...]   (make bench BENCH='NAME ARGS')")
        print("       python -m bench all [--quick] [--write]   (make bench: every bench, one summary table)\n")
        for name, what in BENCHES.items():
            print(f"  {name:<8} {what}")
        print("\nEach NAME takes --help. Results and commands: README.md#benchmarks, bench/README.md.")
        return 0
    name, *rest = argv
    if name not in BENCHES:
        print(f"unknown bench {name!r}; one of: {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, "-m", f"bench.{name}_bench", *rest])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

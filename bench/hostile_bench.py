"""Cost of parsing hostile JSON bodies: `parse_json_object` (the chat/admin/dashboard body parser,
lone-surrogate check included) against plain `json.loads`, on worst-case shapes.

The transport refuses chat, admin and dashboard bodies over `server.max_body_bytes` (64 KiB)
before parsing; only webhook bodies (after their signature is checked) can be larger, so both
sizes are measured. `python -m bench.hostile_bench [--mib 4]`."""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from collections.abc import Callable

from handlers.base import parse_json_object

SHAPES: dict[str, Callable[[int], bytes]] = {
    "empty lists": lambda size: b'{"x":[' + b",".join([b"[]"] * ((size - 8) // 3)) + b"]}",
    "empty objects": lambda size: b'{"x":[' + b",".join([b"{}"] * ((size - 8) // 3)) + b"]}",
    "non-ASCII strings": lambda size: b'{"x":[' + b",".join([b'"\xc3\xa9"'] * ((size - 8) // 5)) + b"]}",
    "many keys": lambda size: many_keys(size),
}


def many_keys(size: int) -> bytes:
    parts, total = [], 2
    while total < size:
        part = b'"k%d":0' % len(parts)
        parts.append(part)
        total += len(part) + 1
    return b"{" + b",".join(parts) + b"}"


def measure(body: bytes, repeat: int) -> tuple[float, float, float]:
    """(json.loads ms, parse_json_object ms, parse_json_object peak MiB), best of `repeat`."""
    loads = parse = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        json.loads(body)
        loads = min(loads, time.perf_counter() - started)
        started = time.perf_counter()
        parse_json_object(body)
        parse = min(parse, time.perf_counter() - started)
    tracemalloc.start()
    parse_json_object(body)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return loads * 1000, parse * 1000, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=4.0, help="size of the large bodies (webhook-sized)")
    args = parser.parse_args()
    print(f"{'shape':<20} {'size':>8} {'json.loads':>11} {'parse_json_object':>18} {'peak':>9}")
    for size, repeat in ((64 * 1024, 20), (int(args.mib * 2**20), 3)):
        for name, build in SHAPES.items():
            body = build(size)
            loads, parse, peak = measure(body, repeat)
            print(f"{name:<20} {len(body) / 1024:>6.0f} KiB {loads:>8.1f} ms {parse:>15.1f} ms {peak:>6.1f} MiB")


if __name__ == "__main__":
    main()

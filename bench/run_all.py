"""``make bench``: every benchmark in one run, one table, the machine on top.

Usage: python bench/run_all.py [--quick]

Runs the engine, conversation, fan-out, Socket.IO, whole-tool (scaling, startup),
connection-storm, coordinator and histogram benchmarks in turn and prints
their figures together, each with its goal and verdict and, where it has
one, the reference it was measured beside in the same run. ``--quick``
shortens every measured span (for a smoke check of the scripts; the figures
are noisier). Exits 0 whatever the verdicts: figures,
not gates.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import connect_bench
import conversation_bench
import coordinator_bench
import engine_bench
import fanout_bench
import histogram_bench
import scaling_bench
import socketio_bench
from machine import Figure, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short spans, 1,000 idle connections")
    args = parser.parse_args()
    seconds = 2.0 if args.quick else 5.0
    figures: list[Figure] = []
    for name, run in (
        ("engine", lambda: engine_bench.figures(seconds, 1_000 if args.quick else 10_000)),
        (
            "conversation",
            lambda: conversation_bench.figures(
                seconds, 1 if args.quick else 3, hold=1_000 if args.quick else 10_000
            ),
        ),
        (
            "fan-out",
            lambda: fanout_bench.figures(
                1_000 if args.quick else 10_000, 10.0 if args.quick else 2.0, 2 * seconds
            ),
        ),
        ("socket.io", lambda: socketio_bench.figures(seconds, 1 if args.quick else 3)),
        ("scaling", lambda: scaling_bench.figures(seconds)),
        ("connect storms", lambda: connect_bench.figures(quick=args.quick)),
        ("coordinator", coordinator_bench.figures),
        ("histogram", histogram_bench.figures),
    ):
        print(f"measuring: {name}...", file=sys.stderr, flush=True)
        figures += run()
    print(report(figures))


if __name__ == "__main__":
    main()

"""The cyclic garbage collector's settings for a worker process.

A worker holds thousands of connections, each a few dozen container objects
(its client task and coroutine frames, picows' transport and listener, the
in-flight table...), nearly all freed by reference counting, not by the
cyclic collector. With Python's default thresholds (700, 10, 10) the
collector ran often enough during a storm of 10,000 connections to take
35-40 % of the worker's CPU (about 140 µs per connection opened, measured by
``bench/connect_bench.py`` with ``gc.callbacks``): every full collection walks
every connection already open. With the thresholds below it took 40 µs.

What it costs: cyclic garbage (rare here: a failed connection's exception and
traceback) waits for up to THRESHOLDS[0] allocations before the young
generation is collected, and long-lived cycles for a full collection (still
no more often than when a quarter of the long-lived objects are new, as
Python decides by itself).
"""

from __future__ import annotations

import gc

#: (young generation, middle, old): allocations before a young collection, and
#: collections of each generation before the next one is collected
THRESHOLDS = (50_000, 20, 10)


def tune_collector() -> None:
    """Apply :data:`THRESHOLDS`, after freezing what exists now (modules, startup state).

    Frozen objects are never walked again by the collector: the interpreter's
    and the libraries' own few hundred thousand objects would otherwise be
    walked on every full collection for the life of the worker.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


__all__ = ["THRESHOLDS", "tune_collector"]

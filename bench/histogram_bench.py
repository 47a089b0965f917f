"""Latency histogram figures: bulk record rate, merge rate, serialised size.

Usage (after ``make install``): ``.venv/bin/python bench/histogram_bench.py``

A figure, not a gate: it prints the machine, each rate as the mean (and the
spread) of several timed repeats after a warm-up, and the goal of at least
5 million samples per second for bulk recording with PASS or MISS, and always
exits 0. The samples are realistic latencies: lognormal around 5 ms, most
between 1 and 50 ms, in microseconds, as the coordinator receives them.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import Figure, describe

from wsload.common.histogram import LatencyHistogram, pack_samples

SAMPLES = 1_000_000
REPEATS = 7
GOAL = 5e6  # samples per second, one core
#: One 250 ms window of one worker at 10,000 messages per second.
WINDOW = 2_500


def timed(action: Callable[[], object], repeats: int = REPEATS) -> list[float]:
    """Seconds per run of ``action``, after one untimed warm-up run."""
    action()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        runs.append(time.perf_counter() - start)
    return runs


def rate(runs: list[float], items: int) -> str:
    """Mean rate in millions per second, with the slowest and fastest run."""
    rates = [items / r / 1e6 for r in runs]
    return f"{statistics.fmean(rates):8.1f} M/s  (min {min(rates):.1f}, max {max(rates):.1f})"


def row(label: str, value: str) -> None:
    print(f"  {label:<42}{value}")


def main() -> None:
    print(f"machine: {describe()}")

    rng = np.random.default_rng(42)
    values = np.rint(rng.lognormal(np.log(5000), 1.0, SAMPLES)).astype(np.int64)
    packed = pack_samples(values)
    small = [pack_samples(values[i : i + WINDOW]) for i in range(0, 400 * WINDOW, WINDOW)]
    share_1_50 = float(np.mean((values >= 1000) & (values <= 50_000)))
    print(
        f"\nsamples: {SAMPLES:,} lognormal latencies, median {int(np.median(values)):,} µs, "
        f"{share_1_50:.0%} within 1-50 ms, max {int(values.max()):,} µs"
    )

    hist = LatencyHistogram()
    bulk = timed(lambda: hist.record_many(values))
    wire = timed(lambda: hist.record_packed(packed))

    def windows() -> None:
        for buf in small:
            hist.record_packed(buf)

    window_runs = timed(windows)

    full = LatencyHistogram()
    full.record_many(values)
    merges = 1000

    def merge_many() -> None:
        for _ in range(merges):
            hist.merge(full)

    merge_runs = timed(merge_many)
    encoded = full.to_bytes()
    encode_runs = timed(full.to_bytes)
    decode_runs = timed(lambda: LatencyHistogram.from_bytes(encoded))
    pct_runs = timed(full.percentiles)

    merge_us = statistics.fmean(merge_runs) / merges * 1e6
    encode_us = statistics.fmean(encode_runs) * 1e6
    decode_us = statistics.fmean(decode_runs) * 1e6
    nonzero = int(np.count_nonzero(full.counts))
    print(f"\nfigures (mean of {REPEATS} repeats after a warm-up)")
    row("bulk record, int64 array of 1e6", rate(bulk, SAMPLES))
    row("bulk record, packed <u4 of 1e6 (wire)", rate(wire, SAMPLES))
    row(f"packed <u4 windows of {WINDOW:,} samples", rate(window_runs, 400 * WINDOW))
    row("merge of two full histograms", f"{1e6 / merge_us:8,.0f} /s   ({merge_us:.1f} µs each)")
    row("serialised size, 1e6 samples", f"{len(encoded):8,} B    ({nonzero:,} non-zero counters)")
    row("raw counts array, for comparison", f"{full.counts.nbytes:8,} B")
    row("to_bytes / from_bytes", f"{encode_us:8.0f} µs / {decode_us:.0f} µs")
    row("percentiles()", f"{statistics.fmean(pct_runs) * 1e6:8.0f} µs")

    worst = min(SAMPLES / statistics.fmean(bulk), SAMPLES / statistics.fmean(wire))
    verdict = "PASS" if worst >= GOAL else "MISS"
    print(f"\ngoal: bulk record >= {GOAL / 1e6:.0f} M samples/s on one core: {verdict}")
    print(f"      (slower of the two bulk figures: {worst / 1e6:.1f} M/s)")


def figures() -> list[Figure]:
    """The headline figures for ``make bench``: bulk record and merge."""
    rng = np.random.default_rng(42)
    values = np.rint(rng.lognormal(np.log(5000), 1.0, SAMPLES)).astype(np.int64)
    hist, full = LatencyHistogram(), LatencyHistogram()
    bulk = SAMPLES / statistics.fmean(timed(lambda: hist.record_many(values)))
    full.record_many(values)
    merge_us = statistics.fmean(timed(lambda: hist.merge(full))) * 1e6
    return [
        Figure(
            "latency histogram bulk record (one core)", f"{bulk / 1e6:.0f} M/s",
            f">= {GOAL / 1e6:.0f} M/s", bulk >= GOAL,
        ),
        Figure("latency histogram merge of two full histograms", f"{merge_us:.0f} µs"),
    ]  # fmt: skip


if __name__ == "__main__":
    main()

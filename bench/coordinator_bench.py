"""Coordinator figures: replies merged per second on one core, bytes per reply on the wire.

Usage: python bench/coordinator_bench.py

Each window is what a worker sends every 250 ms: counters plus varint
latency and lag (latency minus service time) arrays, msgpack-encoded. The
measured path is the coordinator's: decode the message and its varints, then
merge it into the run (worker totals, per-second series, three histograms).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import Figure, report

from wsload.common.protocol import Samples, decode, encode
from wsload.coordinator.aggregate import RunAggregate

WINDOW_SAMPLES = 20_000  # one worker at 80,000 replies/s, 250 ms windows
WINDOWS = 400


def figures() -> list[Figure]:
    rng = np.random.default_rng(7)
    started = time.time()
    messages = []
    for seq in range(WINDOWS):
        # LAN-like: lognormal around 2 ms; the send lag mostly 0, sometimes a timer tick
        lat = np.clip(rng.lognormal(np.log(2000), 0.8, WINDOW_SAMPLES), 1, 2**32 - 1)
        lag = np.where(rng.random(WINDOW_SAMPLES) < 0.9, 0, rng.integers(1, 1500, WINDOW_SAMPLES))
        lat = lat.astype(np.int64)
        window_end = started + 0.25 * (seq + 1)
        counters = {"sent": WINDOW_SAMPLES, "received": WINDOW_SAMPLES}
        window = (window_end - 0.25, window_end)
        samples = (lat, np.maximum(lat - lag, 0), np.zeros(0))
        messages.append(encode(Samples.window("bench", seq, window, counters, {}, samples)))
    agg = RunAggregate(started)
    t0 = time.process_time()
    for data in messages:
        msg = decode(data)
        assert isinstance(msg, Samples)
        agg.add_samples("w1", msg)
    cpu = time.process_time() - t0
    samples_count = WINDOWS * WINDOW_SAMPLES  # replies: latency and service time each
    wire = sum(len(m) for m in messages)
    assert agg.latency.count == samples_count
    rate = samples_count / cpu
    per_sample = wire / samples_count
    return [
        Figure(
            "coordinator merge rate (decode + merge, one core)", f"{rate / 1e6:.1f} M/s",
            ">= 5 M/s", rate >= 5e6, "replies/s, each with latency and service time",
        ),
        Figure(
            "bytes on the wire per sample (latency + service, varints)", f"{per_sample:.2f} B",
            "<= 4 B", per_sample <= 4, "LAN-like latencies around 2 ms; 8 B as uint32 pairs",
        ),
    ]  # fmt: skip


if __name__ == "__main__":
    print(report(figures()))

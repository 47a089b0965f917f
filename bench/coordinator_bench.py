"""Coordinator figures: samples merged per second on one core, bytes per sample on the wire.

Usage: python bench/coordinator_bench.py

Each window is what a worker sends every 250 ms: counters plus packed
latency, service-time and connect-time arrays, msgpack-encoded. The measured
path is the coordinator's: decode the message, then merge it into the run
(worker totals, per-second series, three histograms).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, table

from common.protocol import Samples, decode, encode
from coordinator.aggregate import RunAggregate

WINDOW_SAMPLES = 20_000  # one worker at 80,000 replies/s, 250 ms windows
WINDOWS = 400


def main() -> None:
    rng = np.random.default_rng(7)
    started = time.time()
    messages = []
    for seq in range(WINDOWS):
        lat = np.clip(rng.lognormal(np.log(2000), 0.8, WINDOW_SAMPLES), 1, None).astype("<u4")
        svc = (lat * 0.9).astype("<u4")
        window_end = started + 0.25 * (seq + 1)
        messages.append(
            encode(
                Samples(
                    job_id="bench",
                    seq=seq,
                    window_start=window_end - 0.25,
                    window_end=window_end,
                    counters={"sent": WINDOW_SAMPLES, "received": WINDOW_SAMPLES},
                    latency=lat.tobytes(),
                    service=svc.tobytes(),
                )
            )
        )
    agg = RunAggregate(started)
    t0 = time.process_time()
    for data in messages:
        msg = decode(data)
        assert isinstance(msg, Samples)
        agg.add_samples("w1", msg)
    cpu = time.process_time() - t0
    samples = WINDOWS * WINDOW_SAMPLES  # latency samples (service times ride along)
    wire = sum(len(m) for m in messages)
    assert agg.latency.count == samples
    print(f"machine: {describe()}")
    print(
        table(
            [
                ("coordinator merge rate (decode + merge, one core)",
                 f"{samples / cpu / 1e6:.1f} M samples/s", ">= 2 M/s"),
                ("bytes on the wire per sample (latency + service arrays)",
                 f"{wire / samples:.2f} B", "<= 4 B"),
            ]
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()

"""Merging workers' sample windows into one run: sans-I/O, fed by the coordinator.

Each ``samples`` message adds its counter deltas to its worker's totals and
to the second of the run it ended in, and its packed latencies to the run
histograms. A window already merged (same worker, same sequence number) is
ignored, so a replayed or duplicated message is never counted twice. Run
totals are *defined* as the sum of the workers' totals, and a worker's final
``result`` is checked against the sum of its windows.

Per-second latency percentiles come from small per-second histograms kept
for the last few seconds only; windows arrive out of order across workers
by at most a window or two, and a whole-run series of full histograms would
cost megabytes per second of run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from common import hdrlog
from common.histogram import LatencyHistogram
from common.protocol import SAMPLE_COUNTERS, Result, Samples

#: Seconds of per-second histograms kept open for late windows.
OPEN_SECONDS = 5


@dataclass
class WorkerTotals:
    """What one worker has reported so far."""

    worker_id: str
    counters: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    windows: int = 0
    result: Result | None = None
    lost: bool = False

    @property
    def consistent(self) -> bool | None:
        """Does the final result equal the sum of the windows? None before the result."""
        if self.result is None:
            return None
        return all(
            self.result.counters.get(k, 0) == self.counters.get(k, 0)
            for k in set(self.result.counters) | set(self.counters)
        )


@dataclass
class SecondStats:
    """One second of the run (by window end time)."""

    second: int
    counters: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    latency: LatencyHistogram | None = field(default_factory=LatencyHistogram)
    percentiles: dict[str, float] = field(default_factory=dict)
    #: (max µs, HdrHistogram-encoded) once closed, for the .hlog export
    encoded: tuple[int, str] = (0, "")

    def close(self) -> None:
        """Keep the percentiles and the encoded histogram, free the counts."""
        if self.latency is not None:
            self.percentiles = _percentiles_seconds(self.latency)
            self.encoded = (self.latency.max, hdrlog.encode(self.latency))
            self.latency = None


class RunAggregate:
    """Every worker's windows of one job, merged."""

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self.workers: dict[str, WorkerTotals] = {}
        self.latency = LatencyHistogram()
        self.service = LatencyHistogram()
        self.connect = LatencyHistogram()
        self.seconds: dict[int, SecondStats] = {}
        self.ignored_windows = 0
        self._seen: set[tuple[str, int]] = set()
        self._newest_second = 0

    def worker(self, worker_id: str) -> WorkerTotals:
        totals = self.workers.get(worker_id)
        if totals is None:
            totals = self.workers[worker_id] = WorkerTotals(worker_id)
        return totals

    def add_samples(self, worker_id: str, msg: Samples) -> bool:
        """Merge one window; False when it was a duplicate and was ignored.

        Raises :class:`ProtocolError` (and merges nothing of it) when its
        samples are malformed.
        """
        key = (worker_id, msg.seq)
        if key in self._seen:
            self.ignored_windows += 1
            return False
        arrays = msg.arrays()
        self._seen.add(key)
        totals = self.worker(worker_id)
        totals.windows += 1
        _add(totals.counters, msg.counters)
        _add(totals.errors, msg.errors)
        latency, service, connect = arrays
        self.latency.record_many(latency)
        self.service.record_many(service)
        self.connect.record_many(connect)
        second = max(0, math.ceil(msg.window_end - self.started_at) - 1)
        stats = self.seconds.get(second)
        if stats is None:
            stats = self.seconds[second] = SecondStats(second)
        _add(stats.counters, msg.counters)
        _add(stats.errors, msg.errors)
        if stats.latency is not None:
            stats.latency.record_many(latency)
        if second > self._newest_second:
            self._newest_second = second
            for old in self.seconds.values():
                if old.second <= second - OPEN_SECONDS:
                    old.close()
        return True

    def add_result(self, worker_id: str, msg: Result) -> None:
        self.worker(worker_id).result = msg

    def mark_lost(self, worker_id: str) -> None:
        """A lost worker's last counters stay in the totals; the report names it."""
        self.worker(worker_id).lost = True

    def totals(self) -> dict[str, int]:
        out = dict.fromkeys(SAMPLE_COUNTERS, 0)
        for w in self.workers.values():
            _add(out, w.counters)
        return out

    def errors(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for w in self.workers.values():
            _add(out, w.errors)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def time_series(self) -> list[dict[str, Any]]:
        rows = []
        for second in sorted(self.seconds):
            stats = self.seconds[second]
            pct = (
                stats.percentiles if stats.latency is None else _percentiles_seconds(stats.latency)
            )
            rows.append({"second": second, **stats.counters, "errors": dict(stats.errors), **pct})
        return rows

    def hlog_text(self) -> str:
        """Per-second latency histograms in the HdrHistogram log format."""
        for stats in self.seconds.values():
            stats.close()
        intervals = [(float(s), 1.0, *self.seconds[s].encoded) for s in sorted(self.seconds)]
        return hdrlog.log_text(intervals, self.started_at)

    def summary(self, elapsed: float) -> dict[str, Any]:
        """The final figures, with the original framework's keys first."""
        t = self.totals()
        answered = t["received"]
        sent = t["sent"]
        lat = self.latency
        return {
            "time_series": self.time_series(),
            "total_sent": sent,
            "total_received": answered,
            "success_rate": 100.0 * answered / sent if sent else 0.0,
            "avg_latency": lat.mean / 1e6 if lat.count else 0.0,
            "latency_percentiles": _percentiles_seconds(lat),
            "service_time_percentiles": _percentiles_seconds(self.service),
            "connect_time_percentiles": _percentiles_seconds(self.connect),
            "timed_out": t["timed_out"],
            "lost": t["lost"],
            "unanswered": t["unanswered"],
            "late": t["late"],
            "throughput": answered / elapsed if elapsed > 0 else 0.0,
            "send_rate": sent / elapsed if elapsed > 0 else 0.0,
            "elapsed": elapsed,
            "errors": self.errors(),
            "counters": t,
            "balanced": sent == answered + t["timed_out"] + t["lost"] + t["unanswered"],
            "workers": {
                w.worker_id: {
                    **w.counters,
                    "errors": dict(w.errors),
                    "lost": w.lost,
                    "consistent": w.consistent,
                }
                for w in self.workers.values()
            },
            "ignored_windows": self.ignored_windows,
        }


def _add(into: dict[str, int], delta: dict[str, int]) -> None:
    for k, v in delta.items():
        into[k] = into.get(k, 0) + v


def _percentiles_seconds(hist: LatencyHistogram) -> dict[str, float]:
    """Percentiles in seconds (the original framework reported latency in seconds)."""
    return {k: v / 1e6 for k, v in hist.percentiles().items()}


__all__ = ["RunAggregate", "SecondStats", "WorkerTotals"]

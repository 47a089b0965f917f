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

A conversation's windows also carry per-step and per-scenario figures;
:class:`wsload.coordinator.step_aggregate.StepAggregate` merges those, and a
publish/subscribe workload's publications and subscriptions go to the
delivery ledger (:class:`wsload.coordinator.fanout.FanoutLedger`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from wsload.common import hdrlog
from wsload.common.histogram import LatencyHistogram
from wsload.common.protocol import SAMPLE_COUNTERS, Result, Samples
from wsload.coordinator.fanout import FanoutLedger
from wsload.coordinator.figures import (
    Counters,
    Percentiles,
    RunFigures,
    RunProgress,
    SecondSummary,
    StepCounters,
    WorkerStatus,
    WorkerSummary,
    distribution,
    frozen_map,
)
from wsload.coordinator.step_aggregate import StepAggregate, add_counts

#: Seconds of per-second histograms kept open for late windows.
OPEN_SECONDS = 5
#: Bounds on the error texts taken from workers' results.
MAX_ERROR_TEXTS = 64
MAX_TEXT = 300
#: Bounds on the error kinds one worker may add (a kind is a short name such as
#: ``http_503``); past them, counts go to UNLISTED, so a broken or hostile
#: worker costs one error kind, not memory and a summary of a million lines.
MAX_ERROR_KINDS = 256
MAX_KIND = 100
UNLISTED = "unlisted"
_KNOWN_COUNTERS = frozenset(SAMPLE_COUNTERS)
#: The generator, not the target, limited the run when more than this share
#: of messages went out behind schedule, or a worker used this share of a core.
BEHIND_SCHEDULE_SHARE = 0.01
CPU_SHARE = 0.9
#: Seconds of time series the live figures carry (the dashboard's, once a second):
#: the newest half hour, so a day-long run's live page costs what a short one's does
#: (built in ~20-40 ms; the final figures carry every second).
LIVE_SECONDS = 1800


@dataclass
class WorkerTotals:
    """What one worker has reported so far."""

    worker_id: str
    counters: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    windows: int = 0
    result: Result | None = None
    lost: bool = False
    #: wall-clock span its windows covered (first start, last end), for CPU share
    first_start: float = 0.0
    last_end: float = 0.0

    def final_counters(self) -> dict[str, int]:
        """Every counter (zeros included), with a lost worker's messages in flight as ``lost``.

        A worker lost before its final result leaves answers it awaited
        but had not yet resolved; they count as lost (with the worker), so
        the identity ``expected = received + timed_out + failed + lost +
        unanswered`` holds for it too. :meth:`in_flight_at_loss` says how many.
        """
        out = _summed([self.counters])
        out["lost"] += self.in_flight_at_loss()
        return out

    @property
    def lost_before_result(self) -> bool:
        """Lost before its final result: what it had in flight is lost with it."""
        return self.lost and self.result is None

    def in_flight_at_loss(self) -> int:
        """Answers a lost worker awaited and never resolved (0 for a worker not lost)."""
        if not self.lost_before_result:
            return 0
        c = self.counters
        resolved = sum(
            c.get(k, 0) for k in ("received", "timed_out", "failed", "lost", "unanswered")
        )
        return max(0, c.get("expected", 0) - resolved)

    def summary(self, steps: Mapping[str, Mapping[str, int]] | None = None) -> WorkerSummary:
        """This worker in the run summary: every counter, its errors, its status, its steps."""
        return WorkerSummary(
            self.worker_id,
            Counters.from_mapping(self.final_counters()),
            frozen_map(self.errors),
            self.status,
            self.consistent,
            self.in_flight_at_loss(),
            frozen_map({n: StepCounters.from_mapping(c) for n, c in (steps or {}).items()}),
        )

    @property
    def status(self) -> WorkerStatus:
        """``lost``, ``inconsistent`` (result and windows disagree) or ``ok``."""
        if self.lost:
            return "lost"
        return "inconsistent" if self.consistent is False else "ok"

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
    percentiles: Percentiles = field(default_factory=Percentiles)
    #: (max µs, HdrHistogram-encoded) once closed, for the .hlog export
    encoded: tuple[int, str] = (0, "")

    def close(self) -> None:
        """Keep the percentiles and the encoded histogram, free the counts."""
        if self.latency is not None:
            self.percentiles = Percentiles.of(self.latency)
            self.encoded = (self.latency.max, hdrlog.encode(self.latency))
            self.latency = None


class RunAggregate:
    """Every worker's windows of one job, merged.

    ``step_names``, ``scenario_names`` and ``scenario_clients``: a
    conversation's ``expect`` steps and scenarios in order, and each
    scenario's clients, when known (:class:`StepAggregate`).
    """

    def __init__(
        self,
        started_at: float,
        step_names: Sequence[str] = (),
        scenario_names: Sequence[str] = (),
        scenario_clients: Mapping[str, int] | None = None,
        fanout: FanoutLedger | None = None,
    ) -> None:
        self.started_at = started_at
        self.fanout = fanout or FanoutLedger()
        self.steps = StepAggregate(step_names, scenario_names, scenario_clients)
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
        step_arrays = msg.step_arrays()
        deliveries = msg.fanout_window() if msg.fanout else None
        self._seen.add(key)
        if deliveries:
            self.fanout.add(worker_id, deliveries)
        totals = self.worker(worker_id)
        totals.windows += 1
        if not totals.first_start or msg.window_start < totals.first_start:
            totals.first_start = msg.window_start
        totals.last_end = max(totals.last_end, msg.window_end)
        counters = {k: v for k, v in msg.counters.items() if k in _KNOWN_COUNTERS}
        errors = _bounded_errors(totals.errors, msg.errors)
        add_counts(totals.counters, counters)
        add_counts(totals.errors, errors)
        latency, service, connect = arrays
        self.latency.record_many(latency)
        self.service.record_many(service)
        self.connect.record_many(connect)
        second = max(0, math.ceil(msg.window_end - self.started_at) - 1)
        stats = self.seconds.get(second)
        if stats is None:
            stats = self.seconds[second] = SecondStats(second)
        add_counts(stats.counters, counters)
        add_counts(stats.errors, errors)
        if stats.latency is not None:
            stats.latency.record_many(latency)
        self.steps.add(worker_id, second, step_arrays, msg.scenarios)
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
        """Every counter (zeros included) summed over the workers' windows so far."""
        return _summed(w.counters for w in self.workers.values())

    def final_totals(self) -> dict[str, int]:
        """The sum of every worker's :meth:`WorkerTotals.final_counters`."""
        return _summed(w.final_counters() for w in self.workers.values())

    def clients_connected(self) -> tuple[int, int]:
        """Clients connected on live workers, and those last reported by lost ones.

        A lost worker's gauge is frozen at its last window: its clients are
        not known to be running, so the live figure leaves them out.
        """
        live = sum(w.counters.get("clients_connected", 0) for w in self.workers.values()
                   if not w.lost)  # fmt: skip
        lost = sum(w.counters.get("clients_connected", 0) for w in self.workers.values() if w.lost)
        return live, lost

    def error_texts(self) -> dict[str, str]:
        """The first text seen for each error kind, from the workers' results.

        Workers send ``details["error_texts"]`` (kind -> text); the details map
        crossed the trust boundary unchecked, so anything not a short string
        is dropped and the number of kinds is bounded.
        """
        out: dict[str, str] = {}
        for w in self.workers.values():
            texts = w.result.details.get("error_texts") if w.result is not None else None
            if not isinstance(texts, dict):
                continue
            for kind, text in texts.items():
                if len(out) >= MAX_ERROR_TEXTS:
                    return out
                if isinstance(kind, str) and isinstance(text, str) and kind not in out:
                    out[kind[:MAX_TEXT]] = text[:MAX_TEXT]
        return out

    def errors(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for w in self.workers.values():
            add_counts(out, w.errors)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def time_series(self, last: int | None = None) -> tuple[SecondSummary, ...]:
        """Every second so far (``last``: the newest ones): counters, errors, percentiles."""
        seconds = sorted(self.seconds)
        if last is not None:
            seconds = seconds[-last:]
        return tuple(self._second(self.seconds[s]) for s in seconds)

    def _second(self, stats: SecondStats) -> SecondSummary:
        pct = stats.percentiles if stats.latency is None else Percentiles.of(stats.latency)
        return SecondSummary(
            stats.second,
            Counters.from_mapping(stats.counters),
            tuple(k for k in SAMPLE_COUNTERS if k in stats.counters),
            frozen_map(stats.errors),
            pct,
            self.steps.second(stats.second),
        )

    def progress(self, elapsed: float) -> RunProgress:
        """The run so far, for the progress line, the live panel and ``--abort-on-fail``."""
        live, lost = self.clients_connected()
        last = self.seconds.get(int(elapsed) - 1) if elapsed >= 1 else None
        newest = self.seconds.get(max(self.seconds)) if self.seconds else None
        workers_lost = sum(1 for w in self.workers.values() if w.lost)
        return RunProgress(
            elapsed=elapsed,
            counters=Counters.from_mapping(self.totals()),
            errors=tuple(self.errors().items()),
            clients_connected=live,
            clients_on_lost_workers=lost,
            workers_up=len(self.workers) - workers_lost,
            workers_lost=workers_lost,
            latency=Percentiles.of(self.latency),
            last_second=None if last is None else self._second(last),
            newest_second=None if newest is None else self._second(newest),
            steps=self.steps.progress(),
            conversation=bool(self.steps.totals or self.steps.scenarios),
        )

    def hlog_text(self) -> str:
        """Per-second latency histograms in the HdrHistogram log format."""
        for stats in self.seconds.values():
            stats.close()
        intervals = [(float(s), 1.0, *self.seconds[s].encoded) for s in sorted(self.seconds)]
        return hdrlog.log_text(intervals, self.started_at)

    def figures(self, elapsed: float, live: bool = False) -> RunFigures:
        """The final figures as one frozen value (:class:`wsload.coordinator.summary.RunFigures`).

        Called once, at the end: it closes every per-second histogram (for
        the HDR log), which later windows would no longer reach. ``live``:
        the run so far (the dashboard): its last LIVE_SECONDS seconds, no HDR
        log, no fan-out join and nothing closed.
        """
        series = self.time_series(LIVE_SECONDS if live else None)
        lat = self.latency
        return RunFigures(
            time_series=series,
            counters=Counters.from_mapping(self.final_totals()),
            latency=Percentiles.of(lat),
            service_time=Percentiles.of(self.service),
            connect_time=Percentiles.of(self.connect),
            avg_latency=lat.mean / 1e6 if lat.count else None,
            elapsed=elapsed,
            errors=frozen_map(self.errors()),
            error_texts=frozen_map(self.error_texts()),
            generator_bound=self.generator_bound(),
            workers=tuple(
                w.summary(self.steps.worker_counters(w.worker_id, w.lost_before_result))
                for w in self.workers.values()
            ),
            ignored_windows=self.ignored_windows,
            latency_distribution=distribution(lat),
            connect_distribution=distribution(self.connect),
            hdr_log="" if live else self.hlog_text(),
            steps=self.steps.figures(
                w.worker_id for w in self.workers.values() if w.lost_before_result
            ),
            scenarios=self.steps.scenario_figures(),
            # the join is the costly part, and mid-run in-flight deliveries would read as missing
            fanout=None if live else self.fanout.figures(),
            started_at=self.started_at,
        )

    def generator_bound(self) -> str | None:
        """Why the generator, not the target, limited the run; None when it did not.

        Messages behind schedule past 1 % of those sent mean the workers
        could not send at the rate asked; a worker busy 90 % of a core
        cannot do more either. Either way the figures describe wsload's
        limit as much as the target's.
        """
        reasons = []
        t = self.final_totals()
        if t["sent"] and t["behind_schedule"] > BEHIND_SCHEDULE_SHARE * t["sent"]:
            share = 100.0 * t["behind_schedule"] / t["sent"]
            reasons.append(
                f"{t['behind_schedule']} of {t['sent']} messages ({share:.1f} %) went out "
                "behind schedule"
            )
        for w in self.workers.values():
            span = w.last_end - w.first_start
            cpu = w.counters.get("cpu_ms", 0) / 1000
            if span >= 1.0 and cpu >= CPU_SHARE * span:
                reasons.append(f"worker {w.worker_id} used {cpu / span:.0%} of a core")
        return "; ".join(reasons) if reasons else None


def _bounded_errors(seen: dict[str, int], errors: dict[str, int]) -> dict[str, int]:
    """``errors``, with kinds past this worker's MAX_ERROR_KINDS or MAX_KIND long as UNLISTED."""
    out: dict[str, int] = {}
    for kind, count in errors.items():
        known = kind in seen or kind in out
        room = len(seen) + len(out) < MAX_ERROR_KINDS
        name = kind if len(kind) <= MAX_KIND and (known or room) else UNLISTED
        out[name] = out.get(name, 0) + count
    return out


def _summed(parts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Every counter of SAMPLE_COUNTERS (zeros included), summed over ``parts``."""
    out = dict.fromkeys(SAMPLE_COUNTERS, 0)
    for part in parts:
        add_counts(out, part)
    return out


__all__ = ["RunAggregate", "SecondStats", "WorkerTotals"]

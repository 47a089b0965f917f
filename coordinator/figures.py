"""The figures of a load run, typed and frozen: what :class:`RunAggregate` measured.

Built by :meth:`wsload.coordinator.aggregate.RunAggregate.figures` at the end of a
run (:class:`RunFigures`) and by :meth:`~wsload.coordinator.aggregate.RunAggregate.progress`
once a second while it runs (:class:`RunProgress`, the progress panel's
source). Part of :class:`wsload.coordinator.summary.RunSummary`; thresholds read
them through the one accessor :meth:`RunFigures.metric`. A figure with no
data is None, never 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from wsload.common.protocol import SAMPLE_COUNTERS
from wsload.common.thresholds import TIME_METRICS
from wsload.coordinator.fanout_figures import FanoutFigures
from wsload.coordinator.step_figures import ScenarioFigures, StepCounters, StepFigures

if TYPE_CHECKING:
    from wsload.common.histogram import LatencyHistogram

#: Percentile keys as the JSON spells them, in order.
PERCENTILE_KEYS = ("p50", "p90", "p95", "p99", "p99.9", "max")

WorkerStatus = Literal["ok", "lost", "inconsistent"]


def frozen_map(items: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """A read-only copy: a frozen summary's maps cannot be changed behind its back."""
    return MappingProxyType(dict(items or {}))


@dataclass(frozen=True)
class Percentiles:
    """Latency percentiles in seconds; each None when there were no samples."""

    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    p99_9: float | None = None
    max: float | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, float | None]) -> Percentiles:
        return cls(*(values.get(k) for k in PERCENTILE_KEYS))

    @classmethod
    def of(cls, hist: LatencyHistogram) -> Percentiles:
        """A histogram's (microseconds) percentiles in seconds, the original framework's unit."""
        if not hist.count:
            return cls()
        return cls.from_mapping({k: v / 1e6 for k, v in hist.percentiles().items()})

    def get(self, key: str) -> float | None:
        """The percentile named as in the JSON (``p99.9``)."""
        value: float | None = getattr(self, key.replace(".", "_"))
        return value

    def to_json(self) -> dict[str, float | None]:
        return {k: self.get(k) for k in PERCENTILE_KEYS}


@dataclass(frozen=True)
class Counters:
    """The counters workers report (common.protocol.SAMPLE_COUNTERS, in that order).

    A key a worker sends outside that list is dropped: a peer cannot grow
    the summary with names of its own.
    """

    sent: int = 0
    expected: int = 0
    received: int = 0
    timed_out: int = 0
    failed: int = 0
    lost: int = 0
    unanswered: int = 0
    late: int = 0
    unsolicited: int = 0
    behind_schedule: int = 0
    write_pauses: int = 0
    cpu_ms: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    connects: int = 0
    connect_failures: int = 0
    reconnects: int = 0
    disconnects: int = 0
    clients_connected: int = 0

    @classmethod
    def from_mapping(cls, values: Mapping[str, int]) -> Counters:
        return cls(**{k: int(values[k]) for k in SAMPLE_COUNTERS if k in values})

    @property
    def balanced(self) -> bool:
        """The accounting identity: every answer awaited was resolved exactly once."""
        resolved = self.received + self.timed_out + self.failed + self.lost + self.unanswered
        return self.expected == resolved

    def to_json(self, keys: Iterable[str] = SAMPLE_COUNTERS) -> dict[str, int]:
        return {k: int(getattr(self, k)) for k in keys}


COUNTER_NAMES = tuple(f.name for f in fields(Counters))
assert COUNTER_NAMES == SAMPLE_COUNTERS, "Counters must list common.protocol.SAMPLE_COUNTERS"


@dataclass(frozen=True)
class SecondSummary:
    """One second of the run: the counters reported in it, its errors, its percentiles."""

    second: int
    counters: Counters
    #: the counters that were reported in this second (the JSON row shows only those)
    reported: tuple[str, ...]
    errors: Mapping[str, int]
    latency: Percentiles
    #: each step's counters in this second (a conversation's; empty for echo)
    steps: Mapping[str, StepCounters] = field(default_factory=frozen_map)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "second": self.second,
            **self.counters.to_json(self.reported),
            "errors": dict(self.errors),
            **self.latency.to_json(),
        }
        if self.steps:
            out["steps"] = {name: c.to_json(nonzero=True) for name, c in self.steps.items()}
        return out


@dataclass(frozen=True)
class WorkerSummary:
    """One worker's final counters (a lost one's messages in flight as ``lost``) and status."""

    worker_id: str
    counters: Counters
    errors: Mapping[str, int]
    status: WorkerStatus
    consistent: bool | None
    in_flight_at_loss: int
    #: its counters per step (a conversation's; empty for echo)
    steps: Mapping[str, StepCounters] = field(default_factory=frozen_map)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.counters.to_json(),
            "errors": dict(self.errors),
            "status": self.status,
            "consistent": self.consistent,
            "balanced": self.counters.balanced,
            "in_flight_at_loss": self.in_flight_at_loss,
            "steps": {name: c.to_json() for name, c in self.steps.items()},
        }


@dataclass(frozen=True)
class RunFigures:
    """What a load run measured, merged over every worker."""

    time_series: tuple[SecondSummary, ...]
    counters: Counters
    latency: Percentiles
    service_time: Percentiles
    connect_time: Percentiles
    #: mean latency in seconds, None without samples
    avg_latency: float | None
    elapsed: float
    errors: Mapping[str, int]
    error_texts: Mapping[str, str]
    #: why the generator, not the target, limited the run; None when it did not
    generator_bound: str | None
    workers: tuple[WorkerSummary, ...]
    ignored_windows: int
    #: (percentile, seconds) points of the whole-run distributions, for charts
    latency_distribution: tuple[tuple[float, float], ...] = field(default=(), repr=False)
    connect_distribution: tuple[tuple[float, float], ...] = field(default=(), repr=False)
    #: per-second histograms in the HdrHistogram log format (``--hdr``)
    hdr_log: str = field(default="", repr=False)
    #: a conversation's ``expect`` steps, in the workload's order (empty for echo)
    steps: tuple[StepFigures, ...] = ()
    scenarios: tuple[ScenarioFigures, ...] = ()
    #: deliveries of a publish/subscribe workload (None, or not active: none)
    fanout: FanoutFigures | None = None
    #: the run's start (Unix time, seconds): second ``s`` of the time series is
    #: ``[started_at + s, started_at + s + 1)``; None when not known (figures built by hand)
    started_at: float | None = None

    @property
    def conversation(self) -> bool:
        """A conversation's run (its workload has steps or scenarios), not the echo load.

        Its ``received`` counts expects met, not messages; :mod:`~wsload.coordinator.report`
        words its counts accordingly.
        """
        return bool(self.steps or self.scenarios)

    def step(self, name: str) -> StepFigures | None:
        return next((s for s in self.steps if s.name == name), None)

    @property
    def total_sent(self) -> int:
        return self.counters.sent

    @property
    def total_received(self) -> int:
        return self.counters.received

    @property
    def success_rate(self) -> float | None:
        """Percent of awaited answers that came (``received / expected``); None when none was."""
        expected = self.counters.expected
        return 100.0 * self.counters.received / expected if expected else None

    @property
    def throughput(self) -> float:
        """Replies per second over the run."""
        return self.counters.received / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def send_rate(self) -> float:
        return self.counters.sent / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def replies_per_second(self) -> float | None:
        """:attr:`throughput` as the JSON shows it: None over no time (a run stopped before
        it began), where :attr:`throughput` says 0."""
        return self.throughput if self.elapsed > 0 else None

    @property
    def sends_per_second(self) -> float | None:
        """:attr:`send_rate`, None over no time."""
        return self.send_rate if self.elapsed > 0 else None

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def metric(self, name: str, step: str | None = None) -> float | None:
        """A threshold metric's value (common.thresholds.METRICS); None without data.

        The one place a metric name meets a figure: times in seconds,
        rates in percent of awaited answers (None when none was awaited),
        ``rps`` in replies per second, counts as counted. With ``step``,
        the metric of that step (STEP_METRICS); None for a step the run
        never saw.
        """
        if step is not None:
            figures = self.step(step)
            return None if figures is None else figures.metric(name)
        if name.startswith("fanout."):
            return None if self.fanout is None else self.fanout.metric(name)
        c = self.counters
        if name in TIME_METRICS:
            section, key = TIME_METRICS[name]
            if not key:
                return self.avg_latency
            return self._percentiles[section].get(key)
        if name == "success_rate":
            return self.success_rate
        if name == "error_rate":  # from the counts: 100 - success_rate in floats is not exact
            return 100.0 * (c.expected - c.received) / c.expected if c.expected else None
        if name == "rps":
            return self.replies_per_second
        return count_metric(name, c, self.error_count)

    @property
    def _percentiles(self) -> Mapping[str, Percentiles]:
        return {
            "latency_percentiles": self.latency,
            "service_time_percentiles": self.service_time,
            "connect_time_percentiles": self.connect_time,
        }

    def to_json(self) -> dict[str, Any]:
        c = self.counters
        return {
            "time_series": [row.to_json() for row in self.time_series],
            "total_sent": c.sent,
            "total_received": c.received,
            "success_rate": self.success_rate,
            "avg_latency": self.avg_latency,
            "latency_percentiles": self.latency.to_json(),
            "service_time_percentiles": self.service_time.to_json(),
            "connect_time_percentiles": self.connect_time.to_json(),
            **c.to_json(SUMMARY_COUNTERS),
            # a rate over no time is no value (not 0); 0 over a run's seconds is one
            "throughput": self.replies_per_second,
            "send_rate": self.sends_per_second,
            "elapsed": self.elapsed,
            "errors": dict(self.errors),
            "error_texts": dict(self.error_texts),
            "counters": c.to_json(),
            "balanced": c.balanced,
            "generator_bound": (
                None if self.generator_bound is None else {"reason": self.generator_bound}
            ),
            "workers": {w.worker_id: w.to_json() for w in self.workers},
            "ignored_windows": self.ignored_windows,
            "steps": {s.name: s.to_json() for s in self.steps},
            "scenarios": {s.name: s.to_json() for s in self.scenarios},
            "fanout": self.fanout.to_json() if self.fanout and self.fanout.active else {},
        }


def count_metric(name: str, counters: Counters, errors: int) -> float:
    """A count metric (common.thresholds.COUNT_METRICS), also mid-run (``--abort-on-fail``)."""
    if name == "timeouts":
        return float(counters.timed_out)
    if name == "errors":
        return float(errors)
    if name == "connect_failures":
        return float(counters.connect_failures)
    raise ValueError(f"unknown metric {name!r}")


#: Percentiles the distribution charts plot: 0 .. 99.999, denser in the tail.
DISTRIBUTION = [p / 10 for p in range(0, 900, 10)] + [90 + i * 0.5 for i in range(20)] + [
    99.5, 99.9, 99.95, 99.99, 99.999, 100.0
]  # fmt: skip


def distribution(hist: LatencyHistogram) -> tuple[tuple[float, float], ...]:
    """(percentile, seconds) at each of DISTRIBUTION's points; empty without samples."""
    if not hist.count:
        return ()
    return tuple((p, hist.value_at_percentile(p) / 1e6) for p in DISTRIBUTION)


#: Counters the JSON also shows at its top level (the original framework's layout).
SUMMARY_COUNTERS = (
    "expected",
    "timed_out",
    "failed",
    "lost",
    "unanswered",
    "late",
    "unsolicited",
    "behind_schedule",
    "write_pauses",
    "cpu_ms",
)


@dataclass(frozen=True)
class RunProgress:
    """The run so far, once a second: what the progress line and the live panel show.

    A snapshot of the live totals (a lost worker's last counters included,
    as in the final figures); clients on lost workers are counted apart,
    since they are not known to be running.
    """

    elapsed: float
    counters: Counters
    #: error kinds, most frequent first
    errors: tuple[tuple[str, int], ...]
    clients_connected: int
    clients_on_lost_workers: int
    workers_up: int
    workers_lost: int
    #: the whole run's latency so far
    latency: Percentiles
    #: the last full second (``int(elapsed) - 1``), and the newest one reported
    last_second: SecondSummary | None
    newest_second: SecondSummary | None
    #: each step's counters so far (a conversation's), for per-step ``--abort-on-fail``
    steps: Mapping[str, StepCounters] = field(default_factory=frozen_map)
    #: a conversation's run: ``counters.received`` counts expects met, not messages
    conversation: bool = False

    @property
    def error_count(self) -> int:
        return sum(count for _, count in self.errors)


__all__ = [
    "COUNTER_NAMES",
    "DISTRIBUTION",
    "PERCENTILE_KEYS",
    "SUMMARY_COUNTERS",
    "Counters",
    "Percentiles",
    "RunFigures",
    "RunProgress",
    "ScenarioFigures",
    "SecondSummary",
    "StepCounters",
    "StepFigures",
    "WorkerStatus",
    "WorkerSummary",
    "count_metric",
    "distribution",
    "frozen_map",
]

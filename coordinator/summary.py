"""``RunSummary``: the one frozen, typed value a load run ends with.

The coordinator builds it once (:func:`coordinator.loadrun.conclude`); every
output renders from it (text, JSON, CSV, JUnit, HDR log, HTML) and the
thresholds are measured on it (:meth:`RunFigures.metric`), so no output or
rule reads a figure by a string key of its own. Three parts, each frozen:

- :class:`RunFigures`: what was measured (:meth:`RunAggregate.figures
  <coordinator.aggregate.RunAggregate.figures>`);
- :class:`RunEnding`: how the run ended (lost workers, abort, interruption,
  handovers), from the run's outcome;
- :class:`RunParameters` and :class:`Verdict`: what was asked, and the
  judgement (:func:`coordinator.verdict.judge`).

:meth:`RunSummary.to_json` is the JSON document users and tests read; its
keys and their order are those of the dict it replaced (pinned by
``tests/unit/test_outputs.py``). A figure with no data is None (null),
never 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Literal

from common.protocol import SAMPLE_COUNTERS
from common.thresholds import TIME_METRICS

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
    received: int = 0
    timed_out: int = 0
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
        """The accounting identity: every message sent was resolved exactly once."""
        return self.sent == self.received + self.timed_out + self.lost + self.unanswered

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

    def to_json(self) -> dict[str, Any]:
        return {
            "second": self.second,
            **self.counters.to_json(self.reported),
            "errors": dict(self.errors),
            **self.latency.to_json(),
        }


@dataclass(frozen=True)
class WorkerSummary:
    """One worker's final counters (a lost one's messages in flight as ``lost``) and status."""

    worker_id: str
    counters: Counters
    errors: Mapping[str, int]
    status: WorkerStatus
    consistent: bool | None
    in_flight_at_loss: int

    def to_json(self) -> dict[str, Any]:
        return {
            **self.counters.to_json(),
            "errors": dict(self.errors),
            "status": self.status,
            "consistent": self.consistent,
            "balanced": self.counters.balanced,
            "in_flight_at_loss": self.in_flight_at_loss,
        }


@dataclass(frozen=True)
class Handover:
    """A lost worker's clients handed on to another worker."""

    origin: str
    to: str
    clients: int
    first_client: int

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.origin,
            "to": self.to,
            "clients": self.clients,
            "first_client": self.first_client,
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
    latency_distribution: tuple[tuple[float, float], ...] = ()
    connect_distribution: tuple[tuple[float, float], ...] = ()
    #: per-second histograms in the HdrHistogram log format (``--hdr``)
    hdr_log: str = ""

    @property
    def total_sent(self) -> int:
        return self.counters.sent

    @property
    def total_received(self) -> int:
        return self.counters.received

    @property
    def success_rate(self) -> float | None:
        """Percent of sent messages answered; None when nothing was sent."""
        sent = self.counters.sent
        return 100.0 * self.counters.received / sent if sent else None

    @property
    def throughput(self) -> float:
        """Replies per second over the run."""
        return self.counters.received / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def send_rate(self) -> float:
        return self.counters.sent / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def metric(self, name: str) -> float | None:
        """A threshold metric's value (common.thresholds.METRICS); None without data.

        The one place a metric name meets a figure: times in seconds,
        rates in percent of sent messages (None when nothing was sent),
        ``rps`` in replies per second, counts as counted.
        """
        c = self.counters
        if name in TIME_METRICS:
            section, key = TIME_METRICS[name]
            if not key:
                return self.avg_latency
            return self._percentiles[section].get(key)
        if name == "success_rate":
            return self.success_rate
        if name == "error_rate":  # from the counts: 100 - success_rate in floats is not exact
            return 100.0 * (c.sent - c.received) / c.sent if c.sent else None
        if name == "rps":
            return self.throughput
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
            "throughput": self.throughput,
            "send_rate": self.send_rate,
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


#: Counters the JSON also shows at its top level (the original framework's layout).
SUMMARY_COUNTERS = (
    "timed_out",
    "lost",
    "unanswered",
    "late",
    "unsolicited",
    "behind_schedule",
    "write_pauses",
    "cpu_ms",
)


@dataclass(frozen=True)
class RunEnding:
    """How the run ended: the parts of the outcome the figures do not say."""

    bad_input: Mapping[str, int] = field(default_factory=frozen_map)
    lost_workers: tuple[str, ...] = ()
    aborted: str = ""
    interrupted: bool = False
    interrupted_by: str = ""  # the signal's name: SIGINT, SIGTERM
    handovers: tuple[Handover, ...] = ()
    clients_orphaned: int = 0
    refused: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "bad_input": dict(self.bad_input),
            "lost_workers": list(self.lost_workers),
            "aborted": self.aborted,
            "interrupted": self.interrupted,
            "interrupted_by": self.interrupted_by,
            "handovers": [h.to_json() for h in self.handovers],
            "clients_orphaned": self.clients_orphaned,
        }


@dataclass(frozen=True)
class RunParameters:
    """What the run was asked to do; no secret (credentials show as ``***``)."""

    target: str
    clients: int
    rate: float | None
    interval: float | None
    duration: float
    ramp_up: float
    engine: str
    match: str
    workers: int
    headers: tuple[tuple[str, str], ...]
    started_at: str  # ISO 8601, UTC
    wsload_version: str

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "clients": self.clients,
            "rate": self.rate,
            "interval": self.interval,
            "duration": self.duration,
            "ramp_up": self.ramp_up,
            "engine": self.engine,
            "match": self.match,
            "workers": self.workers,
            "headers": [list(pair) for pair in self.headers],
            "started_at": self.started_at,
            "wsload_version": self.wsload_version,
        }


@dataclass(frozen=True)
class ThresholdResult:
    """One threshold, its measured value (None without data), as shown, and whether it passed."""

    threshold: str
    measured: float | None
    shown: str
    passed: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "measured": self.measured,
            "shown": self.shown,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class Verdict:
    """How a run ended, why, and the exit code that says it (:mod:`coordinator.verdict`).

    ``reasons`` are one line each, most important first.
    """

    code: int
    status: str
    reasons: tuple[str, ...] = ()
    thresholds: tuple[ThresholdResult, ...] = ()

    @property
    def passed(self) -> bool:
        return self.code == 0

    @property
    def nothing_tested(self) -> str | None:
        """The "nothing tested" reason, when the run tested nothing."""
        return next((r for r in self.reasons if r.startswith("nothing tested")), None)

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "status": self.status, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class RunSummary:
    """A finished load run: figures, ending, parameters, verdict; what every output shows."""

    figures: RunFigures
    ending: RunEnding
    parameters: RunParameters
    verdict: Verdict

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    def to_json(self) -> dict[str, Any]:
        """The JSON document (without ``schema_version``, which the writer adds)."""
        return {
            **self.figures.to_json(),
            **self.ending.to_json(),
            "engine": self.parameters.engine,
            "parameters": self.parameters.to_json(),
            "thresholds": [t.to_json() for t in self.verdict.thresholds],
            "nothing_tested": self.verdict.nothing_tested,
            "verdict": self.verdict.to_json(),
            "passed": self.verdict.passed,
        }


__all__ = [
    "COUNTER_NAMES",
    "PERCENTILE_KEYS",
    "Counters",
    "Handover",
    "Percentiles",
    "RunEnding",
    "RunFigures",
    "RunParameters",
    "RunSummary",
    "SecondSummary",
    "ThresholdResult",
    "Verdict",
    "WorkerSummary",
    "count_metric",
    "frozen_map",
]

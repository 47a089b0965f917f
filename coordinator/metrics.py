"""Live metrics out: the run's merged figures as metric families (sans-I/O).

Prometheus' ``/metrics`` (:mod:`wsload.coordinator.metrics_http`) and the
OTLP push (:mod:`wsload.coordinator.otlp`) both publish the same
:func:`families` of one :class:`MetricsSnapshot`, so a scrape and a push
taken at the same moment say the same thing. A snapshot is taken from the
:class:`~wsload.coordinator.aggregate.RunAggregate` once a second while the
run lasts (:func:`live_snapshot`) and once more at the end from the run's
final figures (:func:`final_snapshot`): the last one holds exactly what the
``--json`` summary holds (a lost worker's answers in flight as ``lost``),
and ``wsload_run_final`` turns 1.

Counters only grow: each is a total over the run so far, summed over the
workers' windows. :data:`METRICS` names everything exported; the Grafana
dashboard's test reads it, so a query naming anything else fails.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from wsload.common.fanout_wire import FANOUT_COUNTERS
from wsload.common.hdr_layout import HIGHEST, counts_index
from wsload.common.protocol import STEP_COUNTERS
from wsload.coordinator.figures import frozen_map

if TYPE_CHECKING:
    from wsload.common.histogram import LatencyHistogram
    from wsload.coordinator.aggregate import RunAggregate
    from wsload.coordinator.figures import RunFigures

Kind = Literal["counter", "gauge", "histogram"]

#: Histogram bucket bounds in seconds: WebSocket round trips, from a loopback
#: echo (100 µs) to a reply at the edge of a long timeout (30 s). Bounds up to
#: 2 ms are exact; above, exact to the latency histogram's 3 significant digits.
BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
_BOUND_INDEX = np.array([counts_index(min(HIGHEST, round(b * 1e6))) for b in BUCKETS])

#: Run counters exported as ``wsload_<name>_total``, by the summary's counter name.
RUN_COUNTERS: Mapping[str, tuple[str, str]] = frozen_map(
    {
        "sent": ("messages_sent", "Messages sent."),
        "expected": ("messages_expected", "Answers awaited (echo load: messages sent)."),
        "received": ("messages_received", "Replies received (a conversation: expects met)."),
        "timed_out": ("messages_timed_out", "Answers that timed out."),
        "failed": ("messages_failed", "Expects failed by a fail pattern or a bad answer."),
        "lost": ("messages_lost", "Answers lost with their connection or worker."),
        "unanswered": ("messages_unanswered", "Answers still awaited when the run stopped."),
        "late": ("messages_late", "Replies after their timeout, or duplicates."),
        "unsolicited": ("unsolicited", "Messages that answered nothing (pushes, broadcasts)."),
        "behind_schedule": ("messages_behind_schedule", "Messages sent over 5 ms late."),
        "bytes_sent": ("bytes_sent", "Payload bytes sent."),
        "bytes_received": ("bytes_received", "Payload bytes received."),
        "connects": ("connects", "Connections opened."),
        "connect_failures": ("connect_failures", "Connection attempts that failed."),
        "reconnects": ("reconnects", "Reconnections after a connection was lost."),
        "disconnects": ("disconnects", "Connections closed or lost during the run."),
    }
)
_STEP_HELP = {
    "expected": "Expects begun",
    "met": "Expects met",
    "timed_out": "Expects timed out",
    "failed": "Expects failed",
    "lost": "Expects lost with their connection or worker",
    "unanswered": "Expects still waiting when the run stopped",
}
_FANOUT_HELP = {
    "deliveries": "Deliveries the subscribers recognised (duplicates included)",
    "duplicates": "Deliveries of a message already delivered",
    "out_of_order": "Deliveries out of publication order",
    "publish_conflicts": "Publications of a sequence number already published",
}
#: Fan-out figures known only once the run's deliveries are joined, at the end.
FANOUT_JOINED = ("published", "expected", "delivered", "missing")


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric family: its name (as Prometheus shows it), kind, label, help."""

    name: str
    kind: Kind
    help: str
    label: str | None = None
    unit: str = ""

    @property
    def otel_name(self) -> str:
        """The name an OTLP metric carries: a monotonic sum's without ``_total``."""
        return self.name.removesuffix("_total") if self.kind == "counter" else self.name

    @property
    def series(self) -> tuple[str, ...]:
        """The names of its series in the text format (a histogram's three)."""
        if self.kind == "histogram":
            return tuple(f"{self.name}_{s}" for s in ("bucket", "sum", "count"))
        return (self.name,)


def _specs() -> tuple[MetricSpec, ...]:
    out = [MetricSpec(f"wsload_{n}_total", "counter", h) for n, h in RUN_COUNTERS.values()]
    out += [
        MetricSpec("wsload_errors_total", "counter", "Errors, by kind.", "kind"),
        MetricSpec("wsload_clients_connected", "gauge", "Clients connected on live workers."),
        MetricSpec("wsload_workers", "gauge", "Workers running the job (lost ones excluded)."),
        MetricSpec("wsload_workers_lost", "gauge", "Workers lost during the run."),
        MetricSpec(
            "wsload_latency_seconds",
            "histogram",
            "Reply latency from the intended send time (no coordinated omission).",
            unit="s",
        ),
        MetricSpec(
            "wsload_run_elapsed_seconds", "gauge", "Seconds since the run's start.", None, "s"
        ),
        MetricSpec("wsload_run_final", "gauge", "1 once the figures are the run's final ones."),
    ]
    out += [
        MetricSpec(f"wsload_step_{k}_total", "counter", f"{h}, by step.", "step")
        for k, h in _STEP_HELP.items()
    ]
    out.append(
        MetricSpec(
            "wsload_step_latency_seconds",
            "histogram",
            "A step's latency from its triggering send's due time, by step.",
            "step",
            "s",
        )
    )
    out += [
        MetricSpec(f"wsload_fanout_{k}_total", "counter", f"{h}, by topic.", "topic")
        for k, h in _FANOUT_HELP.items()
    ]
    out += [
        MetricSpec(
            f"wsload_fanout_{k}",
            "gauge",
            f"Fan-out {k} (at the end of the run), by topic.",
            "topic",
        )
        for k in FANOUT_JOINED
    ]
    return tuple(out)


#: Every metric family wsload exports, by name.
METRICS: Mapping[str, MetricSpec] = frozen_map({s.name: s for s in _specs()})


def exported_series() -> frozenset[str]:
    """Every series name a scrape can show (a histogram's ``_bucket``, ``_sum``, ``_count``)."""
    return frozenset(name for spec in METRICS.values() for name in spec.series)


@dataclass(frozen=True)
class HistogramFigure:
    """A latency histogram at :data:`BUCKETS`: cumulative counts, count, sum in seconds."""

    cumulative: tuple[int, ...] = (0,) * len(BUCKETS)
    count: int = 0
    sum: float = 0.0
    min: float = 0.0
    max: float = 0.0

    @classmethod
    def of(cls, hist: LatencyHistogram) -> HistogramFigure:
        """``hist`` (microseconds) counted at each bound, ``le`` as Prometheus means it."""
        if not hist.count:
            return cls()
        cumulative = np.cumsum(hist.counts)[_BOUND_INDEX]
        return cls(
            tuple(int(c) for c in cumulative),
            hist.count,
            hist.total / 1e6,
            hist.min / 1e6,
            hist.max / 1e6,
        )

    @property
    def per_bucket(self) -> tuple[int, ...]:
        """Counts per bucket, the last one above the highest bound (OTLP's form)."""
        edges = (0, *self.cumulative, self.count)
        return tuple(b - a for a, b in itertools.pairwise(edges))


@dataclass(frozen=True)
class MetricsSnapshot:
    """The run's figures at one moment, in the shape the metrics need."""

    counters: Mapping[str, int] = field(default_factory=frozen_map)
    errors: Mapping[str, int] = field(default_factory=frozen_map)
    clients_connected: int = 0
    workers: int = 0
    workers_lost: int = 0
    latency: HistogramFigure = field(default_factory=HistogramFigure)
    steps: Mapping[str, Mapping[str, int]] = field(default_factory=frozen_map)
    step_latency: Mapping[str, HistogramFigure] = field(default_factory=frozen_map)
    #: per topic, FANOUT_COUNTERS so far
    fanout: Mapping[str, Mapping[str, int]] = field(default_factory=frozen_map)
    #: per topic, FANOUT_JOINED: known at the end only
    fanout_joined: Mapping[str, Mapping[str, int]] = field(default_factory=frozen_map)
    elapsed: float = 0.0
    final: bool = False


def _workers(agg: RunAggregate) -> tuple[int, int]:
    lost = sum(1 for w in agg.workers.values() if w.lost)
    return len(agg.workers) - lost, lost


def _step_latency(agg: RunAggregate) -> Mapping[str, HistogramFigure]:
    return frozen_map({n: HistogramFigure.of(h) for n, h in agg.steps.latency.items()})


def live_snapshot(agg: RunAggregate, elapsed: float) -> MetricsSnapshot:
    """The run so far: the workers' windows merged until now."""
    up, lost = _workers(agg)
    return MetricsSnapshot(
        counters=frozen_map(agg.totals()),
        errors=frozen_map(agg.errors()),
        clients_connected=agg.clients_connected()[0],
        workers=up,
        workers_lost=lost,
        latency=HistogramFigure.of(agg.latency),
        steps=frozen_map({n: frozen_map(c) for n, c in agg.steps.totals.items()}),
        step_latency=_step_latency(agg),
        fanout=frozen_map(
            {name: frozen_map(t.counts) for name, t in sorted(agg.fanout.topics.items())}
        ),
        elapsed=elapsed,
    )


def final_snapshot(figures: RunFigures, agg: RunAggregate) -> MetricsSnapshot:
    """The run's end: the summary's own figures (``--json``'s), and the whole-run histograms."""
    up, lost = _workers(agg)
    fanout, joined = {}, {}
    if figures.fanout is not None:
        for row in figures.fanout.topics:
            fanout[row.name] = frozen_map({k: getattr(row, k) for k in FANOUT_COUNTERS})
            joined[row.name] = frozen_map({k: getattr(row, k) for k in FANOUT_JOINED})
    return MetricsSnapshot(
        counters=frozen_map(figures.counters.to_json()),
        errors=frozen_map(figures.errors),
        clients_connected=agg.clients_connected()[0],
        workers=up,
        workers_lost=lost,
        latency=HistogramFigure.of(agg.latency),
        steps=frozen_map({s.name: frozen_map(s.counters.to_json()) for s in figures.steps}),
        step_latency=_step_latency(agg),
        fanout=frozen_map(fanout),
        fanout_joined=frozen_map(joined),
        elapsed=figures.elapsed,
        final=True,
    )


@dataclass(frozen=True)
class Family:
    """One metric family's values: ``samples`` (label value or None, value) or ``histograms``."""

    spec: MetricSpec
    samples: tuple[tuple[str | None, float], ...] = ()
    histograms: tuple[tuple[str | None, HistogramFigure], ...] = ()


def _labelled(name: str, rows: Iterable[tuple[str, float]]) -> Family:
    return Family(METRICS[name], tuple(rows))


def families(snap: MetricsSnapshot) -> tuple[Family, ...]:
    """Every family of ``snap``; labelled ones (steps, topics, error kinds) only once seen.

    A family without a label is always there (zero at first), so a dashboard
    never shows "no data" for a run that simply has had no error yet.
    """
    out = [
        Family(METRICS[f"wsload_{n}_total"], ((None, float(snap.counters.get(k, 0))),))
        for k, (n, _h) in RUN_COUNTERS.items()
    ]
    out.append(_labelled("wsload_errors_total", sorted(snap.errors.items())))
    for name, value in (
        ("wsload_clients_connected", snap.clients_connected),
        ("wsload_workers", snap.workers),
        ("wsload_workers_lost", snap.workers_lost),
        ("wsload_run_elapsed_seconds", snap.elapsed),
        ("wsload_run_final", 1 if snap.final else 0),
    ):
        out.append(Family(METRICS[name], ((None, float(value)),)))
    out.append(Family(METRICS["wsload_latency_seconds"], histograms=((None, snap.latency),)))
    if snap.steps:
        for k in STEP_COUNTERS:
            rows = ((n, float(c.get(k, 0))) for n, c in snap.steps.items())
            out.append(_labelled(f"wsload_step_{k}_total", rows))
        hists = tuple((n, snap.step_latency.get(n, HistogramFigure())) for n in snap.steps)
        out.append(Family(METRICS["wsload_step_latency_seconds"], histograms=hists))
    if snap.fanout:
        for k in FANOUT_COUNTERS:
            rows = ((t, float(c.get(k, 0))) for t, c in snap.fanout.items())
            out.append(_labelled(f"wsload_fanout_{k}_total", rows))
    if snap.fanout_joined:
        for k in FANOUT_JOINED:
            rows = ((t, float(c.get(k, 0))) for t, c in snap.fanout_joined.items())
            out.append(_labelled(f"wsload_fanout_{k}", rows))
    return tuple(out)


__all__ = [
    "BUCKETS",
    "METRICS",
    "Family",
    "HistogramFigure",
    "MetricSpec",
    "MetricsSnapshot",
    "exported_series",
    "families",
    "final_snapshot",
    "live_snapshot",
]

"""Fan-out delivery figures, typed and frozen: part of :class:`RunFigures`.

Built by :meth:`wsload.coordinator.fanout.FanoutLedger.figures` at the end of a
run. Per topic and in total, :class:`DeliveryFigures` holds the accounting
``expected = delivered + missing`` (publications made while a subscriber
was subscribed, and which of them it got), what came besides (``early``:
published before it subscribed; ``extra``: never published; both never
count as delivered), what the subscribers' workers counted (duplicates,
out-of-order arrivals) and the delivery latency. :class:`ClockFigures` says
which clock the latencies came from and how well the workers' clocks were
known.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wsload.coordinator.figures import Percentiles

#: The counts of :class:`DeliveryFigures`, in the JSON's order.
DELIVERY_COUNTS = (
    "published", "expected", "delivered", "missing", "duplicates", "out_of_order", "early", "extra"
)  # fmt: skip


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class DeliveryFigures:
    """One topic's deliveries (or every topic's, summed).

    ``subscriptions``: subscriptions joined; ``untracked``: seqs a worker
    received but could not record (a subscription's range bound), counted
    missing; ``publish_conflicts``: publications of a seq already published
    (the later one ignored).
    """

    name: str
    latency: Percentiles
    published: int = 0
    expected: int = 0
    delivered: int = 0
    missing: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    early: int = 0
    extra: int = 0
    subscriptions: int = 0
    untracked: int = 0
    publish_conflicts: int = 0
    #: deliveries the workers recognised (duplicates, early and extra included)
    deliveries: int = 0
    #: mean latency in seconds, None without samples
    avg_latency: float | None = None
    latency_distribution: tuple[tuple[float, float], ...] = field(default=(), repr=False)

    @property
    def delivery_rate(self) -> float | None:
        """Percent of the deliveries owed that came; None when none was owed."""
        return 100.0 * self.delivered / self.expected if self.expected else None

    def to_json(self) -> dict[str, Any]:
        return {
            **{k: int(getattr(self, k)) for k in DELIVERY_COUNTS},
            "delivery_rate": self.delivery_rate,
            "subscriptions": self.subscriptions,
            "deliveries": self.deliveries,
            "untracked": self.untracked,
            "publish_conflicts": self.publish_conflicts,
            "avg_latency": self.avg_latency,
            "latency_percentiles": self.latency.to_json(),
        }


@dataclass(frozen=True)
class WorkerClock:
    """One worker's clock against the coordinator's: offset = worker - coordinator.

    ``offset``/``uncertainty`` in seconds, None when the worker never
    answered a probe; ``applied``: whether latencies and subscription times
    were corrected by it (workers on another host than the coordinator).
    """

    worker_id: str
    host: str = ""
    offset: float | None = None
    uncertainty: float | None = None
    applied: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "offset_ms": None if self.offset is None else self.offset * 1000,
            "uncertainty_ms": None if self.uncertainty is None else self.uncertainty * 1000,
            "applied": self.applied,
        }


@dataclass(frozen=True)
class ClockFigures:
    """Which clock delivery latencies came from, and each worker's offset.

    ``source``: ``"wsload"`` (the publishing worker's clock, corrected to
    the coordinator's across hosts), ``"server"`` (the service's own
    timestamps), ``"mixed"``, or ``"none"`` (no latency measured).
    ``uncertainty``: the largest uncertainty of a correction applied
    (seconds; None: none applied, the figures are exact on one host).
    ``negative``: latencies below zero after correction (clock error),
    counted as 0. ``uncorrected``: workers on another host whose offset is
    unknown (they never answered a probe): their latencies are not corrected.
    """

    source: str = "none"
    workers: tuple[WorkerClock, ...] = ()
    uncertainty: float | None = None
    negative: int = 0
    uncorrected: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "uncertainty_ms": None if self.uncertainty is None else self.uncertainty * 1000,
            "negative_latencies": self.negative,
            "uncorrected": list(self.uncorrected),
            "workers": {w.worker_id: w.to_json() for w in self.workers},
        }


@dataclass(frozen=True)
class MissingDelivery:
    """One publication a subscriber was owed and never got."""

    topic: str
    seq: int
    client: int

    def to_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "seq": self.seq, "client": self.client}


@dataclass(frozen=True)
class FanoutFigures:
    """A run's deliveries: in total, per topic, the clocks, a sample of what went missing."""

    total: DeliveryFigures
    topics: tuple[DeliveryFigures, ...] = ()
    clock: ClockFigures = field(default_factory=ClockFigures)
    missing_sample: tuple[MissingDelivery, ...] = ()
    #: subscriptions the coordinator could not keep (its bound), not judged
    dropped_subscriptions: int = 0
    #: publications past the coordinator's bound, not kept (their deliveries read as extra)
    dropped_publications: int = 0
    #: subscribing clients none of whose topics had a publication or a delivery
    #: (a misspelt topic): they tested nothing (the verdict says so)
    unfed_subscribers: int = 0

    @property
    def active(self) -> bool:
        """The run published or received deliveries (else no ``fanout`` in the outputs)."""
        t = self.total
        return bool(t.published or t.deliveries or t.subscriptions)

    def metric(self, name: str) -> float | None:
        """A ``fanout.*`` threshold metric (common.thresholds.FANOUT_METRICS); None without data."""
        from wsload.common.thresholds import FANOUT_TIME_METRICS

        t = self.total
        if name in FANOUT_TIME_METRICS:
            key = FANOUT_TIME_METRICS[name]
            return t.avg_latency if not key else t.latency.get(key)
        if name == "fanout.delivery_rate":
            return t.delivery_rate
        counted = name.removeprefix("fanout.")
        if counted in DELIVERY_COUNTS:
            return float(getattr(t, counted)) if self.active else None
        raise ValueError(f"unknown fan-out metric {name!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total.to_json(),
            "topics": {t.name: t.to_json() for t in self.topics},
            "clock": self.clock.to_json(),
            "missing_sample": [m.to_json() for m in self.missing_sample],
            "dropped_subscriptions": self.dropped_subscriptions,
            "dropped_publications": self.dropped_publications,
        }


__all__ = [
    "DELIVERY_COUNTS",
    "ClockFigures",
    "DeliveryFigures",
    "FanoutFigures",
    "MissingDelivery",
    "WorkerClock",
]

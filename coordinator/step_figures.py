"""A conversation's per-step figures, typed and frozen: part of :class:`RunFigures`.

Every ``expect`` step is a measured transaction: :class:`StepCounters` hold
its accounting (``expected = met + timed_out + failed + lost + unanswered``),
:class:`StepFigures` its latency (from the due time of its triggering send)
and service time (from the actual send), :class:`ScenarioFigures` what each
scenario's clients did besides. Built by
:class:`wsload.coordinator.step_aggregate.StepAggregate`; re-exported by
:mod:`wsload.coordinator.figures`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from wsload.common.protocol import STEP_COUNTERS
from wsload.common.thresholds import STEP_TIME_METRICS

if TYPE_CHECKING:
    from wsload.coordinator.figures import Percentiles


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class StepCounters:
    """One ``expect`` step's counters (common.protocol.STEP_COUNTERS, in that order)."""

    expected: int = 0
    met: int = 0
    timed_out: int = 0
    failed: int = 0
    lost: int = 0
    unanswered: int = 0

    @classmethod
    def from_mapping(cls, values: Mapping[str, int]) -> StepCounters:
        return cls(**{k: int(values[k]) for k in STEP_COUNTERS if k in values})

    @property
    def balanced(self) -> bool:
        """The step's identity: every expect begun was resolved exactly once."""
        resolved = self.met + self.timed_out + self.failed + self.lost + self.unanswered
        return self.expected == resolved

    @property
    def success_rate(self) -> float | None:
        """Percent of the expects begun that were met; None when none began."""
        return 100.0 * self.met / self.expected if self.expected else None

    def to_json(self, nonzero: bool = False) -> dict[str, int]:
        values = {k: int(getattr(self, k)) for k in STEP_COUNTERS}
        return {k: v for k, v in values.items() if v} if nonzero else values


assert tuple(f.name for f in fields(StepCounters)) == STEP_COUNTERS


@dataclass(frozen=True)
class StepFigures:
    """What one ``expect`` step measured over the run: a transaction's truth.

    Latency counts from the moment the step's triggering send was *due*,
    service time from the actual send; ``workers`` holds each worker's
    counters (a lost worker's expects in flight as ``lost``).
    """

    name: str
    counters: StepCounters
    latency: Percentiles
    service_time: Percentiles
    #: mean latency in seconds, None without samples
    avg_latency: float | None = None
    workers: Mapping[str, StepCounters] = field(default_factory=_empty)
    #: (percentile, seconds) points of the latency distribution, for charts
    latency_distribution: tuple[tuple[float, float], ...] = field(default=(), repr=False)

    @property
    def success_rate(self) -> float | None:
        return self.counters.success_rate

    def metric(self, name: str) -> float | None:
        """A per-step threshold metric (common.thresholds.STEP_METRICS); None without data."""
        c = self.counters
        if name in STEP_TIME_METRICS:
            section, key = STEP_TIME_METRICS[name]
            if not key:
                return self.avg_latency
            pct = self.latency if section == "latency_percentiles" else self.service_time
            return pct.get(key)
        if name == "success_rate":
            return c.success_rate
        if name == "error_rate":
            return 100.0 * (c.expected - c.met) / c.expected if c.expected else None
        if name == "timeouts":
            return float(c.timed_out)
        if name in STEP_COUNTERS:
            return float(getattr(c, name))
        raise ValueError(f"unknown step metric {name!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            **self.counters.to_json(),
            "success_rate": self.success_rate,
            "latency_percentiles": self.latency.to_json(),
            "service_time_percentiles": self.service_time.to_json(),
        }


@dataclass(frozen=True)
class ScenarioFigures:
    """One scenario of a conversation: messages no expect took, iterations run."""

    name: str
    unsolicited: int = 0
    iterations: int = 0
    #: the job's clients that run it (None: not known)
    clients: int | None = None

    def to_json(self) -> dict[str, int | None]:
        return {
            "unsolicited": self.unsolicited,
            "iterations": self.iterations,
            "clients": self.clients,
        }


__all__ = ["ScenarioFigures", "StepCounters", "StepFigures"]

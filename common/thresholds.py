"""Pass/fail thresholds: a tiny grammar, parsed and evaluated without I/O.

An expression is ``METRIC OP VALUE[UNIT]``, e.g. ``p99<50ms``,
``p95 <= 20ms``, ``success_rate>=99.9``, ``error_rate<0.1%``,
``connect_p99<200ms``, ``rps>=1000``, ``timeouts==0``.

Metrics and their units:

- latency (from the intended send time): ``p50 p90 p95 p99 p99.9 max avg``;
  service time: ``service_p50`` ... ``service_max``; connect time:
  ``connect_p50`` ... ``connect_max`` -- a time unit is required: ``us``,
  ``ms`` or ``s``;
- ``success_rate``, ``error_rate`` -- percent of sent messages answered /
  not answered (``%`` optional);
- ``rps`` -- replies per second over the run;
- ``timeouts``, ``errors``, ``connect_failures`` -- counts.

Parsing raises :class:`ThresholdError` naming the expression and the problem;
:meth:`Threshold.measure` reads the metric from a run's figures (:class:`Measured`).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from wsload.common.errors import WsloadError

_PERCENTILES = ("p50", "p90", "p95", "p99", "p99.9", "max")
_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_OPS: Mapping[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
}
_EXPR = re.compile(
    r"^\s*(?P<metric>[a-z_][a-z0-9_.]*)\s*(?P<op><=|>=|==|<|>)\s*"
    r"(?P<value>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>us|ms|s|%)?\s*$"
)


#: Most thresholds one run may have: each is evaluated every second of the run
#: (``--abort-on-fail``) and travels to every worker with the job.
MAX_THRESHOLDS = 1000


class Measured(Protocol):
    """A run's figures, read by metric name (``coordinator.summary.RunFigures``).

    The one accessor thresholds use: each metric maps to one typed figure
    there, and a figure with no data (a percentile of no samples, a rate of
    no messages) is None.
    """

    def metric(self, name: str) -> float | None: ...


class ThresholdError(WsloadError):
    """A threshold expression that cannot be understood."""


def _time_metrics() -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {"avg": ("avg_latency", "")}
    for key in _PERCENTILES:
        out[key] = ("latency_percentiles", key)
        out[f"service_{key}"] = ("service_time_percentiles", key)
        out[f"connect_{key}"] = ("connect_time_percentiles", key)
    return out


TIME_METRICS = _time_metrics()
PERCENT_METRICS = ("success_rate", "error_rate")
RATE_METRICS = ("rps",)
COUNT_METRICS = ("timeouts", "errors", "connect_failures")
METRICS = (*TIME_METRICS, *PERCENT_METRICS, *RATE_METRICS, *COUNT_METRICS)


@dataclass(frozen=True)
class Threshold:
    """One parsed expression; ``limit`` is in seconds, percent, per second or a count."""

    expr: str
    metric: str
    op: str
    limit: float

    def measure(self, run: Measured) -> float | None:
        """The metric's value in a run (same units as ``limit``); None without data."""
        return run.metric(self.metric)

    def passed(self, measured: float) -> bool:
        return _OPS[self.op](measured, self.limit)

    def failed_for_good(self, measured: float) -> bool:
        """Failed, and no later moment of the run can pass it: a count capped from above.

        Counts only grow, so ``timeouts==0`` or ``errors<5`` that fails now
        fails at the end; latencies and rates can still move either way.
        """
        capped = self.op in ("<", "<=", "==")
        return self.metric in COUNT_METRICS and capped and not self.passed(measured)

    def show(self, value: float) -> str:
        """``value`` in the unit the expression was written in."""
        if self.metric in TIME_METRICS:
            return f"{value * 1000:.3f} ms"
        if self.metric in PERCENT_METRICS:
            return f"{value:.3f}%"
        return f"{value:g}"


def parse_threshold(expr: str) -> Threshold:
    found = _EXPR.match(expr)
    if not found:
        raise ThresholdError(
            f"threshold {expr!r}: expected METRIC OP VALUE, e.g. p99<50ms or success_rate>=99.9"
        )
    metric, op, value, unit = found.group("metric", "op", "value", "unit")
    if metric not in METRICS:
        raise ThresholdError(
            f"threshold {expr!r}: unknown metric {metric!r} (known: {', '.join(METRICS)})"
        )
    limit = float(value)
    if metric in TIME_METRICS:
        if unit not in _TIME_UNITS:
            raise ThresholdError(f"threshold {expr!r}: {metric} needs a time unit: us, ms or s")
        limit *= _TIME_UNITS[unit]
    elif metric in PERCENT_METRICS:
        if unit not in (None, "%"):
            raise ThresholdError(f"threshold {expr!r}: {metric} is a percentage")
        if limit > 100:
            raise ThresholdError(f"threshold {expr!r}: a percentage cannot exceed 100")
    elif unit is not None:
        raise ThresholdError(f"threshold {expr!r}: {metric} takes a plain number, not {unit!r}")
    if not math.isfinite(limit):  # pragma: no cover - the regex admits digits only
        raise ThresholdError(f"threshold {expr!r}: the value must be finite")
    return Threshold(expr.strip(), metric, op, limit)


def threshold_problems(exprs: Sequence[str]) -> list[str]:
    """Every expression that does not parse, one line each, and the count bound."""
    if len(exprs) > MAX_THRESHOLDS:
        return [f"thresholds: {len(exprs):,} given, at most {MAX_THRESHOLDS:,}"]
    out: list[str] = []
    for expr in exprs:
        try:
            parse_threshold(expr)
        except ThresholdError as exc:
            out.append(str(exc))
    return out


__all__ = [
    "COUNT_METRICS",
    "MAX_THRESHOLDS",
    "METRICS",
    "Measured",
    "Threshold",
    "ThresholdError",
    "parse_threshold",
    "threshold_problems",
]

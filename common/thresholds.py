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
:meth:`Threshold.measure` reads the metric from a run summary.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from common.errors import WsloadError

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

    def measure(self, summary: Mapping[str, Any]) -> float:
        """The metric's value in a run summary (same units as ``limit``)."""
        m = self.metric
        if m in TIME_METRICS:
            section, key = TIME_METRICS[m]
            value = summary[section] if not key else summary[section][key]
            return float(value)
        sent = summary.get("total_sent", 0)
        unanswered = sent - summary.get("total_received", 0)
        if m == "success_rate":  # from the counts: 100 - x in floats is not exact
            return 100.0 * (sent - unanswered) / sent if sent else 0.0
        if m == "error_rate":
            return 100.0 * unanswered / sent if sent else 0.0
        if m == "rps":
            return float(summary["throughput"])
        if m == "timeouts":
            return float(summary["timed_out"])
        if m == "errors":
            return float(sum(summary["errors"].values()))
        return float(summary["counters"]["connect_failures"])

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


def evaluate(exprs: Sequence[str], summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each threshold with its measured value and verdict, for reports and exit codes."""
    out = []
    for expr in exprs:
        threshold = parse_threshold(expr)
        measured = threshold.measure(summary)
        out.append(
            {
                "threshold": threshold.expr,
                "measured": measured,
                "shown": threshold.show(measured),
                "passed": threshold.passed(measured),
            }
        )
    return out


__all__ = [
    "COUNT_METRICS",
    "MAX_THRESHOLDS",
    "METRICS",
    "Threshold",
    "ThresholdError",
    "evaluate",
    "parse_threshold",
    "threshold_problems",
]

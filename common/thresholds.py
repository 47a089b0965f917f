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

Per step of a conversation (an ``expect`` step, by its name):
``step.NAME.METRIC``, e.g. ``step.ack.p99<50ms``, ``step.login.success_rate>=99.9``,
``step.ack.timed_out==0``. METRIC is a latency or service-time metric above
(``p50`` ... ``max``, ``avg``, ``service_p50`` ... ``service_max``),
``success_rate``/``error_rate`` (percent of the step's expects begun that
were met / not met), or a count: ``expected``, ``met``, ``timed_out``
(also ``timeouts``), ``failed``, ``lost``, ``unanswered``. A name runs to
the last ``.METRIC`` before the operator, so it may hold spaces and dots
(``step.step 3.p99<50ms``); a name that holds an operator character or a
quote is written in double quotes: ``step."a<b".p99<50ms``. The names are
checked against the job's steps before the run (:func:`step_threshold_problems`).

Fan-out deliveries (a workload with ``[deliveries]``), over every topic:
``fanout.p50`` ... ``fanout.max``, ``fanout.avg`` (delivery latency, a time
unit required), ``fanout.delivery_rate`` (percent of the deliveries owed
that came), and counts ``fanout.missing``, ``fanout.duplicates``,
``fanout.out_of_order``, ``fanout.early``, ``fanout.extra``, e.g.
``fanout.p99<200ms``, ``fanout.missing==0``.

Parsing raises :class:`ThresholdError` naming the expression and the problem;
:meth:`Threshold.measure` reads the metric from a run's figures (:class:`Measured`).
"""

from __future__ import annotations

import difflib
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
#: The right-hand side of an expression: OP VALUE[UNIT].
_RHS = re.compile(
    r"^\s*(?P<op><=|>=|==|<|>)\s*(?P<value>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>us|ms|s|%)?\s*$"
)
#: How a per-step metric begins, and the characters an unquoted step name cannot hold.
STEP_PREFIX = "step."
_NAME_STOP = re.compile(r'[<>="]')


#: Most thresholds one run may have: each is evaluated every second of the run
#: (``--abort-on-fail``) and travels to every worker with the job.
MAX_THRESHOLDS = 1000


class Measured(Protocol):
    """A run's figures, read by metric name (``coordinator.summary.RunFigures``).

    The one accessor thresholds use: each metric maps to one typed figure
    there, and a figure with no data (a percentile of no samples, a rate of
    no messages) is None.
    """

    def metric(self, name: str, step: str | None = None) -> float | None: ...


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
#: Per-step metrics (``step.NAME.METRIC``): no connect time (a step has none).
STEP_TIME_METRICS = {k: v for k, v in TIME_METRICS.items() if not k.startswith("connect_")}
STEP_COUNT_METRICS = ("expected", "met", "timed_out", "timeouts", "failed", "lost", "unanswered")
STEP_METRICS = (*STEP_TIME_METRICS, *PERCENT_METRICS, *STEP_COUNT_METRICS)
#: Fan-out metrics: delivery latency (name -> percentile key, "" for the mean), rate, counts.
FANOUT_TIME_METRICS = {"fanout.avg": "", **{f"fanout.{k}": k for k in _PERCENTILES}}
FANOUT_PERCENT_METRICS = ("fanout.delivery_rate",)
FANOUT_COUNT_METRICS = tuple(
    f"fanout.{k}" for k in ("missing", "duplicates", "out_of_order", "early", "extra")
)
FANOUT_METRICS = (*FANOUT_TIME_METRICS, *FANOUT_PERCENT_METRICS, *FANOUT_COUNT_METRICS)
METRICS = (*TIME_METRICS, *PERCENT_METRICS, *RATE_METRICS, *COUNT_METRICS, *FANOUT_METRICS)
_ALL_TIME = (*TIME_METRICS, *FANOUT_TIME_METRICS)
_ALL_PERCENT = (*PERCENT_METRICS, *FANOUT_PERCENT_METRICS)
#: Longest step name a threshold may name (as on the wire).
MAX_STEP_NAME = 200


@dataclass(frozen=True)
class Threshold:
    """One parsed expression; ``limit`` is in seconds, percent, per second or a count."""

    expr: str
    metric: str
    op: str
    limit: float
    #: the step it measures (``step.NAME.METRIC``); None for a run-level metric
    step: str | None = None

    def measure(self, run: Measured) -> float | None:
        """The metric's value in a run (same units as ``limit``); None without data."""
        if self.step is None:
            return run.metric(self.metric)
        return run.metric(self.metric, self.step)

    @property
    def is_count(self) -> bool:
        """A count, which only grows over a run."""
        if self.step is not None:
            return self.metric in STEP_COUNT_METRICS
        return self.metric in COUNT_METRICS or self.metric in FANOUT_COUNT_METRICS

    def passed(self, measured: float) -> bool:
        return _OPS[self.op](measured, self.limit)

    def failed_for_good(self, measured: float) -> bool:
        """Failed, and no later moment of the run can pass it: a count capped from above.

        Counts only grow, so ``timeouts==0`` or ``errors<5`` that fails now
        fails at the end; latencies and rates can still move either way.
        """
        capped = self.op in ("<", "<=", "==")
        return self.is_count and capped and not self.passed(measured)

    def show(self, value: float) -> str:
        """``value`` in the unit the expression was written in."""
        if self.metric in _ALL_TIME:
            return f"{value * 1000:.3f} ms"
        if self.metric in _ALL_PERCENT:
            return f"{value:.3f}%"
        return f"{value:g}"


_SHAPE = "expected METRIC OP VALUE, e.g. p99<50ms or success_rate>=99.9"


def parse_threshold(expr: str) -> Threshold:
    if expr.lstrip().startswith(STEP_PREFIX):
        return _parse_step(expr)
    found = _EXPR.match(expr)
    if not found:
        raise ThresholdError(f"threshold {expr!r}: {_SHAPE}")
    metric, op, value, unit = found.group("metric", "op", "value", "unit")
    if metric not in METRICS:
        raise ThresholdError(
            f"threshold {expr!r}: unknown metric {metric!r} (known: {', '.join(METRICS)})"
        )
    return Threshold(expr.strip(), metric, op, _limit(expr, metric, value, unit))


#: The hint added when an unquoted step name seems to hold an operator or a quote.
QUOTE_HINT = """(quote a step name that holds < > = or ": step."a<b".p99<50ms)"""


def _parse_step(expr: str) -> Threshold:
    """``step.NAME.METRIC OP VALUE``; a failure says to quote the name when it needs it.

    An unquoted name ends at the first ``<``, ``>``, ``=`` or ``"``, so a name
    holding one of them reads as a malformed threshold: when such a character
    comes before the metric (``.p99<``), the problem adds how to quote it.
    """
    try:
        return _parse_step_text(expr)
    except ThresholdError as exc:
        rest = expr.lstrip()[len(STEP_PREFIX) :]
        if rest.startswith('"'):
            raise
        metrics = "|".join(re.escape(m) for m in _BY_LENGTH)
        found = list(re.finditer(rf"\.(?:{metrics})\s*[<>=!]", rest))
        head = rest[: found[-1].start()] if found else ""
        if not _NAME_STOP.search(head):
            raise
        raise ThresholdError(f"{exc} {QUOTE_HINT}") from None


def _parse_step_text(expr: str) -> Threshold:
    """``step.NAME.METRIC OP VALUE``: the name quoted, or up to the last ``.METRIC``."""
    rest = expr.lstrip()[len(STEP_PREFIX) :]
    shape = f"threshold {expr!r}: expected step.NAME.METRIC OP VALUE, e.g. step.ack.p99<50ms"
    if rest.startswith('"'):
        close = rest.find('"', 1)
        if close < 0:
            raise ThresholdError(f"threshold {expr!r}: the step name's quote is never closed")
        name, lhs = rest[1:close], rest[close + 1 :]
        stop = _NAME_STOP.search(lhs)
        if not lhs.startswith(".") or stop is None:
            raise ThresholdError(shape)
        metric, rhs = lhs[1 : stop.start()].strip(), lhs[stop.start() :]
    else:
        stop = _NAME_STOP.search(rest)
        if stop is None or rest[stop.start()] == '"':
            raise ThresholdError(shape)
        lhs, rhs = rest[: stop.start()].rstrip(), rest[stop.start() :]
        metric = next((m for m in _BY_LENGTH if lhs.endswith("." + m)), "")
        if "." not in lhs:
            raise ThresholdError(shape)
        if not metric:
            after = lhs.rsplit(".", 1)[-1]
            raise ThresholdError(
                f"threshold {expr!r}: unknown step metric {after!r} "
                f"(known: {', '.join(STEP_METRICS)})"
            )
        name = lhs[: -len(metric) - 1]
    name = name.strip()
    if not name:
        raise ThresholdError(f"threshold {expr!r}: the step name is empty")
    if len(name) > MAX_STEP_NAME:
        raise ThresholdError(
            f"threshold {expr!r}: a step name has at most {MAX_STEP_NAME} characters"
        )
    if metric not in STEP_METRICS:
        raise ThresholdError(
            f"threshold {expr!r}: unknown step metric {metric!r} (known: {', '.join(STEP_METRICS)})"
        )
    found = _RHS.match(rhs)
    if not found:
        raise ThresholdError(shape)
    op, value, unit = found.group("op", "value", "unit")
    return Threshold(expr.strip(), metric, op, _limit(expr, metric, value, unit), name)


#: Step metrics, longest first: ``p99.9`` must be tried before ``9`` could be.
_BY_LENGTH = sorted(STEP_METRICS, key=len, reverse=True)


def _limit(expr: str, metric: str, value: str, unit: str | None) -> float:
    """The limit in the metric's own unit (seconds, percent, count); the unit checked."""
    limit = float(value)
    if metric in _ALL_TIME:
        if unit not in _TIME_UNITS:
            raise ThresholdError(f"threshold {expr!r}: {metric} needs a time unit: us, ms or s")
        limit *= _TIME_UNITS[unit]
    elif metric in _ALL_PERCENT:
        if unit not in (None, "%"):
            raise ThresholdError(f"threshold {expr!r}: {metric} is a percentage")
        if limit > 100:
            raise ThresholdError(f"threshold {expr!r}: a percentage cannot exceed 100")
    elif unit is not None:
        raise ThresholdError(f"threshold {expr!r}: {metric} takes a plain number, not {unit!r}")
    if not math.isfinite(limit):  # pragma: no cover - the regex admits digits only
        raise ThresholdError(f"threshold {expr!r}: the value must be finite")
    return limit


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


def threshold_step_names(exprs: Sequence[str]) -> set[str]:
    """The step names the per-step thresholds among ``exprs`` measure (bad ones skipped)."""
    names: set[str] = set()
    for expr in exprs[:MAX_THRESHOLDS]:
        try:
            threshold = parse_threshold(expr)
        except ThresholdError:
            continue
        if threshold.step is not None:
            names.add(threshold.step)
    return names


def step_threshold_problems(exprs: Sequence[str], step_names: Sequence[str]) -> list[str]:
    """A line per threshold naming a step the job does not have, with a "did you mean".

    ``step_names`` are the job's ``expect`` step names (the metric names);
    a job without any (the echo load) has no step to measure.
    """
    known = list(dict.fromkeys(step_names))
    out: list[str] = []
    for expr in exprs[:MAX_THRESHOLDS]:
        try:
            threshold = parse_threshold(expr)
        except ThresholdError:
            continue
        name = threshold.step
        if name is None or name in known:
            continue
        if not known:
            none = "this job has no expect steps"
            out.append(f"threshold {threshold.expr!r}: no step named {name!r} ({none})")
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        shown = ", ".join(repr(k) for k in known[:10]) + (", ..." if len(known) > 10 else "")
        out.append(f"threshold {threshold.expr!r}: no step named {name!r} ({hint}steps: {shown})")
    return out


def fanout_threshold_problems(exprs: Sequence[str], has_deliveries: bool) -> list[str]:
    """A line per ``fanout.*`` threshold of a job whose workload has no ``[deliveries]``:
    it could only fail, with no data, at the end of the run."""
    if has_deliveries:
        return []
    out: list[str] = []
    for expr in exprs[:MAX_THRESHOLDS]:
        try:
            threshold = parse_threshold(expr)
        except ThresholdError:
            continue
        if threshold.metric in FANOUT_METRICS and threshold.step is None:
            out.append(
                f"threshold {threshold.expr!r}: this job has no [deliveries], "
                "so there is no fan-out to measure"
            )
    return out


__all__ = [
    "COUNT_METRICS",
    "FANOUT_COUNT_METRICS",
    "FANOUT_METRICS",
    "FANOUT_PERCENT_METRICS",
    "FANOUT_TIME_METRICS",
    "MAX_THRESHOLDS",
    "METRICS",
    "STEP_COUNT_METRICS",
    "STEP_METRICS",
    "STEP_PREFIX",
    "STEP_TIME_METRICS",
    "Measured",
    "Threshold",
    "ThresholdError",
    "fanout_threshold_problems",
    "parse_threshold",
    "step_threshold_problems",
    "threshold_problems",
    "threshold_step_names",
]

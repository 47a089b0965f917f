"""What a load run's figures mean: thresholds, "tested nothing", and the exit code.

One pure function, :func:`judge`, decides the outcome of a load run from its
summary, so ``wsload run``, ``wsload coordinator``, ``wsload test --load``
and the Python API (:class:`coordinator.load_tester.WebSocketLoadTester`)
agree on it. No sockets, no clock: the tests feed it summaries directly.

Exit codes (and :attr:`Verdict.code`):

- 0: the run completed, tested something, and every threshold passed;
- 1: it degraded (a worker was lost, the run was aborted), a threshold
  failed, or it tested nothing (no connection ever opened, no message sent,
  or messages sent and no reply ever received);
- 2: it could not run (a worker refused the job);
- 130: it was interrupted (Ctrl-C), 143 by SIGTERM; the partial figures are
  still reported.

A threshold on a value that has no data (a percentile of no samples, a
success rate of no messages) fails, shown as ``no data``: a rule that could
not be checked must not pass a CI job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from common.thresholds import COUNT_METRICS, PERCENT_METRICS, TIME_METRICS, parse_threshold

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_COULD_NOT_RUN = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

#: Shown for a value that was not measured (a percentile of no samples...).
NO_DATA = "no data"


@dataclass(frozen=True)
class Verdict:
    """How a run ended, why, and the exit code that says it.

    ``reasons`` are one line each, most important first; ``thresholds`` each
    threshold with ``measured`` (None without data), ``shown`` and ``passed``.
    """

    code: int
    status: str
    reasons: tuple[str, ...] = ()
    thresholds: tuple[dict[str, Any], ...] = ()

    @property
    def passed(self) -> bool:
        return self.code == EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "status": self.status, "reasons": list(self.reasons)}


def measure(expr: str, summary: Mapping[str, Any]) -> float | None:
    """A threshold's metric in ``summary``; None when there is nothing to measure."""
    threshold = parse_threshold(expr)
    metric = threshold.metric
    if metric in TIME_METRICS:
        section, key = TIME_METRICS[metric]
        value = summary.get(section) if not key else (summary.get(section) or {}).get(key)
        if value is None:
            return None
    elif metric in PERCENT_METRICS and not summary.get("total_sent"):
        return None
    return threshold.measure(summary)


def evaluate_thresholds(exprs: Sequence[str], summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each threshold with its measured value and verdict; no data fails."""
    out = []
    for expr in exprs:
        threshold = parse_threshold(expr)
        measured = measure(expr, summary)
        out.append(
            {
                "threshold": threshold.expr,
                "measured": measured,
                "shown": NO_DATA if measured is None else threshold.show(measured),
                "passed": measured is not None and threshold.passed(measured),
            }
        )
    return out


def target_name(url: str) -> str:
    """``host:port`` of a URL, never its credentials."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "the target"
    host = parts.hostname or "the target"
    if ":" in host:
        host = f"[{host}]"
    default = {"ws": 80, "wss": 443}.get(parts.scheme)
    return f"{host}:{port or default}" if (port or default) else host


def first_error(summary: Mapping[str, Any]) -> str:
    """The most frequent error kind with the first text a worker saw for it."""
    errors: Mapping[str, int] = summary.get("errors") or {}
    if not errors:
        return ""
    kind = max(errors, key=lambda k: errors[k])
    text = (summary.get("error_texts") or {}).get(kind)
    if text:
        return f"{kind}: {text}"
    return f"{kind} ({errors[kind]} times)" if errors[kind] > 1 else kind


def nothing_tested(summary: Mapping[str, Any], target: str) -> str | None:
    """Why a load run tested nothing, naming the target and the error; None if it did."""
    counters: Mapping[str, int] = summary.get("counters") or {}
    sent = int(summary.get("total_sent") or 0)
    received = int(summary.get("total_received") or 0)
    error = first_error(summary)
    because = f" ({error})" if error else ""
    if not counters.get("connects"):
        attempts = counters.get("connect_failures", 0)
        tried = f" after {attempts} attempts" if attempts else ""
        return f"nothing tested: no connection to {target} was ever opened{tried}{because}"
    if not sent:
        return f"nothing tested: connected to {target} but no message was sent{because}"
    if not received:
        return f"nothing tested: {sent} messages sent to {target}, no reply ever received{because}"
    return None


def judge(
    thresholds: Sequence[str],
    summary: Mapping[str, Any],
    *,
    target: str,
    refused: bool = False,
) -> Verdict:
    """The verdict of a load run from its summary (see the module docstring for codes).

    ``summary`` is the coordinator's summary dict (``total_sent``,
    ``counters``, ``errors``, ``lost_workers``, ``aborted``,
    ``interrupted``...); ``target`` names the target in the reasons.
    """
    results = tuple(evaluate_thresholds(thresholds, summary))
    reasons: list[str] = []
    if summary.get("aborted"):
        reasons.append(f"aborted: {summary['aborted']}")
    empty = nothing_tested(summary, target)
    if empty and not refused:
        reasons.append(empty)
    lost = summary.get("lost_workers") or []
    if lost:
        reasons.append(f"lost workers: {', '.join(lost)}")
    failed = [t for t in results if not t["passed"]]
    reasons += [f"threshold {t['threshold']} failed (measured {t['shown']})" for t in failed]
    if summary.get("interrupted"):
        # 128 + the signal, as a shell reports it: SIGTERM (timeout, Kubernetes) 143.
        code = EXIT_TERMINATED if summary.get("interrupted_by") == "SIGTERM" else EXIT_INTERRUPTED
        return Verdict(code, "interrupted", tuple(reasons), results)
    if refused:
        return Verdict(EXIT_COULD_NOT_RUN, "could not run", tuple(reasons), results)
    if empty or failed:
        return Verdict(EXIT_FAILED, "failed", tuple(reasons), results)
    if reasons:
        return Verdict(EXIT_FAILED, "degraded", tuple(reasons), results)
    return Verdict(EXIT_OK, "passed", (), results)


def doomed(thresholds: Sequence[str], totals: Mapping[str, int], errors: Mapping[str, int]) -> str:
    """A threshold the run can no longer pass (``--abort-on-fail``), as an abort reason.

    Only counts capped from above qualify (``timeouts==0``, ``errors<5``):
    counts only grow, while latencies and rates may still recover.
    """
    partial = {"timed_out": totals.get("timed_out", 0), "errors": errors, "counters": totals}
    for expr in thresholds:
        threshold = parse_threshold(expr)
        if threshold.metric in COUNT_METRICS:
            measured = threshold.measure(partial)
            if threshold.failed_for_good(measured):
                return f"threshold {threshold.expr} failed (measured {threshold.show(measured)})"
    return ""


__all__ = [
    "EXIT_COULD_NOT_RUN",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "NO_DATA",
    "Verdict",
    "doomed",
    "evaluate_thresholds",
    "first_error",
    "judge",
    "measure",
    "nothing_tested",
    "target_name",
]

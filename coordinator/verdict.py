"""What a load run's figures mean: thresholds, "tested nothing", and the exit code.

One pure function, :func:`judge`, decides the outcome of a load run from its
typed figures and ending (:mod:`wsload.coordinator.summary`), so ``wsload run``,
``wsload coordinator``, ``wsload test --load`` and the Python API
(:class:`wsload.coordinator.load_tester.WebSocketLoadTester`) agree on it. No
sockets, no clock: the tests feed it figures directly.

Exit codes (and :attr:`Verdict.code`):

- 0: the run completed, tested something, and every threshold passed;
- 1: it degraded (a worker was lost, the run was aborted), a threshold
  failed, or it tested nothing (no connection ever opened, no message sent
  and no answer awaited, or answers awaited and none ever came: in a
  conversation, expects begun and none met, or messages sent and no expect
  ever begun; with deliveries, subscribers that never received one), or,
  in a conversation, an ``expect`` step began and was never met
  (``step 'ack' never met: 6 timed out``: the rule "a run that tested
  nothing fails", per step);
- 2: it could not run (a worker refused the job);
- 130: it was interrupted (Ctrl-C), 143 by SIGTERM; the partial figures are
  still reported.

A step that never *began* (expected 0: its scenario had no clients, or the
run ended before any iteration reached it) is not a failure: nothing was
asked of the target there. The text summary says so and JUnit shows it
skipped; a per-step threshold on it fails with ``no data``, which is how a
run demands that the step be exercised.

A threshold on a value that has no data (a percentile of no samples, a
success rate of no messages) fails, shown as ``no data``: a rule that could
not be checked must not pass a CI job.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from wsload.common.thresholds import COUNT_METRICS, Measured, parse_threshold
from wsload.coordinator.fanout_figures import FanoutFigures
from wsload.coordinator.figures import (
    RunFigures,
    RunProgress,
    StepCounters,
    StepFigures,
    count_metric,
)
from wsload.coordinator.summary import RunEnding, ThresholdResult, Verdict

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_COULD_NOT_RUN = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
NO_DATA = "no data"
#: A run that ended as planned: nothing lost, aborted or interrupted.
NORMAL_END = RunEnding()


def measure(expr: str, run: Measured) -> float | None:
    """A threshold's metric in a run's figures; None when there is nothing to measure."""
    return parse_threshold(expr).measure(run)


def evaluate_thresholds(exprs: Sequence[str], run: Measured) -> list[ThresholdResult]:
    """Each threshold with its measured value and verdict; no data fails."""
    out = []
    for expr in exprs:
        threshold = parse_threshold(expr)
        measured = threshold.measure(run)
        out.append(
            ThresholdResult(
                threshold.expr,
                measured,
                NO_DATA if measured is None else threshold.show(measured),
                measured is not None and threshold.passed(measured),
            )
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


def first_error(figures: RunFigures) -> str:
    """The most frequent error kind with the first text a worker saw for it."""
    errors = figures.errors
    if not errors:
        return ""
    kind = max(errors, key=lambda k: errors[k])
    text = figures.error_texts.get(kind)
    if text:
        return f"{kind}: {text}"
    return f"{kind} ({errors[kind]} times)" if errors[kind] > 1 else kind


def nothing_tested(figures: RunFigures, target: str) -> str | None:
    """Why a load run tested nothing, naming the target and the error; None if it did."""
    c = figures.counters
    error = first_error(figures)
    because = f" ({error})" if error else ""
    if not c.connects:
        tried = f" after {c.connect_failures} attempts" if c.connect_failures else ""
        return f"nothing tested: no connection to {target} was ever opened{tried}{because}"
    fanout = figures.fanout if figures.fanout is not None and figures.fanout.active else None
    if fanout is not None and not fanout.total.deliveries:
        return f"nothing tested: {no_deliveries(fanout)}{because}"
    if fanout is not None and not c.expected:  # deliveries came: they were the test
        return None
    if not c.sent and not c.expected:
        return f"nothing tested: connected to {target} but no message was sent{because}"
    if c.sent and not c.expected:  # a conversation whose program awaits no answer
        why = "no expect step began" if figures.steps else "the scenario has no expect step"
        return (
            f"nothing tested: {c.sent} messages sent, but {why}, so no answer was checked{because}"
        )
    if c.expected and not c.received:
        if figures.steps:
            return (
                f"nothing tested: {c.expected} expects began against {target}, none was met"
                f" ({never_met_line(_begun_never_met(figures.steps)[0])}){because}"
            )
        return (
            f"nothing tested: {c.sent} messages sent to {target}, no reply ever received{because}"
        )
    return None


def no_deliveries(fanout: FanoutFigures) -> str:
    """Why a publish/subscribe run that received no delivery tested nothing, read right
    whether anything was published and whether anyone subscribed."""
    t = fanout.total
    if not t.subscriptions:
        return f"{t.published} publications made, but no subscription was made to receive them"
    if not t.published:
        return (
            f"nothing was published and none of the {t.subscriptions} subscriptions received"
            " a delivery"
        )
    never = unpublished_topics(fanout)
    return f"{t.published} publications made, but no subscriber received a delivery" + (
        f" ({t.subscriptions} subscriptions; never published: {', '.join(never)})"
        if never
        else f" ({t.subscriptions} subscriptions)"
    )


def unpublished_topics(fanout: FanoutFigures) -> list[str]:
    """Subscribed topics nothing was published to and nothing delivered on, in a run that
    published (a misspelt ``topics = ["news/flsh"]``): their subscriptions tested nothing."""
    if not fanout.total.published:
        return []
    return [
        t.name for t in fanout.topics if t.subscriptions and not t.published and not t.deliveries
    ]


def untested_parts(figures: RunFigures) -> list[str]:
    """Parts of a run that tested something elsewhere that themselves tested nothing.

    A ``[[scenarios]]`` entry whose clients never began an iteration (never
    connected, or the protocol's handshake never completed) while another
    scenario's did; subscribers none of whose topics was ever published
    while other subscribers got deliveries. Each fails the run as "nothing
    tested", named: the parts that worked must not pass it for them.
    """
    lines: list[str] = []
    ran = [s for s in figures.scenarios if s.iterations]
    if ran:
        errors = _errors_line(figures)
        for s in figures.scenarios:
            if s.iterations or not s.clients:
                continue
            lines.append(
                f"nothing tested in scenario {s.name!r}: its {_count(s.clients, 'client')}"
                " never began an iteration (never connected, the protocol's handshake never"
                " completed, or the run ended before its first)"
                + (f"; the run's errors: {errors}" if errors else "; no error was counted")
            )
    fanout = figures.fanout
    if (
        fanout is not None
        and fanout.total.published  # wsload published: a topic nothing was published to
        and fanout.total.deliveries
        and fanout.unfed_subscribers
    ):
        never = unpublished_topics(fanout)
        published = [t.name for t in fanout.topics if t.published][:5]
        lines.append(
            f"nothing tested for {_count(fanout.unfed_subscribers, 'subscriber')}: none of"
            f" their topics was ever published (never published: {', '.join(never) or '?'};"
            f" published: {', '.join(published)})"
        )
    return lines


def _count(n: int, noun: str) -> str:
    """``1 client``, ``2 clients``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _errors_line(figures: RunFigures) -> str:
    """The run's error kinds, most frequent first (at most 3), the first with its text."""
    errors = sorted(figures.errors.items(), key=lambda kv: -kv[1])[:3]
    if not errors:
        return ""
    parts = [f"{kind} ({n} times)" if n > 1 else kind for kind, n in errors]
    text = figures.error_texts.get(errors[0][0])
    if text:
        parts[0] += f", e.g. {text}"
    more = len(figures.errors) - len(errors)
    return "; ".join(parts) + (f" and {more} more kinds" if more > 0 else "")


def _begun_never_met(steps: Sequence[StepFigures]) -> list[StepFigures]:
    """The steps (in the workload's order) that began and were never met; the first step
    when none did (counts from a worker that reported run totals without steps)."""
    begun = [s for s in steps if s.counters.expected and not s.counters.met]
    return begun or list(steps[:1])


def never_met_line(step: StepFigures) -> str:
    """``step 'ack' never met: 6 timed out``: a step never met and how its expects ended."""
    c = step.counters
    how = ", ".join(
        f"{n} {k.replace('_', ' ')}"
        for k, n in (("timed_out", c.timed_out), ("failed", c.failed), ("lost", c.lost),
                     ("unanswered", c.unanswered)) if n
    )  # fmt: skip
    return f"step {step.name!r} never met" + (f": {how}" if how else "")


def never_met(figures: RunFigures) -> list[str]:
    """One line per ``expect`` step that began (expected > 0) and was never met.

    Each fails the run: a step never met tested nothing of the target's
    answer to it, even when other steps passed. A step that never began is
    not among them (module docstring).
    """
    return [never_met_line(s) for s in figures.steps if s.counters.expected and not s.counters.met]


def never_began(figures: RunFigures) -> list[str]:
    """The names of the ``expect`` steps no client ever reached (expected 0): not judged."""
    return [s.name for s in figures.steps if not s.counters.expected]


def judge(
    thresholds: Sequence[str],
    figures: RunFigures,
    ending: RunEnding = NORMAL_END,
    *,
    target: str,
) -> Verdict:
    """The verdict of a load run from its figures and how it ended (codes: module docstring).

    ``target`` names the target in the reasons.
    """
    results = tuple(evaluate_thresholds(thresholds, figures))
    reasons: list[str] = []
    if ending.aborted:
        reasons.append(f"aborted: {ending.aborted}")
    empty = nothing_tested(figures, target) if not ending.refused else None
    if empty:
        reasons.append(empty)
    # Per scenario and per subscriber, when the rest of the run tested something.
    parts = [] if ending.refused or empty else untested_parts(figures)
    reasons += parts
    # Per step, as "nothing tested" for the run; the one that line names is not said twice.
    steps_never_met = [] if ending.refused else never_met(figures)
    reasons += [line for line in steps_never_met if not (empty and line in empty)]
    if ending.lost_workers:
        reasons.append(f"lost workers: {', '.join(ending.lost_workers)}")
    failed = [t for t in results if not t.passed]
    reasons += [
        f"threshold {t.threshold} failed (measured {t.shown})"
        for t in failed
        if not aborted_by(ending.aborted, t.threshold)  # said once, as the abort
    ]
    if ending.interrupted:
        # 128 + the signal, as a shell reports it: SIGTERM (timeout, Kubernetes) 143.
        code = EXIT_TERMINATED if ending.interrupted_by == "SIGTERM" else EXIT_INTERRUPTED
        return Verdict(code, "interrupted", tuple(reasons), results)
    if ending.refused:
        return Verdict(EXIT_COULD_NOT_RUN, "could not run", tuple(reasons), results)
    if empty or parts or failed or steps_never_met:
        return Verdict(EXIT_FAILED, "failed", tuple(reasons), results)
    if reasons:
        return Verdict(EXIT_FAILED, "degraded", tuple(reasons), results)
    return Verdict(EXIT_OK, "passed", (), results)


def doomed(thresholds: Sequence[str], progress: RunProgress) -> str:
    """A threshold the run can no longer pass (``--abort-on-fail``), as an abort reason.

    Only counts capped from above qualify (``timeouts==0``, ``errors<5``,
    per step ``step.ack.timed_out==0``): counts only grow, while latencies
    and rates may still recover. The reason says when the abort was decided
    and what was measured *then* (``threshold timeouts==0 failed at 3.2 s
    (measured 10 then)``): the run goes on draining after it, so the final
    table may show a larger count for the same threshold.
    """
    for expr in thresholds:
        threshold = parse_threshold(expr)
        if threshold.step is not None and threshold.is_count:
            counters = progress.steps.get(threshold.step, StepCounters())
            metric = "timed_out" if threshold.metric == "timeouts" else threshold.metric
            measured = float(getattr(counters, metric))
        elif threshold.step is None and threshold.metric in COUNT_METRICS:
            measured = count_metric(threshold.metric, progress.counters, progress.error_count)
        else:
            continue
        if threshold.failed_for_good(measured):
            return (
                f"threshold {threshold.expr} failed at {progress.elapsed:.1f} s"
                f" (measured {threshold.show(measured)} then)"
            )
    return ""


def aborted_by(aborted: str, threshold: str) -> bool:
    """Was the run aborted (:func:`doomed`) for this threshold? Then it is said once."""
    return aborted.startswith(f"threshold {threshold} failed at ")


__all__ = [
    "EXIT_COULD_NOT_RUN",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "NO_DATA",
    "ThresholdResult",
    "Verdict",
    "aborted_by",
    "doomed",
    "evaluate_thresholds",
    "first_error",
    "judge",
    "measure",
    "never_began",
    "never_met",
    "never_met_line",
    "no_deliveries",
    "nothing_tested",
    "target_name",
    "unpublished_topics",
    "untested_parts",
]

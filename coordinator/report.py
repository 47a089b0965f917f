"""Human-readable output of a run: progress lines and the final summary table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wsload.coordinator.fanout_report import fanout_lines
from wsload.coordinator.figures import (
    PERCENTILE_KEYS,
    Counters,
    Percentiles,
    RunProgress,
    StepFigures,
)
from wsload.coordinator.summary import RunSummary
from wsload.coordinator.verdict import never_began


def ms(seconds: float | None) -> str:
    """Seconds as milliseconds; ``-`` for a value not measured (no samples)."""
    return "-" if seconds is None else f"{seconds * 1000:.2f} ms"


def _per_s(rate: float, elapsed: float) -> str:
    """A rate over the run; ``-`` over no time at all (no value, not 0)."""
    return f"{rate:.1f}" if elapsed > 0 else "-"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}%"


def _clients(p: RunProgress) -> str:
    """Clients connected on live workers; a lost worker's clients are named apart."""
    lost = p.clients_on_lost_workers
    return f"{p.clients_connected}" + (f" (+{lost} on lost workers)" if lost else "")


def _answered(p: RunProgress) -> str:
    """What ``received`` counts: replies for the echo load, expects met in a conversation
    (its messages are not replies: a push or a late answer meets nothing)."""
    return "expects met" if p.conversation else "received"


def progress_line(p: RunProgress, duration: float) -> str:
    """One line per second for logs: where the run is and how it is doing."""
    c = p.counters
    newest = p.newest_second.latency.p99 if p.newest_second else None
    p99 = "" if newest is None else f"  p99 {ms(newest)}"
    got = f"{c.received} of {c.expected}" if p.conversation else f"{c.received}"
    return (
        f"[{min(p.elapsed, duration):5.1f}/{duration:g} s] clients {_clients(p)}"
        f"  sent {c.sent}  {_answered(p)} {got}  timed out {c.timed_out}"
        f"  errors {p.error_count}{p99}"
        + (f"  reconnects {c.reconnects}" if c.reconnects else "")
        + (f"  LOST WORKERS {p.workers_lost}" if p.workers_lost else "")
    )


def live_lines(p: RunProgress, duration: float, target: int) -> list[str]:
    """The one-screen live view: run so far, the last full second, errors, workers."""
    c = p.counters
    last = p.last_second
    sent_s = last.counters.sent if last else 0
    recv_s = last.counters.received if last else 0
    window = _three(last.latency) if last else "-"
    errors = ", ".join(f"{k} {v}" for k, v in p.errors[:6]) or "none"
    lost = p.workers_lost
    got = _answered(p)
    return [
        f"wsload  {min(p.elapsed, duration):6.1f} / {duration:g} s   "
        f"clients {_clients(p)} / {target}"
        + (f"   reconnects {c.reconnects}" if c.reconnects else ""),
        f"  last second   sent {sent_s}/s  {got} {recv_s}/s   latency {window}",
        f"  whole run     sent {c.sent}  {got} {c.received}  timed out {c.timed_out}"
        f"   latency {_three(p.latency)}",
        f"  errors        {errors}",
        f"  workers       {p.workers_up} up" + (f", {lost} LOST" if lost else ""),
    ]


def _three(pct: Percentiles) -> str:
    """p50, p95, p99 of a latency; ``-`` without samples."""
    if pct.p50 is None:
        return "-"
    return "  ".join(f"{k} {ms(pct.get(k))}" for k in ("p50", "p95", "p99"))


class LiveView:
    """Redraws :func:`live_lines` in place on a terminal, once a second."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._drawn = 0

    def draw(self, lines: list[str]) -> None:
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self._write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self._drawn = len(lines)


def format_summary(summary: RunSummary) -> str:
    """The final table: the verdict line first, the original framework's four figures, the rest.

    The first line says how the run ended and, when it is not a pass, why
    (``wsload: FAILED: nothing tested: no connection to svc:9000 ...``).
    """
    f, end, verdict = summary.figures, summary.ending, summary.verdict
    c = f.counters
    headline = f"wsload: {verdict.status.upper()}"
    if verdict.reasons:
        headline += ": " + "; ".join(verdict.reasons)
    elif end.interrupted:
        headline = "wsload: INTERRUPTED"
    lines = [
        headline,
        "wsload summary" + ("  (INTERRUPTED)" if end.interrupted else ""),
        *(_conversation_head(summary) if f.conversation else _echo_head(summary)),
        _connections_line(c),
        f"  Generator: {c.behind_schedule} behind schedule, {c.write_pauses} write pauses, "
        f"{c.cpu_ms / 1000:.1f} s worker CPU",
    ]
    if f.generator_bound:
        lines.append(f"  GENERATOR-BOUND (the figures show wsload's limit): {f.generator_bound}")
    lines += ["", "  percentile      latency    service time    connect time"]
    for key in PERCENTILE_KEYS:
        lat, svc, con = (p.get(key) for p in (f.latency, f.service_time, f.connect_time))
        lines.append(f"  {key:<8} {ms(lat):>14} {ms(svc):>15} {ms(con):>15}")
    if f.steps:
        lines += ["", *step_table(f.steps)]
        lines += [
            f"  step {name!r} never began: no client reached it (not judged)"
            for name in never_began(f)
        ]
    if f.fanout is not None and f.fanout.active:
        lines += ["", *fanout_lines(f.fanout)]
    for sc in f.scenarios:
        lines.append(
            f"  scenario {sc.name}: {sc.iterations} iterations, {sc.unsolicited} unsolicited"
        )
    if f.errors:
        lines += ["", "  errors by kind:"]
        for kind, count in f.errors.items():
            text = f"   e.g. {f.error_texts[kind]}" if kind in f.error_texts else ""
            lines.append(f"    {kind:<24} {count}{text}")
    lines.append("")
    lines.append(
        "  worker                          sent    received   timed out      lost   status"
    )
    for w in f.workers:
        wc = w.counters
        lines.append(
            f"  {w.worker_id:<28} {wc.sent:>8} {wc.received:>11} "
            f"{wc.timed_out:>11} {wc.lost:>9}   {w.status}"
        )
    if end.lost_workers:
        lines.append(f"  lost workers: {', '.join(end.lost_workers)}")
    handed: dict[tuple[str, str], int] = {}
    for h in end.handovers:
        handed[(h.origin, h.to)] = handed.get((h.origin, h.to), 0) + h.clients
    for (origin, taker), clients in handed.items():
        lines.append(f"  {clients} clients of {origin} handed on to {taker}")
    if end.clients_orphaned:
        lines.append(f"  {end.clients_orphaned} clients of lost workers ran nowhere")
    if verdict.thresholds:
        lines.append("")
        lines.append("  threshold                       measured          result")
        for t in verdict.thresholds:
            result = "PASS" if t.passed else "FAIL"
            lines.append(f"  {t.threshold:<30} {t.shown:>16}    {result}")
    if end.aborted:
        lines.append(f"  aborted: {end.aborted}")
    return "\n".join(lines)


def _connections_line(c: Counters) -> str:
    """Connections: opened (reconnects among them), failed attempts, and those that ended
    other than by wsload's own close (the server's close, a reset, a protocol failure)."""
    return (
        f"  Connections:             {c.connects} opened ({c.reconnects} reconnects), "
        f"{c.connect_failures} failed to open, {c.disconnects} closed not by wsload"
    )


def _echo_head(summary: RunSummary) -> list[str]:
    """The echo load's counts: a message sent awaits its reply (the original framework's)."""
    f = summary.figures
    c = f.counters
    return [
        f"  Total messages sent:     {c.sent}",
        f"  Total messages received: {c.received}",
        f"  Answers awaited:         {c.expected}",
        f"  Success rate:            {_pct(f.success_rate)}",
        f"  Average latency:         {ms(f.avg_latency)}",
        f"  Timed out / failed / lost / unanswered at stop: "
        f"{c.timed_out} / {c.failed} / {c.lost} / {c.unanswered}",
        f"  Unsolicited (pushed, not replies): {c.unsolicited}"
        f"   late or duplicate replies: {c.late}",
        f"  Throughput:              {_per_s(f.throughput, f.elapsed)} replies/s"
        f" over {f.elapsed:.1f} s"
        f" (client engine: {summary.parameters.engine})",
    ]


def _conversation_head(summary: RunSummary) -> list[str]:
    """A conversation's counts: its run-level ``received`` counts expects *met*, not messages.

    Every message a client receives either meets the expect it waits for,
    fails it (its ``fail`` matcher, or a capture missing from it), is late
    (the reply to an expect that timed out) or is unsolicited, so the
    messages received are the sum of the four.
    """
    f = summary.figures
    c = f.counters
    arrived = c.received + c.failed + c.unsolicited + c.late
    return [
        f"  Messages sent:           {c.sent}",
        f"  Messages received:       {arrived} ({c.received} met an expect, "
        f"{c.failed} failed one, {c.unsolicited} unsolicited, {c.late} late)",
        f"  Expects begun:           {c.expected}",
        f"  Expects met:             {c.received}",
        f"  Success rate:            {_pct(f.success_rate)}"
        + ("" if f.success_rate is None else " of expects begun"),
        f"  Average latency:         {ms(f.avg_latency)} (expects met, from the due time)",
        f"  Timed out / failed / lost / unanswered at stop: "
        f"{c.timed_out} / {c.failed} / {c.lost} / {c.unanswered}",
        f"  Throughput:              {_per_s(f.throughput, f.elapsed)} expects met/s"
        f" over {f.elapsed:.1f} s"
        f" (client engine: {summary.parameters.engine})",
    ]


#: The per-step table's columns after the name: (heading, width).
_STEP_COLUMNS = (("expected", 9), ("met", 9), ("timed out", 10), ("failed", 7), ("lost", 7),
                 ("unanswered", 11), ("p50", 12), ("p99", 12))  # fmt: skip
#: The widest step name column (a longer name is cut, with an ellipsis).
_STEP_NAME_WIDTH = 32


def step_table(steps: tuple[StepFigures, ...]) -> list[str]:
    """A conversation's ``expect`` steps: counts and latency (from the due time) per step."""
    width = min(_STEP_NAME_WIDTH, max(4, *(len(s.name) for s in steps)))
    head = f"  {'step':<{width}}" + "".join(f" {h:>{w}}" for h, w in _STEP_COLUMNS)
    lines = [head]
    for s in steps:
        name = s.name if len(s.name) <= width else s.name[: width - 1] + "…"
        c = s.counters
        cells = (c.expected, c.met, c.timed_out, c.failed, c.lost, c.unanswered,
                 ms(s.latency.p50), ms(s.latency.p99))  # fmt: skip
        lines.append(
            f"  {name:<{width}}"
            + "".join(f" {v!s:>{w}}" for v, (_, w) in zip(cells, _STEP_COLUMNS, strict=True))
        )
    return lines


def format_checks(summary: dict[str, Any]) -> str:
    """A functional-mode result: one line per check, then the tally (and event figures)."""
    lines = [f"{summary['mode']} checks (worker {summary.get('worker') or '-'})"]
    checks = summary.get("checks", [])
    for c in checks:
        took = f"{c['duration'] * 1000:.1f} ms"
        lines.append(f"  {c['status'].upper():<5} {c['name']:<40} {took:>10}  {c['reason']}")
    tally = {s: sum(1 for c in checks if c["status"] == s) for s in ("pass", "fail", "skip")}
    lines.append(f"  {tally['pass']} passed, {tally['fail']} failed, {tally['skip']} skipped")
    if summary["mode"] == "event" and "total_expected" in summary:
        lat = summary["latency_percentiles"]
        lines += [
            f"  Expected events: {summary['total_expected']}",
            f"  Received events: {summary['total_received']}",
            f"  Success rate:    {_pct(summary['success_rate'])}",
            f"  duplicates {summary['duplicates']}, out of order {summary['out_of_order']}, "
            f"delivery latency p50 {ms(lat['p50'])}, p99 {ms(lat['p99'])}, max {ms(lat['max'])}",
        ]
        if summary["missing_count"]:
            shown = summary["missing"][:20]
            more = summary["missing_count"] - len(shown)
            lines.append("  missing: " + ", ".join(shown) + (f" and {more} more" if more else ""))
    if not summary.get("worker") or summary.get("lost_workers"):
        lines.append("  the worker running the checks was lost")
    return "\n".join(lines)

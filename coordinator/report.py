"""Human-readable output of a run: progress lines and the final summary table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from coordinator.aggregate import RunAggregate


def ms(seconds: float | None) -> str:
    """Seconds as milliseconds; ``-`` for a value not measured (no samples)."""
    return "-" if seconds is None else f"{seconds * 1000:.2f} ms"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}%"


def _clients(agg: RunAggregate) -> str:
    """Clients connected on live workers; a lost worker's clients are named apart."""
    live, lost = agg.clients_connected()
    return f"{live}" + (f" (+{lost} on lost workers)" if lost else "")


def progress_line(agg: RunAggregate, elapsed: float, duration: float) -> str:
    """One line per second for logs: where the run is and how it is doing."""
    t = agg.totals()
    last = agg.seconds.get(max(agg.seconds)) if agg.seconds else None
    p99 = ""
    if last is not None and last.latency is not None and last.latency.count:
        p99 = f"  p99 {ms(last.latency.value_at_percentile(99) / 1e6)}"
    lost = sum(1 for w in agg.workers.values() if w.lost)
    return (
        f"[{min(elapsed, duration):5.1f}/{duration:g} s] clients {_clients(agg)}"
        f"  sent {t['sent']}  received {t['received']}  timed out {t['timed_out']}"
        f"  errors {sum(agg.errors().values())}{p99}" + (f"  LOST WORKERS {lost}" if lost else "")
    )


def live_lines(agg: RunAggregate, elapsed: float, duration: float, target: int) -> list[str]:
    """The one-screen live view: run so far, the last full second, errors, workers."""
    t = agg.totals()
    last = agg.seconds.get(int(elapsed) - 1) if elapsed >= 1 else None
    sent_s = last.counters.get("sent", 0) if last else 0
    recv_s = last.counters.get("received", 0) if last else 0
    window = "-"
    if last is not None and last.latency is not None and last.latency.count:
        window = _three(last.latency.percentiles())
    run = "-"
    if agg.latency.count:
        run = _three(agg.latency.percentiles())
    errors = ", ".join(f"{k} {v}" for k, v in list(agg.errors().items())[:6]) or "none"
    up = sum(1 for w in agg.workers.values() if not w.lost)
    lost = len(agg.workers) - up
    return [
        f"wsload  {min(elapsed, duration):6.1f} / {duration:g} s   "
        f"clients {_clients(agg)} / {target}",
        f"  last second   sent {sent_s}/s  received {recv_s}/s   latency {window}",
        f"  whole run     sent {t['sent']}  received {t['received']}  timed out {t['timed_out']}"
        f"   latency {run}",
        f"  errors        {errors}",
        f"  workers       {up} up" + (f", {lost} LOST" if lost else ""),
    ]


def _three(pct_us: dict[str, int]) -> str:
    return "  ".join(f"{k} {ms(pct_us[k] / 1e6)}" for k in ("p50", "p95", "p99"))


class LiveView:
    """Redraws :func:`live_lines` in place on a terminal, once a second."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._drawn = 0

    def draw(self, lines: list[str]) -> None:
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self._write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self._drawn = len(lines)


def format_summary(summary: dict[str, Any]) -> str:
    """The final table: the verdict line first, the original framework's four figures, the rest.

    The first line says how the run ended and, when it is not a pass, why
    (``wsload: FAILED: nothing tested: no connection to svc:9000 ...``).
    """
    lat = summary["latency_percentiles"]
    svc = summary["service_time_percentiles"]
    con = summary["connect_time_percentiles"]
    verdict = summary.get("verdict") or {}
    headline = f"wsload: {str(verdict.get('status', 'done')).upper()}"
    if verdict.get("reasons"):
        headline += ": " + "; ".join(verdict["reasons"])
    elif summary.get("interrupted"):
        headline = "wsload: INTERRUPTED"
    avg = summary["avg_latency"]
    lines = [
        headline,
        "wsload summary" + ("  (INTERRUPTED)" if summary.get("interrupted") else ""),
        f"  Total messages sent:     {summary['total_sent']}",
        f"  Total messages received: {summary['total_received']}",
        f"  Success rate:            {_pct(summary['success_rate'])}",
        f"  Average latency:         {'-' if avg is None else f'{avg:.4f}s'}",
        f"  Timed out / lost / unanswered at stop: "
        f"{summary['timed_out']} / {summary['lost']} / {summary['unanswered']}",
        f"  Unsolicited (pushed, not replies): {summary.get('unsolicited', 0)}"
        f"   late or duplicate replies: {summary.get('late', 0)}",
        f"  Throughput:              {summary['throughput']:.1f} replies/s over "
        f"{summary['elapsed']:.1f} s"
        + (f" (client engine: {summary['engine']})" if "engine" in summary else ""),
        f"  Generator: {summary.get('behind_schedule', 0)} behind schedule, "
        f"{summary.get('write_pauses', 0)} write pauses, "
        f"{summary.get('cpu_ms', 0) / 1000:.1f} s worker CPU",
    ]
    bound = summary.get("generator_bound")
    if bound:
        lines.append(f"  GENERATOR-BOUND (the figures show wsload's limit): {bound['reason']}")
    lines += ["", "  percentile      latency    service time    connect time"]
    for key in ("p50", "p90", "p95", "p99", "p99.9", "max"):
        lines.append(f"  {key:<8} {ms(lat[key]):>14} {ms(svc[key]):>15} {ms(con[key]):>15}")
    if summary["errors"]:
        texts = summary.get("error_texts") or {}
        lines.append("")
        lines.append("  errors by kind:")
        for kind, count in summary["errors"].items():
            text = f"   e.g. {texts[kind]}" if kind in texts else ""
            lines.append(f"    {kind:<24} {count}{text}")
    lines.append("")
    lines.append(
        "  worker                          sent    received   timed out      lost   status"
    )
    for worker_id, w in summary["workers"].items():
        lines.append(
            f"  {worker_id:<28} {w['sent']:>8} {w['received']:>11} "
            f"{w['timed_out']:>11} {w['lost']:>9}   {w['status']}"
        )
    if summary.get("lost_workers"):
        lines.append(f"  lost workers: {', '.join(summary['lost_workers'])}")
    handed: dict[tuple[str, str], int] = {}
    for h in summary.get("handovers") or ():
        handed[(h["from"], h["to"])] = handed.get((h["from"], h["to"]), 0) + h["clients"]
    for (origin, taker), clients in handed.items():
        lines.append(f"  {clients} clients of {origin} handed on to {taker}")
    if summary.get("clients_orphaned"):
        lines.append(f"  {summary['clients_orphaned']} clients of lost workers ran nowhere")
    if summary.get("thresholds"):
        lines.append("")
        lines.append("  threshold                       measured          result")
        for t in summary["thresholds"]:
            result = "PASS" if t["passed"] else "FAIL"
            lines.append(f"  {t['threshold']:<30} {t['shown']:>16}    {result}")
    if summary.get("aborted"):
        lines.append(f"  aborted: {summary['aborted']}")
    return "\n".join(lines)


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

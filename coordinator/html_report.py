"""``--html PATH``: one self-contained report page that works offline.

Charts are drawn by matplotlib (a well-kept plotting library, no JavaScript,
no CDN) and embedded as inline SVG, so the file opens anywhere, prints, and
can be attached to a CI run as is. matplotlib is imported only when a report
is asked for.
"""

from __future__ import annotations

import html
import io
import math
from typing import Any

from wsload.coordinator.fanout_report import fanout_html
from wsload.coordinator.figures import RunFigures
from wsload.coordinator.summary import RunSummary


def _figure(draw: Any, title: str, ylabel: str, xlabel: str = "seconds into the run") -> str:
    import matplotlib

    matplotlib.use("svg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2))
    try:
        draw(ax)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize="small")
        fig.tight_layout()
        out = io.StringIO()
        fig.savefig(out, format="svg")
    finally:
        plt.close(fig)
    svg = out.getvalue()
    return svg[svg.index("<svg") :]  # drop the XML prolog: the SVG is inline


def _distribution(ax: Any, points: tuple[tuple[float, float], ...], label: str) -> None:
    if not points:
        ax.text(0.5, 0.5, "no samples", ha="center", transform=ax.transAxes)
        return
    # x: "nines" scale, so the tail gets the room it deserves.
    xs = [1 / (1 - p / 100) if p < 100 else 1e6 for p, _ in points]
    ys = [seconds * 1000 for _, seconds in points]
    ax.plot(xs, ys, label=label)
    ax.set_xscale("log")
    ticks = [1, 2, 10, 100, 1000, 1e4, 1e5]
    ax.set_xticks(ticks, ["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"])


#: Most steps one chart draws a line for (the table lists every step).
MAX_CHART_STEPS = 10


def step_charts(figures: RunFigures) -> list[str]:
    """A conversation's charts: each step's latency distribution, each step met per second."""
    steps = figures.steps[:MAX_CHART_STEPS]
    if not steps:
        return []
    series = figures.time_series
    t = [row.second + 1 for row in series]

    def distributions(ax: Any) -> None:
        drawn = [s for s in steps if s.latency_distribution]
        if not drawn:
            _distribution(ax, (), "")
        for s in drawn:
            _distribution(ax, s.latency_distribution, s.name)

    def met(ax: Any) -> None:
        for s in steps:
            ax.plot(t, [row.steps[s.name].met if s.name in row.steps else 0 for row in series],
                    label=s.name)  # fmt: skip

    return [
        _figure(distributions, "Latency distribution per step (from the due time)", "ms",
                "percentile"),
        _figure(met, "Steps met over time", "per second"),
    ]  # fmt: skip


def charts(figures: RunFigures) -> list[str]:
    """The report's SVG charts, in page order."""
    series = figures.time_series
    t = [row.second + 1 for row in series]

    def latency(ax: Any) -> None:
        for key in ("p50", "p95", "p99"):
            ax.plot(t, [_nan(row.latency.get(key)) for row in series], label=key)

    def throughput(ax: Any) -> None:
        ax.plot(t, [row.counters.sent for row in series], label="sent")
        ax.plot(t, [row.counters.received for row in series], label="received")

    def errors(ax: Any) -> None:
        ax.bar(t, [sum(row.errors.values()) for row in series], label="errors")
        ax.plot(t, [row.counters.timed_out for row in series], color="C3", label="timed out")

    return [
        _figure(latency, "Latency over time (from intended send)", "ms"),
        _figure(throughput, "Throughput over time", "messages per second"),
        _figure(
            lambda ax: _distribution(ax, figures.latency_distribution, "latency"),
            "Latency distribution",
            "ms",
            "percentile",
        ),
        _figure(
            lambda ax: _distribution(ax, figures.connect_distribution, "connect time"),
            "Connect time distribution",
            "ms",
            "percentile",
        ),
        _figure(errors, "Errors over time", "per second"),
    ]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.3f} ms"


def _nan(value: float | None) -> float:
    """A chart point: a second with no samples is a gap, not a zero."""
    return math.nan if value is None else value * 1000


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STEP_HEADERS = ["step", "expected", "met", "timed out", "failed", "lost", "unanswered",
                "success rate", "latency p50", "latency p99", "service time p99"]  # fmt: skip


def step_rows(f: RunFigures) -> list[list[Any]]:
    """One row per ``expect`` step: its counts and latencies."""
    rows: list[list[Any]] = []
    for s in f.steps:
        c, rate = s.counters, s.success_rate
        rows.append([s.name, c.expected, c.met, c.timed_out, c.failed, c.lost, c.unanswered,
                     "-" if rate is None else f"{rate:.2f}%", _ms(s.latency.p50),
                     _ms(s.latency.p99), _ms(s.service_time.p99)])  # fmt: skip
    return rows


def render(summary: RunSummary) -> str:
    """The whole page: the verdict first, then parameters, figures, charts, workers.

    The target shows no credentials and secret headers show as ``***``
    (:func:`wsload.coordinator.loadrun.parameters`).
    """
    run, f, verdict = summary.parameters, summary.figures, summary.verdict
    c = f.counters
    params: list[list[Any]] = [
        ["target", run.target],
        ["clients", run.clients],
        ["client engine", run.engine],
        ["duration", f"{run.duration:g} s"],
        ["send model", f"{run.rate:g} msg/s in total" if run.rate else
         ("closed loop" if run.interval == 0 else f"every {run.interval:g} s per client")],
        ["ramp-up", f"{run.ramp_up:g} s"],
        ["workers", len(f.workers)],
        ["started", run.started_at],
        *[[f"header {k}", v] for k, v in run.headers],
        ["wsload", run.wsload_version],
    ]  # fmt: skip
    rate = f.success_rate
    figures: list[list[Any]] = [
        ["sent", c.sent],
        ["received", c.received],
        ["success rate", "-" if rate is None else f"{rate:.2f}%"],
        ["answers awaited", c.expected],
        [
            "timed out / failed / lost / unanswered",
            f"{c.timed_out} / {c.failed} / {c.lost} / {c.unanswered}",
        ],
        ["unsolicited (pushed, not replies)", c.unsolicited],
        ["behind schedule / write pauses", f"{c.behind_schedule} / {c.write_pauses}"],
        ["throughput", f"{f.throughput:.1f} replies/s"],
        *[[f"latency {k}", _ms(v)] for k, v in f.latency.to_json().items()],
    ]
    if f.generator_bound:
        figures.append(["generator-bound", f.generator_bound])
    thresholds = [
        [t.threshold, t.shown, "PASS" if t.passed else "FAIL"] for t in verdict.thresholds
    ]
    workers = [
        [w.worker_id, w.counters.sent, w.counters.received, w.counters.timed_out,
         w.counters.lost, w.status]
        for w in f.workers
    ]  # fmt: skip
    errors = [[kind, count, f.error_texts.get(kind, "")] for kind, count in f.errors.items()]
    status = verdict.status.upper()
    parts = [f'<p class="verdict">{html.escape(status)}</p>']
    parts += [f"<p>{html.escape(reason)}</p>" for reason in verdict.reasons]
    parts += [
        "<h2>Run</h2>",
        _table(["parameter", "value"], params),
        "<h2>Results</h2>",
        _table(["figure", "value"], figures),
    ]
    if thresholds:
        parts += ["<h2>Thresholds</h2>", _table(["threshold", "measured", "result"], thresholds)]
    if f.steps:
        parts += ["<h2>Steps</h2>", _table(STEP_HEADERS, step_rows(f))]
    if f.fanout is not None and f.fanout.active:
        parts.append(fanout_html(f.fanout))
    if f.scenarios:
        scenarios = [[sc.name, sc.iterations, sc.unsolicited] for sc in f.scenarios]
        parts += ["<h2>Scenarios</h2>",
                  _table(["scenario", "iterations", "unsolicited"], scenarios)]  # fmt: skip
    parts += [f'<figure class="chart">{svg}</figure>' for svg in charts(f) + step_charts(f)]
    parts += ["<h2>Errors by kind</h2>",
              _table(["kind", "count", "first seen"], errors or [["none", 0, ""]])]  # fmt: skip
    parts += ["<h2>Workers</h2>",
              _table(["worker", "sent", "received", "timed out", "lost", "status"],
                     workers)]  # fmt: skip
    return PAGE.format(title=html.escape(f"wsload report {run.target} {status}".strip()),
                       body="\n".join(parts))  # fmt: skip


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="icon" href="data:,">
<style>
  body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2rem; max-width: 62rem; }}
  table {{ border-collapse: collapse; margin-bottom: 1rem; }}
  td, th {{ border: 1px solid #ccc; padding: .2rem .6rem; text-align: left; }}
  figure.chart {{ margin: 1rem 0; }}
  figure.chart svg {{ max-width: 100%; height: auto; }}
</style>
</head>
<body>
<h1>{title}</h1>
{body}
</body>
</html>
"""

__all__ = ["charts", "render", "step_charts", "step_rows"]

"""``--html PATH``: one self-contained report page that works offline.

Charts are drawn by matplotlib (a well-kept plotting library, no JavaScript,
no CDN) and embedded as inline SVG, so the file opens anywhere, prints, and
can be attached to a CI run as is. matplotlib is imported only when a report
is asked for.
"""

from __future__ import annotations

import html
import io
import time
from typing import Any

from common.histogram import LatencyHistogram
from common.spec import JobSpec
from coordinator.aggregate import RunAggregate

#: Percentiles plotted in the distribution charts: 0 .. 99.999, denser in the tail.
DISTRIBUTION = [p / 10 for p in range(0, 900, 10)] + [90 + i * 0.5 for i in range(20)] + [
    99.5, 99.9, 99.95, 99.99, 99.999, 100.0
]  # fmt: skip


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


def _distribution(ax: Any, hist: LatencyHistogram, label: str) -> None:
    if not hist.count:
        ax.text(0.5, 0.5, "no samples", ha="center", transform=ax.transAxes)
        return
    # x: "nines" scale, so the tail gets the room it deserves.
    xs = [1 / (1 - p / 100) if p < 100 else 1e6 for p in DISTRIBUTION]
    ys = [hist.value_at_percentile(p) / 1000 for p in DISTRIBUTION]
    ax.plot(xs, ys, label=label)
    ax.set_xscale("log")
    ticks = [1, 2, 10, 100, 1000, 1e4, 1e5]
    ax.set_xticks(ticks, ["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"])


def charts(agg: RunAggregate) -> list[str]:
    """The report's SVG charts, in page order."""
    series = agg.time_series()
    t = [row["second"] + 1 for row in series]

    def latency(ax: Any) -> None:
        for key in ("p50", "p95", "p99"):
            ax.plot(t, [row.get(key, 0.0) * 1000 for row in series], label=key)

    def throughput(ax: Any) -> None:
        ax.plot(t, [row.get("sent", 0) for row in series], label="sent")
        ax.plot(t, [row.get("received", 0) for row in series], label="received")

    def errors(ax: Any) -> None:
        ax.bar(t, [sum(row.get("errors", {}).values()) for row in series], label="errors")
        ax.plot(t, [row.get("timed_out", 0) for row in series], color="C3", label="timed out")

    return [
        _figure(latency, "Latency over time (from intended send)", "ms"),
        _figure(throughput, "Throughput over time", "messages per second"),
        _figure(
            lambda ax: _distribution(ax, agg.latency, "latency"),
            "Latency distribution",
            "ms",
            "percentile",
        ),
        _figure(
            lambda ax: _distribution(ax, agg.connect, "connect time"),
            "Connect time distribution",
            "ms",
            "percentile",
        ),
        _figure(errors, "Errors over time", "per second"),
    ]


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render(spec: JobSpec, summary: dict[str, Any], agg: RunAggregate) -> str:
    """The whole page."""
    params: list[list[Any]] = [
        ["target", spec.ws_url],
        ["clients", spec.num_clients],
        ["client engine", spec.client_engine],
        ["duration", f"{spec.duration:g} s"],
        ["send model", f"{spec.rate:g} msg/s in total" if spec.rate else
         ("closed loop" if spec.interval == 0 else f"every {spec.interval:g} s per client")],
        ["ramp-up", f"{spec.ramp_up:g} s"],
        ["workers", len(summary["workers"])],
        ["started", time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(agg.started_at))],
    ]  # fmt: skip
    figures: list[list[Any]] = [
        ["sent", summary["total_sent"]],
        ["received", summary["total_received"]],
        ["success rate", f"{summary['success_rate']:.2f}%"],
        ["timed out / lost / unanswered",
         f"{summary['timed_out']} / {summary['lost']} / {summary['unanswered']}"],
        ["throughput", f"{summary['throughput']:.1f} replies/s"],
        *[[f"latency {k}", f"{v * 1000:.3f} ms"] for k, v in
          summary["latency_percentiles"].items()],
    ]  # fmt: skip
    thresholds = [
        [t["threshold"], t["shown"], "PASS" if t["passed"] else "FAIL"]
        for t in summary.get("thresholds", [])
    ]
    workers = [
        [wid, w.get("sent", 0), w.get("received", 0), w.get("timed_out", 0),
         "LOST" if w["lost"] else ("ok" if w["consistent"] else "inconsistent")]
        for wid, w in summary["workers"].items()
    ]  # fmt: skip
    errors = [[kind, count] for kind, count in summary["errors"].items()]
    parts = [
        "<h2>Run</h2>",
        _table(["parameter", "value"], params),
        "<h2>Results</h2>",
        _table(["figure", "value"], figures),
    ]
    if thresholds:
        parts += ["<h2>Thresholds</h2>", _table(["threshold", "measured", "result"], thresholds)]
    parts += [f'<figure class="chart">{svg}</figure>' for svg in charts(agg)]
    parts += ["<h2>Errors by kind</h2>", _table(["kind", "count"], errors or [["none", 0]])]
    parts += ["<h2>Workers</h2>", _table(["worker", "sent", "received", "timed out", "status"],
                                         workers)]  # fmt: skip
    verdict = "INTERRUPTED" if summary.get("interrupted") else ""
    return PAGE.format(title=html.escape(f"wsload report {spec.ws_url} {verdict}".strip()),
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

__all__ = ["charts", "render"]

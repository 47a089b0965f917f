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
import time
from typing import Any

from common.histogram import LatencyHistogram
from common.spec import JobSpec
from common.validation import display_url, redact_headers
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
            ax.plot(t, [_nan(row.get(key)) for row in series], label=key)

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


def render(spec: JobSpec, summary: dict[str, Any], agg: RunAggregate) -> str:
    """The whole page: the verdict first, then parameters, figures, charts, workers.

    The target shows no credentials and secret headers show as ``***``
    (:func:`coordinator.loadrun.parameters` made ``summary["parameters"]``).
    """
    run = summary.get("parameters") or {}
    target = run.get("target") or display_url(spec.ws_url)
    params: list[list[Any]] = [
        ["target", target],
        ["clients", spec.num_clients],
        ["client engine", spec.client_engine],
        ["duration", f"{spec.duration:g} s"],
        ["send model", f"{spec.rate:g} msg/s in total" if spec.rate else
         ("closed loop" if spec.interval == 0 else f"every {spec.interval:g} s per client")],
        ["ramp-up", f"{spec.ramp_up:g} s"],
        ["workers", len(summary["workers"])],
        ["started", time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(agg.started_at))],
        *[[f"header {k}", v] for k, v in redact_headers(spec.headers)],
        ["wsload", run.get("wsload_version", "")],
    ]  # fmt: skip
    rate = summary["success_rate"]
    figures: list[list[Any]] = [
        ["sent", summary["total_sent"]],
        ["received", summary["total_received"]],
        ["success rate", "-" if rate is None else f"{rate:.2f}%"],
        ["timed out / lost / unanswered",
         f"{summary['timed_out']} / {summary['lost']} / {summary['unanswered']}"],
        ["unsolicited (pushed, not replies)", summary.get("unsolicited", 0)],
        ["behind schedule / write pauses",
         f"{summary.get('behind_schedule', 0)} / {summary.get('write_pauses', 0)}"],
        ["throughput", f"{summary['throughput']:.1f} replies/s"],
        *[[f"latency {k}", _ms(v)] for k, v in summary["latency_percentiles"].items()],
    ]  # fmt: skip
    bound = summary.get("generator_bound")
    if bound:
        figures.append(["generator-bound", bound["reason"]])
    thresholds = [
        [t["threshold"], t["shown"], "PASS" if t["passed"] else "FAIL"]
        for t in summary.get("thresholds", [])
    ]
    workers = [
        [wid, w["sent"], w["received"], w["timed_out"], w["lost"], w["status"]]
        for wid, w in summary["workers"].items()
    ]
    texts = summary.get("error_texts") or {}
    errors = [[kind, count, texts.get(kind, "")] for kind, count in summary["errors"].items()]
    verdict = summary.get("verdict") or {}
    status = str(verdict.get("status", "done")).upper()
    parts = [f'<p class="verdict">{html.escape(status)}</p>']
    parts += [f"<p>{html.escape(reason)}</p>" for reason in verdict.get("reasons", [])]
    parts += [
        "<h2>Run</h2>",
        _table(["parameter", "value"], params),
        "<h2>Results</h2>",
        _table(["figure", "value"], figures),
    ]
    if thresholds:
        parts += ["<h2>Thresholds</h2>", _table(["threshold", "measured", "result"], thresholds)]
    parts += [f'<figure class="chart">{svg}</figure>' for svg in charts(agg)]
    parts += ["<h2>Errors by kind</h2>",
              _table(["kind", "count", "first seen"], errors or [["none", 0, ""]])]  # fmt: skip
    parts += ["<h2>Workers</h2>",
              _table(["worker", "sent", "received", "timed out", "lost", "status"],
                     workers)]  # fmt: skip
    return PAGE.format(title=html.escape(f"wsload report {target} {status}".strip()),
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

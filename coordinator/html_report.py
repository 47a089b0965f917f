"""The run's page: one interactive report, live (``--dashboard``) and frozen (``--html``).

:func:`page_document` turns the typed :class:`~wsload.coordinator.summary.RunSummary`
into the one JSON document the page draws from; :func:`page_html` wraps a
document in the page. The live dashboard (:mod:`wsload.coordinator.dashboard`)
serves that page and the document of the run so far once a second; ``--html``
writes the same page with the final document embedded, so the report and
the dashboard cannot drift apart.

The page is self-contained and works offline: its charts are drawn by uPlot
(:data:`CHART_LIBRARY`), a well-kept chart library whose distribution file
from the npm registry is vendored in ``report_page/`` with its license and
inlined; nothing is fetched from anywhere. Every figure reaches the page as
JSON and is put in the DOM as text, never as markup, so an error text from a
hostile target cannot script the report.
"""

from __future__ import annotations

import functools
import json
import math
from importlib.resources import files
from typing import Any

from wsload.coordinator.fanout_figures import DeliveryFigures, FanoutFigures
from wsload.coordinator.fanout_report import MAX_LISTED, clock_line, unpublished_note
from wsload.coordinator.figures import RunFigures
from wsload.coordinator.summary import RunParameters, RunSummary

#: The vendored chart library: npm package, version, license (report_page/uPlot.LICENSE).
CHART_LIBRARY = ("uplot", "1.6.32", "MIT")
#: Most steps one chart draws a line for (the table lists every step).
MAX_CHART_STEPS = 10
#: Most error kinds the errors-over-time chart draws (the table lists every kind).
MAX_CHART_KINDS = 8
#: Counters the page shows (its tiles and tables), as the JSON names them.
TOTALS = ("sent", "received", "expected", "timed_out", "failed", "lost", "unanswered", "late",
          "unsolicited", "behind_schedule", "write_pauses", "connects", "connect_failures",
          "reconnects", "disconnects")  # fmt: skip
WORKER_COUNTS = ("sent", "received", "timed_out", "lost")


@functools.cache
def _asset(name: str) -> str:
    return files("wsload.coordinator").joinpath("report_page", name).read_text(encoding="utf-8")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None or not math.isfinite(seconds) else seconds * 1000


def _percentiles_ms(values: dict[str, float | None]) -> dict[str, float | None]:
    return {k: _ms(v) for k, v in values.items()}


def _distribution(points: tuple[tuple[float, float], ...]) -> list[list[float | None]]:
    return [[p, _ms(s)] for p, s in points]


def parameter_rows(run: RunParameters, workers: int) -> list[list[str]]:
    """The run's parameters as (label, value) text; secret headers already show as ``***``."""
    if run.rate:
        model = f"{run.rate:g} msg/s in total"
    elif run.interval == 0:
        model = "closed loop"
    else:
        model = f"every {run.interval:g} s per client" if run.interval else "-"
    rows = [
        ["target", run.target],
        ["clients", str(run.clients)],
        ["client engine", run.engine],
        ["duration", f"{run.duration:g} s"],
        ["send model", model],
        ["ramp-up", f"{run.ramp_up:g} s"],
        ["workers", str(workers)],
        ["started", run.started_at],
    ]
    if run.scenario:
        rows.append(["scenario", run.scenario])
    if run.stages:
        rows.append(["stages", ", ".join(f"{k} {v}" for k, v in run.stages.items())])
    if run.feeder:
        rows.append(["feeder", ", ".join(f"{k} {v}" for k, v in run.feeder.items())])
    rows += [[f"header {k}", v] for k, v in run.headers]
    rows.append(["wsload", run.wsload_version])
    return rows


def _series(f: RunFigures) -> dict[str, Any]:
    """Per-second columns for the charts: counts per second, latency in ms, connections.

    Connections are a gauge sent as deltas: the series adds them up from where
    the run stood before its first row (live figures carry the newest seconds only).
    """
    rows = f.time_series
    connected = f.counters.clients_connected - sum(r.counters.clients_connected for r in rows)
    connections: list[int] = []
    for r in rows:
        connected += r.counters.clients_connected
        connections.append(connected)
    kinds = list(f.errors)[:MAX_CHART_KINDS]
    return {
        "t": [r.second + 1 for r in rows],
        "sent": [r.counters.sent for r in rows],
        "received": [r.counters.received for r in rows],
        "timed_out": [r.counters.timed_out for r in rows],
        "errors": [sum(r.errors.values()) for r in rows],
        "connected": connections,
        "connects": [r.counters.connects for r in rows],
        "disconnects": [r.counters.disconnects for r in rows],
        "reconnects": [r.counters.reconnects for r in rows],
        "latency": {k: [_ms(r.latency.get(k)) for r in rows] for k in ("p50", "p95", "p99", "max")},
        "error_kinds": kinds,
        "errors_by_kind": [[r.errors.get(k, 0) for r in rows] for k in kinds],
        "steps_met": [
            [r.steps[s.name].met if s.name in r.steps else 0 for r in rows]
            for s in f.steps[:MAX_CHART_STEPS]
        ],
    }


def _delivery(d: DeliveryFigures) -> dict[str, Any]:
    return {"name": d.name, **d.to_json(), "latency_ms": _percentiles_ms(d.latency.to_json())}


def _fanout(fanout: FanoutFigures | None) -> dict[str, Any] | None:
    if fanout is None or not fanout.active:
        return None
    rows = [*fanout.topics[:MAX_LISTED]]
    return {
        "total": _delivery(fanout.total),
        "topics": [_delivery(r) for r in rows],
        "more_topics": max(0, len(fanout.topics) - MAX_LISTED),
        # (with the note naming subscribed topics never published, when there are)
        "clock": "; ".join(filter(None, (clock_line(fanout.clock), unpublished_note(fanout)))),
        "missing_sample": [m.to_json() for m in fanout.missing_sample],
        "distribution": _distribution(fanout.total.latency_distribution),
    }


def page_document(summary: RunSummary, *, live: bool = False) -> dict[str, Any]:
    """The page's data: everything it shows, from the typed summary (JSON-ready).

    ``live``: the run is still going (the dashboard): the banner says so
    instead of a verdict, the thresholds are judged on the run so far, and
    the time series is what the live figures carry (their newest seconds:
    :data:`wsload.coordinator.aggregate.LIVE_SECONDS`). Times are in
    milliseconds (``*_ms``) for the charts; ``totals`` keep the JSON's units.
    """
    run, f, verdict = summary.parameters, summary.figures, summary.verdict
    c = f.counters
    series = _series(f)
    return {
        "live": live,
        "elapsed": f.elapsed,
        "duration": run.duration,
        "target": run.target,
        "verdict": {
            "status": "running" if live else verdict.status,
            "code": None if live else verdict.code,
            "reasons": [] if live else list(verdict.reasons),
        },
        "parameters": parameter_rows(run, len(f.workers)),
        "conversation": f.conversation,
        "totals": {
            **c.to_json(TOTALS),
            "errors": f.error_count,
            "success_rate": f.success_rate,
            "throughput": f.throughput,
            "send_rate": f.send_rate,
            "clients_connected": series["connected"][-1] if series["connected"] else 0,
            "peak_connected": max(series["connected"], default=0),
            "avg_latency": f.avg_latency,
        },
        "latency": f.latency.to_json(),
        "service_time": f.service_time.to_json(),
        "connect_time": f.connect_time.to_json(),
        "generator_bound": f.generator_bound,
        "series": series,
        "distributions": {
            "latency": _distribution(f.latency_distribution),
            "connect": _distribution(f.connect_distribution),
        },
        "thresholds": [
            {"threshold": t.threshold, "shown": t.shown, "passed": t.passed}
            for t in verdict.thresholds
        ],
        "errors": [
            {"kind": k, "count": n, "text": f.error_texts.get(k, "")} for k, n in f.errors.items()
        ],
        "steps": [
            {
                "name": s.name,
                **s.counters.to_json(),
                "success_rate": s.success_rate,
                "latency": s.latency.to_json(),
                "service_time": s.service_time.to_json(),
                "distribution": _distribution(s.latency_distribution),
            }
            for s in f.steps
        ],
        "scenarios": [sc.to_json() | {"name": sc.name} for sc in f.scenarios],
        "fanout": _fanout(f.fanout),
        "workers": [
            {"id": w.worker_id, **w.counters.to_json(WORKER_COUNTS), "status": w.status}
            for w in f.workers
        ],
    }


def document_json(doc: dict[str, Any] | None) -> str:
    """The document as JSON that is safe inside a ``<script>`` element (no ``<``)."""
    return json.dumps(doc, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c")


def page_html(doc: dict[str, Any] | None, *, data_url: str = "") -> str:
    """The page with ``doc`` embedded; with ``data_url`` it polls that address each second.

    ``doc`` None: the run has not reported yet (the dashboard before its first second).
    """
    name, version, license_name = CHART_LIBRARY
    title = "wsload report" if doc is None else f"wsload {doc['target']}"
    status = "" if doc is None else str(doc["verdict"]["status"]).upper()
    return (
        _asset("page.html")
        .replace("{{TITLE}}", _text(f"{title} {status}".strip()))
        .replace("{{NOSCRIPT}}", _text(status or "waiting"))
        .replace("{{LIBRARY}}", f"{name} {version} ({license_name} License)")
        .replace("{{LICENSE}}", _asset("uPlot.LICENSE").replace("--", "- -"))
        .replace("{{UPLOT_CSS}}", _asset("uPlot.min.css"))
        .replace("{{PAGE_CSS}}", _asset("page.css"))
        .replace("{{UPLOT_JS}}", _asset("uPlot.iife.min.js").replace("</", "<\\/"))
        .replace("{{DATA_URL}}", json.dumps(data_url).replace("<", "\\u003c"))
        .replace("{{PAGE_JS}}", _asset("page.js"))
        .replace("{{DATA}}", document_json(doc))
    )


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render(summary: RunSummary) -> str:
    """``--html``: the dashboard's page, frozen on the run's final document."""
    return page_html(page_document(summary))


__all__ = [
    "CHART_LIBRARY",
    "MAX_CHART_KINDS",
    "MAX_CHART_STEPS",
    "document_json",
    "page_document",
    "page_html",
    "parameter_rows",
    "render",
]

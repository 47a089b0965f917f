"""``--otlp URL``: the run's metrics pushed over OTLP/HTTP (protobuf), a thin shell.

The OpenTelemetry SDK is an optional extra (``pip install 'wsload[otel]'``):
:func:`otel_problem` says, before anything starts, that it is missing.
The families of :mod:`wsload.coordinator.metrics` become the SDK's own
metric data (cumulative sums, gauges and explicit-bucket histograms, the
same buckets as Prometheus') and go out through its OTLP/HTTP exporter: no
instrument records anything twice, so what the collector receives is what
``/metrics`` shows and, after the last push, what ``--json`` holds.

Pushes run on a thread (the exporter is blocking) with the exporter's own
timeout; a push that fails is said once on the run's log, never raised: a
collector that is down costs its metrics, not the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from wsload.common import __version__
from wsload.coordinator.metrics import BUCKETS, Family
from wsload.coordinator.metrics_options import OTEL_MISSING, PUSH_TIMEOUT

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics.export import MetricsData


def otel_problem() -> str | None:
    """Why ``--otlp`` cannot work here (the optional SDK missing), or None."""
    try:
        import opentelemetry.exporter.otlp.proto.http.metric_exporter
        import opentelemetry.sdk.metrics.export  # noqa: F401
    except ImportError:
        return OTEL_MISSING
    return None


def metrics_data(fams: Sequence[Family], start_ns: int, now_ns: int) -> MetricsData:
    """``fams`` as the SDK's metric data, cumulative from ``start_ns``."""
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        Gauge,
        Histogram,
        HistogramDataPoint,
        Metric,
        MetricsData,
        NumberDataPoint,
        ResourceMetrics,
        ScopeMetrics,
        Sum,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    cumulative = AggregationTemporality.CUMULATIVE
    metrics = []
    for fam in fams:
        spec = fam.spec

        def attrs(label: str | None, name: str | None = spec.label) -> dict[str, str]:
            return {name: label} if name is not None and label is not None else {}

        data: Any
        if spec.kind == "histogram":
            points = [
                HistogramDataPoint(
                    attrs(label),
                    start_ns,
                    now_ns,
                    h.count,
                    h.sum,
                    list(h.per_bucket),
                    list(BUCKETS),
                    h.min,
                    h.max,
                )
                for label, h in fam.histograms
            ]
            data = Histogram(points, cumulative)
        else:
            numbers = [
                NumberDataPoint(attrs(label), start_ns, now_ns, value)
                for label, value in fam.samples
            ]
            if spec.kind == "counter":
                data = Sum(numbers, cumulative, is_monotonic=True)
            else:
                data = Gauge(numbers)
        metrics.append(Metric(spec.otel_name, spec.help, spec.unit or "1", data))
    scope = InstrumentationScope("wsload", __version__)
    resource = Resource.create({"service.name": "wsload", "service.version": __version__})
    return MetricsData([ResourceMetrics(resource, [ScopeMetrics(scope, metrics, "")], "")])


class OtlpPusher:
    """Pushes metric data to one OTLP/HTTP endpoint; blocking, run on a thread."""

    def __init__(self, endpoint: str, on_log: Any) -> None:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        # The exporter logs each failure with a traceback; the run says it once instead.
        logging.getLogger("opentelemetry.exporter.otlp").setLevel(logging.CRITICAL)
        self.endpoint = endpoint
        self._exporter = OTLPMetricExporter(endpoint=endpoint, timeout=PUSH_TIMEOUT)
        self._on_log = on_log
        self.failures = 0
        self.pushes = 0

    def push(self, fams: Sequence[Family], start_ns: int) -> bool:
        """Export ``fams`` once; False (said once on the log) when it failed."""
        from opentelemetry.sdk.metrics.export import MetricExportResult

        try:
            result = self._exporter.export(metrics_data(fams, start_ns, time.time_ns()))
            ok = result is MetricExportResult.SUCCESS
        except Exception as exc:  # the exporter's transport: any error is a failed push
            ok, why = False, f"{type(exc).__name__}: {exc}"
        else:
            why = "the collector refused it or could not be reached"
        if ok:
            self.pushes += 1
        else:
            self.failures += 1
            if self.failures == 1:
                self._on_log(f"otlp: push to {self.endpoint} failed ({why}); will keep trying")
        return ok

    def close(self) -> None:
        self._exporter.shutdown()


__all__ = ["OtlpPusher", "metrics_data", "otel_problem"]

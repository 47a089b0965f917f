"""The live-metrics flags of ``wsload run`` and ``wsload coordinator``, in one place.

:data:`METRICS_KEYS` are the parameters :func:`metrics_cli_options` adds;
:func:`metrics_options` turns them into a
:class:`~wsload.coordinator.metrics_options.MetricsOptions`. Their problems
(:func:`wsload.coordinator.metrics_http.metrics_problems`) are reported with
the job's, before anything starts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import click

from wsload.common.params import FiniteFloat
from wsload.coordinator.metrics_options import MAX_LINGER, OTLP_INTERVAL, MetricsOptions

METRICS_KEYS = ("metrics_port", "metrics_host", "metrics_public", "metrics_linger", "otlp")


def metrics_cli_options() -> list[Callable[[Any], Any]]:
    """The click options, outermost first."""
    return [
        click.option(
            "--metrics-port",
            type=click.IntRange(0, 65535),
            default=None,
            help="Serve Prometheus metrics at http://HOST:PORT/metrics while the run lasts "
            "(0: any free port; the address is printed, unless --quiet). A port in use is "
            "refused before the run.",
        ),
        click.option(
            "--metrics-host",
            default="127.0.0.1",
            show_default=True,
            help="Address /metrics listens on. One that is not loopback needs --metrics-public.",
        ),
        click.option(
            "--metrics-public",
            is_flag=True,
            help="Allow a non-loopback --metrics-host: anyone who reaches it reads the run's "
            "figures (step and topic names included).",
        ),
        click.option(
            "--metrics-linger",
            type=FiniteFloat(min=0, max=MAX_LINGER),
            default=0.0,
            show_default=True,
            help="Seconds /metrics stays up after the run, holding the final figures, so "
            "the last scrape sees them (Ctrl-C ends the wait).",
        ),
        click.option(
            "--otlp",
            metavar="URL",
            help="Push OpenTelemetry metrics over OTLP/HTTP to URL (a collector's "
            f"http://HOST:4318; /v1/metrics is added to a URL with no path) every "
            f"{OTLP_INTERVAL:g} s and at the end. Needs pip install 'wsload[otel]'.",
        ),
    ]


def metrics_options(run: Mapping[str, Any]) -> MetricsOptions:
    """The run's metrics options from the command's parameters."""
    return MetricsOptions(
        port=run.get("metrics_port"),
        host=run.get("metrics_host") or "127.0.0.1",
        public=bool(run.get("metrics_public")),
        linger=float(run.get("metrics_linger") or 0.0),
        otlp_url=run.get("otlp"),
    )


__all__ = ["METRICS_KEYS", "metrics_cli_options", "metrics_options"]

"""Where a run's live metrics go, and the checks made before the run (sans-I/O).

``--metrics-port``/``--metrics-host``/``--metrics-public``/``--metrics-linger``
and ``--otlp`` become one :class:`MetricsOptions`; :func:`host_problem` and
:func:`otlp_endpoint` say what is wrong with them, one line each, so the
command refuses bad input (exit 2) before any process starts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

#: The one-line reason --otlp is refused without the optional SDK.
OTEL_MISSING = "--otlp needs the OpenTelemetry SDK, an optional extra: pip install 'wsload[otel]'"
#: Seconds between OTLP pushes while the run lasts (one more at its end).
OTLP_INTERVAL = 5.0
#: Seconds one OTLP push may take (the exporter's timeout, retries included).
PUSH_TIMEOUT = 5.0
#: Longest --metrics-linger: a run's end should not wait on a scraper for long.
MAX_LINGER = 600.0


@dataclass(frozen=True)
class MetricsOptions:
    """Where the run's metrics go: ``/metrics`` on ``host:port``, OTLP to ``otlp_url``."""

    port: int | None = None
    host: str = "127.0.0.1"
    #: serve a non-loopback host (``--metrics-public``)
    public: bool = False
    #: seconds /metrics stays up after the run, holding the final figures
    linger: float = 0.0
    otlp_url: str | None = None
    otlp_interval: float = OTLP_INTERVAL

    @property
    def active(self) -> bool:
        return self.port is not None or self.otlp_url is not None


def host_problem(host: str, addresses: Iterable[str], public: bool) -> str | None:
    """Why ``/metrics`` must not listen on ``host`` (resolved to ``addresses``), or None.

    Safe by default, like the job port: the figures name the run's steps and
    topics, and a scraper from anywhere is a stranger's choice, so anything
    not shown to be loopback needs ``--metrics-public``.
    """
    addrs = list(addresses)
    if not addrs:
        return f"--metrics-host {host!r}: cannot resolve it"
    if public:
        return None
    if all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs):
        return None
    return (
        f"--metrics-host {host}: not loopback, so anyone who reaches it reads the run's "
        "figures; pass --metrics-public to serve it anyway"
    )


def otlp_endpoint(url: str) -> tuple[str | None, str | None]:
    """(the URL metrics are POSTed to, None) or (None, why ``url`` is refused).

    Like ``OTEL_EXPORTER_OTLP_ENDPOINT``: a URL with no path gets the OTLP/HTTP
    metrics path ``/v1/metrics``; one with a path is used as it is.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return None, f"--otlp {url!r}: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None, f"--otlp {url!r}: expected http(s)://HOST[:PORT][/PATH] (OTLP over HTTP)"
    if parts.username or parts.password:
        return None, f"--otlp {url!r}: credentials in the URL are not supported"
    if port == 0:
        return None, f"--otlp {url!r}: port 0"
    if parts.path in ("", "/"):
        return parts._replace(path="/v1/metrics").geturl(), None
    return url, None


__all__ = [
    "MAX_LINGER",
    "OTEL_MISSING",
    "OTLP_INTERVAL",
    "PUSH_TIMEOUT",
    "MetricsOptions",
    "host_problem",
    "otlp_endpoint",
]

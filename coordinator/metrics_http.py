"""The run's live metrics, out: ``/metrics`` for Prometheus and the OTLP push, thin shells.

:class:`MetricsOut` is owned by the run (:func:`wsload.coordinator.loadrun.run_load`):
it binds ``/metrics`` before any worker starts (a port in use is bad input,
exit 2), takes a :class:`~wsload.coordinator.metrics.MetricsSnapshot` each
second and the final one at the end, pushes OTLP every few seconds and once
at the end, and closes everything when the run ends (after ``--metrics-linger``
seconds, so a scraper's last scrape can see the final figures). Every task
it starts it also stops, with a timeout.

The server is aiohttp's (already the reference server's); the text comes
from ``prometheus_client``'s own exposition of a collector over the latest
snapshot, so the format is Prometheus' and never hand-written.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from wsload.common.errors import WsloadError
from wsload.coordinator.metrics import (
    BUCKETS,
    Family,
    MetricsSnapshot,
    families,
    final_snapshot,
    live_snapshot,
)
from wsload.coordinator.metrics_options import (
    MAX_LINGER,
    PUSH_TIMEOUT,
    MetricsOptions,
    host_problem,
    otlp_endpoint,
)

if TYPE_CHECKING:
    from wsload.coordinator.aggregate import RunAggregate
    from wsload.coordinator.figures import RunFigures

#: Seconds the server gets to close its connections at the end.
CLOSE_TIMEOUT = 2.0


def resolve(host: str) -> list[str]:
    """The addresses ``host`` names (none when it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


def port_problem(host: str, port: int) -> str | None:
    """Why ``/metrics`` cannot listen on ``host:port`` (in use, say), or None.

    Checked before anything starts by binding and closing a socket the way
    the server will (SO_REUSEADDR, as asyncio does), so ``--metrics-port``
    taken by another process is one line and exit 2, not a failure mid-run.
    """
    addrs = resolve(host)
    if not addrs:
        return None  # said by host_problem
    family = socket.AF_INET6 if ":" in addrs[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((addrs[0], port))
        except OSError as exc:
            return f"--metrics-port {port}: cannot listen on {host}:{port} ({exc.strerror})"
    return None


def metrics_problems(opts: MetricsOptions) -> list[str]:
    """Every problem of the metrics options, one line each (checked before the run)."""
    problems: list[str] = []
    if opts.port is not None:
        host = host_problem(opts.host, resolve(opts.host), opts.public)
        if host:
            problems.append(host)
        else:
            port = port_problem(opts.host, opts.port)
            if port:
                problems.append(port)
    elif opts.public or opts.host != "127.0.0.1":
        problems.append("--metrics-host and --metrics-public need --metrics-port")
    if opts.linger and opts.port is None:
        problems.append("--metrics-linger needs --metrics-port")
    if not 0 <= opts.linger <= MAX_LINGER:
        problems.append(f"--metrics-linger: 0..{MAX_LINGER:g} seconds, got {opts.linger:g}")
    if opts.otlp_url is not None:
        from wsload.coordinator.otlp import otel_problem

        _url, problem = otlp_endpoint(opts.otlp_url)
        problem = problem or otel_problem()
        if problem:
            problems.append(problem)
    return problems


def _prometheus(fam: Family) -> Metric:
    """One family in prometheus_client's own types."""
    spec = fam.spec
    labels = [spec.label] if spec.label else []

    def values(label: str | None) -> list[str]:
        return [label] if label is not None and spec.label else []

    out: CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily
    if spec.kind == "histogram":
        out = HistogramMetricFamily(spec.name, spec.help, labels=labels)
        for label, h in fam.histograms:
            buckets = [(f"{b:g}", float(c)) for b, c in zip(BUCKETS, h.cumulative, strict=True)]
            buckets.append(("+Inf", float(h.count)))
            out.add_metric(values(label), buckets, h.sum)
        return out
    if spec.kind == "counter":
        out = CounterMetricFamily(spec.name, spec.help, labels=labels)
    else:
        out = GaugeMetricFamily(spec.name, spec.help, labels=labels)
    for label, value in fam.samples:
        out.add_metric(values(label), value)
    return out


class SnapshotCollector(Collector):
    """A prometheus_client collector over the latest snapshot."""

    def __init__(self) -> None:
        self.snapshot = MetricsSnapshot()

    def collect(self) -> Iterable[Metric]:
        return [_prometheus(f) for f in families(self.snapshot)]


class MetricsServer:
    """``GET /metrics`` on ``host:port``, in the run's event loop (aiohttp)."""

    def __init__(self, collector: SnapshotCollector, host: str, port: int) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self.host, self.port = host, port
        app = web.Application(client_max_size=1024)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=CLOSE_TIMEOUT)
        self.address = ""

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:  # taken since the check: still before any worker starts
            await self._runner.cleanup()
            raise WsloadError(
                f"--metrics-port {self.port}: cannot listen on {self.host} ({exc.strerror})"
            ) from None
        host, port = self._runner.addresses[0][:2]
        self.address = f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"

    async def stop(self) -> None:
        await asyncio.wait_for(self._runner.cleanup(), CLOSE_TIMEOUT + 1.0)


class MetricsOut:
    """The run's metrics outlets: owned by the run, closed with it.

    ``async with MetricsOut(options, on_log) as out``: ``out.update(snapshot)``
    each second, ``await out.finish(snapshot)`` at the end.
    """

    def __init__(self, options: MetricsOptions, on_log: Callable[[str], None]) -> None:
        self.options = options
        self._on_log = on_log
        self._collector = SnapshotCollector()
        self._server: MetricsServer | None = None
        self._pusher: Any = None
        self._push_task: asyncio.Task[None] | None = None
        self._start_ns = time.time_ns()
        self._wake = asyncio.Event()
        self._stopping = False

    @property
    def address(self) -> str:
        """Where ``/metrics`` is served ("" when it is not)."""
        return self._server.address if self._server else ""

    async def __aenter__(self) -> MetricsOut:
        opts = self.options
        if opts.port is not None:
            self._server = MetricsServer(self._collector, opts.host, opts.port)
            await self._server.start()
            self._on_log(f"metrics: Prometheus text at {self._server.address}")
        if opts.otlp_url is not None:
            from wsload.coordinator.otlp import OtlpPusher

            url, _ = otlp_endpoint(opts.otlp_url)
            assert url is not None  # checked before the run
            self._pusher = OtlpPusher(url, self._on_log)
            self._push_task = asyncio.create_task(self._push_loop(), name="wsload-otlp")
            self._on_log(f"metrics: OTLP pushed to {url} every {opts.otlp_interval:g} s")
        return self

    def progress(self, agg: RunAggregate, elapsed: float) -> None:
        """The run so far (once a second); nothing is computed when no metrics go out."""
        if self.options.active:
            self.update(live_snapshot(agg, elapsed))

    def update(self, snapshot: MetricsSnapshot) -> None:
        """The figures a scrape or the next push shows from now on."""
        self._collector.snapshot = snapshot

    async def _push(self) -> None:
        fams = families(self._collector.snapshot)
        await asyncio.to_thread(self._pusher.push, fams, self._start_ns)

    async def _push_loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.options.otlp_interval)
            if not self._stopping:
                await self._push()

    async def finish(self, figures: RunFigures, agg: RunAggregate, linger: bool = True) -> None:
        """The final figures: pushed at once, served for ``--metrics-linger`` seconds.

        SIGINT or SIGTERM ends the wait (and skips it, during the last push):
        the run has been judged, so its report is still printed and written.
        ``linger`` False (an interrupted run) skips the wait.
        """
        if not self.options.active:
            return
        with _signals_set() as signalled:
            self.update(final_snapshot(figures, agg))
            if self._push_task is not None:
                await self._stop_push_loop()
                await self._push()
            waits = linger and self.options.linger > 0 and not signalled.is_set()
            if self._server is not None and waits:
                self._on_log(
                    f"metrics: the final figures stay at {self._server.address} for "
                    f"{self.options.linger:g} s (Ctrl-C ends the wait)"
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(signalled.wait(), self.options.linger)

    async def _stop_push_loop(self) -> None:
        task, self._push_task = self._push_task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        # A push in flight ends within the exporter's timeout: wait for it, so two
        # pushes never share the exporter; past that, the task is cancelled.
        try:
            await asyncio.wait_for(asyncio.shield(task), PUSH_TIMEOUT + 1.0)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aexit__(self, *exc: object) -> None:
        await self._stop_push_loop()
        if self._pusher is not None:
            await asyncio.to_thread(self._pusher.close)
        if self._server is not None:
            await self._server.stop()


@contextlib.contextmanager
def _signals_set() -> Iterator[asyncio.Event]:
    """An event SIGINT and SIGTERM set while the block runs (the run's own handlers are gone)."""
    loop = asyncio.get_running_loop()
    event = asyncio.Event()
    installed = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, event.set)
            installed.append(signum)
    try:
        yield event
    finally:
        for signum in installed:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)


__all__ = ["MetricsOut", "MetricsServer", "metrics_problems", "port_problem", "resolve"]

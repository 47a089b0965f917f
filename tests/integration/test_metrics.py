"""Live metrics from a real run: Prometheus' /metrics scraped during it, OTLP pushed to a receiver.

A 2-worker ``wsload run --demo`` serves ``/metrics`` (port 0: the address it
prints) and pushes OTLP/HTTP to a receiver this test runs on 127.0.0.1
(aiohttp, decoding the protobuf with opentelemetry-proto). Scrapes taken
while the run lasts are read with prometheus_client's parser and checked
with Prometheus' own ``promtool check metrics``; the counters only grow,
and once ``wsload_run_final`` is 1 they equal the ``--json`` summary, as
does the receiver's last push. A real Prometheus (Debian's) scrapes a run
too: what it stored equals the summary, and every query of the Grafana
dashboard evaluates on it. Bad options are one line each and exit 2 before
any process starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import ServerFactory
from wsload.coordinator.metrics import exported_series

pytest.importorskip("opentelemetry.proto", reason="opentelemetry-proto decodes the OTLP requests")
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

WSLOAD = str(Path(sys.executable).with_name("wsload"))
ADDRESS = re.compile(r"metrics: Prometheus text at (http://127\.0\.0\.1:\d+/metrics)")
RUN_LIMIT = 60.0  # seconds the whole run may take, gathering included


class Receiver:
    """An OTLP/HTTP metrics endpoint: keeps every request it is sent, decoded."""

    def __init__(self) -> None:
        self.requests: list[ExportMetricsServiceRequest] = []
        self.bad: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Type") != "application/x-protobuf":
            self.bad.append(request.headers.get("Content-Type", ""))
            return web.Response(status=415)
        message = ExportMetricsServiceRequest()
        message.ParseFromString(body)
        self.requests.append(message)
        return web.Response(body=b"", content_type="application/x-protobuf")

    def values(self, request: ExportMetricsServiceRequest) -> dict[str, Any]:
        """name (with a label value, if any) -> value, or a histogram's (count, sum)."""
        out: dict[str, Any] = {}
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    if kind == "histogram":
                        for hp in m.histogram.data_points:
                            out[m.name] = (hp.count, hp.sum, list(hp.bucket_counts))
                        continue
                    points = m.sum.data_points if kind == "sum" else m.gauge.data_points
                    for p in points:
                        labels = tuple(a.value.string_value for a in p.attributes)
                        v = p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
                        out[m.name if not labels else f"{m.name}{{{labels[0]}}}"] = v
        return out


def scrape_values(text: str) -> dict[str, float]:
    """Every sample of a scrape, keyed ``name`` or ``name{label value}`` (prometheus_client)."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = {k: v for k, v in s.labels.items() if k != "le"}
            key = s.name + (f"{{{next(iter(labels.values()))}}}" if labels else "")
            if "le" in s.labels:
                key += f"[le={s.labels['le']}]"
            out[key] = s.value
    return out


async def _read_address(stderr: Path, proc: asyncio.subprocess.Process, limit: float) -> str:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = ADDRESS.search(stderr.read_text(errors="replace"))  # noqa: ASYNC240
        if found:
            return found.group(1)
        if proc.returncode is not None:
            break
        await asyncio.sleep(0.05)
    pytest.fail(f"no metrics address printed: {stderr.read_text(errors='replace')}")  # noqa: ASYNC240


@pytest.mark.asyncio
async def test_a_run_scraped_during_it_agrees_with_its_json_and_its_otlp_push(
    tmp_path: Path,
) -> None:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/v1/metrics", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    otlp_port = runner.addresses[0][1]
    out_json, err = tmp_path / "summary.json", tmp_path / "stderr.txt"
    args = [
        "run", "--demo", "--workers", "2", "--num-clients", "10", "--duration", "4",
        "--interval", "0.05", "--metrics-port", "0", "--metrics-linger", "30",
        "--otlp", f"http://127.0.0.1:{otlp_port}", "--json", str(out_json),
    ]  # fmt: skip
    with err.open("wb") as err_file:
        proc = await asyncio.create_subprocess_exec(
            WSLOAD, *args, stdout=asyncio.subprocess.DEVNULL, stderr=err_file
        )
    scrapes: list[str] = []
    try:
        url = await _read_address(err, proc, RUN_LIMIT)
        deadline = time.monotonic() + RUN_LIMIT
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                async with http.get(url) as resp:
                    assert resp.status == 200
                    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                    scrapes.append(await resp.text())
                if scrape_values(scrapes[-1])["wsload_run_final"] == 1:
                    break
                await asyncio.sleep(0.3)  # a scraper's interval, not a wait for a state
            else:
                pytest.fail("the run's final figures never appeared on /metrics")
            async with http.get(url.replace("/metrics", "/other")) as resp:
                assert resp.status == 404
        proc.send_signal(signal.SIGINT)  # ends the linger: the run has reported
        code = await asyncio.wait_for(proc.wait(), RUN_LIMIT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await runner.cleanup()
    log = err.read_text(errors="replace")
    assert code == 0, log
    assert "Traceback" not in log
    summary = json.loads(out_json.read_text())

    during = [scrape_values(s) for s in scrapes if "wsload_run_final 0.0" in s]
    busy = [v for v in during if v["wsload_messages_sent_total"] > 0]
    assert len(busy) >= 2, f"{len(busy)} scrapes during the load"
    final = scrape_values(scrapes[-1])
    names = {n.split("{")[0].split("[")[0] for v in (*during, final) for n in v}
    assert names <= exported_series()
    # Counters only grow, scrape after scrape, up to the final figures.
    for key in ("wsload_messages_sent_total", "wsload_messages_received_total",
                "wsload_latency_seconds_count", "wsload_connects_total"):  # fmt: skip
        series = [v[key] for v in (*during, final)]
        assert series == sorted(series), (key, series)
        assert series[0] < series[-1], (key, series)
    assert max(v["wsload_workers"] for v in during) == 2
    assert max(v["wsload_clients_connected"] for v in during) == 10
    # The final scrape says what --json says.
    counters = summary["counters"]
    for name, key in (("messages_sent", "sent"), ("messages_received", "received"),
                      ("messages_timed_out", "timed_out"), ("messages_lost", "lost"),
                      ("unsolicited", "unsolicited"), ("connects", "connects"),
                      ("bytes_sent", "bytes_sent")):  # fmt: skip
        assert final[f"wsload_{name}_total"] == counters[key], name
    errors = {k.split("{")[1][:-1]: v for k, v in final.items() if k.startswith("wsload_errors")}
    assert errors == summary["errors"]
    assert final["wsload_latency_seconds_count"] == counters["received"] > 0
    mean = final["wsload_latency_seconds_sum"] / final["wsload_latency_seconds_count"]
    assert mean == pytest.approx(summary["avg_latency"], rel=1e-6)
    assert final["wsload_latency_seconds_bucket[le=+Inf]"] == counters["received"]
    p99 = summary["latency_percentiles"]["p99"]
    below = [float(k.split("=")[1][:-1]) for k, v in final.items()
             if k.startswith("wsload_latency_seconds_bucket") and "+Inf" not in k
             and v >= 0.99 * counters["received"]]  # fmt: skip
    assert min(below) >= p99 * 0.99  # the first bucket holding 99 % is at or above p99

    # Prometheus' own linter reads the same text.
    promtool = shutil.which("promtool")
    if promtool is not None:
        for text in (scrapes[0], scrapes[-1]):
            checked = subprocess.run(
                [promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                timeout=30,
            )  # fmt: skip
            assert checked.returncode == 0, checked.stdout + checked.stderr

    # The OTLP receiver got the same figures: the last push is the final one.
    assert not receiver.bad
    assert receiver.requests, log
    last = receiver.values(receiver.requests[-1])
    assert last["wsload_run_final"] == 1
    assert last["wsload_messages_sent"] == counters["sent"]
    assert last["wsload_messages_received"] == counters["received"]
    assert last["wsload_messages_timed_out"] == counters["timed_out"]
    assert last["wsload_unsolicited"] == counters["unsolicited"]
    assert last["wsload_workers"] == final["wsload_workers"]
    count, total, buckets = last["wsload_latency_seconds"]
    assert count == counters["received"] == sum(buckets)
    assert total == pytest.approx(final["wsload_latency_seconds_sum"])
    resource = receiver.requests[-1].resource_metrics[0].resource
    assert {a.key: a.value.string_value for a in resource.attributes}["service.name"] == "wsload"


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def _scrape_until_final(url: str, limit: float) -> list[str]:
    """Scrapes every 0.3 s until one holds the final figures (bounded by ``limit``)."""
    scrapes: list[str] = []
    deadline = time.monotonic() + limit
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            async with http.get(url) as resp:
                scrapes.append(await resp.text())
            if scrape_values(scrapes[-1])["wsload_run_final"] == 1:
                return scrapes
            await asyncio.sleep(0.3)  # a scraper's interval, not a wait for a state
    pytest.fail("the run's final figures never appeared on /metrics")


@pytest.mark.asyncio
async def test_a_conversations_steps_are_series_labelled_step(tmp_path: Path) -> None:
    out_json, err = tmp_path / "summary.json", tmp_path / "stderr.txt"
    args = [
        "run", "--demo", "--scenario", str(EXAMPLES / "chat.toml"), "--workers", "2",
        "--num-clients", "10", "--ramp-up", "1", "--duration", "4", "--metrics-port", "0",
        "--metrics-linger", "30", "--json", str(out_json),
    ]  # fmt: skip
    with err.open("wb") as err_file:
        proc = await asyncio.create_subprocess_exec(
            WSLOAD, *args, stdout=asyncio.subprocess.DEVNULL, stderr=err_file
        )
    try:
        url = await _read_address(err, proc, RUN_LIMIT)
        scrapes = await _scrape_until_final(url, RUN_LIMIT)
        proc.send_signal(signal.SIGINT)  # ends the linger
        code = await asyncio.wait_for(proc.wait(), RUN_LIMIT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = err.read_text(errors="replace")
    assert code == 0, log
    steps = json.loads(out_json.read_text())["steps"]
    assert steps
    final = scrape_values(scrapes[-1])
    for name, figures in steps.items():
        for counter in ("expected", "met", "timed_out", "failed", "lost", "unanswered"):
            assert final[f"wsload_step_{counter}_total{{{name}}}"] == figures[counter], name
        count = final[f"wsload_step_latency_seconds_count{{{name}}}"]
        assert count == figures["met"], name
    during = [scrape_values(s) for s in scrapes[:-1]]
    busy = [v for v in during if any(k.startswith("wsload_step_met_total{") and x
                                     for k, x in v.items())]  # fmt: skip
    assert busy, "no step series during the run"


@pytest.mark.asyncio
async def test_fan_out_deliveries_are_series_labelled_topic(tmp_path: Path) -> None:
    """Publish/subscribe: deliveries grow by topic during the run; the join's figures at its end."""
    out_json, err = tmp_path / "summary.json", tmp_path / "stderr.txt"
    args = [
        "run", "--demo", "--scenario", str(EXAMPLES / "fanout.toml"), "--workers", "2",
        "--num-clients", "21", "--duration", "5", "--metrics-port", "0",
        "--metrics-linger", "30", "--json", str(out_json),
    ]  # fmt: skip
    with err.open("wb") as err_file:
        proc = await asyncio.create_subprocess_exec(
            WSLOAD, *args, stdout=asyncio.subprocess.DEVNULL, stderr=err_file
        )
    try:
        url = await _read_address(err, proc, RUN_LIMIT)
        scrapes = await _scrape_until_final(url, RUN_LIMIT)
        proc.send_signal(signal.SIGINT)  # ends the linger
        code = await asyncio.wait_for(proc.wait(), RUN_LIMIT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 0, err.read_text(errors="replace")
    topics = json.loads(out_json.read_text())["fanout"]["topics"]
    assert set(topics) == {"news"}
    news = topics["news"]
    final = scrape_values(scrapes[-1])
    for key in ("deliveries", "duplicates", "out_of_order", "publish_conflicts"):
        assert final[f"wsload_fanout_{key}_total{{news}}"] == news[key], key
    for key in ("published", "expected", "delivered", "missing"):
        assert final[f"wsload_fanout_{key}{{news}}"] == news[key], key
    assert news["delivered"] > 0
    during = [scrape_values(s).get("wsload_fanout_deliveries_total{news}", 0) for s in scrapes]
    assert during == sorted(during)
    assert max(during[:-1]) > 0, "no deliveries counted during the run"
    assert not any("wsload_fanout_delivered" in s for s in scrapes[:-1])  # joined at the end


@pytest.mark.asyncio
async def test_an_interrupted_run_reports_without_waiting_for_a_scraper(tmp_path: Path) -> None:
    """Ctrl-C mid-run: the report is written and the process exits, --metrics-linger or not."""
    out_json, err = tmp_path / "summary.json", tmp_path / "stderr.txt"
    args = [
        "run", "--demo", "--workers", "1", "--num-clients", "4", "--duration", "60",
        "--interval", "0.05", "--metrics-port", "0", "--metrics-linger", "600",
        "--drain-timeout", "1", "--json", str(out_json),
    ]  # fmt: skip
    with err.open("wb") as err_file:
        proc = await asyncio.create_subprocess_exec(
            WSLOAD, *args, stdout=asyncio.subprocess.DEVNULL, stderr=err_file
        )
    try:
        url = await _read_address(err, proc, RUN_LIMIT)
        deadline = time.monotonic() + RUN_LIMIT
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                async with http.get(url) as resp:
                    if scrape_values(await resp.text())["wsload_messages_received_total"] > 0:
                        break
                await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 30)  # far less than the linger
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 130, err.read_text(errors="replace")
    summary = json.loads(out_json.read_text())
    assert summary["interrupted"] is True
    assert summary["counters"]["received"] > 0
    assert "stay at" not in err.read_text(errors="replace")


@pytest.mark.asyncio
async def test_the_library_call_serves_metrics_only_while_its_run_lasts(
    serve_factory: ServerFactory,
) -> None:
    """run_load owns the server: scraped during the call, closed when it returns."""
    from wsload.common.spec import build_spec
    from wsload.coordinator.loadrun import run_load
    from wsload.coordinator.metrics_options import MetricsOptions

    server = serve_factory()
    spec = build_spec(ws_url=server.ws_url, num_clients=2, duration=2.0, interval=0.05)
    lines: list[str] = []
    run = asyncio.create_task(
        run_load(spec, local_workers=1, on_log=lines.append, metrics=MetricsOptions(port=0))
    )
    sent: list[float] = []
    try:
        deadline = time.monotonic() + RUN_LIMIT
        url = None
        while url is None and time.monotonic() < deadline and not run.done():
            url = next((m.group(1) for m in map(ADDRESS.search, lines) if m), None)
            await asyncio.sleep(0.05)
        assert url is not None, lines
        async with aiohttp.ClientSession() as http:
            while not run.done() and time.monotonic() < deadline:
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with http.get(url) as resp:
                        sent.append(scrape_values(await resp.text())["wsload_messages_sent_total"])
                await asyncio.sleep(0.2)
        summary = await asyncio.wait_for(run, RUN_LIMIT)
    finally:
        if not run.done():
            run.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await run
    assert max(sent) > 0
    assert max(sent) <= summary.figures.counters.sent
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 2):
        pass


PROMETHEUS = shutil.which("prometheus")
DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "wsload-dashboard.json"


class Prometheus:
    """A real Prometheus on 127.0.0.1 scraping the targets of a file it watches, every second."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.targets = root / "targets.json"
        self.targets.write_text("[]")
        (root / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: wsload\n"
            f"    file_sd_configs: [{{files: ['{self.targets}'], refresh_interval: 1s}}]\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        """Started on a free port, ready (``/-/ready``), or the test fails saying why."""
        assert PROMETHEUS is not None
        for _attempt in range(3):  # a port taken between the probe and the bind: another
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            self.url = f"http://127.0.0.1:{port}"
            log = (self.root / "prometheus.log").open("wb")
            self.proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={self.root / 'prometheus.yml'}",
                 f"--storage.tsdb.path={self.root / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=log, stderr=log,
            )  # fmt: skip
            log.close()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                        if resp.status == 200:
                            return
                except OSError:
                    time.sleep(0.1)
            self.stop()
        pytest.fail(f"prometheus did not start: {(self.root / 'prometheus.log').read_text()}")

    def scrape(self, target: str) -> None:
        tmp = self.targets.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": [target]}]))
        tmp.replace(self.targets)  # whole, as file_sd expects

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result; a query Prometheus refuses fails the test."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            pytest.fail(f"{expr}: {exc.read().decode(errors='replace')}")
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _dashboard_queries(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k == "expr" and isinstance(v, str)]
        return found + [q for v in node.values() for q in _dashboard_queries(v)]
    if isinstance(node, list):
        return [q for v in node for q in _dashboard_queries(v)]
    return []


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus (Debian's package: make promtool)")
@pytest.mark.asyncio
async def test_a_real_prometheus_scrapes_the_run_and_runs_every_dashboard_query(
    tmp_path: Path,
) -> None:
    """Prometheus stores what it scraped during the run; the dashboard's queries all evaluate."""
    prom = Prometheus(tmp_path)
    await asyncio.to_thread(prom.start)
    out_json, err = tmp_path / "summary.json", tmp_path / "stderr.txt"
    args = [
        "run", "--demo", "--workers", "2", "--num-clients", "10", "--duration", "6",
        "--interval", "0.05", "--metrics-port", "0", "--metrics-linger", "30",
        "--json", str(out_json),
    ]  # fmt: skip
    try:
        with err.open("wb") as err_file:
            proc = await asyncio.create_subprocess_exec(
                WSLOAD, *args, stdout=asyncio.subprocess.DEVNULL, stderr=err_file
            )
        try:
            url = await _read_address(err, proc, RUN_LIMIT)
            prom.scrape(url.removeprefix("http://").removesuffix("/metrics"))
            deadline = time.monotonic() + RUN_LIMIT
            sent_seen: list[float] = []
            while time.monotonic() < deadline:
                final = await asyncio.to_thread(prom.query, "wsload_run_final")
                sent = await asyncio.to_thread(prom.query, "wsload_messages_sent_total")
                if sent:
                    sent_seen.append(float(sent[0]["value"][1]))
                if final and final[0]["value"][1] == "1":
                    break
                await asyncio.sleep(0.5)  # Prometheus scrapes once a second
            else:
                pytest.fail("Prometheus never scraped the final figures")
            stored: dict[str, float] = {}
            for expr in ("wsload_messages_sent_total", "wsload_messages_received_total",
                         "wsload_latency_seconds_count",
                         'max_over_time(wsload_workers[1m])'):  # fmt: skip
                (row,) = await asyncio.to_thread(prom.query, expr)
                stored[expr] = float(row["value"][1])
            queries = _dashboard_queries(json.loads(DASHBOARD.read_text()))
            results = {}
            for q in queries:
                expr = q.replace("$__rate_interval", "10s").replace("$instance", ".*")
                results[q] = await asyncio.to_thread(prom.query, expr)
            proc.send_signal(signal.SIGINT)  # ends the linger
            code = await asyncio.wait_for(proc.wait(), RUN_LIMIT)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    finally:
        await asyncio.to_thread(prom.stop)
    assert code == 0, err.read_text(errors="replace")
    counters = json.loads(out_json.read_text())["counters"]
    assert stored["wsload_messages_sent_total"] == counters["sent"]
    assert stored["wsload_messages_received_total"] == counters["received"]
    assert stored["wsload_latency_seconds_count"] == counters["received"]
    assert stored["max_over_time(wsload_workers[1m])"] == 2
    assert sent_seen == sorted(sent_seen)
    assert len(set(sent_seen)) >= 2, sent_seen  # scraped while it grew, not only at the end
    # Every panel's query is valid PromQL; the core ones hold the run's data.
    assert len(results) >= 20
    for q in queries:
        if "fanout" not in q and "step" not in q and "errors" not in q:
            assert results[q], f"no data for {q}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus)")
def test_promtool_is_a_real_check() -> None:
    """The check above would catch a bad exposition: promtool refuses one."""
    bad = "# TYPE wsload_x counter\nwsload_x 1\n"  # a counter without _total
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=bad, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode != 0


def _run_bad(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WSLOAD, "run", "--demo", "--duration", "1", *args],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


def _lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_a_port_in_use_and_a_bad_otlp_url_are_refused_together_before_the_run() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run_bad("--metrics-port", str(port), "--otlp", "grpc://127.0.0.1:4317")
    assert result.returncode == 2, result.stderr
    lines = _lines(result)
    assert any(f"--metrics-port {port}" in line and "in use" in line for line in lines), lines
    assert any("--otlp 'grpc://127.0.0.1:4317'" in line for line in lines), lines
    assert not any("waiting for workers" in line or "Traceback" in line for line in lines)
    assert len(lines) == 2, lines


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--metrics-port", "0", "--metrics-host", "0.0.0.0"], "--metrics-public"),
        (["--metrics-port", "0", "--metrics-host", "nowhere.invalid"], "cannot resolve"),
        (["--metrics-public"], "need --metrics-port"),
        (["--metrics-port", "0", "--metrics-linger", "-1"], "--metrics-linger"),
    ],
)
def test_bad_metrics_options_are_one_line_exit_2(args: list[str], needle: str) -> None:
    result = _run_bad(*args)
    assert result.returncode == 2, result.stderr
    lines = _lines(result)
    assert len(lines) == 1, lines
    assert needle in lines[0]


def test_otlp_without_the_optional_sdk_names_the_install_command(tmp_path: Path) -> None:
    """Where the extra is not installed, --otlp is refused before the run, saying how to get it.

    The SDK is shadowed by a package that cannot be imported, as on a machine without it.
    """
    shadow = tmp_path / "opentelemetry"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = _run_bad("--otlp", "http://127.0.0.1:4318", env=env)
    assert result.returncode == 2, result.stderr
    (line,) = _lines(result)
    assert "pip install 'wsload[otel]'" in line

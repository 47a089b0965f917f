"""``--dashboard`` and ``--html``: one interactive page, live and frozen, in headless Chromium.

Real runs against the reference server; the page is read back from the DOM
(its tiles carry the raw figure in ``data-value``) and compared with the
run's ``--json``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.browser import Page, chromium_page, needs_chromium
from tests.integration.conftest import WSLOAD, ServerFactory

TILES = "Object.fromEntries([...document.querySelectorAll('.tile')].map(t => [t.dataset.figure, t.dataset.value]))"  # noqa: E501


async def tiles(page: Page) -> dict[str, str]:
    value: dict[str, str] = await page.evaluate(TILES)
    return value


async def sent(page: Page) -> int:
    value = (await tiles(page)).get("sent") or "0"
    return int(value)


async def read_address(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """The dashboard's address, from the line wsload prints before the run starts."""
    assert proc.stderr is not None

    async def line() -> str:
        return await asyncio.to_thread(proc.stderr.readline) if proc.stderr else ""

    async with asyncio.timeout(timeout):
        while True:
            text = await line()
            assert text, "wsload exited without printing the dashboard's address"
            found = re.search(r"dashboard at (http://127\.0\.0\.1:\d+/)", text)
            if found:
                return found.group(1)


@needs_chromium
@pytest.mark.timeout(120)
@pytest.mark.asyncio
async def test_the_dashboard_updates_live_and_freezes_on_the_report(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory()
    out = tmp_path / "run.json"
    proc = subprocess.Popen(
        [WSLOAD, "run", "--ws-url", server.ws_url, "-c", "4", "-d", "8", "--interval", "0.05",
         "-w", "1", "--quiet", "--dashboard", "--json", str(out), "--threshold", "p99<2s"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        address = await read_address(proc)
        async with chromium_page() as page:
            await page.goto(address)
            await page.wait_for(
                "document.getElementById('verdict').dataset.status === 'running'", timeout=30
            )
            await page.wait_for(f"({TILES}).sent > 0", timeout=20)
            first = await sent(page)
            # a second later the page has fetched the run so far again: its numbers grew
            await page.wait_for(f"+({TILES}).sent > {first}", timeout=20)
            assert await page.evaluate(
                "document.querySelectorAll('#chart-throughput canvas').length"
            )
            # A chart the reader zoomed into stays zoomed while new seconds arrive.
            await page.wait_for("window.wsloadDocument().series.t.length >= 3", timeout=20)
            await page.evaluate(
                "window.wsloadCharts()['chart-throughput'].setScale('x', {min: 1, max: 1.5})"
            )
            rendered = await page.evaluate("+document.body.dataset.rendered")
            await page.wait_for(f"+document.body.dataset.rendered > {rendered}")
            assert (
                await page.evaluate("window.wsloadCharts()['chart-throughput'].scales.x.max") == 1.5
            )
            live = await page.evaluate("document.getElementById('thresholds').innerText")
            assert "p99<2s" in live  # judged on the run so far
            assert "PASS" in live
            assert page.errors == []
            # The run ends: the page keeps the final report (the --json's figures).
            await asyncio.to_thread(proc.wait, 60)
            await page.wait_for(
                "document.getElementById('verdict').dataset.status === 'passed'", timeout=10
            )
            final = json.loads(out.read_text())
            shown = await tiles(page)
            assert int(shown["sent"]) == final["total_sent"] > first
            assert int(shown["received"]) == final["total_received"]
            assert page.errors == []
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == 0


@needs_chromium
@pytest.mark.timeout(120)
@pytest.mark.asyncio
async def test_the_html_report_is_the_same_page_offline_with_the_runs_numbers(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory("--drop-rate", "0.05", "--seed", "3")
    report, out = tmp_path / "report.html", tmp_path / "run.json"
    proc = subprocess.run(
        [WSLOAD, "run", "--ws-url", server.ws_url, "-c", "6", "-d", "3", "--interval", "0.05",
         "--reply-timeout", "0.5", "-w", "2", "--quiet", "--html", str(report), "--json",
         str(out), "--threshold", "p99<1s", "--threshold", "timeouts==0", "--header",
         "Cookie: sid=s3cret"],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # timeouts==0 fails: the server drops 5 %
    final: dict[str, Any] = json.loads(out.read_text())
    page_text = report.read_text()
    assert "s3cret" not in page_text  # secret header values never reach a report
    assert not re.findall(r'(?:src|href)="(?:https?:)?//', page_text)
    assert "uplot 1.6.32 (MIT License)" in page_text  # the vendored chart library, named
    async with chromium_page() as page:
        await page.call("Network.enable")
        await page.call(
            "Network.emulateNetworkConditions",
            offline=True, latency=0, downloadThroughput=-1, uploadThroughput=-1,
        )  # fmt: skip
        await page.call("Emulation.setDeviceMetricsOverride", width=1280, height=2200,
                        deviceScaleFactor=1, mobile=False)  # fmt: skip
        await page.goto(report.as_uri())
        await page.wait_for("document.body.dataset.rendered")
        # nothing but the file itself was loaded: no script, stylesheet or image from anywhere
        assert await page.evaluate("performance.getEntriesByType('resource').length") == 0
        verdict = await page.evaluate(
            "(e => [e.textContent, getComputedStyle(e).backgroundColor])"
            "(document.getElementById('verdict'))"
        )
        assert verdict[0] == "FAILED"
        assert verdict[1] == "rgb(207, 34, 46)"  # red
        shown = await tiles(page)
        assert int(shown["sent"]) == final["total_sent"]
        assert int(shown["received"]) == final["total_received"]
        assert int(shown["timed_out"]) == final["timed_out"] > 0
        assert float(shown["p99"]) == final["latency_percentiles"]["p99"]
        assert float(shown["success_rate"]) == pytest.approx(final["success_rate"])
        results = await page.evaluate(
            "[...document.querySelectorAll('#thresholds tbody tr')].map(r => r.innerText)"
        )
        assert any("timeouts==0" in r and "FAIL" in r for r in results), results
        assert any("p99<1s" in r and "PASS" in r for r in results), results
        params = await page.evaluate("document.getElementById('parameters').innerText")
        assert "header Cookie\t***" in params
        # Every chart drew, each axis of counts and times starting at zero.
        charts = await page.evaluate(
            "[...document.querySelectorAll('.chart')].filter(c => c.offsetParent)"
            ".map(c => ({id: c.id, canvas: !!c.querySelector('canvas'),"
            " w: c.getBoundingClientRect().width}))"
        )
        assert len(charts) == 6, charts
        assert all(c["canvas"] and c["w"] > 300 for c in charts), charts
        y_min = await page.evaluate("Object.values(window.wsloadCharts()).map(p => p.scales.y.min)")
        assert y_min, "no chart drawn"
        assert all(v == 0 for v in y_min), y_min
        # Hover shows a second's values in the legend; a click on a legend entry hides its series.
        box = await page.evaluate(
            "(r => ({x: r.left + r.width / 2, y: r.top + r.height / 2}))"
            "(document.querySelector('#chart-throughput .u-over').getBoundingClientRect())"
        )
        await page.call("Input.dispatchMouseEvent", type="mouseMoved", x=box["x"], y=box["y"])
        hovered = await page.wait_for(
            "(v => /^[0-9]/.test(v) && v)(document.querySelector("
            "'#chart-throughput .u-legend .u-series:nth-child(2) .u-value').textContent)"
        )
        assert float(hovered.replace(",", "")) in doc_sent_per_second(
            await page.evaluate("window.wsloadDocument()")
        )
        await page.evaluate(
            "document.querySelector("
            "'#chart-throughput .u-legend .u-series:nth-child(2) th').click()"
        )
        assert (
            await page.evaluate("window.wsloadCharts()['chart-throughput'].series[1].show") is False
        )
        # The series hold the run's numbers: sent per second adds up to the total.
        doc = await page.evaluate("window.wsloadDocument()")
        assert sum(doc["series"]["sent"]) == final["total_sent"]
        screenshot = await page.call("Page.captureScreenshot", format="png")
        (tmp_path / "report.png").write_bytes(base64.b64decode(screenshot["data"]))
        assert page.errors == []


def doc_sent_per_second(doc: dict[str, Any]) -> list[float]:
    return [float(v) for v in doc["series"]["sent"]]


def test_a_dashboard_port_in_use_stops_the_run_before_it_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [WSLOAD, "run", "--ws-url", "ws://127.0.0.1:9/ws", "-c", "1", "-d", "1", "-w", "1",
             "--dashboard", "--dashboard-port", str(port)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert f"--dashboard-port {port}: cannot listen on 127.0.0.1" in proc.stderr
    assert "Traceback" not in proc.stderr

"""The ``--html`` report's per-step and fan-out panels, in headless Chromium.

A conversation (``examples/chat.toml``) and a fan-out (``examples/fanout.toml``)
run against the demo server; the report page, opened from disk, holds the
figures the run's ``--json`` holds. (The echo run's report and the live
dashboard: tests/integration/test_dashboard.py.)
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.browser import chromium_page, needs_chromium
from tests.integration.conftest import WSLOAD

ROOT = Path(__file__).resolve().parents[2]


def report_of(tmp_path: Path, *args: str) -> tuple[Path, dict[str, Any]]:
    report, out = tmp_path / "report.html", tmp_path / "run.json"
    proc = subprocess.run(
        [WSLOAD, "run", "--demo", "--quiet", "-w", "1", "--ramp-up", "0", "--html", str(report),
         "--json", str(out), *args],
        capture_output=True, text=True, timeout=90, check=False, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return report, json.loads(out.read_text())


@needs_chromium
@pytest.mark.timeout(120)
@pytest.mark.asyncio
async def test_a_conversations_report_has_its_steps(tmp_path: Path) -> None:
    report, final = report_of(
        tmp_path, "--scenario", "examples/chat.toml", "-c", "10", "-d", "3",
        "--threshold", "step.ack.p99<5s",
    )  # fmt: skip
    async with chromium_page() as page:
        await page.goto(report.as_uri())
        await page.wait_for("document.body.dataset.rendered")
        assert await page.evaluate("document.getElementById('verdict').textContent") == "PASSED"
        rows = await page.evaluate(
            "[...document.querySelectorAll('#steps tbody tr')]"
            ".map(r => [...r.cells].map(c => c.textContent))"
        )
        assert [r[0] for r in rows] == list(final["steps"])
        for row in rows:
            step = final["steps"][row[0]]
            assert [int(v.replace(",", "")) for v in row[1:3]] == [step["expected"], step["met"]]
        assert await page.evaluate("!document.getElementById('steps-section').hidden")
        for chart in ("chart-steps-met", "chart-steps-dist"):
            assert await page.evaluate(f"!!document.querySelector('#{chart} canvas')"), chart
        thresholds = await page.evaluate("document.getElementById('thresholds').innerText")
        assert "step.ack.p99<5s" in thresholds
        assert "PASS" in thresholds
        assert await page.evaluate("document.getElementById('fanout-section').hidden")
        assert page.errors == []


@needs_chromium
@pytest.mark.timeout(120)
@pytest.mark.asyncio
async def test_a_fanout_report_has_its_deliveries(tmp_path: Path) -> None:
    report, final = report_of(tmp_path, "--scenario", "examples/fanout.toml", "-c", "6", "-d", "3")
    total = final["fanout"]["total"]
    assert total["delivered"] > 0
    async with chromium_page() as page:
        await page.goto(report.as_uri())
        await page.wait_for("document.body.dataset.rendered")
        assert await page.evaluate("!document.getElementById('fanout-section').hidden")
        line = await page.evaluate("document.getElementById('fanout-line').textContent")
        assert line.startswith(f"Delivered {total['delivered']:,} of {total['expected']:,} owed")
        topics = await page.evaluate(
            "[...document.querySelectorAll('#fanout tbody tr')].map(r => r.cells[0].textContent)"
        )
        assert topics == list(final["fanout"]["topics"])  # one topic: no total row
        assert await page.evaluate("!!document.querySelector('#chart-fanout-dist canvas')")
        assert page.errors == []

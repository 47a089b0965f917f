"""The HTML report of a real run, rendered in headless Chromium."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.browser import chromium_page, needs_chromium
from tests.integration.conftest import WSLOAD, ServerFactory


@pytest.mark.timeout(120)
@pytest.mark.asyncio
@needs_chromium
async def test_report_draws_its_charts_without_errors(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory("--drop-rate", "0.05", "--seed", "3")
    report = tmp_path / "report.html"
    proc = subprocess.run(
        [WSLOAD, "run", "--ws-url", server.ws_url, "-c", "6", "-d", "3", "--interval", "0.05",
         "--reply-timeout", "0.5", "-w", "2", "--quiet", "--html", str(report),
         "--threshold", "p99<1s", "--threshold", "timeouts==0", "--header", "Cookie: sid=s3cret"],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr  # timeouts==0 fails: the server drops 5 %
    # Self-contained: no script, stylesheet or image is fetched from anywhere.
    page_text = report.read_text()
    assert not re.findall(r'(?:src|href)="(?:https?:)?//', page_text)
    assert "s3cret" not in page_text  # secret header values never reach a report
    assert "<td>header Cookie</td><td>***</td>" in page_text
    assert '<p class="verdict">FAILED</p>' in page_text
    async with chromium_page() as page:
        await page.goto(report.as_uri())
        charts = await page.evaluate(
            "[...document.querySelectorAll('figure.chart svg')]"
            ".map(s => ({w: s.getBoundingClientRect().width,"
            " marks: s.querySelectorAll('path, rect, use').length}))"
        )
        assert len(charts) == 5
        assert all(c["w"] > 300 and c["marks"] > 10 for c in charts), charts
        verdicts = await page.evaluate(
            "[...document.querySelectorAll('table')].map(t => t.innerText).join('\\n')"
        )
        assert "timeouts==0" in verdicts
        assert "FAIL" in verdicts
        assert "PASS" in verdicts
        assert page.errors == []

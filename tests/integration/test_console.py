"""The browser console (`wsload client`) in headless Chromium against the reference server."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.browser import chromium_page, needs_chromium
from tests.integration.conftest import WSLOAD, ServerFactory


@needs_chromium
@pytest.mark.timeout(90)
@pytest.mark.asyncio
async def test_connect_send_and_see_the_echo(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    console = subprocess.Popen(
        [WSLOAD, "client", "--ws-url", server.ws_url, "--no-browser"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert console.stdout is not None
        found = re.search(r"(http://127\.0\.0\.1:\d+/\S*)", console.stdout.readline())
        assert found, "the console printed no address"
        async with chromium_page() as page:
            await page.goto(found.group(1))
            assert await page.evaluate("document.getElementById('url').value") == server.ws_url
            await page.evaluate("document.getElementById('connect').click()")
            await page.wait_for("document.getElementById('status').textContent === 'connected'")
            await page.evaluate(
                'document.getElementById(\'message\').value = \'{"type": "test", "n": 7}\';'
                "document.getElementById('send-json').click()"
            )
            reply = await page.wait_for(
                "[...document.querySelectorAll('#log .in')].map(e => e.textContent).join('\\n')"
            )
            assert '← {"type":"test","n":7}' in reply
            assert re.search(r"\(rtt \d+\.\d ms\)", reply)
            assert re.match(r"\d\d:\d\d:\d\d\.\d{3} ", reply)  # timestamped
            await page.evaluate("document.getElementById('disconnect').click()")
            await page.wait_for("document.getElementById('status').textContent === 'disconnected'")
            assert page.errors == []
    finally:
        console.terminate()
        assert console.wait(timeout=10) == 0

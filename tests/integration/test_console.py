"""The browser console (`wsload client`) in headless Chromium against the reference server."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.browser import Page, chromium_page, needs_chromium
from tests.integration.conftest import WSLOAD, RunningServer, ServerFactory
from wsload.common.spec import build_spec
from wsload.common.steps import compile_workload


@contextmanager
def console(server: RunningServer) -> Iterator[str]:
    """``wsload client`` on a free port; yields the page's address; stops it."""
    proc = subprocess.Popen(
        [WSLOAD, "client", "--ws-url", server.ws_url, "--no-browser"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        found = re.search(r"(http://127\.0\.0\.1:\d+/\S*)", proc.stdout.readline())
        assert found, "the console printed no address"
        yield found.group(1)
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


@needs_chromium
@pytest.mark.timeout(90)
@pytest.mark.asyncio
async def test_connect_send_and_see_the_echo(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    with console(server) as address:
        async with chromium_page() as page:
            await page.goto(address)
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


def test_export_refuses_what_it_cannot_read_in_one_line(serve_factory: ServerFactory) -> None:
    """``POST /export`` answers 400 with the reasons; a good recording gets the TOML."""
    with console(serve_factory()) as address:
        export = address.split("/?")[0] + "/export"

        def post(body: bytes) -> tuple[int, str]:
            request = urllib.request.Request(export, data=body, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, response.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode()

        assert post(b"{not json") == (400, "the recording is not JSON")
        status, text = post(json.dumps({"events": [{"t": -1, "dir": "out"}]}).encode())
        assert status == 400
        assert text.startswith("events[1]: t: must be seconds")
        status, text = post(json.dumps({"events": [{"t": 0, "dir": "in", "data": "x"}]}).encode())
        assert (status, text) == (
            400,
            "nothing was sent on this connection: there is nothing to export",
        )
        sent = {"t": 0, "dir": "out", "kind": "json", "data": '{"type": "ping"}'}
        status, text = post(json.dumps({"url": "ws://127.0.0.1:9/ws", "events": [sent]}).encode())
        assert status == 200
        assert tomllib.loads(text)["steps"] == [{"send": {"type": "ping"}}]


def _click(element: str) -> str:
    return f"document.getElementById('{element}').click()"


def _log(kind: str) -> str:
    """JavaScript: the log lines of one kind (in, out, sys, err), as a list of texts."""
    return f"[...document.querySelectorAll('#log .{kind}')].map(e => e.textContent)"


async def _send(page: Page, button: str, message: str, replies: int) -> None:
    """Type a message, press a send button, wait until ``replies`` messages have arrived."""
    await page.evaluate(
        f"document.getElementById('message').value = {json.dumps(message)}; {_click(button)}"
    )
    await page.wait_for(f"{_log('in')}.length >= {replies}")


async def _wait_file(path: Path, timeout: float) -> None:
    """Until Chromium has written the download (it renames the file in place when done)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not _written(path):
        assert loop.time() < deadline, f"no download at {path} after {timeout} s"
        await asyncio.sleep(0.05)


def _written(path: Path) -> bool:
    return path.exists() and path.stat().st_size > 0


def _publish(server: RunningServer, arrived: int) -> None:
    """The server pushes one event to the page (its events API), unasked."""
    body = json.dumps({"event": "tick", "data": {"n": arrived}}).encode()
    request = urllib.request.Request(f"{server.api_url}/events", data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


@needs_chromium
@pytest.mark.timeout(120)
@pytest.mark.asyncio
async def test_record_a_conversation_and_download_it_as_a_scenario_that_replays(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    """Subscribe, a binary echo, then three passes of JSON + text among pushed events.

    The export (the page posts its recording to the console's /export) is a
    scenario the step language accepts: setup steps, a loop with ``m{seq}``,
    a think step for the pause, the pushed events left out with a comment;
    the downloaded file is the text area's; and ``wsload run`` replays it
    against the same server with every expect met.
    """
    server = serve_factory()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with console(server) as address:
        async with chromium_page() as page:
            await page.call(
                "Page.setDownloadBehavior", behavior="allow", downloadPath=str(downloads)
            )
            await page.goto(address)
            await page.evaluate(_click("connect"))
            await page.wait_for("document.getElementById('status').textContent === 'connected'")
            await _send(page, "send-json", '{"type": "subscribe", "events": ["tick"]}', 1)
            await _send(page, "send-binary", "00 ff 10", 2)
            _publish(server, 2)
            await page.wait_for(f"{_log('in')}.length >= 3")
            arrived = 3
            for n in (1, 2, 3):
                await _send(page, "send-json", f'{{"type": "msg", "id": "m{n}"}}', arrived + 1)
                arrived += 1
                if n == 2:
                    _publish(server, arrived)
                    arrived += 1
                    await page.wait_for(f"{_log('in')}.length >= {arrived}")
                await asyncio.sleep(0.7)  # the user thinks: a think step
                await _send(page, "send-text", f"hello {n}", arrived + 1)
                arrived += 1
            assert "recorded: 8 sent, 10 received" in await page.evaluate(
                "document.getElementById('recorded').textContent"
            )
            await page.evaluate(_click("download"))
            exported = await page.wait_for("document.getElementById('scenario').value")
            saved = downloads / "recorded.toml"
            await _wait_file(saved, timeout=10)
            assert saved.read_text(encoding="utf-8") == exported
            assert page.errors == []

    doc = tomllib.loads(exported)
    assert doc["ws_url"] == server.ws_url
    # a loaded machine may make the test itself pause over 0.5 s between two
    # sends (a think step the recording rightly has): only the 0.7 s one is certain
    setup = [step for step in doc["steps"] if "think" not in step]
    assert setup == [
        {"send": {"type": "subscribe", "events": ["tick"]}},
        {"name": "subscribed", "expect": {"type": "subscribed", "events": ["tick"]}},
        {"send_binary": "00ff10"},
        {"name": "binary reply", "expect_binary": "00ff10"},
    ]
    loop = doc["loop"]
    assert [step for step in loop if "think" not in step] == [
        {"send": {"type": "msg", "id": "m{seq}"}},
        {"name": "msg", "expect": {"type": "msg", "id": "m{seq}"}},
        {"send": "hello {seq}"},
        {"name": "reply", "expect": "hello {seq}"},
    ]
    assert list(loop[2]) == ["think"]
    assert loop[2]["think"] >= 0.6
    assert re.search(
        r"^# left out: 2 message\(s\) the server pushed unasked .*tick", exported, re.M
    )
    spec = build_spec(scenario=saved)
    assert [step.name for step in compile_workload(spec).programs[0].loop if step.expects] == [
        "msg",
        "reply",
    ]

    run = subprocess.run(
        [WSLOAD, "run", "--scenario", str(saved), "--num-clients", "1", "--duration", "2",
         "--json", str(tmp_path / "run.json")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    summary = json.loads((tmp_path / "run.json").read_text())
    steps = summary["steps"]
    assert steps["subscribed"]["met"] == steps["subscribed"]["expected"] == 1
    assert steps["msg"]["met"] >= 1
    assert all(s["timed_out"] == s["failed"] == 0 for s in steps.values())
    assert summary["unsolicited"] == 0  # every message the server sent was expected

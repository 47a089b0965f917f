"""The functional modes end to end: real server, real coordinator, one worker process."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.accounting import assert_balanced
from tests.integration.conftest import WSLOAD, ServerFactory, stats
from wsload.coordinator.checks_api import (
    ChecksFailed,
    WebSocketEventTester,
    assert_checks_pass,
    run_checks,
)


def by_name(summary: dict[str, object]) -> dict[str, dict[str, str]]:
    checks = summary["checks"]
    assert isinstance(checks, list)
    return {c["name"]: c for c in checks}


def test_test_all_passes_against_the_reference_server(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory()
    out = tmp_path / "all.json"
    proc = subprocess.run(
        [WSLOAD, "test", "--all", "--ws-url", server.ws_url, "--api-url", server.api_url,
         "-c", "3", "-d", "1", "--interval", "0.1", "-w", "1", "--json", str(out),
         "--junit", str(tmp_path / "junit.xml")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    document = json.loads(out.read_text())
    assert document["schema_version"] == 1
    results = document["modes"]
    assert set(results) == {"unit", "integration", "load", "event"}
    junit = ET.parse(tmp_path / "junit.xml").getroot()
    assert {s.get("name") for s in junit} == {f"wsload {m}" for m in results}
    assert all(s.get("failures") == "0" for s in junit)
    for mode in ("unit", "integration", "event"):
        assert results[mode]["ok"]
        assert results[mode]["worker"]  # ran as a job of exactly one worker
    assert results["event"]["total_received"] == results["event"]["total_expected"] == 15
    for mode in ("unit", "integration", "load", "event"):
        assert f"== {mode}: PASSED" in proc.stdout
    assert results["load"]["passed"] is True
    assert_balanced(results["load"])


@pytest.mark.asyncio
async def test_unit_battery_skips_echo_checks_on_a_non_echo_server() -> None:
    async def not_echo(ws: ServerConnection) -> None:
        async for _ in ws:
            await ws.send("something else")

    async with serve(not_echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        summary = await run_checks("unit", ws_url=f"ws://127.0.0.1:{port}/", reply_timeout=1.0)
    checks = by_name(summary)
    assert summary["ok"]
    assert checks["handshake"]["status"] == "pass"
    assert checks["echo probe"]["status"] == "skip"
    assert "does not echo" in checks["echo probe"]["reason"]
    for name in ("text echo", "binary echo", "1 MiB message", "unicode message", "empty message"):
        assert checks[name]["status"] == "skip"
        assert "needs an echo server" in checks[name]["reason"]
    assert checks["50 concurrent connections"]["status"] == "pass"


@pytest.mark.asyncio
async def test_wrong_expectation_fails_readably(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory()
    scenario = tmp_path / "order.toml"
    scenario.write_text(
        "[[steps]]\n"
        'send = \'{"type": "order", "items": [1, 2], "total": 3}\'\n'
        "[[steps]]\n"
        'expect = {type = "order", total = 4}\n'
        "timeout = 2\n"
        "[[steps]]\n"
        "close = true\n"
    )
    with pytest.raises(ChecksFailed) as info:
        await assert_checks_pass("integration", ws_url=server.ws_url, scenario=str(scenario))
    message = str(info.value)
    assert "step 2: expect" in message
    assert "$.total: expected 4, got 3" in message
    checks = list(by_name(info.value.summary).values())
    assert [c["status"] for c in checks] == ["pass", "pass", "fail", "skip"]


@pytest.mark.asyncio
async def test_event_mode_reports_the_exact_missing_count(serve_factory: ServerFactory) -> None:
    server = serve_factory("--drop-rate", "0.2", "--seed", "11")
    results = await WebSocketEventTester(
        server.api_url, server.ws_url, num_clients=4, event_count=25, event_wait=1.0,
        event_names=("alpha", "beta"),
    ).run_event_test()  # fmt: skip
    s = stats(server.api_url)
    assert results["total_expected"] == 4 * 2 * 25
    assert results["total_received"] == s["events_delivered"]
    missing = results["total_expected"] - results["total_received"]
    assert missing > 0
    assert results["missing_count"] == missing
    assert len(results["missing"]) == missing
    assert all(": alpha #" in m or ": beta #" in m for m in results["missing"])
    assert results["success_rate"] == pytest.approx(100.0 * results["total_received"] / 200)
    assert results["duplicates"] == 0
    assert not results["ok"]
    assert "events missing" in by_name(results)["deliveries"]["reason"]


@pytest.mark.asyncio
async def test_event_mode_charges_a_failed_trigger_as_missing(serve_factory: ServerFactory) -> None:
    """A trigger the API refuses (404) still owes its events: all of them missing, listed."""
    server = serve_factory()
    results = await WebSocketEventTester(
        server.api_url, server.ws_url, num_clients=2, event_count=3, event_wait=0.2,
        event_path="/no-such-path",
    ).run_event_test()  # fmt: skip
    assert (results["total_expected"], results["total_received"]) == (6, 0)
    assert results["success_rate"] == 0.0
    assert results["missing_count"] == len(results["missing"]) == 6
    assert results["missing"][:2] == [
        "event-client-0: test-event #1",
        "event-client-0: test-event #2",
    ]
    checks = by_name(results)
    assert checks["trigger test-event"]["status"] == "fail"
    assert "404" in checks["trigger test-event"]["reason"]
    assert checks["deliveries"]["reason"].startswith("6 of 6 events missing")


def test_no_mode_chosen_is_bad_input() -> None:
    proc = subprocess.run([WSLOAD, "test"], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 2
    assert "choose what to test" in proc.stderr


@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("curl", "openssl", "base64")),
    reason="the shell smoke check needs curl, openssl and base64",
)
def test_bash_smoke_check(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    ok = subprocess.run(
        [WSLOAD, "test", "--bash", "--ws-url", server.ws_url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASS handshake" in ok.stdout
    assert "PASS round trip" in ok.stdout
    wrong = server.ws_url.replace("/ws", "/nowhere")
    bad = subprocess.run(
        [WSLOAD, "test", "--bash", "--ws-url", wrong],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 1
    assert "FAIL handshake: expected HTTP 101" in bad.stdout

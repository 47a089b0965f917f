"""Numbers that hold against a service that pushes, and above the generator's capacity.

``wsload run`` as a user runs it (a subprocess, ``--json``) against the
reference server as a subprocess, on both engines; every figure is compared
with the server's own counters (``/api/stats``), and the accounting identity
is checked in total and per worker.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ServerFactory, stats
from wsload.common.spec import ENGINES

WSLOAD = str(Path(sys.executable).with_name("wsload"))
IDENTITY = ("sent", "received", "timed_out", "lost", "unanswered")


def run_json(tmp_path: Path, *args: str, timeout: float = 60) -> tuple[dict[str, Any], float]:
    """``wsload run ARGS --json``: the summary, and the run's wall-clock seconds."""
    out = tmp_path / "summary.json"
    started = time.monotonic()
    proc = subprocess.run(
        [WSLOAD, "run", *args, "--json", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    summary: dict[str, Any] = json.loads(out.read_text())
    return summary, took


def assert_identity(summary: dict[str, Any]) -> None:
    """``sent = received + timed_out + lost + unanswered``, in total and for every worker."""
    assert summary["balanced"]
    for counters in (summary["counters"], *summary["workers"].values()):
        sent, received, timed_out, lost, unanswered = (int(counters[k]) for k in IDENTITY)
        assert sent == received + timed_out + lost + unanswered, counters


def push_run(
    server_url: str, tmp_path: Path, engine: str, *extra: str
) -> tuple[dict[str, Any], float]:
    return run_json(
        tmp_path, "--ws-url", server_url, "--engine", engine, "--workers", "1",
        "-c", "10", "-d", "2", "--interval", "0.05", *extra,
    )  # fmt: skip


@pytest.mark.parametrize("engine", ENGINES)
def test_pushed_messages_are_not_replies(
    serve_factory: ServerFactory, tmp_path: Path, engine: str
) -> None:
    """Echoes 30 ms late, a heartbeat every 5 ms: the latency is the echo's, counts the server's."""
    server = serve_factory("--delay", "30", "--push-every", "5")
    summary, _ = push_run(server.ws_url, tmp_path, engine)
    c = summary["counters"]
    s = stats(server.api_url)
    assert_identity(summary)
    assert c["sent"] == s["messages_received"] > 0
    assert summary["total_received"] == c["received"] == s["echoes_sent"]
    assert summary["latency_percentiles"]["p50"] >= 0.030  # includes the delay
    # Every push that arrived is unsolicited (those still on the way at close never came).
    assert 0 < c["unsolicited"] <= s["pushed"]
    assert c["late"] == 0
    assert c["unsolicited"] + c["received"] <= s["messages_sent"]


@pytest.mark.parametrize("engine", ENGINES)
def test_match_order_is_fooled_by_pushes_only_on_request(
    serve_factory: ServerFactory, tmp_path: Path, engine: str
) -> None:
    """``--match order`` takes heartbeats for replies: the wrong figures are opt-in."""
    server = serve_factory("--delay", "30", "--push-every", "5")
    summary, _ = push_run(server.ws_url, tmp_path, engine, "--match", "order")
    c = summary["counters"]
    assert_identity(summary)
    assert c["unsolicited"] == 0
    assert c["late"] > 0  # the real echoes found their message already "answered"
    assert summary["latency_percentiles"]["p50"] < 0.030  # a heartbeat's timing, not the echo's


@pytest.mark.parametrize("engine", ENGINES)
def test_rate_above_capacity_ends_on_time_with_exact_accounting(
    serve_factory: ServerFactory, tmp_path: Path, engine: str
) -> None:
    """``--rate 1e6``: far more than one worker can send; the loop must not starve."""
    server = serve_factory()
    duration, drain = 3, 2
    summary, took = run_json(
        tmp_path, "--ws-url", server.ws_url, "--engine", engine, "--workers", "1", "-c", "10",
        "--rate", "1000000", "-d", str(duration), "--drain-timeout", str(drain),
    )  # fmt: skip
    c = summary["counters"]
    s = stats(server.api_url)
    # Start-up (a worker process) and close come on top of duration and drain.
    assert took < duration + drain + 8, took
    assert summary["elapsed"] < duration + drain + 3, summary["elapsed"]
    # Windows came during the run, not all at the end: every second sent something.
    sent_by_second = {row["second"]: row.get("sent", 0) for row in summary["time_series"]}
    assert all(sent_by_second.get(second, 0) > 0 for second in range(duration)), sent_by_second
    assert_identity(summary)
    assert c["sent"] == s["messages_received"] > 0
    # What the server answered arrived, except what was still in flight at stop.
    assert c["received"] <= s["messages_sent"] <= c["received"] + c["unanswered"]
    assert c["behind_schedule"] > 0
    assert c["cpu_ms"] > 0

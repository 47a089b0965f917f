"""A ``[[scenarios]]`` entry that never ran fails the run, end to end (issue 17's trial).

The trial's mixed.toml: a Socket.IO scenario against a real python-socketio
server (tests/servers/socketio_server.py) beside a STOMP one that the same
server refuses (HTTP 404 on its upgrade). The Socket.IO scenario met every
ack, and the run PASSED; it must fail, naming the scenario that tested nothing.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.accounting import assert_balanced
from tests.integration.conftest import WSLOAD
from tests.servers.socketio_server import SocketIOServer

MIXED = """
protocol = {name = "socketio", namespace = "/chat", auth = {token = "s3cret"}}
reply_timeout = 5
[[scenarios]]
name = "sio"
[[scenarios.loop]]
name = "chat"
emit = {event = "chat", data = {text = "x"}}
ack = true
[[scenarios.loop]]
think = 0.2
[[scenarios]]
name = "stompy"
protocol = {name = "stomp", login = "x"}
[[scenarios.loop]]
send = {destination = "/topic/a", body = "x"}
"""


@pytest.mark.timeout(120)
def test_a_scenario_that_never_connected_fails_the_run_by_name(tmp_path: Path) -> None:
    scenario, out = tmp_path / "mixed.toml", tmp_path / "out.json"
    scenario.write_text(MIXED)
    with SocketIOServer("--token", "s3cret") as server:
        proc = subprocess.run(
            [WSLOAD, "run", "--quiet", "--scenario", str(scenario), "--ws-url", server.url,
             "-w", "1", "-c", "4", "-d", "2", "--ramp-up", "0", "--json", str(out)],
            capture_output=True, text=True, timeout=100, check=False,
        )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert_balanced(doc)
    assert doc["scenarios"]["sio"]["iterations"] > 0
    assert doc["scenarios"]["stompy"] == {"unsolicited": 0, "iterations": 0, "clients": 2}
    assert doc["steps"]["chat"]["met"] == doc["steps"]["chat"]["expected"] > 0
    assert doc["nothing_tested"].startswith(
        "nothing tested in scenario 'stompy': its 2 clients never began an iteration"
    )
    assert "http_404" in doc["nothing_tested"]
    assert "wsload: FAILED: nothing tested in scenario 'stompy'" in proc.stdout + proc.stderr


@pytest.mark.timeout(120)
def test_the_socketio_example_fails_when_its_server_dies_mid_run(tmp_path: Path) -> None:
    """The trial killed the server mid-run: the acks met before passed the run. The
    example's thresholds (errors==0...) fail it now; and a dead server from the start
    is "nothing tested"."""
    out = tmp_path / "out.json"
    example = str(Path(__file__).resolve().parents[2] / "examples" / "socketio.toml")
    with SocketIOServer("--token", "s3cret", "--news-interval", "0.3") as server:
        proc = subprocess.Popen(
            [WSLOAD, "run", "--quiet", "--scenario", example, "--ws-url", server.url,
             "-w", "1", "-c", "2", "-d", "4", "--ramp-up", "0", "--connect-timeout", "2",
             "--json", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and server.stats()["events"].get("chat", 0) < 2:
                time.sleep(0.05)
            assert server.proc is not None
            server.proc.kill()  # the stimulus: the server dies with the clients connected
            server.proc.wait(timeout=30)
            output, _ = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 1, output
    doc = json.loads(out.read_text())
    assert doc["steps"]["chat"]["met"] > 0  # it tested something before the server died
    assert doc["errors"], output
    assert any(r.startswith("threshold errors==0 failed") for r in doc["verdict"]["reasons"])


TYPO = """
[[scenarios]]
name = "typo"
clients = 2
[[scenarios.steps]]
send = {type = "subscribe", topic = "nwes"}
[[scenarios.steps]]
name = "typo subscribed"
expect = {type = "subscribed", topic = "nwes"}
[[scenarios.loop]]
think = 3600
[scenarios.deliveries]
match = {type = "delivery"}
topic = "topic"
seq = "seq"
topics = ["nwes"]
"""


@pytest.mark.timeout(120)
def test_subscribers_of_a_misspelt_topic_are_named_and_fail_the_run(tmp_path: Path) -> None:
    """examples/fanout.toml against the reference server (--demo), plus two subscribers of
    "nwes": the others got their deliveries, these tested nothing."""
    scenario, out = tmp_path / "typo.toml", tmp_path / "out.json"
    example = Path(__file__).resolve().parents[2] / "examples" / "fanout.toml"
    scenario.write_text(example.read_text() + TYPO)
    proc = subprocess.run(
        [WSLOAD, "run", "--demo", "--quiet", "--scenario", str(scenario), "-w", "1", "-c", "6",
         "-d", "3", "--ramp-up", "0", "--json", str(out)],
        capture_output=True, text=True, timeout=100, check=False,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output
    doc = json.loads(out.read_text())
    topics = doc["fanout"]["topics"]
    assert topics["news"]["delivered"] > 0
    assert topics["nwes"]["subscriptions"] == 2
    assert topics["nwes"]["published"] == topics["nwes"]["deliveries"] == 0
    assert doc["nothing_tested"] == (
        "nothing tested for 2 subscribers: none of their topics was ever published (never "
        "published: nwes; published: news)"
    )
    assert (
        "  never published, nothing delivered: nwes (2 subscriptions); this run published to "
        "news (a misspelt topic? these subscriptions tested nothing)"
    ) in output.splitlines()

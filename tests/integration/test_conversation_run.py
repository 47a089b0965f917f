"""A conversation under load, end to end: ``wsload run`` with two local workers against the
reference server's ``/chat``, its per-step figures checked against the server's own counters.

Each user of the feeder has a room of its own, so a row handed to two clients (on two
workers) would show as a broadcast: none may happen. The server's heartbeats match no
expect, so they are unsolicited, never replies.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.accounting import assert_balanced
from tests.integration.conftest import WSLOAD, ServerFactory, stats

CLIENTS = 12

SCENARIO = """
num_clients = {clients}
duration = 3
ramp_up = 1
reply_timeout = 5

[feeder]
file = "users.csv"
mode = "unique"

[[steps]]
send = {{type = "login", user = "{{user}}", password = "{{password}}"}}
[[steps]]
name = "login"
expect = {{type = "login_ok"}}
capture = {{token = "token"}}
fail = {{type = "error"}}
[[steps]]
send = {{type = "join", room = "{{room}}", token = "{{token}}"}}
[[steps]]
name = "join"
expect = {{type = "joined", room = "{{room}}"}}

[[loop]]
send = {{type = "msg", id = "m{{seq}}", room = "{{room}}", token = "{{token}}", text = "hi"}}
[[loop]]
name = "ack"
expect = {{type = "ack", id = "m{{seq}}"}}
"""


@pytest.mark.timeout(120)
def test_two_workers_per_step_counts_equal_the_servers(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory("--chat-heartbeat", "100")
    rows = [f"user{i:03d},pw-user{i:03d},room-{i:03d}" for i in range(CLIENTS + 3)]
    (tmp_path / "users.csv").write_text("user,password,room\n" + "\n".join(rows) + "\n")
    scenario = scenario_path = tmp_path / "chat.toml"
    scenario.write_text(SCENARIO.format(clients=CLIENTS))
    out, csv, junit = tmp_path / "out.json", tmp_path / "out.csv", tmp_path / "junit.xml"
    proc = subprocess.run(
        [WSLOAD, "run", "--scenario", str(scenario),
         "--ws-url", server.ws_url.removesuffix("/ws") + "/chat", "-w", "2", "--quiet",
         "--json", str(out), "--csv", str(csv), "--junit", str(junit),
         "--threshold", "step.login.success_rate>=100", "--threshold", "step.ack.failed==0"],
        capture_output=True, text=True, timeout=100, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    chat = stats(server.api_url)["chat"]
    assert_balanced(doc)
    steps = doc["steps"]
    assert list(steps) == ["login", "join", "ack"]
    per_step = [*steps.items()] + [
        (name, counts) for w in doc["workers"].values() for name, counts in w["steps"].items()
    ]
    for name, counts in per_step:  # expected = met + ... per step, per worker and in total
        resolved = sum(counts[k] for k in ("met", "timed_out", "failed", "lost", "unanswered"))
        assert counts["expected"] == resolved, (name, counts)
    for name, total in steps.items():
        for key in ("expected", "met", "timed_out", "failed", "lost", "unanswered"):
            assert total[key] == sum(w["steps"][name][key] for w in doc["workers"].values())
    assert steps["login"]["met"] == steps["login"]["expected"] == chat["logins"] == CLIENTS
    assert steps["join"]["met"] == chat["joins"] == CLIENTS
    assert steps["ack"]["expected"] == chat["messages"]  # every message awaited its ack
    assert 0 < steps["ack"]["met"] <= chat["acks"]
    assert steps["ack"]["latency_percentiles"]["p50"] is not None
    # Both workers ran clients; their rows were disjoint: no room ever had two members.
    per_worker = [w["steps"]["login"]["expected"] for w in doc["workers"].values()]
    assert len(per_worker) == 2
    assert all(per_worker)
    assert sum(per_worker) == CLIENTS
    assert chat["broadcasts"] == 0
    # Heartbeats are unsolicited, never replies (one may be on its way at the close).
    assert 0 < doc["unsolicited"] <= chat["heartbeats"]
    scenario = doc["scenarios"]["default"]
    assert (scenario["unsolicited"], scenario["clients"]) == (doc["unsolicited"], CLIENTS)
    assert steps["ack"]["met"] <= scenario["iterations"] <= steps["ack"]["expected"]
    header = csv.read_text().splitlines()[0].split(",")
    assert [h for h in header if h.startswith("step.")] == [  # every expect step's, in order
        f"step.{n}.{k}" for n in ("login", "join", "ack")
        for k in ("expected", "met", "timed_out", "failed")
    ]  # fmt: skip
    params = doc["parameters"]
    assert params["scenario"] == str(scenario_path)
    assert params["feeder"]["mode"] == "unique"
    assert params["feeder"]["rows"] == CLIENTS + 3
    assert params["scenarios"] == [{"name": "default", "clients": CLIENTS}]
    cases = [c for c in ET.parse(junit).getroot().iter("testcase")
             if c.get("classname") == "wsload.load.steps"]  # fmt: skip
    assert [c.get("name") for c in cases] == ["login", "join", "ack"]
    assert all(c.find("failure") is None for c in cases)


NEVER_ACKED = """
num_clients = 2
duration = 2
interval = 0.2
reply_timeout = 0.3

[[steps]]
send = {type = "login", user = "user000", password = "pw-user000"}
[[steps]]
name = "login"
expect = {type = "login_ok"}

[[loop]]
send = {type = "msg", id = "m{seq}", room = "nowhere", token = "wrong", text = "hi"}
[[loop]]
name = "ack"
expect = {type = "ack", id = "m{seq}"}
"""


@pytest.mark.timeout(90)
def test_a_step_never_met_fails_the_run_and_every_output_agrees(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    """login is met, every ack times out (a wrong token gets an error, never an ack): exit 1,
    the first line names the step, the JSON verdict and the JUnit file agree."""
    server = serve_factory("--chat-heartbeat", "0")
    scenario = tmp_path / "never.toml"
    scenario.write_text(NEVER_ACKED)
    out, junit = tmp_path / "out.json", tmp_path / "junit.xml"
    proc = subprocess.run(
        [WSLOAD, "run", "--scenario", str(scenario),
         "--ws-url", server.ws_url.removesuffix("/ws") + "/chat", "-w", "1", "--quiet",
         "--json", str(out), "--junit", str(junit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    ack = doc["steps"]["ack"]
    assert ack["expected"] > 0
    assert ack["met"] == 0
    assert doc["steps"]["login"]["met"] == 2
    (reason,) = [r for r in doc["verdict"]["reasons"] if r.startswith("step 'ack'")]
    assert reason.startswith("step 'ack' never met: ")
    assert "timed out" in reason
    assert doc["passed"] is False
    assert proc.stdout.splitlines()[0] == f"wsload: FAILED: {reason}"
    assert "  Expects met:" in proc.stdout  # a conversation's wording
    suite = next(ET.parse(junit).getroot().iter("testsuite"))
    assert int(suite.get("failures") or 0) >= 1
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    failure = cases["ack"].find("failure")
    assert failure is not None
    assert (failure.get("message") or "").startswith(reason)


@pytest.mark.timeout(90)
def test_a_conversation_with_no_expect_step_tested_nothing(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    """Sends only: the echoes come back as unsolicited and no answer is checked: exit 1."""
    server = serve_factory()
    scenario = tmp_path / "sends.toml"
    scenario.write_text('num_clients = 1\nduration = 1.5\ninterval = 0.1\n\n'
                        '[[loop]]\nsend = "hello"\n')  # fmt: skip
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [WSLOAD, "run", "--scenario", str(scenario), "--ws-url", server.ws_url, "-w", "1",
         "--quiet", "--json", str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    sent = doc["total_sent"]
    assert sent > 0
    assert doc["expected"] == 0
    assert doc["nothing_tested"].startswith(  # then the first error seen, if any
        f"nothing tested: {sent} messages sent, but the scenario has no expect step, "
        "so no answer was checked"
    )
    assert proc.stdout.splitlines()[0] == f"wsload: FAILED: {doc['nothing_tested']}"

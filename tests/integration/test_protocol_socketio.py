"""Socket.IO under load, end to end: ``wsload run`` with two local workers against a real
python-socketio server (tests/servers/socketio_server.py), its per-step counts checked
for equality with the server's own counters.

The server pings every 0.2 s: if a ping or pong counted anywhere, sent, received
or unsolicited would be off by dozens. Its news broadcasts begin once every client
joined and end long before the run does, so each client was owed every one of them:
they are the run's only unsolicited messages.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.accounting import assert_balanced
from tests.integration.conftest import WSLOAD, ServerFactory
from tests.servers.socketio_server import SocketIOServer

REPO = Path(__file__).resolve().parents[2]
CLIENTS = 8
NEWS = 5
DELAY_MS = 50

SCENARIO = f"""
protocol = {{name = "socketio", namespace = "/chat", auth = {{token = "sekret"}}}}
num_clients = {CLIENTS}
duration = 4
ramp_up = 0.5
interval = 0
reply_timeout = 5

[[steps]]
name = "join"
emit = {{event = "join", data = {{room = "lobby"}}}}
ack = true
[[steps]]
name = "blob"
emit = {{event = "blob", data = {{size = 300}}}}
ack = true
capture = {{blob = "data.blob._binary"}}

[[loop]]
name = "chat"
emit = {{event = "chat", data = {{text = "hi {{seq}}", from = "{{client_id}}"}}}}
ack = true
[[loop]]
think = 0.05
"""


def run(*args: str, timeout: float = 100) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WSLOAD, "run", "--quiet", *args],
        capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO,
    )  # fmt: skip


@pytest.mark.timeout(150)
@pytest.mark.parametrize("engine", ["picows", "websockets"])
def test_two_workers_per_step_counts_equal_the_servers(engine: str, tmp_path: Path) -> None:
    scenario, out = tmp_path / "sio.toml", tmp_path / "out.json"
    scenario.write_text(SCENARIO)
    server_flags = (
        *("--ping-interval", "0.2", "--ping-timeout", "5", "--ack-delay-ms", str(DELAY_MS)),
        *("--news-interval", "0.2", "--news-count", str(NEWS), "--news-after", str(CLIENTS)),
        *("--token", "sekret"),
    )
    with SocketIOServer(*server_flags) as server:
        proc = run(
            "--scenario", str(scenario), "--ws-url", server.url, "-w", "2", "--json", str(out),
            "--engine", engine,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        counts = wait_disconnected(server)
    doc = json.loads(out.read_text())
    assert_balanced(doc)
    steps = doc["steps"]
    assert list(steps) == ["join", "blob", "chat"]
    for counts_of in [steps, *(w["steps"] for w in doc["workers"].values())]:
        for name, c in counts_of.items():  # expected = met + ... per step, per worker, in total
            resolved = sum(c[k] for k in ("met", "timed_out", "failed", "lost", "unanswered"))
            assert c["expected"] == resolved, (name, c)
    assert [w["steps"]["join"]["met"] > 0 for w in doc["workers"].values()] == [True, True]
    events = counts["events"]
    # every emit reached the server and every ack it wrote was taken: exactly
    assert steps["join"]["met"] == steps["join"]["expected"] == events["join"] == CLIENTS
    assert steps["blob"]["met"] == events["blob"] == CLIENTS  # binary ack reassembled, captured
    assert steps["chat"]["expected"] == steps["chat"]["met"] == events["chat"] > CLIENTS
    assert doc["total_sent"] == sum(events.values())
    assert doc["total_received"] == counts["acks"] == sum(s["met"] for s in steps.values())
    # the news: every broadcast reached every client, and nothing else was unsolicited
    assert counts["emitted"] == {"news": NEWS * CLIENTS}
    assert doc["unsolicited"] == NEWS * CLIENTS
    # the ack's latency includes the server's delay
    assert steps["chat"]["latency_percentiles"]["p50"] >= DELAY_MS / 1000  # seconds
    assert not doc["errors"], doc["errors"]
    assert counts["connections"] == CLIENTS
    assert counts["refused"] == 0


def wait_disconnected(server: SocketIOServer) -> dict[str, Any]:
    """The server's counters once every client it accepted has gone (bounded)."""
    deadline = time.monotonic() + 15
    while True:
        counts = server.stats()
        if counts["disconnects"] >= counts["connections"] or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


@pytest.mark.timeout(90)
def test_a_refused_connect_is_an_error_kind(tmp_path: Path) -> None:
    scenario, out = tmp_path / "sio.toml", tmp_path / "out.json"
    scenario.write_text(SCENARIO.replace('"sekret"', '"wrong"'))
    with SocketIOServer("--token", "sekret") as server:
        started = time.monotonic()
        proc = run(
            "--scenario", str(scenario), "--ws-url", server.url, "-w", "1", "-d", "2",
            "-c", "2", "--ramp-up", "0", "--json", str(out),
        )  # fmt: skip
        assert time.monotonic() - started < 60
        refused = server.stats()["refused"]
    assert proc.returncode != 0
    doc = json.loads(out.read_text())
    assert_balanced(doc)
    assert set(doc["errors"]) == {"socketio_connect_error"}, doc["errors"]
    # each refusal the clients read is one the server made (one per client may be in
    # flight when the run stops)
    assert refused - 2 <= doc["errors"]["socketio_connect_error"] <= refused
    assert doc["errors"]["socketio_connect_error"] > 0
    assert doc["steps"]["join"]["met"] == 0


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("ws_url", "option"),
    [
        ("ws://127.0.0.1:{port}/", ', path = "/rt/io/"'),  # the site's root + the path option
        ("ws://127.0.0.1:{port}/rt/io/?EIO=4&transport=websocket", ""),  # the Engine.IO URL
        ("ws://127.0.0.1:{port}/rt/io/?EIO=3&transport=polling", ""),  # made EIO 4 over WebSocket
    ],
)
def test_ws_url_is_the_sites_root_or_the_engineio_url(
    ws_url: str, option: str, tmp_path: Path
) -> None:
    scenario, out = tmp_path / "sio.toml", tmp_path / "out.json"
    scenario.write_text(SCENARIO.replace('token = "sekret"}', 'token = "sekret"}' + option, 1))
    with SocketIOServer("--path", "/rt/io/", "--token", "sekret") as server:
        proc = run(
            "--scenario", str(scenario), "--ws-url", ws_url.format(port=server.port), "-w", "1",
            "-d", "1.5", "-c", "1", "--ramp-up", "0", "--json", str(out),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert not doc["errors"], doc["errors"]
    assert doc["steps"]["join"]["met"] == 1
    assert doc["steps"]["chat"]["met"] > 0


@pytest.mark.timeout(120)
def test_a_server_that_stops_pinging_is_a_ping_timeout(tmp_path: Path) -> None:
    """The server frozen (SIGSTOP) 4.5 s, past pingInterval + pingTimeout (1 + 1 s): each connection
    ends with ping_timeout, then the clients reconnect once it runs again."""
    scenario, out = tmp_path / "sio.toml", tmp_path / "out.json"
    scenario.write_text(SCENARIO)
    flags = ("--ping-interval", "1", "--ping-timeout", "1", "--token", "sekret")
    with SocketIOServer(*flags) as server:
        assert server.proc is not None
        proc = subprocess.Popen(
            [WSLOAD, "run", "--quiet", "--scenario", str(scenario), "--ws-url", server.url,
             "-w", "1", "-d", "11", "-c", "2", "--ramp-up", "0", "--connect-timeout", "2",
             "--json", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            # both past the handshake: their join reached the server (a freeze during the
            # handshake would be a handshake_timeout instead)
            while server.stats()["events"].get("join", 0) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            os.kill(server.proc.pid, signal.SIGSTOP)
            time.sleep(4.5)  # the stimulus: silent for longer than the 2 s the server promised
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        try:
            # both back and joined again: the run has shown all it can; Ctrl-C ends it (it
            # still drains and writes the summary) rather than waiting out the 11 s, which
            # only bound the time the reconnects may take on a loaded box
            deadline = time.monotonic() + 30
            while server.stats()["events"].get("join", 0) < 4 and proc.poll() is None:
                assert time.monotonic() < deadline, "the clients did not join again"
                time.sleep(0.05)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            output, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        counts = wait_disconnected(server)
    doc = json.loads(out.read_text())
    assert_balanced(doc)
    assert doc["errors"].get("ping_timeout") == 2, (doc["errors"], output)
    assert doc["counters"]["reconnects"] >= 2
    assert counts["connections"] >= 4  # back after the freeze
    assert doc["steps"]["chat"]["met"] > 0


@pytest.mark.timeout(90)
def test_a_server_that_does_not_speak_socketio_is_an_error_kind(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    """``wsload serve``'s /ws echo never opens Engine.IO: the handshake times out, no hang."""
    server = serve_factory()
    scenario, out = tmp_path / "sio.toml", tmp_path / "out.json"
    scenario.write_text(SCENARIO)
    started = time.monotonic()
    proc = run(
        "--scenario", str(scenario), "--ws-url", server.ws_url, "-w", "1", "-d", "2",
        "-c", "2", "--ramp-up", "0", "--connect-timeout", "1", "--json", str(out),
    )  # fmt: skip
    assert time.monotonic() - started < 60
    assert proc.returncode != 0
    doc = json.loads(out.read_text())
    assert_balanced(doc)
    # it never opened Engine.IO: each connection costs a handshake_timeout, and nothing else
    # (the handshakes the run's end cuts short say so: handshake_unfinished)
    assert set(doc["errors"]) <= {"handshake_timeout", "handshake_unfinished"}, doc["errors"]
    assert doc["errors"]["handshake_timeout"] >= 2
    assert doc["steps"]["join"]["met"] == 0


@pytest.mark.timeout(120)
def test_the_shipped_example_runs_against_the_server(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    with SocketIOServer("--token", "s3cret", "--news-interval", "0.3") as server:
        proc = run(
            "--scenario", str(REPO / "examples" / "socketio.toml"), "--ws-url", server.url,
            "-w", "2", "-d", "3", "-c", "4", "--ramp-up", "0.5", "--json", str(out),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        counts = wait_disconnected(server)
    doc = json.loads(out.read_text())
    assert_balanced(doc)
    steps = doc["steps"]
    assert list(steps) == ["join", "chat", "news"]
    assert steps["join"]["met"] == counts["events"]["join"] == 4
    assert steps["chat"]["expected"] == steps["chat"]["met"] == counts["events"]["chat"] > 0
    assert steps["news"]["met"] > 0
    assert not doc["errors"], doc["errors"]


WELCOME_SCENARIO = """
protocol = {name = "socketio", namespace = "/chat"}
num_clients = 3
duration = 1.5
ramp_up = 0
interval = 0
reply_timeout = 5

[[steps]]
name = "welcome"
expect = {event = "welcome", data = {ns = "/chat"}}
[[steps]]
name = "join"
emit = {event = "join", data = {room = "lobby"}}
ack = true

[[loop]]
name = "chat"
emit = {event = "chat", data = {text = "hi {seq}"}}
ack = true
[[loop]]
think = 0.05
"""


@pytest.mark.timeout(90)
def test_an_event_the_connect_handler_emits_before_the_connect_is_kept(tmp_path: Path) -> None:
    """python-socketio writes what its connect handler emits before the namespace's
    CONNECT: the codec holds it and the first step (an expect) meets it."""
    scenario, out = tmp_path / "sio.toml", tmp_path / "out.json"
    scenario.write_text(WELCOME_SCENARIO)
    with SocketIOServer("--welcome") as server:
        proc = run(
            "--scenario", str(scenario), "--ws-url", server.url, "-w", "1", "--json", str(out),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        counts = wait_disconnected(server)
    doc = json.loads(out.read_text())
    assert_balanced(doc)
    assert not doc["errors"], doc["errors"]
    steps = doc["steps"]
    assert steps["welcome"]["met"] == steps["welcome"]["expected"] == 3
    assert counts["emitted"] == {"welcome": 3}
    assert steps["join"]["met"] == counts["events"]["join"] == 3
    assert steps["chat"]["met"] > 0
    assert doc["unsolicited"] == 0

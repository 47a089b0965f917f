"""STOMP over WebSocket end to end: ``wsload run`` against a real RabbitMQ (Web-STOMP).

The broker is a private RabbitMQ node (tests/servers/rabbitmq.py: Debian's
``rabbitmq-server``, one node for this module, about 6 s to start), and its
management API's counters are the truth wsload's figures must equal (read
before and after each run, once they have settled):

- a 2-worker run through the delay proxy (the broker's bytes come 50 ms
  late): subscribers (auto acks, and client-individual acks the codec sends)
  hold a topic subscription whose MESSAGE frames are ``[deliveries]``,
  publishers SEND with ``receipt = true``. The publish step's count equals
  the messages RabbitMQ got and confirmed, the deliveries equal what it
  delivered (and the acks it got), nothing is missing, the receipts'
  latency includes the 50 ms, and the heart-beats (every second both ways)
  kept every connection up without showing anywhere in the counts;
- the broker's bytes frozen (the proxy stopped with SIGSTOP) for more than
  twice its heart-beat interval: each connection counts ``heartbeat_timeout``
  once, closes and reconnects;
- RabbitMQ's ERRORs: a refused login counts ``stomp_error``, not a hang;
- a server that speaks something else (``wsload serve``'s echo ``/ws``):
  ``protocol_error`` in the summary, the run ends on time;
- ``examples/stomp.toml`` runs against the broker as written (shortened, its
  credentials the node's).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.accounting import assert_balanced
from tests.integration.conftest import WSLOAD, ServerFactory, wait_for
from tests.servers.delay_proxy import DelayProxy
from tests.servers.rabbitmq import STABLE_FOR, RabbitMQ, missing

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "stomp.toml"
RUN_TIMEOUT = 120.0
DELAY = 0.05  # the delay proxy's: in every receipt's latency
SUBSCRIBERS = 10  # of each ack mode
PUBLISHERS = 2
IDLE = 1.2  # seconds the idle node's totals must hold before a run (a sample and more)


@pytest.fixture(scope="module")
def broker() -> Iterator[RabbitMQ]:
    """One private RabbitMQ node for the module (its startup is the slow part)."""
    why = missing()
    if why is not None:
        pytest.skip(why)
    node = RabbitMQ()
    try:
        node.start()
    except RuntimeError as exc:  # installed but cannot run here: say why
        pytest.skip(f"RabbitMQ did not start: {exc}")
    try:
        print(f"RabbitMQ started in {node.startup_seconds:.1f} s")
        yield node
    finally:
        node.stop()


#: a publication: each publisher its own topic (its seq counts its own iterations)
BODY = '{topic = "p{client_id}", seq = "{seq}", sent_at = "{ts}"}'


def scenario(node: RabbitMQ) -> str:
    return f"""\
reply_timeout = 10
connect_timeout = 30

[protocol]
name = "stomp"
login = "{node.user}"
passcode = "{node.password}"
heart_beat = [1000, 1000]

[[scenarios]]
name = "auto"
clients = {SUBSCRIBERS}
[[scenarios.steps]]
name = "subscribed auto"
subscribe = {{destination = "/topic/load", id = "s1"}}
receipt = true
[[scenarios.loop]]
think = 3600
[scenarios.deliveries]
match = {{command = "MESSAGE"}}
topic = "body.topic"
seq = "body.seq"
sent_at = "body.sent_at"

[[scenarios]]
name = "acking"
clients = {SUBSCRIBERS}
[[scenarios.steps]]
name = "subscribed acking"
subscribe = {{destination = "/topic/load", id = "s2", ack = "client-individual"}}
receipt = true
[[scenarios.loop]]
think = 3600
[scenarios.deliveries]
match = {{command = "MESSAGE"}}
topic = "body.topic"
seq = "body.seq"
sent_at = "body.sent_at"

[[scenarios]]
name = "publishers"
clients = {PUBLISHERS}
rate = 20
[[scenarios.steps]]
think = 3                # every subscriber is subscribed before the first message
[[scenarios.loop]]
name = "publish"
send = {{destination = "/topic/load", body = {BODY}}}
publish = {{topic = "p{{client_id}}", seq = "{{seq}}"}}
receipt = true
"""


def run(
    tmp_path: Path, scenario: Path, ws_url: str, *flags: str
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    out = tmp_path / "summary.json"
    proc = subprocess.run(
        [WSLOAD, "run", "--scenario", str(scenario), "--ws-url", ws_url, *flags,
         "--json", str(out)],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    assert out.is_file(), proc.stdout + proc.stderr
    summary: dict[str, Any] = json.loads(out.read_text())
    assert_balanced(summary)
    return summary, proc


def step(summary: dict[str, Any], name: str) -> dict[str, Any]:
    """A step's figures (a mix prefixes its scenario's name)."""
    found: list[dict[str, Any]] = [
        s for n, s in summary["steps"].items() if n == name or n.endswith(f" {name}")
    ]
    assert len(found) == 1, (name, list(summary["steps"]))
    return found[0]


def quiet(node: RabbitMQ, stable_for: float = STABLE_FOR) -> dict[str, int]:
    """The node's message totals once no connection is left and they stopped moving.

    Before a run the node is idle (the previous test waited for its totals),
    so a shorter wait than after one does.
    """
    return node.settled(
        node.message_stats,
        until=lambda _: node.api("/api/overview")["object_totals"]["connections"] == 0,
        stable_for=stable_for,
    )


def grew(before: dict[str, int], after: dict[str, int], key: str) -> int:
    return after.get(key, 0) - before.get(key, 0)


@pytest.mark.timeout(240)
def test_two_workers_counts_equal_rabbitmqs(broker: RabbitMQ, tmp_path: Path) -> None:
    path = tmp_path / "stomp.toml"
    path.write_text(scenario(broker))
    clients = 2 * SUBSCRIBERS + PUBLISHERS
    before = quiet(broker, IDLE)
    with DelayProxy(broker.web_stomp_port, DELAY * 1000) as proxy:
        summary, proc = run(
            tmp_path, path, f"ws://127.0.0.1:{proxy.port}/ws",
            "-c", str(clients), "-d", "7", "--ramp-up", "1", "--workers", "2",
            "--drain-timeout", "5",
        )  # fmt: skip
    after = quiet(broker)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary["errors"] == {}, (summary["errors"], summary["error_texts"])
    counters = summary["counters"]
    # one connection each for the whole run: the heart-beats (1 s both ways, the
    # broker's bytes 50 ms late) kept them all up, none was dropped as dead
    assert counters["connects"] == clients, counters
    assert counters["reconnects"] == counters["disconnects"] == 0, counters
    # every publish was a message RabbitMQ got and confirmed with a RECEIPT
    publish = step(summary, "publish")
    published = grew(before, after, "publish")
    assert publish["met"] == publish["expected"] == published > 0, (publish, after)
    assert grew(before, after, "confirm") == published
    for name in ("subscribed auto", "subscribed acking"):
        subscribed = step(summary, name)
        assert subscribed["met"] == subscribed["expected"] == SUBSCRIBERS, subscribed
        assert subscribed["latency_percentiles"]["p50"] >= DELAY, subscribed
    # the receipts' latency includes the delay injected in front of the broker
    assert publish["latency_percentiles"]["p50"] >= DELAY, publish
    # deliveries: what RabbitMQ delivered, each subscriber owed every publication
    fanout = summary["fanout"]["total"]
    assert fanout["published"] == published, fanout
    assert fanout["delivered"] == fanout["expected"] == 2 * SUBSCRIBERS * published, fanout
    assert (fanout["missing"], fanout["duplicates"], fanout["out_of_order"]) == (0, 0, 0)
    assert fanout["latency_percentiles"]["p50"] >= DELAY  # the MESSAGEs came late too
    assert grew(before, after, "deliver_no_ack") == SUBSCRIBERS * published, after
    # the client-individual subscribers' messages were ACKed by the codec, each one
    assert grew(before, after, "deliver") == SUBSCRIBERS * published, after
    assert grew(before, after, "ack") == SUBSCRIBERS * published, after
    # housekeeping is invisible: received = the answers, nothing unsolicited,
    # sent = the steps' frames (no CONNECT, heart-beat, ACK or DISCONNECT)
    assert summary["unsolicited"] == 0
    assert summary["total_received"] == publish["met"] + 2 * SUBSCRIBERS
    assert summary["total_sent"] == publish["met"] + 2 * SUBSCRIBERS


SILENT = """\
reply_timeout = 5
connect_timeout = 30

[protocol]
name = "stomp"
login = "USER"
passcode = "PASS"
heart_beat = [1000, 1000]

[[steps]]
name = "subscribed"
subscribe = {destination = "/topic/silent"}
receipt = true
[[loop]]
think = 3600
"""


@pytest.mark.timeout(240)
def test_a_silent_server_is_a_heartbeat_timeout(broker: RabbitMQ, tmp_path: Path) -> None:
    """The broker's bytes stop (its proxy frozen) for longer than twice its heart-beat."""
    clients = 4
    path = tmp_path / "silent.toml"
    path.write_text(SILENT.replace("USER", broker.user).replace("PASS", broker.password))
    out = tmp_path / "summary.json"
    with DelayProxy(broker.web_stomp_port, 0) as proxy:
        assert proxy.proc is not None
        run = subprocess.Popen(
            [WSLOAD, "run", "--scenario", str(path), "--ws-url", f"ws://127.0.0.1:{proxy.port}/ws",
             "-c", str(clients), "-d", "10", "--ramp-up", "1", "--workers", "1",
             "--json", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_for(
                "every client to connect to RabbitMQ",
                lambda: len(broker.api("/api/connections")) == clients,
                60,
            )
            time.sleep(1.5)  # the subscriptions' receipts and a heart-beat or two
            proxy.proc.send_signal(signal.SIGSTOP)
            try:
                time.sleep(4.0)  # > 2 x the 1 s interval, whenever the last beat came
            finally:
                proxy.proc.send_signal(signal.SIGCONT)
            resumed = time.time()
            # every client connected again and subscribed (the broker lists its consumer
            # on a connection made after the freeze): the run has shown all it can, and
            # Ctrl-C ends it (it still drains, so the subscriptions' receipts are awaited,
            # and writes the summary) rather than waiting out the 10 s, which only bound
            # the time the reconnects may take on a loaded box
            wait_for(
                "every client to subscribe again",
                lambda: run.poll() is not None or resubscribed(broker, resumed) >= clients,
                60,
            )
            if run.poll() is None:
                run.send_signal(signal.SIGINT)
            stdout, stderr = run.communicate(timeout=RUN_TIMEOUT)
        finally:
            if run.poll() is None:
                run.kill()
                run.communicate()
    assert "Traceback" not in stderr, stderr
    summary = json.loads(out.read_text())
    assert_balanced(summary)
    # each connection saw the silence once, closed, and its client connected again
    assert summary["errors"].get("heartbeat_timeout") == clients, (summary["errors"], stdout)
    assert summary["counters"]["reconnects"] >= clients, summary["counters"]
    assert step(summary, "subscribed")["met"] >= 2 * clients


def resubscribed(broker: RabbitMQ, since: float) -> int:
    """Consumers on connections the broker accepted after ``since`` (wall clock, s)."""
    connected_at = {
        c["name"]: c.get("connected_at", 0) / 1000 for c in broker.api("/api/connections")
    }
    return sum(
        1
        for c in broker.api("/api/consumers")
        if connected_at.get(c.get("channel_details", {}).get("connection_name"), 0) > since
    )


def test_a_node_that_cannot_start_says_why_and_leaves_nothing(tmp_path: Path) -> None:
    """The fixture skips with this text: the node's own output, no process left behind."""
    if missing() is not None:
        pytest.skip(str(missing()))
    script = tmp_path / "rabbitmq-server"
    script.write_text("#!/bin/sh\necho 'ERROR: cannot boot (test)'\nexit 1\n")
    script.chmod(0o755)
    node = RabbitMQ(startup_timeout=30, server=script)
    with pytest.raises(RuntimeError, match=r"rabbitmq-server exited: .*cannot boot"):
        node.start()
    assert node._epmd is None  # our epmd was stopped too (it had started)
    assert node._node is None


REFUSED = """\
reply_timeout = 5
interval = 0.2
protocol = {name = "stomp", login = "nobody", passcode = "wrong"}

[[steps]]
subscribe = {destination = "/topic/x"}
receipt = true
[[loop]]
name = "publish"
send = {destination = "/topic/x", body = "hi"}
receipt = true
"""


@pytest.mark.timeout(240)
def test_a_refused_login_is_a_stomp_error(broker: RabbitMQ, tmp_path: Path) -> None:
    path = tmp_path / "refused.toml"
    path.write_text(REFUSED)
    began = time.monotonic()
    summary, _ = run(tmp_path, path, broker.ws_url, "-c", "2", "-d", "2", "--workers", "1")
    assert time.monotonic() - began < 60
    assert summary["errors"].get("stomp_error", 0) >= 2, summary["errors"]
    assert "Access refused" in json.dumps(summary["error_texts"]), summary["error_texts"]
    assert all(s["met"] == 0 for s in summary["steps"].values())


WRONG = """\
reply_timeout = 5
interval = 0.2
protocol = "stomp"

[[steps]]
subscribe = {destination = "/topic/x"}
receipt = true
"""


@pytest.mark.timeout(120)
def test_a_server_that_speaks_another_protocol_is_an_error_kind_not_a_hang(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    path = tmp_path / "wrong.toml"
    path.write_text(WRONG)
    server = serve_factory()
    began = time.monotonic()
    summary, _ = run(tmp_path, path, server.ws_url, "-c", "2", "-d", "2", "--workers", "1")
    assert time.monotonic() - began < 60
    assert summary["errors"].get("protocol_error", 0) >= 2, summary["errors"]
    assert all(s["met"] == 0 for s in summary["steps"].values())


@pytest.mark.timeout(240)
def test_the_example_runs_against_rabbitmq(broker: RabbitMQ, tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    credentials = 'login = "guest", passcode = "guest"'
    assert credentials in text
    path = tmp_path / "stomp.toml"
    path.write_text(
        text.replace(credentials, f'login = "{broker.user}", passcode = "{broker.password}"')
    )
    before = quiet(broker, IDLE)
    summary, proc = run(
        tmp_path, path, broker.ws_url, "-c", "6", "-d", "5", "--ramp-up", "1", "--workers", "2"
    )
    after = quiet(broker)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary["errors"] == {}, (summary["errors"], summary["error_texts"])
    publish = step(summary, "publish")
    assert publish["met"] == publish["expected"] == grew(before, after, "publish") > 0
    fanout = summary["fanout"]["total"]
    assert fanout["delivered"] == fanout["expected"] == grew(before, after, "deliver_no_ack")
    assert fanout["missing"] == 0

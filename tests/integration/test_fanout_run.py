"""Fan-out end to end: ``wsload run`` with 2 workers against the reference server's ``/pubsub``.

Issue 16's done-when: one publisher and 1,000 subscribers over 2 workers,
the server dropping and duplicating a seeded share of deliveries and
delaying every fan-out; wsload's ``fanout`` figures are compared with the
server's own counters (``/api/stats`` under ``pubsub``). Every subscriber is
subscribed before the publisher's first publication (its ``[[steps]]`` think
first), so no delivery the server dropped belonged to a publication a
subscriber was not owed.

Exact, equal to the server's counters: every subscriber is owed every
publication; no early or extra seq, nothing out of order; missing = the
deliveries the server dropped, duplicates = those it duplicated, deliveries
= the frames it wrote. What makes it exact is the run's end: publishers stop
at the end of the duration, subscribers stay until no delivery came for a
while (the drain), and a subscription's record is taken only when its
connection is gone, so a delivery that comes during the close handshake is
in it (and one after it counts nowhere).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.integration.conftest import WSLOAD, ServerFactory, stats, wait_for

SUBSCRIBERS = 1000
RATE = 5  # 5,000 deliveries/s: the Python broker keeps up on a loaded 2-core box
DELAY = 0.05
RUN_TIMEOUT = 120.0

SCENARIO = f"""\
reply_timeout = 10
connect_timeout = 30

[[scenarios]]
name = "subscribers"
weight = 1
[[scenarios.steps]]
send = {{type = "subscribe", topic = "news"}}
[[scenarios.steps]]
name = "subscribed"
expect = {{type = "subscribed", topic = "news"}}
[[scenarios.loop]]
think = 3600
[scenarios.deliveries]
match = {{type = "delivery"}}
topic = "topic"
seq = "seq"
sent_at = "sent_at"
topics = ["news"]

[[scenarios]]
name = "publisher"
clients = 1
rate = {RATE}
[[scenarios.steps]]
think = 3                # every subscriber is subscribed before the first publication
[[scenarios.loop]]
send = {{type = "publish", topic = "news", seq = "{{seq}}", sent_at = "{{ts}}", data = "x"}}
publish = {{topic = "news", seq = "{{seq}}"}}
[[scenarios.loop]]
name = "published"
expect = {{type = "published", topic = "news"}}
"""


def run(
    tmp_path: Path, ws_url: str, api_url: str, text: str = SCENARIO, clients: int = SUBSCRIBERS + 1
) -> dict[str, Any]:
    scenario = tmp_path / "fanout.toml"
    scenario.write_text(text)
    out = tmp_path / "summary.json"
    proc = subprocess.run(
        [WSLOAD, "run", "--scenario", str(scenario), "--ws-url", ws_url, "--api-url", api_url,
         "-c", str(clients), "-d", "8", "--ramp-up", "1", "--workers", "2",
         "--drain-timeout", "5", "--json", str(out)],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    assert out.is_file(), proc.stdout + proc.stderr
    summary: dict[str, Any] = json.loads(out.read_text())
    return summary


def settled(api_url: str) -> None:
    """The run's connections closed on the server, and no publication awaits its fan-out."""

    def done() -> bool:
        pubsub = stats(api_url)["pubsub"]
        return bool(pubsub["connections_open"] == 0 and pubsub["pending"] == 0)

    wait_for("the run's connections to close and fan-outs to end on the server", done, 10)


def test_missing_and_duplicates_are_what_the_server_did(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory(
        "--drop-deliveries", "0.02", "--duplicate-deliveries", "0.01",
        "--delivery-delay", str(DELAY * 1000), "--seed", "11", "--chat-heartbeat", "0",
    )  # fmt: skip
    base = server.ws_url.removesuffix("/ws")
    summary = run(tmp_path, base + "/pubsub", server.api_url)
    settled(server.api_url)
    did = stats(server.api_url)["pubsub"]["topics"]["news"]
    fanout = summary["fanout"]
    got = fanout["topics"]["news"]
    assert fanout["total"]["published"] == got["published"] == did["published"] > 0
    assert did["dropped"] > 0  # the faults happened
    assert did["duplicated"] > 0
    assert (got["early"], got["extra"], got["out_of_order"]) == (0, 0, 0), (got, did)
    assert got["expected"] == SUBSCRIBERS * got["published"]  # all subscribed before the first
    assert got["expected"] == got["delivered"] + got["missing"]
    # exactly what the server did: every delivery it wrote was read and recorded
    assert got["missing"] == did["dropped"] + did["dropped_slow"], (got, did)
    assert got["duplicates"] == did["duplicated"], (got, did)
    assert got["deliveries"] == did["deliveries"], (got, did)
    assert got["delivered"] == did["deliveries"] - did["duplicated"], (got, did)
    latency = got["latency_percentiles"]
    assert latency["p50"] >= DELAY  # the server's delivery delay is in every delivery's latency
    assert fanout["clock"]["source"] == "wsload"


#: a server slower to fan out than the gap between publications (the publisher
#: awaits nothing): the deliveries of the last ones come after a quiet spell
SLOW_FAN_OUT = 0.9
_AWAITS_NOTHING = SCENARIO.split('[[scenarios.loop]]\nname = "published"')[0]
SPARSE = _AWAITS_NOTHING.replace(f"rate = {RATE}", "rate = 2")


def test_deliveries_slower_than_the_publications_gap_are_waited_for(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory(
        "--delivery-delay", str(SLOW_FAN_OUT * 1000), "--seed", "3", "--chat-heartbeat", "0"
    )
    base = server.ws_url.removesuffix("/ws")
    subscribers = 40
    summary = run(tmp_path, base + "/pubsub", server.api_url, SPARSE, subscribers + 1)
    settled(server.api_url)
    did = stats(server.api_url)["pubsub"]["topics"]["news"]
    got = summary["fanout"]["topics"]["news"]
    assert got["published"] == did["published"] > 0
    assert got["expected"] == subscribers * got["published"]
    assert (got["missing"], did["dropped_slow"]) == (0, 0), (got, did)  # the last ones too
    assert got["deliveries"] == did["deliveries"] == got["expected"], (got, did)
    assert got["latency_percentiles"]["p50"] >= SLOW_FAN_OUT


def test_a_broker_stall_shows_in_the_delivery_latency(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    """Publications that come during a stall fan out when it ends: their deliveries'
    latency (from the publisher's intended time) holds the wait, the others' does not."""
    server = serve_factory(
        "--stall-every", "2", "--stall-for", "0.8", "--seed", "5", "--chat-heartbeat", "0"
    )
    base = server.ws_url.removesuffix("/ws")
    subscribers = 20
    summary = run(tmp_path, base + "/pubsub", server.api_url, SPARSE.replace(
        "rate = 2", "rate = 10"), subscribers + 1)  # fmt: skip
    settled(server.api_url)
    got = summary["fanout"]["topics"]["news"]
    assert got["missing"] == 0, got
    assert got["expected"] == subscribers * got["published"] > 0
    latency = got["latency_percentiles"]
    assert latency["max"] >= 0.5  # held by a stall: up to its 0.8 s
    assert latency["p50"] < 0.3  # most publications came between stalls

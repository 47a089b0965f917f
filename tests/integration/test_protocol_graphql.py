"""GraphQL over WebSocket end to end: ``wsload run`` against a real strawberry-graphql server.

The server (tests/servers/graphql_server.py) is strawberry's own aiohttp
view speaking graphql-transport-ws; it counts at the wire what it received
and wrote, and those counters are the truth wsload's figures must equal:

- a 2-worker run: watchers hold two subscriptions (the posts' fan-out and a
  ticking stream) whose ``next`` messages are ``[deliveries]``, posters run
  a mutation (the server delays it: the injected latency) and a query. The
  steps' counts equal the server's operations and results, the deliveries
  equal the events it wrote, nothing is missing, and the server's pings
  (every 0.2 s) are answered without showing anywhere in the counts;
- GraphQL errors: a query the schema refuses fails its step as
  ``graphql_error``, a refused subscription counts ``graphql_error``;
- a server that speaks something else (``wsload serve``'s echo ``/ws``):
  ``protocol_error`` in the summary, the run ends on time;
- ``examples/graphql.toml`` runs against the server as written (shortened).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.typing import Subprotocol

from tests.accounting import assert_balanced
from tests.integration.conftest import WSLOAD, ServerFactory, wait_for
from tests.servers.graphql_server import GraphQLServer
from wsload.common.program import Action
from wsload.common.protocol import STEP_COUNTERS
from wsload.worker.codecs.base import Frame
from wsload.worker.codecs.graphql import GraphQLCodec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "graphql.toml"
RUN_TIMEOUT = 120.0
DELAY = 0.05  # the server's mutation delay: in every post's latency
WATCHERS = 20
TICKS = 20

TICKS_QUERY = f"subscription {{ e: ticks(interval: 0.1, count: {TICKS}) {{ seq sentAt topic }} }}"
POST_QUERY = "mutation P($t: String!) { post(text: $t) { seq } }"
SCENARIO = f"""\
reply_timeout = 10
connect_timeout = 30
protocol = {{name = "graphql", payload = {{token = "t-{{client_id}}"}}}}

[[scenarios]]
name = "watchers"
clients = {WATCHERS}
[[scenarios.steps]]
subscribe = {{query = "subscription {{ e: events(topic: \\"news\\") {{ seq sentAt topic }} }}"}}
[[scenarios.steps]]
subscribe = {{query = "{TICKS_QUERY}", id = "ticks"}}
[[scenarios.loop]]
think = 3600
[scenarios.deliveries]
match = {{type = "next"}}
topic = "payload.data.e.topic"
seq = "payload.data.e.seq"
sent_at = "payload.data.e.sentAt"
topics = ["news", "ticks"]
source = "server"

[[scenarios]]
name = "posters"
clients = 2
rate = 10
[[scenarios.steps]]
think = 2
[[scenarios.loop]]
name = "post"
query = {{query = "{POST_QUERY}", variables = {{t = "m{{seq}}"}}}}
[[scenarios.loop]]
name = "hello"
query = {{query = "{{ hello(name: \\"{{client_id}}\\") }}"}}
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
    for name, counts in summary["steps"].items():
        others = sum(int(counts[k]) for k in STEP_COUNTERS if k != "expected")
        assert counts["expected"] == others, (name, counts)
    return summary, proc


def settled(server: GraphQLServer) -> dict[str, Any]:
    """The server's counters once every connection of the run has closed."""
    wait_for(
        "the run's connections to close on the server",
        lambda: server.stats()["connections_open"] == 0,
        10,
    )
    return server.stats()


def step(summary: dict[str, Any], name: str) -> dict[str, Any]:
    """A step's figures (a mix prefixes its scenario's name)."""
    steps: dict[str, dict[str, Any]] = summary["steps"]
    found = [s for n, s in steps.items() if n == name or n.endswith(f" {name}")]
    assert len(found) == 1, (name, list(steps))
    return found[0]


@pytest.mark.timeout(180)
def test_two_workers_counts_equal_the_servers(tmp_path: Path) -> None:
    scenario = tmp_path / "graphql.toml"
    scenario.write_text(SCENARIO)
    with GraphQLServer(
        "--mutation-delay-ms", str(DELAY * 1000), "--ping-interval", "0.2"
    ) as server:
        summary, proc = run(
            tmp_path, scenario, server.ws_url,
            "-c", str(WATCHERS + 2), "-d", "6", "--ramp-up", "1", "--workers", "2",
            "--drain-timeout", "5",
        )  # fmt: skip
        did = settled(server)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary["errors"] == {}, summary["errors"]
    assert did["connections"] == WATCHERS + 2  # one each: nothing failed, nothing reconnected
    assert did["received"]["connection_init"] == WATCHERS + 2
    # every post and hello was a subscribe message the server ran, and each was answered
    post, hello = step(summary, "post"), step(summary, "hello")
    assert post["met"] == post["expected"] == did["operations"]["mutation"] > 0, (post, did)
    assert post["met"] == did["results"]["mutation"]
    assert hello["met"] == hello["expected"] == did["operations"]["query"] > 0, (hello, did)
    assert hello["met"] == did["results"]["query"]
    assert did["operations"]["subscription"] == 2 * WATCHERS
    # the mutation's latency includes the delay the server injected
    assert post["latency_percentiles"]["p50"] >= DELAY, post  # seconds
    assert hello["latency_percentiles"]["p50"] < post["latency_percentiles"]["p50"]
    # deliveries: exactly what the server wrote, nothing missing
    fanout = summary["fanout"]
    news, ticks = fanout["topics"]["news"], fanout["topics"]["ticks"]
    assert ticks["delivered"] == did["events_sent"]["ticks"] == WATCHERS * TICKS, (ticks, did)
    assert news["delivered"] == did["events_sent"]["events"], (news, did)
    # every watcher was subscribed before the first post (the posters think first);
    # the last posts may race with the watchers' close at the end
    assert news["delivered"] >= WATCHERS * (did["published"]["news"] // 2) > 0, (news, did)
    for got in (news, ticks):
        assert (got["missing"], got["duplicates"], got["out_of_order"]) == (0, 0, 0), got
        assert got["subscriptions"] == WATCHERS
    # housekeeping: the server pinged every connection, each ping was answered,
    # and none of it is a message in wsload's counts
    assert did["pings_sent"] >= WATCHERS
    assert did["pings_sent"] - did["connections"] <= did["pongs_received"] <= did["pings_sent"]
    assert summary["unsolicited"] == 0
    assert summary["total_received"] == post["met"] + hello["met"]
    # sent: the steps' subscribe messages only (connection_init and pongs are not messages)
    assert summary["counters"]["sent"] == did["received"]["subscribe"], (summary["counters"], did)
    assert did["received"]["pong"] == did["pongs_received"]


ERRORS = """\
reply_timeout = 5
interval = 0.2
protocol = "graphql"

[[steps]]
subscribe = {query = "subscription { nope }"}
[[loop]]
name = "good query"
query = {query = "{ hello }"}
[[loop]]
name = "bad query"                # fails: the rest of the iteration is skipped, as for an expect
query = {query = "{ nope }"}
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("engine", ["picows", "websockets"])
def test_graphql_errors_are_counted_not_fatal(tmp_path: Path, engine: str) -> None:
    scenario = tmp_path / "errors.toml"
    scenario.write_text(ERRORS)
    with GraphQLServer() as server:
        summary, _ = run(
            tmp_path, scenario, server.ws_url,
            "-c", "2", "-d", "2", "--workers", "1", "--engine", engine,
        )  # fmt: skip
        did = settled(server)
    bad, good = step(summary, "bad query"), step(summary, "good query")
    assert bad["failed"] == bad["expected"] == did["errors_sent"] - 2 > 0, (bad, did)
    assert bad["met"] == 0
    assert good["met"] == good["expected"] == did["results"]["query"] > 0, (good, did)
    # the refused subscription (one per client) and every refused query: graphql_error,
    # and the connections went on (one per client, never closed by the error)
    assert summary["errors"]["graphql_error"] == did["errors_sent"], summary["errors"]
    assert did["connections"] == 2


UNSUBSCRIBE = """\
reply_timeout = 5
interval = 0.2
protocol = "graphql"

[[loop]]
subscribe = {query = "subscription { ticks(interval: 0.05) { seq } }", id = "t{seq}"}
[[loop]]
name = "tick"
expect = {type = "next", id = "t{seq}"}
capture = {n = "payload.data.ticks.seq"}
[[loop]]
unsubscribe = {id = "t{seq}"}
[[loop]]
name = "hello"
query = {query = "query Q($n: String!) { hello(name: $n) }", variables = {n = "tick {n}"}}
capture = {greeting = "payload.data.hello"}
"""


@pytest.mark.timeout(120)
def test_subscribe_expect_unsubscribe(tmp_path: Path) -> None:
    """A subscription's next met by an expect, ended by unsubscribe; a query using a capture."""
    scenario = tmp_path / "unsubscribe.toml"
    scenario.write_text(UNSUBSCRIBE)
    with GraphQLServer() as server:
        summary, proc = run(
            tmp_path, scenario, server.ws_url, "-c", "2", "-d", "2", "--workers", "1"
        )
        did = settled(server)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary["errors"] == {}, summary["errors"]
    tick, hello = step(summary, "tick"), step(summary, "hello")
    # one tick per subscription: the expect takes the first, unsubscribe ends it
    assert tick["met"] == tick["expected"] == did["operations"]["subscription"] > 0, (tick, did)
    # every iteration unsubscribed, but one a client was in when the run stopped
    # (no new message goes out then: its expect is drained, its unsubscribe never sent)
    subscriptions = did["operations"]["subscription"]
    assert subscriptions - 2 <= did["received"]["complete"] <= subscriptions
    assert hello["met"] == hello["expected"] == did["results"]["query"] > 0, (hello, did)
    # a tick still on its way when its unsubscribe left is unsolicited, never a failure;
    # so are those of a subscription left open at the stop (read until the close)
    extra = did["events_sent"]["ticks"] - tick["met"]
    assert 0 <= extra - summary["unsolicited"] <= 2, (extra, summary["unsolicited"])


@pytest.mark.timeout(120)
def test_a_server_that_speaks_another_protocol_is_an_error_kind_not_a_hang(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    scenario = tmp_path / "wrong.toml"
    scenario.write_text(ERRORS)
    server = serve_factory()
    began = time.monotonic()
    summary, _ = run(tmp_path, scenario, server.ws_url, "-c", "2", "-d", "2", "--workers", "1")
    assert time.monotonic() - began < 60
    assert summary["errors"].get("protocol_error", 0) >= 2, summary["errors"]
    assert summary["steps"] == {} or all(s["met"] == 0 for s in summary["steps"].values())


@pytest.mark.timeout(120)
def test_a_refused_connection_init_is_an_error_kind(tmp_path: Path) -> None:
    """The server closes with 4403 on a wrong token: counted per connection, then retried."""
    scenario = tmp_path / "token.toml"
    scenario.write_text(ERRORS.replace('"graphql"', '{name = "graphql", payload = {token = "no"}}'))
    with GraphQLServer("--token", "yes") as server:
        began = time.monotonic()
        summary, _ = run(tmp_path, scenario, server.ws_url, "-c", "2", "-d", "2", "--workers", "1")
        assert time.monotonic() - began < 60
        did = settled(server)
    assert did["rejected"] == did["connections"] >= 2
    assert set(summary["errors"]) == {"closed_4403"}, summary["errors"]
    # each refusal counted (but one a client may not have read when the run stopped)
    assert did["rejected"] - 2 <= summary["errors"]["closed_4403"] <= did["rejected"]
    assert summary["counters"]["sent"] == 0  # no step ran before a connection_ack


BAD = """\
protocol = {name = "graphql", legacy = "yes", paylod = {}}
[[steps]]
emit = {event = "x"}
[[loop]]
query = {variables = {a = 1}}
[[loop]]
subscribe = {query = "subscription { e }", ack = true}
"""


def test_bad_graphql_scenarios_exit_2_before_the_run(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text(BAD)
    proc = subprocess.run(
        [WSLOAD, "run", "--scenario", str(scenario), "--ws-url", "ws://127.0.0.1:9/graphql"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    # every problem at once, one line each, before any process started
    fragments = [
        "unknown option 'paylod' (did you mean 'payload'?)",
        "legacy must be true or false",
        "step 1: 'emit' is not a step of protocol \"graphql\"",
        "loop: step 1: query: needs query",
        "loop: step 2: subscribe: unknown key 'ack'",
    ]
    assert len(lines) == len(fragments), proc.stderr
    for line, fragment in zip(lines, fragments, strict=True):
        assert fragment in line, (fragment, line)


@pytest.mark.timeout(180)
def test_example_runs_against_the_server(tmp_path: Path) -> None:
    with GraphQLServer("--token", "demo", "--ping-interval", "0.5") as server:
        summary, proc = run(
            tmp_path, EXAMPLE, server.ws_url,
            "-c", "12", "-d", "4", "--ramp-up", "1", "--workers", "2", "--reply-timeout", "10",
        )  # fmt: skip
        did = settled(server)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert did["rejected"] == 0  # the example's connection_init payload carries the token
    assert summary["errors"] == {}, summary["errors"]
    post, hello = step(summary, "post"), step(summary, "hello")
    assert post["met"] == did["results"]["mutation"] > 0
    assert hello["met"] == did["results"]["query"] > 0
    news = summary["fanout"]["topics"]["news"]
    assert news["delivered"] == did["events_sent"]["events"] > 0
    assert news["missing"] == 0
    assert summary["unsolicited"] == 0


LEGACY = """\
reply_timeout = 10

[[scenarios]]
name = "watchers"
clients = 5
protocol = {name = "graphql", legacy = true}
[[scenarios.steps]]
subscribe = {query = "subscription { events { seq sentAt } }"}
[[scenarios.loop]]
think = 3600
[scenarios.deliveries]
match = {type = "data"}
seq = "payload.data.events.seq"
sent_at = "payload.data.events.sentAt"
topics = ["news"]
source = "server"

[[scenarios]]
name = "posters"
clients = 1
rate = 10
protocol = "graphql"
[[scenarios.steps]]
think = 1
[[scenarios.loop]]
name = "post"
query = {query = "mutation { post(text: \\"x\\") { seq } }"}
"""


@pytest.mark.timeout(120)
def test_legacy_watchers_and_graphql_transport_ws_posters(tmp_path: Path) -> None:
    """legacy = true speaks graphql-ws (strawberry's legacy handler runs subscriptions only),
    beside posters on graphql-transport-ws: each scenario its own protocol."""
    scenario = tmp_path / "legacy.toml"
    scenario.write_text(LEGACY)
    with GraphQLServer() as server:  # its graphql-ws keep-alive: a ka every second
        summary, proc = run(
            tmp_path, scenario, server.ws_url, "-c", "6", "-d", "4", "--workers", "1"
        )
        did = settled(server)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary["errors"] == {}, summary["errors"]
    post = step(summary, "post")
    assert post["met"] == post["expected"] == did["results"]["mutation"] > 0, (post, did)
    news = summary["fanout"]["topics"]["news"]
    assert news["delivered"] == did["events_sent"]["events"] > 0, (news, did)
    assert (news["missing"], news["subscriptions"]) == (0, 5)
    assert did["sent"]["ka"] >= 5  # legacy housekeeping came and counted nowhere
    assert summary["unsolicited"] == 0
    assert did["received"]["start"] == 5  # legacy subscribe messages


async def converse(url: str, options: dict[str, Any]) -> tuple[list[Any], list[Any], int]:
    """Drive the codec over a real socket (no wsload engine): views, failures, frames read."""
    codec = GraphQLCodec(options)
    views: list[Any] = []
    failures: list[Any] = []
    frames = 0
    offered = [Subprotocol(p) for p in codec.subprotocols(options)]
    async with websockets.connect(url, subprotocols=offered) as ws:

        async def send(out: list[Frame]) -> None:
            for f in out:
                await ws.send(f)

        async def read_until(done: Any) -> None:
            nonlocal frames
            while not done():
                data = await asyncio.wait_for(ws.recv(), 10)
                frames += 1
                raw = data.encode() if isinstance(data, str) else data
                got = codec.receive(time.monotonic(), raw, isinstance(data, str))
                await send(got.replies)
                views.extend(json.loads(m.view) for m in got.messages)
                if got.failure is not None:
                    failures.append(got.failure)

        await send(codec.open(time.monotonic()))
        await read_until(lambda: codec.ready)
        out, key = codec.encode(Action.QUERY, {"query": "{ hello }"}, True)
        await send(out)
        await read_until(lambda: any(v.get("answer") == key for v in views))
        sub = {"query": "subscription { ticks(interval: 0.05, count: 3) { seq } }", "id": "t"}
        await send(codec.encode(Action.SUBSCRIBE, sub, False)[0])
        await read_until(lambda: len([v for v in views if v.get("id") == "t"]) == 3)
        await send(codec.encode(Action.SUBSCRIBE, {"query": "subscription { nope }"}, False)[0])
        await read_until(lambda: failures)
        await send(codec.goodbye())
    return views, failures, frames


@pytest.mark.timeout(60)
@pytest.mark.parametrize("legacy", [False, True])
def test_the_codec_speaks_both_protocols_with_strawberry(legacy: bool) -> None:
    """The codec alone against strawberry's own handlers: graphql-transport-ws and the
    legacy graphql-ws (``legacy = true``), housekeeping (pings, ka) swallowed."""
    with GraphQLServer("--ping-interval", "0.05") as server:
        views, failures, frames = asyncio.run(converse(server.ws_url, {"legacy": legacy}))
        did = server.stats()
    result = "data" if legacy else "next"
    if legacy:  # strawberry's graphql-ws handler runs subscriptions only: an error answer
        error = {"message": "queries are not allowed"}
        assert views[0] == {"answer": "q1", "type": "error", "error": error}
    else:
        hello = {"data": {"hello": "hello world"}}
        assert views[0] == {"answer": "q1", "type": "next", "payload": hello}
    assert [v["payload"]["data"]["ticks"]["seq"] for v in views[1:]] == [1, 2, 3]
    assert all(v == {"id": "t", "type": result, "payload": v["payload"]} for v in views[1:])
    assert [f.kind for f in failures] == ["graphql_error"]
    assert did["operations"] == {"query": 1, "subscription": 2}
    # the server's housekeeping came (legacy: ka every second, at once on connect;
    # graphql-transport-ws: our test server's pings) and is in no view
    assert frames > len(views) + len(failures)

"""The reference test server as a real subprocess, driven by real clients on loopback.

WebSocket traffic goes through the ``websockets`` asyncio client, HTTP
through urllib (in a thread inside async tests); nothing is mocked. Timing
assertions only use lower bounds or wide margins, so a loaded machine makes
a test slower, not red.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK

from tests.integration.conftest import (
    URL_LINE,
    WSLOAD,
    RunningServer,
    ServerFactory,
    start_server,
)
from wsload.common.spec import MAX_PAYLOAD_SIZE
from wsload.testserver.app import MAX_MESSAGE_SIZE
from wsload.testserver.connection import MAX_QUEUED_REPLIES

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
Reply = tuple[int, dict[str, Any], dict[str, str]]


def http(method: str, url: str, body: bytes | None = None) -> Reply:
    """One request: status, JSON body, headers (errors included)."""
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with _NO_PROXY.open(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read()), dict(exc.headers)


async def ahttp(method: str, url: str, body: bytes | None = None) -> Reply:
    return await asyncio.to_thread(http, method, url, body)


async def stats(server: RunningServer) -> dict[str, Any]:
    return (await ahttp("GET", f"{server.api_url}/stats"))[1]


async def stats_when(
    server: RunningServer, ready: Callable[[dict[str, Any]], bool], within: float = 5.0
) -> dict[str, Any]:
    """Poll ``/api/stats`` until ``ready`` holds (the server counts a close after the client)."""
    deadline = time.monotonic() + within
    while True:
        s = await stats(server)
        if ready(s) or time.monotonic() > deadline:
            return s
        await asyncio.sleep(0.02)


def ws_connect(server: RunningServer, **kwargs: Any) -> connect:
    return connect(server.ws_url, proxy=None, compression=None, **kwargs)


async def nothing_arrives(ws: ClientConnection, within: float = 0.3) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), timeout=within)
    except TimeoutError:
        return True
    return False


def assert_no_traceback(server: RunningServer) -> None:
    assert "Traceback" not in server.stderr(), server.stderr()


# -- start-up ---------------------------------------------------------------


def test_prints_the_url_line_then_every_endpoint(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    assert URL_LINE.match(server.line.rstrip("\n"))  # first, and unchanged: scripts parse it
    assert server.line.endswith("\n")
    assert server.proc.stdout is not None
    base = f"127.0.0.1:{server.port}"
    assert server.proc.stdout.readline() == (
        f"endpoints: echo ws://{base}/ws chat ws://{base}/chat pubsub ws://{base}/pubsub "
        f"api http://{base}/api (events, publish, health, stats)\n"
    )
    assert server.ws_url == f"ws://127.0.0.1:{server.port}/ws"
    assert server.api_url == f"http://127.0.0.1:{server.port}/api"
    assert server.port != 0
    status, body, _ = http("GET", f"{server.api_url}/health")
    assert (status, body["status"]) == (200, "ok")


@pytest.mark.asyncio
async def test_ipv6_host_is_bracketed(serve_factory: ServerFactory) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    server = serve_factory(host="::1")
    assert server.ws_url == f"ws://[::1]:{server.port}/ws"
    assert server.api_url == f"http://[::1]:{server.port}/api"
    async with ws_connect(server) as ws:
        await ws.send("over v6")
        assert await ws.recv() == "over v6"
    assert (await ahttp("GET", f"{server.api_url}/health"))[0] == 200


# -- /ws ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_echo_ping_and_exact_counters(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    sent: list[str | bytes] = []
    got: list[str | bytes] = []
    async with ws_connect(server) as ws:

        async def exchange(message: str | bytes) -> str | bytes:
            await ws.send(message)
            sent.append(message)
            got.append(await ws.recv())
            return got[-1]

        for i in range(100):
            message = json.dumps({"type": "test", "seq": i, "pad": "x" * i})
            assert await exchange(message) == message
        blob = bytes(range(256)) * 4
        reply = await exchange(blob)
        assert isinstance(reply, bytes)
        assert reply == blob
        assert await exchange('  {"type": "ping"}') == '{"type": "pong"}'
        for other in ["not json, ping", '{"type": "ping"', '{"type": "other"}', "héllo ✓ ∞", ""]:
            assert await exchange(other) == other
        assert await exchange(b'{"type": "ping"}') == b'{"type": "ping"}'  # binary: echoed
    size = sum(len(m.encode()) if isinstance(m, str) else len(m) for m in sent)
    size_back = sum(len(m.encode()) if isinstance(m, str) else len(m) for m in got)
    s = await stats_when(server, lambda s: s["connections_open"] == 0)
    assert s["connections_opened"] == 1
    assert s["connections_open"] == 0
    assert s["messages_received"] == len(sent) == 108
    assert s["messages_sent"] == len(got) == 108
    assert (s["echoes_sent"], s["pongs_sent"], s["acks_sent"]) == (107, 1, 0)
    assert (s["dropped"], s["events_published"], s["events_delivered"]) == (0, 0, 0)
    assert s["bytes_received"] == size
    assert s["bytes_sent"] == size_back
    assert s["uptime"] > 0


@pytest.mark.asyncio
async def test_large_messages(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    mib = 1024 * 1024
    async with ws_connect(server, max_size=2 * mib) as ws:
        blob = bytes(range(256)) * (mib // 256)
        await ws.send(blob)
        assert await ws.recv() == blob
        text = "é" * (mib // 2)
        await ws.send(text)
        assert await ws.recv() == text
    # Over the limit: the server fails the connection (1009, or a reset while
    # the client is still sending), counts nothing, and carries on.
    with pytest.raises((ConnectionClosedError, ConnectionError)):
        await _send_and_receive(server, b"\0" * (MAX_MESSAGE_SIZE + 1))
    async with ws_connect(server) as ws:
        await ws.send("after")
        assert await ws.recv() == "after"
    s = await stats(server)
    assert (s["messages_received"], s["bytes_received"]) == (3, 2 * mib + 5)
    assert_no_traceback(server)


@pytest.mark.asyncio
async def test_the_documented_maximum_payload_is_echoed(serve_factory: ServerFactory) -> None:
    """``--payload-size 16777216`` (MAX_PAYLOAD_SIZE) is documented: the server takes it."""
    server = serve_factory()
    text = '{"seq": 1, "pad": "' + "x" * (MAX_PAYLOAD_SIZE - 21) + '"}'
    assert len(text) == MAX_PAYLOAD_SIZE
    async with ws_connect(server, max_size=None) as ws:
        await ws.send(text)
        assert await asyncio.wait_for(ws.recv(), timeout=30) == text
    s = await stats(server)
    assert (s["messages_received"], s["echoes_sent"]) == (1, 1)
    assert_no_traceback(server)


async def _send_and_receive(server: RunningServer, message: bytes) -> str | bytes:
    async with ws_connect(server, max_size=None) as ws:
        await ws.send(message)
        return await ws.recv()


@pytest.mark.asyncio
async def test_subscribe_acks_accumulate(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    async with ws_connect(server) as ws:
        await ws.send(json.dumps({"type": "subscribe", "events": ["b", "a"]}))
        assert json.loads(await ws.recv()) == {"type": "subscribed", "events": ["a", "b"]}
        await ws.send(json.dumps({"type": "subscribe", "events": ["c"]}))
        assert json.loads(await ws.recv()) == {"type": "subscribed", "events": ["a", "b", "c"]}
        malformed = json.dumps({"type": "subscribe", "events": "a"})
        await ws.send(malformed)
        assert await ws.recv() == malformed  # not a valid subscription: echoed
    s = await stats(server)
    assert (s["acks_sent"], s["echoes_sent"], s["messages_sent"]) == (2, 1, 3)


@pytest.mark.asyncio
async def test_events_reach_subscribers_only(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    async with (
        ws_connect(server) as a,
        ws_connect(server) as b,
        ws_connect(server) as everything,
        ws_connect(server) as other,
        ws_connect(server) as silent,
    ):
        for ws, events in ((a, ["tick"]), (b, ["tick", "x"]), (other, ["tock"])):
            await ws.send(json.dumps({"type": "subscribe", "events": events}))
            assert json.loads(await ws.recv())["type"] == "subscribed"
        await everything.send('{"type": "subscribe"}')
        assert json.loads(await everything.recv())["events"] == ["*"]

        before = time.time()
        body = json.dumps({"event": "tick", "data": {"x": [1, "two"]}, "count": 3}).encode()
        status, answer, _ = await ahttp("POST", f"{server.api_url}/events", body)
        assert status == 200
        assert answer == {
            "event": "tick",
            "count": 3,
            "subscribers": 3,
            "deliveries": 9,
            "dropped": 0,
            "undelivered": 0,
        }
        ids: list[list[str]] = []
        for ws in (a, b, everything):
            got = [json.loads(await ws.recv()) for _ in range(3)]
            assert [e["seq"] for e in got] == [1, 2, 3]
            for e in got:
                assert (e["type"], e["event"], e["data"]) == ("event", "tick", {"x": [1, "two"]})
                assert before - 1 <= e["sent_at"] <= time.time() + 1
            ids.append([e["id"] for e in got])
        assert ids[0] == ids[1] == ids[2]  # one id per event, the same for every subscriber
        assert len(set(ids[0])) == 3
        assert await nothing_arrives(other)
        assert await nothing_arrives(silent, within=0.05)

        status, again, _ = await ahttp("POST", f"{server.api_url}/events", b'{"event": "tick"}')
        assert (status, again["deliveries"]) == (200, 3)
        second = json.loads(await a.recv())
        assert second["seq"] == 1
        assert second["data"] is None
        assert second["id"] not in ids[0]  # ids are unique across calls
        status, nobody, _ = await ahttp("POST", f"{server.api_url}/events", b'{"event": "n"}')
        assert (nobody["subscribers"], nobody["deliveries"]) == (1, 1)
        await everything.recv()
    s = await stats(server)
    assert s["events_published"] == 5
    assert s["events_delivered"] == 13
    assert s["events_undelivered"] == 0
    assert s["messages_sent"] == 4 + 13  # acks + events


@pytest.mark.asyncio
async def test_stats_reset_keeps_the_open_gauge(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    async with ws_connect(server) as ws:
        for _ in range(3):
            await ws.send("x")
            await ws.recv()
        uptime = (await stats(server))["uptime"]
        status, zeroed, _ = await ahttp("POST", f"{server.api_url}/stats/reset")
        assert status == 200
        s = await stats(server)
        assert s["connections_open"] == zeroed["connections_open"] == 1
        assert s["uptime"] >= uptime
        assert s.pop("connections_by_address") == {}
        assert set(s.pop("chat").values()) == {0}  # /chat's own (test_chat_server.py)
        assert set(s.pop("pubsub")["total"].values()) == {0}  # test_pubsub_server.py
        counters = {k: v for k, v in s.items() if k not in ("connections_open", "uptime")}
        assert set(counters.values()) == {0}
        await ws.send("y")
        await ws.recv()
    s = await stats(server)
    assert (s["messages_received"], s["echoes_sent"]) == (1, 1)


# -- fault injection ---------------------------------------------------------


@pytest.mark.asyncio
async def test_delay_holds_every_reply_and_keeps_order(serve_factory: ServerFactory) -> None:
    server = serve_factory("--delay", "150")
    async with ws_connect(server) as ws:
        sent_at: list[float] = []
        for i in range(5):
            sent_at.append(time.monotonic())
            await ws.send(f"m{i}")
            await asyncio.sleep(0.01)
        s = await stats(server)
        assert (s["messages_received"], s["echoes_sent"]) == (5, 0)  # counted when sent
        for i in range(5):
            assert await ws.recv() == f"m{i}"
            assert time.monotonic() - sent_at[i] >= 0.15
    s = await stats(server)
    assert (s["echoes_sent"], s["dropped"]) == (5, 0)


@pytest.mark.asyncio
async def test_push_every_sends_heartbeats_without_an_id(serve_factory: ServerFactory) -> None:
    server = serve_factory("--push-every", "20", "--delay", "200")
    async with ws_connect(server) as ws, ws_connect(server) as other:
        await ws.send('{"seq": 1}')
        pushes: list[dict[str, Any]] = []
        while True:  # heartbeats come while the delayed echo waits
            message = await asyncio.wait_for(ws.recv(), timeout=5)
            if message == '{"seq": 1}':
                break
            pushes.append(json.loads(message))
        assert len(pushes) >= 3
        assert all(p["type"] == "heartbeat" and "seq" not in p for p in pushes)
        numbers = [p["n"] for p in pushes]
        assert numbers == sorted(set(numbers))  # numbered, never one twice
        assert json.loads(await asyncio.wait_for(other.recv(), timeout=5))["type"] == "heartbeat"
    s = await stats_when(server, lambda s: s["connections_open"] == 0)
    assert s["pushed"] >= len(pushes) + 1
    assert s["messages_sent"] == s["echoes_sent"] + s["pushed"]
    assert (s["messages_received"], s["echoes_sent"]) == (1, 1)
    assert_no_traceback(server)


@pytest.mark.asyncio
async def test_drop_rate_one_answers_nothing(serve_factory: ServerFactory) -> None:
    server = serve_factory("--drop-rate", "1")
    async with ws_connect(server) as ws:
        for message in ("x", b"y", '{"type": "ping"}', '{"type": "subscribe"}', "z"):
            await ws.send(message)
        await stats_when(server, lambda s: s["dropped"] == 5)
        # A dropped message is lost on the way: the subscription never happened.
        _, published, _ = await ahttp("POST", f"{server.api_url}/events", b'{"event": "e"}')
        assert published["subscribers"] == 0
        assert await nothing_arrives(ws)
    s = await stats(server)
    assert (s["messages_received"], s["dropped"], s["messages_sent"]) == (5, 5, 0)
    assert s["bytes_sent"] == 0


@pytest.mark.asyncio
async def test_drop_rate_loses_events_too(serve_factory: ServerFactory) -> None:
    server = serve_factory("--drop-rate", "0.3", "--seed", "5")
    async with ws_connect(server) as ws:
        for attempt in range(1, 30):  # the subscription itself may be lost: retry
            await ws.send('{"type": "subscribe", "events": ["e"]}')
            s = await stats_when(server, lambda s, n=attempt: s["acks_sent"] + s["dropped"] == n)
            if s["acks_sent"]:
                assert json.loads(await ws.recv())["type"] == "subscribed"
                break
        body = b'{"event": "e", "count": 200}'
        _, answer, _ = await ahttp("POST", f"{server.api_url}/events", body)
        assert answer["deliveries"] + answer["dropped"] == 200
        assert 20 <= answer["dropped"] <= 100
        got = [json.loads(await ws.recv())["seq"] for _ in range(answer["deliveries"])]
        assert got == sorted(got)
        assert len(set(got)) == len(got)
        assert await nothing_arrives(ws, within=0.1)
    s = await stats(server)
    assert (s["events_delivered"], s["events_dropped"]) == (answer["deliveries"], answer["dropped"])


@pytest.mark.asyncio
async def test_drop_rate_is_reproducible_with_a_seed(serve_factory: ServerFactory) -> None:
    runs: list[list[str]] = []
    for _ in range(2):
        server = serve_factory("--drop-rate", "0.5", "--seed", "42")
        async with ws_connect(server) as ws:
            for i in range(40):
                await ws.send(str(i))
            s = await stats_when(server, lambda s: s["echoes_sent"] + s["dropped"] == 40)
            replies = [await ws.recv() for _ in range(s["echoes_sent"])]
            assert await nothing_arrives(ws, within=0.1)
        assert s["messages_received"] == 40
        assert 0 < s["dropped"] < 40
        runs.append([str(r) for r in replies])
    assert runs[0] == runs[1]


@pytest.mark.asyncio
async def test_close_after_n_messages(serve_factory: ServerFactory) -> None:
    server = serve_factory("--close-after", "3")
    async with ws_connect(server) as ws:
        for i in range(3):
            await ws.send(str(i))
        assert [await ws.recv() for _ in range(3)] == ["0", "1", "2"]
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
        assert (ws.close_code, ws.close_reason) == (1000, "close-after")
    s = await stats_when(server, lambda s: s["connections_open"] == 0)
    assert (s["messages_received"], s["echoes_sent"], s["connections_open"]) == (3, 3, 0)


@pytest.mark.asyncio
async def test_close_after_with_delay_drops_what_follows(serve_factory: ServerFactory) -> None:
    server = serve_factory("--close-after", "3", "--delay", "200")
    async with ws_connect(server) as ws:
        for i in range(5):  # all five arrive before the close is due
            await ws.send(str(i))
        assert [await ws.recv() for _ in range(3)] == ["0", "1", "2"]
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
        assert (ws.close_code, ws.close_reason) == (1000, "close-after")
    s = await stats_when(server, lambda s: s["connections_open"] == 0)
    assert (s["messages_received"], s["echoes_sent"], s["dropped"]) == (5, 3, 2)


@pytest.mark.asyncio
async def test_stall_holds_replies_until_it_ends(serve_factory: ServerFactory) -> None:
    server = serve_factory("--stall-every", "1", "--stall-for", "0.5")
    n = 24
    sent_at: dict[str, float] = {}
    latency: dict[str, float] = {}
    arrived: list[float] = []
    async with ws_connect(server) as ws:

        async def send() -> None:
            for i in range(n):
                sent_at[str(i)] = time.monotonic()
                await ws.send(str(i))
                await asyncio.sleep(0.05)

        async def receive() -> None:
            for _ in range(n):
                reply = str(await ws.recv())
                arrived.append(time.monotonic())
                latency[reply] = arrived[-1] - sent_at[reply]

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(send())
            tasks.create_task(receive())
    assert list(latency) == [str(i) for i in range(n)]  # in order
    assert max(latency.values()) >= 0.3  # a message met a stall near its start
    assert min(latency.values()) < 0.2  # and some did not
    gaps = [b - a for a, b in itertools.pairwise(arrived)]
    assert sum(gap < 0.02 for gap in gaps) >= 3  # held replies leave together
    s = await stats(server)
    assert (s["messages_received"], s["echoes_sent"]) == (n, n)


@pytest.mark.asyncio
async def test_client_vanishing_with_replies_pending(serve_factory: ServerFactory) -> None:
    server = serve_factory("--delay", "300")
    async with ws_connect(server) as ws:
        for i in range(10):
            await ws.send(str(i))
        await stats_when(server, lambda s: s["messages_received"] == 10)
        ws.transport.abort()  # no close frame, no FIN handshake: just gone
    s = await stats_when(server, lambda s: s["connections_open"] == 0 and s["dropped"] == 10)
    assert (s["connections_open"], s["dropped"], s["echoes_sent"]) == (0, 10, 0)
    async with ws_connect(server) as ws:  # still serving
        await ws.send("still here")
        assert await ws.recv() == "still here"
    assert_no_traceback(server)


async def flood_a_delayed_server(
    server: RunningServer, url: str, counters: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    """Send far more than the reply queue holds to a server delaying replies for minutes.

    ``counters`` picks the endpoint's counters from ``/api/stats`` (its
    received count is ``received``). Waits until the client has sent twice
    the bound and the server has paused reading, checks that the server read
    exactly one frame past a full queue, then leaves without a close frame;
    returns the counters once the server has closed the connection.
    """
    bound, sent = MAX_QUEUED_REPLIES, 0

    async def flood(ws: ClientConnection) -> None:
        nonlocal sent
        for i in range(10 * bound):  # blocks on TCP backpressure long before the end
            await ws.send(f"m{i}")
            sent += 1

    async with connect(url, proxy=None, compression=None) as ws:
        sender = asyncio.create_task(flood(ws))
        try:
            s = await stats_when(
                server,
                lambda s: counters(s)["replies_queued"] == bound and sent >= 2 * bound,
                within=60,
            )
            c = counters(s)
            assert (c["replies_queued"], c["reads_paused"], sent >= 2 * bound) == (bound, 1, True)
            # It stopped reading: one frame past a full queue waits for room, nothing after it.
            assert c["received"] == bound + 1, c
            assert counters(await stats(server))["received"] == bound + 1
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            # Gone with a reset (SO_LINGER 0: a plain close would leave the unsent flood
            # queued in this kernel, still on its way): the paused server, which reads
            # nothing, must notice anyway.
            sock = ws.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            ws.transport.abort()
    s = await stats_when(
        server,
        lambda s: counters(s)["connections_open"] == 0 and counters(s)["replies_queued"] == 0,
        within=30,
    )
    c = counters(s)
    assert (c["connections_open"], c["replies_queued"]) == (0, 0)
    return c


@pytest.mark.asyncio
async def test_delay_bounds_the_reply_queue_and_stops_reading(
    serve_factory: ServerFactory,
) -> None:
    """A client sending faster than a delayed server answers costs a bounded queue."""
    server = serve_factory("--delay", "600000")

    def ws_counters(s: dict[str, Any]) -> dict[str, Any]:
        return {**s, "received": s["messages_received"]}

    c = await flood_a_delayed_server(server, server.ws_url, ws_counters)
    assert c["messages_received"] == c["dropped"] > MAX_QUEUED_REPLIES  # nothing answered
    assert c["echoes_sent"] == 0
    status, zeroed, _ = await ahttp("POST", f"{server.api_url}/stats/reset")
    assert (status, zeroed["replies_queued"], zeroed["reads_paused"]) == (200, 0, 0)
    assert_no_traceback(server)


# -- HTTP errors ---------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_server() -> Iterator[RunningServer]:
    """One server for the whole error table: it must survive every bad request in turn."""
    server = start_server()
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("POST", "/api/events", b"{nope", 400, "not valid JSON"),
        ("POST", "/api/events", b"", 400, "not valid JSON"),
        ("POST", "/api/events", b'{"event": "\xff"}', 400, "not valid JSON"),
        ("POST", "/api/events", b"[" * 100_000, 400, "not valid JSON"),
        ("POST", "/api/events", b'{"event": "x", "data": NaN}', 400, "not valid JSON"),
        ("POST", "/api/events", b"[1]", 400, "JSON object"),
        ("POST", "/api/events", b'{"event": ""}', 400, "non-empty string"),
        ("POST", "/api/events", b'{"event": 5}', 400, "non-empty string"),
        ("POST", "/api/events", b'{"event": "x", "count": 0}', 400, "'count' must be 1..10000"),
        ("POST", "/api/events", b'{"event": "x", "count": 10001}', 400, "must be 1..10000"),
        ("POST", "/api/events", b'{"event": "x", "count": "3"}', 400, "must be an integer"),
        ("POST", "/api/events", b'{"event": "x", "count": true}', 400, "must be an integer"),
        ("POST", "/api/events", b"x" * (2 * 1024 * 1024), 413, "larger than 1048576 bytes"),
        ("GET", "/api/nowhere", None, 404, "no such path: /api/nowhere"),
        ("GET", "/", None, 404, "no such path"),
        ("DELETE", "/api/stats", None, 405, "method DELETE not allowed on /api/stats"),
        ("GET", "/api/events", None, 405, "allowed: POST"),
        ("GET", "/ws", None, 400, "expected a WebSocket upgrade"),
    ],
)
def test_http_errors_are_json_and_harmless(
    shared_server: RunningServer, method: str, path: str, body: bytes | None, status: int,
    needle: str,
) -> None:  # fmt: skip
    base = shared_server.api_url.removesuffix("/api")
    got_status, answer, headers = http(method, f"{base}{path}", body)
    assert got_status == status
    assert headers["Content-Type"].startswith("application/json")
    assert needle in answer["error"]
    if status == 405:
        assert "Allow" in headers
    assert http("GET", f"{shared_server.api_url}/health")[0] == 200  # still serving
    assert_no_traceback(shared_server)


def test_client_leaving_mid_body_is_quiet(shared_server: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", shared_server.port), timeout=5) as sock:
        sock.sendall(b"POST /api/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{")
    time.sleep(0.2)
    assert http("GET", f"{shared_server.api_url}/health")[0] == 200
    assert_no_traceback(shared_server)


# -- command line --------------------------------------------------------------


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WSLOAD, "serve", *args], capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--port", "70000"],
        ["--drop-rate", "2"],
        ["--drop-rate", "nan"],
        ["--delay", "-5"],
        ["--delay", "nan"],
        ["--stall-for", "1"],
        ["--stall-every", "1"],
        ["--stall-every", "1", "--stall-for", "2"],
        ["--stall-every", "1", "--stall-for", "1"],
        ["--close-after", "-1"],
        ["--push-every", "0.5"],
        ["--push-every", "nan"],
        ["--push-every", "-1"],
        ["--seed", "x"],
        ["--host", ""],
        ["--nonsense"],
    ],
)
def test_bad_flags_exit_2_with_one_line(args: list[str]) -> None:
    proc = run_serve("--port", "0", *args)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_port_in_use_exits_2_with_one_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = run_serve("--port", str(port))
    assert proc.returncode == 2
    assert proc.stderr == f"wsload serve: cannot bind 127.0.0.1:{port}: address already in use\n"
    assert proc.stdout == ""


def test_address_not_on_this_host_exits_2() -> None:
    proc = run_serve("--host", "192.0.2.1", "--port", "0")  # TEST-NET-1, never local
    assert proc.returncode == 2
    assert proc.stderr.startswith("wsload serve: cannot bind 192.0.2.1:0: ")
    assert len(proc.stderr.splitlines()) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_closes_clients_and_exits_0(
    serve_factory: ServerFactory, sig: signal.Signals
) -> None:
    server = serve_factory()
    async with ws_connect(server) as ws:
        await ws.send("x")
        await ws.recv()
        server.proc.send_signal(sig)
        with pytest.raises(ConnectionClosedOK):
            await asyncio.wait_for(ws.recv(), timeout=10)
        assert ws.close_code == 1001
    assert await asyncio.to_thread(server.proc.wait, 10) == 0
    assert server.proc.stdout is not None
    assert server.proc.stdout.read().startswith("endpoints: ")  # the banner's second line
    assert server.stderr() == ""


def test_help_explains_every_option() -> None:
    proc = run_serve("--help")
    assert proc.returncode == 0
    for option in (
        "--host", "--port", "--delay", "--stall-every", "--stall-for", "--drop-rate",
        "--close-after", "--push-every", "--seed", "--reuse-port",
    ):  # fmt: skip
        assert option in proc.stdout
    assert "/api/events" in proc.stdout

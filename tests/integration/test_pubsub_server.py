"""``/pubsub`` of the reference server, as a real ``wsload serve`` process driven by real clients.

Every frame is checked whole and every counter exactly (``/api/stats``
under ``pubsub``, read once the server has counted what the test waited
for): the injected drops and duplicates are what a load run's ``missing``
and ``duplicates`` will be compared with, so the server must count exactly
what it did. Waits are for messages or counters, never fixed sleeps.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.integration.conftest import WSLOAD, RunningServer, ServerFactory
from tests.integration.test_testserver import (
    ahttp,
    assert_no_traceback,
    nothing_arrives,
    stats_when,
)

RECV_TIMEOUT = 10.0


def pubsub_url(server: RunningServer) -> str:
    return server.ws_url.removesuffix("/ws") + "/pubsub"


def pubsub_connect(server: RunningServer, **kwargs: Any) -> connect:
    return connect(pubsub_url(server), proxy=None, compression=None, **kwargs)


async def recv(ws: ClientConnection) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))
    return data


async def ask(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(message))
    return await recv(ws)


async def subscribe(ws: ClientConnection, topic: str) -> None:
    assert await ask(ws, {"type": "subscribe", "topic": topic}) == {
        "type": "subscribed",
        "topic": topic,
    }


async def pubsub_when(server: RunningServer, topic: str, **want: int) -> dict[str, Any]:
    """``pubsub.topics[topic]`` once the counters named in ``want`` have those values."""

    def ready(s: dict[str, Any]) -> bool:
        t = s["pubsub"]["topics"].get(topic, {})
        return all(t.get(k) == v for k, v in want.items())

    s = await stats_when(server, ready, within=RECV_TIMEOUT)
    counters: dict[str, Any] = s["pubsub"]["topics"][topic]
    for key, value in want.items():
        assert counters[key] == value, (key, counters)
    return counters


@pytest.mark.asyncio
async def test_subscribe_publish_deliver_and_counters(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    async with (
        pubsub_connect(server) as a,
        pubsub_connect(server) as b,
        pubsub_connect(server) as pub,
    ):
        await subscribe(a, "news")
        await subscribe(b, "news")
        await subscribe(b, "other")
        message = {"type": "publish", "topic": "news", "seq": 1, "sent_at": 12.5, "data": "x"}
        assert await ask(pub, {**message, "id": "p1"}) == {
            "type": "published",
            "id": "p1",
            "topic": "news",
            "seq": 1,
            "subscribers": 2,
        }
        delivery = {"type": "delivery", "topic": "news", "seq": 1, "sent_at": 12.5, "data": "x"}
        assert await recv(a) == delivery
        assert await recv(b) == delivery
        assert await nothing_arrives(pub)  # a publisher is no subscriber
        assert await ask(a, {"type": "unsubscribe", "topic": "news"}) == {
            "type": "unsubscribed",
            "topic": "news",
        }
        await ask(pub, {"type": "publish", "topic": "news", "seq": 2})
        assert await recv(b) == {"type": "delivery", "topic": "news", "seq": 2}
        assert await nothing_arrives(a)
        for bad, reason in (
            ({"type": "publish", "topic": ""}, "topic must be a string"),
            ({"type": "subscribe"}, "topic must be a string"),
            ({"type": "dance", "id": 7}, "unknown type"),
        ):
            reply = await ask(a, bad)
            assert reply["type"] == "error", reply
            assert reason in reply["reason"], reply
        await a.send("not json")
        assert (await recv(a))["reason"] == "not JSON"
        news = await pubsub_when(server, "news", published=2, deliveries=3, subscribers=1)
        assert news == {
            "published": 2,
            "deliveries": 3,
            "dropped": 0,
            "duplicated": 0,
            "dropped_slow": 0,
            "subscribers": 1,
        }
    s = await stats_when(server, lambda s: s["pubsub"]["connections_open"] == 0)
    ps = s["pubsub"]
    assert (ps["connections"], ps["connections_open"], ps["errors"]) == (3, 0, 4)
    assert ps["topics"]["news"]["subscribers"] == 0
    assert ps["topics"]["other"]["subscribers"] == 0  # a connection's end ends its subscriptions
    assert (ps["total"]["deliveries"], ps["total"]["published"]) == (3, 2)
    assert_no_traceback(server)


@pytest.mark.asyncio
async def test_http_publish_fans_out_the_same_way(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    async with pubsub_connect(server) as sub:
        await subscribe(sub, "t")
        body = {"topic": "t", "seq": 5, "sent_at": 1.25, "data": {"k": [1]}}
        status, answer, _ = await ahttp(
            "POST", f"{server.api_url}/publish", json.dumps(body).encode()
        )
        assert (status, answer) == (200, {"published": True, "subscribers": 1})
        assert await recv(sub) == {"type": "delivery", **body}
        status, answer, _ = await ahttp("POST", f"{server.api_url}/publish", b'{"seq": 1}')
        assert status == 400
        assert "topic" in answer["error"], answer
        status, answer, _ = await ahttp("POST", f"{server.api_url}/publish", b"nope")
        assert (status, answer) == (400, {"error": "body is not JSON"})
        status, answer, _ = await ahttp(
            "POST", f"{server.api_url}/publish", b'{"topic": "nobody", "seq": 1}'
        )
        assert (status, answer) == (200, {"published": True, "subscribers": 0})
    await pubsub_when(server, "t", published=1, deliveries=1)
    await pubsub_when(server, "nobody", published=1, deliveries=0)


async def faulted_run(server: RunningServer, count: int) -> tuple[list[int], list[int]]:
    """Publish ``count`` over HTTP to one subscriber: the seqs it missed and got twice."""
    async with pubsub_connect(server) as sub:
        await subscribe(sub, "f")
        for seq in range(1, count + 1):
            body = json.dumps({"topic": "f", "seq": seq}).encode()
            status, _, _ = await ahttp("POST", f"{server.api_url}/publish", body)
            assert status == 200

        def settled(s: dict[str, Any]) -> bool:
            t = s["pubsub"]["topics"]["f"]
            return bool(t["deliveries"] == count - t["dropped"] + t["duplicated"])

        s = await stats_when(server, settled, within=RECV_TIMEOUT)
        counters = s["pubsub"]["topics"]["f"]
        got: dict[int, int] = {}
        for _ in range(counters["deliveries"]):
            seq = (await recv(sub))["seq"]
            got[seq] = got.get(seq, 0) + 1
        assert await nothing_arrives(sub, 0.1)
    missing = [seq for seq in range(1, count + 1) if seq not in got]
    twice = sorted(seq for seq, n in got.items() if n == 2)
    assert max(got.values()) <= 2
    assert (len(missing), len(twice)) == (counters["dropped"], counters["duplicated"])
    assert (counters["dropped_slow"], counters["published"]) == (0, count)
    return missing, twice


@pytest.mark.asyncio
async def test_drops_and_duplicates_are_counted_exactly_and_reproduced_by_the_seed(
    serve_factory: ServerFactory,
) -> None:
    flags = ("--drop-deliveries", "0.3", "--duplicate-deliveries", "0.2", "--seed", "7")
    first = await faulted_run(serve_factory(*flags), 200)
    again = await faulted_run(serve_factory(*flags), 200)
    assert first == again
    missing, twice = first
    assert 20 < len(missing) < 100, missing
    assert 10 < len(twice) < 60, twice
    other = await faulted_run(serve_factory(*flags[:-1], "8"), 200)
    assert other != first


@pytest.mark.asyncio
async def test_delivery_delay_postpones_the_fan_out(serve_factory: ServerFactory) -> None:
    server = serve_factory("--delivery-delay", "300")
    async with pubsub_connect(server) as sub, pubsub_connect(server) as pub:
        await subscribe(sub, "d")
        sent_at = time.time()
        await pub.send(json.dumps({"type": "publish", "topic": "d", "seq": 1, "sent_at": sent_at}))
        delivery = await recv(sub)
        assert time.time() - delivery["sent_at"] >= 0.3
        assert (await recv(pub))["subscribers"] == 1  # answered after the fan-out
        started = time.monotonic()
        status, answer, _ = await ahttp(
            "POST", f"{server.api_url}/publish", b'{"topic": "d", "seq": 2}'
        )
        assert (status, answer["subscribers"]) == (200, 1)
        assert time.monotonic() - started >= 0.3
        assert (await recv(sub))["seq"] == 2
    s = await stats_when(server, lambda s: s["pubsub"]["connections_open"] == 0)
    assert s["pubsub"]["pending"] == 0


@pytest.mark.asyncio
async def test_a_subscriber_that_never_reads_costs_dropped_slow_not_memory(
    serve_factory: ServerFactory,
) -> None:
    """The publisher keeps getting its answers; the silent subscriber's deliveries are bounded."""
    server = serve_factory()
    count, data = 800, "x" * 32 * 1024  # 25 MiB of deliveries: beyond every buffer on the way
    async with pubsub_connect(server) as pub, pubsub_connect(server, max_queue=1) as slow:
        await subscribe(slow, "s")
        for seq in range(count):
            reply = await ask(pub, {"type": "publish", "topic": "s", "seq": seq, "data": data})
            assert reply["type"] == "published", reply
        counters = (await stats_when(server, lambda s: True))["pubsub"]["topics"]["s"]
        assert counters["dropped_slow"] > 0, counters
        assert counters["dropped"] == 0
        slow.transport.abort()  # leave without reading: whatever was queued is lost
    s = await stats_when(server, lambda s: s["pubsub"]["connections_open"] == 0)
    counters = s["pubsub"]["topics"]["s"]
    assert counters["deliveries"] + counters["dropped_slow"] == count, counters
    assert_no_traceback(server)


@pytest.mark.asyncio
async def test_stream_every_publishes_ticks_without_gaps(serve_factory: ServerFactory) -> None:
    server = serve_factory("--stream-every", "20")
    async with pubsub_connect(server) as sub:
        await subscribe(sub, "ticks")
        ticks = [await recv(sub) for _ in range(5)]
    assert all(t["type"] == "tick" and t["topic"] == "ticks" for t in ticks)
    seqs = [t["seq"] for t in ticks]
    assert seqs == list(range(seqs[0], seqs[0] + 5))
    assert all(abs(time.time() - t["sent_at"]) < 60 for t in ticks)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--drop-deliveries", "1.5"], "--drop-deliveries"),
        (["--duplicate-deliveries", "-0.1"], "--duplicate-deliveries"),
        (["--stream-every", "0.0001"], "--stream-every"),
    ],
)
def test_bad_pubsub_flags_exit_2_with_one_line(args: list[str], needle: str) -> None:
    proc = subprocess.run(
        [WSLOAD, "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr

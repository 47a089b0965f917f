"""Fan-out on the real engines against the reference server's ``/pubsub`` endpoint.

Subscribers subscribe in their ``[[steps]]`` and then only receive; a
publisher (WebSocket ``publish`` with ``publish = {...}``, or HTTP ``post``
to ``/api/publish``) publishes at a rate after a setup pause, so that every
subscriber is subscribed before the first publication; it publishes until
the run stops sending, and the drain waits for the deliveries still on
their way (until none came for a moment: the server delays each by 150 ms,
so the last ones are still on their way when sending stops). What the
worker recorded (publications, subscriptions' seq ranges, duplicates) is
then joined here as the coordinator would, and must equal
what the server says it did, faults included.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.integration.conftest import ServerFactory, stats
from tests.integration.engine_run import each_engine, spec_for  # noqa: F401
from wsload.common.fanout_wire import SubscriptionRecord, decode_fanout
from wsload.worker.engines import create_engine
from wsload.worker.recorder import WindowBatch

SUBSCRIBERS = 12


def _subscriber(topic: str = "news") -> dict[str, Any]:
    return {
        "name": "subscribers",
        "clients": SUBSCRIBERS,
        "steps": [
            {"send": {"type": "subscribe", "topic": topic}},
            {"name": "subscribed", "expect": {"type": "subscribed", "topic": topic}},
        ],
        "loop": [{"think": 3600}],  # then only receive
        "deliveries": {
            "match": {"type": "delivery"},
            "topic": "topic",
            "seq": "seq",
            "sent_at": "sent_at",
            "topics": [topic],
        },
    }


WS_PUBLISHER = {
    "name": "publisher",
    "clients": 1,
    "rate": 25,
    "steps": [{"think": 1.0}],  # every subscriber is subscribed by then
    "loop": [
        {
            "send": {"type": "publish", "topic": "news", "seq": "{seq}", "sent_at": "{ts}"},
            "publish": {"topic": "news", "seq": "{seq}"},
        },
        {"name": "published", "expect": {"type": "published", "seq": "{seq}"}},
    ],
}

#: publishes and awaits nothing: when sending stops, nothing keeps the run
#: draining but the deliveries still on their way
WS_UNACKED_PUBLISHER = dict(WS_PUBLISHER, loop=WS_PUBLISHER["loop"][:1])

HTTP_PUBLISHER = {
    "name": "publisher",
    "clients": 1,
    "rate": 25,
    "steps": [{"think": 1.0}],
    "loop": [
        {
            "post": {
                "url": "/api/publish",
                "body": {"topic": "news", "seq": "{seq}", "sent_at": "{ts}"},
            },
            "publish": {"topic": "news", "seq": "{seq}"},
        }
    ],
}


async def _run(server_url: str, api_url: str, publisher: dict[str, Any]) -> list[WindowBatch]:
    spec = spec_for(
        server_url.replace("/ws", "/pubsub"),
        api_url=api_url,
        num_clients=SUBSCRIBERS + 1,
        duration=3.0,
        drain_timeout=1.0,
        reply_timeout=5.0,
        scenarios=[_subscriber(), publisher],
    )
    batches: list[WindowBatch] = []
    engine = create_engine(spec, on_batch=batches.append)
    await engine.run()
    assert engine.recorder.steps.totals()["subscribed"]["met"] == SUBSCRIBERS
    return batches


def _join(batches: list[WindowBatch]) -> dict[str, int]:
    """The coordinator's join, naively: expected/delivered/missing over every subscription."""
    pubs: dict[int, int] = {}
    subs: list[SubscriptionRecord] = []
    counts: dict[str, int] = {}
    latencies: list[int] = []
    for b in batches:
        if b.fanout is None:
            continue
        window = decode_fanout(b.fanout.encode())  # as the wire carries it
        for seq, at in zip(*window.pubs.get("news", ([], [])), strict=True):
            pubs[int(seq)] = int(at)
        subs += window.subs
        for k, v in window.counts.get("news", {}).items():
            counts[k] = counts.get(k, 0) + v
        latencies += [int(v) for v in window.latency.get("news", [])]
    expected = delivered = 0
    for sub in subs:
        assert sub.topic == "news"
        got = {n for lo, hi in sub.ranges.tolist() for n in range(lo, hi + 1)}
        owed = {s for s, at in pubs.items() if sub.subscribed_at_us <= at < sub.ended_at_us}
        expected += len(owed)
        delivered += len(owed & got)
    return {
        "published": len(pubs),
        "subscriptions": len(subs),
        "expected": expected,
        "delivered": delivered,
        "missing": expected - delivered,
        "latencies": len(latencies),
        "fastest_us": min(latencies),
        **counts,
    }


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "publisher",
    [WS_PUBLISHER, WS_UNACKED_PUBLISHER, HTTP_PUBLISHER],
    ids=["ws", "ws-unacked", "post"],
)
async def test_missing_and_duplicates_equal_the_servers_faults(
    serve_factory: ServerFactory, publisher: dict[str, Any]
) -> None:
    server = serve_factory(
        "--drop-deliveries", "0.1", "--duplicate-deliveries", "0.1", "--seed", "3",
        "--delivery-delay", "150",
    )  # fmt: skip
    batches = await _run(server.ws_url, server.api_url, publisher)
    got = _join(batches)
    news = stats(server.api_url)["pubsub"]["topics"]["news"]
    assert got["published"] == news["published"] >= 10
    assert got["subscriptions"] == SUBSCRIBERS
    assert got["expected"] == SUBSCRIBERS * news["published"]
    assert got["missing"] == news["dropped"] > 0
    assert got["duplicates"] == news["duplicated"] > 0
    assert got["deliveries"] == news["deliveries"]  # every copy sent was received
    assert got["latencies"] == got["delivered"]  # one latency per new delivery
    assert got["fastest_us"] >= 150_000  # the server's delay is in every one
    assert "publish_conflicts" not in got


@pytest.mark.asyncio
async def test_a_post_to_a_missing_endpoint_fails_its_step_with_the_status(
    serve_factory: ServerFactory,
) -> None:
    server = serve_factory()
    bad = dict(HTTP_PUBLISHER, steps=[])
    bad["loop"] = [dict(HTTP_PUBLISHER["loop"][0], post={"url": "/api/nowhere", "body": "x"})]
    spec = spec_for(
        server.ws_url.replace("/ws", "/pubsub"),
        api_url=server.api_url,
        num_clients=1,
        duration=1.0,
        scenarios=[bad],
    )
    batches: list[WindowBatch] = []
    engine = create_engine(spec, on_batch=batches.append)
    result = await engine.run()
    assert set(result.errors) == {"http_404"}
    assert result.errors["http_404"] >= 5
    assert "404" in result.error_texts["http_404"]
    assert all(b.fanout is None or not b.fanout.pubs for b in batches)


@pytest.mark.asyncio
async def test_a_post_nobody_answers_fails_its_step_as_refused(
    serve_factory: ServerFactory,
) -> None:
    server = serve_factory()
    with socket.socket() as probe:  # a port with nothing listening on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bad = dict(HTTP_PUBLISHER, steps=[], rate=5)
    bad["loop"] = [dict(HTTP_PUBLISHER["loop"][0], post={"url": f"http://127.0.0.1:{port}/x"})]
    spec = spec_for(
        server.ws_url.replace("/ws", "/pubsub"), num_clients=1, duration=1.0, scenarios=[bad]
    )
    result = await create_engine(spec).run()
    assert set(result.errors) == {"refused"}
    assert f"127.0.0.1:{port}" in result.error_texts["refused"]

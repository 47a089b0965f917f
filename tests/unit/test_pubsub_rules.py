"""The ``/pubsub`` rules, sans-I/O: subscriptions, fan-out, seeded faults, bounds, counters."""

from __future__ import annotations

import json
from typing import Any

import pytest

from wsload.testserver.pubsub import (
    MAX_TOPIC,
    MAX_TOPICS_PER_CONNECTION,
    DeliveryFaults,
    PubSubHub,
    PubSubStats,
    Subscriber,
    parse_publication,
)


class Inbox:
    """A subscriber's queue: what the hub pushed, or refusals once ``room`` is used up."""

    def __init__(self, room: int = 1_000_000) -> None:
        self.got: list[dict[str, Any]] = []
        self.room = room
        self.sub = Subscriber(self.push)

    def push(self, text: str, topic: str, extra: bool) -> bool:
        if len(self.got) >= self.room:
            return False
        self.got.append(json.loads(text))
        return True


def handle(hub: PubSubHub, inbox: Inbox, message: dict[str, Any]) -> Any:
    handled = hub.handle(inbox.sub, json.dumps(message))
    return json.loads(handled.reply) if handled.reply else handled.publication


def test_subscribe_then_publish_reaches_subscribers_in_order() -> None:
    hub = PubSubHub(PubSubStats())
    a, b = Inbox(), Inbox()
    assert handle(hub, a, {"type": "subscribe", "topic": "t", "id": 3}) == {
        "type": "subscribed",
        "id": 3,
        "topic": "t",
    }
    handle(hub, b, {"type": "subscribe", "topic": "t"})
    pub = handle(hub, a, {"type": "publish", "topic": "t", "seq": 1, "sent_at": 2.5})
    assert hub.fan_out(pub) == 2
    assert a.got == b.got == [{"type": "delivery", "topic": "t", "seq": 1, "sent_at": 2.5}]
    assert json.loads(pub.published(2)) == {
        "type": "published",
        "topic": "t",
        "seq": 1,
        "subscribers": 2,
    }
    hub.leave(a.sub)
    assert hub.fan_out(parse_publication({"topic": "t", "seq": 2})) == 1
    assert hub.stats.topics["t"].subscribers == 1
    assert hub.stats.topics["t"].published == 2


def fault_run(seed: int) -> tuple[list[list[int]], dict[str, int]]:
    stats = PubSubStats()
    hub = PubSubHub(stats, DeliveryFaults(drop=0.2, duplicate=0.1), seed=seed)
    inboxes = [Inbox() for _ in range(5)]
    for inbox in inboxes:
        hub.subscribe(inbox.sub, "t")
    for seq in range(200):
        hub.fan_out(parse_publication({"topic": "t", "seq": seq}))
    seqs = [[m["seq"] for m in inbox.got] for inbox in inboxes]
    t = stats.snapshot()["topics"]["t"]
    return seqs, t


def test_faults_are_counted_exactly_and_reproduced_by_the_seed() -> None:
    seqs, t = fault_run(1)
    received = sum(len(s) for s in seqs)
    missing = sum(len(set(range(200)) - set(s)) for s in seqs)
    twice = sum(len(s) - len(set(s)) for s in seqs)
    assert (missing, twice) == (t["dropped"], t["duplicated"])
    assert received == 5 * 200 - t["dropped"] + t["duplicated"]
    assert 100 < t["dropped"] < 300
    assert fault_run(1) == (seqs, t)
    assert fault_run(2)[0] != seqs


def test_a_full_subscriber_costs_dropped_slow() -> None:
    stats = PubSubStats()
    hub = PubSubHub(stats)
    slow = Inbox(room=3)
    hub.subscribe(slow.sub, "t")
    for seq in range(10):
        hub.fan_out(parse_publication({"topic": "t", "seq": seq}))
    assert (len(slow.got), stats.topics["t"].dropped_slow) == (3, 7)


def test_counters_say_what_a_full_subscriber_saw() -> None:
    """An extra copy refused is not ``duplicated``; none follows a refused first copy."""
    stats = PubSubStats()
    hub = PubSubHub(stats, DeliveryFaults(duplicate=1.0), seed=1)
    slow = Inbox(room=3)
    hub.subscribe(slow.sub, "t")
    for seq in range(10):
        hub.fan_out(parse_publication({"topic": "t", "seq": seq}))
    got = [m["seq"] for m in slow.got]
    assert got == [0, 0, 1]  # 1's extra copy found no room
    t = stats.topics["t"]
    assert (t.duplicated, t.dropped_slow) == (1, 8)  # twice: 0; missing: 2..9


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"type": "subscribe", "topic": "x" * (MAX_TOPIC + 1)}, "topic must be"),
        ({"type": "subscribe", "topic": 5}, "topic must be"),
        ({"type": "publish"}, "topic must be"),
        ({"type": "nope", "id": "r"}, "unknown type"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_bad_requests_are_errors(message: Any, reason: str) -> None:
    hub = PubSubHub(PubSubStats())
    reply = handle(hub, Inbox(), message)
    assert reply["type"] == "error"
    assert reason in reply["reason"]
    assert hub.stats.errors == 1


def test_topics_per_connection_are_bounded() -> None:
    hub = PubSubHub(PubSubStats())
    inbox = Inbox()
    for n in range(MAX_TOPICS_PER_CONNECTION):
        hub.subscribe(inbox.sub, f"t{n}")
    reply = handle(hub, inbox, {"type": "subscribe", "topic": "one-more"})
    assert "at most" in reply["reason"]


def test_reset_keeps_the_subscribers_gauge() -> None:
    hub = PubSubHub(PubSubStats())
    inbox = Inbox()
    hub.subscribe(inbox.sub, "kept")
    hub.fan_out(parse_publication({"topic": "kept", "seq": 1}))
    hub.fan_out(parse_publication({"topic": "gone", "seq": 1}))
    hub.stats.reset()
    snap = hub.stats.snapshot()
    assert snap["topics"] == {
        "kept": {
            "published": 0,
            "deliveries": 0,
            "dropped": 0,
            "duplicated": 0,
            "dropped_slow": 0,
            "subscribers": 1,
        }
    }
    assert snap["total"]["subscribers"] == 1

"""The ``/pubsub`` endpoint's rules, sans-I/O: topics, subscriptions, fan-out, delivery faults.

A publish/subscribe broker to measure fan-out against: subscribers say which
topics they want, publishers publish, every subscriber of the topic gets a
delivery that carries the publication's identity. JSON text frames::

    {"type": "subscribe", "topic": T}    -> {"type": "subscribed", "topic": T}
    {"type": "unsubscribe", "topic": T}  -> {"type": "unsubscribed", "topic": T}
    {"type": "publish", "topic": T, "seq": N, "sent_at": EPOCH, "data": ...}
        -> {"type": "published", "topic": T, "seq": N, "subscribers": k} to the publisher
        and {"type": "delivery", "topic": T, "seq": N, "sent_at": EPOCH, "data": ...}
            to every subscriber of T
    anything else -> {"type": "error", "reason": ...}

``POST /api/publish`` with the publish body (``type`` optional) fans out the
same way and answers ``{"published": true, "subscribers": k}``. A request's
``id``, when it has one, is repeated in its reply. ``seq``, ``sent_at`` and
``data`` are passed through as they came (absent ones stay absent).

A subscription is registered before its ``subscribed`` answer is even built,
so every publication the server fans out after a subscriber read that
answer reaches it (unless a fault says otherwise).

Delivery faults, drawn per delivery from one seeded sequence
(``--seed``): ``drop`` (share 0..1 of deliveries never sent: counted
``dropped``), ``duplicate`` (share sent twice: counted ``duplicated``, one per
extra copy). Subscribers are kept in subscription order, so with a seed the
same subscriptions and publications meet the same faults on every run.
``--delivery-delay`` postpones a publication's fan-out (the shell waits;
this module only decides).

Everything a client can make the server keep is bounded: topic names
(:data:`MAX_TOPIC`), topics (:data:`MAX_TOPICS`), topics per connection.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Final

MAX_TOPIC: Final = 256  #: characters of a topic name
MAX_TOPICS: Final = 10_000  #: topics the server keeps counters and subscribers for
MAX_TOPICS_PER_CONNECTION: Final = 256
STREAM_TOPIC: Final = "ticks"  #: the topic ``--stream-every`` publishes on

#: Queues one delivery (its text, its topic) for a subscriber; False when its
#: bounded queue is full or it is closing (the delivery is lost: ``dropped_slow``).
Push = Callable[[str, str, bool], bool]


class BadPublication(ValueError):
    """A publish request the server cannot fan out; the message says why."""


@dataclass
class TopicStats:
    """One topic's counters (see :mod:`wsload.testserver.stats`)."""

    published: int = 0
    deliveries: int = 0
    dropped: int = 0
    duplicated: int = 0
    dropped_slow: int = 0
    subscribers: int = 0  # a gauge: subscribers right now


@dataclass
class PubSubStats:
    """The ``/pubsub`` counters: per topic, and the connection-level ones."""

    connections: int = 0
    connections_open: int = 0
    received: int = 0
    errors: int = 0
    replies: int = 0
    pending: int = 0  # a gauge: publications waiting for their --delivery-delay
    topics: dict[str, TopicStats] = field(default_factory=dict)

    def topic(self, name: str) -> TopicStats | None:
        """``name``'s counters, created on first use; None once :data:`MAX_TOPICS` exist."""
        found = self.topics.get(name)
        if found is None and len(self.topics) < MAX_TOPICS:
            found = self.topics[name] = TopicStats()
        return found

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready: the counters, each topic's, and ``total`` (the topics' sums)."""
        out: dict[str, Any] = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name != "topics"
        }
        total = TopicStats()
        topics: dict[str, dict[str, int]] = {}
        for name, t in self.topics.items():
            topics[name] = asdict(t)
            for f in fields(TopicStats):
                setattr(total, f.name, getattr(total, f.name) + getattr(t, f.name))
        out["topics"] = topics
        out["total"] = asdict(total)
        return out

    def reset(self) -> None:
        """Zero every counter except the gauges (open connections, pending, subscribers)."""
        self.connections = self.received = self.errors = self.replies = 0
        for name, t in list(self.topics.items()):
            if not t.subscribers:
                del self.topics[name]
            else:
                self.topics[name] = TopicStats(subscribers=t.subscribers)


@dataclass(frozen=True)
class Publication:
    """One publication, checked: its topic and the delivery frame every subscriber gets."""

    topic: str
    seq: Any
    delivery: str
    id: Any = None

    def published(self, subscribers: int) -> str:
        """The publisher's answer over WebSocket."""
        return _reply("published", self.id, topic=self.topic, seq=self.seq, subscribers=subscribers)


def _reply(kind: str, request_id: Any = None, **fields_: Any) -> str:
    body: dict[str, Any] = {"type": kind}
    if request_id is not None:
        body["id"] = request_id
    body.update(fields_)
    return json.dumps(body, separators=(",", ":"))


def error(reason: str, request_id: Any = None) -> str:
    return _reply("error", request_id, reason=reason)


def _topic(body: dict[str, Any]) -> str:
    topic = body.get("topic")
    if not isinstance(topic, str) or not 0 < len(topic) <= MAX_TOPIC:
        raise BadPublication(f"topic must be a string of 1..{MAX_TOPIC} characters")
    return topic


def parse_publication(body: Any) -> Publication:
    """A publish request's body (WebSocket frame or HTTP body, already JSON-decoded)."""
    if not isinstance(body, dict):
        raise BadPublication("expected a JSON object")
    topic = _topic(body)
    delivery: dict[str, Any] = {"type": "delivery", "topic": topic}
    for key in ("seq", "sent_at", "data"):
        if key in body:
            delivery[key] = body[key]
    request_id = body.get("id")
    if not isinstance(request_id, str | int) or isinstance(request_id, bool):
        request_id = None
    text = json.dumps(delivery, separators=(",", ":"))
    return Publication(topic, body.get("seq"), text, request_id)


def tick(seq: int, now: float) -> Publication:
    """Publication ``seq`` of the server's own stream (``--stream-every``) on ``ticks``."""
    body = {"type": "tick", "topic": STREAM_TOPIC, "seq": seq, "sent_at": round(now, 6)}
    return Publication(STREAM_TOPIC, seq, json.dumps(body, separators=(",", ":")))


@dataclass(frozen=True)
class DeliveryFaults:
    """Shares (0..1) of deliveries dropped and duplicated, and the fan-out delay (seconds)."""

    drop: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0

    def problems(self) -> list[str]:
        out = []
        if not 0.0 <= self.drop <= 1.0:
            out.append(f"--drop-deliveries must be between 0 and 1, got {self.drop:g}")
        if not 0.0 <= self.duplicate <= 1.0:
            out.append(f"--duplicate-deliveries must be between 0 and 1, got {self.duplicate:g}")
        return out


class Subscriber:
    """What the hub knows of one connection: how to push to it, and its topics."""

    __slots__ = ("push", "topics")

    def __init__(self, push: Push) -> None:
        self.push = push
        self.topics: set[str] = set()


@dataclass(frozen=True)
class Handled:
    """What one received frame asks for: a reply now, or a publication to fan out."""

    reply: str | None
    publication: Publication | None = None


class PubSubHub:
    """Topics and their subscribers, the seeded fault draws, the per-topic counters."""

    def __init__(
        self, stats: PubSubStats, faults: DeliveryFaults | None = None, seed: int | None = None
    ) -> None:
        self.stats = stats
        self.faults = faults or DeliveryFaults()
        self._rng = random.Random(seed)
        #: topic -> subscribers in subscription order (a dict as an ordered set)
        self._subscribers: dict[str, dict[Subscriber, None]] = {}

    def handle(self, sub: Subscriber, frame: str | bytes) -> Handled:
        """Decide one received frame; a publish is returned for the shell to fan out."""
        try:
            body = json.loads(frame)
        except (ValueError, UnicodeDecodeError, RecursionError):
            self.stats.errors += 1
            return Handled(error("not JSON"))
        if not isinstance(body, dict):
            self.stats.errors += 1
            return Handled(error("expected a JSON object"))
        kind = body.get("type")
        request_id = body.get("id")
        if not isinstance(request_id, str | int) or isinstance(request_id, bool):
            request_id = None
        try:
            if kind == "publish":
                return Handled(None, parse_publication(body))
            if kind == "subscribe":
                topic = _topic(body)
                self.subscribe(sub, topic)
                return Handled(_reply("subscribed", request_id, topic=topic))
            if kind == "unsubscribe":
                topic = _topic(body)
                self.unsubscribe(sub, topic)
                return Handled(_reply("unsubscribed", request_id, topic=topic))
        except BadPublication as exc:
            self.stats.errors += 1
            return Handled(error(str(exc), request_id))
        self.stats.errors += 1
        return Handled(error("unknown type", request_id))

    def subscribe(self, sub: Subscriber, topic: str) -> None:
        if topic in sub.topics:
            return
        if len(sub.topics) >= MAX_TOPICS_PER_CONNECTION:
            raise BadPublication(f"at most {MAX_TOPICS_PER_CONNECTION} topics per connection")
        counters = self.stats.topic(topic)
        if counters is None:
            raise BadPublication(f"at most {MAX_TOPICS} topics")
        sub.topics.add(topic)
        self._subscribers.setdefault(topic, {})[sub] = None
        counters.subscribers += 1

    def unsubscribe(self, sub: Subscriber, topic: str) -> None:
        if topic not in sub.topics:
            return
        sub.topics.discard(topic)
        members = self._subscribers.get(topic)
        if members is not None:
            members.pop(sub, None)
            if not members:
                del self._subscribers[topic]
        counters = self.stats.topics.get(topic)
        if counters is not None:
            counters.subscribers -= 1

    def leave(self, sub: Subscriber) -> None:
        """The connection ended: every subscription of it ends."""
        for topic in list(sub.topics):
            self.unsubscribe(sub, topic)

    def fan_out(self, pub: Publication) -> int:
        """Push ``pub`` to every subscriber of its topic, under the delivery faults.

        Returns the number of subscribers. Each delivery draws ``drop`` (when
        set), then, when it is not dropped, ``duplicate`` (when set); a push
        refused by a full queue counts ``dropped_slow`` (copies actually sent
        are counted ``deliveries`` by the shell when written). The counters
        say what a subscriber can see: ``duplicated`` counts extra copies that
        went out (one refused, or never written, is taken back:
        :meth:`undelivered`), ``dropped_slow`` only first copies lost; no extra
        copy follows a refused first one.
        """
        counters = self.stats.topic(pub.topic)
        members = self._subscribers.get(pub.topic)
        if counters is not None:
            counters.published += 1
        if not members:
            return 0
        drop, duplicate = self.faults.drop, self.faults.duplicate
        rng = self._rng
        text = pub.delivery
        for sub in list(members):
            if drop and rng.random() < drop:
                if counters is not None:
                    counters.dropped += 1
                continue
            copies = 2 if duplicate and rng.random() < duplicate else 1
            if not sub.push(text, pub.topic, False):
                if counters is not None:
                    counters.dropped_slow += 1
                continue
            if copies == 2 and sub.push(text, pub.topic, True) and counters is not None:
                counters.duplicated += 1
        return len(members)

    def delivered(self, topic: str) -> None:
        """One delivery of ``topic`` was handed to a socket."""
        counters = self.stats.topics.get(topic)
        if counters is not None:
            counters.deliveries += 1

    def undelivered(self, topic: str, extra: bool = False) -> None:
        """One delivery of ``topic`` could not be sent (slow subscriber, or gone); ``extra``:
        it was a duplicate's extra copy (no delivery missing: no longer duplicated)."""
        counters = self.stats.topics.get(topic)
        if counters is not None:
            if extra:
                counters.duplicated -= 1
            else:
                counters.dropped_slow += 1


__all__ = [
    "MAX_TOPIC",
    "MAX_TOPICS",
    "MAX_TOPICS_PER_CONNECTION",
    "STREAM_TOPIC",
    "BadPublication",
    "DeliveryFaults",
    "Handled",
    "PubSubHub",
    "PubSubStats",
    "Publication",
    "Subscriber",
    "TopicStats",
    "error",
    "parse_publication",
    "tick",
]

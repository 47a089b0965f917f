"""The test server's own counters: the ground truth a load run is compared with.

Because tests compare these figures with the load generator's, each one is
counted at a single, well-defined moment:

Connections
    ``connections_opened``: WebSocket handshakes completed on ``/ws``.
    ``connections_open``: connections open right now (a gauge; never reset).

    ``connections_by_address``: handshakes completed, by the client's IP
    address (shows how ``--source-address`` spread the connections).

Received
    ``messages_received``: text and binary frames received on ``/ws``, each
    counted once, when the server processes it (control frames such as
    WebSocket pings are not messages). ``bytes_received``: their payload
    bytes (UTF-8 for text; frame headers excluded).

Sent (counted when the frame has been handed to the socket, after any delay
or stall)
    ``echoes_sent``: echoes of text and binary messages (same frame type).
    ``pongs_sent``: ``{"type": "pong"}`` answers to ``{"type": "ping"}``.
    ``acks_sent``: ``{"type": "subscribed", ...}`` answers to subscriptions.
    ``events_delivered``: event messages delivered to subscribers.
    ``pushed``: unsolicited heartbeats of ``--push-every`` (no id field; they
    answer nothing).
    ``messages_sent`` = ``echoes_sent + pongs_sent + acks_sent + events_delivered
    + pushed``.
    ``bytes_sent``: payload bytes of all of those.

Not sent
    ``dropped``: received messages that never got their reply, whether on
    purpose (``--drop-rate``, or arriving after ``--close-after`` decided to
    close) or because the connection was gone by the time the reply was due.
    A message dropped on purpose is treated as lost on the way: it has no
    effect at all, so a dropped subscription subscribes to nothing.
    ``events_published``: events triggered through ``POST /api/events`` (one
    per ``count``, whether or not anyone subscribed).
    ``events_dropped``: event deliveries lost on purpose (``--drop-rate``).
    ``events_undelivered``: event deliveries that failed because the
    subscriber's connection was closing or closed.

Queued (only with ``--delay`` or stalls, when replies wait until due)
    ``replies_queued``: replies waiting in connections' queues right now (a
    gauge; never reset). Each connection holds at most
    ``connection.MAX_QUEUED_REPLIES``; when its queue is full it stops
    reading until a reply leaves, so a client sending faster than a delayed
    server answers meets TCP backpressure instead of growing the server.
    ``reads_paused``: how many times a connection paused reading so.

Hence, once every queued reply has gone out or been discarded::

    messages_received == echoes_sent + pongs_sent + acks_sent + dropped

and, summed over every ``POST /api/events`` (whose answer reports the same
three figures for that call), ``count * subscribers == events_delivered +
events_dropped + events_undelivered``.
One blind spot: frames a client sends after the server has begun its
closing handshake (``--close-after``, shutdown) are discarded by that
handshake and counted nowhere.

``/chat`` (:mod:`wsload.testserver.chat`) counts apart, under ``"chat"``, so
the ``/ws`` figures above keep their identities: ``connections`` (handshakes
completed; ``connections_open`` is a gauge, never reset), ``received``
(frames) and ``bytes_received``; ``messages``: ``msg`` messages accepted
(valid token, a room the sender is in); replies, each counted once handed to
the socket (after any delay or stall): ``logins`` (``login_ok``),
``login_failures`` (bad credentials), ``joins``, ``acks``, ``bad_token``
(bad token errors), ``errors`` (every other error reply); ``dropped``:
received frames whose reply never went out (``--drop-rate``, or the
connection was gone); ``broadcasts``: broadcast deliveries sent to other
members; ``broadcasts_dropped``: deliveries discarded because the member
reads too slowly (its bounded queue was full) or its connection was closing;
``heartbeats`` sent; ``sent`` and ``bytes_sent``: every frame;
``replies_queued`` (a gauge, never reset) and ``reads_paused`` as for
``/ws``. Hence::

    received == logins + login_failures + joins + acks + bad_token + errors + dropped
    sent == logins + login_failures + joins + acks + bad_token + errors
            + broadcasts + heartbeats

``/pubsub`` (:mod:`wsload.testserver.pubsub`) counts under ``"pubsub"``:
``connections`` (``connections_open`` a gauge), ``received`` frames,
``replies`` sent, ``errors`` (bad requests), ``pending`` (a gauge:
publications waiting for ``--delivery-delay``), and per topic under
``topics.<T>`` (with their sums under ``total``): ``published``
(publications fanned out, WebSocket and HTTP alike, whether or not anyone
subscribed), ``deliveries`` (handed to a subscriber's socket, a duplicate's
two copies counted twice), ``dropped`` (not sent on purpose,
``--drop-deliveries``), ``duplicated`` (sent twice on purpose,
``--duplicate-deliveries``: one per extra copy), ``dropped_slow`` (lost
because the subscriber read too slowly, its bounded queue full, or its
connection was closing) and ``subscribers`` (a gauge). Hence, once the
queues are empty, summed over a topic's publications::

    subscribers_at_publication == deliveries + dropped + dropped_slow - duplicated
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from wsload.testserver.pubsub import PubSubStats

_GAUGES = ("connections_open", "replies_queued")  # what is true now: a reset keeps them


@dataclass
class ChatStats:
    """The ``/chat`` counters; see the module docstring."""

    connections: int = 0
    connections_open: int = 0
    received: int = 0
    messages: int = 0
    logins: int = 0
    login_failures: int = 0
    joins: int = 0
    acks: int = 0
    bad_token: int = 0
    errors: int = 0
    dropped: int = 0
    broadcasts: int = 0
    broadcasts_dropped: int = 0
    heartbeats: int = 0
    sent: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    replies_queued: int = 0
    reads_paused: int = 0

    def reset(self) -> None:
        """Zero every counter except the gauges (``connections_open``, ``replies_queued``)."""
        for f in fields(self):
            if f.name not in _GAUGES:
                setattr(self, f.name, 0)


@dataclass
class ServerStats:
    """Counters of one server process; see the module docstring for what each one means."""

    connections_opened: int = 0
    connections_open: int = 0
    messages_received: int = 0
    messages_sent: int = 0
    echoes_sent: int = 0
    pongs_sent: int = 0
    acks_sent: int = 0
    events_published: int = 0
    events_delivered: int = 0
    events_dropped: int = 0
    events_undelivered: int = 0
    pushed: int = 0
    dropped: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    replies_queued: int = 0
    reads_paused: int = 0
    connections_by_address: dict[str, int] = field(default_factory=dict)
    chat: ChatStats = field(default_factory=ChatStats)
    pubsub: PubSubStats = field(default_factory=PubSubStats)
    started: float = field(default_factory=time.monotonic)

    def opened(self, address: str) -> None:
        """Count one completed handshake from a client at ``address``."""
        self.connections_opened += 1
        self.connections_open += 1
        by_address = self.connections_by_address
        by_address[address] = by_address.get(address, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON-ready numbers, plus ``uptime`` in seconds since start."""
        pubsub, self.pubsub = self.pubsub, PubSubStats()  # its own snapshot adds "total"
        try:
            out: dict[str, Any] = asdict(self)  # chat: a nested dict
        finally:
            self.pubsub = pubsub
        out["pubsub"] = pubsub.snapshot()
        out.pop("started")
        out["uptime"] = round(time.monotonic() - self.started, 3)
        return out

    def reset(self) -> None:
        """Zero every counter except the gauges (and the start time)."""
        for f in fields(self):
            if f.name not in (*_GAUGES, "started", "chat", "pubsub"):
                setattr(self, f.name, 0)
        self.connections_by_address = {}
        self.chat.reset()
        self.pubsub.reset()


__all__ = ["ChatStats", "ServerStats"]

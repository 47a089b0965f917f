"""``/pubsub`` over aiohttp: one shell per connection, the HTTP publisher, the server's stream.

The rules live in :mod:`wsload.testserver.pubsub`; this shell reads frames,
asks :class:`~wsload.testserver.pubsub.PubSubHub` what they mean, fans
publications out and writes. Replies (``subscribed``, ``published``,
errors) follow the fault flags as ``/ws`` and ``/chat`` replies do (the
shared :class:`~wsload.testserver.connection.FaultedReceiver`): inline, or
queued until due with ``--delay`` and stalls, in a queue of bounded size.

Deliveries go through a per-connection outbox, as ``/chat`` broadcasts do:
at most :data:`MAX_OUTBOX` messages and :data:`MAX_OUTBOX_BYTES` (one message
always fits) wait for one subscriber; a delivery to
a full outbox (a subscriber that reads too slowly) or to a closing
connection is counted ``dropped_slow``, apart from the deliveries dropped on
purpose (``--drop-deliveries``), so a slow subscriber costs the server
bounded memory and never slows the publisher down. A delivery is counted
``deliveries`` once handed to the socket.

``--delivery-delay`` postpones each fan-out by a timer (at most
:data:`MAX_PENDING` publications and :data:`MAX_PENDING_BYTES` wait; beyond
that a publish is refused with an error), so a WebSocket publisher keeps publishing at its own rate;
its ``published`` answer follows the fan-out. An HTTP publisher's answer
also waits for the fan-out, so it can report the subscriber count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from typing import Any, Final

from aiohttp import web

from wsload.testserver.connection import (
    CLOSE_AFTER_CODE,
    CLOSE_AFTER_REASON,
    FaultedReceiver,
    accept,
)
from wsload.testserver.faults import FaultPolicy
from wsload.testserver.pubsub import (
    BadPublication,
    DeliveryFaults,
    Publication,
    PubSubHub,
    PubSubStats,
    Subscriber,
    error,
    parse_publication,
    tick,
)

MAX_OUTBOX: Final = 1024  #: deliveries waiting for one subscriber before they are dropped
MAX_OUTBOX_BYTES: Final = 4 * 1024 * 1024  #: their characters, beyond the first one
MAX_PENDING: Final = 100_000  #: publications waiting for their --delivery-delay
MAX_PENDING_BYTES: Final = 64 * 1024 * 1024  #: their delivery frames' characters

_CLOSE: Final = "close"  # the reply queue's marker: close (--close-after) once it comes up
_Reply = str  # a reply frame, or the close marker (compared by identity)


class PubSubConnection(FaultedReceiver[_Reply]):
    """A ``/pubsub`` client and everything that belongs to it; :meth:`serve` runs it."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        endpoint: PubSubEndpoint,
        policy: FaultPolicy,
    ) -> None:
        self.ws = ws
        self.subscriber = Subscriber(self.push)
        self._endpoint = endpoint
        self._stats = endpoint.stats
        self._policy = policy
        self._queued = policy.faults.holds_replies
        self._init_queue(request)  # _wakeup: something for the writer
        #: deliveries (text, topic, a duplicate's extra copy) and delayed
        #: ``published`` answers (text, None, False)
        self._outbox: deque[tuple[str, str | None, bool]] = deque()
        self._outbox_size = 0  # characters queued in _outbox

    async def serve(self) -> None:
        """Run until the client leaves, the server closes it, or the server shuts down."""
        hub = self._endpoint.hub
        try:
            async with asyncio.TaskGroup() as tasks:
                writer = tasks.create_task(self._writer())
                await self._receive()
                writer.cancel()
        finally:
            self._closing = True
            hub.leave(self.subscriber)
            for _, topic, extra in self._outbox:
                if topic is not None:
                    hub.undelivered(topic, extra)
            self._outbox.clear()
            self._outbox_size = 0
            waiting = sum(1 for _, item in self._replies if item is not _CLOSE)
            self._discard_queue(waiting)

    def push(self, text: str, topic: str | None, extra: bool = False) -> bool:
        """Queue one delivery (or, ``topic`` None, a delayed answer); False if full or closing."""
        outbox = self._outbox
        full = len(outbox) >= MAX_OUTBOX or (
            bool(outbox) and self._outbox_size + len(text) > MAX_OUTBOX_BYTES
        )
        if self._closing or full:
            return False
        outbox.append((text, topic, extra))
        self._outbox_size += len(text)
        self._wakeup.set()
        return True

    def _count_received(self, size: int) -> None:
        self._stats.received += 1

    def _count_dropped(self) -> None:
        pass  # a frame lost on the way (--drop-rate): no effect, nothing to count here

    def _count_queued(self, change: int) -> None:
        pass

    def _count_paused(self) -> None:
        pass

    async def _answer(self, frame: str | bytes, due: float) -> None:
        handled = self._endpoint.hub.handle(self.subscriber, frame)
        reply = handled.reply
        if handled.publication is not None:
            reply = self._endpoint.publish_ws(handled.publication, self)
        if reply is None:  # answered after the delayed fan-out
            return
        if self._queued:
            self._enqueue(due, reply)
        else:
            await self._send(reply, None)

    def _queue_close(self) -> None:
        self._enqueue(0.0, _CLOSE, reply=False)

    async def _writer(self) -> None:
        """Send deliveries at once and replies when due; close when the marker comes up."""
        try:
            await self._write_loop()
        finally:
            self._writer_ended()

    async def _write_loop(self) -> None:
        outbox, replies = self._outbox, self._replies
        while True:
            self._wakeup.clear()
            if outbox:
                text, topic, extra = outbox.popleft()
                self._outbox_size -= len(text)
                await self._send(text, topic, extra)
                continue
            now = time.monotonic()
            if replies and replies[0][0] <= now:
                item = self._dequeue(reply=replies[0][1] is not _CLOSE)
                if item is _CLOSE:
                    await self.ws.close(code=CLOSE_AFTER_CODE, message=CLOSE_AFTER_REASON)
                    return
                await self._send(item, None)
                continue
            timeout = max(0.0, replies[0][0] - now) if replies else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()

    async def _send(self, text: str, topic: str | None, extra: bool = False) -> None:
        """Write one frame: a delivery of ``topic`` (``extra``: a duplicate's extra copy),
        or (None) a reply; count it."""
        hub = self._endpoint.hub
        try:
            await self.ws.send_str(text)
        except ConnectionError:  # closing or closed
            if topic is not None:
                hub.undelivered(topic, extra)
            return
        if topic is None:
            self._stats.replies += 1
        else:
            hub.delivered(topic)


class PubSubEndpoint:
    """``GET /pubsub``, ``POST /api/publish`` and the ``--stream-every`` stream: shared state."""

    def __init__(
        self,
        stats: PubSubStats,
        policy: FaultPolicy,
        faults: DeliveryFaults | None = None,
        seed: int | None = None,
        stream_every: float = 0.0,
        max_message_size: int = 4 * 1024 * 1024,
        close_timeout: float = 5.0,
    ) -> None:
        self.stats = stats
        self.policy = policy
        self.hub = PubSubHub(stats, faults, seed)
        self.stream_every = stream_every
        self.connections: set[PubSubConnection] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._pending_bytes = 0
        self._stream: asyncio.Task[None] | None = None
        self._max_message_size = max_message_size
        self._close_timeout = close_timeout

    @property
    def delay(self) -> float:
        """Seconds before a publication that arrives now fans out: ``--delivery-delay``,
        and past the end of a ``--stall-every`` stall it would fall in (the broker
        holds what comes during one, as it holds replies)."""
        wait = self.hub.faults.delay
        now = time.monotonic()
        end = self.policy.stall_end(now + wait)
        return wait if end is None else end - now

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """``GET /pubsub``: one connection, served until either side closes it."""
        ws = await accept(request, self._max_message_size, self._close_timeout)
        conn = PubSubConnection(ws, request, self, self.policy)
        self.connections.add(conn)
        self.stats.connections += 1
        self.stats.connections_open += 1
        try:
            await conn.serve()
        finally:
            self.connections.discard(conn)
            self.stats.connections_open -= 1
        return ws

    def publish_ws(self, pub: Publication, conn: PubSubConnection) -> str | None:
        """A WebSocket publish: fan out now (its answer returned) or after the delay (None)."""
        delay = self.delay
        if not delay:
            return pub.published(self.hub.fan_out(pub))
        if not self._hold(pub):
            self.stats.errors += 1
            return error("too many publications waiting", pub.id)

        def later() -> None:
            self._timers.discard(handle)
            self._release(pub)
            conn.push(pub.published(self.hub.fan_out(pub)), None)

        handle = asyncio.get_running_loop().call_later(delay, later)
        self._timers.add(handle)
        return None

    async def http_publish(self, body: bytes) -> web.Response:
        """``POST /api/publish``: the same fan-out; answers once it is done."""
        try:
            pub = parse_publication(json.loads(body))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            reason = str(exc) if isinstance(exc, BadPublication) else "body is not JSON"
            raise web.HTTPBadRequest(reason=reason) from None
        delay = self.delay
        if delay:
            if not self._hold(pub):
                raise web.HTTPServiceUnavailable(reason="too many publications waiting")
            try:
                await asyncio.sleep(delay)
            finally:
                self._release(pub)
        answer: dict[str, Any] = {"published": True, "subscribers": self.hub.fan_out(pub)}
        return web.json_response(answer)

    def _hold(self, pub: Publication) -> bool:
        """Count ``pub`` as waiting for its delay; False when the waiting room is full."""
        size = len(pub.delivery)
        if self.stats.pending >= MAX_PENDING or self._pending_bytes + size > MAX_PENDING_BYTES:
            return False
        self.stats.pending += 1
        self._pending_bytes += size
        return True

    def _release(self, pub: Publication) -> None:
        self.stats.pending -= 1
        self._pending_bytes -= len(pub.delivery)

    async def start_stream(self, _app: web.Application) -> None:
        if self.stream_every:
            self._stream = asyncio.create_task(self._streamer(self.stream_every))

    async def _streamer(self, every: float) -> None:
        """Publish a tick on ``ticks`` every ``every`` seconds (seq 1, 2, ...; none skipped)."""
        started = time.monotonic()
        n = 0
        while True:
            # Numbers never skip, even when the loop fell behind: a gap is a fault, always.
            n += 1
            await asyncio.sleep(max(0.0, started + n * every - time.monotonic()))
            self.hub.fan_out(tick(n, time.time()))

    async def close_all(self, _app: web.Application) -> None:
        """On shutdown: stop the stream and the delayed fan-outs, close every connection."""
        if self._stream is not None:
            self._stream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stream
        for handle in self._timers:
            handle.cancel()
        self.stats.pending -= len(self._timers)
        self._pending_bytes = 0
        self._timers.clear()
        closes = [c.ws.close(code=1001, message=b"server shutdown") for c in self.connections]
        await asyncio.gather(*closes, return_exceptions=True)


__all__ = [
    "MAX_OUTBOX",
    "MAX_OUTBOX_BYTES",
    "MAX_PENDING",
    "MAX_PENDING_BYTES",
    "PubSubConnection",
    "PubSubEndpoint",
]

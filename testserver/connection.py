"""One ``/ws`` client: receive frames, answer them (on time, in order), deliver events.

With no delay or stall configured every reply is sent inline, right after
its message is processed: the fastest path, and order comes for free. With
``--delay`` or stalls, replies wait in a FIFO queue that a per-connection
sender task drains when each reply is due; with ``--push-every`` a pusher
task sends the connection its unsolicited heartbeats. Those tasks belong to
:meth:`Connection.serve` (an :class:`asyncio.TaskGroup`), which cancels and
awaits them when the connection ends, so no task outlives its connection and
a crash in one is never silent.

Counting follows :mod:`wsload.testserver.stats`: a reply is counted as sent only
once the frame has been handed to the socket; a reply that cannot be sent
any more (connection gone) is counted as dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Final

from aiohttp import WSMessage, WSMsgType, web

from wsload.testserver.faults import FaultPolicy, next_push, push_message
from wsload.testserver.replies import Reply, answer
from wsload.testserver.stats import ServerStats

CLOSE_AFTER_CODE: Final = 1000
CLOSE_AFTER_REASON: Final = b"close-after"


class _CloseMarker:
    """Queued after the reply that ends a ``--close-after`` connection."""


_CLOSE: Final = _CloseMarker()


class FaultedReceiver:
    """The reading both ``/ws`` and ``/chat`` connections do, under the fault flags.

    Each data frame is counted; once the connection is closing it is
    dropped; otherwise the :class:`FaultPolicy` decides: lost on the way
    (dropped, no effect at all), or answered by :meth:`_answer` (inline, or
    queued until due); then perhaps ``--close-after``'s close: at once when
    replies go inline, else queued (:meth:`_queue_close`) behind the replies
    already waiting. A subclass says how to count, answer and queue.
    """

    ws: web.WebSocketResponse
    _policy: FaultPolicy
    _queued: bool  # replies wait in a queue (delay or stalls), else go inline
    _closing: bool  # --close-after has decided (or the writer ended): no more replies

    def _count_received(self, size: int) -> None:
        raise NotImplementedError

    def _count_dropped(self) -> None:
        raise NotImplementedError

    async def _answer(self, frame: str | bytes, due: float) -> None:
        """Answer one frame: inline, or queued until ``due`` (monotonic)."""
        raise NotImplementedError

    def _queue_close(self) -> None:
        """Queue the ``--close-after`` close behind the replies already queued."""
        raise NotImplementedError

    async def _receive(self) -> None:
        n = 0
        async for msg in self.ws:
            data = data_frame(msg)
            if data is None:
                return
            frame, size = data
            self._count_received(size)
            if self._closing:
                self._count_dropped()
                continue
            n += 1
            decision = self._policy.decide(time.monotonic(), n)
            if decision.reply_at is None:  # lost on the way: no reply, no effect at all
                self._count_dropped()
            else:
                await self._answer(frame, decision.reply_at)
            if not decision.close:
                continue
            self._closing = True
            if self._queued:
                self._queue_close()
            else:
                await self.ws.close(code=CLOSE_AFTER_CODE, message=CLOSE_AFTER_REASON)
                return


class Connection(FaultedReceiver):
    """A WebSocket client of the reference server and everything that belongs to it."""

    def __init__(self, ws: web.WebSocketResponse, stats: ServerStats, policy: FaultPolicy) -> None:
        self.ws = ws
        self.subscriptions: set[str] = set()
        self._stats = stats
        self._policy = policy
        self._queued = policy.faults.holds_replies
        self._queue: deque[tuple[float, Reply | _CloseMarker]] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False  # --close-after has decided; later messages get no reply

    async def serve(self) -> None:
        """Run until the client leaves, the server closes it, or the server shuts down."""
        push_every = self._policy.faults.push_every
        try:
            if not self._queued and not push_every:
                await self._receive()
                return
            async with asyncio.TaskGroup() as tasks:
                helpers = [tasks.create_task(self._sender())] if self._queued else []
                if push_every:
                    helpers.append(tasks.create_task(self._pusher(push_every)))
                await self._receive()
                for helper in helpers:
                    helper.cancel()
        finally:
            # Replies still waiting for their due time will never leave.
            self._stats.dropped += sum(1 for _, item in self._queue if item is not _CLOSE)
            self._queue.clear()

    async def deliver(self, text: str) -> bool:
        """Send one event message now (events skip delay and stalls); True if it went out."""
        sent = await self._write(text)
        if sent is None:
            self._stats.events_undelivered += 1
            return False
        self._stats.events_delivered += 1
        self._stats.messages_sent += 1
        self._stats.bytes_sent += sent
        return True

    def _count_received(self, size: int) -> None:
        self._stats.bytes_received += size
        self._stats.messages_received += 1

    def _count_dropped(self) -> None:
        self._stats.dropped += 1  # a subscribe lost on the way subscribes to nothing

    async def _answer(self, frame: str | bytes, due: float) -> None:
        if self._queued:
            self._queue.append((due, answer(frame, self.subscriptions)))
            self._wakeup.set()
        else:
            await self._send_reply(answer(frame, self.subscriptions))

    def _queue_close(self) -> None:
        self._queue.append((0.0, _CLOSE))
        self._wakeup.set()

    async def _sender(self) -> None:
        """Send queued replies when due, in arrival order; close when the marker comes up."""
        queue = self._queue
        while True:
            if not queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            due, item = queue[0]
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            queue.popleft()
            if isinstance(item, _CloseMarker):
                await self.ws.close(code=CLOSE_AFTER_CODE, message=CLOSE_AFTER_REASON)
                return
            await self._send_reply(item)

    async def _pusher(self, every: float) -> None:
        """Push a heartbeat every ``every`` seconds until the connection closes or is closing."""
        started = time.monotonic()
        stats = self._stats
        n = 0
        while True:
            due, n = next_push(started, every, time.monotonic(), n)
            await asyncio.sleep(due - time.monotonic())
            if self._closing or self.ws.closed:
                return
            text = push_message(n)
            sent = await self._write(text)
            if sent is None:
                return
            stats.pushed += 1
            stats.messages_sent += 1
            stats.bytes_sent += sent

    async def _send_reply(self, reply: Reply) -> None:
        sent = await self._write(reply.data)
        stats = self._stats
        if sent is None:
            stats.dropped += 1
            return
        stats.messages_sent += 1
        stats.bytes_sent += sent
        if reply.kind == "echoes_sent":
            stats.echoes_sent += 1
        elif reply.kind == "pongs_sent":
            stats.pongs_sent += 1
        else:
            stats.acks_sent += 1

    async def _write(self, data: str | bytes) -> int | None:
        """Hand one frame to the socket; its payload size, or None if the connection is gone."""
        try:
            if isinstance(data, str):
                await self.ws.send_str(data)
                return utf8_len(data)
            await self.ws.send_bytes(data)
            return len(data)
        except ConnectionError:  # closing or closed (aiohttp's ClientConnectionResetError)
            return None


async def accept(
    request: web.Request, max_message_size: int, close_timeout: float
) -> web.WebSocketResponse:
    """The WebSocket handshake of ``request`` (uncompressed), shared by ``/ws`` and ``/chat``.

    A request that is not an upgrade gets a 400 naming its path.
    """
    ws = web.WebSocketResponse(compress=False, max_msg_size=max_message_size, timeout=close_timeout)
    if not ws.can_prepare(request).ok:
        raise web.HTTPBadRequest(reason=f"expected a WebSocket upgrade request on {request.path}")
    await ws.prepare(request)
    return ws


def data_frame(msg: WSMessage) -> tuple[str | bytes, int] | None:
    """A data message's frame and its payload size in bytes, read alike by ``/ws`` and ``/chat``.

    None for anything else: an ERROR (e.g. a frame above the size limit), after
    which aiohttp has closed the connection and the reader stops.
    """
    if msg.type is WSMsgType.TEXT:
        return msg.data, utf8_len(msg.data)
    if msg.type is WSMsgType.BINARY:
        return msg.data, len(msg.data)
    return None


def utf8_len(text: str) -> int:
    """The UTF-8 size of ``text``, without encoding it when it is ASCII (the common case)."""
    return len(text) if text.isascii() else len(text.encode())


__all__ = [
    "CLOSE_AFTER_CODE",
    "CLOSE_AFTER_REASON",
    "Connection",
    "FaultedReceiver",
    "accept",
    "data_frame",
    "utf8_len",
]

"""One ``/ws`` client: receive frames, answer them (on time, in order), deliver events.

With no delay or stall configured every reply is sent inline, right after
its message is processed: the fastest path, and order comes for free. With
``--delay`` or stalls, replies wait in a FIFO queue that a per-connection
sender task drains when each reply is due. That queue holds at most
:data:`MAX_QUEUED_REPLIES` replies (``/chat``'s too): when it is full the
connection stops reading until the sender has made room, so TCP pushes back
on a client that sends faster than a delayed server answers, and it costs
bounded memory rather than a reply per message it could send. With ``--push-every`` a pusher
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
import contextlib
import socket
import time
from collections import deque
from typing import Final, Generic, TypeVar

from aiohttp import WSMessage, WSMsgType, web

from wsload.testserver.faults import FaultPolicy, next_push, push_message
from wsload.testserver.replies import Reply, answer
from wsload.testserver.stats import ServerStats

CLOSE_AFTER_CODE: Final = 1000
CLOSE_AFTER_REASON: Final = b"close-after"
MAX_QUEUED_REPLIES: Final = 4096  #: delayed replies of one connection before reading pauses
#: Seconds between checks, while reading is paused, that the client is still there
#: (a paused connection reads nothing, so it would not otherwise notice it left).
PAUSED_CHECK: Final = 0.25

_Item = TypeVar("_Item")  # what a reply queue holds: a reply or the close marker


class _CloseMarker:
    """Queued after the reply that ends a ``--close-after`` connection."""


_CLOSE: Final = _CloseMarker()


class FaultedReceiver(Generic[_Item]):
    """The reading both ``/ws`` and ``/chat`` connections do, under the fault flags.

    Each data frame is counted; when replies are queued and the queue is
    full, reading pauses first (:meth:`_room`); once the connection is
    closing the frame is dropped; otherwise the :class:`FaultPolicy` decides:
    lost on the way (dropped, no effect at all), or answered by
    :meth:`_answer` (inline, or queued until due with :meth:`_enqueue`);
    then perhaps ``--close-after``'s close: at once when replies go inline,
    else queued (:meth:`_queue_close`) behind the replies already waiting.
    A subclass says how to count, answer and queue; its writer takes queued
    items with :meth:`_dequeue` and calls :meth:`_writer_ended` when it stops.
    """

    ws: web.WebSocketResponse
    _request: web.Request
    _policy: FaultPolicy
    _queued: bool  # replies wait in a queue (delay or stalls), else go inline
    _closing: bool  # --close-after has decided (or the writer ended): no more replies
    _replies: deque[tuple[float, _Item]]  # (due, reply or close marker), in arrival order
    _wakeup: asyncio.Event  # something for the writer
    _space: asyncio.Event  # the reply queue has room again, or the writer ended

    def _init_queue(self, request: web.Request) -> None:
        self._request = request
        self._replies = deque()
        self._wakeup = asyncio.Event()
        self._space = asyncio.Event()
        self._closing = False

    def _count_queued(self, change: int) -> None:
        """Keep the endpoint's ``replies_queued`` gauge (``change`` replies in or out)."""
        raise NotImplementedError

    def _count_paused(self) -> None:
        """Count one pause of reading (``reads_paused``): the reply queue was full."""
        raise NotImplementedError

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

    def _enqueue(self, due: float, item: _Item, reply: bool = True) -> None:
        """Queue ``item`` (a reply, unless ``reply`` is False) for the writer."""
        self._replies.append((due, item))
        if reply:
            self._count_queued(1)
        self._wakeup.set()

    def _dequeue(self, reply: bool) -> _Item:
        """Take the first queued item (the writer found it due); the receiver may read on."""
        _, item = self._replies.popleft()
        if reply:
            self._count_queued(-1)
        self._space.set()
        return item

    def _discard_queue(self, replies: int) -> None:
        """The connection ended with ``replies`` replies still queued: forget them all."""
        self._count_queued(-replies)
        self._replies.clear()

    def _writer_ended(self) -> None:
        """Nothing sends any more: later messages count as dropped, and reading resumes."""
        self._closing = True
        self._space.set()

    async def _room(self) -> None:
        """Wait while the reply queue is full: reading pauses, TCP pushes back on the client.

        Ends when the writer made room or ended, or the client left or the
        server is closing it (checked every :data:`PAUSED_CHECK` seconds:
        a connection that reads nothing would not notice otherwise); then
        the connection is closing and the frame waiting is dropped.
        """
        if len(self._replies) < MAX_QUEUED_REPLIES:
            return
        self._count_paused()
        while len(self._replies) >= MAX_QUEUED_REPLIES and not self._closing:
            if self.ws.closed or peer_gone(self._request.transport):
                self._closing = True
                return
            self._space.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PAUSED_CHECK):
                    await self._space.wait()

    async def _receive(self) -> None:
        n = 0
        async for msg in self.ws:
            data = data_frame(msg)
            if data is None:
                return
            frame, size = data
            self._count_received(size)
            if self._queued and not self._closing:
                await self._room()
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


class Connection(FaultedReceiver[Reply | _CloseMarker]):
    """A WebSocket client of the reference server and everything that belongs to it."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        stats: ServerStats,
        policy: FaultPolicy,
    ) -> None:
        self.ws = ws
        self.subscriptions: set[str] = set()
        self._stats = stats
        self._policy = policy
        self._queued = policy.faults.holds_replies
        self._init_queue(request)

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
            waiting = sum(1 for _, item in self._replies if item is not _CLOSE)
            self._stats.dropped += waiting
            self._discard_queue(waiting)

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

    def _count_queued(self, change: int) -> None:
        self._stats.replies_queued += change

    def _count_paused(self) -> None:
        self._stats.reads_paused += 1

    async def _answer(self, frame: str | bytes, due: float) -> None:
        if self._queued:
            self._enqueue(due, answer(frame, self.subscriptions))
        else:
            await self._send_reply(answer(frame, self.subscriptions))

    def _queue_close(self) -> None:
        self._enqueue(0.0, _CLOSE, reply=False)

    async def _sender(self) -> None:
        """Send queued replies when due, in arrival order; close when the marker comes up."""
        try:
            await self._send_loop()
        finally:
            self._writer_ended()

    async def _send_loop(self) -> None:
        queue = self._replies
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
            item = self._dequeue(reply=item is not _CLOSE)
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


_TCP_CLOSE, _TCP_CLOSE_WAIT = 7, 8  # Linux tcp_states.h


def peer_gone(transport: asyncio.BaseTransport | None) -> bool:
    """Whether the client has left (reset, or closed its side), seen without reading.

    A connection that stopped reading gets no news from its event loop: a
    reset or a FIN waits unread behind the data. The kernel knows, though:
    on Linux the socket's TCP state (TCP_INFO) says CLOSE or CLOSE_WAIT.
    Elsewhere only a transport the loop already closed counts.
    """
    if transport is None or transport.is_closing():
        return True
    sock = transport.get_extra_info("socket")
    tcp_info = getattr(socket, "TCP_INFO", None)
    if sock is None or tcp_info is None:
        return False
    try:
        state = sock.getsockopt(socket.IPPROTO_TCP, tcp_info, 1)[0]
    except OSError:
        return True
    return state in (_TCP_CLOSE, _TCP_CLOSE_WAIT)


def utf8_len(text: str) -> int:
    """The UTF-8 size of ``text``, without encoding it when it is ASCII (the common case)."""
    return len(text) if text.isascii() else len(text.encode())


__all__ = [
    "CLOSE_AFTER_CODE",
    "CLOSE_AFTER_REASON",
    "MAX_QUEUED_REPLIES",
    "Connection",
    "FaultedReceiver",
    "accept",
    "data_frame",
    "peer_gone",
    "utf8_len",
]

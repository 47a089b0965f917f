"""One ``/chat`` client over aiohttp: replies (with the fault flags), broadcasts, heartbeats.

The rules live in :mod:`wsload.testserver.chat`; this shell reads frames,
asks :class:`~wsload.testserver.chat.ChatHub` what to answer, and writes.

Replies follow the fault flags exactly as ``/ws`` replies do
(:class:`~wsload.testserver.faults.FaultPolicy`): with no delay or stall they
are sent inline, right after the message is processed; otherwise they wait in
a FIFO queue until due. A message dropped on purpose has no effect at all
(no reply, no broadcast). Broadcasts and heartbeats go out when due, like
``/ws`` events and pushes, from one writer task per connection.

Nothing grows without bound when a client reads slowly: an inline reply
waits for the socket (aiohttp drains past its write buffer), so the
connection stops reading and TCP pushes back on the client; the reply queue
holds at most :data:`MAX_QUEUED_REPLIES` (then reading pauses the same way);
and each connection's broadcast queue holds at most :data:`MAX_OUTBOX`
messages and :data:`MAX_OUTBOX_BYTES` (one message always fits), further
broadcasts to it being counted as ``broadcasts_dropped`` rather than slowing
the sender down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Mapping
from typing import Final

from aiohttp import web

from wsload.testserver.chat import ChatHub, ChatReplyKind, Member
from wsload.testserver.connection import (
    CLOSE_AFTER_CODE,
    CLOSE_AFTER_REASON,
    MAX_QUEUED_REPLIES,
    FaultedReceiver,
    accept,
    utf8_len,
)
from wsload.testserver.faults import FaultPolicy, next_push
from wsload.testserver.stats import ChatStats

MAX_OUTBOX: Final = 1024  #: broadcasts waiting for one connection
MAX_OUTBOX_BYTES: Final = 4 * 1024 * 1024  #: their characters, beyond the first one
DEFAULT_HEARTBEAT: Final = 1.0  #: seconds between heartbeats (``--chat-heartbeat``)

_CLOSE: Final = "close"  # the reply queue's marker: close (--close-after) once it comes up
_Reply = tuple[str, ChatReplyKind] | str


def heartbeat_message(now: float) -> str:
    """A heartbeat: ``{"type": "heartbeat", "ts": <epoch seconds>}`` (no id: it answers nothing)."""
    return json.dumps({"type": "heartbeat", "ts": round(now, 3)}, separators=(",", ":"))


class ChatConnection(FaultedReceiver[_Reply]):
    """A ``/chat`` client and everything that belongs to it; :meth:`serve` runs it."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        hub: ChatHub,
        stats: ChatStats,
        policy: FaultPolicy,
        heartbeat: float,
    ) -> None:
        self.ws = ws
        self.member = Member(self.push)
        self._hub = hub
        self._stats = stats
        self._policy = policy
        self._heartbeat = heartbeat
        self._queued = policy.faults.holds_replies
        self._init_queue(request)  # _wakeup: something for the writer, a broadcast or a reply
        self._outbox: deque[str] = deque()
        self._outbox_size = 0  # characters queued in _outbox

    async def serve(self) -> None:
        """Run until the client leaves, the server closes it, or the server shuts down."""
        try:
            async with asyncio.TaskGroup() as tasks:
                writer = tasks.create_task(self._writer())
                await self._receive()
                writer.cancel()
        finally:
            self._closing = True
            self._hub.leave_all(self.member)
            stats = self._stats
            waiting = sum(1 for _, item in self._replies if item is not _CLOSE)
            stats.dropped += waiting
            stats.broadcasts_dropped += len(self._outbox)
            self._discard_queue(waiting)
            self._outbox.clear()

    def push(self, text: str) -> None:
        """Queue one broadcast for this connection, or count it dropped (full, or closing)."""
        outbox = self._outbox
        full = len(outbox) >= MAX_OUTBOX or (
            bool(outbox) and self._outbox_size + len(text) > MAX_OUTBOX_BYTES
        )
        if self._closing or full:
            self._stats.broadcasts_dropped += 1
            return
        outbox.append(text)
        self._outbox_size += len(text)
        self._wakeup.set()

    def _count_received(self, size: int) -> None:
        self._stats.bytes_received += size
        self._stats.received += 1

    def _count_dropped(self) -> None:
        self._stats.dropped += 1

    def _count_queued(self, change: int) -> None:
        self._stats.replies_queued += change

    def _count_paused(self) -> None:
        self._stats.reads_paused += 1

    async def _answer(self, frame: str | bytes, due: float) -> None:
        handled = self._hub.handle(self.member, frame)
        if handled.accepted_msg:
            self._stats.messages += 1
            for member in handled.recipients:
                member.push(handled.broadcast)
        if self._queued:
            self._enqueue(due, (handled.reply, handled.kind))
        else:
            await self._send_reply(handled.reply, handled.kind)

    def _queue_close(self) -> None:
        self._enqueue(0.0, _CLOSE, reply=False)

    async def _writer(self) -> None:
        """Send broadcasts at once, replies when due, heartbeats on the timer; close on marker."""
        try:
            await self._write_loop()
        finally:
            self._writer_ended()  # later messages count as dropped; a paused reader resumes

    async def _write_loop(self) -> None:
        stats, outbox, replies = self._stats, self._outbox, self._replies
        every = self._heartbeat
        started = time.monotonic()
        beat_due, beat_n = next_push(started, every, started, 0) if every else (0.0, 0)
        while True:
            self._wakeup.clear()
            if outbox:
                text = outbox.popleft()
                self._outbox_size -= len(text)
                sent = await self._write(text)
                if sent is None:
                    stats.broadcasts_dropped += 1
                else:
                    stats.broadcasts += 1
                    stats.sent += 1
                    stats.bytes_sent += sent
                continue
            now = time.monotonic()
            if replies and replies[0][0] <= now:
                item = self._dequeue(reply=replies[0][1] is not _CLOSE)
                if isinstance(item, str):  # the close marker
                    await self.ws.close(code=CLOSE_AFTER_CODE, message=CLOSE_AFTER_REASON)
                    return
                await self._send_reply(*item)
                continue
            if every and beat_due <= now:
                sent = None
                if not (self._closing or self.ws.closed):
                    sent = await self._write(heartbeat_message(time.time()))
                if sent is None:  # closing or gone: no more heartbeats
                    every = 0.0
                    continue
                stats.heartbeats += 1
                stats.sent += 1
                stats.bytes_sent += sent
                beat_due, beat_n = next_push(started, every, time.monotonic(), beat_n)
                continue
            deadlines = [replies[0][0]] if replies else []
            if every:
                deadlines.append(beat_due)
            timeout = max(0.0, min(deadlines) - now) if deadlines else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()

    async def _send_reply(self, reply: str, kind: ChatReplyKind) -> None:
        sent = await self._write(reply)
        stats = self._stats
        if sent is None:
            stats.dropped += 1
            return
        setattr(stats, kind, getattr(stats, kind) + 1)
        stats.sent += 1
        stats.bytes_sent += sent

    async def _write(self, text: str) -> int | None:
        """Hand one text frame to the socket: its size, or None once the connection is gone."""
        try:
            await self.ws.send_str(text)
        except ConnectionError:  # closing or closed (aiohttp's ClientConnectionResetError)
            return None
        return utf8_len(text)


class ChatEndpoint:
    """``GET /chat`` for a :class:`~wsload.testserver.app.ReferenceServer`: state and handler."""

    def __init__(
        self,
        stats: ChatStats,
        policy: FaultPolicy,
        users: Mapping[str, str] | None = None,
        heartbeat: float = DEFAULT_HEARTBEAT,
        max_message_size: int = 4 * 1024 * 1024,
        close_timeout: float = 5.0,
    ) -> None:
        self.hub = ChatHub(users)
        self.stats = stats
        self.policy = policy
        self.heartbeat = heartbeat
        self.connections: set[ChatConnection] = set()
        self._max_message_size = max_message_size
        self._close_timeout = close_timeout

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """``GET /chat``: one connection, served until either side closes it."""
        ws = await accept(request, self._max_message_size, self._close_timeout)
        conn = ChatConnection(ws, request, self.hub, self.stats, self.policy, self.heartbeat)
        self.connections.add(conn)
        self.stats.connections += 1
        self.stats.connections_open += 1
        try:
            await conn.serve()
        finally:
            self.connections.discard(conn)
            self.stats.connections_open -= 1
        return ws

    async def close_all(self, _app: web.Application) -> None:
        """On shutdown, close every connection (1001, going away) at once."""
        closes = [c.ws.close(code=1001, message=b"server shutdown") for c in self.connections]
        await asyncio.gather(*closes, return_exceptions=True)


__all__ = [
    "DEFAULT_HEARTBEAT",
    "MAX_OUTBOX",
    "MAX_OUTBOX_BYTES",
    "MAX_QUEUED_REPLIES",
    "ChatConnection",
    "ChatEndpoint",
    "heartbeat_message",
]

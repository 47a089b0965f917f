"""The reference target as an aiohttp application: ``/ws`` plus a small HTTP API.

aiohttp rather than the websockets server because ``POST /api/events``
carries a JSON body, and the websockets server's HTTP hook refuses request
bodies. One application serves both on one port.

Replies leave in order per connection. With no fault active they are sent
inline; with ``--delay`` or stalls they go through a per-connection sender
task that the connection's handler owns, cancels and awaits on close.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from testserver.faults import FaultPolicy, Faults
from testserver.stats import ServerStats

MAX_MESSAGE_SIZE = 16 * 1024 * 1024
MAX_BODY_SIZE = 1024 * 1024
MAX_EVENTS_PER_CALL = 10_000
_CLOSE = object()  # queued after the reply that ends a --close-after connection

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Connection:
    """One WebSocket client: its socket, its subscriptions and its reply queue."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.events: set[str] = set()
        self.queue: deque[tuple[float, object, str]] = deque()
        self.wakeup = asyncio.Event()
        self.sender: asyncio.Task[None] | None = None


class ReferenceServer:
    """State shared by every connection: counters, fault policy, subscriptions."""

    def __init__(self, faults: Faults | None = None, seed: int | None = None) -> None:
        self.faults = faults or Faults()
        self.policy = FaultPolicy(self.faults, started=time.monotonic(), seed=seed)
        self.stats = ServerStats()
        self.connections: set[_Connection] = set()
        self._event_ids = itertools.count(1)
        self._inline = not (self.faults.delay or self.faults.stall_every)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_SIZE, middlewares=[_json_errors])
        app.router.add_get("/ws", self.websocket)
        app.router.add_post("/api/events", self.publish)
        app.router.add_get("/api/health", self.health)
        app.router.add_get("/api/stats", self.get_stats)
        app.router.add_post("/api/stats/reset", self.reset_stats)
        app.on_shutdown.append(self._close_all)
        return app

    # -- WebSocket ----------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(compress=False, max_msg_size=MAX_MESSAGE_SIZE)
        if not ws.can_prepare(request).ok:
            raise web.HTTPBadRequest(reason="expected a WebSocket upgrade request")
        await ws.prepare(request)
        conn = _Connection(ws)
        self.connections.add(conn)
        self.stats.connections_opened += 1
        self.stats.connections_open += 1
        if not self._inline:
            conn.sender = asyncio.create_task(self._sender(conn))
        try:
            await self._receive(conn)
        finally:
            if conn.sender is not None:
                conn.sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await conn.sender
            self.stats.dropped += len([1 for _, item, _ in conn.queue if item is not _CLOSE])
            self.connections.discard(conn)
            self.stats.connections_open -= 1
        return ws

    async def _receive(self, conn: _Connection) -> None:
        stats = self.stats
        n = 0
        reply: str | bytes
        async for msg in conn.ws:
            if msg.type is WSMsgType.TEXT:
                data: str | bytes = msg.data
                stats.bytes_received += len(msg.data.encode())
                kind, reply = self._answer(conn, msg.data)
            elif msg.type is WSMsgType.BINARY:
                data = msg.data
                stats.bytes_received += len(data)
                kind, reply = "echoes_sent", data
            else:  # ERROR: the connection is unusable
                break
            stats.messages_received += 1
            n += 1
            decision = self.policy.decide(time.monotonic(), n)
            if decision.reply_at is None:
                stats.dropped += 1
            elif self._inline:
                await self._send(conn, reply, kind)
            else:
                conn.queue.append((decision.reply_at, reply, kind))
                conn.wakeup.set()
            if decision.close_after_reply:
                if self._inline:
                    await conn.ws.close(code=1000, message=b"close-after")
                    break
                conn.queue.append((0.0, _CLOSE, ""))
                conn.wakeup.set()

    def _answer(self, conn: _Connection, text: str) -> tuple[str, str]:
        """The reply to a text frame: pong, subscription ack, or the echo."""
        if '"type"' in text and ("ping" in text or "subscribe" in text):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict) and parsed.get("type") == "ping":
                return "pongs_sent", '{"type": "pong"}'
            if isinstance(parsed, dict) and parsed.get("type") == "subscribe":
                events = parsed.get("events")
                names = (
                    [e for e in events if isinstance(e, str)] if isinstance(events, list) else []
                )
                conn.events.update(names or ["*"])
                ack = {"type": "subscribed", "events": sorted(conn.events)}
                return "acks_sent", json.dumps(ack)
        return "echoes_sent", text

    async def _sender(self, conn: _Connection) -> None:
        """Send queued replies when due, in order (only with --delay or stalls)."""
        while True:
            while not conn.queue:
                conn.wakeup.clear()
                await conn.wakeup.wait()
            due, item, kind = conn.queue[0]
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            conn.queue.popleft()
            if item is _CLOSE:
                await conn.ws.close(code=1000, message=b"close-after")
                return
            assert isinstance(item, str | bytes)
            await self._send(conn, item, kind)

    async def _send(self, conn: _Connection, data: str | bytes, kind: str) -> bool:
        stats = self.stats
        try:
            if isinstance(data, str):
                await conn.ws.send_str(data)
                size = len(data.encode())
            else:
                await conn.ws.send_bytes(data)
                size = len(data)
        except (ConnectionError, RuntimeError):
            stats.dropped += 1  # closing or closed: the reply never went out
            return False
        stats.messages_sent += 1
        stats.bytes_sent += size
        setattr(stats, kind, getattr(stats, kind) + 1)
        return True

    async def _close_all(self, _app: web.Application) -> None:
        for conn in list(self.connections):
            await conn.ws.close(code=1001, message=b"server shutdown")

    # -- HTTP API -----------------------------------------------------------

    async def publish(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(reason="body is not valid JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(reason="body must be a JSON object")
        name = body.get("event")
        count = body.get("count", 1)
        if not isinstance(name, str) or not name or len(name) > 200:
            raise web.HTTPBadRequest(reason="'event' must be a non-empty string")
        if isinstance(count, bool) or not isinstance(count, int):
            raise web.HTTPBadRequest(reason="'count' must be an integer")
        if not 1 <= count <= MAX_EVENTS_PER_CALL:
            raise web.HTTPBadRequest(reason=f"'count' must be 1..{MAX_EVENTS_PER_CALL}")
        subscribers = [c for c in self.connections if name in c.events or "*" in c.events]
        delivered = 0
        batch = next(self._event_ids)
        for seq in range(1, count + 1):
            event = {
                "type": "event",
                "event": name,
                "data": body.get("data"),
                "seq": seq,
                "id": f"{batch}-{seq}",
                "sent_at": time.time(),
            }
            text = json.dumps(event)
            for conn in subscribers:
                if self.policy.drops():
                    self.stats.dropped += 1
                    continue
                delivered += await self._send(conn, text, "events_delivered")
        self.stats.events_published += count
        return web.json_response(
            {
                "event": name,
                "count": count,
                "subscribers": len(subscribers),
                "deliveries": delivered,
            }
        )

    async def health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "connections_open": len(self.connections)})

    async def get_stats(self, _request: web.Request) -> web.Response:
        return web.json_response(self.stats.snapshot())

    async def reset_stats(self, _request: web.Request) -> web.Response:
        self.stats.reset()
        return web.json_response(self.stats.snapshot())


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every HTTP error answers JSON ``{"error": reason}``; nothing escapes as a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.reason if exc.status != 413 else f"body larger than {MAX_BODY_SIZE} bytes"
        return web.json_response({"error": reason}, status=exc.status, headers=_allow(exc))


def _allow(exc: web.HTTPException) -> dict[str, Any]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}


__all__ = ["ReferenceServer"]

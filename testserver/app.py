"""The reference target as an aiohttp application: ``/ws`` plus a small HTTP API, one port.

aiohttp rather than the websockets server because ``POST /api/events``
carries a JSON body, and the websockets server's HTTP hook refuses request
bodies.

Routes::

    GET  /ws                WebSocket: echo, ping -> pong, subscribe (testserver.replies)
    GET  /chat              WebSocket: login, rooms, acks by id, broadcasts, heartbeats
                            (testserver.chat)
    GET  /pubsub            WebSocket: subscribe, publish, deliveries (testserver.pubsub)
    POST /api/publish       {"topic": T, "seq": N, ...} -> a /pubsub fan-out
    POST /api/events        {"event": NAME, "data": ..., "count": N} -> subscribers of NAME
                            (answers deliveries, dropped and undelivered counts)
    GET  /api/health        {"status": "ok", ...}
    GET  /api/stats         the counters of testserver.stats, plus uptime
    POST /api/stats/reset   zero them (except connections_open)

Every HTTP error, from a bad body to an unknown path, answers JSON
``{"error": reason}`` with the matching status, so a misbehaving client
never costs a traceback or the server.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from wsload.common.spec import MAX_PAYLOAD_SIZE
from wsload.testserver.chat_connection import DEFAULT_HEARTBEAT, ChatEndpoint
from wsload.testserver.connection import Connection, accept
from wsload.testserver.faults import FaultPolicy, Faults
from wsload.testserver.pubsub import DeliveryFaults
from wsload.testserver.pubsub_connection import PubSubEndpoint
from wsload.testserver.replies import BadRequest, event_message, parse_publish, wants
from wsload.testserver.stats import ServerStats

#: Largest WebSocket message the server takes: the largest wsload sends
#: (``--payload-size`` up to MAX_PAYLOAD_SIZE, exactly that many bytes) plus
#: headroom for a template longer than its padding. aiohttp refuses a message
#: of exactly its limit, so the limit must stay above the documented maximum.
MAX_MESSAGE_SIZE = MAX_PAYLOAD_SIZE + 64 * 1024
MAX_BODY_SIZE = 1024 * 1024  # per HTTP request body
CLOSE_TIMEOUT = 5.0  # seconds to wait for a client's answer to our close frame
ENDPOINTS = (
    "/ws, /chat, /pubsub, /api/events, /api/publish, /api/health, /api/stats, /api/stats/reset"
)

log = logging.getLogger("wsload.testserver")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ReferenceServer:
    """State shared by every connection: counters, fault policy, open connections."""

    def __init__(
        self,
        faults: Faults | None = None,
        seed: int | None = None,
        chat_users: Mapping[str, str] | None = None,
        chat_heartbeat: float = DEFAULT_HEARTBEAT,
        delivery_faults: DeliveryFaults | None = None,
        stream_every: float = 0.0,
    ) -> None:
        self.faults = faults or Faults()
        self.policy = FaultPolicy(self.faults, started=time.monotonic(), seed=seed)
        self.stats = ServerStats()
        self.chat = ChatEndpoint(
            self.stats.chat,
            self.policy,
            chat_users,
            chat_heartbeat,
            max_message_size=MAX_MESSAGE_SIZE,
            close_timeout=CLOSE_TIMEOUT,
        )
        self.pubsub = PubSubEndpoint(
            self.stats.pubsub,
            self.policy,
            delivery_faults,
            seed,
            stream_every,
            max_message_size=MAX_MESSAGE_SIZE,
            close_timeout=CLOSE_TIMEOUT,
        )
        self.connections: set[Connection] = set()
        self._batches = itertools.count(1)

    def app(self) -> web.Application:
        """A fresh application serving this server's routes."""
        app = web.Application(client_max_size=MAX_BODY_SIZE, middlewares=[_json_errors])
        app.router.add_get("/ws", self.websocket, allow_head=False)
        app.router.add_get("/chat", self.chat.websocket, allow_head=False)
        app.router.add_get("/pubsub", self.pubsub.websocket, allow_head=False)
        app.router.add_post("/api/events", self.publish)
        app.router.add_post("/api/publish", self.publish_topic)
        app.router.add_get("/api/health", self.health)
        app.router.add_get("/api/stats", self.get_stats)
        app.router.add_post("/api/stats/reset", self.reset_stats)
        app.on_shutdown.append(self._close_all)
        app.on_shutdown.append(self.chat.close_all)
        app.on_startup.append(self.pubsub.start_stream)
        app.on_shutdown.append(self.pubsub.close_all)
        return app

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        """``GET /ws``: one connection, served until either side closes it."""
        ws = await accept(request, MAX_MESSAGE_SIZE, CLOSE_TIMEOUT)
        conn = Connection(ws, request, self.stats, self.policy)
        self.connections.add(conn)
        self.stats.opened(request.remote or "")
        try:
            await conn.serve()
        finally:
            self.connections.discard(conn)
            self.stats.connections_open -= 1
        return ws

    async def publish(self, request: web.Request) -> web.Response:
        """``POST /api/events``: send ``count`` events to every subscriber of ``event``.

        Deliveries happen before the answer, so when a client gets the 200 the
        events are on their way (or counted as undelivered). A subscriber that
        stops reading slows the call down (socket backpressure) rather than
        making the server buffer without bound.
        """
        try:
            req = parse_publish(await _read_body(request))
        except BadRequest as exc:
            raise web.HTTPBadRequest(reason=str(exc)) from None
        subscribers = [c for c in self.connections if wants(c.subscriptions, req.event)]
        batch = next(self._batches)
        self.stats.events_published += req.count
        delivered = dropped = 0
        for seq in range(1, req.count + 1):
            text = event_message(req, seq, f"{batch}-{seq}", time.time())
            for conn in subscribers:
                if self.policy.drop_event():
                    dropped += 1
                    self.stats.events_dropped += 1
                elif await conn.deliver(text):
                    delivered += 1
        answer = {
            "event": req.event,
            "count": req.count,
            "subscribers": len(subscribers),
            "deliveries": delivered,
            "dropped": dropped,
            "undelivered": req.count * len(subscribers) - delivered - dropped,
        }
        return web.json_response(answer)

    async def publish_topic(self, request: web.Request) -> web.Response:
        """``POST /api/publish``: one ``/pubsub`` publication, fanned out before the answer."""
        return await self.pubsub.http_publish(await _read_body(request))

    async def health(self, _request: web.Request) -> web.Response:
        """``GET /api/health``: the server is up and answering."""
        return web.json_response({"status": "ok", "connections_open": len(self.connections)})

    async def get_stats(self, _request: web.Request) -> web.Response:
        """``GET /api/stats``: see :mod:`wsload.testserver.stats` for each counter."""
        return web.json_response(self.stats.snapshot())

    async def reset_stats(self, _request: web.Request) -> web.Response:
        """``POST /api/stats/reset``: zero the counters; answers the zeroed snapshot."""
        self.stats.reset()
        return web.json_response(self.stats.snapshot())

    async def _close_all(self, _app: web.Application) -> None:
        """On shutdown, close every connection (1001, going away) at once, not one by one."""
        closes = [c.ws.close(code=1001, message=b"server shutdown") for c in self.connections]
        await asyncio.gather(*closes, return_exceptions=True)


async def _read_body(request: web.Request) -> bytes:
    """The request body, refused early (413) when its declared length is over the limit."""
    declared = request.content_length
    if declared is not None and declared > MAX_BODY_SIZE:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_SIZE, actual_size=declared)
    try:
        return await request.read()
    except RequestPayloadError:  # e.g. broken chunked encoding
        raise web.HTTPBadRequest(reason="malformed request body") from None


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every HTTP error answers JSON ``{"error": reason}``; nothing escapes as a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return web.json_response(
            {"error": _reason(request, exc)}, status=exc.status, headers=headers
        )
    except ConnectionError:
        # The client left mid-request: nobody to answer, nothing worth a log line.
        return web.json_response({"error": "connection lost"}, status=400)
    except Exception:
        if request.path in ("/ws", "/chat", "/pubsub"):
            raise  # the WebSocket handshake may have been sent; aiohttp logs and closes
        log.exception("internal error serving %s %s", request.method, request.path)
        return web.json_response({"error": "internal server error"}, status=500)


def _reason(request: web.Request, exc: web.HTTPException) -> str:
    """A reason that tells a client what to fix, not just the status phrase."""
    if isinstance(exc, web.HTTPNotFound):
        return f"no such path: {request.path} (endpoints: {ENDPOINTS})"
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return f"method {exc.method} not allowed on {request.path} (allowed: {allowed})"
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return f"request body larger than {MAX_BODY_SIZE} bytes"
    return exc.reason


__all__ = ["MAX_BODY_SIZE", "MAX_MESSAGE_SIZE", "ReferenceServer"]

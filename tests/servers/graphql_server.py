"""A real GraphQL server for the protocol tests: strawberry-graphql on aiohttp.

wsload's ``protocol = "graphql"`` must be checked against a server we did
not write: the GraphQL side (parsing, execution, the graphql-transport-ws
and legacy graphql-ws handlers) is strawberry's own ``GraphQLView``; this
module only adds a small schema and the counters a test compares wsload's
figures with::

    python -m tests.servers.graphql_server --port 0 [--mutation-delay-ms 50]
        [--ping-interval 0.2] [--token T] [--queue-limit 1000]

prints ``graphql test server listening on ws://HOST:PORT/graphql stats
http://HOST:PORT/stats`` once it accepts connections, and runs until
SIGTERM/SIGINT.

The schema:

- ``query { hello(name: "x") }`` -> ``"hello x"``;
- ``mutation { post(text: "t", topic: "news") { seq sentAt topic text } }``
  waits ``--mutation-delay-ms`` (the latency a test injects), then publishes
  event ``seq`` (numbered per topic from 1) to every subscriber of the topic
  (a fan-out) and returns it;
- ``subscription { events(topic: "news") { seq sentAt topic text } }``: every
  post to the topic after it subscribed; ``subscription { ticks(interval:
  0.1, count: 20) { seq sentAt } }``: its own numbered events at an interval
  (``count`` 0: until it ends), then ``complete``.

The counters (``GET /stats``, JSON) are taken at the wire: ``received`` and
``sent`` by message type; ``operations`` (subscribe messages by operation
type: query, mutation, subscription, invalid); ``results`` (``next``
messages of queries and mutations, by type), ``events_sent`` (``next``
messages of subscriptions, by field: a frame counts only when it was
written on an open connection, so it is one the client can read),
``errors_sent``; ``pings_sent``/``pongs_received`` (the server's own
keep-alive, ``--ping-interval``: housekeeping the client must answer);
``published`` per topic, ``dropped`` (events a subscriber's full queue lost:
a slow reader costs memory never), ``connections``/``connections_open``,
``rejected`` (a connection_init without ``--token``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import Any

import strawberry
from aiohttp import web
from graphql import GraphQLError, parse
from graphql.utilities import get_operation_ast
from strawberry.aiohttp.views import AiohttpWebSocketAdapter, GraphQLView
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)

from tests.servers.process import start_module, stop_process

READY = "graphql test server listening on"


@dataclass
class Counters:
    """What the server got and wrote: the ground truth a test compares wsload's figures with."""

    connections: int = 0
    connections_open: int = 0
    rejected: int = 0
    received: collections.Counter[str] = field(default_factory=collections.Counter)
    sent: collections.Counter[str] = field(default_factory=collections.Counter)
    operations: collections.Counter[str] = field(default_factory=collections.Counter)
    results: collections.Counter[str] = field(default_factory=collections.Counter)
    events_sent: collections.Counter[str] = field(default_factory=collections.Counter)
    errors_sent: int = 0
    pings_sent: int = 0
    pongs_received: int = 0
    published: collections.Counter[str] = field(default_factory=collections.Counter)
    dropped: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "connections_open": self.connections_open,
            "rejected": self.rejected,
            "received": dict(self.received),
            "sent": dict(self.sent),
            "operations": dict(self.operations),
            "results": dict(self.results),
            "events_sent": dict(self.events_sent),
            "errors_sent": self.errors_sent,
            "pings_sent": self.pings_sent,
            "pongs_received": self.pongs_received,
            "published": dict(self.published),
            "dropped": self.dropped,
        }


@dataclass
class Config:
    mutation_delay: float = 0.0
    ping_interval: float = 0.0
    token: str | None = None
    queue_limit: int = 1000


class Hub:
    """The fan-out: every subscriber of a topic gets each post (bounded queue per subscriber)."""

    def __init__(self, counters: Counters, queue_limit: int) -> None:
        self.counters = counters
        self.queue_limit = queue_limit
        self.seq: collections.Counter[str] = collections.Counter()
        self.subscribers: dict[str, set[asyncio.Queue[Event]]] = collections.defaultdict(set)

    def publish(self, topic: str, text: str) -> Event:
        self.seq[topic] += 1
        self.counters.published[topic] += 1
        event = Event(seq=self.seq[topic], sent_at=time.time(), topic=topic, text=text)
        for queue in self.subscribers[topic]:
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self.counters.dropped += 1
        return event


@strawberry.type
class Event:
    seq: int
    sent_at: float
    topic: str
    text: str


def _state(info: strawberry.Info) -> tuple[Hub, Config]:
    context: Mapping[str, Any] = info.context
    return context["hub"], context["config"]


@strawberry.type
class Query:
    @strawberry.field
    def hello(self, name: str = "world") -> str:
        return f"hello {name}"


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def post(self, info: strawberry.Info, text: str, topic: str = "news") -> Event:
        hub, config = _state(info)
        if config.mutation_delay > 0:
            await asyncio.sleep(config.mutation_delay)
        return hub.publish(topic, text)


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def events(
        self, info: strawberry.Info, topic: str = "news"
    ) -> AsyncGenerator[Event, None]:
        hub, _ = _state(info)
        queue: asyncio.Queue[Event] = asyncio.Queue(hub.queue_limit)
        hub.subscribers[topic].add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            hub.subscribers[topic].discard(queue)

    @strawberry.subscription
    async def ticks(self, interval: float = 1.0, count: int = 0) -> AsyncGenerator[Event, None]:
        seq = 0
        while count <= 0 or seq < count:
            await asyncio.sleep(max(interval, 0.001))
            seq += 1
            yield Event(seq=seq, sent_at=time.time(), topic="ticks", text="")


SCHEMA = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)


def _operation_type(payload: Any) -> tuple[str, str]:
    """(operation type, its first field) of a subscribe message's payload."""
    try:
        document = parse(payload["query"])
        operation = get_operation_ast(document, payload.get("operationName"))
    except (GraphQLError, KeyError, TypeError, AttributeError):
        return "invalid", ""
    if operation is None:
        return "invalid", ""
    first = operation.selection_set.selections[0]
    name = getattr(getattr(first, "name", None), "value", "")
    return operation.operation.value, str(name)


class CountingAdapter(AiohttpWebSocketAdapter):
    """strawberry's aiohttp WebSocket adapter, counting every message in and out."""

    ops: dict[str, tuple[str, str]]

    async def iter_json(
        self, *, ignore_parsing_errors: bool = False
    ) -> AsyncGenerator[object, None]:
        counters: Counters = self.view.counters  # type: ignore[attr-defined]
        self.ops = {}
        async for message in super().iter_json(ignore_parsing_errors=ignore_parsing_errors):
            kind = message.get("type") if isinstance(message, dict) else None
            counters.received[str(kind)] += 1
            if kind in ("subscribe", "start") and isinstance(message, dict):  # start: legacy
                op = _operation_type(message.get("payload"))
                counters.operations[op[0]] += 1
                self.ops[str(message.get("id"))] = op
            elif kind == "pong":
                counters.pongs_received += 1
            yield message

    async def send_json(self, message: Mapping[str, object]) -> None:
        counters: Counters = self.view.counters  # type: ignore[attr-defined]
        if self.ws.closed:  # a frame after the close is one no client reads: not sent
            return
        await super().send_json(message)
        kind = str(message.get("type"))
        counters.sent[kind] += 1
        op_type, name = self.ops.get(str(message.get("id")), ("", ""))
        if kind in ("next", "data"):  # data: legacy graphql-ws
            if op_type == "subscription":
                counters.events_sent[name] += 1
            else:
                counters.results[op_type] += 1
        elif kind == "error":
            counters.errors_sent += 1
        elif kind == "ping":
            counters.pings_sent += 1


class PingingHandler(BaseGraphQLTransportWSHandler[Any, Any]):
    """strawberry's graphql-transport-ws handler, plus the server's own pings (--ping-interval)."""

    pinger: asyncio.Task[None] | None = None

    async def handle_connection_init(self, message: Any) -> None:
        await super().handle_connection_init(message)
        interval = self.view.config.ping_interval  # type: ignore[attr-defined]
        if self.connection_acknowledged and interval > 0 and self.pinger is None:
            self.pinger = asyncio.create_task(self._ping(interval))

    async def _ping(self, interval: float) -> None:
        with contextlib.suppress(Exception):
            while True:
                await asyncio.sleep(interval)
                await self.send_message({"type": "ping"})

    async def shutdown(self) -> None:
        if self.pinger is not None:
            self.pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.pinger
        await super().shutdown()


class CountingView(GraphQLView[Any, Any]):
    """strawberry's aiohttp view with the counters, the hub and the handshake's token check."""

    websocket_adapter_class = CountingAdapter
    graphql_transport_ws_handler_class = PingingHandler

    def __init__(self, counters: Counters, hub: Hub, config: Config) -> None:
        super().__init__(
            schema=SCHEMA,
            graphql_ide=None,
            connection_init_wait_timeout=timedelta(seconds=10),
            max_subscriptions_per_connection=100,
        )
        self.counters = counters
        self.hub = hub
        self.config = config

    async def get_context(self, request: web.Request, response: Any) -> Any:
        return {"request": request, "response": response, "hub": self.hub, "config": self.config}

    async def create_websocket_response(
        self, request: web.Request, subprotocol: str | None
    ) -> web.WebSocketResponse:
        # uncompressed: a frame is written synchronously, so "sent" is exact
        ws = web.WebSocketResponse(protocols=[subprotocol] if subprotocol else [], compress=False)
        await ws.prepare(request)
        return ws

    async def on_ws_connect(self, context: Any) -> Any:
        if self.config.token is not None:
            params = context.get("connection_params") or {}
            if params.get("token") != self.config.token:
                self.counters.rejected += 1
                raise ConnectionRejectionError()
        return await super().on_ws_connect(context)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        websocket = self.is_websocket_request(request)
        if websocket:
            self.counters.connections += 1
            self.counters.connections_open += 1
        try:
            return await super().__call__(request)
        finally:
            if websocket:
                self.counters.connections_open -= 1


async def serve(host: str, port: int, config: Config) -> None:
    counters = Counters()
    view = CountingView(counters, Hub(counters, config.queue_limit), config)

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(counters.as_json())

    app = web.Application()
    app.router.add_route("*", "/graphql", view)
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    print(
        f"{READY} ws://{host}:{bound}/graphql stats http://{host}:{bound}/stats",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mutation-delay-ms", type=float, default=0.0)
    parser.add_argument("--ping-interval", type=float, default=0.0, help="seconds; 0: no pings")
    parser.add_argument("--token", default=None, help="connection_init payload.token required")
    parser.add_argument("--queue-limit", type=int, default=1000)
    args = parser.parse_args(argv)
    config = Config(
        mutation_delay=args.mutation_delay_ms / 1000,
        ping_interval=args.ping_interval,
        token=args.token,
        queue_limit=args.queue_limit,
    )
    asyncio.run(serve(args.host, args.port, config))


class GraphQLServer:
    """``with GraphQLServer("--mutation-delay-ms", "50") as s: s.ws_url, s.stats()``.

    The server process is always stopped on leaving the block.
    """

    def __init__(self, *args: str) -> None:
        self.args = args
        self.ws_url = ""
        self.stats_url = ""
        self.proc: subprocess.Popen[str] | None = None
        # never a pipe nobody reads (it could fill up and block the server)
        self.stderr_file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())

    def __enter__(self) -> GraphQLServer:
        self.proc, line = start_module(
            "tests.servers.graphql_server", [*self.args], 30, stderr=self.stderr_file
        )
        if not line.startswith(READY):
            self.stop()
            raise RuntimeError(f"graphql test server did not start: {line!r} {self.stderr()}")
        words = line.split()
        self.ws_url, self.stats_url = words[5], words[7]
        return self

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.stats_url, timeout=5) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def stderr(self) -> str:
        """What the server wrote to stderr so far (strawberry logs GraphQL errors there)."""
        if self.stderr_file.closed:
            return ""
        self.stderr_file.flush()
        self.stderr_file.seek(0)
        return self.stderr_file.read().decode(errors="replace")

    def stop(self) -> None:
        """Terminate (kill if it must) and wait. Idempotent."""
        stop_process(self.proc)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self.stderr_file.close()


if __name__ == "__main__":
    main()

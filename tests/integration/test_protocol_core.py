"""A protocol over WebSocket on the real engines: the worker core, with a toy protocol.

The codec is tests/unit/test_protocol_session.py's ToyCodec (a line
protocol), registered in-process as ``protocol = "toy"``; the server here
speaks it for real on 127.0.0.1 (websockets' server, in the test's loop).
Each test runs on both client engines and compares the run's counts with
what the server counted on its side of the wire: every request sent is one
the server read, every answer met is one it wrote, the protocol's
housekeeping (the handshake, pings both ways, goodbye frames) is in no
message count, and the answers' latency includes the delay the server adds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from array import array
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.integration.engine_run import each_engine, spec_for  # noqa: F401
from tests.unit.test_protocol_session import Const, emit, register_toy
from wsload.common.program import Action, Program, ProtocolSpec, Stage, Step, Think, Workload
from wsload.worker.engine import EngineResult
from wsload.worker.engines import create_engine
from wsload.worker.recorder import WindowBatch

ANSWER_DELAY = 0.05


class ToyServer:
    """The toy protocol's server side, counting what it read and wrote per verb.

    ``mode``: ``ok``; ``silent`` (never welcomes: the client's handshake
    times out); ``garbage`` (welcomes, then sends what is not the protocol);
    ``eager`` (welcomes as soon as the connection opens, before the HELLO).
    Requests whose event is ``bad`` are answered with an error. It pings
    every ``ping_every`` seconds once a client is welcomed.
    """

    def __init__(self, mode: str = "ok", ping_every: float = 0.1) -> None:
        self.mode = mode
        self.ping_every = ping_every
        self.read: Counter[str] = Counter()
        self.wrote: Counter[str] = Counter()
        self.paths: list[str] = []
        self.offered: list[str | None] = []
        self.tasks: set[asyncio.Task[None]] = set()

    def note_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.paths.append(request.path)
        self.offered.append(request.headers.get("Sec-WebSocket-Protocol"))
        if request.path != "/toy":  # the codec's URL: the job's plus /toy
            return connection.respond(404, "not the toy endpoint\n")
        return None

    async def send(self, ws: ServerConnection, line: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(line)
            self.wrote[line.partition(" ")[0]] += 1

    async def answer(self, ws: ServerConnection, key: str, event: str) -> None:
        await asyncio.sleep(ANSWER_DELAY)
        with contextlib.suppress(ConnectionClosed):
            await ws.send(f"ACK {key} {json.dumps({'event': event})}")
            self.wrote[f"ACK {event}"] += 1

    async def pings(self, ws: ServerConnection) -> None:
        while True:
            await asyncio.sleep(self.ping_every)
            await self.send(ws, "PING")

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def handler(self, ws: ServerConnection) -> None:
        pinger: asyncio.Task[None] | None = None
        if self.mode == "eager":  # the server speaks first, at once (as Engine.IO does)
            await self.send(ws, "WELCOME")
        try:
            async for msg in ws:
                assert isinstance(msg, str)
                verb, _, rest = msg.partition(" ")
                self.read[verb] += 1
                if verb == "HELLO" and self.mode not in ("silent", "eager"):
                    await self.send(ws, "WELCOME")
                    if self.mode == "garbage":
                        await self.send(ws, "NONSENSE")
                    elif self.ping_every:
                        pinger = asyncio.get_running_loop().create_task(self.pings(ws))
                elif verb == "REQ":
                    key, _, body = rest.partition(" ")
                    event = json.loads(body)["event"]
                    self.read[f"REQ {event}"] += 1
                    if event == "bad":
                        await self.send(ws, f"ERR {key} bad-request")
                    else:
                        self.spawn(self.answer(ws, key, event))
                elif verb == "PING":
                    await self.send(ws, "PONG")
        except ConnectionClosed:
            pass
        finally:
            if pinger is not None:
                pinger.cancel()


def select_toy(connection: ServerConnection, offered: Any) -> Any:
    return "toy.v1" if "toy.v1" in offered else None


@contextlib.asynccontextmanager
async def toy_server(server: ToyServer, **kw: Any) -> AsyncIterator[str]:
    async with serve(
        server.handler,
        "127.0.0.1",
        0,
        process_request=server.note_request,
        select_subprotocol=kw.pop("select", select_toy),
        **kw,
    ) as srv:
        port = srv.sockets[0].getsockname()[1]
        try:
            yield f"ws://127.0.0.1:{port}/"
        finally:
            for task in list(server.tasks):
                task.cancel()


@pytest.fixture(autouse=True)
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    register_toy(monkeypatch)


def chat_program(setup_event: str = "join", keepalive: float = 0.15) -> Program:
    return Program(
        "toy",
        setup=(emit(1, "join", event=setup_event),),
        loop=(
            emit(2, "chat", event="chat"),
            emit(3, "note", answer=False, event="note"),
            Step(4, "think", Action.THINK, Think("fixed", 0.05)),
        ),
        interval=0.0,
        protocol=ProtocolSpec("toy", Const({"name": "c", "keepalive": keepalive})),
    )


async def run(
    url: str, program: Program, stages: tuple[Stage, ...] = (), **overrides: Any
) -> tuple[EngineResult, list[WindowBatch], dict[str, dict[str, int]]]:
    spec = spec_for(url, **({"num_clients": 3, "duration": 1.5, "reply_timeout": 2.0} | overrides))
    batches: list[WindowBatch] = []
    workload = Workload((program,), stages=stages, step_names=("join", "chat"))
    engine = create_engine(spec, on_batch=batches.append, workload=workload)
    async with asyncio.timeout(spec.duration + 20):
        result = await engine.run()
    steps = {
        k: {n: v for n, v in s.items() if v} for k, s in engine.recorder.steps.totals().items()
    }
    assert result.balanced, result.counters
    for name, total in result.counters.items():
        assert sum(b.counters.get(name, 0) for b in batches) == total, name
    return result, batches, steps


@pytest.mark.asyncio
async def test_answers_and_housekeeping_count_as_the_server_counted() -> None:
    server = ToyServer()
    async with toy_server(server) as url:
        result, batches, steps = await run(url, chat_program(), subprotocols=["x-extra"])
    c = result.counters
    assert result.errors == {}
    assert set(server.paths) == {"/toy"}
    assert set(server.offered) == {"toy.v1, toy.v0, x-extra"}  # the codec's first, then the job's
    assert server.read["HELLO"] == c["connects"] == 3
    # messages: what the server read of the steps, what it answered
    assert c["sent"] == server.read["REQ"] + server.read["SEND"]
    assert server.read["SEND"] > 0
    assert steps["join"] == {"expected": 3, "met": 3}
    assert steps["chat"] == {"expected": server.read["REQ chat"], "met": server.wrote["ACK chat"]}
    assert c["received"] == server.wrote["ACK join"] + server.wrote["ACK chat"]
    assert c["unsolicited"] == c["late"] == 0  # pings, pongs and welcomes are no messages
    # housekeeping both ways: the server's pings answered, the client's keep-alive pinged
    assert server.wrote["PING"] > 3
    assert server.read["PONG"] >= server.wrote["PING"] - 3  # the last ones may meet the close
    assert server.read["PING"] > 3
    assert server.read["QUIT"] == 3  # each connection said goodbye before the run closed it
    latencies: array[int] = array("I")
    for batch in batches:
        if "chat" in batch.steps:
            latencies.frombytes(batch.steps["chat"].latency)
    assert len(latencies) == steps["chat"]["met"]
    # the server's delay is in every answer's (its loop's timers may fire up to 1 ms early)
    assert min(latencies) >= (ANSWER_DELAY - 0.002) * 1e6


@pytest.mark.asyncio
async def test_what_the_server_says_first_reaches_the_session() -> None:
    """A frame that comes with the handshake's answer, before the engine began the
    session (picows delivers it at once), is the session's first message."""
    server = ToyServer(mode="eager", ping_every=0.0)
    async with toy_server(server) as url:
        result, _, steps = await run(url, chat_program(keepalive=0.0), duration=0.5)
    assert result.errors == {}
    assert result.counters["unsolicited"] == 0
    assert steps["join"] == {"expected": 3, "met": 3}
    assert server.read["QUIT"] == 3


@pytest.mark.asyncio
async def test_a_stage_that_ramps_clients_down_has_them_say_goodbye() -> None:
    server = ToyServer(ping_every=0.0)
    program = chat_program(keepalive=0.0)
    stages = (Stage(0.05, 3), Stage(0.6, 3), Stage(0.05, 0), Stage(0.6, 0))
    async with toy_server(server) as url:
        result, _, steps = await run(url, program, stages=stages)
    c = result.counters
    assert result.errors == {}
    assert c["connects"] == server.read["HELLO"] == 3
    assert server.read["QUIT"] == 3  # each ramped down: goodbye, then closed
    assert c["disconnects"] == 0
    chat = steps["chat"]
    assert chat["expected"] == server.read["REQ chat"]
    # an answer the server wrote as the client closed is the client's unanswered one
    assert chat["met"] <= server.wrote["ACK chat"] <= chat["met"] + chat.get("unanswered", 0)
    assert set(chat) <= {"expected", "met", "unanswered"}


@pytest.mark.asyncio
async def test_an_error_answer_in_setup_fails_it_says_goodbye_and_reconnects() -> None:
    server = ToyServer(ping_every=0.0)
    async with toy_server(server) as url:
        result, _, steps = await run(
            url, chat_program(setup_event="bad"), num_clients=2, reconnect_max_delay=0.2
        )
    c = result.counters
    errors = server.wrote["ERR"]
    join = steps["join"]
    assert join["failed"] >= 4  # each client reconnected at least once
    assert join["expected"] == server.read["REQ bad"]
    # the run may end while a client's join is out (at most one each): its error unread
    assert set(join) <= {"expected", "failed", "unanswered", "lost"}
    assert join["expected"] - 2 <= join["failed"] <= errors <= join["failed"] + 2
    assert result.errors == {"toy_error": join["failed"]}
    assert result.error_texts["toy_error"] == "join: bad-request"
    assert c["connects"] == server.read["HELLO"]
    assert c["reconnects"] == c["connects"] - 2
    # a failed setup says goodbye, then closes (one still in its handshake at the end: no)
    assert c["connects"] - 2 <= server.read["QUIT"] <= c["connects"]
    assert server.read["QUIT"] >= join["failed"]
    assert "chat" not in steps or steps["chat"] == {}


@pytest.mark.asyncio
async def test_a_server_that_never_finishes_the_handshake_costs_an_error_kind() -> None:
    server = ToyServer(mode="silent")
    async with toy_server(server) as url:
        result, _, steps = await run(
            url, chat_program(), num_clients=2, connect_timeout=0.3, reconnect_max_delay=0.1
        )
    c = result.counters
    assert result.errors["handshake_timeout"] >= 2
    # its close code is no second error (a handshake the run's end cuts short says so)
    assert set(result.errors) <= {"handshake_timeout", "handshake_unfinished"}
    assert c["sent"] == c["received"] == c["expected"] == c["unsolicited"] == 0
    assert server.read["REQ"] == server.read["QUIT"] == 0  # no step, no goodbye
    assert steps.get("join", {}) == {}


@pytest.mark.asyncio
async def test_a_server_that_speaks_garbage_is_a_protocol_error() -> None:
    server = ToyServer(mode="garbage")
    async with toy_server(server) as url:
        result, _, _ = await run(url, chat_program(), num_clients=2, reconnect_max_delay=0.1)
    c = result.counters
    errors = result.errors.get("protocol_error", 0)
    assert result.errors == {"protocol_error": errors}  # its close code is no second error
    # one per connection (but one whose garbage had not come when the run ended)
    assert c["connects"] - 2 <= errors <= c["connects"]
    assert errors >= 2
    assert c["sent"] <= c["connects"]  # at most the join each, sent before the garbage came
    assert result.error_texts["protocol_error"].startswith("not toy: NONSENSE")


@pytest.mark.asyncio
async def test_a_server_that_chooses_a_subprotocol_not_offered_fails_the_connect() -> None:
    server = ToyServer()

    def choose_other(connection: ServerConnection, offered: Any) -> Any:
        return "mqtt"

    async with toy_server(server, select=choose_other) as url:
        result, _, _ = await run(url, chat_program(), num_clients=1, reconnect_max_delay=0.1)
    c = result.counters
    assert c["connects"] == 0
    assert c["connect_failures"] >= 1
    assert result.errors == {"handshake": c["connect_failures"]}

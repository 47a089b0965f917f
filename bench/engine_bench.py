"""Worker engine figures: CPU per round trip beside bare loops, open-model CPU, idle RSS.

Usage: python bench/engine_bench.py [--seconds 5] [--idle 10000] [--target-processes 2]

Everything runs in one process against one target: a picows echo server
(:mod:`echo_target`) in ``--target-processes`` processes sharing the port,
cheaper per message than the engine, so the generator is the side that
saturates (each row says how busy both sides were). Side by side in the
same run, same 100 clients, same 64-byte JSON messages:

* the engine (full bookkeeping: correlation by id, intended-time latency,
  service time, windows), with each client engine (picows, websockets);
* a bare websockets + uvloop send/recv loop and a bare picows loop, with no
  bookkeeping at all: the references the ratios are taken against (the four
  closed loops run interleaved, three times; each figure is its best round);
* the engine at a fixed open-model rate (20,000 msg/s in total);
* RSS per idle connection with 10,000 connections open.

A figure, not a gate: the script always exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect
from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
import echo_target
from engine_runs import Measured, Span, hold, steady_state
from machine import Figure, report

from wsload.common.spec import build_spec

CLIENTS = 100
PAYLOAD_SIZE = 64
RATE = 20_000.0
ROUNDS = 3
GOAL_CPU_US = 8.0
GOAL_RSS_KB = 20.0
PAYLOAD = '{"type": "test", "seq": 1, "pad": "' + "x" * (PAYLOAD_SIZE - 31) + '"}'
#: the engine's messages: the same 64 bytes, with the client's id and its own sequence number
TEMPLATE = '{"type": "test", "client": "{client_id}", "seq": {seq}}'


async def engine_run(url: str, pids: list[int], seconds: float, **job: object) -> Measured:
    """The engine's steady state (:func:`engine_runs.steady_state`) on the echo load."""
    spec = build_spec(
        env={}, ws_url=url, num_clients=CLIENTS, duration=seconds + 1.5, payload=TEMPLATE,
        payload_size=PAYLOAD_SIZE, **job,  # type: ignore[arg-type]
    )  # fmt: skip
    return await steady_state(spec, pids, seconds)


async def bare_loop(
    url: str, pids: list[int], seconds: float, open_client: Callable[[str], Awaitable[object]]
) -> Measured:
    """A reference: one send/receive coroutine per connection, no bookkeeping."""
    clients = [await open_client(url) for _ in range(CLIENTS)]
    count = 0
    stop_at = time.monotonic() + 1.0

    async def loop(client: object) -> None:
        nonlocal count
        while time.monotonic() < stop_at:
            await client.round_trip()  # type: ignore[attr-defined]
            count += 1

    await asyncio.gather(*(loop(c) for c in clients))  # warm-up
    count, span = 0, Span(pids)
    stop_at = time.monotonic() + seconds
    await asyncio.gather(*(loop(c) for c in clients))
    measured = span.done(count)
    for c in clients:
        await c.close()  # type: ignore[attr-defined]
    return measured


class BareWebsockets:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def round_trip(self) -> None:
        await self.ws.send(PAYLOAD)
        await self.ws.recv()

    async def close(self) -> None:
        await self.ws.close()


async def open_websockets(url: str) -> BareWebsockets:
    return BareWebsockets(await connect(url, compression=None, ping_interval=None))


class BarePicows(WSListener):  # type: ignore[misc]
    """The fastest honest picows loop: a future per reply, awaited by the sender."""

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.reply: asyncio.Future[None] | None = None

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.TEXT and self.reply is not None:
            self.reply.set_result(None)

    async def round_trip(self) -> None:
        self.reply = asyncio.get_running_loop().create_future()
        self.transport.send(WSMsgType.TEXT, PAYLOAD.encode())
        await self.reply

    async def close(self) -> None:
        self.transport.send_close()
        self.transport.disconnect()
        await self.transport.wait_disconnected()


async def open_picows(url: str) -> BarePicows:
    _, listener = await ws_connect(BarePicows, url)
    assert isinstance(listener, BarePicows)
    return listener


async def idle_rss(url: str, n: int) -> tuple[float, int]:
    """RSS growth per open idle connection held by the engine, in bytes; and how many opened."""
    spec = build_spec(
        env={}, ws_url=url, num_clients=n, duration=60.0, interval=3600.0,
        ramp_up=min(20.0, n / 1000), connect_timeout=30.0,
    )  # fmt: skip
    per_client, connected, _result = await hold(spec)
    return per_client, connected


async def measure(url: str, pids: list[int], seconds: float, idle: int) -> list[Figure]:
    """Each closed-loop figure is the best of ROUNDS, the four loops interleaved."""
    rounds: list[tuple[Measured, ...]] = []
    for _ in range(ROUNDS):
        rounds.append(
            (
                await engine_run(url, pids, seconds, engine="picows", interval=0.0),
                await engine_run(url, pids, seconds, engine="websockets", interval=0.0),
                await bare_loop(url, pids, seconds, open_websockets),
                await bare_loop(url, pids, seconds, open_picows),
            )
        )
    picows, websockets_engine, bare_ws, bare_pw = (
        min(column, key=lambda m: m.cpu_us) for column in zip(*rounds, strict=True)
    )
    rated = await engine_run(url, pids, seconds, engine="picows", rate=RATE)
    ratio = picows.cpu_us / bare_ws.cpu_us
    figures = [
        Figure(
            "engine CPU per round trip (picows, closed loop, 100 clients, 64 B, full bookkeeping)",
            f"{picows.cpu_us:.1f} µs",
            f"<= {GOAL_CPU_US:g} µs",
            picows.cpu_us <= GOAL_CPU_US,
            picows.note(),
        ),
        Figure(
            "  ratio to the bare websockets loop in this run",
            f"{ratio:.2f}",
            "<= 0.5",
            ratio <= 0.5,
        ),
        Figure(
            "  ratio to the bare picows loop in this run",
            f"{picows.cpu_us / bare_pw.cpu_us:.2f}",
            "",
            None,
            "bookkeeping's own cost",
        ),
        Figure(
            "engine CPU per round trip (websockets engine, same)",
            f"{websockets_engine.cpu_us:.1f} µs",
            "",
            None,
            websockets_engine.note(),
        ),
        Figure(
            "bare websockets+uvloop send/recv loop (reference)",
            f"{bare_ws.cpu_us:.1f} µs",
            "",
            None,
            bare_ws.note(),
        ),
        Figure(
            "bare picows send/recv loop (reference)",
            f"{bare_pw.cpu_us:.1f} µs",
            "",
            None,
            bare_pw.note(),
        ),
        Figure(
            f"engine CPU per message at a fixed {RATE:,.0f} msg/s (open model, picows)",
            f"{rated.cpu_us:.1f} µs",
            "<= 2x closed loop",
            rated.cpu_us <= 2 * picows.cpu_us,
            rated.note(),
        ),
    ]
    if idle:
        per_conn, connected = await idle_rss(url, idle)
        note = "" if connected == idle else f"only {connected:,} of {idle:,} opened"
        figures.append(
            Figure(
                f"RSS per idle connection ({connected:,} connections in one worker)",
                f"{per_conn / 1024:.1f} KB",
                f"<= {GOAL_RSS_KB:g} KB",
                per_conn / 1024 <= GOAL_RSS_KB and connected == idle,
                note,
            )
        )
    return figures


def figures(seconds: float = 5.0, idle: int = 10_000, target_processes: int = 2) -> list[Figure]:
    """Every engine figure, against a freshly started echo target."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # idle connections need fds
    procs, url = echo_target.start(target_processes)
    try:
        return uvloop.run(measure(url, [p.pid for p in procs], seconds, idle))
    finally:
        echo_target.stop(procs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per loop")
    parser.add_argument("--idle", type=int, default=10_000, help="idle connections (0: skip)")
    parser.add_argument("--target-processes", type=int, default=2)
    args = parser.parse_args()
    print(report(figures(args.seconds, args.idle, args.target_processes)))

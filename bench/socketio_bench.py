"""A Socket.IO emit-with-ack loop's worker CPU per message beside the raw conversation's.

Usage: python bench/socketio_bench.py [--seconds 5] [--rounds 3] [--target-processes 2]

Issue 17's budget (item 7): a Socket.IO emit-with-ack loop costs at most
1.5x the raw conversation's CPU per message. Both run on the picows engine
in this process, 100 clients each, interleaved ``--rounds`` times in one run:

* raw: ``send = {type = "msg", id = "m{seq}", text = "hello"}`` then
  ``expect = {type = "msg", id = "m{seq}"}`` (the conversation benchmark's
  send + expect by id) against :mod:`echo_target`'s picows echo servers;
* socketio: ``emit = {event = "chat", data = <the same table>}`` with
  ``ack = true``, against this file's own picows Socket.IO target (``--serve``):
  it opens Engine.IO, accepts the namespace and acknowledges each
  ``42<id>["chat",DATA]`` at once with ``43<id>[DATA]``. python-socketio
  itself spends far more CPU per message than the generator, so against it
  the figure would measure the server (the protocol tests run against it).

Each pair runs in closed loop (the next message when the reply is in), then
both in open model at the same rate (half the slower closed loop's, so neither
side saturates): batching differs with the rate, so like is compared with
like. CPU per message is this process's user+system CPU over the replies
(acks, expects met) in the steady state; each figure is its best round. A
figure, not a gate: always exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

sys.path.insert(0, str(Path(__file__).resolve().parent))
import echo_target
from engine_runs import Measured, steady_state
from machine import Figure, report

from wsload.common.spec import build_spec

CLIENTS = 100
#: the client engine (--engine): picows, the default engine, unless told
ENGINE = "picows"
ROUNDS = 3
BUDGET = 1.5
MESSAGE = {"type": "msg", "id": "m{seq}", "text": "hello"}
RAW_LOOP = [{"send": MESSAGE}, {"name": "reply", "expect": {"type": "msg", "id": "m{seq}"}}]
SIO_LOOP = [{"name": "reply", "emit": {"event": "chat", "data": MESSAGE}, "ack": True}]
OPEN = (
    b'0{"sid":"bench","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'
)


class SocketIOAck(WSListener):  # type: ignore[misc]
    """The least a Socket.IO v4 server does for an emit with an ack."""

    def on_ws_connected(self, transport: WSTransport) -> None:
        transport.send(WSMsgType.TEXT, OPEN)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT:
            data = frame.get_payload_as_bytes()
            if data[:2] == b"42":  # 42[/ns,]<id>["chat",DATA] -> 43[/ns,]<id>[DATA]
                args = data.find(b"[")
                after_name = data.find(b'",', args)
                if after_name > 0:
                    transport.send(
                        WSMsgType.TEXT, b"43" + data[2:args] + b"[" + data[after_name + 2 :]
                    )
            elif data[:2] == b"40":
                ns = data[2 : data.find(b",") + 1] if data[2:3] == b"/" else b""
                transport.send(WSMsgType.TEXT, b"40" + ns + b'{"sid":"bench"}')
        elif kind is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


async def serve(port: int) -> None:
    server = await ws_create_server(
        lambda _request: SocketIOAck(), "127.0.0.1", port, reuse_port=True, backlog=4096
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    async with server:
        await stop.wait()


def start(processes: int) -> tuple[list[subprocess.Popen[str]], str]:
    """``processes`` Socket.IO targets on one free loopback port; returns them and the URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    procs = [
        subprocess.Popen(
            [sys.executable, str(Path(__file__)), "--serve", str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    return procs, f"ws://127.0.0.1:{port}/"


async def run(url: str, pids: list[int], seconds: float, **job: object) -> Measured:
    """One load's steady state (:func:`engine_runs.steady_state`)."""
    spec = build_spec(
        env={}, ws_url=url, duration=seconds + 1.5, interval=0.0, connect_timeout=30.0,
        engine=ENGINE, num_clients=CLIENTS, **job,  # type: ignore[arg-type]
    )  # fmt: skip
    return await steady_state(spec, pids, seconds)


async def measure(
    raw: tuple[str, list[int]], sio: tuple[str, list[int]], seconds: float, rounds: int
) -> list[Figure]:
    rows: list[tuple[Measured, Measured, Measured, Measured]] = []
    for _ in range(rounds):
        raw_closed = await run(*raw, seconds, loop=RAW_LOOP)
        sio_closed = await run(*sio, seconds, protocol="socketio", loop=SIO_LOOP)
        if not sio_closed.rate:  # no ack came in: nothing to compare
            return [Figure("Socket.IO emit + ack: no ack received", "-", f"<= {BUDGET:g}", False)]
        rate = round(min(raw_closed.rate, sio_closed.rate) / 2)
        raw_paced = await run(*raw, seconds, loop=RAW_LOOP, rate=rate)
        sio_paced = await run(*sio, seconds, protocol="socketio", loop=SIO_LOOP, rate=rate)
        rows.append((raw_closed, sio_closed, raw_paced, sio_paced))
    raw_closed, sio_closed, raw_paced, sio_paced = (
        min(col, key=lambda m: m.cpu_us) for col in zip(*rows, strict=True)
    )
    out: list[Figure] = []
    for how, r, s in (
        ("closed loop", raw_closed, sio_closed),
        (f"open model, same rate ({raw_paced.rate:,.0f}/s)", raw_paced, sio_paced),
    ):
        out += [
            Figure(
                f"Socket.IO emit + ack CPU per message, {how} ({ENGINE}, {CLIENTS} clients)",
                f"{s.cpu_us:.1f} µs",
                "",
                None,
                s.note(),
            ),
            Figure(
                f"raw conversation (send, expect by id) CPU per message, {how} (reference)",
                f"{r.cpu_us:.1f} µs",
                "",
                None,
                r.note(),
            ),
            Figure(
                f"  Socket.IO / raw, {how}",
                f"{s.cpu_us / r.cpu_us:.2f}",
                f"<= {BUDGET:g}",
                s.cpu_us <= BUDGET * r.cpu_us,
            ),
        ]
    return out


def figures(seconds: float = 5.0, rounds: int = ROUNDS, target_processes: int = 2) -> list[Figure]:
    raw_procs, raw_url = echo_target.start(target_processes)
    sio_procs: list[subprocess.Popen[str]] = []
    try:
        sio_procs, sio_url = start(target_processes)
        return uvloop.run(
            measure(
                (raw_url, [p.pid for p in raw_procs]),
                (sio_url, [p.pid for p in sio_procs]),
                seconds,
                rounds,
            )
        )
    finally:
        echo_target.stop(raw_procs)
        echo_target.stop(sio_procs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per load")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--target-processes", type=int, default=2)
    parser.add_argument("--engine", choices=("picows", "websockets"), default=ENGINE)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # one target process
    args = parser.parse_args()
    if args.serve is not None:
        uvloop.run(serve(args.serve))
    else:
        ENGINE = args.engine
        print(report(figures(args.seconds, args.rounds, args.target_processes)))

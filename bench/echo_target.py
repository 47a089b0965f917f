"""A fast echo target for benchmarks: picows server processes sharing one port.

Usage: python bench/echo_target.py [--processes 2] [--push TEXT]

Prints ``ws://127.0.0.1:PORT/`` once every process listens. Each text or
binary message is echoed unchanged; nothing else (no stats, no faults): the
reference test server costs more CPU per message than the engine does, so a
generator benchmark against it would measure the server. With
``--processes N`` the kernel spreads connections over N processes
(SO_REUSEPORT). With ``--push TEXT`` each echo is followed by that text, a
message unrelated to it (as a chat service's presence updates), for loads
that must tell a reply from a push.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server


class Echo(WSListener):  # type: ignore[misc]
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
            transport.send(kind, frame.get_payload_as_memoryview())
        elif kind is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


class EchoAndPush(WSListener):  # type: ignore[misc]
    """Echo each data message, then push one unrelated text message (``--push``)."""

    def __init__(self, push: bytes) -> None:
        super().__init__()
        self.push = push

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
            transport.send(kind, frame.get_payload_as_memoryview())
            transport.send(WSMsgType.TEXT, self.push)
        elif kind is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


async def serve(port: int, push: bytes | None = None) -> None:
    server = await ws_create_server(
        (lambda _request: Echo()) if push is None else (lambda _request: EchoAndPush(push)),
        "127.0.0.1",
        port,
        reuse_port=True,
        backlog=4096,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    async with server:
        await stop.wait()


def start(processes: int = 2, push: str | None = None) -> tuple[list[subprocess.Popen[str]], str]:
    """Start ``processes`` echo servers on one free loopback port; returns them and the URL.

    With ``push``, each echo is followed by that text message (unrelated to it).
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pushing = [] if push is None else ["--push", push]
    procs = [
        subprocess.Popen(
            [sys.executable, str(Path(__file__)), "--serve", str(port), *pushing],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    return procs, f"ws://127.0.0.1:{port}/"


def stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--push", help="text pushed after each echo (none by default)")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # one server process
    args = parser.parse_args()
    if args.serve is not None:
        uvloop.run(serve(args.serve, None if args.push is None else args.push.encode()))
        return
    procs, url = start(args.processes, args.push)
    stops = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # for sigwait (after the children start:
    # they would inherit the mask)
    print(url, f"({args.processes} processes, pids {' '.join(str(p.pid) for p in procs)})")
    try:
        signal.sigwait(stops)
    finally:
        stop(procs)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()

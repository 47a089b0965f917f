"""A TCP proxy that delays the server's bytes: latency injected in front of a real broker.

The protocol tests need answer latencies (a STOMP RECEIPT, an MQTT PUBACK)
that include a delay the test chose, from servers we did not write and
cannot slow down from inside. This proxy sits between wsload and the
broker and holds every chunk the server sends for ``--delay-ms`` before
passing it on, so each answer arrives at least that late::

    python -m tests.servers.delay_proxy --listen 127.0.0.1:0 --to 127.0.0.1:PORT --delay-ms 50

prints ``ready PORT`` (the port it listens on) once it accepts connections
and runs until SIGTERM/SIGINT.

Why a queue with due times, not a sleep per chunk: sleeping ``delay``
before each write would serialize the stream (n chunks would take n times
the delay); here each chunk is stamped ``received + delay`` on arrival and
the writer only waits for the head's due time, so the delay is added once
and order is kept. The client->server direction is passed through as is.

Bounds: at most ``--buffer`` bytes wait per connection; past it the proxy
stops reading from the server (TCP backpressure reaches the broker) until
the writer catches up. When either side closes, the other is closed too
(the server's close after its queued bytes have been delivered).

:class:`DelayProxy` starts one as a subprocess for a test and always stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import signal
import subprocess
from types import TracebackType

from tests.servers.process import start_module, stop_process

READ_SIZE = 65536
DEFAULT_BUFFER = 4 * 1024 * 1024


class _Delayed:
    """The server->client queue of one connection: (due time, chunk), EOF as ``b""``."""

    def __init__(self, delay: float, limit: int) -> None:
        self.delay = delay
        self.limit = limit
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.size = 0
        self.has_item = asyncio.Event()
        self.has_room = asyncio.Event()
        self.has_room.set()

    def put(self, now: float, chunk: bytes) -> None:
        self.queue.append((now + self.delay, chunk))
        self.size += len(chunk)
        self.has_item.set()
        if self.size >= self.limit:
            self.has_room.clear()

    def pop(self) -> tuple[float, bytes]:
        item = self.queue.popleft()
        self.size -= len(item[1])
        if not self.queue:
            self.has_item.clear()
        if self.size < self.limit:
            self.has_room.set()
        return item


async def _pump_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """client -> server, undelayed (drain() is the backpressure)."""
    while chunk := await reader.read(READ_SIZE):
        writer.write(chunk)
        await writer.drain()


async def _read_down(reader: asyncio.StreamReader, delayed: _Delayed) -> None:
    """server -> queue: stamp each chunk with its due time; stop reading while full."""
    loop = asyncio.get_running_loop()
    while True:
        await delayed.has_room.wait()
        try:
            chunk = await reader.read(READ_SIZE)
        except OSError:  # reset: end the stream like a close
            chunk = b""
        delayed.put(loop.time(), chunk)
        if not chunk:
            return


async def _write_down(delayed: _Delayed, writer: asyncio.StreamWriter) -> None:
    """queue -> client at each chunk's due time; returns at the server's EOF."""
    loop = asyncio.get_running_loop()
    while True:
        await delayed.has_item.wait()
        due, chunk = delayed.queue[0]
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        delayed.pop()
        if not chunk:
            return
        writer.write(chunk)
        await writer.drain()


async def _handle(
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    host: str,
    port: int,
    delay: float,
    limit: int,
) -> None:
    try:
        server_r, server_w = await asyncio.open_connection(host, port)
    except OSError:
        client_w.close()
        return
    delayed = _Delayed(delay, limit)
    tasks = [
        asyncio.ensure_future(_pump_up(client_r, server_w)),
        asyncio.ensure_future(_read_down(server_r, delayed)),
        asyncio.ensure_future(_write_down(delayed, client_w)),
    ]
    try:
        # the client closing (up ends) or the server's bytes all delivered
        # (write_down ends) closes both sides; read_down ending alone is the
        # server's EOF still queued
        await asyncio.wait([tasks[0], tasks[2]], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in (client_w, server_w):
            w.close()
        for w in (client_w, server_w):
            with contextlib.suppress(Exception):
                await w.wait_closed()


async def serve(listen: tuple[str, int], to: tuple[str, int], delay: float, limit: int) -> None:
    """Run the proxy until SIGTERM/SIGINT; prints ``ready PORT`` once listening."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    handlers: set[asyncio.Task[None]] = set()

    async def on_client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await _handle(r, w, to[0], to[1], delay, limit)
        finally:
            handlers.discard(task)

    server = await asyncio.start_server(on_client, listen[0], listen[1])
    port = server.sockets[0].getsockname()[1]
    print(f"ready {port}", flush=True)
    await stop.wait()
    server.close()
    for task in list(handlers):
        task.cancel()
    await asyncio.gather(*handlers, return_exceptions=True)
    await server.wait_closed()


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--listen", type=_address, required=True, help="HOST:PORT (port 0: any)")
    parser.add_argument("--to", type=_address, required=True, help="the server's HOST:PORT")
    parser.add_argument("--delay-ms", type=float, required=True, help="server->client delay")
    parser.add_argument("--buffer", type=int, default=DEFAULT_BUFFER, help="bytes held per conn")
    args = parser.parse_args(argv)
    if args.delay_ms < 0 or args.buffer < 1:
        parser.error("--delay-ms must be >= 0 and --buffer >= 1")
    asyncio.run(serve(args.listen, args.to, args.delay_ms / 1000.0, args.buffer))


class DelayProxy:
    """``with DelayProxy(port, 50) as proxy: ... proxy.port``: a proxy process, always stopped."""

    def __init__(self, to_port: int, delay_ms: float, to_host: str = "127.0.0.1") -> None:
        self.to = f"{to_host}:{to_port}"
        self.delay_ms = delay_ms
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> DelayProxy:
        self.proc, line = start_module(
            "tests.servers.delay_proxy",
            ["--listen", "127.0.0.1:0", "--to", self.to, "--delay-ms", str(self.delay_ms)],
            15,
        )
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError(f"delay proxy did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

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


if __name__ == "__main__":
    main()

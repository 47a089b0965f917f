"""A raw-socket target that misbehaves during the opening handshake.

Load balancers with no backend, proxies that time out, services that answer
HTTP with a redirect: a generator meets all of these, and each must cost an
error kind, never a crash. :class:`HandshakeTarget` serves them from an
asyncio loop in a thread of the test process, one behaviour per accepted
connection in turn (so one run meets each of them once), and counts what it
did. :class:`HitCounter` is a listener that only counts accepted
connections: the place a redirect points to, which must never be reached.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

#: behaviour name -> what the target does after accepting
BEHAVIOURS = (
    "close",  # read the request, then close (FIN) without a word
    "rst",  # read the request, then reset (RST)
    "half",  # send half a 101 response, then close
    "garbage",  # answer with bytes that are not HTTP, then close
    "silent",  # read the request and never answer
    "redirect_301",  # 301 to the counter's port
    "redirect_302",  # 302 to the counter's port
    "slow_101",  # a valid 101 after SLOW_101 seconds; then swallows messages, answers a close
)
SLOW_101 = 0.05
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
REQUEST_LIMIT = 16 * 1024


class _LoopThread:
    """An asyncio loop in a daemon thread; :meth:`close` stops it and joins."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.call(_cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class HitCounter:
    """Counts the TCP connections accepted on a loopback port (and closes them)."""

    def __init__(self, runner: _LoopThread) -> None:
        self.hits = 0
        self._runner = runner
        self.server: asyncio.Server = runner.call(
            asyncio.start_server(self._accept, "127.0.0.1", 0)
        )
        self.port: int = self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.hits += 1
        writer.close()


class HandshakeTarget:
    """Serves ``behaviours`` in turn, one per accepted connection; a context manager.

    ``ws_url`` is the URL to load; ``done`` counts the behaviours served;
    ``counter`` is where the redirects point (``counter.hits`` must stay 0).
    """

    def __init__(self, behaviours: Sequence[str] = BEHAVIOURS) -> None:
        unknown = set(behaviours) - set(BEHAVIOURS)
        assert not unknown, unknown
        self.behaviours = tuple(behaviours)
        self.done: Counter[str] = Counter()
        self._next = 0
        self._runner = _LoopThread()
        try:
            self.counter = HitCounter(self._runner)
            self._server: asyncio.Server = self._runner.call(
                asyncio.start_server(self._accept, "127.0.0.1", 0)
            )
        except BaseException:
            self._runner.close()
            raise
        self.port: int = self._server.sockets[0].getsockname()[1]
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self._writers: list[asyncio.StreamWriter] = []
        self._readers: dict[asyncio.StreamWriter, asyncio.StreamReader] = {}
        self._requests: dict[asyncio.StreamWriter, bytes] = {}
        #: handshakes between request and 101 now, and the most there ever were
        self.pending = 0
        self.most_pending = 0

    def __enter__(self) -> HandshakeTarget:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        async def _shut() -> None:
            for server in (self._server, self.counter.server):
                server.close()
            for writer in self._writers:
                writer.transport.abort()

        self._runner.call(_shut())
        self._runner.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        behaviour = self.behaviours[self._next % len(self.behaviours)]
        self._next += 1
        self._writers.append(writer)
        self._readers[writer] = reader
        try:
            request = await reader.readuntil(b"\r\n\r\n")  # the upgrade request
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.transport.abort()
            return
        self._requests[writer] = request
        actions: dict[str, Callable[[asyncio.StreamWriter], Coroutine[Any, Any, None]]] = {
            "close": self._close,
            "rst": self._rst,
            "half": self._half,
            "garbage": self._garbage,
            "silent": self._silent,
            "redirect_301": lambda w: self._redirect(w, 301),
            "redirect_302": lambda w: self._redirect(w, 302),
            "slow_101": self._slow_101,
        }
        self.done[behaviour] += 1
        await actions[behaviour](writer)

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async def _rst(self, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def _half(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n")
        await writer.drain()
        writer.close()

    async def _garbage(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x00\xff\x13garbage that is not HTTP\r\n\r\n")
        await writer.drain()
        writer.close()

    async def _silent(self, writer: asyncio.StreamWriter) -> None:
        reader = self._readers[writer]
        with contextlib.suppress(ConnectionError):
            while await reader.read(REQUEST_LIMIT):  # until the client gives up
                pass
        writer.close()

    async def _slow_101(self, writer: asyncio.StreamWriter) -> None:
        self.pending += 1
        self.most_pending = max(self.most_pending, self.pending)
        try:
            await asyncio.sleep(SLOW_101)
        finally:
            self.pending -= 1
        key = b""
        for line in self._requests[writer].split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + GUID.encode()).digest()).decode()
        writer.write(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        reader = self._readers[writer]
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            # Messages are swallowed; a close frame (opcode 8 first in a read) is answered.
            while chunk := await reader.read(REQUEST_LIMIT):
                if chunk[0] & 0x0F == 8:
                    writer.write(b"\x88\x02\x03\xe8")  # close 1000
                    await writer.drain()
                    break
        writer.close()

    async def _redirect(self, writer: asyncio.StreamWriter, status: int) -> None:
        location = f"ws://127.0.0.1:{self.counter.port}/ws"
        reason = {301: "Moved Permanently", 302: "Found"}[status]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nLocation: {location}\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        writer.close()


__all__ = ["BEHAVIOURS", "SLOW_101", "HandshakeTarget", "HitCounter"]

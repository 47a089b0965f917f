"""A hostile WebSocket target on raw asyncio streams: no WebSocket library.

It completes the opening handshake correctly (RFC 6455 4.2.2) and then
misbehaves in one chosen way (``MODES``), so the tests can watch a client
engine meet each class of broken peer. Frames are built and parsed by hand
here, so a library's own checks can neither hide a violation on the way out
nor reject one before the client under test sees it.

Violation modes wait for the client's first message (the load has started),
answer it with the violation, then keep reading: the client must close the
connection itself, with the right close code, which the server records
(:attr:`HostileServer.close_codes`). The flood and silence modes never read
at all after the handshake.

Run it as a process (``python -m tests.hostile.server MODE``): it prints
``listening on PORT`` and, at SIGTERM, one JSON line of what it saw.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import signal
import struct
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: a request head past this is refused (the client under test never sends one)
MAX_REQUEST = 16 * 1024

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = False
) -> bytes:
    """One frame as a server would send it (unmasked unless ``mask``); ``rsv`` is 3 bits."""
    head = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return frame(CLOSE, struct.pack("!H", code) + reason)


async def read_frame(reader: asyncio.StreamReader, limit: int) -> tuple[int, bool, bytes]:
    """The client's next frame: (opcode, fin, unmasked payload); payloads past ``limit`` refused."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    if n > limit:
        raise ValueError(f"client frame of {n} bytes")
    key = await reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
    data = await reader.readexactly(n)
    return b0 & 0x0F, bool(b0 & 0x80), bytes(b ^ key[i % 4] for i, b in enumerate(data))


def _message_then(violation: bytes) -> Callable[[HostileServer, Peer], Awaitable[None]]:
    """A mode that answers the client's first message with ``violation``, then only reads."""

    async def run(server: HostileServer, peer: Peer) -> None:
        await peer.next_message()
        peer.writer.write(violation)
        await peer.read_until_closed()

    return run


async def _never_reads(server: HostileServer, peer: Peer) -> None:
    """Accept the connection and never read from it again (the client's writes back up)."""
    await peer.writer.wait_closed()


async def _ping_flood(server: HostileServer, peer: Peer) -> None:
    """Send pings as fast as the socket takes them and never read the pongs."""
    burst = frame(PING, b"p" * 125) * 64
    with contextlib.suppress(ConnectionError):
        while not peer.writer.is_closing():
            peer.writer.write(burst)
            await peer.writer.drain()
            await asyncio.sleep(0)  # drain() does not yield while the client keeps up


async def _endless_fragments(server: HostileServer, peer: Peer) -> None:
    """After the first message, one fragmented message that never ends."""
    await peer.next_message()
    chunk = frame(CONT, b"x" * 16384, fin=False)
    peer.writer.write(frame(TEXT, b"{", fin=False))
    reading = asyncio.create_task(peer.read_until_closed())
    try:
        with contextlib.suppress(ConnectionError):
            while not reading.done():
                peer.writer.write(chunk)
                await peer.writer.drain()
                await asyncio.sleep(0)
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await reading


async def _too_big(server: HostileServer, peer: Peer) -> None:
    """Answer the first message with one binary frame a byte over the client's limit."""
    await peer.next_message()
    peer.writer.write(frame(BINARY, b"b" * (server.limit + 1)))
    await peer.read_until_closed()


async def _echo(server: HostileServer, peer: Peer) -> None:
    """A well-behaved echo (the control case)."""
    while True:
        data = await peer.next_message()
        peer.writer.write(frame(TEXT, data))


MODES: dict[str, Callable[[HostileServer, Peer], Awaitable[None]]] = {
    "echo": _echo,
    "data_in_fragment": _message_then(frame(TEXT, b"{", fin=False) + frame(TEXT, b"}")),
    "stray_continuation": _message_then(frame(CONT, b"}")),
    "masked": _message_then(frame(TEXT, b'{"seq": 1}', mask=True)),
    "reserved_bits": _message_then(frame(TEXT, b'{"seq": 1}', rsv=4)),
    "close_code_1006": _message_then(close_frame(1006)),
    "close_code_999": _message_then(close_frame(999)),
    "close_code_5000": _message_then(close_frame(5000)),
    "control_fragmented": _message_then(frame(PING, b"p", fin=False)),
    "control_too_big": _message_then(frame(PING, b"p" * 126)),
    "invalid_utf8": _message_then(frame(TEXT, b'{"seq": 1, "x": "\xff\xfe"}')),
    "invalid_utf8_fragmented": _message_then(
        frame(TEXT, b'{"x": "\xe2\x82', fin=False) + frame(CONT, b'("}')
    ),
    "too_big": _too_big,
    "endless_fragments": _endless_fragments,
    "ping_flood": _ping_flood,
    "never_reads": _never_reads,
}


class ClientClosed(Exception):
    """The client sent its close frame."""


@dataclass
class Peer:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    server: HostileServer

    async def next_message(self) -> bytes:
        """The client's next data frame's payload (control frames skipped, a close ends it)."""
        while True:
            opcode, _, data = await read_frame(self.reader, self.server.limit)
            if opcode == CLOSE:
                self.server.record_close(data)
                raise ClientClosed
            if opcode in (TEXT, BINARY, CONT):
                self.server.messages += 1
                return data

    async def read_until_closed(self) -> None:
        """Read (and drop) frames until the client hangs up, recording its close code.

        The server never closes first, nor answers the client's close frame:
        the client must end the connection itself, in bounded time.
        """
        with contextlib.suppress(EOFError, asyncio.IncompleteReadError, ConnectionError):
            while True:
                with contextlib.suppress(ClientClosed):
                    await self.next_message()


@dataclass
class HostileServer:
    """What the server saw: connections, messages, and the close codes clients sent."""

    mode: str
    #: the client's --max-message-size, for the too_big mode
    limit: int = 65536
    connections: int = 0
    messages: int = 0
    close_codes: Counter[int] = field(default_factory=Counter)
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def record_close(self, payload: bytes) -> None:
        self.close_codes[struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005] += 1

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        port_: int = self._server.sockets[0].getsockname()[1]
        return port_

    async def stop(self) -> None:
        """Stop listening and end every connection's handler."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()  # each handler then ends on its own
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await asyncio.gather(*self._handlers, return_exceptions=True)

    def stats(self) -> dict[str, object]:
        return {
            "connections": self.connections,
            "messages": self.messages,
            "close_codes": {str(k): v for k, v in sorted(self.close_codes.items())},
        }

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            key = await _handshake(reader, writer)
            if key is None:
                return
            self.connections += 1
            await MODES[self.mode](self, Peer(reader, writer, self))
        except (ConnectionError, EOFError, ClientClosed, ValueError):
            pass
        finally:
            writer.transport.abort()
            self._handlers.discard(task)
            self._writers.discard(writer)


async def _handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes | None:
    """Read the upgrade request and answer 101 with the right Sec-WebSocket-Accept."""
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_REQUEST:
        return None
    key = b""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            key = value.strip()
    if not key:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        return None
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
    writer.write(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    await writer.drain()
    return key


async def _main(mode: str, limit: int) -> None:
    server = HostileServer(mode, limit)
    port = await server.start()
    print(f"listening on {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    print(json.dumps(server.stats()), flush=True)
    await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("--limit", type=int, default=65536)
    args = parser.parse_args()
    asyncio.run(_main(args.mode, args.limit))
    sys.exit(0)


if __name__ == "__main__":
    main()

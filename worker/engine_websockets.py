"""The engine on the websockets library: a reader task per connection.

Slower than :mod:`worker.engine_picows` (each message passes through
websockets' asyncio layer: a send lock, a frame assembler, a future per
``recv``), but it speaks permessage-deflate, so jobs with ``compression``
run here.

The library checks RFC 6455 itself (reserved bits, opcodes, fragmentation,
masking, control frames, close codes, UTF-8 of text messages) and fails the
connection with 1002 (1007 for UTF-8, 1009 past ``max_message_size``, which
it applies to the sum of a fragmented message's frames). Three things it
leaves open are closed here (:func:`harden`, which
:class:`worker.client.WebSocketClient` uses too), on the connection object:

- after failing a connection, a client waits for the server to close TCP,
  for ever if the server does not: the engine closes it (after the close
  frame, bounded by :data:`worker.picows_listener.FAIL_GRACE`);
- pings are answered as they come, into a write buffer that a target which
  never reads makes grow without bound: while writing is paused only the
  most recent ping is answered, on resume (RFC 6455 5.5.3);
- ``close()`` awaits ``drain()`` without a timeout: :meth:`_close` bounds it
  and aborts the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from worker.connect import open_connection
from worker.engine import Conn, Engine
from worker.errors import failure_kind, report_once
from worker.picows_listener import FAIL_GRACE
from worker.recorder import Recorder

_OPEN = State.OPEN
#: seconds an aborted connection gets to report that it is closed
ABORT_WAIT = 1.0
#: frames received but not yet taken by the reader, past which reading pauses
MAX_QUEUED = 4


class WebsocketsEngine(Engine):
    async def _open(self, source: str) -> ClientConnection:
        ws = await open_connection(self.spec.ws_url, self._options, self._ssl, source)
        harden(ws, self.spec.max_message_size, self.recorder)
        return ws

    def _attach(self, link: ClientConnection, conn: Conn) -> asyncio.Task[None]:
        return asyncio.create_task(self._read(conn))

    def _alive(self, conn: Conn) -> bool:
        return conn.link.state is _OPEN

    async def _send(self, conn: Conn, intended: float) -> bool:
        payload = self._next_message(conn, intended)
        try:  # waits (drain) while the target does not read: the next message is not made
            await conn.link.send(payload)
        except ConnectionClosed:
            return False  # the message stays in flight and is counted lost with the connection
        return True

    async def _close(self, conn: Conn) -> None:
        """Close with 1000, bounded by the connect timeout; past it, abort the connection."""
        ws: ClientConnection = conn.link
        try:
            async with asyncio.timeout(self._options.timeout):
                await ws.close(1000)
            return
        except TimeoutError:
            ws.transport.abort()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ABORT_WAIT):
                await ws.wait_closed()

    async def _read(self, conn: Conn) -> None:
        ws: ClientConnection = conn.link
        on_message = self._on_message
        code, failure, text = 1006, "", ""
        try:
            while True:
                # Decoded, so that the library checks text messages are UTF-8 (1007).
                msg = await ws.recv()
                data = msg.encode() if isinstance(msg, str) else msg
                if on_message(conn, data) and (
                    not self._sending(conn) or not await self._send(conn, time.monotonic())
                ):
                    conn.wake()
        except ConnectionClosed as exc:
            code, failure, text = _how_closed(exc)
            if failure:
                report_once(self.recorder, failure, text)
        finally:
            self._on_closed(conn, code, failure, text)


def _how_closed(exc: ConnectionClosed) -> tuple[int, str, str]:
    """(close code, failure kind, text): the kind is set when this side failed the connection."""
    sent, rcvd = exc.sent, exc.rcvd
    if sent is not None and sent.code != 1000 and not exc.rcvd_then_sent:
        code = sent.code
        reason = sent.reason or type(exc.__cause__).__name__
        return code, failure_kind(code), f"{reason}; closed with {code}"
    return (rcvd.code if rcvd is not None else 1006), "", ""


def harden(ws: ClientConnection, limit: int, recorder: Recorder | None = None) -> None:
    """Bound what a hostile target can make this connection hold or wait for.

    ``limit`` is the largest message (``max_message_size``; the library then
    closes with 1009). Pauses of writing are counted in ``recorder``
    (``write_pauses``) if given; pongs owed while paused collapse into the latest one;
    a connection this side failed is closed without waiting for the target.
    """
    protocol = ws.protocol
    protocol.max_message_size = limit
    # Reading pauses once this many frames wait for recv() (the library's
    # default is 16): at most MAX_QUEUED x limit bytes queued per connection.
    ws.recv_messages.high, ws.recv_messages.low = MAX_QUEUED, 1
    loop = asyncio.get_running_loop()
    owed: list[Frame] = []
    send_frame, fail = protocol.send_frame, protocol.fail
    pause_writing, resume_writing = ws.pause_writing, ws.resume_writing

    def sending(frame: Frame) -> None:
        if frame.opcode is Opcode.PONG and ws.paused:
            owed[:] = [frame]
        else:
            send_frame(frame)

    def failing(code: int, reason: str = "") -> None:
        fail(code, reason)
        loop.call_soon(_hang_up, ws)  # after the library has written the close frame

    def pausing() -> None:
        pause_writing()
        if recorder is not None:
            recorder.write_pauses += 1

    def resuming() -> None:
        resume_writing()
        if owed and protocol.state is _OPEN:
            send_frame(owed[0])
            ws.send_data()
        owed.clear()

    protocol.send_frame = sending  # type: ignore[method-assign]
    protocol.fail = failing  # type: ignore[method-assign]
    ws.pause_writing = pausing  # type: ignore[method-assign]
    ws.resume_writing = resuming  # type: ignore[method-assign]


def _hang_up(ws: ClientConnection) -> None:
    """Close the TCP connection of a failed WebSocket: gracefully, aborted past FAIL_GRACE."""
    transport = ws.transport
    if transport.is_closing():
        return
    if ws.paused:  # the target does not read: the close frame would never leave
        transport.abort()
        return
    transport.close()
    asyncio.get_running_loop().call_later(FAIL_GRACE, _abort, transport)


def _abort(transport: Any) -> None:
    transport.abort()


__all__ = ["WebsocketsEngine", "harden"]

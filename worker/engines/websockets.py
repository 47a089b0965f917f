"""The engine on the websockets library: a reader task per connection.

Slower than :mod:`wsload.worker.engines.picows` (each message passes through
websockets' asyncio layer: a send lock, a frame assembler, a future per
``recv``), but it speaks permessage-deflate, so jobs with ``compression``
run here.

The library checks RFC 6455 itself (reserved bits, opcodes, fragmentation,
masking, control frames, close codes, UTF-8 of text messages) and fails the
connection with 1002 (1007 for UTF-8, 1009 past ``max_message_size``, which
it applies to the sum of a fragmented message's frames). Three things it
leaves open are closed by :func:`wsload.worker.connect.harden` (which
:class:`wsload.worker.client.WebSocketClient` uses too), on the connection object:

- after failing a connection, a client waits for the server to close TCP,
  for ever if the server does not: the engine closes it (after the close
  frame, bounded by :data:`wsload.worker.connect.FAIL_GRACE`);
- pings are answered as they come, into a write buffer that a target which
  never reads makes grow without bound: while writing is paused only the
  most recent ping is answered, on resume (RFC 6455 5.5.3);
- ``close()`` awaits ``drain()`` without a timeout: :meth:`WebsocketsLink.close`
  bounds it and aborts the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from wsload.worker.accounting import Accounting, Conn, Link
from wsload.worker.connect import harden, open_connection
from wsload.worker.engine import Engine
from wsload.worker.errors import failure_kind, report_once
from wsload.worker.protocol_session import Opening
from wsload.worker.recorder import Recorder
from wsload.worker.session import Conversation, Effects, HttpRequest

_OPEN = State.OPEN
_INF = float("inf")
_mono = time.monotonic
#: seconds an aborted connection gets to report that it is closed
ABORT_WAIT = 1.0


class WebsocketsEngine(Engine):
    async def open_link(self, source: str, opened: Opening | None = None) -> WebsocketsLink:
        url, options = self.spec.ws_url, self.options
        if opened is not None:  # a protocol's URL, and its subprotocols offered first
            url = opened.url
            options = replace(options, subprotocols=opened.subprotocols + options.subprotocols)
        ws = await open_connection(url, options, self.ssl, source)
        harden(ws, self.spec.max_message_size, self.recorder)
        return WebsocketsLink(ws, self, self.options.timeout)

    async def run_session(
        self, link: Link, conn: Conn, session: Conversation, due: float | None
    ) -> None:
        """One coroutine per client: receive with the session's deadline as the timeout.

        ``send`` waits (drain) while the target does not read, so the session
        never sees ``paused``; the wait shows in its latency from the due time.
        """
        assert isinstance(link, WebsocketsLink)
        ws = link.ws
        loop = asyncio.get_running_loop()
        code, failure, text = 1006, "", ""
        poster = self.talk.poster if self.talk is not None else None
        try:
            out = session.start(_mono(), due)
            while True:
                if out and type(out[-1]) is HttpRequest:  # a post step: the session's last effect
                    request = out[-1]
                    if len(out) > 1 and not await link.apply(conn, out[:-1]):
                        break
                    assert poster is not None
                    assert isinstance(request, HttpRequest)
                    # Inline: this client's messages wait meanwhile (bounded by the timeout)
                    out = session.on_http(_mono(), *await poster.perform(request))
                    continue
                if out and not await link.apply(conn, out):
                    break
                deadline = session.deadline
                if deadline == _INF:
                    msg = await ws.recv()
                else:
                    try:
                        async with asyncio.timeout_at(loop.time() + deadline - _mono()):
                            msg = await ws.recv()  # cancelling recv loses nothing
                    except TimeoutError:
                        out = session.on_timer(_mono())
                        continue
                if isinstance(msg, str):
                    out = session.on_message(_mono(), msg.encode(), True)
                else:
                    out = session.on_message(_mono(), msg, False)
            await ws.wait_closed()  # the session closed it: the close handshake ends here
            code = ws.close_code or 1006
        except ConnectionClosed as exc:
            code, failure, text = _how_closed(exc, self.recorder)
        finally:
            self.on_closed(conn, code, failure, text)


class WebsocketsLink:
    """A :class:`wsload.worker.accounting.Link` over a websockets ``ClientConnection``.

    ``paused`` is always False: the library's ``send`` waits (drain) while
    the target does not read, so the next message is not made meanwhile.
    """

    paused = False

    def __init__(self, ws: ClientConnection, core: Accounting, close_timeout: float) -> None:
        self.ws = ws
        self.core = core
        self.close_timeout = close_timeout

    @property
    def alive(self) -> bool:
        return self.ws.state is _OPEN

    def attach(self, conn: Conn) -> asyncio.Task[None]:
        return asyncio.create_task(self._read(conn))

    def resumed(self) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def send(self, text: str | bytes) -> bool:
        try:  # waits (drain) while the target does not read
            await self.ws.send(text)
        except ConnectionClosed:
            return False  # the message stays in flight and is counted lost with the connection
        return True

    async def send_frames(self, frames: Effects) -> None:
        """Send frames (a protocol session's goodbye before the engine closes)."""
        for frame in frames:
            if isinstance(frame, str | bytes) and not await self.send(frame):
                return

    async def apply(self, conn: Conn, out: Effects) -> bool:
        """Send a session's frames; a close code closes (closed by us): then False.

        A send on a connection already gone is dropped: the next ``recv``
        says how it closed.
        """
        for item in out:
            if isinstance(item, int):
                conn.closed_by_us = True
                await self.close(item)
                return False
            if isinstance(item, HttpRequest):  # run_session performs it
                continue
            if not await self.send(item):
                break
        return True

    async def close(self, code: int = 1000) -> None:
        """Close with ``code``, bounded by the connect timeout; past it, abort the connection."""
        ws = self.ws
        try:
            async with asyncio.timeout(self.close_timeout):
                await ws.close(code)
            return
        except TimeoutError:
            ws.transport.abort()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ABORT_WAIT):
                await ws.wait_closed()

    async def _read(self, conn: Conn) -> None:
        ws = self.ws
        core = self.core
        on_message = core.on_message
        code, failure, text = 1006, "", ""
        try:
            while True:
                # Decoded, so that the library checks text messages are UTF-8 (1007).
                msg = await ws.recv()
                data = msg.encode() if isinstance(msg, str) else msg
                if on_message(conn, data) and (
                    not core.sending(self)
                    or not await self.send(core.next_message(conn, time.monotonic()))
                ):
                    conn.wake()
        except ConnectionClosed as exc:
            code, failure, text = _how_closed(exc, core.recorder)
        finally:
            core.on_closed(conn, code, failure, text)


def _how_closed(exc: ConnectionClosed, rec: Recorder) -> tuple[int, str, str]:
    """(close code, failure kind, text): the kind is set (and reported) when this side failed it."""
    sent, rcvd = exc.sent, exc.rcvd
    if sent is not None and sent.code != 1000 and not exc.rcvd_then_sent:
        code = sent.code
        reason = sent.reason or type(exc.__cause__).__name__
        failure, text = failure_kind(code), f"{reason}; closed with {code}"
        if failure:
            report_once(rec, failure, text)
        return code, failure, text
    return (rcvd.code if rcvd is not None else 1006), "", ""


__all__ = ["WebsocketsEngine", "WebsocketsLink"]

"""One picows connection (the picows engine's Link): RFC 6455 checks, size limit, backpressure.

:class:`Listener` is both picows' callback object and the engine's
:class:`wsload.worker.accounting.Link`: it hands replies to the core
(:meth:`wsload.worker.accounting.Accounting.on_message`), sends the closed loop's
next message from the same callback, and reports the close
(:meth:`wsload.worker.accounting.Accounting.on_closed`).

picows parses frames and enforces part of RFC 6455 itself: opcodes, masked
server frames, fragmented or oversized (> 125 bytes) control frames, the
64-bit length, ``max_frame_size`` per frame (close 1009), close codes below
1000, a close reason that is not UTF-8, a second close. What it leaves to its
user is checked here, in :meth:`Listener.on_ws_frame`: reserved bits (no
extension is ever negotiated), a data frame inside a fragmented message, a
continuation with nothing to continue, close codes that must not be on the
wire (1005, 1006, 1015, 1004, 1016-2999, 5000+), invalid UTF-8 in a text
message, and the total size of a fragmented message.

A violation fails the connection (RFC 6455 7.1.7): a close frame with 1002
(1007 for invalid UTF-8, as RFC 6455 8.1 says; 1009 past
``max_message_size``), then the TCP connection is closed, aborted after
:data:`wsload.worker.connect.FAIL_GRACE` seconds if the target does not take it. It is counted once,
under the error kind ``protocol`` (``too_big`` for the size), never as a reply,
and said once per kind on stderr. picows' own per-connection log lines (and
the traceback of the exception it leaves on its disconnect future) are
silenced: the engine reports them the same way.

Backpressure: uvloop calls :meth:`Listener.pause_writing` when the
connection's write buffer passes its high-water mark (the target is not
reading). While ``paused`` no data message is written (the closed loop's
next message waits in the lifecycle's sender, :meth:`wsload.worker.engine.Engine.nap`
on :meth:`Listener.resumed`; the ticker skips the connection) and pings are
not answered one by one: only the most recent one is, on resume (RFC 6455
5.5.3 allows it). A connection's write buffer is thus bounded by the
high-water mark plus one message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from wsload.worker.accounting import Accounting, Conn, Phase, resolve
from wsload.worker.connect import FAIL_GRACE
from wsload.worker.errors import failure_kind, report_once

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONTINUATION = WSMsgType.CONTINUATION
_PING = WSMsgType.PING
_CLOSE = WSMsgType.CLOSE
_RUNNING = Phase.RUNNING
_mono = time.monotonic
#: seconds an aborted connection gets to report its disconnect
ABORT_WAIT = 1.0
#: the kernel's receive buffer per connection (SO_RCVBUF; the kernel doubles it
#: for its bookkeeping). picows doubles its own read buffer whenever a read
#: fills it, so a target that sends faster than the worker parses (a ping
#: flood) would grow it towards twice Linux's autotuned maximum (tcp_rmem, 32
#: MiB here) per connection; capped, it stays under ~2 x (this + the largest
#: frame). 256 KiB still carries hundreds of MB/s per connection on a LAN.
RECEIVE_BUFFER = 256 * 1024

# Every protocol error, write pause and disconnect is logged by picows per
# connection (some with a traceback); the engine counts them by kind and says
# each kind once instead.
logging.getLogger("picows.client").setLevel(logging.CRITICAL)


def valid_close_code(code: int) -> bool:
    """Whether a close frame may carry ``code`` (RFC 6455 7.4.1, 7.4.2 and the IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _utf8(data: bytes | bytearray) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


class Listener(WSListener):
    """One connection's callbacks; until :meth:`attach`, a close is only remembered.

    ``core`` is the population's accounting (replies, closes, the run's
    phase); ``limit`` the largest message (``max_message_size``);
    ``close_timeout`` bounds :meth:`close` (the connect timeout).
    """

    def __init__(self, core: Accounting, limit: int, close_timeout: float) -> None:
        self.core = core
        self.limit = limit
        self.close_timeout = close_timeout
        self.conn: Conn | None = None
        self.transport: WSTransport | None = None
        #: a message sent now can still reach the server
        self.alive = True
        #: the close has been handed to the engine (or will be, on attach)
        self.gone = False
        #: the write buffer is over its high-water mark: no data message goes out
        self.paused = False
        #: frames after a close frame or a failure are ignored
        self.done = False
        self.close_code = 1006  # until a close frame says otherwise
        #: (kind, text) when this side failed the connection
        self.failure: tuple[str, str] | None = None
        #: the fragmented message being reassembled (at most ``limit`` bytes)
        self.fragments: bytearray | None = None
        self.fragments_text = False
        #: the payload of the latest ping not yet answered (while paused)
        self.ping: bytes | None = None
        self._resumed: asyncio.Future[None] | None = None

    # -- the Link protocol ------------------------------------------------------

    def attach(self, conn: Conn) -> None:
        """Hand replies and the close to the core from now on (no reader task)."""
        self.conn = conn
        if self.gone:
            self._report_close()

    async def send(self, text: str) -> bool:
        """Write one message now (the lifecycle waited for ``paused`` to clear)."""
        if self.transport is None:
            return False
        self.transport.send(_TEXT, text)
        return True

    async def close(self) -> None:
        """Close with 1000 and wait for the server's close, at most ``close_timeout``.

        Past it (a target that neither answers nor reads) the socket is
        aborted; then picows reports the disconnect on the loop's next turns.
        """
        transport = self.transport
        if self.gone or transport is None:
            return
        self.alive = False
        self.wake()
        if not transport.is_close_frame_sent:
            transport.send_close(WSCloseCode.OK)
        try:  # the server answers with its close frame, on which the listener hangs up
            async with asyncio.timeout(self.close_timeout):
                await transport.wait_disconnected()
            return
        except TimeoutError:
            transport.disconnect(graceful=False)
        except Exception:  # a local failure picows re-raises here; the link is gone either way
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(ABORT_WAIT):
                await transport.wait_disconnected()

    # -- picows' callbacks -------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        sock = transport.underlying_transport.get_extra_info("socket")
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)

    # -- frames ---------------------------------------------------------------

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if self.done:
            return
        kind = frame.msg_type
        if transport.is_close_frame_sent and kind is not _CLOSE:
            # This side is closing, or picows failed the connection (its parser
            # goes on delivering what follows, even the frame it refused).
            return
        if frame.rsv1 or frame.rsv2 or frame.rsv3:
            self.fail(1002, "a frame with reserved bits set (no extension was negotiated)")
        elif kind is _TEXT or kind is _BINARY:
            if self.fragments is not None:
                self.fail(1002, "a new data frame inside a fragmented message")
            elif frame.fin:
                data = frame.get_payload_as_bytes()
                if kind is _TEXT and not data.isascii() and not _utf8(data):
                    self.fail(1007, "invalid UTF-8 in a text message")
                else:
                    self._message(data, kind is _TEXT)
            else:  # picows' max_frame_size already holds this frame to the limit
                self.fragments = bytearray(frame.get_payload_as_memoryview())
                self.fragments_text = kind is _TEXT
        elif kind is _CONTINUATION:
            self._continuation(frame)
        elif kind is _PING:
            if self.paused:
                self.ping = frame.get_payload_as_bytes()
            else:
                transport.send_pong(frame.get_payload_as_bytes())
        elif kind is _CLOSE:
            self._close_frame(transport, frame)

    def _continuation(self, frame: WSFrame) -> None:
        fragments = self.fragments
        if fragments is None:
            self.fail(1002, "a continuation frame with no message to continue")
            return
        if len(fragments) + frame.payload_size > self.limit:
            self.fail(1009, f"a fragmented message over max_message_size ({self.limit} bytes)")
            return
        fragments += frame.get_payload_as_memoryview()
        if frame.fin:
            self.fragments = None
            if self.fragments_text and not fragments.isascii() and not _utf8(fragments):
                self.fail(1007, "invalid UTF-8 in a text message")
            else:
                self._message(bytes(fragments), self.fragments_text)

    def _close_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        payload = frame.get_payload_as_bytes()
        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        if code != 1005 and not valid_close_code(code):
            self.fail(1002, f"a close frame with code {code}, which is not allowed on the wire")
            return
        self.close_code = code
        self.alive = False
        self.done = True
        if not transport.is_close_frame_sent:  # answer the server's close, then hang up
            transport.send_close(WSCloseCode.OK if code == 1005 else frame.get_close_code())
        self._hang_up(transport)

    def _message(self, data: bytes, text: bool) -> None:
        """One whole message (``text``: a text message), for the echo load's core."""
        conn = self.conn
        core = self.core
        if conn is None:  # a frame before the engine took the connection: nothing is in flight
            core.recorder.unsolicited += 1
            return
        if not core.on_message(conn, data):
            return
        # Closed loop: the next message goes out from here (the write is synchronous),
        # unless the target is not reading: then the sending coroutine waits for it.
        # The condition is Accounting.sending, inlined: this runs once per reply.
        if self.alive and not self.paused and core.phase is _RUNNING and _mono() < core.send_until:
            self.transport.send(_TEXT, core.next_message(conn, _mono()))  # type: ignore[union-attr]
        else:
            conn.wake()

    # -- failing and closing ----------------------------------------------------

    def fail(self, code: int, text: str) -> None:
        """Fail the connection (RFC 6455 7.1.7): a close frame with ``code``, then hang up."""
        if self.failure is None:
            self.failure = (failure_kind(code), f"{text}; closed with {code}")
        self.close_code = code
        self.alive = False
        self.done = True
        self.fragments = None
        transport = self.transport
        if transport is None:
            return
        if not transport.is_close_frame_sent:
            transport.send_close(WSCloseCode(code))
        self._hang_up(transport)

    def _hang_up(self, transport: WSTransport) -> None:
        """Close the TCP connection after the close frame: gracefully, but never unbounded."""
        if self.paused:  # the target is not reading: the close frame would never leave
            transport.disconnect(graceful=False)
            return
        transport.disconnect()
        asyncio.get_running_loop().call_later(FAIL_GRACE, _abort, transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.alive = False
        self.done = True
        self.paused = False
        self.fragments = None
        self.ping = None
        self.wake()
        if self.failure is None:
            handshake = transport.close_handshake
            sent = handshake.sent if handshake is not None else None
            if sent is not None and not handshake.recv_then_sent and int(sent.code.value) != 1000:
                # picows failed the connection itself (its parser met a violation,
                # or a callback of ours raised); the exception it keeps for
                # wait_disconnected() is set right after this callback.
                self.close_code = int(sent.code.value)
                asyncio.get_running_loop().call_soon(self._reap, transport)
                return
        self.gone = True
        if self.conn is not None:
            self._report_close()

    def _reap(self, transport: WSTransport) -> None:
        """Take picows' exception (so asyncio logs no traceback) and report the failure."""
        exc = _take_exception(transport)
        code = self.close_code
        text = str(exc.args[-1]) if exc is not None and exc.args else "connection failed"
        self.failure = (failure_kind(code), f"{text}; closed with {code}")
        self.gone = True
        if self.conn is not None:
            self._report_close()

    def _report_close(self) -> None:
        assert self.conn is not None
        core = self.core
        if self.failure is None:
            core.on_closed(self.conn, self.close_code)
            return
        kind, text = self.failure
        report_once(core.recorder, kind, text)
        core.on_closed(self.conn, self.close_code, kind, text)

    # -- flow control -----------------------------------------------------------

    def pause_writing(self) -> None:
        self.paused = True
        self.core.recorder.write_pauses += 1

    def resume_writing(self) -> None:
        self.paused = False
        ping, self.ping = self.ping, None
        if ping is not None and self.transport is not None and not self.done:
            self.transport.send_pong(ping)
        self.wake()

    def resumed(self) -> asyncio.Future[None]:
        """A future that completes when writing resumes (or the connection ends)."""
        if self._resumed is None or self._resumed.done():
            self._resumed = asyncio.get_running_loop().create_future()
        return self._resumed

    def wake(self) -> None:
        """Release a sender waiting for :meth:`resumed`."""
        if self._resumed is not None:
            resolve(self._resumed)


def _abort(transport: WSTransport) -> None:
    if not transport.is_disconnected:
        transport.disconnect(graceful=False)


def _take_exception(transport: WSTransport) -> BaseException | None:
    """The exception picows left for ``wait_disconnected()``, retrieved without a task.

    Called once the disconnect future is done, the coroutine completes on its
    first step: it returns (no exception) or raises the one picows kept.
    """
    waiter = transport.wait_disconnected()
    try:
        waiter.send(None)
    except StopIteration:
        return None
    except BaseException as exc:
        return exc
    waiter.close()  # pragma: no cover - the future was not done: nothing to take
    return None  # pragma: no cover


__all__ = ["ABORT_WAIT", "Listener", "valid_close_code"]

"""The default engine, on picows: replies handled where the bytes arrive.

picows parses frames in Cython and calls
:meth:`wsload.worker.engines.picows_listener.Listener.on_ws_frame` (the engine's
:class:`wsload.worker.accounting.Link`) straight from the transport's
``data_received``. The reply is matched and recorded there and, in closed
loop, the next message is sent from the same callback: a round trip costs
no task switch, no future and no lock. In the open model one ticker task
sends every client's due messages from a heap of send times, rather than a
sleeping coroutine per client (a timer, a future and a task switch per
message).

A conversation job's connections are
:class:`wsload.worker.engines.picows_session.SessionListener` objects: each
runs its client's session from the same callback, with one timer per
connection instead of the ticker.

It does not speak permessage-deflate: ``compression`` jobs run on
:mod:`wsload.worker.engines.websockets` (``--engine auto`` chooses that by itself).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Coroutine
from typing import Any

from picows import WSError, WSHandshakeError, WSMsgType, ws_connect

from wsload.worker.accounting import Conn, Link, Phase, resolve
from wsload.worker.connect import USER_AGENT, classify, connected_socket
from wsload.worker.engine import Engine, EngineResult
from wsload.worker.engines.picows_listener import Listener
from wsload.worker.engines.picows_session import Alarms, SessionListener
from wsload.worker.errors import ConnectFailed, HandshakeRejected
from wsload.worker.protocol_session import Opening
from wsload.worker.schedule import HOLD_POLL, MAX_IN_FLIGHT, TICK_BUDGET, TIMER_SLACK, SendSchedule
from wsload.worker.session import Conversation

_TEXT = WSMsgType.TEXT
_mono = time.monotonic
#: picows' first read buffer per connection (it grows for larger messages); its
#: 16 KiB default would double the memory of an idle connection.
READ_BUFFER = 2048
#: picows' handshake timer fires this many seconds before the connect timeout,
#: so it fails ws_connect itself; the connect timeout cancelling ws_connect
#: first would leave picows' own failure unobserved ("exception never retrieved")
HANDSHAKE_MARGIN = 0.05

#: (due, tie-break, conn, schedule, done) of one scheduled sender
_Due = tuple[float, int, Conn, SendSchedule, asyncio.Future[None]]
#: parked senders one look every HOLD_POLL may check; more stretch the interval
PARK_SCAN = 1000


def _unpark(parked: list[_Due], due: list[_Due]) -> list[_Due]:
    """Put the parked senders that may send again back on the heap; keep the rest.

    A sender may send again when its transport resumed writing and its
    in-flight table is below MAX_IN_FLIGHT; one whose connection is gone is
    released (its ``done`` resolved).
    """
    still: list[_Due] = []
    for entry in parked:
        conn = entry[2]
        link: Listener = conn.link
        if not link.alive:
            resolve(entry[4])
        elif link.paused or len(conn.inflight) >= MAX_IN_FLIGHT:
            still.append(entry)
        else:
            heapq.heappush(due, entry)
    return still


class PicowsEngine(Engine):
    """Connections are :class:`Listener` links; the open model's sends come from one ticker."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: (due, tie-break, conn, schedule, done) of every scheduled sender
        self._due: list[tuple[float, int, Conn, SendSchedule, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._ticker_wake: asyncio.Future[None] | None = None
        self._ticker_at = math.inf
        #: a conversation's thinks and iteration starts, every connection's on one timer
        self.alarms = Alarms()

    def _services(self) -> list[Coroutine[Any, Any, None]]:
        services = super()._services()
        if not self.closed_loop and self.talk is None:
            services.append(self._tick())
        return services

    async def run_session(
        self, link: Link, conn: Conn, session: Conversation, due: float | None
    ) -> None:
        """The session runs in the listener's callbacks and timer; wait until it is gone."""
        assert isinstance(link, SessionListener)
        link.attach(conn)
        try:
            if link.alive:
                link.begin(session, due, self.talk.poster if self.talk is not None else None)
            await conn.closed
        finally:
            link.end()

    async def run(self) -> EngineResult:
        try:
            return await super().run()
        finally:
            self.alarms.clear()  # stale alarms hold no listener past the run

    async def _send_scheduled(self, conn: Conn, schedule: SendSchedule) -> None:
        """Hand the connection's schedule to the ticker; return when it is done with it."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._due, (schedule.next_at, next(self._order), conn, schedule, done))
        if schedule.next_at < self._ticker_at and self._ticker_wake is not None:
            resolve(self._ticker_wake)
        await done

    async def _tick(self) -> None:
        """Send every scheduled message when due (up to TIMER_SLACK early), all clients at once.

        Above capacity every message is always due: the ticker sends for at
        most TICK_BUDGET, then yields one loop turn (replies, windows,
        timeouts and the agent's ZeroMQ I/O run on time), and goes on with
        the oldest due message first, so clients fall behind evenly and catch
        up (:mod:`wsload.worker.schedule`). A connection whose transport asked to
        pause writing is parked and never written to until it resumes
        (checked every HOLD_POLL); its messages then go out behind schedule,
        their latency still counted from their intended times. So does a
        connection with MAX_IN_FLIGHT messages awaiting replies.
        """
        due = self._due
        parked: list[_Due] = []
        loop = asyncio.get_running_loop()
        send_until = self.send_until
        next_message = self.next_message
        order = self._order
        push, pop = heapq.heappush, heapq.heappop
        park_check = 0.0
        try:
            while self.phase is Phase.RUNNING:
                turn = now = _mono()
                if parked and now >= park_check:
                    parked = _unpark(parked, due)
                    # A look costs one check per parked sender: with thousands
                    # parked, look less often (a few percent of a core at most).
                    park_check = now + HOLD_POLL * max(1.0, len(parked) / PARK_SCAN)
                while due and due[0][0] - TIMER_SLACK <= now:
                    if now - turn > TICK_BUDGET:
                        break
                    entry = pop(due)
                    at, _, conn, schedule, done = entry
                    link: Listener = conn.link
                    if at >= send_until or now >= send_until or not link.alive:
                        resolve(done)
                        continue
                    if link.paused or len(conn.inflight) >= MAX_IN_FLIGHT:
                        parked.append(entry)
                        continue
                    link.transport.send(_TEXT, next_message(conn, schedule.advance()))  # type: ignore[union-attr]
                    push(due, (schedule.next_at, next(order), conn, schedule, done))
                    now = _mono()
                else:
                    # Nothing due now: sleep until the next send (or the next look at
                    # the parked), at least one tick of uvloop's millisecond timers:
                    # a shorter sleep rounds to zero and the ticker would spin.
                    wake = due[0][0] - TIMER_SLACK if due else now + 1.0
                    if parked:
                        wake = min(wake, park_check)
                    self._ticker_at = wake
                    self._ticker_wake = loop.create_future()  # an earlier newcomer wakes it
                    try:
                        await self.nap(max(TIMER_SLACK, wake - _mono()), self._ticker_wake)
                    finally:
                        self._ticker_wake = None
                    continue
                self._ticker_at = -math.inf  # busy: a newcomer needs no wake-up
                await asyncio.sleep(0)  # over budget: one loop turn for everything else
        finally:
            for *_, done in itertools.chain(due, parked):
                resolve(done)
            due.clear()

    async def open_link(self, source: str, opened: Opening | None = None) -> Listener:
        """Open one connection; every way it can fail is a ConnectFailed with a kind.

        The TCP connection is made first (:func:`connected_socket`: with
        ``IP_BIND_ADDRESS_NO_PORT`` for a source address) and handed to picows,
        whose handshake timer then gets what is left of the connect timeout
        (less HANDSHAKE_MARGIN): a silent target fails ``ws_connect`` itself.
        ``opened``: a protocol client's URL, and its subprotocols offered first.
        """
        options = self.options
        url = self.spec.ws_url
        offered = options.subprotocols
        if opened is not None:
            url = opened.url
            offered = opened.subprotocols + offered
        headers = [("User-Agent", USER_AGENT), *options.headers]
        if offered:
            headers.append(("Sec-WebSocket-Protocol", ", ".join(offered)))
        deadline = _mono() + options.timeout
        limit = self.spec.max_message_size
        if self.talk is None:
            make = lambda: Listener(self, limit, options.timeout)  # noqa: E731
        else:
            make = lambda: SessionListener(self, limit, options.timeout, self.alarms)  # noqa: E731
        try:
            async with asyncio.timeout(options.timeout):
                sock = await connected_socket(url, source)
                # picows owns the socket from here: closed with its transport or
                # detached by uvloop when the transport cannot be made.
                transport, listener = await ws_connect(
                    make,
                    url,
                    ssl_context=self.ssl,
                    websocket_handshake_timeout=max(deadline - _mono() - HANDSHAKE_MARGIN, 1e-3),
                    max_frame_size=self.spec.max_message_size,
                    enable_auto_pong=False,  # the listener answers pings (bounded while paused)
                    extra_headers=headers,
                    max_redirects=0,  # a 3xx is an error kind (http_301...), never followed
                    read_buffer_init_size=READ_BUFFER,
                    use_aiofastnet=False,  # no faster here, and ~5 KB more per connection
                    socket_factory=lambda _url: sock,
                )
        except Exception as exc:
            raise _classify(exc, url) from exc
        if listener is None or transport.response is None:
            # picows ends the handshake quietly when the target hangs up before
            # its 101 (closed, reset, half a response): no listener, no response.
            transport.disconnect(graceful=False)
            raise ConnectFailed("reset", f"{url}: connection closed during the handshake")
        chosen = transport.response.headers.get("Sec-WebSocket-Protocol")
        if chosen is not None and chosen not in offered:
            transport.disconnect(graceful=False)
            raise HandshakeRejected(
                None, f"{url}: server chose subprotocol {chosen!r}, not offered"
            )
        assert isinstance(listener, Listener)
        return listener


def _classify(exc: BaseException, url: str) -> ConnectFailed:
    if isinstance(exc, WSHandshakeError):
        status = int(exc.response.status) if exc.response is not None else 101
        if status != 101:
            return HandshakeRejected(
                status, f"{url}: server answered the upgrade with HTTP {status}"
            )
    if isinstance(exc, WSError):
        return HandshakeRejected(None, f"{url}: invalid handshake ({exc})")
    return classify(exc, url)


__all__ = ["PicowsEngine"]

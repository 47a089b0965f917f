"""The client population: one worker's share of a load job on one event loop.

Lifecycle of a run (:meth:`Engine.run`):

1. *running* -- clients connect at their ramp slots, send on their schedule
   (:mod:`wsload.worker.schedule`), match replies (:mod:`wsload.worker.tracker`), and
   reconnect with capped exponential backoff after the server closes on them;
2. *draining* -- at the end of ``duration`` (or :meth:`Engine.stop`) no new
   message goes out; in-flight replies are awaited up to ``drain_timeout``;
3. *closing* -- what is still in flight is counted as unanswered, every
   connection is closed with code 1000, and the final window is emitted.

Every task belongs to the run's task group; nothing outlives :meth:`run`.
All times come from ``time.monotonic`` (uvloop's ``loop.time()`` is cached
per iteration at millisecond resolution, too coarse for latency).

This class is the lifecycle; what each message does to the counters, the
run's phase and the reconnect policy are :class:`wsload.worker.accounting.Accounting`'s
(the pure core it derives from); how frames reach the wire is a client
engine's: a subclass opens connections as :class:`wsload.worker.accounting.Link`
objects, and :func:`wsload.worker.engines.create_engine` (the registry) picks one by
``spec.engine``. This module imports no engine, so none of them imports back
into a cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from wsload.common.program import Workload
from wsload.common.spec import JobSpec
from wsload.worker.accounting import Accounting, Conn, EngineResult, Link, Phase
from wsload.worker.connect import ConnectOptions
from wsload.worker.converse import Talk, compile_job
from wsload.worker.dial import Dialing, Redial
from wsload.worker.payload import PayloadTemplate
from wsload.worker.recorder import WindowBatch
from wsload.worker.schedule import (
    HOLD_POLL,
    MAX_IN_FLIGHT,
    TICK_BUDGET,
    TIMER_SLACK,
    SendSchedule,
    Share,
    connect_at,
    first_send,
    send_period,
)
from wsload.worker.session import Conversation

if TYPE_CHECKING:
    from wsload.worker.protocol_session import Opening

WINDOW_SECONDS = 0.25
#: Opening handshakes in progress at once, per worker. Thousands started at
#: once kept the loop busy for seconds per turn (no window went out: the
#: progress said "clients 0", then everything in one second), and the
#: target's own handshake timeout hung up on the requests sent last (10,000
#: at once on a busy 2-core machine: every one). Towards a distant target this
#: caps a worker's opening rate at about PENDING_HANDSHAKES / (2 * round
#: trip): 2,500/s at 100 ms.
PENDING_HANDSHAKES = 512
#: seconds between two looks at the run's end by a sender waiting for a paused
#: connection to resume (the phase change itself wakes it at once)
PAUSE_RECHECK = 1.0
_mono = time.monotonic
#: seconds without a delivery after which a draining subscriber's run stops waiting
DELIVERY_QUIET = 0.3


class Engine(Accounting, Dialing, ABC):
    """Runs ``share`` of ``spec``'s clients until the duration ends or :meth:`stop`.

    ``on_batch`` receives a :class:`WindowBatch` every ``window`` seconds and
    a final one (``final=True``) after the connections are closed.
    ``start_at`` is a wall-clock time (so workers on several hosts start
    together); by default the run starts at once.

    A subclass opens connections (:meth:`open_link`); everything else about
    a connection goes through its :class:`Link`. Public for subclasses and
    links: ``spec``, ``share``, ``template``, ``options`` and ``ssl`` (how to
    open), :meth:`nap` (:class:`wsload.worker.naps.Naps`), and the core's
    ``phase``/``send_until``/``recorder``.
    """

    def __init__(
        self,
        spec: JobSpec,
        share: Share | None = None,
        *,
        on_batch: Callable[[WindowBatch], None] | None = None,
        start_at: float | None = None,
        window: float = WINDOW_SECONDS,
        client_prefix: str = "client-",
        workload: Workload | None = None,
    ) -> None:
        self.template = PayloadTemplate(spec.payload, spec.payload_size)
        self.share = share or Share(count=spec.num_clients, total=spec.num_clients)
        self._period = send_period(spec.interval, self.share)
        super().__init__(spec, stamped=self.template.uses_ts, closed_loop=self._period <= 0)
        Dialing.__init__(self)
        self.spec = spec
        self._on_batch = on_batch
        self._start_at = start_at
        self._window = window
        self._prefix = client_prefix
        self.options = ConnectOptions.from_spec(spec)
        self.ssl = self.options.ssl_context() if spec.ws_url.startswith("wss:") else None
        self._conns: dict[int, Conn] = {}
        self._stop_requested = asyncio.Event()
        self._handshakes = asyncio.Semaphore(PENDING_HANDSHAKES)
        self._start = 0.0
        self._tasks: asyncio.TaskGroup | None = None  # the run's, for add_clients
        self.client_prefix = client_prefix
        #: the open connections by job-wide client number (the conversation driver's too)
        self.conns = self._conns
        #: a conversation job's clients (:mod:`wsload.worker.converse`); None: the echo load
        workload = workload or compile_job(spec)
        self.talk = Talk(self, workload, self.share) if workload is not None else None

    # -- what a subclass provides ---------------------------------------------

    @abstractmethod
    async def open_link(self, source: str, opened: Opening | None = None) -> Link:
        """Open one connection (from local address ``source``), or raise ConnectFailed.

        ``opened``: a protocol client's URL and subprotocols (None: the job's).
        """

    @abstractmethod
    async def run_session(
        self, link: Link, conn: Conn, session: Conversation, due: float | None
    ) -> None:
        """Run a conversation's ``session`` on ``link`` until the connection is gone.

        ``due``: when the session was meant to start (a churn iteration's
        intended start); ``conn`` reports the close to the core as for the echo load.
        """

    def _services(self) -> list[Coroutine[Any, Any, None]]:
        """The run-wide tasks, owned by the run's task group; a subclass may add its own."""
        if self.talk is not None:  # sessions time their expects out themselves
            return [self._emit_windows()]
        return [self._emit_windows(), self._sweep_timeouts()]

    # -- for the conversation driver (wsload.worker.converse) -------------------

    @property
    def started(self) -> float:
        """The run's start (monotonic): ramp slots and stages count from here."""
        return self._start

    def close_soon(self, conn: Conn) -> None:
        """Close ``conn``'s link with 1000 from a task of the run (a stage ramped it down)."""
        if self._tasks is not None:
            self._tasks.create_task(self._close(conn))

    async def _close(self, conn: Conn) -> None:
        """Close ``conn``'s link with 1000, its stopped session's goodbye frames first.

        Only a protocol's session has any (STOMP and MQTT DISCONNECT, a
        Socket.IO namespace's leave); its links all send frames.
        """
        session = conn.session
        if session is not None:
            frames = session.goodbye()
            if frames:  # bounded: a target that does not read holds no close
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.options.timeout):
                        await conn.link.send_frames(frames)
        await conn.link.close()

    # -- control ------------------------------------------------------------

    def stop(self) -> None:
        """Ask the run to end now (drain and close as at the end of the duration)."""
        self._stop_requested.set()

    def add_clients(self, share: Share, ramp: float = 0.0, spec: JobSpec | None = None) -> bool:
        """Also run ``share``'s clients from now on, connecting evenly over ``ramp`` seconds.

        The coordinator hands a lost worker's clients on this way (a second
        ``job`` for the running job); their numbers (``share.offset ..``) are
        the lost worker's, so client ids stay unique. ``spec`` is that job's
        (a conversation takes its feeder's rows for those clients). False,
        and nothing started, once the run is past sending.
        """
        if self._tasks is None or self.phase is not Phase.RUNNING or _mono() >= self.send_until:
            return False
        if self.talk is not None and spec is not None:
            self.talk.add_rows(spec)
        begin = max(_mono(), self._start)
        for index in range(share.count):
            at = begin + ramp * index / share.count
            self._tasks.create_task(self._client(index, share, at))
        return True

    @property
    def in_flight(self) -> int:
        if self.talk is not None:
            return sum(1 for c in self._conns.values() if c.session and c.session.awaiting)
        return sum(len(c.inflight) for c in self._conns.values())

    async def run(self) -> EngineResult:
        """Run the whole lifecycle and return the totals."""
        delay = max(0.0, self._start_at - time.time()) if self._start_at else 0.0
        self._start = _mono() + delay
        self.send_until = self._start + self.spec.duration
        rec = self.recorder
        rec.start_window(time.time())
        started_at = time.time() + delay
        async with asyncio.TaskGroup() as tg:
            self._tasks = tg
            for service in self._services():
                tg.create_task(service)
            clients = [tg.create_task(self._client(i)) for i in range(self.share.count)]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stop_requested.wait(), timeout=max(0.0, self.send_until - _mono())
                )
            stopped_early = self._stop_requested.is_set()
            self.phase = Phase.DRAINING
            self._wake_all()
            await self._drain()
            self.phase = Phase.CLOSING
            self._wake_all()
            await self._close_all()
            await asyncio.gather(*clients)
            if self.talk is not None:
                await self.talk.poster.aclose()  # post requests still out are cancelled
            self.phase = Phase.DONE
        while rec.fanout.backlog and self._on_batch is not None:  # ended subscriptions
            self._on_batch(rec.take_window(time.time()))  # beyond one window's bound
        final = rec.take_window(time.time(), final=True)  # also samples the CPU time
        if self._on_batch is not None:
            self._on_batch(final)
        return EngineResult(
            counters=rec.totals(),
            errors=dict(rec.errors),
            started_at=started_at,
            stopped_at=time.time(),
            stopped_early=stopped_early,
            error_texts=dict(rec.error_texts),
        )

    # -- one client ---------------------------------------------------------

    async def _client(
        self, index: int, share: Share | None = None, at: float | None = None
    ) -> None:
        share = share or self.share  # another share: clients handed on (add_clients)
        if self.talk is not None:
            if at is None:
                at = connect_at(self._start, self.spec.ramp_up, share, index)
            await self.talk.run_client(share.offset + index, at)
            return
        client_id = f"{self._prefix}{share.offset + index}"
        if at is None:
            at = connect_at(self._start, self.spec.ramp_up, share, index)
        await self.nap(at - _mono())
        sources = self.spec.source_addresses
        source = sources[(share.offset + index) % len(sources)] if sources else ""
        seq = 0
        redial = Redial()
        while self.phase is Phase.RUNNING and _mono() < self.send_until:
            dialed = await self.dial(source, redial)
            if dialed is True:  # failed, backed off: again
                continue
            if dialed is False:
                return
            link, connected = dialed
            redial.failures = 0
            seq = await self._drive(index, client_id, link, connected, seq, share)
            if self.phase is not Phase.RUNNING or not self.spec.reconnect:
                return
            await self.back_off(redial)

    async def _drive(
        self, index: int, client_id: str, link: Link, connected: float, seq: int, share: Share
    ) -> int:
        """Send and receive on one connection until it closes; returns the last seq."""
        loop = asyncio.get_running_loop()
        conn = Conn(link, self.template.renderer(client_id), seq, loop.create_future())
        key = share.offset + index  # the client's number: unique over added shares too
        period = self._period if share is self.share else send_period(self.spec.interval, share)
        self._conns[key] = conn
        reader = link.attach(conn)
        try:
            if self.phase is not Phase.RUNNING:  # connected while the run was ending
                conn.closed_by_us = True
                await link.close()
            elif self.closed_loop:
                await self._send_closed_loop(conn)
            else:
                first = first_send(connected, period, share, index)
                await self._send_scheduled(conn, SendSchedule(first, period))
            await conn.closed
        finally:
            if reader is not None and not reader.done():
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            del self._conns[key]
            self.recorder.lost += conn.inflight.forget()
            self.recorder.clients_connected -= 1
        return conn.seq

    async def _send_scheduled(self, conn: Conn, schedule: SendSchedule) -> None:
        """Send on schedule; behind it, catch up, yielding to the loop every TICK_BUDGET.

        Every client's coroutine shares one turn (:meth:`_yield_turn`), so
        above capacity all of them together keep the loop at most about
        TICK_BUDGET before replies, windows and the agent run again.
        """
        while self.phase is Phase.RUNNING and conn.link.alive:
            due = schedule.next_at
            if due >= self.send_until:
                break
            now = _mono()
            delay = due - now
            if delay > TIMER_SLACK:
                await self.nap(delay - TIMER_SLACK)
                self._turn_started = _mono()
                continue
            if now - self._turn_started > TICK_BUDGET:
                await self._yield_turn()
                continue
            if len(conn.inflight) >= MAX_IN_FLIGHT:
                await self.nap(HOLD_POLL)
                continue
            if not await self._send(conn, schedule.advance()):
                break

    async def _send_closed_loop(self, conn: Conn) -> None:
        """Start (and after a timeout, restart) the reply-driven chain of :meth:`on_message`."""
        loop = asyncio.get_running_loop()
        while self.sending(conn.link):
            conn.stalled = loop.create_future()
            if not await self._send(conn, _mono()):
                break
            await conn.stalled
        conn.stalled = None

    async def _send(self, conn: Conn, intended: float) -> bool:
        """Send now, or once the target reads again: a paused connection writes no message.

        The wait ends with the run's phase (the lifecycle wakes every nap) or
        the connection; ``intended`` stays the time the message was wanted, so
        the pause shows in its latency.
        """
        link: Link = conn.link
        while link.paused and self.sending(link):
            await self.nap(PAUSE_RECHECK, link.resumed())
        if not link.alive or link.paused:
            return False
        return await link.send(self.next_message(conn, intended))

    # -- run-wide tasks -----------------------------------------------------

    async def _sweep_timeouts(self) -> None:
        """Count replies that did not come within ``reply_timeout`` as timed out, once."""
        timeout = self.spec.reply_timeout
        every = min(0.05, timeout / 4)
        rec = self.recorder
        while self.phase < Phase.CLOSING:
            await self.nap(every)
            cutoff = _mono() - timeout
            for conn in list(self._conns.values()):
                if not conn.inflight:  # idle (opening, held open): a look costs a call
                    continue
                expired = conn.inflight.expire(cutoff)
                if expired:
                    rec.timed_out += expired
                    conn.wake()

    async def _emit_windows(self) -> None:
        while self.phase < Phase.CLOSING:
            await self.nap(self._window)
            if self._on_batch is not None and self.phase < Phase.CLOSING:
                self._on_batch(self.recorder.take_window(time.time()))

    async def _drain(self) -> None:
        began = _mono()
        deadline = began + self.spec.drain_timeout
        # Polling only while draining keeps the hot path free of a shared counter.
        while self.in_flight and _mono() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if self.talk is not None and self.talk.subscribes:
            # Publications made before sending stopped are owed to every subscriber:
            # their deliveries may still be on the way. Wait (within the drain
            # timeout) until none came for DELIVERY_QUIET and the recent delivery
            # latency has passed since sending stopped: a server that delays its
            # fan-out longer than the gap between publications is waited for too.
            # What comes while the connections close is still recorded; later
            # deliveries count missing (the server did not send them in time).
            rec = self.recorder
            fanout = rec.fanout
            while _mono() < deadline:
                lag = max(rec.delivery_lags, default=0) / 1e6
                waited = _mono() - began
                quiet = min(waited, time.time() - fanout.last_at)
                if quiet >= DELIVERY_QUIET and waited >= lag + DELIVERY_QUIET:
                    break
                await asyncio.sleep(0.05)

    async def _close_all(self) -> None:
        conns = list(self._conns.values())
        now = _mono()
        for conn in conns:
            self.recorder.unanswered += conn.inflight.forget()
            if conn.session is not None:
                conn.session.stop(now)  # a pending expect is unanswered
            conn.closed_by_us = True
        await asyncio.gather(*(self._close(c) for c in conns), return_exceptions=True)

    # -- helpers ------------------------------------------------------------

    def _wake_all(self) -> None:
        self.wake_naps()
        now = _mono()
        for conn in self._conns.values():
            conn.wake()
            if conn.session is not None:  # no new send; pending expects are still awaited
                conn.session.drain(now)


__all__ = [
    "DELIVERY_QUIET",
    "PAUSE_RECHECK",
    "PENDING_HANDSHAKES",
    "WINDOW_SECONDS",
    "Engine",
    "EngineResult",
]

"""A picows connection that runs a conversation: the session lives in the callbacks.

:class:`SessionListener` is the picows :class:`wsload.worker.engines.picows_listener.Listener`
(the same RFC 6455 checks, size limit, backpressure and close handling) whose
whole messages go to a :class:`wsload.worker.session.Session` instead of the
echo load's core: picows' frame callback calls ``session.on_message`` and
writes what it returns at once (``transport.send`` is synchronous), so a
conversation costs no coroutine, future or task switch per message.

Time: the session's :attr:`wsload.worker.session.Session.deadline` is a
think's end or an iteration's start (then the engine's :class:`Alarms`, one
heap and one loop timer for every connection, wakes it), or an expect's
timeout (then a loop timer of the connection's own, kept while the next
expect's timeout is later: a met expect never cancels it; on firing it
looks again and re-arms for the deadline of the moment). No timer is made,
cancelled and freed per message.

Writes: while picows says ``paused`` the session holds its next send (its
latency still counts from when it was due) and :meth:`resume_writing` lets
it go. A close the session asks for (a churn session's end, a ``close``
step, a failed setup) is sent here and the connection hung up like a
failure's (aborted after FAIL_GRACE if the target does not take it), as
closed by us.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time

from picows import WSCloseCode, WSMsgType, WSTransport

from wsload.worker.accounting import Accounting
from wsload.worker.engines.picows_listener import Listener
from wsload.worker.httppost import Answer, HttpPoster
from wsload.worker.schedule import TICK_BUDGET, TIMER_SLACK
from wsload.worker.session import Conversation, Effects, HttpRequest

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_INF = math.inf
#: the listener's ``failure`` while a close the session asked for completes
_OURS = ("", "")
#: messages kept for a session that has not begun yet (more are unsolicited)
MAX_EARLY = 64
_mono = time.monotonic


class Alarms:
    """The thinks and iteration starts of every connection of an engine, on one timer.

    A heap of ``(at, n, listener)``: a listener that wants waking adds an
    entry; one loop timer fires at the earliest and wakes every listener due
    by then (an entry a listener no longer wants -- its ``alarm_at`` moved --
    is dropped as it comes up). Thousands of clients thinking cost one timer
    per loop tick instead of a loop timer each (made, fired and freed per
    iteration). At most one live entry per listener, plus the stale entries
    of deadlines that moved earlier (rare: a drain, a resume). Above
    capacity every alarm is due: one firing runs them for at most
    TICK_BUDGET, the rest on the next loop turn (oldest first), as the echo
    load's ticker does.
    """

    __slots__ = ("_at", "_handle", "_heap", "_order")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, SessionListener]] = []
        self._order = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._at = _INF

    def add(self, at: float, listener: SessionListener) -> None:
        heapq.heappush(self._heap, (at, next(self._order), listener))
        if at < self._at:
            self._arm(at)

    def _arm(self, at: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._at = at
        self._handle = asyncio.get_running_loop().call_later(max(0.0, at - _mono()), self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._at = _INF
        heap = self._heap
        began = _mono()
        limit = began + TIMER_SLACK
        pop = heapq.heappop
        n = 0
        while heap and heap[0][0] <= limit:
            at, _, listener = pop(heap)
            if listener.alarm_at == at:
                listener.alarm()
                n += 1
                if not n & 63 and _mono() - began > TICK_BUDGET:
                    break  # the rest on the next loop turn: replies and windows run meanwhile
        if heap:
            self._arm(heap[0][0])

    def clear(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._at = _INF
        self._heap.clear()


class SessionListener(Listener):
    """A :class:`Listener` driving a :class:`Session` (set by :meth:`begin`).

    ``alarms`` is the engine's :class:`Alarms` (thinks and iteration starts).
    """

    def __init__(self, core: Accounting, limit: int, close_timeout: float, alarms: Alarms) -> None:
        super().__init__(core, limit, close_timeout)
        self.session: Conversation | None = None
        #: when this connection asked its alarm for (inf: no alarm wanted)
        self.alarm_at = _INF
        self._alarms = alarms
        #: the session's deadline when the timers were last looked at
        self._seen = _INF
        #: expects' timeouts (kept while the next expect's is later)
        self._coarse: asyncio.TimerHandle | None = None
        self._coarse_at = _INF
        #: performs a ``post`` step's requests (the engine's)
        self._poster: HttpPoster | None = None
        #: the session asked for the close (its code, whatever it is, is no failure)
        self._closing = False
        #: messages that came before the session began (made on the first one)
        self._early: list[tuple[bytes, bool]] | None = None
        self._begun = False

    # -- the engine's side ---------------------------------------------------------

    def begin(
        self, session: Conversation, due: float | None, poster: HttpPoster | None = None
    ) -> None:
        """Start ``session`` on this (open) connection; ``poster`` performs its ``post`` steps."""
        self.session = session
        self._poster = poster
        session.paused = self.paused
        out = session.start(_mono(), due)
        if out:
            self._apply(out)
        self._begun = True
        early, self._early = self._early, None
        if early:  # what the server said first (a protocol's open packet), in order
            for data, text in early:
                if self.alive:
                    out = session.on_message(_mono(), data, text)
                    if out:
                        self._apply(out)
                else:
                    self.core.recorder.unsolicited += 1
        self._rearm(session)

    async def send_frames(self, frames: Effects) -> None:
        """Send frames now (a protocol session's goodbye before the engine closes)."""
        self._apply(frames)

    def _sessionless(self, data: bytes, text: bool) -> None:
        """A message with no session: kept for it before it begins (bounded), else unsolicited.

        picows may deliver frames that came with the handshake's answer
        before the engine began the session (a Socket.IO server's open
        packet, a greeting): they are the session's first messages.
        """
        if not self._begun:
            early = self._early
            if early is None:
                early = self._early = []
            if len(early) < MAX_EARLY:
                early.append((data, text))
                return
        self.core.recorder.unsolicited += 1

    def end(self) -> None:
        """The connection is gone: no more timer, no more session."""
        if self._coarse is not None:
            self._coarse.cancel()
        self._coarse = None
        self.alarm_at = self._coarse_at = _INF
        self.session = None
        self._begun = True  # a message now is after the session, not before it
        self._early = None

    # -- picows' side ------------------------------------------------------------

    def _message(self, data: bytes, text: bool) -> None:
        session = self.session
        if session is None:  # before the session began, or after it ended
            self._sessionless(data, text)
            return
        out = session.on_message(_mono(), data, text)
        if out:
            self._apply(out)
        if session.deadline != self._seen:  # a push changes nothing: no look at the timers
            self._rearm(session)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.session is not None:
            self.session.paused = True

    def resume_writing(self) -> None:
        super().resume_writing()
        session = self.session
        if session is not None and not self.done:
            out = session.resume(_mono())
            if out:
                self._apply(out)
            self._rearm(session)

    # -- effects and time --------------------------------------------------------------

    def _apply(self, out: Effects) -> None:
        transport = self.transport
        if transport is None or not self.alive:
            return
        for item in out:
            kind = type(item)
            if kind is str:
                transport.send(_TEXT, item)  # type: ignore[arg-type]
            elif kind is bytes:
                transport.send(_BINARY, item)  # type: ignore[arg-type]
            elif kind is HttpRequest:  # a post step: performed aside, answered in _answered
                if self._poster is not None:
                    self._poster.submit(item, self._answered)  # type: ignore[arg-type]
            else:  # the session closes: a churn session's end, a close step, a failed setup
                if self.conn is not None:
                    self.conn.closed_by_us = True
                self.alive = False
                self._closing = True
                if not transport.is_close_frame_sent:
                    transport.send_close(WSCloseCode(int(item)))  # type: ignore[arg-type]
                self._hang_up(transport)
                return

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        """As the listener's, except that a close the session asked for is never a failure.

        The listener takes a close this side began with a code other than
        1000 for picows failing the connection (``protocol`` for 1002); the
        session's own (a ``close`` step's code, a protocol's fatal failure,
        already counted by its kind) is not.
        """
        if self._closing and self.failure is None:
            self.failure = _OURS
        super().on_ws_disconnected(transport)

    def _report_close(self) -> None:
        if self.failure is _OURS:
            self.failure = None
        super()._report_close()

    def _answered(self, answer: Answer) -> None:
        """A post step's HTTP answer (ignored once the session is gone)."""
        session = self.session
        if session is None or self.done:
            return
        out = session.on_http(_mono(), *answer)
        if out:
            self._apply(out)
        self._rearm(session)

    def _rearm(self, session: Conversation) -> None:
        """Have a timer fire at ``session.deadline`` or before (then it looks again).

        An expect's timeout goes on the connection's *coarse* loop timer,
        which a met expect never cancels: the next expect (usually due later)
        keeps it, and when it fires early it re-arms once for the deadline of
        the moment. Thinks and iteration starts go on the engine's
        :class:`Alarms`. So a loop of send, expect, think costs a heap entry
        per iteration, and a loop timer per timeout period.
        """
        at = self._seen = session.deadline
        if at == _INF:
            return
        if session.pending:
            if at < self._coarse_at:
                if self._coarse is not None:
                    self._coarse.cancel()
                self._coarse_at = at
                self._coarse = asyncio.get_running_loop().call_later(
                    max(0.0, at - _mono()), self._fire_coarse
                )
        elif at < self.alarm_at:
            self.alarm_at = at
            self._alarms.add(at, self)

    def alarm(self) -> None:
        """The engine's :class:`Alarms` calls this at :attr:`alarm_at`."""
        self.alarm_at = _INF
        self._tick()

    def _fire_coarse(self) -> None:
        self._coarse = None
        self._coarse_at = _INF
        self._tick()

    def _tick(self) -> None:
        session = self.session
        if session is None or self.done:
            return
        now = _mono()
        if now >= session.deadline - TIMER_SLACK:
            out = session.on_timer(now)
            if out:
                self._apply(out)
        self._rearm(session)


__all__ = ["Alarms", "SessionListener"]

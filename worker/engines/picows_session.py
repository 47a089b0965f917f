"""A picows connection that runs a conversation: the session lives in the callbacks.

:class:`SessionListener` is the picows :class:`wsload.worker.engines.picows_listener.Listener`
(the same RFC 6455 checks, size limit, backpressure and close handling) whose
whole messages go to a :class:`wsload.worker.session.Session` instead of the
echo load's core: picows' frame callback calls ``session.on_message`` and
writes what it returns at once (``transport.send`` is synchronous), so a
conversation costs no coroutine, future or task switch per message.

Time goes through one timer per connection (``loop.call_later``) at the
session's :attr:`wsload.worker.session.Session.deadline` (a think's end, an
expect's timeout, the next iteration). Deadlines move with nearly every
message, so the timer is kept when the new deadline is later than the one it
is set for (on firing it looks again and re-arms for the current deadline)
and only replaced when the deadline comes earlier: no cancel-and-recreate per
message while an expect's timeout stands.

Writes: while picows says ``paused`` the session holds its next send (its
latency still counts from when it was due) and :meth:`resume_writing` lets
it go. A close the session asks for (a churn session's end, a ``close``
step, a failed setup) is sent here and the connection hung up like a
failure's (aborted after FAIL_GRACE if the target does not take it), as
closed by us.
"""

from __future__ import annotations

import asyncio
import math
import time

from picows import WSCloseCode, WSMsgType

from wsload.worker.accounting import Accounting
from wsload.worker.engines.picows_listener import Listener
from wsload.worker.schedule import TIMER_SLACK
from wsload.worker.session import Effects, Session

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_INF = math.inf
_mono = time.monotonic


class SessionListener(Listener):
    """A :class:`Listener` driving a :class:`Session` (set by :meth:`begin`)."""

    def __init__(self, core: Accounting, limit: int, close_timeout: float) -> None:
        super().__init__(core, limit, close_timeout)
        self.session: Session | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = _INF

    # -- the engine's side ---------------------------------------------------------

    def begin(self, session: Session, due: float | None) -> None:
        """Start ``session`` on this (open) connection."""
        self.session = session
        session.paused = self.paused
        out = session.start(_mono(), due)
        if out:
            self._apply(out)
        self._rearm(session)

    def end(self) -> None:
        """The connection is gone: no more timer, no more session."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = _INF
        self.session = None

    # -- picows' side ------------------------------------------------------------

    def _message(self, data: bytes, text: bool) -> None:
        session = self.session
        if session is None:  # before the session began, or after it ended
            self.core.recorder.unsolicited += 1
            return
        out = session.on_message(_mono(), data, text)
        if out:
            self._apply(out)
        if session.deadline < self._timer_at:
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
            else:  # the session closes: a churn session's end, a close step, a failed setup
                if self.conn is not None:
                    self.conn.closed_by_us = True
                self.alive = False
                if not transport.is_close_frame_sent:
                    transport.send_close(WSCloseCode(int(item)))
                self._hang_up(transport)
                return

    def _rearm(self, session: Session) -> None:
        """Have the timer fire at ``session.deadline`` or before (then it looks again)."""
        at = session.deadline
        if at >= self._timer_at or at == _INF:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = asyncio.get_running_loop().call_later(max(0.0, at - _mono()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = _INF
        session = self.session
        if session is None or self.done:
            return
        now = _mono()
        if now >= session.deadline - TIMER_SLACK:
            out = session.on_timer(now)
            if out:
                self._apply(out)
        self._rearm(session)


__all__ = ["SessionListener"]

"""One client's conversation, sans-I/O: a state machine over its compiled Program.

No socket, no event loop, no clock: every input carries ``now`` (monotonic
seconds) and every output is data the engine applies. That is what lets the
picows engine run a conversation from its frame callback (no coroutine or
future per message) and the websockets engine from one coroutine per client,
with the same rules, and lets the unit tests drive every path with a fake clock.

:class:`Session` (its step loop in :class:`wsload.worker.session_steps.StepMachine`)
is one connection of a
:class:`wsload.worker.session_client.Client` (the client over its
connections: variables, rng, ``seq``, pacing, its compiled plans; importable
from here too):

- :meth:`Session.start` (the connection opened), :meth:`Session.on_message`,
  :meth:`Session.on_timer` (at :attr:`Session.deadline`: a think's end, an
  expect's timeout, the next iteration's intended start) and
  :meth:`Session.resume` (writes allowed again) return the *effects*: a tuple
  of frames to send (``str`` text, ``bytes`` binary) possibly ending with an
  ``int``, a close code; then :attr:`Session.over` is true and
  :attr:`Session.backoff` says whether to reconnect after the usual backoff
  (a failed setup) or at the next iteration's intended start
  (:meth:`Client.next_start`: a churn session, or a ``close`` step). The
  common effect is nothing, returned as the shared empty tuple :data:`EMPTY`.
- :meth:`Session.on_closed` (the connection is gone: a pending expect is
  ``lost``), :meth:`Session.drain` (the run stops sending: no new send,
  pending expects still awaited) and :meth:`Session.stop` (the run is over,
  or a stage ramps this client down: a pending expect is ``unanswered``).

Rules (issue 15): steps run in order; an ``expect`` counts ``expected`` when
it begins waiting and exactly one of met / timed_out / failed / lost /
unanswered later. It is met by the first message its matcher accepts;
failed by a message its ``fail`` matcher accepts, or when a capture path is
missing from the matched message; timed out at its ``timeout`` (the job's
``reply_timeout`` by default) counted from when it began waiting. A message
no pending expect accepts is ``unsolicited`` (per scenario and in total),
never a reply -- unless it is the reply to an expect that timed out in
this iteration or the previous one: then it counts ``late`` (the run's
counter; :meth:`Client.took_late`). Latency counts from the *due* time of the triggering send
(the iteration's intended start for its first send -- a late iteration's
latency includes the lateness; after a met expect, the reply's arrival plus
the think time in between), service time from the actual send. A timed-out
or failed expect ends the iteration (the rest is skipped, counted nowhere)
and the client goes on with the next; in ``[[steps]]`` (setup) it ends the
session: close 1000 and reconnect after the backoff. Why a step failed is
an error kind (:meth:`Recorder.error`, only on that slow path):
``fail_matched`` (the reply matched the expect's ``fail``; an answer that is
the protocol's error: the step's ``fail_kind``, see :mod:`wsload.common.answer`) or
``capture_missing`` (a capture path the reply lacks), its first text naming
the step and the start of the reply.

``behind_schedule`` (the summary's GENERATOR-BOUND: wsload's own limit)
counts only lateness the generator caused: a send that leaves more than
BEHIND_SLACK after the later of its due time and the moment the session
could send it (a timer's deadline: the timer fired late; a message or a
resume: at once). A send due in the past because the target's slow reply
ended the previous iteration late is not counted there (its lateness is in
the latency, from the due time, and in nothing else), nor one held while the
engine says ``paused`` (the target does not read: nothing is written, the
session waits at its send step until :meth:`Session.resume`, and the send's
latency still counts from when it was due; the pause counts in
``write_pauses``).

Iterations: ``seq`` is 1 for a client's first iteration (a loop pass, or a
churn session), +1 per iteration, and ``{seq}`` renders the same in every
step of one iteration (setup steps of a looping program see the last
iteration's number, 0 on the first connection). When each iteration is due
is :class:`wsload.worker.pacing.Pacing`'s: its grid slot under
``rate``/``interval``, postponed by at most the think time the previous
iteration scripted (:attr:`Client.thought`) when that think ran it past the
slot, so the script's own think is never lateness, while the target's share
of an overrun still is (the next iteration is due in the past and its
latency counts from then: no coordinated omission).
"""

from __future__ import annotations

from typing import Protocol

from wsload.common.match import MISSING, capture
from wsload.common.program import Matcher, Step
from wsload.worker.fanout import Subscription
from wsload.worker.schedule import TIMER_SLACK
from wsload.worker.session_client import Client, HttpRequest, Plan
from wsload.worker.session_steps import (
    _EXPECTING,
    _HELD,
    _IDLE,
    _INF,
    _MAX_U32,
    _OVER,
    _POSTING,
    _THINKING,
    _WAITING,
    _WORKING,
    EMPTY,
    Effects,
    StepMachine,
)
from wsload.worker.steprec import StepStats


class Session(StepMachine):
    """One connection of a :class:`Client`: see the module's docstring for the rules.

    Public for the engine: :attr:`deadline` (when to call :meth:`on_timer`;
    ``inf``: never), :attr:`paused` (set while the target does not read),
    :attr:`over`, :attr:`backoff`, :attr:`pending` (an expect awaits a
    message), :attr:`until` (no send is due at or after it: the run's
    sending end).
    """

    __slots__ = ()  # StepMachine's

    def __init__(self, client: Client, until: float = _INF) -> None:
        self.client = client
        self.until = until
        self.deadline = _INF
        self.paused = False
        self.backoff = False
        self._state = _WORKING
        self._plan: Plan = ()
        self._pc = 0
        self._in_setup = True
        self._due = 0.0  # when the next send is due
        self._iter_due = 0.0  # the current iteration's intended start
        self._send_due = 0.0  # the last send's due time (latency base)
        self._send_at = 0.0  # the last send's actual time (service base)
        self._ready = 0.0  # when the current input was meant to be handled
        self._expect: Step | None = None
        self._matcher: Matcher | None = None
        self._fail: Matcher | None = None
        self._stat: StepStats | None = None
        #: this connection's subscription (a program with deliveries)
        self._sub: Subscription | None = None
        #: the ``post`` step out: (step, its due time, its publication)
        self._post: tuple[Step, float, tuple[str, int] | None] | None = None

    # -- what the engine asks ------------------------------------------------

    @property
    def over(self) -> bool:
        return self._state == _OVER

    @property
    def pending(self) -> bool:
        return self._state == _EXPECTING

    @property
    def awaiting(self) -> bool:
        """An expect awaits a message or a post its HTTP answer (a drain waits for both)."""
        return self._state == _EXPECTING or self._state == _POSTING

    # -- inputs ----------------------------------------------------------------

    def start(self, now: float, due: float | None = None) -> Effects:
        """The connection is open; ``due``: when it was meant to start (default ``now``).

        A looping program runs its setup steps, then its iterations; a churn
        program's session is one iteration, due at ``due`` (the engine
        connected for it at :meth:`Client.next_start`).
        """
        client = self.client
        program = client.program
        due = now if due is None else min(due, now)
        self._ready = now
        self._in_setup = True
        client.late = None  # a late reply comes on the connection it was asked on, if at all
        if client.reader is not None:
            sub = self._sub = client.subscription()
            if not program.setup:  # subscribed from connect
                sub.subscribed_at = now + client.epoch
        if program.loop:
            self._plan, self._pc = client.setup_plan, 0
            self._due = self._send_due = due
            self._send_at = now
        else:  # churn: the session is the iteration
            if due >= self.until or now >= self.until:
                return self._idle()
            self._begin(due, now, client.setup_plan)
        return self._run(now)

    def on_message(self, now: float, data: bytes, text: bool) -> Effects:
        """One message from the server: it meets, fails or answers nothing (unsolicited)."""
        sub = self._sub
        if sub is not None and self._state != _EXPECTING and sub.take(data, text, now):
            return EMPTY  # a delivery between expects, recorded and counted by its subscription
        client = self.client
        rec = client.rec
        rec.bytes_received += len(data)
        if self._state != _EXPECTING:  # a subscriber between expects: nearly every delivery
            return client.unexpected(self._sub, now, data, text)
        self._ready = now
        values = client.values
        fail = self._fail
        if fail is not None:
            failed = fail.match(data, text, values, client.rng)
            if failed is not None:
                return self._fail_matched(now, failed, data, text)
        found = self._matcher.match(data, text, values, client.rng)  # type: ignore[union-attr]
        if found is None:
            return self.client.unexpected(self._sub, now, data, text)
        step = self._expect
        assert step is not None
        if step.capture:
            for var, path in step.capture:
                value = capture(found, path)
                if value is MISSING:
                    why = f"capture {var}: no {path!r} in the reply"
                    return self._failed(now, "capture_missing", why, data, text)
                values[var] = value
        stat = self._stat
        assert stat is not None
        latency = int((now - self._send_due) * 1e6)
        service = int((now - self._send_at) * 1e6)
        if service >= 0 and latency <= _MAX_U32:  # the common case, inlined: once per reply
            stat.met += 1
            stat.latency.append(latency)
            stat.service.append(service)
            rec.received += 1
            rec.latency.append(latency)
            rec.service.append(service)
        else:
            stat.record(latency, service)
            rec.reply(latency, service)
        self._expect = self._matcher = self._fail = self._stat = None
        self._due = now
        self._pc += 1
        self._state = _WORKING
        self.deadline = _INF
        return self._run(now)

    def on_http(self, now: float, status: int, error: str | None = None, text: str = "") -> Effects:
        """The answer to the ``post`` step out: 2xx goes on; else (or ``error``) it failed.

        ``error`` is a failure's kind (``refused``, ``timeout``...) and
        ``text`` its first text; a non-2xx status fails as ``http_<status>``.
        A late answer (the step already timed out) does nothing.
        """
        posted = self._post
        if self._state != _POSTING or posted is None:
            return EMPTY
        self._post = None
        step, due, pub = posted
        self._ready = now
        self.deadline = _INF
        self._state = _WORKING
        if self.client.answered(step, due, pub, status, error, text):
            self._due = now
            self._pc += 1
            return self._run(now)
        return self._abandon(now)

    def on_timer(self, now: float) -> Effects:
        """Time passed :attr:`deadline` (an early or stale call does nothing)."""
        state = self._state
        if now < self.deadline - TIMER_SLACK:
            return EMPTY
        self._ready = self.deadline  # a send now is as late as the timer was
        if state == _EXPECTING:
            client = self.client
            self._stat.timed_out += 1  # type: ignore[union-attr]
            client.rec.timed_out += 1
            client.timed_out(self._matcher)  # type: ignore[arg-type]
            return self._abandon(now)
        if state == _POSTING:
            self._state = _POSTING  # as a failed request: the answer, if it comes, is ignored
            return self.on_http(now, 0, "timeout", "no HTTP answer within the step's timeout")
        if state == _THINKING:
            self._state = _WORKING
            self.deadline = _INF
            return self._run(now)
        if state == _WAITING:
            self._state = _WORKING
            self.deadline = _INF
            client = self.client
            self._begin(self._iter_due, now, client.loop_plan)
            return self._run(now, begun=True)
        return EMPTY

    def resume(self, now: float) -> Effects:
        """Writes are allowed again: a held send goes out (its latency from when it was due)."""
        self.paused = False
        if self._state != _HELD:
            return EMPTY
        self._ready = now
        self._state = _WORKING
        return self._run(now)

    def on_closed(self, now: float) -> None:
        """The connection is gone: a pending expect is lost."""
        if self._state == _EXPECTING:
            self._stat.lost += 1  # type: ignore[union-attr]
            self.client.rec.lost += 1
        self._end(now)

    def drain(self, now: float) -> None:
        """The run stops sending now: no new send; a pending expect is still awaited."""
        self.until = min(self.until, now)
        if self._state in (_THINKING, _WAITING, _HELD):
            self._state = _IDLE
            self.deadline = _INF

    def stop(self, now: float) -> None:
        """The run is over (or a stage closes this client): a pending expect is unanswered."""
        if self._state == _EXPECTING:
            self._stat.unanswered += 1  # type: ignore[union-attr]
            self.client.rec.unanswered += 1
        self._end(now, closed=False)  # its subscription ends when the connection is gone

    def goodbye(self) -> Effects:
        """Frames to send before this side closes a stopped session (raw frames: none)."""
        return EMPTY

    # -- the machine -----------------------------------------------------------

    def _end(self, now: float, closed: bool = True) -> None:
        """Over; ``closed``: the connection is gone, so its subscription's record is
        taken (frames that come while it closes are deliveries in it: one truth)."""
        self._state = _OVER
        self.deadline = _INF
        self._expect = self._matcher = self._fail = self._stat = None
        self._post = None
        sub = self._sub
        if closed and sub is not None and not sub.ended:  # it ends with the connection
            client = self.client
            client.rec.fanout.end(sub, now + client.epoch)
            self._sub = None  # a delivery after its record counts nowhere


class Conversation(Protocol):
    """What the engines drive: a :class:`Session`, or a
    :class:`wsload.worker.protocol_session.ProtocolSession` (a protocol over the
    WebSocket) with the same surface. See :class:`Session` for each member."""

    paused: bool

    @property
    def deadline(self) -> float: ...

    @property
    def until(self) -> float: ...

    @property
    def over(self) -> bool: ...

    @property
    def backoff(self) -> bool: ...

    @property
    def pending(self) -> bool: ...

    @property
    def awaiting(self) -> bool: ...

    def start(self, now: float, due: float | None = None) -> Effects: ...

    def on_message(self, now: float, data: bytes, text: bool) -> Effects: ...

    def on_http(
        self, now: float, status: int, error: str | None = None, text: str = ""
    ) -> Effects: ...

    def on_timer(self, now: float) -> Effects: ...

    def resume(self, now: float) -> Effects: ...

    def on_closed(self, now: float) -> None: ...

    def drain(self, now: float) -> None: ...

    def stop(self, now: float) -> None: ...

    def goodbye(self) -> Effects: ...


__all__ = ["EMPTY", "Client", "Conversation", "Effects", "HttpRequest", "Session"]

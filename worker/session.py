"""One client's conversation, sans-I/O: a state machine over its compiled Program.

No socket, no event loop, no clock: every input carries ``now`` (monotonic
seconds) and every output is data the engine applies. That is what lets the
picows engine run a conversation from its frame callback (no coroutine or
future per message) and the websockets engine from one coroutine per client,
with the same rules, and lets the unit tests drive every path with a fake clock.

:class:`Session` is one connection of a
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
``fail_matched`` (the reply matched the expect's ``fail``) or
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

import math
from typing import Final

from wsload.common.match import MISSING, capture
from wsload.common.program import Matcher, Step
from wsload.worker.fanout import Subscription
from wsload.worker.schedule import BEHIND_SLACK, TIMER_SLACK
from wsload.worker.session_client import (
    K_EXPECT,
    K_POST,
    K_SEND,
    K_THINK,
    Client,
    HttpRequest,
    Plan,
)
from wsload.worker.steprec import StepStats

#: What a session asks the engine to do: frames (text ``str``, binary
#: ``bytes``), the last item possibly an ``int``: close with that code.
#: An :class:`HttpRequest` (a ``post`` step): perform it, then :meth:`Session.on_http`.
Effects = tuple[str | bytes | int | HttpRequest, ...]
#: nothing to do (the common case), shared: no allocation per message
EMPTY: Final[Effects] = ()
_INF = math.inf
_MAX_U32 = 0xFFFFFFFF
_CLOSE_NORMAL: Final[Effects] = (1000,)

# states of a session
_WORKING = 0  #: between two inputs (never seen from outside)
_EXPECTING = 1  #: an expect is pending
_THINKING = 2  #: a think runs until ``deadline``
_WAITING = 3  #: the next iteration starts at ``deadline``
_HELD = 4  #: a send waits for writes to resume
_IDLE = 5  #: the run stopped sending: nothing more will be sent
_OVER = 6  #: closed, or told to close
_POSTING = 7  #: a ``post`` step's HTTP request is out


class Session:
    """One connection of a :class:`Client`: see the module's docstring for the rules.

    Public for the engine: :attr:`deadline` (when to call :meth:`on_timer`;
    ``inf``: never), :attr:`paused` (set while the target does not read),
    :attr:`over`, :attr:`backoff`, :attr:`pending` (an expect awaits a
    message), :attr:`until` (no send is due at or after it: the run's
    sending end).
    """

    __slots__ = (
        "_due",
        "_expect",
        "_fail",
        "_in_setup",
        "_iter_due",
        "_matcher",
        "_pc",
        "_plan",
        "_post",
        "_ready",
        "_send_at",
        "_send_due",
        "_stat",
        "_state",
        "_sub",
        "backoff",
        "client",
        "deadline",
        "paused",
        "until",
    )

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
        client = self.client
        rec = client.rec
        rec.bytes_received += len(data)
        if self._state != _EXPECTING:
            return self.client.unexpected(self._sub, now, data, text)
        self._ready = now
        values = client.values
        fail = self._fail
        if fail is not None and fail.match(data, text, values, client.rng) is not None:
            return self._failed(
                now, "fail_matched", "the reply matched its fail pattern", data, text
            )
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
        self._end(now)

    # -- the machine -----------------------------------------------------------

    def _end(self, now: float) -> None:
        self._state = _OVER
        self.deadline = _INF
        self._expect = self._matcher = self._fail = self._stat = None
        self._post = None
        sub = self._sub
        if sub is not None and not sub.ended:  # the subscription ends with the connection
            client = self.client
            client.rec.fanout.end(sub, now + client.epoch)

    def _idle(self) -> Effects:
        self._state = _IDLE
        self.deadline = _INF
        return EMPTY

    def _begin(self, due: float, now: float, plan: Plan) -> None:
        """Begin an iteration intended at ``due``: a new ``seq``, its steps from the first."""
        client = self.client
        client.seq += 1
        client.values["seq"] = client.seq
        client.scenario.iterations += 1
        client.thought = 0.0
        self._plan, self._pc = plan, 0
        self._due = self._iter_due = self._send_due = due
        self._send_at = now

    def _failed(self, now: float, kind: str, why: str, data: bytes, text: bool) -> Effects:
        """The pending expect failed: counted, and why as an error kind with its first text."""
        self._stat.failed += 1  # type: ignore[union-attr]
        rec = self.client.rec
        rec.failed += 1
        if kind not in rec.error_texts:  # the text is kept once per kind: build it only then
            rec.error(kind, f"{self._expect.name}: {why}: {_excerpt(data, text)}")  # type: ignore[union-attr]
        else:
            rec.error(kind)
        return self._abandon(now)

    def _abandon(self, now: float) -> Effects:
        """The pending expect failed or timed out: end the iteration (setup: the session)."""
        self._expect = self._matcher = self._fail = self._stat = None
        self.deadline = _INF
        self._state = _WORKING
        if self._in_setup:
            self.backoff = True
            self._state = _OVER
            return _CLOSE_NORMAL
        self._pc = len(self._plan)
        self._due = now
        return self._run(now)

    def _run(self, now: float, begun: bool = False) -> Effects:
        """Run steps from the current one until one waits; return what to send.

        At most one iteration begins per call (``begun``: one already did):
        a loop that never waits (no expect, no think, interval 0) then goes
        one iteration per timer call, never round and round in one callback.
        """
        out: list[str | bytes | int | HttpRequest] | None = None
        client = self.client
        while True:
            pc = self._pc
            plan = self._plan
            if pc >= len(plan):
                program = client.program
                if self._in_setup and self._sub is not None and self._sub.subscribed_at is None:
                    self._sub.subscribed_at = now + client.epoch  # the setup is done: subscribed
                if self._in_setup and not program.loop:  # a churn session's iteration is done
                    self._state = _OVER
                    self.deadline = _INF
                    if out is None:
                        return _CLOSE_NORMAL
                    out.append(1000)
                    break
                self._in_setup = False
                # due at its slot, or when the previous one ended, up to its think past it
                due = client.next_start(self._due)
                if due >= self.until or now >= self.until:
                    self._idle()
                    break
                if begun or due > now + TIMER_SLACK:
                    self._iter_due = due
                    self._state = _WAITING
                    # already due (one iteration per call): no timer lateness before now
                    self.deadline = due if due > now else now
                    break
                self._begin(due, now, client.loop_plan)
                begun = True
                continue
            kind, step, stat = plan[pc]
            if kind == K_SEND:
                due = self._due
                if due >= self.until or now >= self.until:
                    self._idle()
                    break
                if self.paused:
                    self._state = _HELD
                    self.deadline = _INF
                    break
                frame = client.render(step, due)
                rec = client.rec
                if step.publish is not None:
                    pub = client.publication(step)
                    if pub is not None:
                        rec.fanout.publish(pub[0], pub[1], due + client.epoch)
                rec.sent += 1
                if type(frame) is bytes or frame.isascii():
                    rec.bytes_sent += len(frame)
                else:
                    rec.bytes_sent += len(frame.encode())  # type: ignore[union-attr]
                if due < now:
                    ready = self._ready  # later than due: the wait was not the generator's
                    if now - (ready if ready > due else due) > BEHIND_SLACK:
                        rec.behind_schedule += 1
                    self._send_due = due
                else:
                    self._send_due = now
                self._send_at = now
                if out is None:
                    out = [frame]
                else:
                    out.append(frame)
                self._pc = pc + 1
            elif kind == K_EXPECT:
                stat.expected += 1  # type: ignore[union-attr]
                client.rec.expected += 1
                self._expect = step
                self._matcher = step.body
                self._fail = step.fail
                self._stat = stat
                self._state = _EXPECTING
                timeout = step.timeout
                self.deadline = now + (timeout if timeout is not None else client.timeout)
                break
            elif kind == K_THINK:
                pause = step.body.sample(client.rng)
                self._due += pause
                client.thought += pause
                self._pc = pc + 1
                if self._due > now + TIMER_SLACK:
                    if self._due >= self.until:
                        self._idle()
                        break
                    self._state = _THINKING
                    self.deadline = self._due
                    break
            elif kind == K_POST:
                due = self._due
                if due >= self.until or now >= self.until:
                    self._idle()
                    break
                request = client.request(step, due)
                self._post = (step, due, client.publication(step))
                self._send_due = due if due < now else now
                self._send_at = now
                self._state = _POSTING
                self.deadline = now + request.timeout
                if out is None:
                    out = [request]
                else:
                    out.append(request)
                break
            else:  # close
                self._state = _OVER
                self.deadline = _INF
                code = int(step.body)
                if out is None:
                    return (code,)
                out.append(code)
                break
        if out is None:
            return EMPTY
        return tuple(out)


def _excerpt(data: bytes, text: bool) -> str:
    """The start of a reply, for an error text: its first 100 characters, or 50 bytes in hex."""
    if text:
        return data[:400].decode(errors="replace")[:100]
    return "0x" + data[:50].hex()


__all__ = ["EMPTY", "Client", "Effects", "HttpRequest", "Session"]

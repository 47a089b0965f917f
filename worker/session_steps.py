"""The step loop of a conversation's session: what runs between two inputs.

:class:`StepMachine` is the part of :class:`wsload.worker.session.Session`
that runs a client's plan from the current step until one waits (an expect,
a think, the next iteration's start, a held send, a post's answer) and
returns the effects, and that abandons an iteration whose expect failed.
Split from the session's inputs only to keep each module readable; the
rules are in :mod:`wsload.worker.session`'s docstring. Sans-I/O like it.
"""

from __future__ import annotations

import json
import math
from typing import Final

from wsload.common.answer import FAIL_PATTERN
from wsload.common.program import Matcher, Step
from wsload.worker.codecs.base import CodecInputError
from wsload.worker.fanout import Subscription
from wsload.worker.recorder import Recorder
from wsload.worker.schedule import BEHIND_SLACK, TIMER_SLACK
from wsload.worker.session_client import (
    K_ENCODE,
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


class StepMachine:
    """The step loop over a session's state (set by :class:`Session`'s constructor)."""

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

    client: Client
    until: float
    deadline: float
    paused: bool
    backoff: bool
    _state: int
    _plan: Plan
    _pc: int
    _in_setup: bool
    _due: float
    _iter_due: float
    _send_due: float
    _send_at: float
    _ready: float
    _expect: Step | None
    _matcher: Matcher | None
    _fail: Matcher | None
    _stat: StepStats | None
    _sub: Subscription | None
    _post: tuple[Step, float, tuple[str, int] | None] | None

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

    def _fail_matched(self, now: float, failed: object, data: bytes, text: bool) -> Effects:
        """The pending expect's ``fail`` matched (an answer's: the protocol's error)."""
        step = self._expect
        assert step is not None
        if not step.answer:
            return self._failed(
                now, step.fail_kind, "the reply matched its fail pattern", data, text
            )
        if failed is FAIL_PATTERN:  # the answer matched the step's own fail pattern
            return self._failed(
                now, "fail_matched", "the answer matched its fail pattern", data, text
            )
        self._stat.failed += 1  # type: ignore[union-attr]
        rec = self.client.rec
        rec.failed += 1
        kind = step.fail_kind
        if kind not in rec.error_texts:
            rec.error(kind, f"{step.name}: {_error_text(failed)}")
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
                # {ts} and a publication's time: when it was due, or when it left if
                # that was earlier (up to TIMER_SLACK): never a time still to come.
                intended = due if due < now else now
                frame = client.render(step, intended)
                rec = client.rec
                if step.publish is not None:
                    pub = client.publication(step)
                    if pub is not None:
                        rec.fanout.publish(pub[0], pub[1], intended + client.epoch)
                rec.sent += 1
                if type(frame) is bytes or frame.isascii():
                    rec.bytes_sent += len(frame)
                else:
                    rec.bytes_sent += len(frame.encode())  # type: ignore[union-attr]
                if due < now:
                    ready = self._ready  # later than due: the wait was not the generator's
                    if now - (ready if ready > due else due) > BEHIND_SLACK:
                        rec.behind_schedule += 1
                self._send_due = intended
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
                intended = due if due < now else now
                request = client.request(step, intended)
                self._post = (step, intended, client.publication(step))
                self._send_due = intended
                self._send_at = now
                self._state = _POSTING
                self.deadline = now + request.timeout
                if out is None:
                    out = [request]
                else:
                    out.append(request)
                break
            elif kind == K_ENCODE:  # a protocol's step: the codec makes its frames
                due = self._due
                if due >= self.until or now >= self.until:
                    self._idle()
                    break
                if self.paused:
                    self._state = _HELD
                    self.deadline = _INF
                    break
                intended = due if due < now else now
                rec = client.rec
                try:
                    frames = client.encode(step, intended)
                except Exception as exc:  # a value the codec cannot send (or the codec's bug)
                    _encode_failed(rec, step, exc)
                    if self._in_setup:  # the session cannot go on: reconnect after the backoff
                        self.backoff = True
                        self._state = _OVER
                        self.deadline = _INF
                        if out is None:
                            return _CLOSE_NORMAL
                        out.append(1000)
                        break
                    self._pc = len(plan)  # the iteration is abandoned
                    self._due = now
                    continue
                if step.publish is not None:
                    pub = client.publication(step)
                    if pub is not None:
                        rec.fanout.publish(pub[0], pub[1], intended + client.epoch)
                rec.sent += 1  # one message, however many frames carry it
                for frame in frames:
                    if type(frame) is bytes or frame.isascii():
                        rec.bytes_sent += len(frame)
                    else:
                        rec.bytes_sent += len(frame.encode())  # type: ignore[union-attr]
                if due < now:
                    ready = self._ready
                    if now - (ready if ready > due else due) > BEHIND_SLACK:
                        rec.behind_schedule += 1
                self._send_due = intended
                self._send_at = now
                if out is None:
                    out = list(frames)
                else:
                    out.extend(frames)
                self._pc = pc + 1
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


def _encode_failed(rec: Recorder, step: Step, exc: Exception) -> None:
    """A protocol step the codec did not encode: ``bad_step_value`` (a template rendered
    what the codec cannot send), or ``codec_error`` (anything else it raised)."""
    if isinstance(exc, CodecInputError):
        kind, text = "bad_step_value", f"{step.name}: {exc}"
    else:
        kind, text = "codec_error", f"{step.name}: {type(exc).__name__}: {exc}"
    if kind not in rec.error_texts:
        rec.error(kind, text[:300])
    else:
        rec.error(kind)


def _error_text(error: object) -> str:
    """An answer's error for its text: a string as it is, anything else as compact JSON."""
    if isinstance(error, str):
        return error[:200]
    try:
        return json.dumps(error, separators=(",", ":"), ensure_ascii=False)[:200]
    except (TypeError, ValueError, RecursionError):
        return repr(error)[:200]


def _excerpt(data: bytes, text: bool) -> str:
    """The start of a reply, for an error text: its first 100 characters, or 50 bytes in hex."""
    if text:
        return data[:400].decode(errors="replace")[:100]
    return "0x" + data[:50].hex()


__all__ = ["EMPTY", "Effects", "StepMachine"]

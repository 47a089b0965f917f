"""A conversation's client over its connections, and its program compiled to plans.

:class:`Client` is a client of the job (its number ``g`` over every worker):
its variables (``client_id``, its feeder row, what it captured), its
iteration counter ``seq`` (which carries over its connections), its rng
(seeded from ``g``: a run is reproducible per client) and its pacing of
iterations. Each connection of it is a :class:`wsload.worker.session.Session`,
which runs the client's plans: a program part's steps with what each does
as a small int (cheaper on the hot path than testing its action) and, for
an expect, its step's stats, looked up once per client instead of per reply.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urljoin

from wsload.common.answer import ANSWER_VAR, AnswerError, AnswerMatcher
from wsload.common.program import Action, HttpPost, Matcher, Program, Step
from wsload.worker.codecs.base import Codec, CodecInputError, Frame
from wsload.worker.fanout import MAX_TOPIC, Reader, Subscription
from wsload.worker.pacing import Pacing
from wsload.worker.recorder import Recorder
from wsload.worker.steprec import ScenarioStats, StepRecorder, StepStats

#: what a step does, as a small int (a plan's first item): cheaper to test than its action
K_SEND = 0
K_EXPECT = 1
K_THINK = 2
K_CLOSE = 3
K_POST = 4
K_ENCODE = 5  #: a step of a protocol program the codec encodes (a send, emit, subscribe...)
#: what :meth:`Client.unexpected` returns: no effect (the session's EMPTY)
EmptyT = tuple[()]
#: a program part's steps, ready to run: (kind, step, its stats for an expect)
Plan = tuple[tuple[int, Step, StepStats | None], ...]


def plan_steps(steps: tuple[Step, ...], steprec: StepRecorder, protocol: bool = False) -> Plan:
    """The steps as a plan; ``protocol``: the program speaks a protocol (its sends are encoded).

    A step that waits for the protocol's answer runs as its send
    (``K_ENCODE``) then an expect of the answer (:func:`answer_step`), both
    under the step's name and stats.
    """
    out: list[tuple[int, Step, StepStats | None]] = []
    for step in steps:
        if protocol and step.action not in _NOT_ENCODED:
            out.append((K_ENCODE, step, None))
            if step.answer:
                out.append((K_EXPECT, answer_step(step), steprec.step(step.name)))
        elif step.expects:
            out.append((K_EXPECT, step, steprec.step(step.name)))
        elif step.action is Action.THINK:
            out.append((K_THINK, step, None))
        elif step.action is Action.CLOSE:
            out.append((K_CLOSE, step, None))
        elif step.action is Action.POST:
            out.append((K_POST, step, None))
        else:
            out.append((K_SEND, step, None))
    return tuple(out)


#: the steps of a protocol program that its codec does not encode
_NOT_ENCODED = frozenset(
    {Action.EXPECT, Action.EXPECT_REGEX, Action.EXPECT_BINARY, Action.THINK, Action.CLOSE}
    | {Action.POST}
)


def answer_step(step: Step) -> Step:
    """The expect half of a step that waits for its answer: the answer to the key it sent."""
    return replace(
        step,
        action=Action.EXPECT,
        body=AnswerMatcher(parse=bool(step.capture)),
        fail=AnswerError(step.fail),
    )


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A ``post`` step's effect: the engine performs it and answers :meth:`Session.on_http`."""

    method: str
    url: str
    body: bytes | None
    content_type: str
    timeout: float


def reader_for(program: Program) -> Reader | None:
    """The program's delivery reader (one per program: the engine shares it over clients)."""
    d = program.deliveries
    return None if d is None else Reader(d)


_SEND_BINARY = Action.SEND_BINARY
#: the rng a late reply is matched with (an expect with random values never
#: matches anew anyway): the client's own draws stay what they would be
_LATE_RNG = random.Random(0)


class Client:
    """A client of the job: its variables, rng, iteration counter and pacing, over connections.

    ``number`` is the job-wide client number (``g``); ``values`` the
    template variables (``client_id``, ``pad``, its feeder row's columns;
    captures are added as they happen); ``epoch`` converts the monotonic
    clock to epoch seconds for ``{ts}`` (``time.time() - time.monotonic()``);
    ``timeout`` is the job's reply timeout (an expect's default). ``rec`` and
    ``steprec`` receive the counters. ``late``: the last expect that timed
    out, while its reply may still come (see :meth:`took_late`).
    ``thought``: the think time the current iteration scripted so far.
    """

    __slots__ = (
        "api_url",
        "codec",
        "epoch",
        "late",
        "loop_plan",
        "number",
        "pacing",
        "program",
        "reader",
        "rec",
        "rng",
        "scenario",
        "seq",
        "setup_plan",
        "thought",
        "timeout",
        "values",
    )

    def __init__(
        self,
        number: int,
        program: Program,
        *,
        rec: Recorder,
        steprec: StepRecorder,
        pacing: Pacing,
        client_id: str | None = None,
        row: Mapping[str, str] | None = None,
        pad: str = "",
        epoch: float = 0.0,
        timeout: float = 5.0,
        seed: int = 0,
        api_url: str = "",
        reader: Reader | None = None,
    ) -> None:
        self.number = number
        self.program = program
        self.rec = rec
        self.pacing = pacing
        self.epoch = epoch
        self.timeout = timeout
        self.rng = random.Random(seed * 1_000_003 + number)
        self.seq = 0
        self.thought = 0.0  # think time the current iteration scripted so far
        values: dict[str, Any] = dict(row or {})
        values["client_id"] = client_id if client_id is not None else f"client-{number}"
        values["pad"] = pad
        values["seq"] = 0
        values["ts"] = 0.0
        self.values = values
        self.scenario: ScenarioStats = steprec.scenario(program.name)
        protocol = program.protocol is not None
        self.setup_plan = plan_steps(program.setup, steprec, protocol)
        self.loop_plan = plan_steps(program.loop, steprec, protocol)
        #: the current connection's protocol codec (None: raw frames; set per connection
        #: by :class:`wsload.worker.protocol_session.ProtocolSession`)
        self.codec: Codec | None = None
        self.late: tuple[Matcher, dict[str, Any], int] | None = None
        self.api_url = api_url
        #: reads deliveries (None: this client subscribes to nothing)
        self.reader = reader if reader is not None else reader_for(program)

    def subscription(self) -> Subscription:
        """A connection's subscription: its topics rendered (``topics``, or the one default)."""
        d = self.program.deliveries
        assert d is not None
        topics = tuple(str(t.render(self.values, self.rng))[:MAX_TOPIC] for t in d.topics)
        if not topics and d.topic is None:
            topics = ("default",)
        return Subscription(self.number, topics, self.reader, self.rec, self.epoch)

    def publication(self, step: Step) -> tuple[str, int] | None:
        """The (topic, seq) a publishing step's message is, or None (no ``publish``; not an int)."""
        pub = step.publish
        if pub is None:
            return None
        seq = pub.seq.render(self.values, self.rng)
        if isinstance(seq, str) and seq.lstrip("-").isdigit():
            seq = int(seq)
        if type(seq) is not int:
            return None
        return str(pub.topic.render(self.values, self.rng))[:MAX_TOPIC], seq

    def request(self, step: Step, due: float) -> HttpRequest:
        """A ``post`` step's HTTP request, ``{ts}`` being ``due``; a table body goes as JSON."""
        post: HttpPost = step.body
        values = self.values
        values["ts"] = due + self.epoch
        url = str(post.url.render(values, self.rng))
        if self.api_url and "://" not in url:
            url = urljoin(self.api_url, url)
        body: bytes | None = None
        kind = "text/plain; charset=utf-8"
        if post.body is not None:
            value = post.body.render(values, self.rng)
            if isinstance(value, str):
                body = value.encode()
            elif isinstance(value, bytes | bytearray):
                body, kind = bytes(value), "application/octet-stream"
            else:
                body = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
                kind = "application/json"
        timeout = step.timeout if step.timeout is not None else self.timeout
        return HttpRequest(post.method, url, body, kind, timeout)

    def next_start(self, now: float) -> float:
        """When the next iteration is due (for a churn client: when to connect for it).

        ``now``: when the previous iteration ended; the think it scripted
        (:attr:`thought`) may postpone its grid slot (:meth:`Pacing.next_start`).
        """
        return self.pacing.next_start(now, self.thought)

    def render(self, step: Step, due: float) -> str | bytes:
        """A send step's frame, ``{ts}`` being ``due`` (epoch seconds); a table goes as JSON."""
        body = step.body
        if step.action is _SEND_BINARY:
            return bytes(body)
        values = self.values
        values["ts"] = due + self.epoch
        value = body.render(values, self.rng)
        if isinstance(value, str):
            return value
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    def encode(self, step: Step, due: float) -> list[Frame]:
        """A protocol step's frames (the codec's), ``{ts}`` being ``due``.

        A step that waits for its answer leaves the answer's key in
        ``values[ANSWER_VAR]``. Raises :class:`CodecInputError` for a value
        the codec cannot send (a template rendered the wrong type).
        """
        codec = self.codec
        assert codec is not None
        values = self.values
        values["ts"] = due + self.epoch
        body = step.body
        if step.action is _SEND_BINARY:
            value: Any = bytes(body)
        else:
            value = body.render(values, self.rng) if body is not None else None
        frames, key = codec.encode(step.action, value, step.answer)
        if step.answer:
            if key is None:
                raise CodecInputError(f"the {codec.name} codec gave no answer key for it")
            values[ANSWER_VAR] = key
        return frames

    def unexpected(self, sub: Subscription | None, now: float, data: bytes, text: bool) -> EmptyT:
        """A message no pending expect took: a delivery, a late reply, or unsolicited.

        A delivery before the connection's subscription exists (never: it is
        made at connect) counts nowhere; one before the setup is done counts
        on the subscription (the coordinator calls it early).
        """
        reader = self.reader
        if reader is not None and reader.take(
            data, text, self.values, self.rng, sub, self.rec.fanout, now + self.epoch
        ):
            return ()
        if self.late is None or not self.took_late(data, text):
            self.rec.unsolicited += 1
            self.scenario.unsolicited += 1
        return ()

    def answered(
        self,
        step: Step,
        due: float,
        pub: tuple[str, int] | None,
        status: int,
        error: str | None,
        text: str,
    ) -> bool:
        """A post step's answer: 2xx records its publication (True); else the error kind."""
        if error is None and 200 <= status < 300:
            if pub is not None:
                self.rec.fanout.publish(pub[0], pub[1], due + self.epoch)
            return True
        kind = error or f"http_{status}"
        rec = self.rec
        if kind not in rec.error_texts:
            rec.error(kind, f"{step.name}: {text or f'HTTP {status}'}")
        else:
            rec.error(kind)
        return False

    def timed_out(self, matcher: Matcher) -> None:
        """An expect timed out: remember its matcher and the values it was waiting with.

        A copy of the values (on this slow path only): the next iteration
        changes ``seq`` and may capture anew, and the late reply must be
        matched as the expect would have matched it.
        """
        self.late = (matcher, dict(self.values), self.seq)

    def took_late(self, data: bytes, text: bool) -> bool:
        """Is this message (that no pending expect took) the reply to the last timed-out one?

        Tested only while that expect's iteration or the next one runs (a
        client with no recent timeout never gets here: the caller tests
        :attr:`late` first), at most once per timed-out expect. True:
        counted ``late``. The match renders with its own rng, so the
        client's stream of random values stays what it would have been.
        """
        matcher, values, seq = self.late  # type: ignore[misc]
        if self.seq - seq > 1:  # two iterations on: no longer looked for
            self.late = None
            return False
        if matcher.match(data, text, values, _LATE_RNG) is None:
            return False
        self.late = None  # one reply per expect
        self.rec.late += 1
        return True


__all__ = [
    "K_CLOSE",
    "K_ENCODE",
    "K_EXPECT",
    "K_POST",
    "K_SEND",
    "K_THINK",
    "Client",
    "HttpRequest",
    "Plan",
    "answer_step",
    "plan_steps",
    "reader_for",
]

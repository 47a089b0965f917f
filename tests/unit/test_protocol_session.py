"""A conversation through a protocol codec (worker/protocol_session.py), with a fake clock.

The codec is a toy defined here (:class:`ToyCodec`, a line protocol over text
frames) so that what is under test is the session's side of the contract in
worker/codecs/base.py, whatever the real protocols do: the handshake held
before the steps and bounded, housekeeping answered and never counted as
messages, answers matched by key (met, failed by the protocol's error, timed
out then late), fatal and non-fatal failures, the codec's timers, goodbye
frames, and bad step values. The integration test
(tests/integration/test_protocol_core.py) runs the same codec on both engines.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from wsload.common.answer import ANSWER_VAR, AnswerError, AnswerMatcher
from wsload.common.match import parse_json
from wsload.common.program import Action, Deliveries, Program, ProtocolSpec, Step, Think
from wsload.worker.codecs.base import (
    NOTHING,
    AnswerKey,
    Codec,
    CodecInputError,
    Failure,
    Frame,
    Message,
    Received,
)
from wsload.worker.pacing import Pacing
from wsload.worker.protocol_session import (
    HANDSHAKE_CLOSE,
    ProtocolSession,
    opening,
    session_for,
)
from wsload.worker.recorder import Recorder
from wsload.worker.session import EMPTY, Client, Session
from wsload.worker.session_client import K_ENCODE, K_EXPECT, plan_steps
from wsload.worker.steprec import StepRecorder

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class ToyCodec(Codec):
    """A line protocol, text frames only.

    Client -> server: ``HELLO <name>`` (the handshake), ``SEND <json>``,
    ``REQ <id> <json>`` (a request that wants its answer; a value with
    ``parts`` goes as ``PART <p>`` frames first), ``PING`` (keep-alive),
    ``PONG``, ``QUIT`` (goodbye). Server -> client: ``WELCOME`` (ready),
    ``MSG <json>`` (a push), ``ACK <id> <json>`` (an answer), ``ERR <id>
    <text>`` (an error answer), ``PING`` (answered ``PONG``), ``PONG``
    (swallowed), ``WARN <text>`` (counted, not fatal), ``BYE`` (fatal, 1000);
    anything else is a fatal ``protocol_error``. Options: ``name``,
    ``instant`` (ready at open), ``keepalive`` (seconds between PINGs; a PING
    unanswered at the next one sets :attr:`failure`: ``toy_timeout``).
    """

    name: ClassVar[str] = "toy"
    subprotocol: ClassVar[str | None] = "toy.v1, toy.v0"
    verbs: ClassVar[frozenset[Action]] = frozenset({Action.SEND, Action.EMIT})

    def __init__(self, options: Mapping[str, Any], max_message_size: int = 1 << 20) -> None:
        super().__init__(options, max_message_size)
        self.next_id = 1
        self.keepalive = float(options.get("keepalive", 0))
        self.ping_out = False
        self.last_parsed: Any = None

    @staticmethod
    def url(ws_url: str, options: Mapping[str, Any]) -> str:
        return ws_url.rstrip("/") + "/toy"

    def open(self, now: float) -> list[Frame]:
        if self.keepalive:
            self.deadline = now + self.keepalive
        if self.options.get("instant"):
            self.ready = True
            return []
        return [f"HELLO {self.options.get('name', 'anon')}"]

    def receive(self, now: float, data: bytes, text: bool) -> Received:
        line = data.decode()
        verb, _, rest = line.partition(" ")
        if verb == "WELCOME":
            self.ready = True
            return NOTHING
        if verb == "PING":
            return Received(replies=["PONG"])
        if verb == "PONG":
            self.ping_out = False
            return NOTHING
        if verb == "MSG":
            value = self.last_parsed = json.loads(rest)
            return Received(messages=[Message(_view(value), value)])
        if verb == "ACK":
            key, _, body = rest.partition(" ")
            value = {"answer": int(key), "data": json.loads(body)}
            return Received(messages=[Message(_view(value))])  # not parsed: the session parses
        if verb == "ERR":
            key, _, why = rest.partition(" ")
            value = {"answer": int(key), "error": why}
            return Received(messages=[Message(_view(value), value)])
        if verb == "WARN":
            return Received(failure=Failure("toy_warn", rest, fatal=False))
        if verb == "BYE":
            return Received(failure=Failure("toy_bye", "the server said bye", close_code=1000))
        return Received(failure=Failure("protocol_error", f"not toy: {line[:40]}"))

    def encode(
        self, action: Action, value: Any, answer: bool
    ) -> tuple[list[Frame], AnswerKey | None]:
        if not isinstance(value, dict):
            raise CodecInputError(f"{action} wants a table, not {type(value).__name__}")
        frames: list[Frame] = [f"PART {p}" for p in value.pop("parts", [])]
        if not answer:
            return [*frames, "SEND " + json.dumps(value)], None
        key = self.next_id
        self.next_id += 1
        return [*frames, f"REQ {key} {json.dumps(value)}"], key

    def on_timer(self, now: float) -> list[Frame]:
        if now < self.deadline:
            return []
        self.deadline = now + self.keepalive
        if self.ping_out:
            self.failure = Failure("toy_timeout", "no PONG", close_code=1000)
            self.deadline = float("inf")
            return []
        self.ping_out = True
        return ["PING"]

    def goodbye(self) -> list[Frame]:
        return ["QUIT"] if self.ready else []


def _view(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class Table:
    """A table template: string values are ``{name}`` templates; a one-placeholder string
    takes the value's own type."""

    def __init__(self, **fields: Any) -> None:
        self.fields = fields

    def render(self, values: Mapping[str, Any], rng: random.Random) -> Any:
        out: dict[str, Any] = {}
        for k, v in self.fields.items():
            if isinstance(v, str):
                whole = _PLACEHOLDER.fullmatch(v)
                v = (
                    values[whole.group(1)]
                    if whole
                    else _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), v)
                )
            out[k] = v
        return out


class Const:
    def __init__(self, value: Any) -> None:
        self.value = value

    def render(self, values: Mapping[str, Any], rng: random.Random) -> Any:
        return self.value


class Push:
    """A matcher of a push view: ``{"event": name}`` in the parsed view."""

    def __init__(self, event: str) -> None:
        self.event = event
        self.seen: list[Any] = []

    def match(self, data: bytes, text: bool, values: Mapping[str, Any], rng: random.Random) -> Any:
        parsed = parse_json(data)
        self.seen.append(parsed)
        return parsed if isinstance(parsed, dict) and parsed.get("event") == self.event else None


class Has:
    """A matcher of any message holding these bytes."""

    def __init__(self, needle: bytes) -> None:
        self.needle = needle

    def match(self, data: bytes, text: bool, values: Mapping[str, Any], rng: random.Random) -> Any:
        return data if self.needle in data else None


def emit(number: int, name: str, answer: bool = True, **kw: Any) -> Step:
    timeout = kw.pop("timeout", None)
    capture = kw.pop("capture", ())
    return Step(
        number,
        name,
        Action.EMIT,
        Table(**kw),
        timeout=timeout,
        capture=capture,
        answer=answer,
        fail_kind="toy_error",
    )


TOY = ProtocolSpec("toy", Const({"name": "c{client_id}"}))


def program(setup: tuple[Step, ...], loop: tuple[Step, ...], **kw: Any) -> Program:
    return Program("toy", setup, loop, protocol=kw.pop("protocol", TOY), **kw)


class Rig:
    """One client of ``program`` through a ToyCodec with ``options``."""

    def __init__(self, prog: Program, period: float = 0.0, **options: Any) -> None:
        self.rec = Recorder()
        self.steprec = StepRecorder()
        self.client = Client(
            7, prog, rec=self.rec, steprec=self.steprec, pacing=Pacing(period), timeout=2.0
        )
        self.options = options

    def session(self, until: float = float("inf"), handshake: float = 5.0) -> ProtocolSession:
        return ProtocolSession(self.client, ToyCodec(self.options), until, handshake)

    def step(self, name: str) -> dict[str, int]:
        return {k: v for k, v in self.steprec.totals()[name].items() if v}

    def counters(self, *names: str) -> dict[str, int]:
        c = self.rec.totals()
        return {n: c[n] for n in names}

    def assert_identity(self) -> None:
        c = self.rec.totals()
        resolved = c["received"] + c["timed_out"] + c["failed"] + c["lost"] + c["unanswered"]
        assert c["expected"] == resolved, c
        for name, s in self.steprec.totals().items():
            assert s["expected"] == sum(s[k] for k in s if k != "expected"), (name, s)


MESSAGES = ("sent", "received", "unsolicited", "expected", "late")
CHAT_LOOP = program((), (emit(1, "chat", event="chat", n="{seq}"),))


def test_the_steps_wait_for_the_handshake_which_is_no_message() -> None:
    rig = Rig(CHAT_LOOP)
    s = rig.session()
    assert s.start(1.0) == ("HELLO anon",)
    assert not s.pending
    assert not s.over
    assert s.deadline == 6.0  # the handshake's bound
    assert s.on_message(1.5, b"PING", True) == ("PONG",)  # housekeeping: answered at once
    out = s.on_message(2.0, b"WELCOME", True)  # ready: the loop's first iteration goes
    assert out == ('REQ 1 {"event": "chat", "n": 1}',)
    assert s.pending
    assert s.deadline == 4.0  # the answer's timeout (2 s), no longer the handshake's
    assert rig.counters(*MESSAGES) == {
        "sent": 1, "received": 0, "unsolicited": 0, "expected": 1, "late": 0,
    }  # fmt: skip
    # the wire's bytes: HELLO anon (10) + PONG (4) + the request; PING (4) + WELCOME (7)
    assert rig.rec.bytes_sent == 10 + 4 + len(out[0])
    assert rig.rec.bytes_received == 4 + 7


def test_an_answer_is_matched_by_its_key_with_latency_from_the_due_time() -> None:
    rig = Rig(CHAT_LOOP, period=1.0, instant=True)
    s = rig.session()
    assert s.start(10.0) == ('REQ 1 {"event": "chat", "n": 1}',)  # ready at open
    # a push and another key's answer are not this answer
    assert s.on_message(10.1, b'MSG {"event": "news"}', True) == EMPTY
    assert s.on_message(10.2, b'ACK 9 {"x": 1}', True) == EMPTY
    assert s.pending
    assert s.on_message(10.25, b'ACK 1 {"ok": true}', True) == EMPTY  # next iteration at 11
    assert list(rig.steprec.steps["chat"].latency) == [250_000]
    assert s.deadline == 11.0
    assert s.on_timer(11.0) == ('REQ 2 {"event": "chat", "n": 2}',)
    assert s.on_message(11.1, b"ACK 2 {}", True) == EMPTY
    assert rig.step("chat") == {"expected": 2, "met": 2}
    bytes_in = sum(len(m) for m in [b'MSG {"event": "news"}', b'ACK 9 {"x": 1}'])
    bytes_in += len(b'ACK 1 {"ok": true}') + len(b"ACK 2 {}")
    assert rig.rec.bytes_received == bytes_in  # the wire's, not the views'
    assert rig.counters(*MESSAGES) == {
        "sent": 2, "received": 2, "unsolicited": 2, "expected": 2, "late": 0,
    }  # fmt: skip
    rig.assert_identity()


def test_a_timed_out_answer_that_comes_later_counts_late() -> None:
    loop = (
        emit(1, "chat", event="chat", timeout=1.0),
        Step(2, "t", Action.THINK, Think("fixed", 0.5)),
    )
    rig = Rig(program((), loop), instant=True)
    s = rig.session()
    assert s.start(0.0) == ('REQ 1 {"event": "chat"}',)
    assert s.on_timer(1.0) == ('REQ 2 {"event": "chat"}',)  # timed out: the next iteration
    assert rig.client.values[ANSWER_VAR] == 2
    assert s.on_message(1.1, b"ACK 1 {}", True) == EMPTY  # the timed-out one: late
    assert s.on_message(1.2, b"ACK 1 {}", True) == EMPTY  # once per expect: now unsolicited
    assert s.on_message(1.3, b"ACK 2 {}", True) == EMPTY
    assert rig.step("chat") == {"expected": 2, "met": 1, "timed_out": 1}
    assert rig.counters(*MESSAGES) == {
        "sent": 2, "received": 1, "unsolicited": 1, "expected": 2, "late": 1,
    }  # fmt: skip
    rig.assert_identity()


def test_an_error_answer_fails_the_step_with_its_kind_and_text() -> None:
    loop = (emit(1, "chat", event="chat"), emit(2, "after", event="after"))
    rig = Rig(program((), loop, interval=0.0), instant=True)
    s = rig.session()
    s.start(0.0)
    # another key's error is not this step's; this key's is
    assert s.on_message(0.1, b"ERR 5 nope", True) == EMPTY
    # the iteration ends; the next one begins at once (interval 0)
    assert s.on_message(0.2, b"ERR 1 no such room", True) == ('REQ 2 {"event": "chat"}',)
    assert rig.step("chat") == {"expected": 2, "failed": 1}
    assert rig.step("after") == {}  # skipped: counted nowhere
    assert rig.rec.errors == {"toy_error": 1}
    assert rig.rec.error_texts["toy_error"] == "chat: no such room"
    assert s.on_message(0.3, b"ACK 2 {}", True) == ('REQ 3 {"event": "after"}',)
    s.stop(0.4)  # the pending one: unanswered
    assert rig.step("after") == {"expected": 1, "unanswered": 1}
    rig.assert_identity()


def test_a_setup_answer_that_fails_ends_the_session_with_a_goodbye_and_backoff() -> None:
    setup = (emit(1, "join", event="join"),)
    rig = Rig(program(setup, CHAT_LOOP.loop), instant=True)
    s = rig.session()
    assert s.start(0.0) == ('REQ 1 {"event": "join"}',)
    assert s.on_message(0.1, b"ERR 1 full", True) == ("QUIT", 1000)  # goodbye, then close
    assert s.over
    assert s.backoff
    assert s.goodbye() == EMPTY  # said once
    assert rig.rec.bytes_sent == len('REQ 1 {"event": "join"}') + len("QUIT")
    assert rig.counters("sent") == {"sent": 1}  # the goodbye is no message


def test_a_capture_reads_the_answer_view() -> None:
    setup = (emit(1, "login", event="login", capture=(("token", "data.token"),)),)
    loop = (emit(2, "use", answer=False, event="use", token="{token}"),)
    rig = Rig(program(setup, loop, interval=1.0), instant=True)
    s = rig.session()
    s.start(0.0)
    out = s.on_message(0.1, b'ACK 1 {"token": "t-42"}', True)
    assert out == ('SEND {"event": "use", "token": "t-42"}',)
    assert rig.step("login") == {"expected": 1, "met": 1}


def test_a_fatal_failure_closes_with_its_code_the_pending_answer_lost() -> None:
    rig = Rig(CHAT_LOOP, instant=True)
    s = rig.session()
    s.start(0.0)
    assert s.on_message(0.1, b"WARN slow down", True) == EMPTY  # counted, goes on
    assert s.pending
    assert s.on_message(0.2, b"BYE", True) == (1000,)  # no goodbye after a failure
    assert s.over
    assert s.backoff
    assert s.deadline == float("inf")
    assert s.on_message(0.3, b"ACK 1 {}", True) == EMPTY  # closing: not read
    s.on_closed(0.4)  # the engine's: nothing counted twice
    assert rig.step("chat") == {"expected": 1, "lost": 1}
    assert rig.rec.errors == {"toy_warn": 1, "toy_bye": 1}
    assert rig.rec.error_texts["toy_warn"] == "slow down"
    assert s.goodbye() == EMPTY
    rig.assert_identity()


def test_garbage_is_a_protocol_error_never_a_traceback() -> None:
    rig = Rig(CHAT_LOOP)
    s = rig.session()
    s.start(0.0)
    assert s.on_message(0.1, b"HTTP/1.1 200 OK", True) == (1002,)
    assert s.over
    assert s.backoff
    assert rig.rec.errors == {"protocol_error": 1}
    assert rig.counters(*MESSAGES) == dict.fromkeys(MESSAGES, 0)


def test_a_handshake_that_does_not_come_times_out() -> None:
    rig = Rig(CHAT_LOOP)
    s = rig.session(handshake=3.0)
    s.start(1.0)
    assert s.on_timer(3.9) == EMPTY  # early
    assert s.on_timer(4.0) == (HANDSHAKE_CLOSE,)
    assert s.over
    assert s.backoff
    assert rig.rec.errors == {"handshake_timeout": 1}
    assert "toy" in rig.rec.error_texts["handshake_timeout"]
    assert rig.counters(*MESSAGES) == dict.fromkeys(MESSAGES, 0)
    assert rig.step("chat") == {}


def test_a_run_that_ends_during_the_handshake_says_so() -> None:
    """The run ends before the handshake's timeout: ``handshake_unfinished`` says why
    nothing was sent (a server that speaks another protocol, a long connect timeout)."""
    rig = Rig(CHAT_LOOP)
    s = rig.session(handshake=10.0)
    s.start(1.0)
    s.stop(2.0)
    assert rig.rec.errors == {"handshake_unfinished": 1}
    assert "toy" in rig.rec.error_texts["handshake_unfinished"]
    done = Rig(CHAT_LOOP)  # a handshake that finished: nothing to say at the end
    t = done.session()
    t.start(1.0)
    t.on_message(1.1, b"WELCOME", True)
    t.stop(2.0)
    assert "handshake_unfinished" not in done.rec.errors


def test_the_codecs_keepalive_runs_beside_the_steps_and_its_failure_counts_once() -> None:
    loop = (emit(1, "chat", event="chat", timeout=10.0),)
    rig = Rig(program((), loop), instant=True, keepalive=3.0)
    s = rig.session()
    s.start(0.0)
    assert s.deadline == 3.0  # the keep-alive before the answer's timeout (10)
    assert s.on_timer(3.0) == ("PING",)
    assert s.pending  # the step still waits
    assert s.on_message(3.1, b"PONG", True) == EMPTY  # swallowed: no message
    assert s.on_timer(6.0) == ("PING",)
    assert s.on_message(6.5, b"ACK 1 {}", True) == ('REQ 2 {"event": "chat"}',)
    assert s.on_timer(9.0) == (1000,)  # the PING of 6.0 had no PONG: the codec's failure
    assert s.over
    assert s.backoff
    assert s.on_timer(12.0) == EMPTY
    assert rig.rec.errors == {"toy_timeout": 1}
    assert rig.step("chat") == {"expected": 2, "met": 1, "lost": 1}
    assert rig.counters(*MESSAGES) == {
        "sent": 2, "received": 1, "unsolicited": 0, "expected": 2, "late": 0,
    }  # fmt: skip
    rig.assert_identity()


def test_a_stopped_session_says_goodbye_once() -> None:
    rig = Rig(CHAT_LOOP, instant=True)
    s = rig.session()
    s.start(0.0)
    s.stop(0.5)
    assert s.over
    assert s.goodbye() == ("QUIT",)
    assert s.goodbye() == EMPTY
    assert rig.step("chat") == {"expected": 1, "unanswered": 1}
    handshaking = Rig(CHAT_LOOP).session()  # never ready: nothing to say goodbye to
    handshaking.start(0.0)
    handshaking.stop(0.1)
    assert handshaking.goodbye() == EMPTY


def test_a_churn_session_says_goodbye_before_its_close() -> None:
    rig = Rig(program((emit(1, "once", event="once"),), ()), instant=True)
    s = rig.session()
    s.start(0.0, due=0.0)
    assert s.on_message(0.1, b"ACK 1 {}", True) == ("QUIT", 1000)
    assert s.over
    assert not s.backoff


def test_a_multi_frame_step_is_one_message() -> None:
    loop = (emit(1, "chat", event="chat", parts=["a", "bb"]),)
    rig = Rig(program((), loop), instant=True)
    s = rig.session()
    out = s.start(0.0)
    assert out == ("PART a", "PART bb", 'REQ 1 {"event": "chat"}')
    assert rig.rec.sent == 1
    assert rig.rec.bytes_sent == sum(len(f) for f in out)  # type: ignore[arg-type]


def test_a_value_the_codec_cannot_send_is_an_error_kind() -> None:
    bad = Step(1, "bad", Action.EMIT, Const("not a table"), answer=True, fail_kind="toy_error")
    ok = emit(2, "ok", event="ok")
    rig = Rig(program((), (bad, ok)), period=1.0, instant=True)
    s = rig.session()
    assert s.start(0.0) == EMPTY  # the iteration is abandoned: nothing sent
    assert rig.rec.errors == {"bad_step_value": 1}
    assert rig.rec.error_texts["bad_step_value"] == "bad: emit wants a table, not str"
    assert s.deadline == 1.0
    assert not s.over
    assert rig.counters(*MESSAGES) == dict.fromkeys(MESSAGES, 0)
    in_setup = Rig(program((bad,), (ok,)), instant=True)
    s2 = in_setup.session()
    assert s2.start(0.0) == ("QUIT", 1000)  # a setup that cannot run: reconnect after backoff
    assert s2.over
    assert s2.backoff


def test_a_view_the_codec_parsed_is_not_parsed_again() -> None:
    push = Push("news")
    setup = (Step(1, "news", Action.EXPECT, push),)
    rig = Rig(program(setup, CHAT_LOOP.loop), instant=True)
    s = rig.session()
    s.start(0.0)
    out = s.on_message(0.1, b'MSG {"event": "news"}', True)
    assert out == ('REQ 1 {"event": "chat", "n": 1}',)
    assert rig.step("news") == {"expected": 1, "met": 1}
    assert push.seen[0] is s.codec.last_parsed  # type: ignore[attr-defined]


def test_a_paused_session_holds_its_step_until_resumed() -> None:
    rig = Rig(CHAT_LOOP)
    s = rig.session()
    s.paused = True
    s.start(0.0)
    assert s.on_message(0.1, b"WELCOME", True) == EMPTY  # held: the target does not read
    assert s.resume(0.3) == ('REQ 1 {"event": "chat", "n": 1}',)
    assert not s.paused


def test_a_drained_session_waits_for_its_answer_and_sends_nothing_new() -> None:
    rig = Rig(CHAT_LOOP, period=1.0, instant=True)
    s = rig.session()
    s.start(0.0)
    s.drain(0.5)
    assert s.awaiting
    assert s.on_message(0.6, b"ACK 1 {}", True) == EMPTY
    assert not s.awaiting
    assert rig.counters("sent", "received") == {"sent": 1, "received": 1}


def test_an_answer_step_is_planned_as_a_send_then_an_expect_of_the_answer() -> None:
    step = emit(1, "chat", event="chat", capture=(("x", "data"),))
    plan = plan_steps((step,), StepRecorder(), protocol=True)
    assert [k for k, _, _ in plan] == [K_ENCODE, K_EXPECT]
    expect = plan[1][1]
    assert expect.name == "chat"
    assert expect.fail_kind == "toy_error"
    assert isinstance(expect.body, AnswerMatcher)
    assert isinstance(expect.fail, AnswerError)
    values = {ANSWER_VAR: 12}
    rng = random.Random(0)
    assert expect.body.match(b'{"answer":12,"data":1}', True, values, rng) == {
        "answer": 12,
        "data": 1,
    }
    assert expect.body.match(b'{"answer":12}', True, values, rng) is not None
    assert expect.body.match(b'{"answer":123,"data":1}', True, values, rng) is None
    assert expect.body.match(b'{"answer":"12","data":1}', True, values, rng) is None
    assert expect.fail is not None
    assert expect.fail.match(b'{"answer":12,"error":{"c":1}}', True, values, rng) == {"c": 1}
    assert expect.fail.match(b'{"answer":12,"data":"error"}', True, values, rng) is None
    no_capture = plan_steps((emit(1, "c", event="c"),), StepRecorder(), protocol=True)[1][1]
    assert no_capture.body.match(b'{"answer":"k","x":1}', True, {ANSWER_VAR: "k"}, rng) is True


def test_a_raw_program_builds_a_plain_session() -> None:
    raw = Program("raw", (), (Step(1, "s", Action.SEND, Const("x")),))
    client = Client(1, raw, rec=Recorder(), steprec=StepRecorder(), pacing=Pacing(0.0))
    assert opening(client, "ws://h/") is None
    assert type(session_for(client, 1.0, None, 5.0)) is Session


def test_an_opening_renders_the_options_and_offers_the_subprotocols(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register_toy(monkeypatch)
    rig = Rig(CHAT_LOOP)
    rig.client.values["client_id"] = "c7"
    opened = opening(rig.client, "ws://127.0.0.1:1/", max_message_size=4096)
    assert opened is not None
    assert isinstance(opened.codec, ToyCodec)
    assert opened.codec.options == {"name": "c{client_id}"}
    assert opened.codec.max_message_size == 4096
    assert (opened.url, opened.subprotocols) == ("ws://127.0.0.1:1/toy", ("toy.v1", "toy.v0"))
    session = session_for(rig.client, 5.0, opened, 2.0)
    assert isinstance(session, ProtocolSession)
    assert session.until == 5.0
    assert session.start(0.0) == ("HELLO c{client_id}",)


def test_options_a_template_renders_wrong_are_refused_before_connecting() -> None:
    """``namespace = "{room}"`` rendering ``"r1"`` (not a path): the codec refuses it
    when the opening is made, before any connection (the caller counts bad_step_value)."""
    from wsload.common.template import ValueTemplate

    spec = ProtocolSpec("socketio", ValueTemplate({"namespace": "{room}"}))
    prog = program((), (emit(1, "chat", event="chat"),), protocol=spec)
    client = Client(7, prog, rec=Recorder(), steprec=StepRecorder(), pacing=Pacing(0.0))
    client.values["room"] = "r1"
    with pytest.raises(CodecInputError, match="namespace"):
        opening(client, "ws://127.0.0.1:1/")
    client.values["room"] = "/r1"
    opened = opening(client, "ws://127.0.0.1:1/")
    assert opened is not None
    assert opened.url.startswith("ws://127.0.0.1:1/socket.io/")


def register_toy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``protocol = "toy"`` run :class:`ToyCodec` in this process."""
    import sys

    from wsload.worker import codecs

    monkeypatch.setitem(sys.modules, "wsload.worker.codecs.toy", sys.modules[__name__])
    monkeypatch.setitem(codecs._CODECS, "toy", ("toy", "ToyCodec"))


def test_a_codec_timer_up_to_the_slack_early_sees_its_deadline() -> None:
    loop = (emit(1, "chat", event="chat", timeout=10.0),)
    rig = Rig(program((), loop), instant=True, keepalive=3.0)
    s = rig.session()
    s.start(0.0)
    assert s.on_timer(2.9995) == ("PING",)  # the engine's timers may fire 1 ms early
    assert s.deadline == 6.0  # the next PING, as if this one went at 3.0


class StuckCodec(ToyCodec):
    """A codec whose timer does not move its deadline on (a bug): never a busy loop."""

    def on_timer(self, now: float) -> list[Frame]:
        return []

    def encode(
        self, action: Action, value: Any, answer: bool
    ) -> tuple[list[Frame], AnswerKey | None]:
        if value.get("event") == "boom":
            raise KeyError("boom")
        return super().encode(action, value, answer)


def test_a_codec_that_misbehaves_costs_an_error_kind_never_a_loop_or_traceback() -> None:
    loop = (emit(1, "chat", event="chat", timeout=10.0), emit(2, "boom", event="boom"))
    rig = Rig(program((), loop), period=1.0)
    s = ProtocolSession(rig.client, StuckCodec({"instant": True, "keepalive": 3.0}), 100.0)
    s.start(0.0)
    assert s.deadline == 3.0
    assert s.on_timer(3.0) == EMPTY
    assert s.deadline == 10.0  # the stuck keep-alive is not asked again
    # then boom: the iteration is abandoned, the next one (due at 1.0) goes at once
    assert s.on_message(3.5, b"ACK 1 {}", True) == ('REQ 2 {"event": "chat"}',)
    assert rig.rec.errors == {"codec_error": 1}
    assert rig.rec.error_texts["codec_error"] == "boom: KeyError: 'boom'"


class RaisingCodec(ToyCodec):
    def receive(self, now: float, data: bytes, text: bool) -> Received:
        raise ValueError("bug")


def test_a_codec_that_raises_on_a_frame_closes_the_connection() -> None:
    rig = Rig(CHAT_LOOP)
    s = ProtocolSession(rig.client, RaisingCodec({}), 100.0)
    assert s.start(0.0) == ("HELLO anon",)
    assert s.on_message(0.1, b"WELCOME", True) == (1011,)
    assert s.over
    assert s.backoff
    assert rig.rec.error_texts["codec_error"] == "toy: ValueError: bug"


def test_an_answer_steps_own_fail_pattern_is_tested_on_its_answer_only() -> None:
    step = Step(
        1, "chat", Action.EMIT, Table(event="chat"), answer=True, fail_kind="toy_error",
        fail=Has(b"refused"),
    )  # fmt: skip
    rig = Rig(program((), (step,)), period=1.0, instant=True)
    s = rig.session()
    s.start(0.0)
    assert s.on_message(0.1, b'MSG {"event": "refused"}', True) == EMPTY  # a push: no
    assert s.pending
    assert s.on_message(0.2, b'ACK 1 {"event": "refused"}', True) == EMPTY
    assert rig.step("chat") == {"expected": 1, "failed": 1}
    assert rig.rec.errors == {"fail_matched": 1}
    assert rig.rec.error_texts["fail_matched"].startswith("chat: the answer matched its fail")


def _fanout_counts(rec: Recorder) -> Any:
    window = rec.fanout.take()
    return None if window is None else window.counts


def test_a_late_answer_counts_late_never_a_delivery() -> None:
    """An answer whose step timed out, with [deliveries] that would read it: late only."""
    loop = (emit(1, "chat", event="chat", n="{seq}", timeout=1.0),)
    deliveries = Deliveries(seq="data.seq", source="server")
    rig = Rig(program((), loop, deliveries=deliveries), period=10.0, instant=True)
    s = rig.session()
    s.start(0.0)
    s.on_timer(1.0)  # the answer timed out; the next iteration is due at 10
    assert not s.pending
    assert s.on_message(1.5, b'ACK 1 {"seq": 1, "text": "hi"}', True) == EMPTY
    assert s.on_message(1.6, b'ACK 1 {"seq": 2, "text": "hi"}', True) == EMPTY  # again: stray
    assert rig.counters("late", "unsolicited", "timed_out") == {
        "late": 1, "unsolicited": 1, "timed_out": 1,
    }  # fmt: skip
    assert not (_fanout_counts(rig.rec) or {}).get("default", {}).get("deliveries")
    # a push with the same shape is a delivery, as before
    assert s.on_message(1.7, b'MSG {"seq": 3}', True) == EMPTY
    rig.assert_identity()


def test_another_keys_answer_while_an_answer_waits_is_never_a_delivery() -> None:
    loop = (emit(1, "chat", event="chat", n="{seq}"),)
    deliveries = Deliveries(seq="data.seq", source="server")
    rig = Rig(program((), loop, deliveries=deliveries), instant=True)
    s = rig.session()
    s.start(0.0)
    assert s.pending
    assert s.on_message(0.1, b'ACK 9 {"seq": 1}', True) == EMPTY
    assert rig.counters("unsolicited", "received") == {"unsolicited": 1, "received": 0}
    assert not (_fanout_counts(rig.rec) or {}).get("default", {}).get("deliveries")
    assert s.pending


def test_an_answer_never_meets_a_plain_expect() -> None:
    """A non-answer expect whose pattern an answer's view would match is not met by it."""
    loop = (
        emit(1, "chat", answer=False, event="chat"),
        Step(2, "news", Action.EXPECT, Has(b'"data"'), timeout=1.0),
    )
    rig = Rig(program((), loop, interval=0.0), instant=True)
    s = rig.session()
    s.start(0.0)
    assert s.pending
    assert s.on_message(0.1, b'ACK 1 {"data": 1}', True) == EMPTY
    assert s.pending
    assert rig.counters("unsolicited", "received") == {"unsolicited": 1, "received": 0}
    s.on_message(0.2, b'MSG {"data": 2}', True)
    assert rig.step("news") == {"expected": 2, "met": 1}


def test_housekeeping_while_paused_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that pings but never reads: our pongs pile up while paused, up to a bound."""
    import wsload.worker.protocol_session as ps

    monkeypatch.setattr(ps, "WRITE_BACKLOG", 40)
    rig = Rig(CHAT_LOOP, instant=True)
    s = rig.session()
    s.start(0.0)
    s.paused = True
    for i in range(10):  # 40 bytes of PONG: within the bound
        assert s.on_message(0.1 + i / 100, b"PING", True) == ("PONG",)
    s.resume(0.3)  # the peer read: the count starts again
    s.paused = True
    for i in range(10):
        assert s.on_message(0.4 + i / 100, b"PING", True) == ("PONG",)
    assert s.on_message(0.5, b"PING", True) == (ps.BACKLOG_CLOSE,)
    assert s.over
    assert s.backoff
    assert "write_backlog" in rig.rec.errors
    assert rig.counters("lost") == {"lost": 1}
    rig.assert_identity()


def test_mqtt_with_no_free_packet_id_gives_the_connection_up_at_once() -> None:
    """A full packet-id table (answers that never come) is one fatal mqtt_backlog and a
    reconnect after the backoff, not bad_step_value on every step forever."""
    from wsload.worker.codecs.mqtt import MqttCodec

    pub = Step(
        1, "pub", Action.SEND, Const({"topic": "t", "qos": 1}), answer=True, fail_kind="mqtt_error"
    )
    prog = program((), (pub,), protocol=ProtocolSpec("mqtt", Const({})), interval=1.0)
    rig = Rig(prog)
    codec = MqttCodec({"client_id": "c"})
    s = ProtocolSession(rig.client, codec, float("inf"), 5.0)
    assert len(s.start(0.0)) == 1  # CONNECT
    codec.waiting = dict.fromkeys(range(1, 65536), 4)  # (after CONNACK: none is answered)
    assert s.on_message(0.1, b"\x20\x02\x00\x00", False) == EMPTY  # ready: the step fails
    assert rig.rec.errors == {"bad_step_value": 1}
    assert s.deadline <= 0.1  # the codec's failure is due at once
    assert s.on_timer(0.1) == (1002,)
    assert s.over
    assert s.backoff
    assert rig.rec.errors == {"bad_step_value": 1, "mqtt_backlog": 1}
    assert "no free packet id" in rig.rec.error_texts["mqtt_backlog"]

"""The conversation state machine (worker/session.py), driven with a fake clock.

Programs are built by hand with tiny Renderer/Matcher stand-ins (the real
ones are common/template.py and common/match.py): what is under test here is
the machine's rules -- every way an expect resolves, per-step accounting,
captures, unsolicited messages, latency from the due time, pacing, churn.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from typing import Any

import pytest

from wsload.common.program import Action, Program, Step, Think
from wsload.worker.pacing import Pacing, period_for
from wsload.worker.recorder import Recorder
from wsload.worker.session import EMPTY, Client, Session
from wsload.worker.steprec import StepRecorder

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class Text:
    """A text template: ``{name}`` filled from the values."""

    def __init__(self, template: str) -> None:
        self.template = template

    def render(self, values: Mapping[str, Any], rng: random.Random) -> Any:
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), self.template)


class Subset:
    """A JSON-subset matcher; string values are templates. Rejects non-JSON cheaply."""

    def __init__(self, **fields: Any) -> None:
        self.fields = fields

    def match(self, data: bytes, text: bool, values: Mapping[str, Any], rng: random.Random) -> Any:
        if not data.startswith(b"{"):
            return None
        message = json.loads(data)
        for key, want in self.fields.items():
            if isinstance(want, str):
                want = Text(want).render(values, rng)
            if message.get(key) != want:
                return None
        return message


def send(text: str, number: int = 1) -> Step:
    return Step(number, f"step {number}", Action.SEND, Text(text))


def expect(
    name: str,
    number: int = 2,
    timeout: float | None = None,
    capture: tuple[tuple[str, str], ...] = (),
    fail: Subset | None = None,
    **fields: Any,
) -> Step:
    return Step(
        number, name, Action.EXPECT, Subset(**fields), timeout=timeout, capture=capture, fail=fail
    )


def think(kind: str, low: float, high: float = 0.0, number: int = 3) -> Step:
    return Step(number, f"step {number}", Action.THINK, Think(kind, low, high))


class Rig:
    """One client of ``program`` with its recorders; sessions are made on demand."""

    def __init__(self, program: Program, period: float = 0.0, first: float = 0.0, **kw: Any):
        self.rec = Recorder()
        self.steprec = StepRecorder()
        self.client = Client(
            7,
            program,
            rec=self.rec,
            steprec=self.steprec,
            pacing=Pacing(period, first=first),
            timeout=kw.pop("timeout", 2.0),
            **kw,
        )

    def session(self, until: float = float("inf")) -> Session:
        return Session(self.client, until)

    def step(self, name: str) -> dict[str, int]:
        return self.steprec.totals()[name]

    def assert_identity(self) -> None:
        c = self.rec.totals()
        resolved = c["received"] + c["timed_out"] + c["failed"] + c["lost"] + c["unanswered"]
        assert c["expected"] == resolved, c
        for name, s in self.steprec.totals().items():
            assert s["expected"] == sum(s[k] for k in s if k != "expected"), (name, s)


def reply(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


ECHO_LOOP = Program(
    "echo",
    setup=(),
    loop=(send('{"id": "m{seq}", "c": "{client_id}"}'), expect("ack", id="m{seq}")),
)


def test_a_met_expect_records_latency_from_due_and_service_from_send() -> None:
    rig = Rig(ECHO_LOOP, period=1.0, first=10.0)
    s = rig.session()
    assert s.start(9.0) == EMPTY  # the first iteration is due at 10
    assert s.deadline == 10.0
    out = s.on_timer(10.2)  # the timer fired late: the send is 0.2 s behind
    assert out == ('{"id": "m1", "c": "client-7"}',)
    assert s.pending
    assert s.deadline == pytest.approx(12.2)
    assert s.on_message(10.5, reply(id="m1"), True) == EMPTY  # next iteration due at 11
    assert s.deadline == 11.0
    st = rig.steprec.steps["ack"]
    assert list(st.latency) == [500_000]
    assert list(st.service) == [300_000]
    assert rig.rec.behind_schedule == 1
    assert rig.rec.sent == 1
    assert rig.rec.received == 1
    assert rig.step("ack") == {
        "expected": 1, "met": 1, "timed_out": 0, "failed": 0, "lost": 0, "unanswered": 0,
    }  # fmt: skip
    assert rig.steprec.scenarios["echo"].iterations == 1  # the second one begins at 11


def test_a_late_iteration_counts_its_lateness() -> None:
    """The reply to iteration 1 comes 2.5 s late: iterations 2 and 3 are behind; their
    latency counts from their grid times, and they go out at once (catch up)."""
    rig = Rig(ECHO_LOOP, period=1.0, first=0.0, timeout=10.0)
    s = rig.session()
    assert s.start(0.0) == ('{"id": "m1", "c": "client-7"}',)
    out = s.on_message(2.5, reply(id="m1"), True)
    assert out == ('{"id": "m2", "c": "client-7"}',)  # due at 1.0, sent at 2.5
    s.on_message(2.6, reply(id="m2"), True)  # iteration 3 was due at 2.0: goes now
    st = rig.steprec.steps["ack"]
    assert list(st.latency) == [2_500_000, 1_600_000]
    assert list(st.service) == [2_500_000, 100_000]
    assert s.pending  # iteration 3 sent at 2.6 (due 2.0)
    s.on_message(2.7, reply(id="m3"), True)
    assert list(st.latency)[2] == 700_000
    assert s.deadline == 3.0  # iteration 4 is on time again
    assert rig.rec.behind_schedule == 0  # late because of the target: not generator-bound


def test_unsolicited_messages_are_never_replies() -> None:
    rig = Rig(ECHO_LOOP)
    s = rig.session()
    s.start(0.0)
    assert s.on_message(0.1, b'{"type": "heartbeat", "n": 1}', True) == EMPTY
    assert s.on_message(0.2, reply(id="m0"), True) == EMPTY  # another id: not this one
    assert s.on_message(0.3, b"not json", True) == EMPTY
    assert s.pending
    assert rig.rec.unsolicited == 3
    assert rig.steprec.scenarios["echo"].unsolicited == 3
    s.on_message(0.4, reply(id="m1"), True)
    assert list(rig.steprec.steps["ack"].latency) == [400_000]
    assert rig.rec.received == 1


def test_a_timed_out_expect_ends_the_iteration_and_the_client_goes_on() -> None:
    program = Program(
        "p",
        setup=(),
        loop=(
            send("a{seq}", 1),
            expect("first", 2, timeout=1.0, id="a{seq}"),
            send("b{seq}", 3),  # skipped after a timeout: counted nowhere
            expect("second", 4, id="b{seq}"),
        ),
        interval=0.0,
    )
    rig = Rig(program)
    s = rig.session()
    assert s.start(0.0) == ("a1",)
    assert s.on_timer(0.5) == EMPTY  # early: nothing
    assert s.on_timer(1.0) == ("a2",)  # timed out: iteration 2 starts right away
    assert rig.rec.timed_out == 1
    assert rig.rec.sent == 2
    assert s.on_message(1.1, reply(id="a1"), True) == EMPTY  # the timed-out one's reply: late
    assert (rig.rec.late, rig.rec.unsolicited) == (1, 0)
    assert s.on_message(1.2, reply(id="a2"), True) == ("b2",)
    assert rig.step("first")["timed_out"] == 1
    assert rig.step("first")["met"] == 1
    assert rig.step("second")["expected"] == 1
    s.stop(2.0)
    assert rig.step("second")["unanswered"] == 1
    rig.assert_identity()


def test_a_reply_to_a_timed_out_expect_is_late_once_within_the_next_iteration() -> None:
    """Matched as the timed-out expect would have matched it (its iteration's ``seq``), at
    most once, only during that iteration or the next; never a reply, never unsolicited."""
    program = Program(
        "p", setup=(), loop=(send("a{seq}", 1), expect("e", 2, timeout=1.0, id="a{seq}"))
    )
    rig = Rig(program)
    s = rig.session()
    assert s.start(0.0) == ("a1",)
    s.on_message(0.5, reply(id="a1"), True)  # met: a session with no timeout keeps nothing
    assert rig.client.late is None
    draws = random.Random(0)
    draws.setstate(rig.client.rng.getstate())
    assert s.on_message(0.6, b'{"type": "heartbeat"}', True) == EMPTY  # unsolicited, as ever
    assert s.on_timer(1.6) == ("a3",)  # iteration 2 timed out; 3 begins
    assert s.on_message(1.7, reply(id="a2"), True) == EMPTY  # 2's reply, during 3: late
    assert s.on_message(1.8, reply(id="a2"), True) == EMPTY  # again: unsolicited
    assert (rig.rec.late, rig.rec.unsolicited) == (1, 2)
    assert rig.client.rng.getstate() == draws.getstate()  # the late match drew nothing
    assert s.on_timer(2.8) == ("a4",)  # 3 timed out
    assert s.on_message(2.9, reply(id="a4"), True) == ("a5",)  # 4 met at once; 5 goes
    assert s.on_message(3.0, reply(id="a3"), True) == EMPTY  # two iterations on: unsolicited
    assert (rig.rec.late, rig.rec.unsolicited) == (1, 3)
    assert rig.client.late is None
    assert rig.rec.received == 2  # a late reply is never a reply
    assert s.on_timer(4.0) == ("a6",)  # 5 timed out; a new connection forgets it
    s.on_closed(4.1)
    s2 = rig.session()
    s2.start(4.2)
    assert s2.on_message(4.3, reply(id="a5"), True) == EMPTY
    assert (rig.rec.late, rig.rec.unsolicited) == (1, 4)
    assert rig.steprec.scenarios["p"].unsolicited == 4
    s2.stop(4.4)
    rig.assert_identity()


def test_the_fail_matcher_fails_the_expect() -> None:
    program = Program(
        "p",
        setup=(),
        loop=(send("x{seq}", 1), expect("ack", 2, fail=Subset(type="error"), type="ack")),
        interval=0.0,
    )
    rig = Rig(program)
    s = rig.session()
    s.start(0.0)
    assert s.on_message(0.1, reply(type="error"), True) == ("x2",)  # failed: next iteration
    assert rig.step("ack")["failed"] == 1
    assert rig.rec.failed == 1
    assert s.on_message(0.2, reply(type="ack"), True) == ("x3",)
    assert rig.step("ack")["met"] == 1
    s.stop(0.3)
    rig.assert_identity()


def test_a_capture_feeds_later_sends_and_a_missing_path_fails() -> None:
    program = Program(
        "chat",
        setup=(
            send('{"type": "login", "user": "{user}"}', 1),
            expect("login", 2, capture=(("token", "auth.token"),), type="welcome"),
        ),
        loop=(
            send('{"type": "msg", "id": "m{seq}", "token": "{token}"}', 3),
            expect("ack", 4, capture=(("last", "echo.0"),), type="ack", id="m{seq}"),
        ),
        interval=0.0,
    )
    rig = Rig(program, row={"user": "ann"})
    s = rig.session()
    assert s.start(0.0) == ('{"type": "login", "user": "ann"}',)
    out = s.on_message(0.1, reply(type="welcome", auth={"token": "T1"}), True)
    assert out == ('{"type": "msg", "id": "m1", "token": "T1"}',)
    out = s.on_message(0.2, reply(type="ack", id="m1", echo=["e"]), True)
    assert rig.client.values["last"] == "e"
    assert out == ('{"type": "msg", "id": "m2", "token": "T1"}',)
    out = s.on_message(0.3, reply(type="ack", id="m2"), True)  # no echo.0: failed
    assert rig.step("ack") == {
        "expected": 3, "met": 1, "timed_out": 0, "failed": 1, "lost": 0, "unanswered": 0,
    }  # fmt: skip
    assert out == ('{"type": "msg", "id": "m3", "token": "T1"}',)
    assert rig.step("login")["met"] == 1


def test_a_failed_setup_ends_the_session_with_backoff() -> None:
    program = Program(
        "p",
        setup=(send("login", 1), expect("login", 2, timeout=1.0, type="ok")),
        loop=(send("m{seq}", 3), expect("ack", 4, id="m{seq}")),
    )
    rig = Rig(program)
    s = rig.session()
    s.start(0.0)
    assert s.on_timer(1.0) == (1000,)
    assert s.over
    assert s.backoff
    assert rig.step("login")["timed_out"] == 1
    s2 = rig.session()  # the reconnect runs the setup again
    assert s2.start(5.0) == ("login",)
    assert rig.step("login")["expected"] == 2


def test_lost_and_unanswered() -> None:
    rig = Rig(ECHO_LOOP)
    s = rig.session()
    s.start(0.0)
    s.on_closed(0.5)
    assert s.over
    assert rig.step("ack")["lost"] == 1
    assert rig.rec.lost == 1
    s.on_closed(0.6)  # twice: nothing more
    s2 = rig.session()
    assert s2.start(1.0) == ('{"id": "m2", "c": "client-7"}',)  # seq carries over connections
    s2.stop(1.5)
    assert rig.step("ack")["unanswered"] == 1
    assert rig.rec.unanswered == 1
    s2.on_closed(1.6)  # the close after a stop loses nothing
    assert rig.rec.lost == 1
    rig.assert_identity()


def test_think_is_drawn_from_the_clients_seeded_rng() -> None:
    program = Program(
        "p",
        setup=(),
        loop=(send("m{seq}", 1), expect("ack", 2, id="m{seq}"), think("uniform", 1.0, 3.0)),
        interval=0.0,
    )
    deadlines = []
    for _ in range(2):
        rig = Rig(program, seed=42)
        s = rig.session()
        s.start(0.0)
        s.on_message(1.0, reply(id="m1"), True)
        deadlines.append(s.deadline)
        assert 2.0 <= s.deadline <= 4.0
        # after the think, the next iteration (closed loop) is due at the reply's
        # arrival plus the think time: a late timer shows in the latency
        at = s.deadline
        assert s.on_timer(at + 0.5) == ("m2",)
        s.on_message(at + 0.6, reply(id="m2"), True)
        assert list(rig.steprec.steps["ack"].latency)[1] == round(0.6 * 1e6)
    assert deadlines[0] == deadlines[1]
    rng = random.Random(42 * 1_000_003 + 7)
    assert deadlines[0] == pytest.approx(1.0 + rng.uniform(1.0, 3.0))
    exp = Think("exponential", 0.5)
    samples = [exp.sample(random.Random(i)) for i in range(200)]
    assert 0.3 < sum(samples) / len(samples) < 0.8


def test_churn_sessions_run_setup_once_per_connection() -> None:
    program = Program(
        "churn",
        setup=(send("hello {seq}", 1), expect("hi", 2, type="hi")),
        loop=(),
        interval=2.0,
    )
    rig = Rig(program, period=2.0, first=0.0)
    due = rig.client.next_start(0.0)
    s = rig.session()
    assert s.start(0.1, due) == ("hello 1",)
    assert s.on_message(0.3, reply(type="hi"), True) == (1000,)
    assert s.over
    assert not s.backoff
    assert list(rig.steprec.steps["hi"].latency) == [300_000]  # the connect time counts
    due = rig.client.next_start(0.3)
    assert due == 2.0
    s = rig.session()
    assert s.start(2.05, due) == ("hello 2",)
    assert rig.steprec.scenarios["churn"].iterations == 2


def test_a_close_step_closes_with_its_code() -> None:
    program = Program(
        "p",
        setup=(),
        loop=(send("bye", 1), Step(2, "step 2", Action.CLOSE, 4000)),
        interval=0.0,
    )
    rig = Rig(program)
    s = rig.session()
    assert s.start(0.0) == ("bye", 4000)
    assert s.over
    assert not s.backoff


def test_paused_writes_hold_the_send_and_latency_counts_from_due() -> None:
    rig = Rig(ECHO_LOOP, period=1.0)
    s = rig.session()
    s.start(0.0)
    s.on_message(0.1, reply(id="m1"), True)
    s.paused = True
    assert s.on_timer(1.0) == EMPTY  # due, but the target does not read
    assert s.deadline == float("inf")
    assert not s.pending
    assert s.resume(1.4) == ('{"id": "m2", "c": "client-7"}',)
    s.on_message(1.5, reply(id="m2"), True)
    assert list(rig.steprec.steps["ack"].latency) == [100_000, 500_000]
    assert list(rig.steprec.steps["ack"].service)[1] == 100_000
    assert rig.rec.behind_schedule == 0  # the target held it, not the generator


def test_drain_sends_nothing_new_but_awaits_the_pending_expect() -> None:
    rig = Rig(ECHO_LOOP, period=0.0)
    s = rig.session(until=100.0)
    s.start(0.0)
    s.drain(0.5)
    assert s.pending
    assert s.on_message(0.6, reply(id="m1"), True) == EMPTY  # met, and nothing more goes out
    assert not s.pending
    assert s.deadline == float("inf")
    assert rig.rec.sent == 1
    assert rig.rec.received == 1
    s.stop(1.0)
    rig.assert_identity()


def test_nothing_is_sent_at_or_after_the_sending_end() -> None:
    rig = Rig(ECHO_LOOP, period=1.0)
    s = rig.session(until=1.5)
    s.start(0.0)
    assert s.on_message(0.1, reply(id="m1"), True) == EMPTY
    assert s.deadline == 1.0
    s.on_timer(1.0)
    s.on_message(1.1, reply(id="m2"), True)  # iteration 3 would be due at 2.0 > 1.5
    assert s.deadline == float("inf")
    assert rig.rec.sent == 2


def test_a_loop_that_never_waits_begins_one_iteration_per_call() -> None:
    rig = Rig(Program("p", setup=(), loop=(send("m{seq}"),), interval=0.0))
    s = rig.session(until=10.0)
    assert s.start(0.0) == ("m1",)
    assert s.deadline == 0.0  # the next one at the next timer call, not in this one
    assert s.on_timer(0.0) == ("m2",)


def test_windows_sum_to_the_totals() -> None:
    rig = Rig(ECHO_LOOP, period=0.0)
    s = rig.session()
    s.start(0.0)
    windows = []
    for i in range(1, 30):
        s.on_message(i * 0.01, reply(id=f"m{i}"), True)
        if i % 7 == 0:
            s.on_message(i * 0.01, b"push", True)
            windows.append(rig.steprec.take())
    s.stop(1.0)
    windows.append(rig.steprec.take())
    met = sum(w[0]["ack"].counters.get("met", 0) for w in windows if "ack" in w[0])
    samples = sum(len(w[0]["ack"].latency) // 4 for w in windows if "ack" in w[0])
    assert met == samples == rig.step("ack")["met"] == 29
    unsolicited = sum(w[1].get("echo", {}).get("unsolicited", 0) for w in windows)
    assert unsolicited == 4
    rig.assert_identity()


def test_the_rate_is_spread_over_the_scenarios_clients() -> None:
    assert period_for(Program("p", (), (), rate=50.0), 100) == 2.0
    assert period_for(Program("p", (), (), interval=0.25), 100) == 0.25
    assert period_for(Program("p", (), (), rate=0.0), 100) == float("inf")
    assert Pacing(float("inf")).next_start(0.0) == float("inf")


def test_pacing_starts_after_setup_phased_or_follows_a_varying_rate() -> None:
    pacing = Pacing(2.0, phase=0.5)
    assert pacing.next_start(10.0) == 10.5  # the first call (setup's end) plus the phase
    assert pacing.next_start(10.6) == 12.5
    assert pacing.next_start(20.0) == 14.5  # behind: the grid does not move
    closed = Pacing(0.0, phase=0.5)
    assert closed.next_start(3.0) == 3.0
    assert closed.next_start(4.2) == 4.2
    follow = Pacing(0.0, follow=lambda t, first: t if first else t + (1.0 if t < 5 else 0.25))
    assert [follow.next_start(4.0) for _ in range(3)] == [4.0, 5.0, 5.25]


THINK_LOOP = Program(
    "p",
    setup=(),
    loop=(send("m{seq}", 1), expect("ack", 2, id="m{seq}"), think("fixed", 0.2)),
    interval=0.1,
)


def test_a_think_longer_than_the_interval_is_not_lateness() -> None:
    """interval 0.1, think 0.2, a 4 ms service time: each iteration runs past the next
    grid slot only because of its own think, so each is due when the think ends and its
    latency is the service time (it grew by the think per iteration before)."""
    rig = Rig(THINK_LOOP, period=0.1, first=0.0)
    s = rig.session()
    assert s.start(0.0) == ("m1",)
    now = 0.0
    for k in range(1, 51):
        assert s.on_message(now + 0.004, reply(id=f"m{k}"), True) == EMPTY
        assert s.deadline == pytest.approx(now + 0.204)  # thinking
        now = s.deadline
        assert s.on_timer(now) == (f"m{k + 1}",)
    st = rig.steprec.steps["ack"]
    assert len(st.latency) == 50
    assert list(st.latency) == list(st.service)
    assert max(st.latency) <= 4_001
    assert rig.rec.behind_schedule == 0


def test_a_slow_reply_that_overruns_the_think_still_counts_from_the_due_time() -> None:
    """The same loop; the reply to iteration 1 takes 1 s. The think postpones iteration
    2 by its 0.2 s at most: due at 0.3 (slot 0.1 + think), sent at 1.2 (after the
    think), so its latency holds the 0.9 s the target cost; later iterations catch up
    one interval per iteration, and none of it is the generator's."""
    rig = Rig(THINK_LOOP, period=0.1, first=0.0, timeout=5.0)
    s = rig.session()
    s.start(0.0)
    s.on_message(1.0, reply(id="m1"), True)
    assert s.on_timer(1.2) == ("m2",)
    s.on_message(1.204, reply(id="m2"), True)
    assert s.on_timer(1.404) == ("m3",)  # due at 0.6 (slot 0.4 + think 0.2)
    s.on_message(1.408, reply(id="m3"), True)
    st = rig.steprec.steps["ack"]
    assert list(st.latency) == pytest.approx([1_000_000, 904_000, 808_000], abs=1)
    assert list(st.service) == pytest.approx([1_000_000, 4_000, 4_000], abs=1)
    assert rig.rec.behind_schedule == 0


def test_a_late_timer_is_the_generators_lateness() -> None:
    """A think's timer that fires 50 ms late: that send is behind schedule (the
    generator's own limit) and its latency counts the 50 ms."""
    rig = Rig(THINK_LOOP, period=0.1, first=0.0)
    s = rig.session()
    s.start(0.0)
    s.on_message(0.004, reply(id="m1"), True)
    assert s.on_timer(0.254) == ("m2",)  # the think ended at 0.204
    s.on_message(0.258, reply(id="m2"), True)
    assert list(rig.steprec.steps["ack"].latency) == pytest.approx([4_000, 54_000], abs=1)
    assert rig.rec.behind_schedule == 1


def test_pacing_lets_a_think_postpone_the_slot_never_the_targets_time() -> None:
    grid = Pacing(0.1, first=0.0)
    assert grid.next_start(0.0) == 0.0
    assert grid.next_start(0.05, think=0.2) == 0.1  # ended before its slot: on the grid
    assert grid.next_start(0.35, think=0.2) == pytest.approx(0.35)  # think ran it past 0.2
    assert grid.next_start(0.4) == pytest.approx(0.45)  # the grid goes on from there
    assert grid.next_start(2.0, think=0.2) == pytest.approx(0.75)  # 0.55 + at most the think
    follow = Pacing(0.0, follow=lambda t, first: t if first else t + 1.0)
    assert follow.next_start(0.0) == 0.0
    assert follow.next_start(1.5, think=1.0) == 1.5
    assert follow.next_start(2.0) == 2.5


def test_why_a_step_failed_is_an_error_kind_with_its_first_text() -> None:
    program = Program(
        "chat",
        setup=(),
        loop=(
            send("x{seq}", 1),
            expect("login", 2, capture=(("token", "tokn"),), fail=Subset(type="error"), type="ok"),
        ),
        interval=0.0,
    )
    rig = Rig(program)
    s = rig.session()
    s.start(0.0)
    s.on_message(0.1, reply(type="ok", token="T"), True)
    s.on_message(0.2, reply(type="ok", token="U"), True)
    s.on_message(0.3, reply(type="error", why="x" * 300), True)
    assert rig.rec.errors == {"capture_missing": 2, "fail_matched": 1}
    texts = rig.rec.error_texts
    assert texts["capture_missing"] == (
        'login: capture token: no \'tokn\' in the reply: {"type": "ok", "token": "T"}'
    )
    assert texts["fail_matched"].startswith(
        'login: the reply matched its fail pattern: {"type": "error", "why": "xxx'
    )
    assert len(texts["fail_matched"]) == len("login: the reply matched its fail pattern: ") + 100
    assert rig.rec.failed == 3


def test_a_churn_sessions_think_postpones_its_next_connection_not_its_latency() -> None:
    program = Program(
        "churn",
        setup=(send("hello {seq}", 1), expect("hi", 2, type="hi"), think("fixed", 3.0)),
        loop=(),
        interval=2.0,
    )
    rig = Rig(program, period=2.0, first=0.0)
    s = rig.session()
    assert s.start(0.1, rig.client.next_start(0.0)) == ("hello 1",)
    assert s.on_message(0.3, reply(type="hi"), True) == EMPTY
    assert s.on_timer(3.3) == (1000,)  # the think ran it past the slot at 2.0
    due = rig.client.next_start(3.4)
    assert due == pytest.approx(3.4)
    s = rig.session()
    assert s.start(3.5, due) == ("hello 2",)
    s.on_message(3.6, reply(type="hi"), True)
    assert list(rig.steprec.steps["hi"].latency) == pytest.approx([300_000, 200_000], abs=1)
    assert rig.rec.behind_schedule == 0


# -- deliveries, publications, post (issue 16) ----------------------------------------


def _deliveries(**kw: Any) -> Any:
    from wsload.common.program import Deliveries

    return Deliveries(seq=kw.pop("seq", "seq"), **kw)


def _pub_step(number: int, text: str, topic: str = "news") -> Step:
    from wsload.common.program import Publish

    return Step(
        number,
        f"step {number}",
        Action.SEND,
        Text(text),
        publish=Publish(Text(topic), Text("{seq}")),
    )


def _post_step(number: int, url: str = "/publish", timeout: float | None = None) -> Step:
    from wsload.common.program import HttpPost, Publish

    return Step(
        number,
        f"post {number}",
        Action.POST,
        HttpPost(Text(url), Text('{"seq": {seq}}')),
        timeout=timeout,
        publish=Publish(Text("news"), Text("{seq}")),
    )


def _subs(rig: Rig) -> list[Any]:
    return list(rig.rec.fanout.subs)


def test_a_pending_expect_takes_its_reply_before_deliveries_and_deliveries_before_unsolicited() -> (
    None
):
    program = Program(
        "p",
        (),
        (send("q{seq}"), expect("ack", type="ack")),
        interval=10.0,
        deliveries=_deliveries(match=Subset(type="delivery"), topic="topic"),
    )
    rig = Rig(program, period=10.0, epoch=1000.0)
    s = rig.session()
    s.start(0.0)
    assert s.pending
    # a delivery while the expect waits: not its reply, a delivery
    s.on_message(0.1, reply(type="delivery", topic="t", seq=1), True)
    assert s.pending
    s.on_message(0.2, reply(type="ack"), True)  # the expect's
    assert not s.pending
    s.on_message(0.3, reply(type="other", seq=2), True)  # neither: unsolicited
    s.on_message(0.3, reply(type="delivery", topic="t", seq="x"), True)  # seq not an int
    assert rig.rec.received == 1
    assert rig.rec.unsolicited == 2
    assert rig.rec.fanout.topics["t"].deliveries == 1
    rig.assert_identity()


def test_deliveries_ranges_duplicates_out_of_order_and_latency_from_sent_at() -> None:
    program = Program(
        "p", (), (think("fixed", 100.0, number=1),), deliveries=_deliveries(sent_at="sent_at")
    )
    rig = Rig(program, epoch=1000.0)
    s = rig.session()
    s.start(0.0)  # no [[steps]]: subscribed from connect, epoch 1000.0
    for seq, at in ((1, 0.5), (2, 0.6), (4, 0.7), (4, 0.8), (3, 0.9), (9, 1.0)):
        s.on_message(at, reply(seq=seq, sent_at=1000.4), True)
    stats = rig.rec.fanout.topics["default"]
    assert (stats.deliveries, stats.duplicates, stats.out_of_order) == (6, 1, 1)
    # latency = receive epoch - sent_at, once per new seq (not for the duplicate)
    assert list(stats.latency) == [100_000, 200_000, 300_000, 500_000, 600_000]
    s.on_closed(2.0)
    (sub,) = _subs(rig)
    assert sub.client == 7
    assert sub.topic == "default"
    assert sub.ranges.tolist() == [[1, 4], [9, 9]]
    assert (sub.subscribed_at_us, sub.ended_at_us) == (1_000_000_000, 1_002_000_000)
    s.stop(3.0)  # ended once
    assert len(_subs(rig)) == 1


def test_the_subscription_starts_when_the_setup_steps_end() -> None:
    program = Program(
        "p",
        (send("subscribe"), expect("subscribed", type="subscribed")),
        (think("fixed", 100.0, number=3),),
        deliveries=_deliveries(topics=(Text("room-{client_id}"),)),
    )
    rig = Rig(program, epoch=1000.0)
    s = rig.session()
    s.start(0.0)
    s.on_message(0.5, reply(seq=1), True)  # before the subscription is confirmed: early
    s.on_message(1.5, reply(type="subscribed"), True)
    s.on_message(2.0, reply(seq=2), True)
    s.stop(4.0)  # the run closes it: no record yet, the close handshake may still bring some
    assert _subs(rig) == []
    s.on_message(4.1, reply(seq=3), True)  # came while closing: a delivery in the record
    s.on_closed(4.2)  # gone: nothing more can come, the record is taken
    (sub,) = _subs(rig)
    assert sub.topic == "room-client-7"
    assert (sub.subscribed_at_us, sub.ended_at_us) == (1_001_500_000, 1_004_200_000)
    assert sub.ranges.tolist() == [[1, 3]]
    s.on_message(4.3, reply(seq=4), True)  # after the record: counted nowhere (one truth)
    assert rig.rec.fanout.topics["room-client-7"].deliveries == 3
    assert rig.rec.unsolicited == 0


def test_a_connection_that_ends_in_setup_records_an_empty_interval() -> None:
    program = Program(
        "p", (send("subscribe"), expect("ok", type="ok")), (), deliveries=_deliveries()
    )
    rig = Rig(program, epoch=1000.0)
    s = rig.session()
    s.start(0.0, due=0.0)
    s.on_closed(1.0)
    (sub,) = _subs(rig)
    assert sub.subscribed_at_us == sub.ended_at_us == 1_001_000_000


def test_publications_are_recorded_as_written_with_their_due_time() -> None:
    program = Program("p", (), (_pub_step(1, "pub {seq}"),), interval=1.0)
    rig = Rig(program, period=1.0, epoch=1000.0, first=10.0)
    s = rig.session()
    assert s.start(10.0) == ("pub 1",)
    assert s.on_timer(11.2) == ("pub 2",)  # due at 11.0: the intended time is recorded
    assert rig.rec.fanout.pubs == {"news": [(1, 1_010_000_000), (2, 1_011_000_000)]}
    window = rig.rec.take_window(12.0)
    assert window.fanout is not None
    assert window.fanout.pubs["news"][1] == (2, 1_011_000_000)
    assert rig.rec.take_window(13.0).fanout is None


def test_a_publication_made_twice_is_a_conflict_and_kept_once() -> None:
    program = Program("p", (), (_pub_step(1, "pub"),), interval=1.0)
    rig = Rig(program, period=1.0, epoch=0.0, first=0.0)
    s = rig.session()
    s.start(0.0)
    rig.client.seq = 0  # the same seq again (a second publisher of the topic, say)
    rig.client.values["seq"] = 0
    s.on_timer(1.0)
    assert rig.rec.fanout.topics["news"].conflicts == 1
    assert rig.rec.fanout.pubs == {"news": [(1, 0)]}


def test_post_emits_a_request_and_goes_on_after_a_2xx_answer() -> None:
    from wsload.worker.session import HttpRequest

    program = Program("p", (), (_post_step(1),), interval=1.0)
    rig = Rig(program, period=1.0, epoch=1000.0, first=0.0, api_url="http://127.0.0.1:9/api/")
    s = rig.session()
    (request,) = s.start(0.0)
    assert isinstance(request, HttpRequest)
    assert request.url == "http://127.0.0.1:9/publish"
    assert request.body == b'{"seq": 1}'
    assert request.timeout == 2.0
    assert s.deadline == 2.0
    assert rig.rec.fanout.pubs == {}  # not before the answer
    assert s.on_http(0.05, 204) == EMPTY
    assert rig.rec.fanout.pubs == {"news": [(1, 1_000_000_000)]}
    assert s.deadline == 1.0  # the next iteration


def test_post_failures_fail_the_step_as_an_expect_would() -> None:
    program = Program("p", (), (_post_step(1, "http://h/x", timeout=0.5),), interval=1.0)
    rig = Rig(program, period=1.0, first=0.0)
    s = rig.session()
    s.start(0.0)
    s.on_http(0.1, 503)
    s.on_timer(1.0)
    s.on_http(1.1, 0, "refused", "http://h/x: connection refused")
    s.on_timer(2.0)
    assert s.on_timer(2.5) == EMPTY  # timed out: the iteration is over
    assert s.on_http(2.6, 200) == EMPTY  # a late answer does nothing
    assert rig.rec.errors == {"http_503": 1, "refused": 1, "timeout": 1}
    assert rig.rec.error_texts["refused"] == "post 1: http://h/x: connection refused"
    assert rig.rec.fanout.pubs == {}
    assert s.deadline == 3.0


def test_a_failed_post_in_setup_ends_the_session_with_backoff() -> None:
    program = Program("p", (_post_step(1),), (think("fixed", 1.0, number=2),))
    rig = Rig(program)
    s = rig.session()
    s.start(0.0)
    assert s.on_http(0.1, 500) == (1000,)
    assert s.over
    assert s.backoff


def test_a_send_up_to_the_timer_slack_early_is_stamped_when_it_left() -> None:
    """``{ts}`` and the publication's time are never in the future: a subscriber on the
    same host would otherwise read a delivery that came before it was published."""
    program = Program("p", (), (_pub_step(1, "pub {seq} {ts}"),), interval=1.0)
    rig = Rig(program, period=1.0, epoch=1000.0, first=10.0)
    s = rig.session()
    s.start(9.0)
    assert s.deadline == 10.0
    assert s.on_timer(9.9995) == ("pub 1 1009.9995",)  # 0.5 ms early: stamped now
    assert rig.rec.fanout.pubs == {"news": [(1, 1_009_999_500)]}
    assert s.on_timer(11.25) == ("pub 2 1011.0",)  # late: stamped when it was due
    assert rig.rec.fanout.pubs["news"][1] == (2, 1_011_000_000)

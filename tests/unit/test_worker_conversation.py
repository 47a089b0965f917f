"""The worker's side of the coordinator conversation (worker.conversation), on a fake clock.

Hello until welcomed, refusal (for good or for this run), a coordinator of
another protocol version, jobs and handovers, the bye, giving up on a
coordinator that never answers, and the dead-man stop it arms: bytes in,
actions out, no socket, no process, no sleep.
"""

from __future__ import annotations

import msgpack

from wsload.common.protocol import (
    PROTOCOL_VERSION,
    Bye,
    Error,
    Heartbeat,
    Job,
    Refuse,
    Stop,
    Welcome,
    encode,
)
from wsload.worker.conversation import (
    EXIT_OK,
    EXIT_REFUSED,
    REFUSED_RETRY,
    Conversation,
    End,
    Reply,
    Say,
    Seen,
    SessionEnd,
    StartJob,
    StopLoad,
    TakeOver,
    Welcomed,
)
from wsload.worker.deadman import Action, DeadMan
from wsload.worker.link import HandshakeProblem

ENDPOINT = "tcp://127.0.0.1:5555"


def conv(*, once: bool = False, hello_timeout: float | None = None) -> Conversation:
    return Conversation("w", ENDPOINT, 0.0, once=once, hello_timeout=hello_timeout)


def welcomed(once: bool = False) -> Conversation:
    c = conv(once=once)
    assert c.receive(encode(Welcome("w", 1.0))) == [Welcomed(Welcome("w", 1.0))]
    return c


def job(job_id: str = "j1") -> Job:
    return Job(job_id, {}, 2, 0, 0.0, 0.0)


def test_only_a_welcome_or_a_refusal_answers_a_hello() -> None:
    c = conv()
    assert c.receive(encode(Heartbeat(1.0))) == []  # not an answer: hello again
    assert c.receive(encode(job())) == []  # no job before the welcome
    assert c.receive(encode(Welcome("w", 1.0))) == [Welcomed(Welcome("w", 1.0))]
    assert c.welcomed


def test_a_long_lived_worker_refused_tries_again_saying_so_once() -> None:
    c = conv()
    [end] = c.receive(encode(Refuse("the coordinator has all the workers it needs")))
    assert isinstance(end, End)
    assert end.end.code is None
    assert end.end.retry_after == REFUSED_RETRY
    assert "refused by coordinator: the coordinator has all" in end.end.note
    assert c.after(end.end) == (None, end.end.note)
    c.new_session()
    [again] = c.receive(encode(Refuse("the coordinator has all the workers it needs")))
    assert isinstance(again, End)
    assert c.after(again.end) == (None, "")  # the same refusal, not said again


def test_a_once_worker_refused_exits_2() -> None:
    c = conv(once=True)
    actions = c.receive(encode(Refuse("full")))
    assert actions == [Say("refused by coordinator: full"), End(SessionEnd(EXIT_REFUSED))]
    assert c.after(SessionEnd(EXIT_REFUSED)) == (EXIT_REFUSED, "")


def test_a_coordinator_of_another_protocol_ends_even_a_long_lived_worker() -> None:
    c = conv()
    future = msgpack.packb({"v": PROTOCOL_VERSION + 1, "kind": "refuse", "reason": "upgrade"})
    [say, end] = c.receive(future)
    assert isinstance(say, Say)
    assert "the coordinator speaks another protocol" in say.text
    assert end == End(SessionEnd(EXIT_REFUSED))


def test_a_bad_message_is_said_and_ignored() -> None:
    c = welcomed()
    [say] = c.receive(b"\xc1garbage")
    assert isinstance(say, Say)
    assert say.text.startswith("ignoring a bad message")


def test_jobs_a_handover_of_the_running_one_and_busy() -> None:
    c = welcomed()
    assert c.receive(encode(job("j1"))) == [Seen(), StartJob(job("j1"))]
    c.job_running = c.load_running = True
    assert c.receive(encode(job("j1"))) == [Seen(), TakeOver(job("j1"))]  # more clients
    assert c.receive(encode(job("j2"))) == [Seen(), Reply(Error("busy", "w is running a job"))]
    c.load_running = False  # a check job cannot take clients over
    assert c.receive(encode(job("j1"))) == [Seen(), Reply(c.busy())]
    c.job_running = False
    assert c.receive(encode(job("j2"))) == [Seen(), StartJob(job("j2"))]
    assert c.job_id == "j2"


def test_stop_and_any_message_prove_the_coordinator_alive() -> None:
    c = welcomed()
    assert c.receive(encode(Stop("j1", "run over"))) == [Seen(), StopLoad()]
    assert c.receive(encode(Heartbeat(1.0))) == [Seen()]
    assert c.receive(encode(Refuse("late"))) == [Seen()]  # after the welcome: ignored


def test_bye_stops_the_load_answers_and_waits_for_the_next_coordinator() -> None:
    c = welcomed()
    actions = c.receive(encode(Bye("run over")))
    assert actions[:2] == [Seen(), StopLoad()]
    end = actions[2]
    assert isinstance(end, End)
    assert end.end.answer == Bye("leaving")
    assert end.end.note == f"run over; waiting for the next coordinator at {ENDPOINT}"
    assert c.after(end.end) == (None, end.end.note)
    assert welcomed(once=True).after(end.end) == (EXIT_OK, "")


def test_hello_timeout_counts_from_when_the_worker_started_looking() -> None:
    c = conv(hello_timeout=10.0)
    assert c.unanswered(9.9, None) == []
    hint = HandshakeProblem("the ZeroMQ handshake failed", final=False)
    assert c.unanswered(9.9, hint) == [Say("the ZeroMQ handshake failed; trying again")]
    assert c.unanswered(9.95, hint) == []  # said once
    [say, end] = c.unanswered(10.0, None)
    assert say == Say(
        f"no coordinator answered at {ENDPOINT} within 10 s (the ZeroMQ handshake failed)"
    )
    assert end == End(SessionEnd(EXIT_REFUSED))
    # After a session, it counts again from the end of that session.
    c.looking(100.0)
    c.new_session()
    assert c.unanswered(109.0, None) == []


def test_a_final_handshake_problem_ends_at_once() -> None:
    c = conv()
    problem = HandshakeProblem("the coordinator refused this worker's key", final=True)
    assert c.unanswered(0.1, problem) == [Say(problem.text), End(SessionEnd(EXIT_REFUSED))]


def test_the_welcome_arms_the_dead_man_stop_and_silence_ends_the_session() -> None:
    """The conversation and the dead-man rule together, as the heartbeat thread drives them."""
    c = conv()
    dm = DeadMan(silence_timeout=5.0, now=0.0)
    assert dm.poll(30.0) is Action.NONE  # waiting for a coordinator is no silence
    for action in c.receive(encode(Welcome("w", 1.0))):
        if isinstance(action, Welcomed):
            dm.arm(30.0)
    c.receive(encode(job()))
    dm.load_started(grace=7.0, now=30.5)
    for action in c.receive(encode(Heartbeat(0.0))):
        if isinstance(action, Seen):
            dm.seen(32.0)
    assert dm.poll(36.9) is Action.NONE
    assert dm.poll(37.1) is Action.STOP  # the loop stops the load...
    dm.load_stopped()  # ...and it stopped in time: no exit
    assert dm.poll(60.0) is Action.NONE
    end = c.silenced()
    assert (
        end.note == f"the coordinator went silent; waiting for the next coordinator at {ENDPOINT}"
    )
    assert c.after(end) == (None, end.note)

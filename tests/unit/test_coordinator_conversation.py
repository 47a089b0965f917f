"""The coordinator's side of the worker conversation (coordinator.conversation), on a fake clock.

Admission, refusal, version mismatch, slot-stealing, liveness and the bye,
each said with frames in and messages out: no socket, no process, no sleep.
"""

from __future__ import annotations

import msgpack

from wsload.common.protocol import (
    PROTOCOL_VERSION,
    Bye,
    Clock,
    Error,
    Heartbeat,
    Hello,
    Message,
    Refuse,
    Result,
    Stop,
    Welcome,
    encode,
)
from wsload.coordinator.conversation import (
    FULL,
    Busy,
    Conversation,
    JobRefused,
    Joined,
    Output,
    ResultIn,
)


def hello(worker_id: str) -> Hello:
    return Hello(worker_id, "host", 1, "0", 2, 1024)


def frames(identity: str, msg: Message) -> list[bytes]:
    return [identity.encode(), encode(msg)]


def join(conv: Conversation, worker_id: str, now: float) -> Output:
    """A real worker: its heartbeat socket beats, its job socket says hello."""
    conv.receive(frames(f"{worker_id}#hb", Heartbeat(0.0)), now)
    return conv.receive(frames(worker_id, hello(worker_id)), now)


def test_a_hello_and_a_heartbeat_take_a_slot_and_are_welcomed() -> None:
    conv = Conversation(2, heartbeat_interval=0.5)
    out = join(conv, "w0", 1.0)
    assert out.sends == [("w0", Welcome("w0", 0.5)), ("w0", Clock(0, 1.0))]  # then its clock
    assert out.events == [Joined(hello("w0"))]
    assert list(conv.workers) == ["w0"]
    # Its hello repeated (the welcome was lost): welcomed again, no second join.
    again = conv.receive(frames("w0", hello("w0")), 2.0)
    assert again.sends == [("w0", Welcome("w0", 0.5))]
    assert again.events == []


def test_an_intruders_hello_never_steals_the_only_slot() -> None:
    """The flaky process test of issue 14: an early hello alone must not take the slot."""
    conv = Conversation(1)
    assert conv.receive(frames("intruder", hello("intruder")), 0.0).sends == []  # not answered
    out = conv.receive(frames("real", hello("real")), 0.5)
    assert out.sends == []  # waits for its heartbeat
    out = conv.receive(frames("real#hb", Heartbeat(0.0)), 0.6)
    assert out.sends == [("real", Welcome("real", 1.0)), ("real", Clock(0, 0.6))]
    assert out.events == [Joined(hello("real"))]
    # The slot is taken: a late heartbeat of the intruder gets it refused, not admitted.
    out = conv.receive(frames("intruder#hb", Heartbeat(0.0)), 0.7)
    assert out.sends == [("intruder", Refuse(FULL))]
    assert list(conv.workers) == ["real"]


def test_a_worker_past_the_last_slot_is_refused() -> None:
    conv = Conversation(1)
    join(conv, "w0", 0.0)
    out = conv.receive(frames("w1", hello("w1")), 0.1)
    assert out.sends == [("w1", Refuse(FULL))]
    assert out.events == []


def test_a_hello_claiming_another_id_is_counted_not_admitted() -> None:
    conv = Conversation(1)
    out = conv.receive(frames("w0", hello("someone-else")), 0.0)
    assert out.sends == []
    assert out.events == []
    assert conv.bad_input == {"hello": 1}
    assert len(out.logs) == 1


def test_another_protocol_version_is_refused_naming_both_and_logged_once() -> None:
    conv = Conversation(1)
    body = msgpack.unpackb(encode(hello("old")))
    body["v"] = PROTOCOL_VERSION + 1
    first = conv.receive([b"old", msgpack.packb(body)], 0.0)
    [(identity, refusal)] = first.sends
    assert identity == "old"
    assert isinstance(refusal, Refuse)
    assert str(PROTOCOL_VERSION + 1) in refusal.reason
    assert f"speaks {PROTOCOL_VERSION}" in refusal.reason
    assert len(first.logs) == 1
    second = conv.receive([b"old", msgpack.packb(body)], 0.1)
    assert len(second.sends) == 1
    assert second.logs == []
    assert conv.bad_input == {"version": 2}
    assert conv.workers == {}


def test_garbage_and_strangers_cost_a_counter_each() -> None:
    conv = Conversation(1)
    conv.receive([b"x", b"\xc1garbage"], 0.0)
    conv.receive([b"x"], 0.0)
    conv.receive(frames("nobody", Bye()), 0.0)
    assert conv.bad_input == {"bad": 1, "frames": 1, "unknown": 1}


def test_liveness_any_message_keeps_a_worker_and_silence_loses_it() -> None:
    conv = Conversation(2, heartbeat_interval=1.0, lost_after=3.0)
    join(conv, "w0", 0.0)
    join(conv, "w1", 0.0)
    conv.receive(frames("w1#hb", Heartbeat(0.0)), 2.5)
    assert conv.silent(3.0) == []
    assert conv.silent(3.2) == [("w0", 3.2)]
    conv.lose("w0")
    assert conv.silent(5.4) == []  # lost once; w1 was heard at 2.5
    assert [w for w, _ in conv.silent(5.6)] == ["w1"]


def test_heartbeats_go_once_per_interval_to_live_workers_only() -> None:
    conv = Conversation(2, heartbeat_interval=1.0)
    join(conv, "w0", 0.0)
    join(conv, "w1", 0.0)
    assert conv.tick(10.0, wall=1e9).sends == [
        ("w0#hb", Heartbeat(1e9)),
        ("w1#hb", Heartbeat(1e9)),
    ]
    assert conv.tick(10.9, wall=1e9).sends == []
    conv.lose("w1")
    assert conv.tick(11.0, wall=2e9).sends == [("w0#hb", Heartbeat(2e9))]


def test_results_of_the_current_job_only_and_refusals_end_it() -> None:
    conv = Conversation(2)
    join(conv, "w0", 0.0)
    join(conv, "w1", 0.0)
    conv.start_job("job-1")
    stale = Result("job-0", True, {}, {}, {})
    assert conv.receive(frames("w0", stale), 1.0).events == []
    fresh = Result("job-1", True, {}, {}, {})
    assert conv.receive(frames("w0", fresh), 1.0).events == [ResultIn("w0", fresh)]
    out = conv.receive(frames("w1", Error("target-not-allowed", "not there")), 1.0)
    assert out.events == [JobRefused("w1", conv.refused)]
    assert "w1 refused the job: not there" in conv.refused
    assert conv.refusers == {"w1"}
    assert conv.receive(frames("w0", Error("busy", "w0 is running a job")), 1.0).events == [
        Busy("w0")
    ]


def test_bye_each_answers_and_a_left_worker_is_not_taken_back() -> None:
    conv = Conversation(2)
    join(conv, "w0", 0.0)
    join(conv, "w1", 0.0)
    assert conv.dismiss().sends == [("w0", Bye("run over")), ("w1", Bye("run over"))]
    assert not conv.all_gone()
    conv.receive(frames("w0", Bye("leaving")), 1.0)
    conv.lose("w1")
    assert conv.all_gone()
    # A long-lived worker looking for its next run says hello again: not this run's.
    assert conv.receive(frames("w0", hello("w0")), 2.0).sends == []


def test_abandon_stops_and_dismisses_every_worker_still_there() -> None:
    conv = Conversation(3)
    for w in ("w0", "w1", "w2"):
        join(conv, w, 0.0)
    conv.start_job("job-1")
    conv.lose("w1")
    conv.receive(frames("w2", Bye("leaving")), 1.0)
    assert conv.abandon("second signal") == [
        ("w0", Stop("job-1", "second signal")),
        ("w0", Bye("second signal")),
    ]


def test_a_joined_worker_is_probed_for_its_clock_one_probe_at_a_time() -> None:
    """Best of 8 by round trip: offset = t1 - (t0 + t2) / 2, within (t2 - t0) / 2."""
    conv = Conversation(1)
    conv.receive(frames("w0#hb", Heartbeat(0.0)), 0.0)
    out = conv.receive(frames("w0", hello("w0")), 0.0, wall=100.0)
    probe = out.sends[-1][1]
    assert probe == Clock(0, 100.0)
    wall = 100.0
    round_trips = [0.010, 0.004, 0.020, 0.002, 0.008, 0.030, 0.006, 0.005]
    for n, rtt in enumerate(round_trips):
        assert isinstance(probe, Clock)
        assert probe.probe == n
        # the worker's clock is 2.5 s ahead; its answer is halfway through the round trip
        answer = probe.answer(probe.sent_at + rtt / 2 + 2.5)
        wall = probe.sent_at + rtt
        out = conv.receive(frames("w0", answer), 1.0, wall=wall)
        if n < 7:
            (sent,) = out.sends
            probe = sent[1]
            assert sent[0] == "w0"
        else:
            assert out.sends == []  # 8 probes in all
    best = conv.clocks.best("w0")
    assert best is not None
    assert abs(best.offset - 2.5) < 1e-9
    assert abs(best.uncertainty - 0.001) < 1e-9
    assert best.probes == 8


def test_clock_answers_that_were_not_asked_for_are_ignored() -> None:
    conv = Conversation(1)
    join(conv, "w0", 0.0)
    assert conv.receive(frames("w0", Clock(5, 0.0, 3.0)), 0.1).sends == []  # not outstanding
    assert conv.receive(frames("w0", Clock(0, 0.0)), 0.1).sends == []  # no worker time
    assert conv.clocks.best("w0") is None
    # a worker that never answers: nothing waits for it, no offset
    assert conv.receive(frames("w1", Clock(0, 0.0, 1.0)), 0.1).sends == []  # not a worker

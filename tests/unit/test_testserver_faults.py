"""The test server's sans-I/O cores, without sockets: the fault policy and the reply rules."""

from __future__ import annotations

import itertools
import json
import math

import pytest

from wsload.testserver.faults import (
    Decision,
    FaultConfigError,
    FaultPolicy,
    Faults,
    next_push,
    push_message,
)
from wsload.testserver.replies import (
    BadRequest,
    Publish,
    answer,
    event_message,
    parse_publish,
    wants,
)

# -- fault policy ------------------------------------------------------------


def test_no_faults_reply_at_once_never_close() -> None:
    policy = FaultPolicy(Faults(), started=0.0)
    assert not Faults().holds_replies
    for n in range(1, 100):
        assert policy.decide(5.0, n) == Decision(5.0, close=False)


def test_delay_is_added() -> None:
    faults = Faults(delay=0.2)
    assert faults.holds_replies
    assert FaultPolicy(faults, started=0.0).decide(1.0, 1).reply_at == pytest.approx(1.2)


def test_stalls_hold_replies_until_the_stall_ends() -> None:
    policy = FaultPolicy(Faults(stall_every=1.0, stall_for=0.3), started=10.0)
    assert policy.decide(10.0, 1).reply_at == pytest.approx(10.3)  # a stall starts at once
    assert policy.decide(10.1, 2).reply_at == pytest.approx(10.3)  # inside the first stall
    assert policy.decide(10.3, 3).reply_at == pytest.approx(10.3)  # its end is outside it
    assert policy.decide(10.5, 4).reply_at == pytest.approx(10.5)  # between stalls
    assert policy.decide(12.05, 5).reply_at == pytest.approx(12.3)  # a later stall
    assert policy.stall_end(9.0) is None  # before the server started


def test_a_delayed_reply_that_lands_in_a_stall_waits_for_its_end() -> None:
    policy = FaultPolicy(Faults(delay=0.5, stall_every=1.0, stall_for=0.3), started=0.0)
    assert policy.decide(0.6, 1).reply_at == pytest.approx(1.3)  # due at 1.1, inside a stall
    assert policy.decide(0.0, 2).reply_at == pytest.approx(0.5)  # due at 0.5, after one


def test_due_times_never_decrease_so_a_fifo_queue_keeps_them() -> None:
    policy = FaultPolicy(Faults(delay=0.07, stall_every=0.4, stall_for=0.15), started=1.0)
    due = [policy.decide(1.0 + i / 1000, i + 1).reply_at for i in range(3000)]
    times = [d for d in due if d is not None]
    assert len(times) == len(due)
    assert all(a <= b for a, b in itertools.pairwise(times))


def test_drop_rate_is_seeded_and_roughly_right() -> None:
    def drops(seed: int, faults: Faults) -> list[bool]:
        policy = FaultPolicy(faults, started=0.0, seed=seed)
        return [policy.decide(0.0, n).dropped for n in range(1, 4001)]

    quarter = drops(3, Faults(drop_rate=0.25))
    assert quarter == drops(3, Faults(drop_rate=0.25))
    assert quarter != drops(4, Faults(drop_rate=0.25))
    assert 800 < sum(quarter) < 1200
    # Other faults do not shift a seeded sequence of drops.
    assert quarter == drops(3, Faults(drop_rate=0.25, delay=0.1, close_after=7))
    assert all(drops(1, Faults(drop_rate=1.0)))
    assert not any(drops(1, Faults(drop_rate=0.0)))


def test_event_drops_share_the_seeded_sequence() -> None:
    lossy = FaultPolicy(Faults(drop_rate=0.5), started=0.0, seed=9)
    again = FaultPolicy(Faults(drop_rate=0.5), started=0.0, seed=9)
    mixed = [lossy.drop_event() if n % 2 else lossy.decide(0.0, n).dropped for n in range(200)]
    assert mixed == [again.drop_event() for _ in range(200)]
    assert 60 < sum(mixed) < 140
    assert not any(FaultPolicy(Faults(), started=0.0).drop_event() for _ in range(100))


def test_close_after_n_even_when_the_nth_is_dropped() -> None:
    policy = FaultPolicy(Faults(close_after=3), started=0.0)
    assert [policy.decide(0.0, n).close for n in (1, 2, 3, 4)] == [False, False, True, True]
    dropping = FaultPolicy(Faults(close_after=1, drop_rate=1.0), started=0.0)
    assert dropping.decide(0.0, 1) == Decision(None, close=True)


@pytest.mark.parametrize(
    ("faults", "needle"),
    [
        (Faults(stall_for=0.5), "--stall-for needs --stall-every"),
        (Faults(stall_every=1.0, stall_for=1.0), "above 0 and below it"),
        (Faults(stall_every=1.0, stall_for=2.0), "above 0 and below it"),
        (Faults(stall_every=1.0), "--stall-every needs a --stall-for"),
        (Faults(stall_every=-1.0), "--stall-every must be"),
        (Faults(stall_every=math.inf), "--stall-every must be"),
        (Faults(stall_every=1.0, stall_for=math.nan), "--stall-for must be"),
        (Faults(drop_rate=1.5), "--drop-rate must be between 0 and 1"),
        (Faults(drop_rate=math.nan), "--drop-rate must be between 0 and 1"),
        (Faults(delay=-0.001), "--delay must be"),
        (Faults(delay=math.nan), "--delay must be"),
        (Faults(delay=1e9), "--delay must be"),
        (Faults(close_after=-1), "--close-after must be zero or more"),
        (Faults(push_every=0.0001), "--push-every must be 0 or 1..3600000 ms"),
        (Faults(push_every=-1.0), "--push-every must be"),
        (Faults(push_every=math.nan), "--push-every must be"),
        (Faults(push_every=1e9), "--push-every must be"),
    ],
)
def test_contradictions_are_refused(faults: Faults, needle: str) -> None:
    assert any(needle in p for p in faults.problems()), faults.problems()
    with pytest.raises(FaultConfigError, match=needle.replace("(", r"\(")):
        FaultPolicy(faults, started=0.0)


def test_every_problem_is_reported_at_once() -> None:
    assert len(Faults(delay=-1.0, drop_rate=2.0, close_after=-1).problems()) == 3


# -- pushes --------------------------------------------------------------------


def test_pushes_carry_no_id_and_answer_nothing() -> None:
    message = json.loads(push_message(7))
    assert message == {"type": "heartbeat", "n": 7}
    assert "seq" not in push_message(7)  # wsload's default id field
    assert not Faults(push_every=0.005).holds_replies  # pushes never delay replies
    assert Faults(push_every=0.005).problems() == []


def test_pushes_are_due_on_a_grid_that_never_drifts() -> None:
    # A connection opened at 10.0 pushing every 0.5 s.
    assert next_push(10.0, 0.5, now=10.0, last=0) == (10.5, 1)
    assert next_push(10.0, 0.5, now=10.51, last=1) == (11.0, 2)  # sent a little late
    assert next_push(10.0, 0.5, now=10.49, last=1) == (11.0, 2)  # its timer fired early
    # A busy server skips what it missed rather than bursting.
    assert next_push(10.0, 0.5, now=12.2, last=2) == (12.5, 5)


# -- reply rules -------------------------------------------------------------


def test_frames_are_echoed_unless_ping_or_subscribe() -> None:
    subs: set[str] = set()
    frames: list[str | bytes] = ["hi", "", "{not json", '{"type": "other"}', "[1]", b"\0"]
    for frame in [*frames, b'{"type": "ping"}']:
        reply = answer(frame, subs)
        assert (reply.data, reply.kind) == (frame, "echoes_sent")
    assert answer(' {"type": "ping", "id": 3}', subs).data == '{"type": "pong"}'
    assert answer('{"type": "ping"}', subs).kind == "pongs_sent"
    assert answer("{" * 100_000, subs).kind == "echoes_sent"  # too deep to parse: echoed
    assert subs == set()


def test_subscriptions_accumulate_and_default_to_everything() -> None:
    subs: set[str] = set()
    reply = answer('{"type": "subscribe", "events": ["b", "a"]}', subs)
    assert reply.kind == "acks_sent"
    assert json.loads(reply.data) == {"type": "subscribed", "events": ["a", "b"]}
    assert (wants(subs, "a"), wants(subs, "c")) == (True, False)
    assert json.loads(answer('{"type": "subscribe"}', subs).data)["events"] == ["*", "a", "b"]
    assert wants(subs, "c")
    for malformed in (
        '{"type": "subscribe", "events": "a"}',
        '{"type": "subscribe", "events": [1]}',
    ):
        assert answer(malformed, subs).kind == "echoes_sent"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not valid JSON"),
        (b"\xff", "not valid JSON"),
        (b'{"event": "x", "data": Infinity}', "not valid JSON"),
        (b"[" * 100_000, "not valid JSON"),
        (b'"x"', "JSON object"),
        (b"{}", "'event' must be"),
        (b'{"event": "' + b"e" * 201 + b'"}', "'event' must be"),
        (b'{"event": "x", "count": 1.0}', "'count' must be an integer"),
        (b'{"event": "x", "count": false}', "'count' must be an integer"),
        (b'{"event": "x", "count": -1}', "'count' must be 1..10000"),
    ],
)
def test_bad_publish_bodies(body: bytes, reason: str) -> None:
    with pytest.raises(BadRequest, match=reason):
        parse_publish(body)


def test_publish_and_event_message() -> None:
    assert parse_publish(b'{"event": "x"}') == Publish("x", None, 1)
    publish = parse_publish(b'{"event": "tick", "data": {"k": [1]}, "count": 10000}')
    assert publish == Publish("tick", {"k": [1]}, 10000)
    message = json.loads(event_message(publish, 7, "3-7", 1700000000.25))
    assert message == {
        "type": "event",
        "event": "tick",
        "data": {"k": [1]},
        "seq": 7,
        "id": "3-7",
        "sent_at": 1700000000.25,
    }

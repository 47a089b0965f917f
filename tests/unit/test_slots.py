"""Who may take a worker slot (coordinator.slots): a hello and a heartbeat, a fake clock."""

from __future__ import annotations

from wsload.common.protocol import Hello
from wsload.coordinator.slots import Decision, Slots


def hello(worker_id: str) -> Hello:
    return Hello(worker_id, "host", 1, "0", 1, 1024)


def test_a_hello_alone_never_takes_a_slot() -> None:
    slots = Slots(1)
    assert slots.hello(hello("intruder"), joined=0, now=0.0) is Decision.WAIT
    # The real worker: hello first, its heartbeat a moment later.
    assert slots.hello(hello("real"), joined=0, now=0.5) is Decision.WAIT
    decision, admitted = slots.beat("real", joined=0, now=0.9)
    assert decision is Decision.ADMIT
    assert admitted == hello("real")
    # The intruder never beats; once the slot is taken it is refused even if it does.
    assert slots.beat("intruder", joined=1, now=5.0)[0] is Decision.REFUSE


def test_a_heartbeat_before_the_hello_vouches_for_it_for_a_while() -> None:
    slots = Slots(2, beat_valid=3.0)
    assert slots.beat("w0", joined=0, now=10.0) == (Decision.WAIT, None)
    assert slots.hello(hello("w0"), joined=0, now=12.0) is Decision.ADMIT
    assert slots.beat("w1", joined=1, now=20.0) == (Decision.WAIT, None)
    assert slots.hello(hello("w1"), joined=1, now=23.5) is Decision.WAIT  # that beat is stale
    assert slots.beat("w1", joined=1, now=24.0)[0] is Decision.ADMIT


def test_full_means_refused_at_once() -> None:
    slots = Slots(1)
    assert slots.hello(hello("late"), joined=1, now=0.0) is Decision.REFUSE


def test_a_flood_of_either_half_costs_bounded_memory() -> None:
    slots = Slots(1, memory=8)
    for i in range(1000):
        slots.hello(hello(f"h{i}"), joined=0, now=float(i))
        slots.beat(f"b{i}", joined=0, now=float(i))
    assert len(slots.pending) == 8
    assert len(slots.beats) == 8
    assert "h999" in slots.pending  # the newest are kept
    assert slots.beat("h999", joined=0, now=1000.0)[0] is Decision.ADMIT
    assert slots.beat("h0", joined=0, now=1000.0) == (Decision.WAIT, None)  # long forgotten

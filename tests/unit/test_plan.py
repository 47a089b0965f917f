"""The job planner: pure, so every property is checked directly."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsload.common.feeder import feeder_from_dict
from wsload.common.spec import JobSpec
from wsload.coordinator.errors import PlanError
from wsload.coordinator.plan import (
    FD_RESERVE,
    Assignment,
    Roster,
    WorkerCapacity,
    plan,
    worker_spec,
)


def test_proportional_to_cores_with_remainders_spread() -> None:
    workers = [WorkerCapacity("a", 2, 20000), WorkerCapacity("b", 1, 20000)]
    out = plan(10, 100.0, workers)
    assert [a.num_clients for a in out] == [7, 3]
    assert [a.client_offset for a in out] == [0, 7]
    assert [a.rate for a in out] == pytest.approx([70.0, 30.0])


def test_fewer_clients_than_workers() -> None:
    out = plan(2, None, [WorkerCapacity(str(i)) for i in range(4)])
    assert [a.num_clients for a in out] == [1, 1, 0, 0]
    assert all(a.rate is None for a in out)


def test_excess_flows_past_a_full_worker() -> None:
    small = WorkerCapacity("small", 8, FD_RESERVE + 10)
    big = WorkerCapacity("big", 1, 100_000)
    out = plan(1000, None, [small, big])
    assert [a.num_clients for a in out] == [10, 990]


def test_refused_when_it_cannot_fit() -> None:
    with pytest.raises(PlanError, match=r"1000 clients do not fit.*a: 36, b: 36"):
        plan(1000, None, [WorkerCapacity("a", 1, 100), WorkerCapacity("b", 1, 100)])
    with pytest.raises(PlanError, match="no workers"):
        plan(1, None, [])


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=50_000),
    st.one_of(st.none(), st.floats(min_value=0.1, max_value=1e6)),
    st.lists(st.tuples(st.integers(0, 64), st.integers(0, 30_000)), min_size=1, max_size=12),
)
def test_plan_properties(num: int, rate: float | None, caps: list[tuple[int, int]]) -> None:
    workers = [WorkerCapacity(f"w{i}", c, f) for i, (c, f) in enumerate(caps)]
    try:
        out = plan(num, rate, workers)
    except PlanError:
        assert num > sum(w.max_clients for w in workers)
        return
    assert sum(a.num_clients for a in out) == num
    offset = 0
    for a, w in zip(out, workers, strict=True):
        assert a.client_offset == offset
        assert 0 <= a.num_clients <= w.max_clients
        offset += a.num_clients
    if rate is not None and num:
        assert sum(a.rate or 0.0 for a in out) == pytest.approx(rate)


# -- handing a lost worker's clients on (Roster) ------------------------------


def _roster(
    caps: list[WorkerCapacity], num: int, rate: float | None = None, **kw: object
) -> Roster:
    per_client = rate / num if rate is not None else None
    return Roster(plan(num, rate, caps), caps, rate_per_client=per_client, **kw)  # type: ignore[arg-type]


def due(roster: Roster, now: float) -> list[Assignment]:
    """The shares handed on by ``now``."""
    return [h.share for h in roster.due(now)]


def test_a_dead_workers_clients_go_to_the_survivors_at_once() -> None:
    caps = [WorkerCapacity(w, 1, 20000) for w in "abc"]
    roster = _roster(caps, 30, rate=300.0, delay=3.0)
    assert roster.lose("b", now=10.0, certain=True) == 10
    assert roster.running == 20
    assert roster.orphaned == 10
    handed = due(roster, now=10.0)
    assert [(a.worker_id, a.num_clients, a.client_offset) for a in handed] == [
        ("a", 5, 10),
        ("c", 5, 15),
    ]
    assert [a.rate for a in handed] == pytest.approx([50.0, 50.0])  # 10 msg/s per client
    assert roster.orphaned == 0
    assert roster.running == 30
    assert roster.load("a") == roster.load("c") == 15


def test_a_silent_worker_is_handed_on_only_after_the_delay() -> None:
    """A worker cut off stops its own load after its dead-man timeout: no double load before."""
    caps = [WorkerCapacity("a"), WorkerCapacity("b")]
    roster = _roster(caps, 10, delay=3.0)
    roster.lose("a", now=100.0)
    assert roster.next_due() == 103.0
    assert due(roster, now=102.9) == []
    (handed,) = due(roster, now=103.0)
    assert (handed.worker_id, handed.num_clients, handed.client_offset) == ("b", 5, 0)
    assert handed.rate is None


def test_what_does_not_fit_stays_orphaned_until_an_elastic_join() -> None:
    small = WorkerCapacity("small", 1, FD_RESERVE + 12)
    caps = [WorkerCapacity("big", 1, FD_RESERVE + 10), small]
    roster = _roster(caps, 20)
    roster.lose("big", now=0.0, certain=True)
    (part,) = due(roster, now=0.0)
    assert (part.worker_id, part.num_clients, part.client_offset) == ("small", 2, 0)
    assert roster.orphaned == 8
    assert due(roster, now=1.0) == []
    roster.join(WorkerCapacity("late", 2, 20000))
    (rest,) = due(roster, now=2.0)
    assert (rest.worker_id, rest.num_clients, rest.client_offset) == ("late", 8, 2)
    assert roster.orphaned == 0
    assert roster.running == 20


def test_an_idle_elastic_worker_is_served_before_the_survivors() -> None:
    caps = [WorkerCapacity(w, 1, 20000) for w in "abc"]
    roster = _roster(caps, 30)
    roster.join(WorkerCapacity("spare", 1, 20000))
    roster.lose("a", now=0.0, certain=True)
    (handed,) = due(roster, now=0.0)
    assert (handed.worker_id, handed.num_clients, handed.client_offset) == ("spare", 10, 0)
    assert roster.load("b") == roster.load("c") == 10


def test_continue_keeps_orphans_for_elastic_joins_only() -> None:
    caps = [WorkerCapacity("a"), WorkerCapacity("b")]
    roster = _roster(caps, 10, hand_on=False)
    roster.lose("a", now=0.0, certain=True)
    assert due(roster, now=5.0) == []
    assert roster.orphaned == 5
    roster.join(WorkerCapacity("c"))
    assert [a.worker_id for a in due(roster, now=6.0)] == ["c"]


def test_a_second_loss_hands_on_what_the_first_handed_over() -> None:
    caps = [WorkerCapacity(w, 1, 20000) for w in "abc"]
    roster = _roster(caps, 9)
    roster.lose("a", now=0.0, certain=True)
    assert [(h.origin, h.share.worker_id) for h in roster.due(now=0.0)] == [("a", "b"), ("a", "c")]
    assert roster.load("b") == 5
    assert roster.load("c") == 4
    roster.lose("b", now=1.0, certain=True)
    handovers = roster.due(now=1.0)
    assert {h.origin for h in handovers} == {"b"}  # its own clients and those it had taken
    handed = [h.share for h in handovers]
    assert sum(a.num_clients for a in handed) == 5
    assert {a.worker_id for a in handed} == {"c"}
    assert roster.load("c") == 9
    assert roster.running == 9
    assert roster.lose("b", now=2.0) == 0  # lost once only
    assert roster.lose("nobody", now=2.0) == 0


def test_a_worker_that_declines_a_handover_is_passed_over() -> None:
    """A worker predating handovers answers busy: its handed clients go to the others."""
    caps = [WorkerCapacity(w, 1, 20000) for w in "abc"]
    roster = _roster(caps, 12, rate=12.0)
    roster.lose("a", now=0.0, certain=True)
    assert [h.share.worker_id for h in roster.due(now=0.0)] == ["b", "c"]
    assert roster.decline("b", now=1.0) == 2
    assert roster.load("b") == 4
    (again,) = roster.due(now=1.0)
    assert (again.origin, again.share.worker_id, again.share.num_clients) == ("a", "c", 2)
    assert again.share.client_offset == 0
    assert again.share.rate == pytest.approx(2.0)
    assert roster.load("c") == 8
    assert roster.running == 12
    assert roster.decline("c", now=2.0) == 4  # both handovers it took
    assert roster.due(now=2.0) == []  # nobody left who takes handovers
    assert roster.orphaned == 4


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=1, max_value=3000),
    st.lists(st.tuples(st.integers(1, 8), st.integers(FD_RESERVE, 3000)), min_size=2, max_size=6),
    st.lists(st.integers(0, 5), max_size=4),
    st.booleans(),
)
def test_handovers_keep_every_client_exactly_once(
    num: int, caps_in: list[tuple[int, int]], losses: list[int], joins: bool
) -> None:
    """Whatever is lost and joined: each client number is run by one live worker or orphaned."""
    caps = [WorkerCapacity(f"w{i}", c, f) for i, (c, f) in enumerate(caps_in)]
    try:
        roster = _roster(caps, num, rate=float(num))
    except PlanError:
        return
    now = 0.0
    for k, index in enumerate(losses):
        roster.lose(f"w{index % len(caps)}", now=now, certain=k % 2 == 0)
        if joins:
            roster.join(WorkerCapacity(f"j{k}", 1, 500))
        now += 5.0
        for a in due(roster, now):
            assert a.worker_id not in roster.lost
            assert a.rate == pytest.approx(a.num_clients)
    clients: list[int] = []
    for worker_id, chunks in roster.chunks.items():
        if worker_id in roster.lost:
            continue
        assert roster.load(worker_id) <= roster.capacity[worker_id].max_clients
        clients += [
            c for a in chunks for c in range(a.client_offset, a.client_offset + a.num_clients)
        ]
    clients += [
        c
        for _, a in roster.orphans
        for c in range(a.client_offset, a.client_offset + a.num_clients)
    ]
    assert sorted(clients) == list(range(num))
    assert roster.running + roster.orphaned == num
    assert all(a.worker_id in roster.lost for _, a in roster.orphans)  # each names its origin


# -- each worker's spec: the job's, with only its clients' feeder rows ---------------------------


def _feeder(mode: str, rows: int) -> dict[str, Any]:
    table = [[f"u{i}", f"p{i}"] for i in range(rows)]
    return {"file": "users.csv", "mode": mode, "columns": ["user", "password"],
            "rows": table, "offset": 0, "total": rows}  # fmt: skip


def test_unique_feeder_rows_are_disjoint_across_workers_and_cover_the_job() -> None:
    body = {"ws_url": "ws://127.0.0.1:9/ws", "num_clients": 10, "feeder": _feeder("unique", 12)}
    caps = [WorkerCapacity("a", 1), WorkerCapacity("b", 2), WorkerCapacity("c", 1)]
    shares = plan(10, None, caps)
    seen: list[str] = []
    for a in shares:
        spec = worker_spec(body, a.client_offset, a.num_clients)
        assert {k: v for k, v in spec.items() if k != "feeder"} == {
            k: v for k, v in body.items() if k != "feeder"
        }
        feeder = feeder_from_dict(spec["feeder"])
        assert feeder.offset == a.client_offset
        assert len(feeder.rows) == a.num_clients
        assert feeder.total == 12
        rng = random.Random(0)
        mine = range(a.client_offset, a.client_offset + a.num_clients)
        users = [feeder.row_for(g, rng)["user"] for g in mine]
        assert users == [f"u{g}" for g in mine]
        seen += users
    assert sorted(seen, key=lambda u: int(u[1:])) == [f"u{g}" for g in range(10)]
    assert body["feeder"]["rows"][0] == ["u0", "p0"]  # the job's own spec is untouched


def test_a_handed_on_share_carries_its_own_rows() -> None:
    body = {"feeder": _feeder("unique", 8)}
    spec = worker_spec(body, 5, 3)
    assert spec["feeder"]["rows"] == [["u5", "p5"], ["u6", "p6"], ["u7", "p7"]]
    assert spec["feeder"]["offset"] == 5


@pytest.mark.parametrize("mode", ["cycle", "random"])
def test_cycle_and_random_feeders_keep_every_row(mode: str) -> None:
    body = {"feeder": _feeder(mode, 3)}
    assert worker_spec(body, 2, 5)["feeder"]["rows"] == body["feeder"]["rows"]


def test_a_spec_without_a_feeder_is_unchanged() -> None:
    body = JobSpec(ws_url="ws://127.0.0.1:9/ws").to_dict()
    assert worker_spec(body, 3, 4) == body

"""The job planner: pure, so every property is checked directly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coordinator.errors import PlanError
from coordinator.plan import FD_RESERVE, WorkerCapacity, plan


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

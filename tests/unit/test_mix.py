"""Scenario mix: fixed clients are exact, weights split the rest to the last client,
and clients are interleaved so every worker's slice (and every prefix) keeps the mix."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsload.common.mix import Assignment, assign, mix_problems, split_counts
from wsload.common.program import Program


def program(name: str, weight: float = 1.0, clients: int | None = None) -> Program:
    return Program(name, (), (), weight=weight, clients=clients)


def test_fixed_clients_are_exact_and_weights_share_the_rest() -> None:
    mix = assign([program("a", 3), program("b", 1), program("c", clients=2)], 20)
    assert [mix.count(p) for p in range(3)] == [14, 4, 2]  # 18 by 3:1 is 13.5 : 4.5
    assert mix.total == 20
    assert mix.programs == 3


def test_largest_remainder_with_ties_to_the_first() -> None:
    mix = assign([program("a"), program("b"), program("c")], 10)
    assert [mix.count(p) for p in range(3)] == [4, 3, 3]
    mix = assign([program("a", 1), program("b", 2), program("c", 3)], 7)
    # quotas 7/6, 14/6, 21/6 = 1.17, 2.33, 3.5: floors 1, 2, 3 and the spare to c
    assert [mix.count(p) for p in range(3)] == [1, 2, 4]


def test_a_weight_of_zero_gets_no_client_and_that_is_no_problem() -> None:
    programs = [program("a", 1), program("quiet", 0)]
    assert mix_problems(programs, 5) == []
    mix = assign(programs, 5)
    assert (mix.count(0), mix.count(1)) == (5, 0)
    assert {mix.program_of(g) for g in range(5)} == {0}
    assert mix.count_in(1, 0, 5) == 0


def test_one_program_takes_every_client() -> None:
    mix = assign([program("only")], 7)
    assert [mix.locate(g) for g in range(7)] == [(0, g) for g in range(7)]


@pytest.mark.parametrize(
    ("programs", "total", "expected"),
    [
        ([], 5, ["scenarios: no scenario to run"]),
        (
            [program("a", clients=80), program("b", clients=40), program("c")],
            100,
            [
                "scenarios: fixed clients add up to 120, more than the job's 100 clients: "
                "raise the job's clients or lower the scenarios'"
            ],
        ),
        (
            [program("a", clients=60), program("b", clients=20)],
            100,
            [
                "scenarios: fixed clients add up to 80, the job has 100: give a scenario a "
                "weight instead of clients to take the other 20, or set the job's clients to 80"
            ],
        ),
        (
            [program("a", 0), program("b", 0)],
            3,
            ["scenarios: the weights add up to 0, with 3 clients to share"],
        ),
        (
            [program("a", 1000), program("rare", 1)],
            10,
            [
                "scenarios[2] (rare): weight 1 gives it none of the 10 clients shared by "
                "weight; raise its weight or the job's clients"
            ],
        ),
        (
            [program("a", -1), program("b", math.nan), program("c", clients=-2)],
            3,
            [
                "scenarios[1] (a): weight must be a number >= 0",
                "scenarios[2] (b): weight must be a number >= 0",
                "scenarios[3] (c): clients must be >= 0",
            ],
        ),
    ],
)
def test_problems_are_named(programs: list[Program], total: int, expected: list[str]) -> None:
    assert mix_problems(programs, total) == expected
    with pytest.raises(ValueError, match="scenarios"):
        assign(programs, total)


def test_fixed_clients_filling_the_job_leave_weights_idle() -> None:
    programs = [program("a", clients=3), program("b", 5)]
    assert mix_problems(programs, 3) == []
    mix = assign(programs, 3)
    assert (mix.count(0), mix.count(1)) == (3, 0)


def test_a_client_outside_the_job_is_an_index_error() -> None:
    mix = assign([program("a"), program("b")], 4)
    for g in (-1, 4):
        with pytest.raises(IndexError, match=f"client {g} is not one of the job's 4"):
            mix.program_of(g)
    with pytest.raises(IndexError):
        Assignment([0, 0]).program_of(0)


def depth(mix: Assignment) -> int:
    used = sum(1 for p in range(mix.programs) if mix.count(p))
    return math.ceil(math.log2(used)) if used > 1 else 0


PROGRAMS = st.lists(
    st.one_of(
        st.builds(program, st.just("w"), st.floats(0.01, 100)),
        st.builds(program, st.just("f"), st.just(1.0), st.integers(0, 40)),
    ),
    min_size=1,
    max_size=9,
)


@settings(max_examples=300, deadline=None)
@given(programs=PROGRAMS, extra=st.integers(0, 400))
def test_every_client_has_one_program_and_ranks_are_dense(
    programs: list[Program], extra: int
) -> None:
    fixed = sum(p.clients or 0 for p in programs)
    if all(p.clients is not None for p in programs):
        extra = 0
    total = fixed + extra
    mix = Assignment(split_counts(programs, total))  # weights may leave a program none
    counts = [mix.count(p) for p in range(len(programs))]
    assert sum(counts) == total
    for p, prog in enumerate(programs):
        if prog.clients is not None:
            assert counts[p] == prog.clients
    weighted = [p for p, prog in enumerate(programs) if prog.clients is None]
    whole = sum(programs[p].weight for p in weighted)
    for p in weighted:  # largest remainder: within one of the exact quota
        assert abs(counts[p] - extra * programs[p].weight / whole) < 1 + 1e-9
    located = [mix.locate(g) for g in range(total)]
    assert Counter(p for p, _ in located) == Counter({p: c for p, c in enumerate(counts) if c})
    for p in range(len(programs)):
        assert sorted(r for q, r in located if q == p) == list(range(counts[p]))
    # prefix counts agree with the clients themselves
    seen = [0] * len(programs)
    for g in range(total + 1):
        assert [mix.prefix(p, g) for p in range(len(programs))] == seen
        if g < total:
            seen[located[g][0]] += 1


@settings(max_examples=300, deadline=None)
@given(
    programs=PROGRAMS,
    extra=st.integers(1, 10**7),
    slices=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=20),
)
def test_every_slice_is_near_the_overall_mix(
    programs: list[Program], extra: int, slices: list[tuple[float, float]]
) -> None:
    """Any range of clients (a worker's share, a ramp's prefix) gets its share of each
    program within the tree's depth, even with ten million clients."""
    programs = [*programs, program("w")]
    total = sum(p.clients or 0 for p in programs) + extra
    mix = Assignment(split_counts(programs, total))
    bound = depth(mix)
    for a, b in slices:
        offset = int(min(a, b) * total)
        count = int(max(a, b) * total) - offset
        inside = [mix.count_in(p, offset, count) for p in range(len(programs))]
        assert sum(inside) == count
        for p, n in enumerate(inside):
            assert abs(n - count * mix.count(p) / total) < bound + 1e-9, (p, offset, count)
    rng = random.Random(extra)
    for g in (0, total - 1, *(rng.randrange(total) for _ in range(20))):
        p, rank = mix.locate(g)
        assert mix.prefix(p, g) == rank
        assert mix.count_in(p, g, 1) == 1


def test_workers_slices_get_the_mix_and_add_up_to_the_job() -> None:
    mix = assign([program("chat", 7), program("browse", 2), program("admin", clients=3)], 1000)
    shares = [(0, 334), (334, 333), (667, 333)]
    per_worker = [[mix.count_in(p, o, c) for p in range(3)] for o, c in shares]
    assert [sum(col) for col in zip(*per_worker, strict=True)] == [mix.count(p) for p in range(3)]
    assert mix.count(2) == 3
    for row, (_, c) in zip(per_worker, shares, strict=True):
        assert abs(row[0] - c * mix.count(0) / 1000) < 2
        assert abs(row[1] - c * mix.count(1) / 1000) < 2
    # and the first clients of a ramp are already mixed
    assert {mix.program_of(g) for g in range(5)} == {0, 1}


def test_the_same_inputs_give_the_same_assignment() -> None:
    programs = [program("a", 0.3), program("b", 0.7), program("c", clients=11)]
    first, second = assign(programs, 12345), assign(programs, 12345)
    assert [first.program_of(g) for g in range(0, 12345, 7)] == [
        second.program_of(g) for g in range(0, 12345, 7)
    ]

"""Load profiles: [[stages]] are checked with every problem named by its stage, and a
Profile's clients, slot windows, rate integral and pacing agree with each other."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsload.common.program import Stage
from wsload.common.stages import MAX_STAGES, Profile, parse_stages


def test_stages_parse_into_values() -> None:
    raw = [{"duration": 10, "clients": 100, "rate": 50}, {"duration": 2.5, "clients": 0, "rate": 0}]
    assert parse_stages(raw) == ((Stage(10.0, 100, 50.0), Stage(2.5, 0, 0.0)), [])
    no_rates = [{"duration": 10, "clients": 100}, {"duration": 2.5, "clients": 0}]
    assert parse_stages(no_rates) == ((Stage(10.0, 100, None), Stage(2.5, 0, None)), [])
    assert parse_stages([]) == ((), [])


def test_every_stage_gives_a_rate_or_none_does() -> None:
    """A stage without a rate among stages with one would silently send at 0 (or hold
    another stage's rate) and ignore the job's interval: refused, naming those stages."""
    raw = [
        {"duration": 5, "clients": 10},
        {"duration": 5, "clients": 10, "rate": 10},
        {"duration": 5, "clients": 10},
    ]
    assert parse_stages(raw) == (
        (),
        [
            "stages: stages 1, 3 give no rate while others do: give every stage a rate, "
            "or none (then the job's rate or interval applies)"
        ],
    )
    # said beside the other problems of the stages, in the same pass
    _, problems = parse_stages([{"duration": 5, "clients": 10}, {"duration": 0, "rate": 10}])
    assert problems == [
        "stages: stage 2: duration must be seconds > 0 and <= 604800, got int 0",
        "stages: stage 2: needs clients (the connected clients at its end)",
        "stages: stage 1 gives no rate while others do: give every stage a rate, "
        "or none (then the job's rate or interval applies)",
    ]


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        ({"duration": 1, "clients": 1, "rat": 5}, "unknown key 'rat' (did you mean 'rate'?)"),
        ({"duration": 1, "clinets": 1}, "unknown key 'clinets' (did you mean 'clients'?)"),
        ({"clients": 1}, "needs duration (seconds)"),
        ({"duration": 1}, "needs clients (the connected clients at its end)"),
        ({"duration": 0, "clients": 1}, "duration must be seconds > 0 and <= 604800, got int 0"),
        ({"duration": -3, "clients": 1}, "duration must be seconds > 0"),
        ({"duration": math.inf, "clients": 1}, "duration must be seconds > 0"),
        ({"duration": math.nan, "clients": 1}, "duration must be seconds > 0"),
        ({"duration": True, "clients": 1}, "duration must be seconds > 0"),
        ({"duration": "10s", "clients": 1}, "duration must be seconds > 0"),
        ({"duration": 1, "clients": 1.5}, "clients must be a whole number from 0 to"),
        ({"duration": 1, "clients": -1}, "clients must be a whole number"),
        ({"duration": 1, "clients": True}, "clients must be a whole number"),
        ({"duration": 1, "clients": 10**8}, "clients must be a whole number"),
        ({"duration": 1, "clients": 1, "rate": -1}, "rate must be iterations per second >= 0"),
        ({"duration": 1, "clients": 1, "rate": math.inf}, "rate must be iterations per second"),
        ("fast", "expected a table like {duration = 10, clients = 100}, got str 'fast'"),
    ],
)
def test_a_bad_stage_is_named_by_its_number(stage: Any, expected: str) -> None:
    first = {"duration": 5, "clients": 5}
    if isinstance(stage, dict) and "rate" in stage:
        first["rate"] = 5  # every stage gives a rate, or none does
    stages, problems = parse_stages([first, stage])
    assert stages == ()
    assert problems[0].startswith(f"stages: stage 2: {expected}"), problems
    assert all(p.startswith("stages: stage 2: ") for p in problems)


def test_every_problem_is_reported_at_once() -> None:
    _, problems = parse_stages([{"duration": 0, "clients": -1}, {"duraton": 1, "clients": 1}])
    assert [p.split(":")[1] for p in problems] == [" stage 1", " stage 1", " stage 2", " stage 2"]
    assert "stages: stage 2: unknown key 'duraton' (did you mean 'duration'?)" in problems


def test_the_list_itself_is_checked() -> None:
    assert parse_stages({"duration": 1})[1] == [  # type: ignore[arg-type]
        "stages: expected a list of tables ([[stages]]), got dict {'duration': 1}"
    ]
    assert parse_stages("abc")[1][0].startswith("stages: expected a list of tables")
    many = [{"duration": 1, "clients": 1}] * (MAX_STAGES + 1)
    assert parse_stages(many)[1] == [f"stages: {MAX_STAGES + 1} stages, at most {MAX_STAGES}"]
    assert parse_stages([{"duration": 1, "clients": 0}])[1] == [
        "stages: no stage has clients > 0; the run would test nothing"
    ]


def spike() -> Profile:
    """Up to 100 in 10 s, down to 10 in 2 s, hold 8 s, up to 60 in 5 s."""
    return Profile(
        [Stage(10, 100, 50.0), Stage(2, 10), Stage(8, 10, 20.0), Stage(5, 60, 20.0)],
        base_rate=7.0,
    )


def test_clients_move_linearly_from_the_previous_stage() -> None:
    p = spike()
    assert (p.duration, p.peak_clients) == (25.0, 100)
    samples = {-1: 0, 0: 0, 5: 50, 10: 100, 11: 55, 12: 10, 16: 10, 20: 10, 22.5: 35, 25: 60}
    for t, clients in samples.items():
        assert p.clients_at(t) == pytest.approx(clients), t
    assert p.clients_at(99) == 60  # the last stage holds
    assert (p.connected_at(0), p.connected_at(0.001), p.connected_at(5), p.connected_at(5.01)) == (
        0,
        1,
        50,
        51,
    )


def test_a_stage_without_a_rate_holds_the_previous_one() -> None:
    p = spike()
    assert p.sets_rate
    samples = {-1: 0, 0: 0, 5: 25, 10: 50, 11: 50, 12: 50, 16: 35, 20: 20, 24: 20, 30: 20}
    for t, rate in samples.items():
        assert p.rate_at(t) == pytest.approx(rate), t
    # clients ramp first (no rate), then the rate ramps from 0
    q = Profile([Stage(5, 10), Stage(5, 10, 100.0)])
    assert (q.rate_at(4), q.rate_at(7.5), q.rate_at(10)) == (0.0, 50.0, 100.0)


def test_without_stage_rates_the_jobs_rate_model_applies_unchanged() -> None:
    p = Profile([Stage(10, 100), Stage(10, 0)], base_rate=40.0)
    assert not p.sets_rate
    assert p.rate_at(-5) == p.rate_at(3) == p.rate_at(30) == 40.0
    assert p.expected_iterations(2, 7) == 200.0
    assert p.next_start(1.0, 0.5, 10) == pytest.approx(1.5)
    interval = Profile([Stage(10, 100)])
    assert interval.rate_at(3) is None
    assert interval.expected_iterations(0, 1) is None
    with pytest.raises(ValueError, match="interval model"):
        interval.time_after(0, 1)


def test_windows_of_a_spike() -> None:
    p = spike()
    assert p.windows(0) == [(0.0, 25.0)]
    assert p.windows(5) == [(0.5, 25.0)]
    assert p.windows(49) == [pytest.approx((4.9, 10 + 2 * 51 / 90)), pytest.approx((23.9, 25))]
    up, again = p.windows(50)
    assert up == pytest.approx((5.0, 10 + 2 * 50 / 90))
    assert again == pytest.approx((20 + 5 * 40 / 50, 25.0))
    assert p.windows(99) == [pytest.approx((9.9, 10 + 2 / 90))]
    assert p.windows(100) == []
    assert p.windows(59, end=40) == [pytest.approx((5.9, 10 + 2 * 41 / 90)), (24.9, 40)]
    assert p.windows(0, end=3) == [(0.0, 3.0)]


def test_down_to_zero_and_straight_up_again_is_one_window() -> None:
    p = Profile([Stage(2, 4), Stage(2, 0), Stage(2, 4)])
    assert p.windows(0) == [(0.0, 6.0)]
    assert p.windows(3) == [(1.5, 2.5), (5.5, 6.0)]


STAGE = st.builds(
    Stage,
    duration=st.floats(min_value=0.01, max_value=100),
    clients=st.integers(min_value=0, max_value=60),
    rate=st.none() | st.just(0.0) | st.floats(min_value=1e-3, max_value=1000),
)


@settings(max_examples=120, deadline=None)
@given(stages=st.lists(STAGE, min_size=1, max_size=8), data=st.data())
def test_windows_agree_with_clients_at_sampled(stages: list[Stage], data: st.DataObject) -> None:
    p = Profile(stages)
    points = data.draw(st.lists(st.floats(0, p.duration), min_size=50, max_size=50))
    points += [p.duration * i / 97 for i in range(97)]
    for k in range(p.peak_clients + 1):
        spans = p.windows(k)
        for a, b in spans:
            assert 0 <= a < b <= p.duration
        for (_, b1), (a2, _) in itertools.pairwise(spans):
            assert b1 < a2  # in order, disjoint, touching ones merged
        for t in points:
            # at a crossing (C(t) == k) the answer is a matter of rounding, and where a
            # window ends just as the next one starts they are merged (no reconnect)
            near = any(min(abs(t - a), abs(t - b)) < 1e-7 for a, b in spans)
            if not near and abs(p.clients_at(t) - k) > 1e-9:
                inside = any(a < t < b for a, b in spans)
                assert inside == (p.clients_at(t) > k), (k, t, spans)
    for t in points:
        # connected slots are a prefix: 0 .. connected_at(t) - 1
        n = p.connected_at(t)
        assert n == min(p.peak_clients, math.ceil(p.clients_at(t)))


def riemann(p: Profile, t0: float, t1: float, steps: int = 4000) -> float:
    h = (t1 - t0) / steps
    total = 0.0
    for i in range(steps):
        rate = p.rate_at(t0 + (i + 0.5) * h)
        assert rate is not None
        total += rate * h
    return total


@settings(max_examples=200, deadline=None)
@given(
    stages=st.lists(STAGE, min_size=1, max_size=6).filter(
        lambda s: any(x.rate is not None for x in s)
    ),
    a=st.floats(-5, 1.2),
    b=st.floats(-5, 1.2),
)
def test_expected_iterations_is_the_integral_of_the_rate(
    stages: list[Stage], a: float, b: float
) -> None:
    p = Profile(stages)
    t0, t1 = sorted((a * p.duration, b * p.duration))
    got = p.expected_iterations(t0, t1)
    assert got is not None
    # a midpoint sum is exact on linear pieces except where a piece starts inside a step
    assert got == pytest.approx(riemann(p, t0, t1), rel=2e-3, abs=1e-6 + 1000 * (t1 - t0) / 2000)
    mid = (t0 + t1) / 2
    left, right = p.expected_iterations(t0, mid), p.expected_iterations(mid, t1)
    assert left is not None
    assert right is not None
    assert got == pytest.approx(left + right, rel=1e-9, abs=1e-9)
    if t1 > t0:
        assert p.expected_iterations(t1, t0) == 0.0


@settings(max_examples=300, deadline=None)
@given(
    stages=st.lists(STAGE, min_size=1, max_size=6).filter(
        lambda s: any(x.rate is not None for x in s)
    ),
    start=st.floats(-2, 1.1),
    amount=st.floats(0, 5000),
)
def test_time_after_inverts_the_integral(stages: list[Stage], start: float, amount: float) -> None:
    p = Profile(stages)
    t0 = start * p.duration
    t = p.time_after(t0, amount)
    assert t >= t0
    whole = p.expected_iterations(t0, max(t0, p.duration) + 1)
    assert whole is not None
    if math.isinf(t):
        assert p.rate_at(p.duration) == 0
        assert whole < amount * (1 + 1e-9)
        return
    got = p.expected_iterations(t0, t)
    assert got == pytest.approx(amount, rel=1e-6, abs=1e-6)
    if amount > 0:  # the earliest such time: a hair earlier is not enough
        before = p.expected_iterations(t0, t - 1e-6 * max(1.0, t))
        assert before is not None
        assert before <= amount + 1e-6


def test_next_start_with_a_constant_rate_is_the_period() -> None:
    p = Profile([Stage(100, 10, 100.0), Stage(100, 10, 100.0)])
    # 10 clients doing a quarter of 100/s: each one every 0.4 s
    assert p.next_start(150.0, 0.25, 10) == pytest.approx(150.4)
    assert p.next_start(150.0, 0.0, 10) == math.inf
    assert p.next_start(150.0, 1.0, 0) == pytest.approx(150.01)  # as if one client


def test_next_start_waits_for_a_rate_that_rises_later() -> None:
    p = Profile([Stage(10, 5, 0.0), Stage(10, 5, 10.0)])
    # rate 0 until 10 s, then 1/s more each second: one iteration of 1 client needs 1 s^2/2
    assert p.next_start(3.0, 1.0, 1) == pytest.approx(10 + math.sqrt(2))
    stopped = Profile([Stage(10, 5, 10.0), Stage(5, 5, 0.0)])
    assert stopped.next_start(14.9, 1.0, 1000) == math.inf


def simulate(p: Profile, shared: bool = True) -> list[int]:
    """Iterations started per second when every connected slot paces with
    shared_next_start (or next_start with the count at the start), its first
    iteration phased by its slot number."""

    def follow(t: float, phase: float = 1.0) -> float:
        if shared:
            return p.shared_next_start(t, phase)
        return p.next_start(t, 1.0, p.connected_at(t), phase)

    per_second = [0] * math.ceil(p.duration)
    for k in range(p.peak_clients):
        for a, b in p.windows(k):
            t = follow(a, ((k + 0.5) * 0.6180339887) % 1)
            while t < b:
                per_second[min(int(t), len(per_second) - 1)] += 1
                t = follow(t)
    return per_second


@pytest.mark.parametrize(
    "stages",
    [
        # constant clients, the rate ramps up, holds and ramps down
        [Stage(5, 20, 200.0), Stage(20, 20, 200.0), Stage(10, 20, 50.0)],
        # clients and rate ramp up together, then clients leave at a constant rate
        [Stage(10, 100, 100.0), Stage(10, 100, 100.0), Stage(5, 0, 100.0)],
        # a fast ramp-down of most clients at a high rate
        [Stage(10, 1000, 1000.0), Stage(5, 1000, 1000.0), Stage(2, 100), Stage(3, 100)],
    ],
)
def test_connected_clients_sharing_the_job_rate_follow_the_profile(stages: list[Stage]) -> None:
    """The documented approximation, end to end: per-second counts track the rate."""
    p = Profile(stages)
    counts = simulate(p)
    for second, count in enumerate(counts):
        expected = p.expected_iterations(second, second + 1)
        assert expected is not None
        assert count == pytest.approx(expected, rel=0.06, abs=12), (second, counts)
    total = p.expected_iterations(0, p.duration)
    assert total is not None
    assert sum(counts) == pytest.approx(total, rel=0.01)


def test_the_count_at_the_start_alone_lags_while_clients_leave() -> None:
    """Why shared_next_start takes the count mid-period: with the start's count,
    clients leaving at a constant rate leave the run about 10 % short per second."""
    p = Profile([Stage(10, 100, 100.0), Stage(10, 100, 100.0), Stage(5, 0, 100.0)])
    frozen, shared = simulate(p, shared=False)[20:], simulate(p)[20:]
    assert max(frozen) <= 92
    assert min(shared) >= 97


def test_clients_connected_while_the_rate_is_zero_wait_for_it() -> None:
    p = Profile([Stage(10, 100), Stage(10, 100, 100.0)])
    counts = simulate(p)
    assert counts[:10] == [0] * 10
    assert sum(counts) == pytest.approx(500, rel=0.05)


def test_phase_takes_a_share_of_the_first_period() -> None:
    p = Profile([Stage(1, 10, 100.0), Stage(100, 10, 100.0)])
    t = 50.0
    assert p.next_start(t, 1.0, 10, phase=0.5) - t == pytest.approx(
        (p.next_start(t, 1.0, 10) - t) / 2, rel=1e-3
    )
    assert p.next_start(t, 1.0, 10, phase=0.0) == t
    assert p.shared_next_start(t, 0.5) == pytest.approx(t + 0.05)
    assert p.shared_next_start(t) == pytest.approx(t + 0.1)
    assert Profile([Stage(1, 1, 5.0), Stage(1, 1, 0.0)]).shared_next_start(1.9) == math.inf


def test_an_empty_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one stage"):
        Profile([])

"""The test server's fault policy, without sockets."""

from __future__ import annotations

import pytest

from testserver.faults import FaultConfigError, FaultPolicy, Faults


def test_no_faults_reply_at_once_never_close() -> None:
    policy = FaultPolicy(Faults(), started=0.0)
    for n in range(1, 100):
        d = policy.decide(5.0, n)
        assert d.reply_at == 5.0
        assert not d.close_after_reply


def test_delay_is_added() -> None:
    assert FaultPolicy(Faults(delay=0.2), started=0.0).decide(1.0, 1).reply_at == pytest.approx(1.2)


def test_stalls_hold_replies_until_the_stall_ends() -> None:
    policy = FaultPolicy(Faults(stall_every=1.0, stall_for=0.3), started=10.0)
    assert policy.decide(10.1, 1).reply_at == pytest.approx(10.3)  # inside the first stall
    assert policy.decide(10.5, 2).reply_at == pytest.approx(10.5)  # between stalls
    assert policy.decide(12.05, 3).reply_at == pytest.approx(12.3)  # a later stall


def test_drop_rate_is_seeded_and_roughly_right() -> None:
    a = FaultPolicy(Faults(drop_rate=0.25), started=0.0, seed=3)
    b = FaultPolicy(Faults(drop_rate=0.25), started=0.0, seed=3)
    da = [a.decide(0.0, n).reply_at is None for n in range(1, 4001)]
    db = [b.decide(0.0, n).reply_at is None for n in range(1, 4001)]
    assert da == db
    assert 800 < sum(da) < 1200
    assert all(
        FaultPolicy(Faults(drop_rate=1.0), started=0).decide(0, 1).reply_at is None
        for _ in range(5)
    )


def test_close_after_n() -> None:
    policy = FaultPolicy(Faults(close_after=3), started=0.0)
    assert [policy.decide(0.0, n).close_after_reply for n in (1, 2, 3)] == [False, False, True]


@pytest.mark.parametrize(
    ("faults", "needle"),
    [
        (Faults(stall_for=0.5), "--stall-for needs --stall-every"),
        (Faults(stall_every=1.0, stall_for=1.0), "must be above 0 and below --stall-every"),
        (Faults(stall_every=1.0), "must be above 0 and below"),
        (Faults(drop_rate=1.5), "--drop-rate must be between 0 and 1"),
        (Faults(delay=-0.001), "--delay must be zero or more"),
    ],
)
def test_contradictions_are_refused(faults: Faults, needle: str) -> None:
    assert any(needle in p for p in faults.problems())
    with pytest.raises(FaultConfigError, match=needle.replace("(", r"\(")):
        FaultPolicy(faults, started=0.0)

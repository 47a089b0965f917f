"""The coordinator's merge of worker windows (sans-I/O: messages in, figures out)."""

from __future__ import annotations

import pytest

from wsload.common.errors import ProtocolError
from wsload.common.fanout_wire import FanoutWindow, SubscriptionRecord
from wsload.common.protocol import Result, Samples, StepWindow, decode, encode
from wsload.common.spec import JobSpec
from wsload.coordinator.aggregate import MAX_ERROR_KINDS, UNLISTED, RunAggregate
from wsload.coordinator.figures import StepCounters
from wsload.coordinator.step_aggregate import (
    MAX_SCENARIOS,
    MAX_STEPS,
    OTHER_SCENARIOS,
    OTHER_STEPS,
    workload_names,
)


def window(seq: int, latency: list[int], service: list[int]) -> Samples:
    counters = {"sent": len(latency), "received": len(latency)}
    msg = Samples.window(
        "j", seq, (100.0 + seq, 100.25 + seq), counters, {}, (latency, service, [])
    )
    decoded = decode(encode(msg))  # as it arrives: through the wire format
    assert isinstance(decoded, Samples)
    return decoded


def test_windows_merge_once_with_service_time_rebuilt_from_the_lag() -> None:
    agg = RunAggregate(100.0)
    assert agg.add_samples("w1", window(0, [1_000, 2_000], [900, 2_000]))
    assert agg.add_samples("w2", window(0, [3_000], [2_500]))
    assert not agg.add_samples("w1", window(0, [1_000, 2_000], [900, 2_000]))  # a replay
    assert agg.ignored_windows == 1
    assert agg.latency.count == agg.service.count == 3
    assert agg.latency.max == 3_000
    assert agg.service.min == 900
    assert agg.totals()["received"] == 3


def test_malformed_samples_merge_nothing() -> None:
    agg = RunAggregate(100.0)
    bad = Samples("j", 0, 100.0, 100.25, {"sent": 5, "received": 5}, {}, b"\x05\x06", b"\x00")
    with pytest.raises(ProtocolError, match="2 latencies but 1 lags"):
        agg.add_samples("w1", bad)
    assert agg.totals().get("sent", 0) == 0
    assert agg.latency.count == 0
    assert agg.add_samples("w1", window(0, [10], [10]))  # the same seq, well formed, still counts


def test_a_worker_cannot_grow_the_summary_with_names_of_its_own() -> None:
    agg = RunAggregate(100.0)
    errors = {f"kind{i}": 1 for i in range(1000)} | {"x" * 5000: 7}
    msg = Samples.window(
        "j", 0, (100.0, 100.25), {"sent": 1, "received": 1, "invented": 5}, errors, ([5], [5], [])
    )
    decoded = decode(encode(msg))
    assert isinstance(decoded, Samples)
    agg.add_samples("w1", decoded)
    merged = agg.errors()
    assert len(merged) == MAX_ERROR_KINDS + 1
    assert merged[UNLISTED] == 1000 - MAX_ERROR_KINDS + 7
    assert sum(merged.values()) == 1007  # every error still counted
    assert "invented" not in agg.totals()
    (second,) = agg.seconds.values()
    assert second.errors == merged


# -- a conversation's steps: hand-made windows, as a worker would send them ---------------------

STEPS = ("login ok", "ack")


def conv_window(
    seq: int,
    steps: dict[str, StepWindow],
    scenarios: dict[str, dict[str, int]] | None = None,
    at: float = 100.0,
) -> Samples:
    """A conversation's window: run-level counters derived from its steps, as the worker does."""
    begun = sum(s.counters.get("expected", 0) for s in steps.values())
    met = sum(s.counters.get("met", 0) for s in steps.values())
    counters = {"sent": begun, "expected": begun, "received": met}
    for k in ("timed_out", "failed", "lost", "unanswered"):
        counters[k] = sum(s.counters.get(k, 0) for s in steps.values())
    msg = Samples.window(
        "j", seq, (at + seq, at + 0.25 + seq), counters, {}, ([], [], []), steps, scenarios
    )
    decoded = decode(encode(msg))
    assert isinstance(decoded, Samples)
    return decoded


def test_steps_merge_per_worker_and_in_total_with_their_own_latencies() -> None:
    agg = RunAggregate(100.0, step_names=STEPS, scenario_names=("chat",))
    login = StepWindow({"expected": 2, "met": 2}, [5_000, 7_000], [1_000, 2_000])
    ack = StepWindow({"expected": 3, "met": 2, "timed_out": 1}, [40_000, 60_000], [400, 600])
    assert agg.add_samples(
        "w1",
        conv_window(
            0, {"login ok": login, "ack": ack}, {"chat": {"unsolicited": 4, "iterations": 2}}
        ),
    )
    ack2 = StepWindow({"expected": 1, "met": 1}, [80_000], [800])
    assert agg.add_samples("w2", conv_window(0, {"ack": ack2}, {"chat": {"iterations": 1}}))
    assert not agg.add_samples("w2", conv_window(0, {"ack": ack2}))  # a replay counts once
    f = agg.figures(2.0)
    assert [s.name for s in f.steps] == list(STEPS)
    login_f, ack_f = f.steps
    assert login_f.counters == StepCounters(expected=2, met=2)
    assert ack_f.counters == StepCounters(expected=4, met=3, timed_out=1)
    assert ack_f.counters.balanced
    assert ack_f.success_rate == 75.0
    assert ack_f.latency.max == pytest.approx(0.080, rel=1e-3)
    assert ack_f.service_time.max == pytest.approx(0.0008, rel=1e-3)
    assert ack_f.avg_latency == pytest.approx(0.060)
    assert login_f.latency.p50 == pytest.approx(0.005, rel=1e-3)
    assert dict(ack_f.workers) == {
        "w1": StepCounters(expected=3, met=2, timed_out=1),
        "w2": StepCounters(expected=1, met=1),
    }
    assert [(s.name, s.unsolicited, s.iterations) for s in f.scenarios] == [("chat", 4, 3)]
    # The run-level latency is the echo path's: a conversation's is per step.
    assert agg.latency.count == 0
    worker = {w.worker_id: w for w in f.workers}
    assert worker["w1"].steps["ack"] == StepCounters(expected=3, met=2, timed_out=1)
    assert f.counters.balanced


def test_a_step_that_never_began_is_shown_with_no_data() -> None:
    agg = RunAggregate(100.0, step_names=STEPS)
    agg.add_samples("w1", conv_window(0, {"login ok": StepWindow({"expected": 1, "timed_out": 1})}))
    login_f, ack_f = agg.figures(1.0).steps
    assert login_f.counters == StepCounters(expected=1, timed_out=1)
    assert login_f.latency.p99 is None
    assert login_f.success_rate == 0.0
    assert ack_f.counters == StepCounters()
    assert ack_f.success_rate is None
    assert ack_f.latency.to_json() == dict.fromkeys(["p50", "p90", "p95", "p99", "p99.9", "max"])


def test_a_lost_workers_expects_in_flight_count_as_lost_in_their_steps() -> None:
    agg = RunAggregate(100.0, step_names=STEPS)
    # w1 began 5 acks, 2 met, 1 timed out: 2 in flight when it is lost.
    ack = StepWindow({"expected": 5, "met": 2, "timed_out": 1}, [1_000, 2_000], [1_000, 2_000])
    agg.add_samples("w1", conv_window(0, {"ack": ack}))
    agg.add_samples("w2", conv_window(0, {"ack": StepWindow({"expected": 1})}))
    agg.add_result("w2", Result("j", True, {}, {}, {}))  # w2 finished: its in-flight is not lost
    agg.mark_lost("w1")
    f = agg.figures(1.0)
    ack_f = f.step("ack")
    assert ack_f is not None
    assert ack_f.workers["w1"] == StepCounters(expected=5, met=2, timed_out=1, lost=2)
    assert ack_f.workers["w1"].balanced
    assert ack_f.counters == StepCounters(expected=6, met=2, timed_out=1, lost=2)
    w1 = next(w for w in f.workers if w.worker_id == "w1")
    assert w1.in_flight_at_loss == 2  # the run level says the same
    assert w1.counters.balanced


def test_malformed_step_samples_merge_nothing() -> None:
    agg = RunAggregate(100.0, step_names=STEPS)
    body = Samples("j", 0, 100.0, 100.25, {"expected": 2, "received": 2},
                   steps={"ack": {"counters": {"expected": 2, "met": 2}, "latency": b"\x05",
                                  "lag": b"\x00"}})  # fmt: skip
    with pytest.raises(ProtocolError, match="1 latencies for 2 met"):
        agg.add_samples("w1", body)
    assert agg.totals()["expected"] == 0
    assert agg.steps.totals == {"login ok": {}, "ack": {}}
    assert agg.add_samples("w1", conv_window(0, {"ack": StepWindow({"expected": 1})}))


def test_a_worker_cannot_grow_the_summary_with_step_names_of_its_own() -> None:
    agg = RunAggregate(100.0, step_names=STEPS, scenario_names=("chat",))
    for seq in range(3):
        many = {f"w{seq}-s{i}": StepWindow({"expected": 1}) for i in range(MAX_STEPS)}
        scenarios = {f"w{seq}-c{i}": {"unsolicited": 1} for i in range(MAX_SCENARIOS)}
        agg.add_samples("w1", conv_window(seq, many, scenarios))
    steps = agg.figures(1.0).steps
    assert [s.name for s in steps[:3]] == [*STEPS, "w0-s0"]  # the job's own steps first
    assert len(steps) == MAX_STEPS + 1
    assert steps[-1].name == OTHER_STEPS
    assert sum(s.counters.expected for s in steps) == 3 * MAX_STEPS  # every expect counted
    scenarios_f = agg.figures(1.0).scenarios
    assert len(scenarios_f) == MAX_SCENARIOS + 1
    assert scenarios_f[0].name == "chat"
    assert scenarios_f[-1].name == OTHER_SCENARIOS
    assert sum(s.unsolicited for s in scenarios_f) == 3 * MAX_SCENARIOS


def test_steps_per_second_and_in_progress() -> None:
    agg = RunAggregate(100.0, step_names=STEPS)
    for seq in range(3):
        ack = StepWindow(
            {"expected": seq + 1, "met": seq + 1}, [1_000] * (seq + 1), [900] * (seq + 1)
        )
        agg.add_samples("w1", conv_window(seq, {"ack": ack}, at=100.5))
    series = agg.time_series()
    assert [row.steps["ack"].met for row in series] == [1, 2, 3]
    assert series[0].to_json()["steps"] == {"ack": {"expected": 1, "met": 1}}
    progress = agg.progress(3.0)
    assert progress.steps["ack"] == StepCounters(expected=6, met=6)
    login = StepWindow({"expected": 1, "met": 1}, [5], [5])
    agg.add_samples("w2", conv_window(9, {"ack": ack, "login ok": login}, at=100.5))
    assert list(agg.time_series()[-1].steps) == ["login ok", "ack"]  # the workload's order
    echo = RunAggregate(100.0)
    echo.add_samples("w1", window(0, [10], [10]))
    assert "steps" not in echo.time_series()[0].to_json()  # an echo row is unchanged


def test_the_workloads_steps_scenarios_and_clients_come_from_the_spec() -> None:
    loop = ({"send": "m{seq}"}, {"name": "ack", "expect": "a{seq}"}, {"think": 0.1})
    setup = ({"send": "hi"}, {"name": "login ok", "expect": "ok"})
    single = JobSpec(ws_url="ws://127.0.0.1:9/ws", num_clients=10, steps=setup, loop=loop)
    assert workload_names(single) == (("login ok", "ack"), ("default",), {"default": 10})
    mixed = JobSpec(ws_url="ws://127.0.0.1:9/ws", num_clients=10, scenarios=(
        {"name": "chat", "weight": 3, "loop": [{"send": "x"}, {"name": "ack", "expect": "x"}]},
        {"name": "idle", "clients": 2, "loop": [{"send": "y"}, {"expect": "y"}]},
    ))  # fmt: skip
    names = workload_names(mixed)
    assert names == (("ack", "idle step 2"), ("chat", "idle"), {"chat": 8, "idle": 2})
    agg = RunAggregate(100.0, *names)
    assert [(s.name, s.clients) for s in agg.figures(1.0).scenarios] == [("chat", 8), ("idle", 2)]
    assert workload_names(JobSpec(ws_url="ws://127.0.0.1:9/ws")) == ((), (), {})  # echo


def _fanout_window(seq: int, fanout: FanoutWindow) -> Samples:
    msg = Samples.window("j", seq, (100.0 + seq, 100.25 + seq), {}, {}, ([], [], []), fanout=fanout)
    decoded = decode(encode(msg))
    assert isinstance(decoded, Samples)
    return decoded


def test_deliveries_reach_the_ledger_once_per_window() -> None:
    t0 = 1_700_000_000_000_000
    agg = RunAggregate(100.0)
    pubs = FanoutWindow(pubs={"news": [(s, t0 + s * 1000) for s in range(10)]})
    subs = FanoutWindow(
        subs=[SubscriptionRecord.of(4, "news", t0, t0 + 10**7, [(0, 6), (8, 9)])],
        latency={"news": [1500] * 9},
        counts={"news": {"deliveries": 10, "duplicates": 1}},
    )
    assert agg.add_samples("pub", _fanout_window(0, pubs))
    assert agg.add_samples("sub", _fanout_window(0, subs))
    assert not agg.add_samples("sub", _fanout_window(0, subs))  # a replay counts nothing
    fanout = agg.figures(1.0).fanout
    assert fanout is not None
    t = fanout.total
    assert (t.published, t.expected, t.delivered, t.missing, t.duplicates) == (10, 10, 9, 1, 1)
    assert [(m.seq, m.client) for m in fanout.missing_sample] == [(7, 4)]
    assert t.latency.p50 is not None


def test_malformed_deliveries_merge_nothing_of_their_window() -> None:
    agg = RunAggregate(100.0)
    bad = Samples("j", 0, 100.0, 100.25, {"sent": 1}, fanout={"subs": [b"\x01t\x80"]})
    with pytest.raises(ProtocolError):
        agg.add_samples("w1", bad)
    assert agg.totals()["sent"] == 0
    fanout = agg.figures(1.0).fanout
    assert fanout is not None
    assert not fanout.active

"""The delivery ledger: expected = delivered + missing, across workers and clocks."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

from wsload.common.fanout_wire import ALL_TOPICS, FanoutWindow, SubscriptionRecord, decode_fanout
from wsload.coordinator import fanout as fanout_module
from wsload.coordinator.fanout import MISSING_SAMPLE, FanoutLedger

T0 = 1_700_000_000_000_000  # epoch µs
MS = 1000


def pubs(seqs: range, step: int = 10 * MS, at: int = T0) -> list[tuple[int, int]]:
    """Publication ``s`` at ``at + s * step``."""
    return [(s, at + s * step) for s in seqs]


def wire(window: FanoutWindow) -> FanoutWindow:
    """Through the wire and back, as the coordinator receives it."""
    return decode_fanout(window.encode())


def sub(
    client: int, start_seq: int, end_seq: int, got: list[tuple[int, int]], topic: str = "news"
) -> SubscriptionRecord:
    """Subscribed just before publication ``start_seq``, ended just before ``end_seq``."""
    return SubscriptionRecord.of(
        client, topic, T0 + start_seq * 10 * MS - 1, T0 + end_seq * 10 * MS - 1, got
    )


def test_expected_delivered_missing_early_extra() -> None:
    ledger = FanoutLedger()
    ledger.add("w1", wire(FanoutWindow(pubs={"news": pubs(range(100))})))
    ledger.add(
        "w2",
        wire(
            FanoutWindow(
                subs=[
                    sub(1, 0, 100, [(0, 99)]),  # everything
                    sub(2, 0, 100, [(0, 49), (52, 99)]),  # missed 50, 51
                    sub(3, 50, 100, [(40, 99), (200, 201)]),  # late: 40..49 early; 200, 201 extra
                ],
                counts={"news": {"deliveries": 260, "duplicates": 3, "out_of_order": 2}},
            )
        ),
    )
    f = ledger.figures()
    t = f.total
    assert (t.published, t.expected, t.delivered, t.missing) == (100, 250, 248, 2)
    assert (t.early, t.extra, t.duplicates, t.out_of_order) == (10, 2, 3, 2)
    assert t.expected == t.delivered + t.missing
    assert t.subscriptions == 3
    assert [(m.topic, m.seq, m.client) for m in f.missing_sample] == [
        ("news", 50, 2),
        ("news", 51, 2),
    ]
    assert [r.name for r in f.topics] == ["news"]
    assert f.metric("fanout.missing") == 2.0
    assert f.metric("fanout.delivery_rate") == 100.0 * 248 / 250


def test_late_subscribers_are_not_charged_for_earlier_publications() -> None:
    ledger = FanoutLedger()
    ledger.add("w1", wire(FanoutWindow(pubs={"news": pubs(range(1000))})))
    subs = [sub(c, c * 10, 1000, [(c * 10, 999)]) for c in range(50)]
    ledger.add("w2", wire(FanoutWindow(subs=subs)))
    t = ledger.figures().total
    assert t.missing == 0
    assert t.early == 0
    assert t.expected == sum(1000 - c * 10 for c in range(50))


def test_a_subscription_ended_early_is_owed_only_its_window() -> None:
    ledger = FanoutLedger()
    ledger.add("w1", wire(FanoutWindow(pubs={"news": pubs(range(100))})))
    ledger.add("w1", wire(FanoutWindow(subs=[sub(1, 0, 30, [(0, 29)])])))
    t = ledger.figures().total
    assert (t.expected, t.delivered, t.missing) == (30, 30, 0)


def test_a_publication_at_exactly_the_subscription_start_is_owed_at_its_end_not() -> None:
    """The window is [subscribed_at, ended_at): confirmed at t, a publication at t is owed."""
    ledger = FanoutLedger()
    ledger.add("w1", wire(FanoutWindow(pubs={"news": pubs(range(100))})))
    at = T0 + 10 * 10 * MS  # publication 10's time, exactly
    until = T0 + 20 * 10 * MS  # publication 20's time, exactly
    record = SubscriptionRecord.of(1, "news", at, until, [(10, 20)])
    ledger.add("w2", wire(FanoutWindow(subs=[record])))
    t = ledger.figures().total
    assert (t.expected, t.delivered, t.missing, t.early, t.extra) == (10, 10, 0, 1, 0)


def test_a_subscriber_to_every_topic_is_owed_the_topics_it_got_nothing_of() -> None:
    """Records exist only for topics that delivered something; ALL_TOPICS charges the rest."""
    ledger = FanoutLedger()
    ledger.add("w1", wire(FanoutWindow(pubs={"a": pubs(range(10)), "b": pubs(range(20))})))
    start, end = T0 - 1, T0 + 100 * 10 * MS
    ledger.add(
        "w2",
        wire(
            FanoutWindow(
                subs=[
                    SubscriptionRecord.of(1, "a", start, end, [(0, 9)]),  # got all of a, no b
                    SubscriptionRecord.of(1, ALL_TOPICS, start, end, ()),
                    SubscriptionRecord.of(2, ALL_TOPICS, start, end, ()),  # got nothing at all
                ]
            )
        ),
    )
    f = ledger.figures()
    rows = {r.name: (r.expected, r.delivered, r.missing, r.subscriptions) for r in f.topics}
    assert rows == {"a": (20, 10, 10, 2), "b": (40, 0, 40, 2)}
    assert ALL_TOPICS not in rows
    assert (f.total.expected, f.total.missing) == (60, 50)
    assert ledger.figures() == f  # the join changes nothing: again, the same


def test_publications_in_several_windows_and_conflicts() -> None:
    ledger = FanoutLedger()
    ledger.add("w1", wire(FanoutWindow(pubs={"news": pubs(range(0, 50))})))
    ledger.add(
        "w1",
        wire(
            FanoutWindow(
                pubs={"news": pubs(range(50, 100))}, counts={"news": {"publish_conflicts": 1}}
            )
        ),
    )
    ledger.add("w2", wire(FanoutWindow(pubs={"news": pubs(range(99, 101))})))  # 99 again
    ledger.add("w3", wire(FanoutWindow(subs=[sub(1, 0, 101, [(0, 100)])])))
    t = ledger.figures().total
    assert (t.published, t.expected, t.missing, t.publish_conflicts) == (101, 101, 0, 2)


def test_unordered_publication_times_take_the_general_join() -> None:
    ledger = FanoutLedger()
    times = [(s, T0 + ((s * 7919) % 100) * 10 * MS) for s in range(100)]  # a permutation of slots
    ledger.add("w1", wire(FanoutWindow(pubs={"news": times})))
    window = (T0 + 20 * 10 * MS - 1, T0 + 60 * 10 * MS - 1)
    owed = [s for s, t in times if window[0] <= t < window[1]]
    got = [(s, s) for s in owed[:-3]]
    merged: list[tuple[int, int]] = []
    for lo, hi in got:
        if merged and lo == merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    ledger.add("w2", wire(FanoutWindow(subs=[SubscriptionRecord.of(5, "news", *window, merged)])))
    f = ledger.figures()
    assert (f.total.expected, f.total.delivered, f.total.missing) == (40, 37, 3)
    assert sorted(m.seq for m in f.missing_sample) == sorted(owed[-3:])


def test_topics_apart_and_in_total() -> None:
    ledger = FanoutLedger()
    ledger.add("w1", wire(FanoutWindow(pubs={"a": pubs(range(10)), "b": pubs(range(20))})))
    ledger.add(
        "w2",
        wire(FanoutWindow(subs=[sub(1, 0, 10, [(0, 9)], "a"), sub(1, 0, 20, [(0, 18)], "b")])),
    )
    f = ledger.figures()
    assert {r.name: (r.expected, r.missing) for r in f.topics} == {"a": (10, 0), "b": (20, 1)}
    assert (f.total.expected, f.total.missing) == (30, 1)


def test_server_stream_gaps() -> None:
    ledger = FanoutLedger(sources=("server",))
    ledger.add(
        "w1",
        wire(
            FanoutWindow(
                subs=[sub(1, 0, 1, [(100, 149), (152, 199)], "ticks")],
                latency={"ticks": [2 * MS, 3 * MS]},
            )
        ),
    )
    f = ledger.figures()
    assert (f.total.published, f.total.expected, f.total.delivered, f.total.missing) == (
        0,
        100,
        98,
        2,
    )
    assert [m.seq for m in f.missing_sample] == [150, 151]
    assert f.clock.source == "server"
    assert f.total.latency.max is not None


def test_missing_sample_is_bounded() -> None:
    ledger = FanoutLedger()
    ledger.add("w1", wire(FanoutWindow(pubs={"news": pubs(range(100))})))
    ledger.add("w2", wire(FanoutWindow(subs=[sub(c, 0, 100, []) for c in range(10)])))
    f = ledger.figures()
    assert f.total.missing == 1000
    assert len(f.missing_sample) == MISSING_SAMPLE


def test_latency_is_corrected_across_hosts_only() -> None:
    """Worker b's clock runs 5 ms ahead of the coordinator's; a publishes, b receives."""
    ledger = FanoutLedger(coordinator_host="here")
    ledger.set_clock("a", "here", 40, 30)  # same host as the coordinator: never corrected
    ledger.set_clock("b", "there", 5 * MS, 100)
    ledger.set_clock("c", "elsewhere", None, None)  # never answered: uncorrected, said so
    ledger.add("a", wire(FanoutWindow(pubs={"news": pubs(range(10))})))
    ledger.add("b", wire(FanoutWindow(latency={"news": [7 * MS]})))  # 2 ms really
    # b's subscription: its clock says it began 5 ms after publication 2's time
    ledger.add(
        "b",
        wire(
            FanoutWindow(
                subs=[SubscriptionRecord.of(1, "news", T0 + 20 * MS + 5 * MS, T0 + 10**9, [(2, 9)])]
            )
        ),
    )
    f = ledger.figures()
    assert f.total.latency.max is not None
    assert abs(f.total.latency.max - 0.002) < 0.0001
    assert (f.total.expected, f.total.missing, f.total.early) == (8, 0, 0)
    clocks = {w.worker_id: w for w in f.clock.workers}
    assert clocks["b"].applied
    assert not clocks["a"].applied
    assert f.clock.uncertainty == 100 / 1e6
    assert f.clock.source == "wsload"
    assert f.clock.uncorrected == ("c",)


def test_latency_before_its_publisher_is_known_waits_for_it() -> None:
    ledger = FanoutLedger(coordinator_host="here")
    ledger.set_clock("a", "pub-host", -3 * MS, 50)
    ledger.set_clock("b", "here", 0, 10)
    ledger.add("b", wire(FanoutWindow(latency={"news": [10 * MS]})))
    ledger.add("a", wire(FanoutWindow(pubs={"news": pubs(range(3))})))
    f = ledger.figures()
    assert f.total.latency.max is not None
    assert abs(f.total.latency.max - 0.007) < 0.0001  # 10 ms - 3 ms


def test_negative_latencies_count_and_record_as_zero() -> None:
    ledger = FanoutLedger()
    ledger.add("w", wire(FanoutWindow(pubs={"news": pubs(range(1))}, latency={"news": [-5, 100]})))
    f = ledger.figures()
    assert f.clock.negative == 1
    assert f.total.latency.max is not None


def test_nothing_reported_is_not_active() -> None:
    f = FanoutLedger().figures()
    assert not f.active
    assert f.metric("fanout.missing") is None
    assert f.metric("fanout.p99") is None


def test_ten_thousand_subscribers_by_a_hundred_thousand_publications() -> None:
    """The join holds no entry per (subscriber, publication): tens of MB, a few seconds."""
    n_pubs, n_subs = 100_000, 10_000
    rng = np.random.default_rng(7)
    seqs = np.arange(n_pubs, dtype=np.int64)
    windows = []
    for chunk in range(0, n_pubs, 25_000):  # a window's worth at a time
        s = seqs[chunk : chunk + 25_000]
        windows.append(
            ("pub", FanoutWindow(pubs={"news": np.stack([s, T0 + s * MS], axis=1)}).encode())
        )
    missing = 0
    for batch in range(0, n_subs, 5_000):
        subs = []
        for client in range(batch, batch + 5_000):
            start = int(rng.integers(0, 1000))
            gaps = np.unique(rng.integers(start + 10, n_pubs - 10, size=3) // 10 * 10)
            ranges, at = [], start
            for g in gaps:
                ranges.append((at, int(g) - 1))
                at = int(g) + 1
            ranges.append((at, n_pubs - 1))
            missing += gaps.size
            subs.append(
                SubscriptionRecord.of(client, "news", T0 + start * MS, T0 + n_pubs * MS, ranges)
            )
        windows.append((f"sub{batch}", FanoutWindow(subs=subs).encode()))
    tracemalloc.start()
    began = time.process_time()
    ledger = FanoutLedger()
    for worker, encoded in windows:
        ledger.add(worker, decode_fanout(encoded))
    f = ledger.figures()
    elapsed = time.process_time() - began
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert f.total.missing == missing
    assert f.total.expected == f.total.delivered + f.total.missing
    assert f.total.expected > n_subs * (n_pubs - 1000)
    assert peak < 60e6, f"peak {peak / 1e6:.1f} MB"
    assert elapsed < 30, f"{elapsed:.1f} s of CPU"  # about 1 s alone, tracemalloc slows it


def test_publications_past_the_bound_are_dropped_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fanout_module, "MAX_PUBLICATIONS", 15)
    ledger = FanoutLedger()
    ledger.add("w1", wire(FanoutWindow(pubs={"news": pubs(range(10))})))
    ledger.add("w1", wire(FanoutWindow(pubs={"news": pubs(range(10, 20))})))
    ledger.add("w2", wire(FanoutWindow(subs=[sub(1, 0, 20, [(0, 19)])])))
    f = ledger.figures()
    assert (f.total.published, f.dropped_publications, f.total.extra) == (10, 10, 10)


def test_a_worker_subscriber_with_no_topics_is_charged_every_published_topic() -> None:
    """End to end through the wire: ``topics`` empty means subscribed to every topic."""
    from wsload.worker.fanout import Fanout, Subscription

    worker = Fanout()
    for s in range(10):
        worker.publish("a", s, (T0 + s * 10 * MS) / 1e6)
        worker.publish("b", s, (T0 + s * 10 * MS) / 1e6)
    everything = Subscription(1, ())  # a topic path, no topics: every topic
    everything.subscribed_at = (T0 - 1) / 1e6
    for s in range(10):
        worker.deliver(everything, "a", s, None, (T0 + s * 10 * MS) / 1e6)  # nothing of b
    worker.end(everything, (T0 + 100 * 10 * MS) / 1e6)
    window = worker.take()
    assert window is not None
    ledger = FanoutLedger()
    ledger.add("w1", wire(window))
    rows = {r.name: (r.expected, r.delivered, r.missing) for r in ledger.figures().topics}
    assert rows == {"a": (10, 10, 0), "b": (10, 0, 10)}

"""The worker's delivery ledger (worker/fanout.py): range sets, the delivery reader, windows.

The reader's byte-regex fast path must read exactly what the parsing path
reads; both are run here over the same messages.
"""

from __future__ import annotations

import random

import pytest

from wsload.common.match import compile_matcher
from wsload.common.program import Deliveries
from wsload.worker.fanout import DUPLICATE, NEW, OUT_OF_ORDER, Fanout, Reader, Seqs, Subscription

_RNG = random.Random(0)


def test_seqs_keeps_ranges_and_says_new_duplicate_or_out_of_order() -> None:
    s = Seqs()
    got = [s.add(n) for n in (1, 2, 3, 7, 3, 5, 6, 4, 10, 0)]
    assert got == [NEW, NEW, NEW, NEW, DUPLICATE, OUT_OF_ORDER, OUT_OF_ORDER, OUT_OF_ORDER, NEW,
                   OUT_OF_ORDER]  # fmt: skip
    assert s.ranges() == [(0, 7), (10, 10)]
    assert len(s) == 9


def test_seqs_in_order_cost_one_range() -> None:
    s = Seqs()
    for n in range(100_000):
        s.add(n)
    assert s.ranges() == [(0, 99_999)]


def test_seqs_agree_with_a_set() -> None:
    rng = random.Random(5)
    s, plain = Seqs(), set()
    for _ in range(3000):
        n = rng.randrange(500)
        assert (s.add(n) == DUPLICATE) == (n in plain)
        plain.add(n)
    assert sorted(plain) == [n for lo, hi in s.ranges() for n in range(lo, hi + 1)]


MESSAGES = [
    b'{"type":"delivery","topic":"news","seq":12,"sent_at":1700000000.25,"data":"x"}',
    b'{"type": "delivery", "topic": "a", "seq": -3}',
    b'{"type":"other","topic":"news","seq":12}',
    b'{"type":"delivery","topic":"news","seq":1.5}',
    b'{"type":"delivery","topic":"news","seq":"7"}',
    b'{"type":"delivery","topic":7,"seq":7}',
    b'{"type":"delivery","topic":"n\\u00e9","seq":8}',
    b'{"type":"delivery","seq":8}',
    b"not json",
    b'{"type":"delivery","topic":"news","seq":12,"sent_at":17e8}',
]


@pytest.mark.parametrize("data", MESSAGES)
def test_the_fast_path_reads_what_parsing_reads(data: bytes) -> None:
    spec = Deliveries(
        seq="seq", match=compile_matcher({"type": "delivery"}), topic="topic", sent_at="sent_at"
    )
    reader = Reader(spec)
    assert reader._fast
    assert reader.read(data, True, {}, _RNG) == reader._slow(data, True, {}, _RNG)


def test_nested_paths_and_templates_parse() -> None:
    spec = Deliveries(seq="meta.seq", match=compile_matcher({"room": "{room}"}), topic="meta.t")
    reader = Reader(spec)
    assert not reader._fast
    data = b'{"room":"r1","meta":{"seq":4,"t":"x"}}'
    assert reader.read(data, True, {"room": "r1"}, _RNG) == ("x", 4, None)
    assert reader.read(data, True, {"room": "r2"}, _RNG) is None
    assert reader.read(data, False, {"room": "r1"}, _RNG) is None  # binary: not JSON


def test_fanout_windows_carry_deltas_and_ended_subscriptions() -> None:
    f = Fanout()
    sub = Subscription(3, ("news",))
    sub.subscribed_at = 10.0
    f.deliver(sub, "news", 1, 9.5, 10.5)
    f.deliver(sub, "news", 1, 9.5, 10.6)
    f.publish("news", 1, 9.5)
    f.publish("news", 1, 9.6)
    first = f.take()
    assert first is not None
    assert first["counts"] == {"news": {"deliveries": 2, "duplicates": 1, "publish_conflicts": 1}}
    assert list(first["latency"]["news"]) == [1_000_000]
    assert first["pubs"] == {"news": [(1, 9_500_000)]}
    assert f.take() is None
    f.end(sub, 12.0)
    f.end(sub, 13.0)
    last = f.take()
    assert last is not None
    assert [(s.topic, s.ranges) for s in last["subs"]] == [("news", ((1, 1),))]
    assert last["subs"][0].subscribed_at_us == 10_000_000

"""The worker's delivery ledger (worker/fanout.py): the delivery reader, windows.

The reader's byte-regex fast path must read exactly what the parsing path
reads; both are run here over the same messages.
"""

from __future__ import annotations

import random

import pytest

from wsload.common.fanout_wire import MAX_SUBS_PER_WINDOW, decode_fanout
from wsload.common.match import compile_matcher
from wsload.common.program import Deliveries
from wsload.worker.fanout import Fanout, Reader, Subscription
from wsload.worker.recorder import Recorder

_RNG = random.Random(0)


MESSAGES = [
    b'{"type":"delivery","topic":"news","seq":12,"sent_at":1700000000.25,"data":"x"}',
    b'{"topic":"news","type":"delivery","seq":12,"sent_at":1.5}',
    b'{"type":"published","topic":"news","seq":12,"sent_at":1.5}',
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
    b'{"type":"delivery","topic":"","seq":12}',
    b'{"type":"delivery","topic":"news","seq":9007199254740992}',
]


LEARNED = [
    b'{"type":"delivery","topic":"news","seq":1,"sent_at":1700000000.5,"data":"x"}',
    b'{"seq":2,"sent_at":1700000000,"type":"delivery","topic":"news"}',  # other order
]


@pytest.mark.parametrize("first", LEARNED)
@pytest.mark.parametrize("data", MESSAGES + LEARNED)
def test_the_fast_path_reads_what_parsing_reads(first: bytes, data: bytes) -> None:
    """Before and after the reader learned the field order from a first delivery."""
    spec = Deliveries(
        seq="seq", match=compile_matcher({"type": "delivery"}), topic="topic", sent_at="sent_at"
    )
    reader = Reader(spec)
    assert reader._fast
    reader.read(first, True, {}, _RNG)
    assert reader._combo is not None
    fast = reader.read(data, True, {}, _RNG), reader.topic, reader.sent_at
    reader.topic = reader.sent_at = None
    slow = reader._slow(data, True, {}, _RNG), reader.topic, reader.sent_at
    assert fast == slow if fast[0] >= 0 else slow[0] == -1


def test_nested_paths_and_templates_parse() -> None:
    spec = Deliveries(seq="meta.seq", match=compile_matcher({"room": "{room}"}), topic="meta.t")
    reader = Reader(spec)
    assert not reader._fast
    data = b'{"room":"r1","meta":{"seq":4,"t":"x"}}'
    assert reader.read(data, True, {"room": "r1"}, _RNG) == 4
    assert (reader.topic, reader.sent_at) == ("x", None)
    assert reader.read(data, True, {"room": "r2"}, _RNG) == -1
    assert reader.read(data, False, {"room": "r1"}, _RNG) == -1  # binary: not JSON


def test_fanout_windows_carry_deltas_and_ended_subscriptions() -> None:
    f = Fanout()
    sub = Subscription(3, ("news",))
    sub.subscribed_at = 10.0
    f.deliver(sub, "news", 1, 9.5, 10.5)
    f.deliver(sub, "news", 1, 9.5, 10.6)
    f.publish("news", 1, 9.5)
    f.publish("news", 1, 9.6)
    f.deliver(sub, "news", 0, 11.0, 10.5)  # out of order; sent_at after the receive
    first = f.take()
    assert first is not None
    assert first.counts == {
        "news": {"deliveries": 3, "duplicates": 1, "out_of_order": 1, "publish_conflicts": 1}
    }
    assert list(first.latency["news"]) == [1_000_000, -500_000]  # signed: clocks differ
    assert first.pubs == {"news": [(1, 9_500_000)]}
    assert f.take() is None
    f.end(sub, 12.0)
    f.end(sub, 13.0)
    last = f.take()
    assert last is not None
    (record,) = last.subs
    assert (record.client, record.topic, record.ranges.tolist()) == (3, "news", [[0, 1]])
    assert (record.subscribed_at_us, record.ended_at_us) == (10_000_000, 12_000_000)
    assert decode_fanout(last.encode()).subs == [record]  # what the wire carries


def test_a_window_carries_at_most_its_bound_of_subscriptions_the_rest_follow() -> None:
    f = Fanout()
    for client in range(MAX_SUBS_PER_WINDOW + 5):
        f.end(Subscription(client, ("t",)), 1.0)
    assert f.backlog
    first = f.take()
    assert first is not None
    assert len(first.subs) == MAX_SUBS_PER_WINDOW
    assert not f.backlog
    rest = f.take()
    assert rest is not None
    assert [s.client for s in rest.subs] == list(
        range(MAX_SUBS_PER_WINDOW, MAX_SUBS_PER_WINDOW + 5)
    )


def test_the_worker_answers_a_clock_probe_at_once_and_ignores_answers() -> None:
    from wsload.common.protocol import Clock, Welcome, encode
    from wsload.worker.conversation import AnswerClock, Conversation, Seen

    conv = Conversation("w1", "tcp://127.0.0.1:1", 0.0)
    assert conv.receive(encode(Clock(1, 5.0))) == []  # not welcomed yet: nothing
    conv.receive(encode(Welcome("w1", 1.0)))
    actions = conv.receive(encode(Clock(2, 5.0)))
    assert actions == [Seen(), AnswerClock(Clock(2, 5.0))]
    assert AnswerClock(Clock(2, 5.0)).probe.answer(7.0) == Clock(2, 5.0, 7.0)
    assert conv.receive(encode(Clock(3, 5.0, 6.0))) == [Seen()]  # an answer is no probe


def test_a_learned_spelling_keeps_integer_literals_whole() -> None:
    spec = Deliveries(seq="seq", match=compile_matcher({"room": 1}))
    reader = Reader(spec)
    assert reader.read(b'{"room":1,"seq":5}', True, {}, _RNG) == 5
    assert reader._combo is not None
    assert reader.read(b'{"room":12,"seq":6}', True, {}, _RNG) == -1
    assert reader.read(b'{"room":1,"seq":7}', True, {}, _RNG) == 7
    assert reader.read(b'{"room": 1, "seq": 8}', True, {}, _RNG) == 8  # spelled otherwise


def test_the_fast_path_agrees_with_parsing_over_varied_spellings() -> None:
    """Seeded: field order, spacing, extra and nested fields, odd values vary."""
    import json

    rng = random.Random(16)
    spec = Deliveries(
        seq="seq", match=compile_matcher({"type": "delivery"}), topic="topic", sent_at="sent_at"
    )
    values: list[object] = [0, 7, -1, 2.5, "9", None, True, "news", "", "n\u00e9", {"seq": 1}, [2]]
    reader = Reader(spec)
    for _ in range(3000):
        fields = {
            "type": rng.choice(["delivery", "delivery", "other"]),
            "topic": rng.choice(values),
            "seq": rng.choice(values),
            "sent_at": rng.choice([*values, 1700000000.125]),
            "data": rng.choice(values),
        }
        keys = list(fields)
        rng.shuffle(keys)
        for k in rng.sample(keys, rng.randrange(3)):
            keys.remove(k)
        sep = rng.choice([(",", ":"), (", ", ": ")])
        data = json.dumps({k: fields[k] for k in keys}, separators=sep).encode()
        fast = reader.read(data, True, {}, _RNG), reader.topic, reader.sent_at
        reader.topic = reader.sent_at = None
        slow = reader._slow(data, True, {}, _RNG), reader.topic, reader.sent_at
        assert (fast if fast[0] >= 0 else -1) == (slow if slow[0] >= 0 else -1), data


def test_take_records_what_read_and_deliver_record() -> None:
    """Reader.take's one-call path (learned pattern, the subscription's last topic)
    leaves the same figures, seqs and latencies as read + Fanout.deliver."""
    spec = Deliveries(
        seq="seq", match=compile_matcher({"type": "delivery"}), topic="topic", sent_at="sent_at"
    )
    rng = random.Random(5)
    msgs = [
        b'{"type":"delivery","topic":"%s","seq":%d,"sent_at":%s,"data":"x"}' % (t, n, at)
        for t, n, at in [
            (b"a", 1, b"100.5"),
            (b"a", 2, b"100.5"),
            (b"a", 2, b"100.5"),
            (b"a", 5, b"1e99"),
            (b"a", 4, b"100.25"),
            (b"b", 1, b"100.5"),
            (b"a", 6, b"100"),
            (b"", 7, b"100"),
            (b"a", -1, b"100"),
            (b"a", 9007199254740992, b"100"),
            (b"a", 8, b"100.75"),
        ]
    ] + [b'{"type":"other","topic":"a","seq":9}', b'{"topic":"a","type":"delivery","seq":9}']
    results = []
    for mode in ("read", "fused", "subscription"):
        reader, rec = Reader(spec), Recorder()
        fanout, sub = rec.fanout, Subscription(1, ("a",), reader, rec, epoch=100.0)
        took = []
        for i, data in enumerate(msgs * 2):  # again: the same bytes are remembered
            now = 101.0 + i
            if mode == "subscription":  # as the session: the subscription first, else the client
                took.append(
                    sub.take(data, True, now - 100.0)
                    or reader.take(data, True, {}, rng, sub, fanout, now)
                )
            elif mode == "fused":
                took.append(reader.take(data, True, {}, rng, sub, fanout, now))
            else:
                seq = reader.read(data, True, {}, rng)
                if seq >= 0:
                    topic = reader.topic or sub.default
                    fanout.deliver(sub, topic, seq, reader.sent_at, now)
                took.append(seq >= 0)
        figures = {
            name: (t.deliveries, t.duplicates, t.out_of_order, list(t.latency))
            for name, t in fanout.topics.items()
        }
        seqs = {name: (r.count, r.duplicates, r.out_of_order) for name, r in sub.topics.items()}
        results.append((took, figures, seqs, fanout.last_at))
    assert results[0] == results[1] == results[2]
    assert results[1][1]["a"][:3] == (16, 9, 1)


def test_a_subscription_takes_deliveries_and_counts_their_bytes_only() -> None:
    """Subscription.take: the learned pattern's deliveries (their bytes counted on the
    recorder), nothing else (not a delivery, binary, an unbound subscription: False,
    nothing counted: the session's full path decides)."""
    spec = Deliveries(
        seq="seq", match=compile_matcher({"type": "delivery"}), topic="topic", sent_at="sent_at"
    )
    reader, rec = Reader(spec), Recorder()
    sub = Subscription(1, ("a",), reader, rec, epoch=1000.0)
    first = b'{"type":"delivery","topic":"a","seq":1,"sent_at":1000.5}'
    assert not sub.take(first, True, 1.0)  # nothing learned yet: the full path learns
    assert reader.take(first, True, {}, _RNG, sub, rec.fanout, 1001.0)
    assert rec.bytes_received == 0
    second = b'{"type":"delivery","topic":"a","seq":2,"sent_at":1000.5}'
    assert sub.take(second, True, 1.25)
    assert sub.take(bytes(bytearray(second)), True, 1.5)  # an equal copy: a duplicate
    assert rec.bytes_received == 2 * len(second)
    other = b'{"type":"other","topic":"a","seq":3,"sent_at":1000.5}'
    assert not sub.take(other, True, 2.0)
    assert not sub.take(second, False, 2.0)  # binary
    assert not Subscription(2, ("a",)).take(second, True, 2.0)  # not bound to a reader
    assert rec.bytes_received == 2 * len(second)
    stats = rec.fanout.topics["a"]
    assert (stats.deliveries, stats.duplicates, list(stats.latency)) == (3, 1, [500_000, 750_000])
    assert sub.topics["a"].ranges() == [(1, 2)]


def test_the_messages_remembered_are_bounded_in_number_and_size() -> None:
    """Copies of interleaved publications are found again; the memory for them is bounded."""
    from wsload.worker.fanout_reader import RECENT, RECENT_BYTES

    spec = Deliveries(seq="seq", match=compile_matcher({"type": "delivery"}), topic="topic")
    reader, rec = Reader(spec), Recorder()
    subs = [Subscription(n, ("a",), reader, rec) for n in range(3)]
    msg = b'{"type":"delivery","topic":"a","seq":%d,"data":"%s"}'
    reader.take(msg % (1, b""), True, {}, _RNG, subs[0], rec.fanout, 1.0)  # learns
    for seq in range(2, 3 * RECENT):  # two publications' copies interleaved, then the next
        for sub in subs:
            assert sub.take(msg % (seq, b""), True, 1.0)
            assert sub.take(msg % (seq - 1, b""), True, 1.0)  # the previous one's copy
    assert len(reader._recent) <= RECENT
    big = msg % (3 * RECENT, b"x" * RECENT_BYTES)
    assert subs[0].take(big, True, 1.0)
    assert big not in reader._recent
    stats = rec.fanout.topics["a"]
    assert stats.deliveries == 1 + 3 * 2 * (3 * RECENT - 2) + 1
    last = 3 * RECENT - 1
    assert [s.topics["a"].ranges() for s in subs] == [[(1, last + 1)], [(1, last)], [(1, last)]]

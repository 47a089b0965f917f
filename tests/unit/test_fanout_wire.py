"""Fan-out on the wire: RangeSet, publications, subscriptions, latencies, the window field.

Round trips (examples and properties), and nothing but ProtocolError on
hostile bytes, within the bounds the module states.
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsload.common.errors import ProtocolError
from wsload.common.fanout_wire import (
    MAX_RANGES_PER_SUB,
    MAX_SEQ,
    MAX_SUBS_PER_WINDOW,
    MAX_TOPIC_LEN,
    MAX_TOPICS_PER_WINDOW,
    FanoutWindow,
    RangeSet,
    SubscriptionRecord,
    check_fanout,
    decode_fanout,
    decode_latencies,
    decode_publications,
    decode_u63,
    encode_latencies,
    encode_publications,
    encode_u63,
)
from wsload.common.protocol import Samples, decode, encode

T0 = 1_700_000_000_000_000  # epoch µs


# -- RangeSet -------------------------------------------------------------------


def test_rangeset_counts_new_duplicates_and_out_of_order() -> None:
    r = RangeSet()
    assert [r.add(s) for s in (1, 2, 3, 7, 5, 6, 3, 0)] == ["new"] * 6 + ["duplicate", "new"]
    assert r.ranges() == [(0, 3), (5, 7)]
    assert (r.count, r.duplicates, r.out_of_order, r.highest, len(r)) == (7, 1, 3, 7, 2)
    assert 5 in r
    assert 4 not in r
    assert 8 not in r
    assert r.count_in(2, 6) == 4
    assert r.count_in(8, 100) == 0
    assert r.count_in(6, 2) == 0


def test_rangeset_memory_follows_gaps_not_seqs() -> None:
    r = RangeSet()
    for s in range(100_000):
        if s % 10_000 != 5:  # 10 gaps
            r.add(s)
    assert len(r) == 11
    assert r.count == 99_990


def test_rangeset_bound_counts_untracked() -> None:
    r = RangeSet(max_ranges=2)
    for s in (0, 10, 20, 5):
        assert r.add(s) == "new"
    assert r.ranges() == [(0, 0), (10, 10)]
    assert (r.untracked, r.out_of_order, r.count) == (2, 0, 2)
    record = SubscriptionRecord.of(1, "t", T0, T0 + 1, r)
    assert SubscriptionRecord.decode(record.encode()).untracked == 2


def test_rangeset_refuses_seqs_out_of_range() -> None:
    r = RangeSet()
    for bad in (-1, MAX_SEQ + 1):
        with pytest.raises(ValueError, match="outside"):
            r.add(bad)
    r.add(MAX_SEQ)
    with pytest.raises(ValueError, match="outside"):
        r.add(MAX_SEQ + 1)


@given(st.lists(st.integers(0, 300), max_size=400))
@settings(max_examples=200, deadline=None)
def test_rangeset_matches_a_set(seqs: list[int]) -> None:
    r = RangeSet()
    seen: set[int] = set()
    highest = -1
    dup = ooo = 0
    for s in seqs:
        expected = "duplicate" if s in seen else "new"
        dup += s in seen
        ooo += s not in seen and s < highest
        assert r.add(s) == expected
        seen.add(s)
        highest = max(highest, s)
    assert (r.count, r.duplicates, r.out_of_order) == (len(seen), dup, ooo)
    flat = [s for lo, hi in r.ranges() for s in range(lo, hi + 1)]
    assert flat == sorted(seen)
    assert all(b[0] >= a[1] + 2 for a, b in zip(r.ranges(), r.ranges()[1:], strict=False))
    assert r.count_in(50, 150) == len([s for s in seen if 50 <= s <= 150])


# -- varints, publications, latencies ------------------------------------------


@given(st.lists(st.integers(0, (1 << 63) - 1), max_size=50))
def test_u63_round_trip(values: list[int]) -> None:
    assert decode_u63(encode_u63(values), "x").tolist() == values


def test_u63_refuses_64_bit_values_and_cut_input() -> None:
    with pytest.raises(ValueError, match="63 bits"):
        encode_u63([1 << 63])
    with pytest.raises(ProtocolError, match="middle"):
        decode_u63(b"\x80", "x")
    with pytest.raises(ProtocolError, match="longer than 9"):
        decode_u63(b"\xff" * 9 + b"\x01", "x")


def test_publications_sort_and_keep_the_first_of_a_seq() -> None:
    data = encode_publications([(5, T0 + 30), (3, T0), (4, T0 + 10), (5, T0 + 99), (9, T0 + 5)])
    seqs, times = decode_publications(data)
    assert seqs.tolist() == [3, 4, 5, 9]
    assert times.tolist() == [T0, T0 + 10, T0 + 30, T0 + 5]
    assert decode_publications(encode_publications([]))[0].size == 0


def test_contiguous_publications_cost_about_three_bytes_each() -> None:
    pubs = [(s, T0 + s * 1000) for s in range(10_000)]
    assert len(encode_publications(pubs)) < 3.1 * 10_000  # 1 byte of seq, 2 of time


@given(
    st.dictionaries(st.integers(0, MAX_SEQ), st.integers(0, (1 << 53) - 1), max_size=60),
)
def test_publications_round_trip(pubs: dict[int, int]) -> None:
    seqs, times = decode_publications(encode_publications(list(pubs.items())))
    assert dict(zip(seqs.tolist(), times.tolist(), strict=True)) == pubs
    assert seqs.tolist() == sorted(pubs)


@given(st.lists(st.integers(-(1 << 50), 1 << 50), max_size=60))
def test_latencies_round_trip_signed(latency: list[int]) -> None:
    assert decode_latencies(encode_latencies(latency)).tolist() == latency


def test_latencies_are_clamped_not_refused() -> None:
    assert decode_latencies(encode_latencies([1 << 60, -(1 << 60)])).tolist() == [
        1 << 50,
        -(1 << 50),
    ]


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ([], "empty"),
        ([2, 1], "values for 2"),
        ([2_000_000], "more than"),
        ([2, MAX_SEQ, 0, 0, 0], "beyond"),
        ([2, 0, (1 << 63) - 1, 0, 0], "beyond"),
        ([1, 0, 1 << 60], "times beyond"),
        ([2, 0, 0, (1 << 53) - 2, 6], "times beyond"),
        ([2, 0, 0, 5, 11], "times beyond"),  # 5 - 6 < 0
        ([3, 0, 0, 0, 0, (1 << 63) - 2, (1 << 63) - 2], "times beyond"),
    ],
)
def test_hostile_publications(values: list[int], needle: str) -> None:
    with pytest.raises(ProtocolError, match=needle):
        decode_publications(encode_u63(values))


# -- subscriptions ---------------------------------------------------------------


def test_subscription_round_trip() -> None:
    rec = SubscriptionRecord.of(
        42, "news-é", T0, T0 + 5_000_000, [(0, 99), (101, 101), (200, 5000)]
    )
    back = SubscriptionRecord.decode(rec.encode())
    assert back == rec
    assert back.received == 100 + 1 + 4801
    assert len(rec.encode()) < 40


def test_subscription_end_before_start_is_sent_as_the_start() -> None:
    back = SubscriptionRecord.decode(SubscriptionRecord.of(1, "t", T0, T0 - 5, []).encode())
    assert (back.subscribed_at_us, back.ended_at_us, back.received) == (T0, T0, 0)


@pytest.mark.parametrize(
    ("ranges", "topic"),
    [
        ([(5, 4)], "t"),
        ([(0, 3), (4, 9)], "t"),
        ([(3, 9), (0, 1)], "t"),
        ([(-1, 2)], "t"),
        ([], ""),
        ([], "x" * 201),
    ],
)
def test_subscription_encode_refuses_bad_records(ranges: list[tuple[int, int]], topic: str) -> None:
    with pytest.raises(ValueError, match=r"ranges|topic"):
        SubscriptionRecord.of(1, topic, T0, T0, ranges).encode()


ranges_strategy = st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 50)), max_size=30).map(
    lambda parts: _ranges_from(parts)
)


def _ranges_from(parts: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    at = 0
    for gap, run in parts:
        lo = at + gap + (2 if out else 0)
        out.append((lo, lo + run))
        at = lo + run
    return out


@given(
    st.integers(0, (1 << 40) - 1),
    st.text(min_size=1, max_size=MAX_TOPIC_LEN),
    st.integers(0, 1 << 52),
    st.integers(0, 1 << 40),
    ranges_strategy,
)
@settings(max_examples=200)
def test_subscription_round_trip_property(
    client: int, topic: str, start: int, length: int, ranges: list[tuple[int, int]]
) -> None:
    rec = SubscriptionRecord.of(client, topic, start, start + length, ranges)
    assert SubscriptionRecord.decode(rec.encode()) == rec


def _sub(topic: bytes, values: list[int]) -> bytes:
    return encode_u63([len(topic)]) + topic + encode_u63(values)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "no topic length"),
        (b"\x80" * 12, "no topic length"),
        (b"\x05ab", "bad topic length"),
        (b"\x00", "bad topic length"),
        (_sub(b"\xff\xfe", [1, 0, 0, 0, 0]), "UTF-8"),
        (_sub(b"x" * 300, [1, 0, 0, 0, 0]), "longer than"),
        (_sub(b"t", [1, 0, 0, 0]), "fewer than 5"),
        (_sub(b"t", [1, 0, 0, 0, 2, 0, 0]), "range values for 2"),
        (_sub(b"t", [1, 0, 0, 0, MAX_RANGES_PER_SUB + 1]), "more than"),
        (_sub(b"t", [1 << 50, 0, 0, 0, 0]), "out of bounds"),
        (_sub(b"t", [1, 1 << 60, 0, 0, 0]), "out of bounds"),
        (_sub(b"t", [1, 0, 0, 0, 2, (1 << 63) - 1, 0, (1 << 63) - 1, 0]), "beyond"),
        (_sub(b"t", [1, 0, 0, 0, 1, 0]) + b"\x80", "middle"),
    ],
)
def test_hostile_subscriptions(data: bytes, needle: str) -> None:
    with pytest.raises(ProtocolError, match=needle):
        SubscriptionRecord.decode(data)


@given(st.binary(max_size=64))
@settings(max_examples=500)
def test_arbitrary_subscription_bytes_raise_only_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        SubscriptionRecord.decode(data)


@given(st.binary(max_size=64))
@settings(max_examples=300)
def test_arbitrary_publication_bytes_raise_only_protocol_error(data: bytes) -> None:
    for decoder in (decode_publications, decode_latencies):
        with contextlib.suppress(ProtocolError):
            decoder(data)


# -- the window field ------------------------------------------------------------


def _window() -> FanoutWindow:
    return FanoutWindow(
        pubs={"news": [(1, T0), (2, T0 + 1000)], "empty": []},
        subs=[SubscriptionRecord.of(7, "news", T0 - 1, T0 + 9, [(1, 2)])],
        latency={"news": [1500, -20], "quiet": []},
        counts={
            "news": {"deliveries": 2, "duplicates": 0, "out_of_order": 1},
            "zero": {"deliveries": 0},
        },
    )


def test_window_through_a_samples_message() -> None:
    msg = Samples.window("j", 1, (0.0, 0.25), {}, {}, ([], [], []), fanout=_window())
    assert set(msg.fanout) == {"pubs", "subs", "latency", "counts"}
    assert set(msg.fanout["pubs"]) == {"news"}  # empty parts are left out
    assert msg.fanout["counts"] == {"news": {"deliveries": 2, "out_of_order": 1}}
    back = decode(encode(msg))
    assert isinstance(back, Samples)
    w = back.fanout_window()
    assert w.pubs["news"][0].tolist() == [1, 2]
    assert w.pubs["news"][1].tolist() == [T0, T0 + 1000]
    assert w.subs == _window().subs
    assert w.latency["news"].tolist() == [1500, -20]
    assert w.counts == {"news": {"deliveries": 2, "out_of_order": 1}}


def test_a_window_without_fanout() -> None:
    msg = Samples.window("j", 1, (0.0, 0.25), {}, {}, ([], [], []))
    assert msg.fanout == {}
    assert not decode(encode(msg)).fanout_window()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "value",
    [
        [],
        {"pubs": {"t": "text"}},
        {"pubs": {"x" * (MAX_TOPIC_LEN + 1): b""}},
        {"pubs": {f"t{i}": b"\x00" for i in range(MAX_TOPICS_PER_WINDOW + 1)}},
        {"subs": [b"\x00"] * (MAX_SUBS_PER_WINDOW + 1)},
        {"subs": {"a": b""}},
        {"counts": {"t": {"deliveries": -1}}},
        {"counts": {"t": {"deliveries": True}}},
        {"counts": {"t": {"sent": 1}}},
        {"latency": {"t": 5}},
        {"extra": 1},
    ],
)
def test_check_fanout_refuses_bad_shapes(value: Any) -> None:
    assert check_fanout(value) is not None


def test_decode_fanout_names_the_bad_part() -> None:
    with pytest.raises(ProtocolError, match="publications of 'news'"):
        decode_fanout({"pubs": {"news": b"\x80"}})
    with pytest.raises(ProtocolError, match="subscription 1"):
        decode_fanout({"subs": [SubscriptionRecord.of(1, "t", 0, 0, []).encode(), b"\x01"]})
    with pytest.raises(ProtocolError, match="latency of 'news'"):
        decode_fanout({"latency": {"news": b"\xff"}})


def test_a_hostile_samples_fanout_is_a_protocol_error() -> None:
    body = msgpack.unpackb(encode(Samples("j", 0, 0.0, 0.25, {})))
    body["fanout"] = {"subs": [b"\x01t\x80"]}
    msg = decode(msgpack.packb(body, use_bin_type=True))
    assert isinstance(msg, Samples)
    with pytest.raises(ProtocolError):
        msg.fanout_window()


def test_many_ranges_in_one_window_are_bounded() -> None:
    many = [(2 * i, 2 * i) for i in range(MAX_RANGES_PER_SUB)]
    sub = SubscriptionRecord.of(1, "t", 0, 0, many).encode()
    with pytest.raises(ProtocolError, match="ranges in one window"):
        decode_fanout({"subs": [sub] * 16})
    assert np.asarray(decode_fanout({"subs": [sub]}).subs[0].ranges).shape == (
        MAX_RANGES_PER_SUB,
        2,
    )

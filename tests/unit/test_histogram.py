"""The latency histogram: HdrHistogram layout and precision, merging, serialisation. No sockets."""

from __future__ import annotations

import contextlib
import itertools
import math
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsload.common import histogram
from wsload.common.errors import HistogramError
from wsload.common.histogram import (
    HIGHEST,
    LatencyHistogram,
    counts_index,
    highest_equivalent,
    lowest_equivalent,
    pack_samples,
    unpack_samples,
)

#: Both regions: below 2048 every value has its own counter, above it counters widen.
values_us = st.one_of(
    st.integers(min_value=0, max_value=3000), st.integers(min_value=0, max_value=HIGHEST)
)
samples = st.lists(values_us, min_size=1, max_size=300)
#: Some beyond HIGHEST, to check clamping survives merging and serialisation.
samples_with_overflow = st.lists(
    st.one_of(values_us, st.integers(min_value=HIGHEST + 1, max_value=2**40)),
    min_size=1,
    max_size=300,
)
#: The percentiles of the report, in tenths, so the exact rank needs no float.
TENTHS = (500, 900, 950, 990, 999, 1000)


def of(values: list[int]) -> LatencyHistogram:
    hist = LatencyHistogram()
    hist.record_many(np.array(values, dtype=np.int64))
    return hist


def exact_percentile(ordered: list[int], tenths: int) -> int:
    """The documented rank definition, rank = max(1, ceil(p / 100 * count)), in integers."""
    rank = max(1, -(-tenths * len(ordered) // 1000))
    return ordered[rank - 1]


#: The serialised body's header (count, clamped, min, max, sum lo, sum hi, counters, width).
HEADER = struct.Struct("<QQIIQQHB")


def framed(*fields: int, payload: bytes) -> bytes:
    """A serialised histogram with a hand-made body, to reach the checks behind zlib."""
    return b"WLH\x02" + zlib.compress(HEADER.pack(*fields) + payload)


# -- layout -------------------------------------------------------------------


def test_layout_is_hdrhistograms_for_one_hour_at_three_digits() -> None:
    assert histogram.SUB_BUCKET_COUNT == 2048
    assert histogram.UNIT_MAGNITUDE == 0
    assert histogram.BUCKET_COUNT == 22
    assert histogram.COUNTS_LEN == 23_552
    assert LatencyHistogram().counts.shape == (23_552,)
    assert counts_index(HIGHEST) < histogram.COUNTS_LEN
    assert highest_equivalent(histogram.COUNTS_LEN - 1) == 2**32 - 1


def test_layout_matches_the_reference_implementation() -> None:
    hdrh = pytest.importorskip("hdrh.histogram")
    ref = hdrh.HdrHistogram(1, HIGHEST, 3)
    assert (ref.counts_len, ref.sub_bucket_count, ref.bucket_count) == (23_552, 2048, 22)
    edges = [0, 1, 2047, 2048, 2049, 4095, 4096, 1_000_000, 2**31, HIGHEST - 1, HIGHEST]
    rng = np.random.default_rng(7)
    for value in edges + rng.integers(0, HIGHEST + 1, 300).tolist():
        index = counts_index(value)
        assert index == ref._counts_index_for(value)
        assert lowest_equivalent(index) == ref.get_lowest_equivalent_value(value)
        assert highest_equivalent(index) == ref.get_highest_equivalent_value(value)


@settings(max_examples=300, deadline=None)
@given(values_us)
def test_counter_holds_its_value_to_three_digits(value: int) -> None:
    index = counts_index(value)
    low, high = lowest_equivalent(index), highest_equivalent(index)
    assert low <= value <= high
    assert high - low <= value / 1000  # below 2048 the counter is exactly one value


def test_bulk_indices_equal_scalar_indices() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate(
        [np.arange(0, 5000), rng.integers(0, HIGHEST + 1, 5000), [HIGHEST, 2**31, 2**31 - 1]]
    )
    bulk = LatencyHistogram()
    bulk.record_many(values)
    expected = np.zeros_like(bulk.counts)
    for value in values.tolist():
        expected[counts_index(value)] += 1
    assert np.array_equal(bulk.counts, expected)


# -- merging ------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(samples_with_overflow, st.lists(st.integers(min_value=0, max_value=300), max_size=4))
def test_merge_of_parts_equals_whole(values: list[int], cuts: list[int]) -> None:
    whole = of(values)
    bounds = [0, *sorted(c % (len(values) + 1) for c in cuts), len(values)]
    merged = LatencyHistogram()
    for start, end in itertools.pairwise(bounds):
        merged.merge(of(values[start:end]) if end > start else LatencyHistogram())
    clamped = [min(v, HIGHEST) for v in values]
    assert merged == whole
    assert np.array_equal(merged.counts, whole.counts)
    assert (merged.count, merged.min, merged.max, merged.total, merged.clamped) == (
        len(values),
        min(clamped),
        max(clamped),
        sum(clamped),
        sum(v > HIGHEST for v in values),
    )


def test_merge_into_itself_doubles_and_copy_is_independent() -> None:
    hist = of([5, 10_000, 7])
    twin = hist.copy()
    hist.merge(hist)
    assert hist.count == 6
    assert hist.total == 2 * twin.total
    assert (hist.min, hist.max) == (twin.min, twin.max)
    assert twin == of([5, 10_000, 7])
    twin.record(1)
    assert twin != of([5, 10_000, 7])


def test_reset_empties_and_equality_needs_a_histogram() -> None:
    hist = of([1, 2, HIGHEST + 1])
    hist.reset()
    assert hist == LatencyHistogram()
    assert (hist.count, hist.clamped, hist.min, hist.max, hist.total) == (0, 0, 0, 0, 0)
    assert hist != "not a histogram"


# -- percentiles --------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(samples)
def test_percentiles_within_stated_precision(values: list[int]) -> None:
    hist = of(values)
    ordered = sorted(values)
    for tenths in TENTHS:
        exact = exact_percentile(ordered, tenths)
        got = hist.value_at_percentile(tenths / 10)
        # The same counter (equivalent-value range) as the exact value, never below it:
        # HdrHistogram's guarantee, at most 1/1000 above.
        assert counts_index(got) == counts_index(exact), (tenths, exact, got)
        assert exact <= got <= exact + exact / 1000, (tenths, exact, got)
    assert hist.value_at_percentile(100) == ordered[-1]
    assert hist.value_at_percentile(0) == ordered[0]
    listed = hist.percentiles()
    assert list(listed) == ["p50", "p90", "p95", "p99", "p99.9", "max"]
    assert list(listed.values()) == [hist.value_at_percentile(t / 10) for t in TENTHS]
    assert list(listed.values()) == sorted(listed.values())  # never above the max
    assert hist.mean == pytest.approx(sum(values) / len(values))


def test_rank_is_exact_on_the_decimal_percentile() -> None:
    # 20,000 values, 10 of each of 1..2000 (exact counters). Rank of p99.9 is 19,980,
    # the value 1998; binary floating point makes the product 19980.000000000004.
    hist = of(np.repeat(np.arange(1, 2001), 10).tolist())
    assert hist.value_at_percentile(99.9) == 1998
    assert hist.value_at_percentile(50) == 1000
    assert of([10, 20, 30]).value_at_percentile(50) == 20  # ceil(1.5) = 2
    assert of([10, 20]).value_at_percentile(50) == 10  # rank 1 exactly
    assert of([10, 20]).value_at_percentile(50.0001) == 20


def test_percentile_reports_top_of_counter_but_never_above_max() -> None:
    hist = of([5000, 5001, 6001])  # 4096..8191 has counters 4 wide: 5000..5003
    assert hist.value_at_percentile(50) == 5003  # highest equivalent of 5001
    assert of([5001, 5001]).value_at_percentile(50) == 5001  # capped at the exact max
    assert hist.percentiles()["max"] == 6001


@pytest.mark.parametrize("bad", [-0.1, 100.01, math.nan, math.inf])
def test_percentile_out_of_range_rejected(bad: float) -> None:
    with pytest.raises(HistogramError, match="percentile"):
        of([1]).value_at_percentile(bad)
    with pytest.raises(HistogramError, match="percentile"):
        LatencyHistogram().value_at_percentile(bad)


def test_stdev_is_population_stdev_to_bucket_precision() -> None:
    exact = [1, 2, 3, 4, 100, 2000]
    assert of(exact).stdev == pytest.approx(float(np.std(exact)))
    rng = np.random.default_rng(5)
    wide = rng.lognormal(9, 1.0, 10_000).astype(np.int64)
    hist = LatencyHistogram()
    hist.record_many(wide)
    assert hist.stdev == pytest.approx(float(np.std(wide)), rel=1e-3)


# -- recording ----------------------------------------------------------------


def test_record_and_bulk_agree() -> None:
    rng = np.random.default_rng(1)
    values = np.append(rng.lognormal(9, 2.5, 3000).astype(np.int64), [HIGHEST + 1, 2**40])
    one = LatencyHistogram()
    for value in values.tolist():
        one.record(value)
    assert one == of(values.tolist())
    assert one.clamped == 2


@pytest.mark.parametrize(
    "dtype", ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
)
def test_any_integer_dtype_and_shape(dtype: str) -> None:
    values = np.array([[0, 1, 100], [127, 50, 3]], dtype=dtype)
    hist = LatencyHistogram()
    hist.record_many(values)
    assert hist == of([0, 1, 100, 127, 50, 3])


def test_record_with_count_equals_repeats() -> None:
    hist = LatencyHistogram()
    hist.record(3000, count=4)
    hist.record(7, count=0)
    assert hist == of([3000] * 4)


def test_bulk_beyond_one_chunk_is_counted_exactly() -> None:
    values = np.arange(200_000, dtype=np.int64) * 17_000  # up to 3.4e9, crosses chunk edges
    hist = LatencyHistogram()
    hist.record_many(values)
    assert (hist.count, hist.min, hist.max, hist.total) == (
        200_000,
        0,
        int(values[-1]),
        int(values.sum()),
    )
    assert int(hist.counts.sum()) == 200_000


def test_packed_uint32_and_uint64_agree() -> None:
    values = [0, 1, 999, 12_345, 4_000_000, 2**32 - 1]
    a, b = LatencyHistogram(), LatencyHistogram()
    a.record_packed(np.array(values, dtype="<u4").tobytes())
    b.record_packed(bytearray(np.array(values, dtype="<u8").tobytes()), dtype="<u8")
    assert a == b == of(values)
    c = LatencyHistogram()
    c.record_packed(memoryview(pack_samples(values)))
    assert c == a


def test_packed_input_checked() -> None:
    hist = LatencyHistogram()
    with pytest.raises(HistogramError, match="not whole"):
        hist.record_packed(b"\x00\x01\x02")
    with pytest.raises(HistogramError, match="not whole"):
        hist.record_packed(b"\x00" * 12, dtype="<u8")
    with pytest.raises(HistogramError, match="one of"):
        hist.record_packed(b"\x00" * 8, dtype=">u4")
    hist.record_packed(b"")
    assert hist.is_empty


def test_negative_values_rejected_and_nothing_recorded() -> None:
    hist = of([5])
    with pytest.raises(HistogramError, match="negative"):
        hist.record(-1)
    with pytest.raises(HistogramError, match="negative"):
        hist.record_many(np.array([1, 2, -5]))
    with pytest.raises(HistogramError, match="negative"):
        hist.record(1, count=-1)
    with pytest.raises(HistogramError, match="integers"):
        hist.record_many(np.array([1.5, 2.0]))
    with pytest.raises(HistogramError, match="integers"):
        hist.record_many(np.array([True]))
    with pytest.raises(HistogramError, match="integers"):
        hist.record_many([[1, 2], [3]])
    with pytest.raises(HistogramError, match="negative"):
        hist.record_many([2**70, -(2**70)])
    assert hist == of([5])


def test_overflow_clamped_and_counted() -> None:
    hist = LatencyHistogram()
    hist.record(HIGHEST + 10)
    hist.record(2**80, count=2)
    hist.record_many(np.array([2**64 - 1, 2**62, HIGHEST, 7], dtype=np.uint64))
    hist.record_many([2**70])  # beyond uint64: numpy makes an object array
    hist.record_packed(np.array([0xFFFF_FFFF], dtype="<u4").tobytes())
    assert hist.clamped == 7
    assert (hist.count, hist.min, hist.max) == (9, 7, HIGHEST)
    assert hist.total == 8 * HIGHEST + 7
    assert hist.value_at_percentile(99) == HIGHEST


def test_count_overflow_refused() -> None:
    hist = LatencyHistogram()
    hist.record(1, count=2**63 - 1)
    with pytest.raises(HistogramError, match="2\\*\\*63"):
        hist.record(1)
    with pytest.raises(HistogramError, match="2\\*\\*63"):
        hist.merge(hist)
    assert hist.count == 2**63 - 1


def test_empty_histogram() -> None:
    hist = LatencyHistogram()
    assert hist.is_empty
    assert (hist.count, hist.min, hist.max, hist.total, hist.clamped) == (0, 0, 0, 0, 0)
    assert hist.value_at_percentile(99) == 0
    assert hist.value_at_percentile(100) == 0
    assert hist.percentiles() == dict.fromkeys(["p50", "p90", "p95", "p99", "p99.9", "max"], 0)
    assert (hist.mean, hist.stdev) == (0.0, 0.0)
    hist.record_many(np.array([], dtype=np.int64))
    hist.merge(LatencyHistogram())
    assert hist.is_empty
    assert LatencyHistogram.from_bytes(hist.to_bytes()) == hist
    assert len(hist.to_bytes()) < 40


# -- serialisation --------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(samples_with_overflow, st.integers(min_value=1, max_value=2**62))
def test_serialisation_round_trip(values: list[int], weight: int) -> None:
    hist = of(values)
    assert LatencyHistogram.from_bytes(hist.to_bytes()) == hist
    hist.record(values[-1], count=weight)  # wide counts and wide deltas
    back = LatencyHistogram.from_bytes(hist.to_bytes())
    assert back == hist
    assert (back.clamped, back.total) == (hist.clamped, hist.total)


def test_serialised_form_is_compact() -> None:
    rng = np.random.default_rng(42)
    hist = LatencyHistogram()
    hist.record_many(rng.lognormal(np.log(5000), 1.0, 1_000_000).astype(np.int64))
    nonzero = int(np.count_nonzero(hist.counts))
    assert len(hist.to_bytes()) < 2 * nonzero  # raw counts are 184 KiB
    assert LatencyHistogram.from_bytes(bytearray(hist.to_bytes())) == hist


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_from_bytes_raises_only_histogram_error(data: bytes) -> None:
    with contextlib.suppress(HistogramError):
        LatencyHistogram.from_bytes(data)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_from_bytes_on_well_framed_garbage_raises_only_histogram_error(body: bytes) -> None:
    """Garbage inside a valid frame reaches the field checks, not just zlib."""
    with contextlib.suppress(HistogramError):
        LatencyHistogram.from_bytes(b"WLH\x02" + zlib.compress(body))


def field(bits: int) -> st.SearchStrategy[int]:
    return st.one_of(st.integers(min_value=0, max_value=3), st.integers(0, 2**bits - 1))


@settings(max_examples=400, deadline=None)
@given(
    st.tuples(field(64), field(64), field(32), field(32), field(64), field(64)),
    st.integers(min_value=0, max_value=30),
    st.sampled_from([1, 2, 4, 8]),
    st.data(),
)
def test_from_bytes_on_right_sized_garbage_raises_only_histogram_error(
    fields: tuple[int, ...], n: int, width: int, data: st.DataObject
) -> None:
    """Random fields and counters of the right length reach every consistency check."""
    payload = data.draw(st.binary(min_size=n * (2 + width), max_size=n * (2 + width)))
    with contextlib.suppress(HistogramError):
        back = LatencyHistogram.from_bytes(framed(*fields, n, width, payload=payload))
        assert back.count == int(back.counts.sum())
        assert back == LatencyHistogram.from_bytes(back.to_bytes())


def test_every_truncation_and_byte_flip_rejected_or_consistent() -> None:
    data = of([1, 2, 3, 10_000, HIGHEST + 1]).to_bytes()
    for cut in range(len(data)):
        with pytest.raises(HistogramError):
            LatencyHistogram.from_bytes(data[:cut])
    with pytest.raises(HistogramError):
        LatencyHistogram.from_bytes(data + b"\x00")
    for pos in range(len(data)):
        tampered = bytearray(data)
        tampered[pos] ^= 0x55
        with contextlib.suppress(HistogramError):
            LatencyHistogram.from_bytes(bytes(tampered))


@pytest.mark.parametrize(
    ("fields", "payload", "problem"),
    [
        ((1, 0, 1, 1, 1, 0, 1, 1), b"\x01\x00\x04", "add up"),  # the counter holds 2
        ((1, 0, 5, 5, 5, 0, 1, 1), b"\x00\x5c\x02", "indices"),  # index 23,552
        ((2, 0, 1, 2, 3, 0, 2, 1), b"\x01\x00\x00\x00\x02\x00", "indices"),  # repeated index
        ((1, 0, 9, 1, 1, 0, 1, 1), b"\x01\x00\x02", "min, max"),  # min above max
        ((1, 1, 1, 1, 1, 0, 1, 1), b"\x01\x00\x02", "clamped"),  # clamped below HIGHEST
        ((1, 0, 1, 1, 1, 0, 1, 3), b"\x01\x00\x02\x00\x00", "header"),  # width 3
        ((1, 0, 1, 1, 1, 0, 30_000, 1), b"", "header"),  # more counters than exist
        ((1, 0, 1, 1, 1, 0, 2, 1), b"\x01\x00\x02", "length"),
        ((0, 0, 0, 0, 0, 0, 1, 1), b"\x01\x00\x02", "not empty"),
        ((2**64 - 1, 0, 1, 1, 1, 0, 1, 1), b"\x01\x00\x02", "impossible"),
    ],
)
def test_crafted_bodies_rejected(fields: tuple[int, ...], payload: bytes, problem: str) -> None:
    with pytest.raises(HistogramError, match=problem):
        LatencyHistogram.from_bytes(framed(*fields, payload=payload))


def test_crafted_body_that_is_consistent_decodes() -> None:
    # One value 1: gap 1 (index 1), zigzag delta 2 (count 1).
    assert LatencyHistogram.from_bytes(framed(1, 0, 1, 1, 1, 0, 1, 1, payload=b"\x01\x00\x02")) == (
        of([1])
    )


def test_zlib_bomb_and_wrong_types_rejected() -> None:
    with pytest.raises(HistogramError, match="oversized"):
        LatencyHistogram.from_bytes(b"WLH\x02" + zlib.compress(b"\x00" * 10_000_000))
    with pytest.raises(HistogramError, match="not a serialised"):
        LatencyHistogram.from_bytes(b"WLH\x01" + zlib.compress(b""))
    for wrong in ("WLH", None, 42):
        with pytest.raises(HistogramError, match="expected bytes"):
            LatencyHistogram.from_bytes(wrong)  # type: ignore[arg-type]


# -- packed samples -------------------------------------------------------------


def test_pack_samples_clamps_and_round_trips() -> None:
    packed = pack_samples([0, 7, 2**32 - 1, 2**32, 2**70])
    assert len(packed) == 20
    assert unpack_samples(packed).tolist() == [0, 7, 2**32 - 1, 2**32 - 1, 2**32 - 1]
    assert pack_samples(np.array([3, 2**40], dtype=np.uint64)) == pack_samples([3, 2**40])
    assert pack_samples(np.array([1, 2], dtype=np.int8)) == pack_samples(iter([1, 2]))
    assert pack_samples([]) == b""
    assert unpack_samples(b"").size == 0


def test_pack_samples_rejects_what_the_histogram_rejects() -> None:
    for bad in ([-1], [2**70, -(2**70)], [1.5], ["1"]):
        with pytest.raises(HistogramError):
            pack_samples(bad)  # type: ignore[arg-type]
    with pytest.raises(HistogramError, match="not whole"):
        unpack_samples(b"\x00")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**32 - 1), max_size=200))
def test_packed_samples_record_like_the_values(values: list[int]) -> None:
    hist = LatencyHistogram()
    hist.record_packed(pack_samples(values))
    assert hist == (of(values) if values else LatencyHistogram())

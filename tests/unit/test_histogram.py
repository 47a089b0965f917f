"""The latency histogram: HdrHistogram precision, merging, serialisation. No sockets."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.errors import HistogramError
from common.histogram import (
    HIGHEST,
    LatencyHistogram,
    counts_index,
    highest_equivalent,
    lowest_equivalent,
    pack_samples,
    unpack_samples,
)

latencies = st.lists(st.integers(min_value=0, max_value=HIGHEST), min_size=1, max_size=400)


def of(values: list[int]) -> LatencyHistogram:
    hist = LatencyHistogram()
    hist.record_many(np.array(values, dtype=np.int64))
    return hist


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=HIGHEST))
def test_bucket_holds_its_value_within_three_digits(value: int) -> None:
    index = counts_index(value)
    low, high = lowest_equivalent(index), highest_equivalent(index)
    assert low <= value <= high
    assert high - low <= max(0, value) / 1000 + 1  # 3 significant digits


@settings(max_examples=200, deadline=None)
@given(latencies, st.integers(min_value=1, max_value=5))
def test_merge_of_parts_equals_whole(values: list[int], parts: int) -> None:
    whole = of(values)
    merged = LatencyHistogram()
    for k in range(parts):
        chunk = values[k::parts]
        if chunk:
            merged.merge(of(chunk))
    assert merged == whole
    assert (merged.count, merged.min, merged.max, merged.total) == (
        len(values),
        min(values),
        max(values),
        sum(values),
    )


@settings(max_examples=300, deadline=None)
@given(latencies)
def test_percentiles_within_stated_precision(values: list[int]) -> None:
    hist = of(values)
    ordered = sorted(values)
    for p in (50.0, 90.0, 95.0, 99.0, 99.9, 100.0):
        rank = max(1, math.ceil(round(p / 100 * len(ordered), 9)))
        exact = ordered[rank - 1]
        got = hist.value_at_percentile(p)
        # Same bucket as the exact value: never below it, at most 1/1000 above.
        assert exact <= got <= exact + exact / 1000 + 1, (p, exact, got)
    assert hist.percentiles()["max"] == ordered[-1]
    assert hist.mean == pytest.approx(sum(values) / len(values))


def test_record_and_bulk_agree() -> None:
    rng = np.random.default_rng(1)
    values = rng.lognormal(9, 1.5, 5000).astype(np.int64)
    one = LatencyHistogram()
    for v in values:
        one.record(int(v))
    assert one == of(values.tolist())


def test_packed_uint32_and_uint64_agree() -> None:
    values = [0, 1, 999, 12_345, 4_000_000]
    a, b = LatencyHistogram(), LatencyHistogram()
    a.record_packed(np.array(values, dtype="<u4").tobytes())
    b.record_packed(np.array(values, dtype="<u8").tobytes(), dtype="<u8")
    assert a == b == of(values)
    with pytest.raises(HistogramError, match="not whole"):
        a.record_packed(b"\x00\x01\x02")


def test_negative_rejected_and_overflow_clamped_and_counted() -> None:
    hist = LatencyHistogram()
    with pytest.raises(HistogramError):
        hist.record(-1)
    with pytest.raises(HistogramError):
        hist.record_many(np.array([1, -5]))
    hist.record(HIGHEST + 10)
    hist.record_many(np.array([2**63 + 5], dtype=np.uint64))
    hist.record_packed(np.array([0xFFFFFFFF], dtype="<u4").tobytes())
    assert hist.clamped == 3
    assert hist.max == HIGHEST
    assert hist.count == 3


def test_empty_histogram() -> None:
    hist = LatencyHistogram()
    assert hist.is_empty
    assert hist.value_at_percentile(99) == 0
    assert set(hist.percentiles().values()) == {0}
    assert hist.mean == 0.0
    assert LatencyHistogram.from_bytes(hist.to_bytes()) == hist


@settings(max_examples=100, deadline=None)
@given(latencies, st.integers(min_value=1, max_value=2**40))
def test_serialisation_round_trip(values: list[int], weight: int) -> None:
    hist = of(values)
    hist.record(values[0], count=weight)  # wide counts take the uint64 path
    assert LatencyHistogram.from_bytes(hist.to_bytes()) == hist


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_from_bytes_raises_only_histogram_error(data: bytes) -> None:
    with contextlib.suppress(HistogramError):
        LatencyHistogram.from_bytes(data)


@pytest.mark.parametrize("cut", [1, 10, 47])
def test_truncated_or_tampered_bytes_rejected(cut: int) -> None:
    data = of([1, 2, 3, 10_000]).to_bytes()
    with pytest.raises(HistogramError):
        LatencyHistogram.from_bytes(data[:-cut])
    tampered = bytearray(data)
    tampered[-1] ^= 0xFF  # a count no longer adds up
    with pytest.raises(HistogramError):
        LatencyHistogram.from_bytes(bytes(tampered))


def test_pack_samples_clamps_and_round_trips() -> None:
    packed = pack_samples([-5, 0, 7, 2**40])
    assert unpack_samples(packed).tolist() == [0, 0, 7, 0xFFFFFFFF]
    with pytest.raises(HistogramError):
        unpack_samples(b"\x00")

"""A latency histogram with HdrHistogram's bucket layout, recorded in bulk with numpy.

Values are integer microseconds from 0 to one hour, kept to three significant
decimal digits, in HdrHistogram's exact bucket layout
(:mod:`wsload.common.hdr_layout`), so :mod:`wsload.common.hdrlog` writes our
counts array unchanged and any HdrHistogram tool reads it. Exact min, max and
sum are kept beside the buckets, so min, max and mean are exact, not bucket
approximations. The serialised form is :mod:`wsload.common.histogram_codec`.

Sans-I/O: the coordinator feeds it packed sample windows off the wire. Bulk
recording computes counter indices with in-place numpy operations on
cache-sized chunks and one ``np.add.at``: hundreds of millions of samples per
second, where a Python loop manages about one million.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from wsload.common import histogram_codec
from wsload.common.errors import HistogramError
from wsload.common.hdr_layout import (
    BUCKET_COUNT,
    COUNTS_LEN,
    HIGHEST,
    HIGHEST_EQ,
    LOWEST,
    MEDIAN_EQ,
    SIGNIFICANT_DIGITS,
    SUB_BUCKET_COUNT,
    UNIT_MAGNITUDE,
    counts_index,
    highest_equivalent,
    indices_inplace,
    lowest_equivalent,
)

#: The summary every report shows, as (key, percentile).
PERCENTILES: tuple[tuple[str, float], ...] = (
    *((f"p{p:g}", p) for p in (50.0, 90.0, 95.0, 99.0, 99.9)),
    ("max", 100.0),
)

_INT64_MAX: Final = 2**63 - 1
_UINT32_MAX: Final = 2**32 - 1
# 64 Ki values: the int64 and float64 temporaries stay in L2, 2-3x faster than whole arrays.
_CHUNK: Final = 1 << 16
_PACKED_DTYPES: Final = ("<u4", "<u8")


def _integers(values: npt.ArrayLike, ceiling: int) -> tuple[npt.NDArray[Any], int, int]:
    """``values`` as a flat integer array with its min and max (0, 0 when empty).

    Refuses non-integers and negative values. Python ints beyond uint64 make
    numpy build an object array; those are clamped to ``ceiling`` while exact.
    """
    try:
        arr = np.asarray(values).reshape(-1)
    except (TypeError, ValueError) as exc:  # ragged nesting, unconvertible objects
        raise HistogramError(f"latencies must be a flat array of integers: {exc}") from None
    if arr.size == 0:
        return arr, 0, 0
    if arr.dtype.kind == "O":
        try:
            ints = [operator.index(v) for v in arr]
        except TypeError:
            raise HistogramError("latencies must be integers") from None
        if min(ints) < 0:
            raise HistogramError(f"latency must not be negative, got {min(ints)}")
        arr = np.array([min(v, ceiling) for v in ints], dtype=np.uint64)
    if arr.dtype.kind not in "iu":
        raise HistogramError(f"latencies must be integers, got dtype {arr.dtype}")
    low, high = int(arr.min()), int(arr.max())
    if low < 0:
        raise HistogramError(f"latency must not be negative, got {low}")
    return arr, low, high


def _rank(percentile: float, count: int) -> int:
    """``max(1, ceil(percentile / 100 * count))``, exact on the percentile's decimal form."""
    if not 0.0 <= percentile <= 100.0:  # also rejects NaN
        raise HistogramError(f"percentile must be within 0..100, got {percentile}")
    return max(1, math.ceil(Fraction(repr(float(percentile))) * count / 100))


class LatencyHistogram:
    """Counts of microsecond latencies; mergeable, serialisable, percentile-queryable.

    ``counts`` is HdrHistogram's counts array (read it, do not write it). A
    value above :data:`HIGHEST` is recorded as :data:`HIGHEST` and counted in
    :attr:`clamped`: a load tool must not crash on one absurd sample, nor hide
    it. A negative value raises :class:`HistogramError`: it is a clock bug.
    """

    __slots__ = ("_clamped", "_count", "_max", "_min", "_sum", "counts")

    def __init__(self) -> None:
        self.counts: npt.NDArray[np.int64] = np.zeros(COUNTS_LEN, dtype=np.int64)
        self._count = self._clamped = self._min = self._max = self._sum = 0

    # -- recording ------------------------------------------------------------

    def record(self, value_us: int, count: int = 1) -> None:
        """Record ``value_us`` ``count`` times (``count`` 0 records nothing)."""
        value, times = operator.index(value_us), operator.index(count)
        if value < 0:
            raise HistogramError(f"latency must not be negative, got {value}")
        if times < 0:
            raise HistogramError(f"count must not be negative, got {times}")
        if times == 0:
            return
        self._check_room(times)
        if value > HIGHEST:
            value = HIGHEST
            self._clamped += times
        self.counts[counts_index(value)] += times
        self._note(value, value, value * times, times)

    def record_many(self, values: npt.ArrayLike) -> None:
        """Record every value of an integer array of any shape and integer dtype.

        All or nothing: a negative value or a non-integer dtype raises
        :class:`HistogramError` before anything is counted.
        """
        arr, low, high = _integers(values, HIGHEST + 1)
        if arr.size == 0:
            return
        self._check_room(arr.size)
        over = int(np.count_nonzero(arr > HIGHEST)) if high > HIGHEST else 0
        total = 0
        for start in range(0, arr.size, _CHUNK):
            chunk = arr[start : start + _CHUNK]
            if over:  # only dtypes that can hold HIGHEST get here, so the bound fits
                chunk = np.minimum(chunk, HIGHEST)
            part = chunk.astype(np.int64)  # always a copy: indexing works in place
            total += int(part.sum())  # a chunk's sum is far below 2**63
            np.add.at(self.counts, indices_inplace(part), 1)
        self._clamped += over
        self._note(min(low, HIGHEST), min(high, HIGHEST), total, int(arr.size))

    def record_packed(self, buf: bytes | bytearray | memoryview, dtype: str = "<u4") -> None:
        """Record a packed little-endian ``<u4`` or ``<u8`` array (a samples window's wire form)."""
        if dtype not in _PACKED_DTYPES:
            raise HistogramError(f"packed samples must be one of {_PACKED_DTYPES}, got {dtype!r}")
        nbytes = memoryview(buf).nbytes
        if nbytes % np.dtype(dtype).itemsize:
            raise HistogramError(f"packed samples of {nbytes} bytes are not whole {dtype}")
        if nbytes:
            self.record_many(np.frombuffer(buf, dtype=dtype))

    def _check_room(self, more: int) -> None:
        """Refuse to wrap an int64 counter (the total bounds every counter)."""
        if more > _INT64_MAX - self._count:
            raise HistogramError("histogram cannot count more than 2**63 - 1 values")

    def _note(self, low: int, high: int, total: int, count: int) -> None:
        if self._count == 0 or low < self._min:
            self._min = low
        self._max = max(self._max, high)
        self._sum += total
        self._count += count

    # -- combining ------------------------------------------------------------

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other``'s counts, clamped count, min, max and sum into this histogram."""
        if other._count == 0:
            return
        self._check_room(other._count)
        self.counts += other.counts
        self._clamped += other._clamped
        self._note(other._min, other._max, other._sum, other._count)

    def copy(self) -> LatencyHistogram:
        """An independent histogram equal to this one."""
        out = type(self)()
        out.merge(self)
        return out

    def reset(self) -> None:
        """Back to empty, keeping the counts array (no 184 KiB reallocation)."""
        self.counts[:] = 0
        self._count = self._clamped = self._min = self._max = self._sum = 0

    # -- queries --------------------------------------------------------------

    @property
    def count(self) -> int:
        """Number of recorded values."""
        return self._count

    @property
    def clamped(self) -> int:
        """How many recorded values were above :data:`HIGHEST` (and counted as it)."""
        return self._clamped

    @property
    def is_empty(self) -> bool:
        return self._count == 0

    @property
    def min(self) -> int:
        """Exact smallest recorded value (after clamping); 0 when empty."""
        return self._min

    @property
    def max(self) -> int:
        """Exact largest recorded value (after clamping); 0 when empty."""
        return self._max

    @property
    def total(self) -> int:
        """Exact sum of every recorded value (after clamping)."""
        return self._sum

    @property
    def mean(self) -> float:
        """Exact mean; 0.0 when empty."""
        return self._sum / self._count if self._count else 0.0

    @property
    def stdev(self) -> float:
        """Population standard deviation, HdrHistogram style: each value is taken as
        its counter's median-equivalent value, so it is good to the bucket precision."""
        if self._count == 0:
            return 0.0
        nonzero = np.flatnonzero(self.counts)
        deviation = MEDIAN_EQ[nonzero] - self.mean
        weighted = float(np.dot(self.counts[nonzero].astype(np.float64), deviation * deviation))
        return math.sqrt(weighted / self._count)

    def value_at_percentile(self, percentile: float) -> int:
        """The value at ``percentile`` (0..100), HdrHistogram style; 0 when empty.

        Rank definition: ``rank = max(1, ceil(percentile / 100 * count))``,
        computed exactly on the percentile's shortest decimal form (99.9 % of
        20,000 is rank 19,980, not the 19,981 binary floating point gives). The
        exact percentile is the rank-th smallest recorded value (1-based); the
        answer is the highest value equivalent to it, i.e. the top of its
        counter, so it is never below the exact value and at most 1/1024 above
        it. It is capped at the exact max so that no percentile exceeds the
        reported max (HdrHistogram rounds its max up instead; the answers
        differ only inside the max's own counter). 100 gives the exact max and
        0 the exact min.
        """
        return self._values_at((percentile,))[0]

    def percentiles(self) -> dict[str, int]:
        """p50, p90, p95, p99, p99.9 and max in microseconds, all 0 when empty."""
        values = self._values_at([p for _, p in PERCENTILES])
        return {name: value for (name, _), value in zip(PERCENTILES, values, strict=True)}

    def _values_at(self, percentiles: Sequence[float]) -> list[int]:
        ranks = [_rank(p, self._count) for p in percentiles]  # validates even when empty
        if self._count == 0:
            return [0] * len(ranks)
        # First counter whose cumulative count reaches the rank; rank <= count always.
        tops = HIGHEST_EQ[np.searchsorted(np.cumsum(self.counts), ranks)].tolist()
        return [
            self._max if p >= 100.0 else self._min if p <= 0.0 else min(top, self._max)
            for p, top in zip(percentiles, tops, strict=True)
        ]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyHistogram):
            return NotImplemented
        return (
            (self._count, self._sum, self._min, self._max, self._clamped)
            == (other._count, other._sum, other._min, other._max, other._clamped)
        ) and bool(np.array_equal(self.counts, other.counts))

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"LatencyHistogram(count={self._count}, min={self._min}, max={self._max})"

    # -- serialisation --------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Compact form for the wire and the report (:mod:`wsload.common.histogram_codec`).

        About one byte per non-zero counter: ~7 KB for a million lognormal
        samples, against 184 KiB for the raw counts.
        """
        totals = (self._count, self._clamped, self._min, self._max, self._sum)
        return histogram_codec.encode(totals, self.counts)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> LatencyHistogram:
        """Inverse of :meth:`to_bytes`.

        Raises :class:`HistogramError`, and nothing else, on anything
        malformed: truncation, garbage, zlib bombs (the output is bounded
        before inflating), out-of-range indices or a header that disagrees
        with the counts. A histogram that decodes is internally consistent.
        """
        totals, index, counts = histogram_codec.decode(data)
        out = cls()
        out._count, out._clamped, out._min, out._max, out._sum = totals
        out.counts[index] = counts
        return out


def pack_samples(values: Iterable[int] | npt.NDArray[np.integer[Any]]) -> bytes:
    """Latencies in their wire form: little-endian uint32 microseconds.

    Values above 2**32 - 1 (71 minutes) are clamped to it; the histogram then
    clamps and counts them at :data:`HIGHEST`. A negative value raises
    :class:`HistogramError`, as :meth:`LatencyHistogram.record` does.
    """
    arr, _, _ = _integers(values if isinstance(values, np.ndarray) else list(values), _UINT32_MAX)
    # uint64 holds every value now, and the bound fits it (int8 would not).
    return np.minimum(arr.astype(np.uint64), _UINT32_MAX).astype("<u4").tobytes()


def unpack_samples(buf: bytes | bytearray | memoryview) -> npt.NDArray[np.uint32]:
    """Inverse of :func:`pack_samples` (a read-only view of ``buf``, no copy)."""
    nbytes = memoryview(buf).nbytes
    if nbytes % 4:
        raise HistogramError(f"packed samples of {nbytes} bytes are not whole uint32")
    return np.frombuffer(buf, dtype="<u4")


__all__ = [
    "BUCKET_COUNT",
    "COUNTS_LEN",
    "HIGHEST",
    "LOWEST",
    "PERCENTILES",
    "SIGNIFICANT_DIGITS",
    "SUB_BUCKET_COUNT",
    "UNIT_MAGNITUDE",
    "LatencyHistogram",
    "counts_index",
    "highest_equivalent",
    "lowest_equivalent",
    "pack_samples",
    "unpack_samples",
]

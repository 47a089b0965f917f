"""A latency histogram with HdrHistogram's bucket layout, recorded in bulk with numpy.

Values are integer microseconds from 0 to one hour, kept to three
significant decimal digits: exactly HdrHistogram's layout for
``lowest=1, highest=3_600_000_000, significant_figures=3`` (2048 sub-buckets,
22 buckets, 23,552 counters), so the counts can later be written in the
standard HdrHistogram log format. Exact min, max and sum are kept beside the
buckets, so min, max and mean are exact.

Bulk recording computes every bucket index with a handful of vectorised
numpy operations and one ``bincount``: the coordinator merges tens of
millions of samples per second this way, where a Python loop manages one.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from common.errors import HistogramError

LOWEST = 1
HIGHEST = 3_600_000_000
SIGNIFICANT_DIGITS = 3
SUB_BUCKET_COUNT = 2048  # 2 * 10**3 rounded up to a power of two
SUB_BUCKET_HALF_MAGNITUDE = 10
SUB_BUCKET_MASK = SUB_BUCKET_COUNT - 1
BUCKET_COUNT = 22  # buckets needed to reach HIGHEST
COUNTS_LEN = (BUCKET_COUNT + 1) * (SUB_BUCKET_COUNT // 2)

PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p95", 95.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("max", 100.0),
)

_MAGIC = b"WLH1"
# magic, count, min, max, sum (128-bit), clamped, non-zero buckets, wide counts
_HEADER = struct.Struct("<4sQQQ16sQIB")
_UINT32_MAX = 0xFFFFFFFF


def counts_index(value: int) -> int:
    """Index of the counter ``value`` falls in (HdrHistogram's countsArrayIndex)."""
    bucket = (value | SUB_BUCKET_MASK).bit_length() - (SUB_BUCKET_HALF_MAGNITUDE + 1)
    return (bucket << SUB_BUCKET_HALF_MAGNITUDE) + (value >> bucket)


def _indices(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Vectorised :func:`counts_index` (bit length via frexp, exact below 2**53)."""
    _, exponent = np.frexp((values | SUB_BUCKET_MASK).astype(np.float64))
    bucket = exponent.astype(np.int64) - (SUB_BUCKET_HALF_MAGNITUDE + 1)
    return (bucket << SUB_BUCKET_HALF_MAGNITUDE) + (values >> bucket)


def lowest_equivalent(index: int) -> int:
    """Smallest value counted at ``index``."""
    bucket = (index >> SUB_BUCKET_HALF_MAGNITUDE) - 1
    sub = (index & ((1 << SUB_BUCKET_HALF_MAGNITUDE) - 1)) + (1 << SUB_BUCKET_HALF_MAGNITUDE)
    if bucket < 0:
        sub -= 1 << SUB_BUCKET_HALF_MAGNITUDE
        bucket = 0
    return sub << bucket


def highest_equivalent(index: int) -> int:
    """Largest value counted at ``index``: the value a percentile reports."""
    bucket = max(0, (index >> SUB_BUCKET_HALF_MAGNITUDE) - 1)
    return lowest_equivalent(index) + (1 << bucket) - 1


class LatencyHistogram:
    """Counts of microsecond latencies; mergeable, serialisable, percentile-queryable."""

    __slots__ = ("_max", "_min", "_sum", "clamped", "count", "counts")

    def __init__(self) -> None:
        self.counts: npt.NDArray[np.int64] = np.zeros(COUNTS_LEN, dtype=np.int64)
        self.count = 0
        self.clamped = 0
        self._min = 0
        self._max = 0
        self._sum = 0

    # -- recording ------------------------------------------------------------

    def record(self, value_us: int, count: int = 1) -> None:
        """Record one value ``count`` times."""
        if value_us < 0:
            raise HistogramError(f"latency must not be negative, got {value_us}")
        if count <= 0:
            return
        if value_us > HIGHEST:
            value_us = HIGHEST
            self.clamped += count
        self.counts[counts_index(value_us)] += count
        self._note(value_us, value_us, value_us * count, count)

    def record_many(self, values: npt.ArrayLike) -> None:
        """Record every value of an integer array (any integer dtype)."""
        arr = np.asarray(values)
        if arr.size == 0:
            return
        if arr.dtype.kind not in "iu":
            raise HistogramError(f"latencies must be integers, got {arr.dtype}")
        if arr.dtype.kind == "i" and int(arr.min()) < 0:
            raise HistogramError(f"latency must not be negative, got {int(arr.min())}")
        if arr.dtype.kind == "u" and arr.dtype.itemsize == 8:
            arr = np.minimum(arr, HIGHEST + 1)  # before the int64 view can overflow
        v = arr.astype(np.int64, copy=False).ravel()
        over = int(np.count_nonzero(v > HIGHEST))
        if over:
            self.clamped += over
            v = np.minimum(v, HIGHEST)
        self.counts += np.bincount(_indices(v), minlength=COUNTS_LEN)
        self._note(int(v.min()), int(v.max()), int(v.sum()), int(v.size))

    def record_packed(self, buf: bytes, dtype: str = "<u4") -> None:
        """Record a packed little-endian array (the wire form of a samples window)."""
        if not buf:
            return
        itemsize = np.dtype(dtype).itemsize
        if len(buf) % itemsize:
            raise HistogramError(f"packed samples of {len(buf)} bytes are not whole {dtype}")
        self.record_many(np.frombuffer(buf, dtype=dtype))

    def _note(self, low: int, high: int, total: int, count: int) -> None:
        if self.count == 0 or low < self._min:
            self._min = low
        self._max = max(self._max, high)
        self._sum += total
        self.count += count

    # -- combining ------------------------------------------------------------

    def merge(self, other: LatencyHistogram) -> None:
        """Add ``other``'s counts into this histogram."""
        if other.count == 0:
            return
        self.counts += other.counts
        self.clamped += other.clamped
        self._note(other._min, other._max, other._sum, other.count)

    def copy(self) -> LatencyHistogram:
        out = LatencyHistogram()
        out.merge(self)
        return out

    def reset(self) -> None:
        self.counts[:] = 0
        self.count = self.clamped = self._min = self._max = self._sum = 0

    # -- queries --------------------------------------------------------------

    @property
    def is_empty(self) -> bool:
        return self.count == 0

    @property
    def min(self) -> int:
        return self._min

    @property
    def max(self) -> int:
        return self._max

    @property
    def total(self) -> int:
        """Exact sum of every recorded value."""
        return self._sum

    @property
    def mean(self) -> float:
        return self._sum / self.count if self.count else 0.0

    def value_at_percentile(self, percentile: float) -> int:
        """The value at ``percentile`` (0-100), HdrHistogram style.

        The rank is ``ceil(percentile / 100 * count)`` (at least 1): the
        smallest recorded value with at least that many values at or below
        it. The answer is the highest value of the bucket holding that rank
        (never above the exact max), so it is within 1/1000 of the exact value
        and never below it. 0 on an empty histogram.
        """
        if self.count == 0:
            return 0
        if percentile >= 100.0:
            return self._max
        rank = _rank(percentile, self.count)
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        return min(highest_equivalent(index), self._max)

    def percentiles(self) -> dict[str, int]:
        """p50, p90, p95, p99, p99.9 and max, in microseconds."""
        if self.count == 0:
            return {name: 0 for name, _ in PERCENTILES}
        cumulative = np.cumsum(self.counts)
        out: dict[str, int] = {}
        for name, p in PERCENTILES:
            if p >= 100.0:
                out[name] = self._max
                continue
            rank = _rank(p, self.count)
            index = int(np.searchsorted(cumulative, rank))
            out[name] = min(highest_equivalent(index), self._max)
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyHistogram):
            return NotImplemented
        return (
            self.count == other.count
            and self._sum == other._sum
            and self._min == other._min
            and self._max == other._max
            and self.clamped == other.clamped
            and bool(np.array_equal(self.counts, other.counts))
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LatencyHistogram(count={self.count}, min={self._min}, max={self._max})"

    # -- serialisation --------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Compact form: header, then the non-zero buckets (uint16 index, uint32/64 count)."""
        nonzero = np.flatnonzero(self.counts)
        values = self.counts[nonzero]
        wide = bool(values.size) and int(values.max()) > _UINT32_MAX
        header = _HEADER.pack(
            _MAGIC,
            self.count,
            self._min,
            self._max,
            self._sum.to_bytes(16, "little"),
            self.clamped,
            nonzero.size,
            wide,
        )
        counts = values.astype("<u8" if wide else "<u4")
        return header + nonzero.astype("<u2").tobytes() + counts.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> LatencyHistogram:
        """Inverse of :meth:`to_bytes`; raises :class:`HistogramError` on anything malformed."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise HistogramError(f"expected bytes, got {type(data).__name__}")
        data = bytes(data)
        if len(data) < _HEADER.size:
            raise HistogramError("serialised histogram is truncated")
        magic, count, low, high, raw_sum, clamped, n, wide = _HEADER.unpack_from(data)
        total = int.from_bytes(raw_sum, "little")
        if magic != _MAGIC:
            raise HistogramError("not a serialised wsload histogram")
        if wide not in (0, 1) or n > COUNTS_LEN:
            raise HistogramError("serialised histogram has an invalid header")
        width = 8 if wide else 4
        if len(data) != _HEADER.size + n * (2 + width):
            raise HistogramError("serialised histogram has the wrong length")
        start = _HEADER.size
        index = np.frombuffer(data, dtype="<u2", count=n, offset=start).astype(np.int64)
        values = np.frombuffer(data, dtype="<u8" if wide else "<u4", count=n, offset=start + 2 * n)
        if n and (int(index.max()) >= COUNTS_LEN or np.any(np.diff(index) <= 0)):
            raise HistogramError("serialised histogram has invalid bucket indices")
        if np.any(values == 0) or int(values.astype(object).sum()) != count:
            raise HistogramError("serialised histogram counts do not add up")
        if (count and not low <= high <= HIGHEST) or clamped > count:
            raise HistogramError("serialised histogram has an invalid min/max")
        out = cls()
        out.counts[index] = values.astype(np.int64)
        out.count, out._min, out._max, out._sum, out.clamped = count, low, high, total, clamped
        return out


def _rank(percentile: float, count: int) -> int:
    """``ceil(percentile / 100 * count)``, at least 1, without float noise (99.9% of 20000
    is 19980, not the 19980.000000000004 the naive product gives)."""
    return max(1, math.ceil(round(max(0.0, percentile) / 100.0 * count, 9)))


def pack_samples(values: Iterable[int]) -> bytes:
    """Little-endian uint32 microseconds, clamped to 0..2**32-1 (the wire form)."""
    arr = np.fromiter(values, dtype=np.int64)
    return np.clip(arr, 0, _UINT32_MAX).astype("<u4").tobytes()


def unpack_samples(buf: bytes) -> npt.NDArray[Any]:
    """Inverse of :func:`pack_samples`."""
    if len(buf) % 4:
        raise HistogramError(f"packed samples of {len(buf)} bytes are not whole uint32")
    return np.frombuffer(buf, dtype="<u4")


__all__ = [
    "HIGHEST",
    "PERCENTILES",
    "LatencyHistogram",
    "counts_index",
    "highest_equivalent",
    "lowest_equivalent",
    "pack_samples",
    "unpack_samples",
]

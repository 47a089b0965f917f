"""The serialised form of a :class:`wsload.common.histogram.LatencyHistogram`.

``_MAGIC``, then one zlib stream of ``_BODY_HEADER``, the gaps between
non-zero counter indices (<u2) and the zigzag deltas between their counts
(<u1/2/4/8, whichever fits), each array split into byte planes: about one
byte per non-zero counter, ~7 KB for a million lognormal samples against
184 KiB for the raw counts.

Decoding is a trust boundary (histograms travel between processes and into
reports): :func:`decode` raises :class:`HistogramError`, and nothing else, on
anything malformed, and what it returns is internally consistent.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from wsload.common.errors import HistogramError
from wsload.common.hdr_layout import COUNTS_LEN, HIGHEST, counts_index

_MAGIC: Final = b"WLH\x02"  # the last byte is the format version
# count, clamped, min, max, sum low 64 bits, sum high 64 bits, non-zero counters, delta width
_BODY_HEADER: Final = struct.Struct("<QQIIQQHB")
_MAX_BODY: Final = _BODY_HEADER.size + COUNTS_LEN * (2 + 8)
_INT64_MAX: Final = 2**63 - 1

#: A histogram's exact figures beside its counts: (count, clamped, min, max, sum).
Totals = tuple[int, int, int, int, int]


def encode(totals: Totals, counts: npt.NDArray[np.int64]) -> bytes:
    """``counts`` (a whole counts array) and its ``totals``, serialised."""
    count, clamped, low, high, total = totals
    nonzero = np.flatnonzero(counts)
    values = counts[nonzero]
    gaps = np.diff(nonzero, prepend=0)  # the first "gap" is the first index
    deltas = np.diff(values, prepend=0)  # neighbouring counters hold similar counts
    zigzag = (deltas.view(np.uint64) << np.uint64(1)) ^ (deltas >> 63).view(np.uint64)
    top = int(zigzag.max()) if zigzag.size else 0
    width = next(w for w in (1, 2, 4, 8) if top < 1 << (8 * w))
    lo, hi, n = total & 0xFFFF_FFFF_FFFF_FFFF, total >> 64, nonzero.size
    header = _BODY_HEADER.pack(count, clamped, low, high, lo, hi, n, width)
    body = header + _planes(gaps, "<u2") + _planes(zigzag, f"<u{width}")
    return _MAGIC + zlib.compress(body)


def decode(
    data: bytes | bytearray | memoryview,
) -> tuple[Totals, npt.NDArray[np.int64], npt.NDArray[Any]]:
    """Inverse of :func:`encode`: (totals, indices of the non-zero counters, their counts).

    Raises :class:`HistogramError` on truncation, garbage, zlib bombs (the
    output is bounded before inflating), out-of-range indices or a header
    that disagrees with the counts.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise HistogramError(f"expected bytes, got {type(data).__name__}")
    raw = bytes(data)
    if raw[: len(_MAGIC)] != _MAGIC:
        raise HistogramError("not a serialised wsload histogram (or another version)")
    inflater = zlib.decompressobj()
    try:
        body = inflater.decompress(raw[len(_MAGIC) :], _MAX_BODY + 1)
    except zlib.error:
        raise HistogramError("serialised histogram is corrupt (zlib)") from None
    if not inflater.eof or inflater.unused_data or len(body) > _MAX_BODY:
        raise HistogramError("serialised histogram is truncated, oversized or trailed")
    if len(body) < _BODY_HEADER.size:
        raise HistogramError("serialised histogram header is truncated")
    count, clamped, low, high, sum_lo, sum_hi, n, width = _BODY_HEADER.unpack_from(body)
    if width not in (1, 2, 4, 8) or n > COUNTS_LEN:
        raise HistogramError("serialised histogram has an invalid header")
    if len(body) != _BODY_HEADER.size + n * (2 + width):
        raise HistogramError("serialised histogram has the wrong length")
    start = _BODY_HEADER.size
    gaps = _unplanes(body[start : start + 2 * n], n, "<u2").astype(np.int64)
    zigzag = _unplanes(body[start + 2 * n :], n, f"<u{width}").astype(np.uint64)
    index = np.cumsum(gaps)
    deltas = (zigzag >> np.uint64(1)) ^ (np.uint64(0) - (zigzag & np.uint64(1)))
    counts = np.cumsum(deltas.view(np.int64))  # garbage may wrap; checked below
    totals = (count, clamped, low, high, sum_lo | (sum_hi << 64))
    problem = _inconsistency(totals, index, counts)
    if problem:
        raise HistogramError(f"serialised histogram is inconsistent: {problem}")
    return totals, index, counts


def _inconsistency(
    totals: Totals, index: npt.NDArray[np.int64], counts: npt.NDArray[Any]
) -> str | None:
    """Why decoded fields cannot be what :func:`encode` wrote, or None."""
    count, clamped, low, high, total = totals
    if count > _INT64_MAX or clamped > count:
        return "impossible count"
    if count == 0:
        return None if (index.size, clamped, low, high, total) == (0,) * 5 else "not empty"
    if index.size == 0 or int(index[-1]) >= COUNTS_LEN or np.any(np.diff(index) <= 0):
        return "counter indices out of range or order"
    if int(counts.min()) <= 0:
        return "non-positive counter"
    # Exact sum of up to 23,552 int64 counters without overflow: halves of 32 bits.
    summed = (int((counts >> 32).sum()) << 32) + int((counts & 0xFFFF_FFFF).sum())
    if summed != count:
        return "counters do not add up to the count"
    if not low <= high <= HIGHEST or not low * count <= total <= high * count:
        return "min, max and sum disagree"
    if counts_index(low) != int(index[0]) or counts_index(high) != int(index[-1]):
        return "min or max outside the first or last counter"
    if clamped and (high != HIGHEST or int(counts[-1]) < clamped):
        return "clamped values missing from the top counter"
    return None


def _planes(values: npt.NDArray[Any], dtype: str) -> bytes:
    """All first bytes, then all second bytes...: the high planes are runs of zeros for zlib."""
    size = np.dtype(dtype).itemsize
    return values.astype(dtype).view(np.uint8).reshape(-1, size).T.tobytes()


def _unplanes(buf: bytes, n: int, dtype: str) -> npt.NDArray[Any]:
    size = np.dtype(dtype).itemsize
    planes = np.frombuffer(buf, dtype=np.uint8).reshape(size, n)
    return np.ascontiguousarray(planes.T).view(dtype).reshape(n)


__all__ = ["Totals", "decode", "encode"]

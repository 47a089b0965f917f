"""The HdrHistogram log format (.hlog), so existing HdrHistogram tools read wsload's latencies.

Each interval line carries a histogram in HdrHistogram's V2 compressed wire
form: a 40-byte big-endian header (cookie, payload length, normalizing
offset, significant digits, lowest and highest trackable value, conversion
ratio), the counts up to the max value as ZigZag LEB128 varints with runs of
zeros written as one negative number, all zlib-compressed behind an 8-byte
compression header, then base64. wsload's buckets *are* HdrHistogram's for
``1 .. 3_600_000_000`` at 3 digits, so the counts go out unchanged.
"""

from __future__ import annotations

import base64
import struct
import time
import zlib
from collections.abc import Iterable

import numpy as np

from wsload.common.histogram import (
    HIGHEST,
    LOWEST,
    SIGNIFICANT_DIGITS,
    LatencyHistogram,
    counts_index,
)

ENCODING_COOKIE = 0x1C849303 | 0x10
COMPRESSION_COOKIE = 0x1C849304 | 0x10
_HEADER = struct.Struct(">IIIIqqd")
_OUTER = struct.Struct(">II")
#: wsload records microseconds; HdrHistogram logs report the max in seconds
MAX_VALUE_UNIT_RATIO = 1e6


def _varint(value: int, out: bytearray) -> None:
    """ZigZag then LEB128, as HdrHistogram's ZigZagEncoding.putLong."""
    z = (value << 1) ^ (value >> 63)
    z &= (1 << 64) - 1
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)


def encode(hist: LatencyHistogram) -> str:
    """One histogram in HdrHistogram's base64 V2 compressed form."""
    payload = bytearray()
    if hist.count:
        limit = counts_index(hist.max) + 1
        counts = hist.counts[:limit]
        previous = -1
        for index in np.flatnonzero(counts):
            gap = int(index) - previous - 1
            if gap == 1:
                _varint(0, payload)
            elif gap > 1:
                _varint(-gap, payload)
            _varint(int(counts[index]), payload)
            previous = int(index)
    header = _HEADER.pack(
        ENCODING_COOKIE, len(payload), 0, SIGNIFICANT_DIGITS, LOWEST, HIGHEST, 1.0
    )
    compressed = zlib.compress(header + bytes(payload))
    return base64.b64encode(_OUTER.pack(COMPRESSION_COOKIE, len(compressed)) + compressed).decode()


def log_text(intervals: Iterable[tuple[float, float, int, str]], start_time: float) -> str:
    """A whole .hlog file from (start offset s, length s, max µs, :func:`encode` d) intervals."""
    stamp = time.strftime("%a %b %d %H:%M:%S %Z %Y", time.localtime(start_time))
    lines = [
        "#[Histogram log format version 1.3]",
        f"#[StartTime: {start_time:.3f} (seconds since epoch), {stamp}]",
        '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"',
    ]
    for start, length, max_us, encoded in intervals:
        lines.append(f"{start:.3f},{length:.3f},{max_us / MAX_VALUE_UNIT_RATIO:.6f},{encoded}")
    return "\n".join(lines) + "\n"


__all__ = ["encode", "log_text"]

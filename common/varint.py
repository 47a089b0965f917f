"""Latency samples on the wire: unsigned LEB128 varints, vectorised with numpy.

A sample is a uint32 count of microseconds. Fixed-width it takes 4 bytes;
as a varint it takes 1 byte below 128 µs, 2 below 16.4 ms, 3 below 2.1 s
(7 payload bits per byte, the high bit set on every byte but the last).
A window's worth is encoded and decoded in a handful of array operations,
with no Python loop per sample, so the coordinator still merges tens of
millions of samples per second.

Decoding is strict, because the bytes come from the network: a value
longer than 5 bytes, beyond uint32, or cut off at the end raises
:class:`wsload.common.errors.ProtocolError`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from wsload.common.errors import ProtocolError

MAX_BYTES = 5  # ceil(32 / 7)
_UINT32_MAX = 0xFFFFFFFF


def encode(values: npt.ArrayLike) -> bytes:
    """Varints of ``values`` (integers in 0 .. 2**32 - 1), concatenated."""
    v = np.asarray(values, dtype=np.uint64)
    if v.size == 0:
        return b""
    if v.max() > _UINT32_MAX:
        raise ValueError("varint samples must fit uint32")
    lengths = np.ones(v.shape, dtype=np.int64)
    for k in range(1, MAX_BYTES):
        lengths += v >= (1 << (7 * k))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    for k in range(MAX_BYTES):
        has = lengths > k
        if not has.any():
            break
        chunk = (v[has] >> np.uint64(7 * k)) & np.uint64(0x7F)
        more = (lengths[has] > k + 1).astype(np.uint64) << np.uint64(7)
        out[starts[has] + k] = (chunk | more).astype(np.uint8)
    return out.tobytes()


def decode(buf: bytes | bytearray | memoryview) -> npt.NDArray[np.uint32]:
    """Inverse of :func:`encode`; raises ProtocolError on malformed input."""
    b = np.frombuffer(buf, dtype=np.uint8)
    if b.size == 0:
        return np.zeros(0, dtype=np.uint32)
    ends = np.flatnonzero(b < 0x80)  # the last byte of each value
    if ends.size == 0 or ends[-1] != b.size - 1:
        raise ProtocolError("varint samples end in the middle of a value")
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts + 1
    if lengths.max() > MAX_BYTES:
        raise ProtocolError("varint sample longer than 5 bytes")
    values = np.zeros(ends.size, dtype=np.uint64)
    for k in range(int(lengths.max())):
        has = lengths > k
        idx: Any = starts[has] + k
        values[has] |= (b[idx].astype(np.uint64) & np.uint64(0x7F)) << np.uint64(7 * k)
    if values.max() > _UINT32_MAX:
        raise ProtocolError("varint sample beyond uint32")
    return values.astype(np.uint32)


__all__ = ["MAX_BYTES", "decode", "encode"]

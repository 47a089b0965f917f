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

import numpy as np
import numpy.typing as npt

from wsload.common.errors import ProtocolError
from wsload.common.varint63 import decode_u63, encode_u63

MAX_BYTES = 5  # ceil(32 / 7)
_UINT32_MAX = 0xFFFFFFFF


def encode(values: npt.ArrayLike) -> bytes:
    """Varints of ``values`` (integers in 0 .. 2**32 - 1), concatenated."""
    v = np.asarray(values, dtype=np.uint64)
    if v.size and v.max() > _UINT32_MAX:
        raise ValueError("varint samples must fit uint32")
    return encode_u63(v)


def decode(buf: bytes | bytearray | memoryview) -> npt.NDArray[np.uint32]:
    """Inverse of :func:`encode`; raises ProtocolError on malformed input."""
    values = decode_u63(buf, "varint samples", MAX_BYTES)
    if values.size and values.max() > _UINT32_MAX:
        raise ProtocolError("varint sample beyond uint32")
    return values.astype(np.uint32)


__all__ = ["MAX_BYTES", "decode", "encode"]

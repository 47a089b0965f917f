"""Unsigned LEB128 varints of up to 63 bits, vectorised with numpy (fan-out wire).

:mod:`wsload.common.varint` carries latency samples (uint32) with these
functions, bounded to 5 bytes; publications carry seqs and epoch
microseconds, which need more. Same layout (7 payload
bits a byte, the high bit on every byte but the last), at most 9 bytes, so
every value fits an int64 and no decoding can overflow. Decoding is strict:
the bytes come from the network, and anything malformed raises
:class:`wsload.common.errors.ProtocolError` naming ``where``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from wsload.common.errors import ProtocolError

MAX_VARINT_BYTES = 9  # 63 bits
U63 = (1 << 63) - 1


def encode_u63(values: npt.ArrayLike) -> bytes:
    """Varints of non-negative integers below 2**63, concatenated."""
    v = np.asarray(values, dtype=np.uint64).ravel()
    if v.size == 0:
        return b""
    if int(v.max()) > U63:
        raise ValueError("varints must fit 63 bits")
    lengths = np.ones(v.shape, dtype=np.int64)
    for k in range(1, MAX_VARINT_BYTES):
        lengths += v >= np.uint64(1 << (7 * k))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    for k in range(MAX_VARINT_BYTES):
        has = lengths > k
        if not has.any():
            break
        chunk = (v[has] >> np.uint64(7 * k)) & np.uint64(0x7F)
        more = (lengths[has] > k + 1).astype(np.uint64) << np.uint64(7)
        out[starts[has] + k] = (chunk | more).astype(np.uint8)
    return out.tobytes()


def decode_u63(
    buf: bytes | bytearray | memoryview, where: str, max_bytes: int = MAX_VARINT_BYTES
) -> npt.NDArray[np.uint64]:
    """Inverse of :func:`encode_u63`; ProtocolError naming ``where`` when malformed.

    ``max_bytes``: the longest varint accepted (5 for uint32 samples).
    """
    b = np.frombuffer(buf, dtype=np.uint8)
    if b.size == 0:
        return np.zeros(0, dtype=np.uint64)
    ends = np.flatnonzero(b < 0x80)
    if ends.size == 0 or ends[-1] != b.size - 1:
        raise ProtocolError(f"{where}: ends in the middle of a value")
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts + 1
    if int(lengths.max()) > max_bytes:
        raise ProtocolError(f"{where}: a varint longer than {max_bytes} bytes")
    values = np.zeros(ends.size, dtype=np.uint64)
    for k in range(int(lengths.max())):
        has = lengths > k
        idx: Any = starts[has] + k
        values[has] |= (b[idx].astype(np.uint64) & np.uint64(0x7F)) << np.uint64(7 * k)
    return values


#: Up to this many bytes, :func:`decode_small` (plain integers) beats numpy's fixed cost.
SMALL = 96


def decode_small(buf: bytes, where: str) -> list[int]:
    """:func:`decode_u63` for a few bytes, in plain Python (same checks)."""
    out: list[int] = []
    value = shift = 0
    for byte in buf:
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            out.append(value)
            value = shift = 0
        elif shift >= 7 * MAX_VARINT_BYTES:
            raise ProtocolError(f"{where}: a varint longer than {MAX_VARINT_BYTES} bytes")
    if shift:
        raise ProtocolError(f"{where}: ends in the middle of a value")
    return out


def zigzag(values: npt.ArrayLike, limit: int) -> npt.NDArray[np.uint64]:
    """Signed integers (clipped to ``-limit..limit``) as unsigned: 0, -1, 1, -2 -> 0, 1, 2, 3."""
    v = np.clip(np.asarray(values, dtype=np.int64), -limit, limit)
    return ((v << 1) ^ (v >> 63)).astype(np.uint64)


def unzigzag(u: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    """Inverse of :func:`zigzag`."""
    return (u >> np.uint64(1)).astype(np.int64) ^ -(u & np.uint64(1)).astype(np.int64)


def cumulative(parts: npt.NDArray[np.uint64], limit: int, where: str) -> npt.NDArray[np.int64]:
    """The running sum of ``parts``; ProtocolError when any would pass ``limit``.

    The bound is checked on a float sum first (every part is non-negative,
    so the float total bounds the exact one), so hostile parts can never
    overflow the exact int64 sum.
    """
    if parts.size and float(parts.astype(np.float64).sum()) > float(limit) * 1.01 + 2:
        raise ProtocolError(f"{where}: values beyond {limit}")
    out = np.cumsum(parts.astype(np.int64))
    if out.size and int(out[-1]) > limit:
        raise ProtocolError(f"{where}: values beyond {limit}")
    return out


__all__ = [
    "MAX_VARINT_BYTES",
    "SMALL",
    "U63",
    "cumulative",
    "decode_small",
    "decode_u63",
    "encode_u63",
    "unzigzag",
    "zigzag",
]

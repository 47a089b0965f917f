"""Which sequence numbers a subscriber received, as compact ranges (sans-I/O).

A subscriber that gets every publication holds one range, whatever the
count; each missing run of publications adds one. Memory is therefore
proportional to the gaps, not to the deliveries, and the common case (the
next seq after the last one) costs a comparison and a store: it runs once
per delivery on the worker, whose CPU per delivery is a measured figure.

Duplicates (a seq already held) and out-of-order arrivals (a new seq below
the highest held so far) are counted here; the two never count the same
arrival. ``max_ranges`` bounds the memory a hostile or broken stream can
cost: a seq that would open a range beyond it is counted ``untracked``
instead of recorded (the coordinator reports such seqs as missing and says
how many were untracked).
"""

from __future__ import annotations

import bisect
from typing import Literal

#: Largest sequence number accepted (exact in a float, JSON-safe).
MAX_SEQ = (1 << 53) - 1
#: Default bound on the ranges one RangeSet holds.
DEFAULT_MAX_RANGES = 65_536

Added = Literal["new", "duplicate"]


class RangeSet:
    """A set of non-negative integers held as sorted, disjoint, non-adjacent ranges."""

    __slots__ = ("_hi", "_lo", "count", "duplicates", "max_ranges", "out_of_order", "untracked")

    def __init__(self, max_ranges: int = DEFAULT_MAX_RANGES) -> None:
        self._lo: list[int] = []  # range starts, ascending
        self._hi: list[int] = []  # range ends (inclusive), ascending
        self.duplicates = 0
        self.out_of_order = 0
        self.untracked = 0
        self.count = 0  #: distinct seqs held
        self.max_ranges = max_ranges

    def add(self, seq: int) -> Added:
        """Record ``seq``: "new" the first time, "duplicate" after.

        Raises ValueError for a seq outside 0..MAX_SEQ (the caller decides
        whether such a message is a delivery at all).
        """
        hi = self._hi
        if hi and seq == hi[-1] + 1 and seq <= MAX_SEQ:  # the common case: the next one
            hi[-1] = seq
            self.count += 1
            return "new"
        if not 0 <= seq <= MAX_SEQ:
            raise ValueError(f"sequence number {seq} outside 0..{MAX_SEQ}")
        lo = self._lo
        if not hi or seq > hi[-1]:
            return self._open(len(lo), seq)
        i = bisect.bisect_right(lo, seq) - 1  # the range starting at or before seq
        if i >= 0 and seq <= hi[i]:
            self.duplicates += 1
            return "duplicate"
        self.out_of_order += 1
        joins_left = i >= 0 and hi[i] == seq - 1
        joins_right = i + 1 < len(lo) and lo[i + 1] == seq + 1
        if joins_left and joins_right:  # fills a one-seq gap: two ranges become one
            hi[i] = hi[i + 1]
            del lo[i + 1], hi[i + 1]
        elif joins_left:
            hi[i] = seq
        elif joins_right:
            lo[i + 1] = seq
        else:
            if len(lo) >= self.max_ranges:
                self.out_of_order -= 1
                self.untracked += 1
                return "new"
            lo.insert(i + 1, seq)
            hi.insert(i + 1, seq)
        self.count += 1
        return "new"

    def _open(self, at: int, seq: int) -> Added:
        if len(self._lo) >= self.max_ranges:
            self.untracked += 1
            return "new"
        self._lo.insert(at, seq)
        self._hi.insert(at, seq)
        self.count += 1
        return "new"

    @property
    def highest(self) -> int | None:
        """The highest seq held (None when empty)."""
        return self._hi[-1] if self._hi else None

    def __len__(self) -> int:
        """The number of ranges (gaps + 1), not of seqs: see :attr:`count`."""
        return len(self._lo)

    def __contains__(self, seq: object) -> bool:
        if not isinstance(seq, int):
            return False
        i = bisect.bisect_right(self._lo, seq) - 1
        return i >= 0 and seq <= self._hi[i]

    def ranges(self) -> list[tuple[int, int]]:
        """The ranges held, ascending, each (first, last) inclusive."""
        return list(zip(self._lo, self._hi, strict=True))

    def count_in(self, lo: int, hi: int) -> int:
        """How many seqs held are in ``lo..hi`` (inclusive)."""
        if hi < lo or not self._lo:
            return 0
        first = max(bisect.bisect_right(self._lo, lo) - 1, 0)
        last = bisect.bisect_right(self._lo, hi)  # ranges first..last-1 may overlap
        total = 0
        for a, b in zip(self._lo[first:last], self._hi[first:last], strict=True):
            total += max(0, min(b, hi) - max(a, lo) + 1)
        return total


__all__ = ["DEFAULT_MAX_RANGES", "MAX_SEQ", "Added", "RangeSet"]

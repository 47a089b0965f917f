"""HdrHistogram's bucket layout for microsecond latencies up to one hour, at 3 digits.

The layout is *exactly* HdrHistogram's for ``lowest=1,
highest=3_600_000_000, significant_figures=3`` (2048 sub-buckets, unit
magnitude 0, 22 buckets, 23,552 counters), derived below with HdrHistogram's
own formulas, so a counts array laid out by it is one any HdrHistogram tool
reads (:mod:`wsload.common.hdrlog` writes ours unchanged). It is apart from
:mod:`wsload.common.histogram` because the histogram, its serialised form
(:mod:`wsload.common.histogram_codec`) and the log writer all index by it.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

LOWEST: Final = 1
HIGHEST: Final = 3_600_000_000
SIGNIFICANT_DIGITS: Final = 3

# HdrHistogram's constructor, step by step (AbstractHistogram.init).
UNIT_MAGNITUDE: Final = LOWEST.bit_length() - 1  # 0: no unit shift appears below
SUB_BUCKET_HALF_MAGNITUDE: Final = (2 * 10**SIGNIFICANT_DIGITS - 1).bit_length() - 1  # 10
SUB_BUCKET_COUNT: Final = 1 << (SUB_BUCKET_HALF_MAGNITUDE + 1)  # 2048
SUB_BUCKET_HALF_COUNT: Final = SUB_BUCKET_COUNT // 2
SUB_BUCKET_MASK: Final = SUB_BUCKET_COUNT - 1
# getBucketsNeededToCoverValue in closed form: 1 + doublings of 2048 until it exceeds HIGHEST.
BUCKET_COUNT: Final = 1 + (HIGHEST // (SUB_BUCKET_COUNT << UNIT_MAGNITUDE)).bit_length()  # 22
COUNTS_LEN: Final = (BUCKET_COUNT + 1) * SUB_BUCKET_HALF_COUNT  # 23,552

# float64 biased exponent of x in [2**k, 2**(k+1)) is k + 1023, and bit_length(x) = k + 1.
_EXPONENT_TO_BUCKET: Final = 1022 + SUB_BUCKET_HALF_MAGNITUDE + 1

_INDEX = np.arange(COUNTS_LEN, dtype=np.int64)
_BUCKET = np.maximum((_INDEX >> SUB_BUCKET_HALF_MAGNITUDE) - 1, 0)
_SUB = (_INDEX & (SUB_BUCKET_HALF_COUNT - 1)) + np.where(
    _INDEX < SUB_BUCKET_HALF_COUNT, 0, SUB_BUCKET_HALF_COUNT
)
#: Smallest, middle (HdrHistogram's medianEquivalentValue) and largest value of each counter.
LOWEST_EQ = _SUB << _BUCKET
MEDIAN_EQ = LOWEST_EQ + ((1 << _BUCKET) >> 1)
HIGHEST_EQ = LOWEST_EQ + (1 << _BUCKET) - 1


def counts_index(value: int) -> int:
    """Index of the counter ``value`` falls in (HdrHistogram's countsArrayIndex)."""
    bucket = (value | SUB_BUCKET_MASK).bit_length() - (SUB_BUCKET_HALF_MAGNITUDE + 1)
    return (bucket << SUB_BUCKET_HALF_MAGNITUDE) + (value >> bucket)


def lowest_equivalent(index: int) -> int:
    """Smallest value counted at ``index`` (HdrHistogram's valueFromIndex)."""
    return int(LOWEST_EQ[index])


def highest_equivalent(index: int) -> int:
    """Largest value counted at ``index``: what a percentile in that counter reports."""
    return int(HIGHEST_EQ[index])


def indices_inplace(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Vectorised :func:`counts_index`; ``values`` (0..2**32-1) is overwritten.

    The bit length comes from the float64 exponent, exact because every value
    is far below 2**53; in-place shifts avoid a temporary per step.
    """
    bucket = (values | SUB_BUCKET_MASK).astype(np.float64).view(np.int64)
    bucket >>= 52
    bucket -= _EXPONENT_TO_BUCKET
    values >>= bucket
    bucket <<= SUB_BUCKET_HALF_MAGNITUDE
    bucket += values
    return bucket


__all__ = [
    "BUCKET_COUNT",
    "COUNTS_LEN",
    "HIGHEST",
    "HIGHEST_EQ",
    "LOWEST",
    "LOWEST_EQ",
    "MEDIAN_EQ",
    "SIGNIFICANT_DIGITS",
    "SUB_BUCKET_COUNT",
    "SUB_BUCKET_HALF_COUNT",
    "SUB_BUCKET_HALF_MAGNITUDE",
    "SUB_BUCKET_MASK",
    "UNIT_MAGNITUDE",
    "counts_index",
    "highest_equivalent",
    "indices_inplace",
    "lowest_equivalent",
]

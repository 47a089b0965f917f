"""The .hlog export, read back by the reference HdrHistogram implementation (hdrhistogram)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from wsload.common import hdrlog
from wsload.common.histogram import HIGHEST, LatencyHistogram


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reference_decoder_sees_the_same_counts(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = np.clip(rng.lognormal(8, 2.5, 20_000), 0, HIGHEST).astype(np.int64)
    ours = LatencyHistogram()
    ours.record_many(values)
    theirs = HdrHistogram.decode(hdrlog.encode(ours))
    assert theirs.get_total_count() == ours.count
    for p in (50, 90, 99, 99.9):
        assert theirs.get_value_at_percentile(p) == ours.value_at_percentile(p)
    assert theirs.get_min_value() <= ours.min
    assert theirs.values_are_equivalent(theirs.get_max_value(), ours.max)


def test_empty_histogram_encodes() -> None:
    assert HdrHistogram.decode(hdrlog.encode(LatencyHistogram())).get_total_count() == 0


def test_log_file_is_readable(tmp_path: Path) -> None:
    intervals = []
    for second in range(3):
        hist = LatencyHistogram()
        hist.record_many(np.arange(1, 101 + second))
        intervals.append((float(second), 1.0, hist.max, hdrlog.encode(hist)))
    path = tmp_path / "run.hlog"
    path.write_text(hdrlog.log_text(intervals, start_time=1_700_000_000.0))
    reader = HistogramLogReader(str(path), HdrHistogram(1, HIGHEST, 3))
    totals = []
    while (hist := reader.get_next_interval_histogram()) is not None:
        totals.append(hist.get_total_count())
    assert totals == [100, 101, 102]

"""The coordinator's merge of worker windows (sans-I/O: messages in, figures out)."""

from __future__ import annotations

import pytest

from wsload.common.errors import ProtocolError
from wsload.common.protocol import Samples, decode, encode
from wsload.coordinator.aggregate import MAX_ERROR_KINDS, UNLISTED, RunAggregate


def window(seq: int, latency: list[int], service: list[int]) -> Samples:
    counters = {"sent": len(latency), "received": len(latency)}
    msg = Samples.window(
        "j", seq, (100.0 + seq, 100.25 + seq), counters, {}, (latency, service, [])
    )
    decoded = decode(encode(msg))  # as it arrives: through the wire format
    assert isinstance(decoded, Samples)
    return decoded


def test_windows_merge_once_with_service_time_rebuilt_from_the_lag() -> None:
    agg = RunAggregate(100.0)
    assert agg.add_samples("w1", window(0, [1_000, 2_000], [900, 2_000]))
    assert agg.add_samples("w2", window(0, [3_000], [2_500]))
    assert not agg.add_samples("w1", window(0, [1_000, 2_000], [900, 2_000]))  # a replay
    assert agg.ignored_windows == 1
    assert agg.latency.count == agg.service.count == 3
    assert agg.latency.max == 3_000
    assert agg.service.min == 900
    assert agg.totals()["received"] == 3


def test_malformed_samples_merge_nothing() -> None:
    agg = RunAggregate(100.0)
    bad = Samples("j", 0, 100.0, 100.25, {"sent": 5, "received": 5}, {}, b"\x05\x06", b"\x00")
    with pytest.raises(ProtocolError, match="2 latencies but 1 lags"):
        agg.add_samples("w1", bad)
    assert agg.totals().get("sent", 0) == 0
    assert agg.latency.count == 0
    assert agg.add_samples("w1", window(0, [10], [10]))  # the same seq, well formed, still counts


def test_a_worker_cannot_grow_the_summary_with_names_of_its_own() -> None:
    agg = RunAggregate(100.0)
    errors = {f"kind{i}": 1 for i in range(1000)} | {"x" * 5000: 7}
    msg = Samples.window(
        "j", 0, (100.0, 100.25), {"sent": 1, "received": 1, "invented": 5}, errors, ([5], [5], [])
    )
    decoded = decode(encode(msg))
    assert isinstance(decoded, Samples)
    agg.add_samples("w1", decoded)
    merged = agg.errors()
    assert len(merged) == MAX_ERROR_KINDS + 1
    assert merged[UNLISTED] == 1000 - MAX_ERROR_KINDS + 7
    assert sum(merged.values()) == 1007  # every error still counted
    assert "invented" not in agg.totals()
    (second,) = agg.seconds.values()
    assert second.errors == merged

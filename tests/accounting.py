"""The accounting identity, checked on a ``--json`` summary: per worker and in total.

``expected = received + timed_out + failed + lost + unanswered`` must hold for every
worker's entry (each carries every counter, zeros included) and for the
totals, and the totals must be the sum of the workers'. Every test that
produces a summary calls :func:`assert_balanced` on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

IDENTITY = ("received", "timed_out", "failed", "lost", "unanswered")
#: Counters every worker entry carries (a subset of common.protocol.SAMPLE_COUNTERS).
REQUIRED = ("sent", "expected", *IDENTITY, "late", "unsolicited", "connects", "connect_failures")


def _identity(where: str, counts: Mapping[str, Any]) -> None:
    resolved = sum(int(counts[k]) for k in IDENTITY)
    assert counts["expected"] == resolved, (
        f"{where}: expected {counts['expected']} != received + timed_out + failed + lost + "
        "unanswered "
        f"= {' + '.join(str(counts[k]) for k in IDENTITY)}"
    )


def assert_balanced(summary: Mapping[str, Any]) -> None:
    """Every message accounted once, per worker and in total; totals = sum of workers."""
    assert summary["balanced"], "summary says it is not balanced"
    totals = summary["counters"]
    _identity("total", totals)
    assert summary["total_sent"] == totals["sent"]
    assert summary["total_received"] == totals["received"]
    for key in ("timed_out", "lost", "unanswered"):
        assert summary[key] == totals[key], key
    workers = summary["workers"]
    for worker_id, entry in workers.items():
        missing = [k for k in REQUIRED if k not in entry]
        assert not missing, f"worker {worker_id} lacks counters {missing}"
        assert type(entry["lost"]) is int, "lost is the count of messages lost, not a flag"
        assert entry["status"] in ("ok", "lost", "inconsistent"), entry["status"]
        _identity(f"worker {worker_id}", entry)
        assert entry["balanced"]
    for key in ("sent", "expected", *IDENTITY):
        assert sum(w[key] for w in workers.values()) == totals[key], f"sum of workers' {key}"

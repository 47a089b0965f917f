"""Per-step and per-scenario counters of a conversation, taken with the window.

A conversation's ``expect`` steps are measured transactions: each one
counts ``expected`` when it begins waiting and exactly one of ``met``,
``timed_out``, ``failed``, ``lost`` or ``unanswered`` when it is resolved
(:data:`wsload.common.protocol.STEP_COUNTERS`), and every ``met`` appends one
latency (from its triggering send's due time) and one service time (from
the actual send), in microseconds. Scenarios count the messages that
matched no pending expect (``unsolicited``) and the iterations begun.

The session (:mod:`wsload.worker.session`) holds a direct reference to each
step's :class:`StepStats` (plain slotted attributes, bumped in place on the
per-message path); :meth:`StepRecorder.take` hands over deltas since the
previous take, so, as for the run's counters, the windows sum to the totals
by construction.
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass

from wsload.common.protocol import SCENARIO_COUNTERS, STEP_COUNTERS

_LITTLE = sys.byteorder == "little"
_MAX_U32 = 0xFFFFFFFF


class StepStats:
    """The counters and the current window's samples of one step name."""

    __slots__ = (
        "_last",
        "expected",
        "failed",
        "latency",
        "lost",
        "met",
        "service",
        "timed_out",
        "unanswered",
    )

    def __init__(self) -> None:
        self.expected = 0
        self.met = 0
        self.timed_out = 0
        self.failed = 0
        self.lost = 0
        self.unanswered = 0
        self.latency: array[int] = array("I")
        self.service: array[int] = array("I")
        self._last = (0, 0, 0, 0, 0, 0)

    def record(self, latency_us: int, service_us: int) -> None:
        """One expect met: its latency and service time (clamped to uint32)."""
        self.met += 1
        if 0 <= latency_us <= _MAX_U32 and 0 <= service_us <= _MAX_U32:
            self.latency.append(latency_us)
            self.service.append(service_us)
        else:
            self.latency.append(min(max(latency_us, 0), _MAX_U32))
            self.service.append(min(max(service_us, 0), _MAX_U32))

    def totals(self) -> tuple[int, int, int, int, int, int]:
        return (self.expected, self.met, self.timed_out, self.failed, self.lost, self.unanswered)

    @property
    def balanced(self) -> bool:
        """``expected == met + timed_out + failed + lost + unanswered`` (nothing pending)."""
        return (
            self.expected == self.met + self.timed_out + self.failed + self.lost + self.unanswered
        )


class ScenarioStats:
    """One scenario's messages that answered nothing, and its iterations begun."""

    __slots__ = ("_last", "iterations", "unsolicited")

    def __init__(self) -> None:
        self.unsolicited = 0
        self.iterations = 0
        self._last = (0, 0)


@dataclass(frozen=True)
class StepBatch:
    """One step's share of a window: counter deltas (nonzero only) and packed samples
    (little-endian uint32 microseconds, one latency and one service time per ``met``)."""

    counters: dict[str, int]
    latency: bytes = b""
    service: bytes = b""


class StepRecorder:
    """Every step's and scenario's stats of one worker, by name (created on first use)."""

    def __init__(self) -> None:
        self.steps: dict[str, StepStats] = {}
        self.scenarios: dict[str, ScenarioStats] = {}

    def step(self, name: str) -> StepStats:
        stats = self.steps.get(name)
        if stats is None:
            stats = self.steps[name] = StepStats()
        return stats

    def scenario(self, name: str) -> ScenarioStats:
        stats = self.scenarios.get(name)
        if stats is None:
            stats = self.scenarios[name] = ScenarioStats()
        return stats

    def take(self) -> tuple[dict[str, StepBatch], dict[str, dict[str, int]]]:
        """Deltas since the previous take: the steps that changed, the scenarios that did."""
        steps: dict[str, StepBatch] = {}
        for name, stats in self.steps.items():
            now = stats.totals()
            if now == stats._last and not stats.latency:
                continue
            deltas = {
                k: a - b for k, a, b in zip(STEP_COUNTERS, now, stats._last, strict=True) if a != b
            }
            steps[name] = StepBatch(deltas, _pack(stats.latency), _pack(stats.service))
            stats._last = now
            stats.latency = array("I")
            stats.service = array("I")
        scenarios: dict[str, dict[str, int]] = {}
        for name, scen in self.scenarios.items():
            now2 = (scen.unsolicited, scen.iterations)
            if now2 == scen._last:
                continue
            scenarios[name] = {
                k: a - b
                for k, a, b in zip(SCENARIO_COUNTERS, now2, scen._last, strict=True)
                if a != b
            }
            scen._last = now2
        return steps, scenarios

    def totals(self) -> dict[str, dict[str, int]]:
        """Every step's cumulative counters (for the run's result and the tests)."""
        return {
            name: dict(zip(STEP_COUNTERS, stats.totals(), strict=True))
            for name, stats in self.steps.items()
        }


def _pack(samples: array[int]) -> bytes:
    if not _LITTLE:  # pragma: no cover - the wire is little-endian
        samples = array("I", samples)
        samples.byteswap()
    return samples.tobytes()


__all__ = [
    "ScenarioStats",
    "StepBatch",
    "StepRecorder",
    "StepStats",
]

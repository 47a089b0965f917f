"""How far each worker's wall clock is from the coordinator's (sans-I/O).

Delivery latency is a receive time on the subscriber's worker minus a
publish time on the publisher's: across hosts, the two clocks' offset is in
it. When a worker joins, the coordinator sends it a ``Clock`` probe (t0, its
wall clock); the worker answers at once with its own time t1; the answer
arrives at t2. Then ``offset = t1 - (t0 + t2) / 2`` (worker minus
coordinator), within ``(t2 - t0) / 2``: the exchange is symmetric at best,
wholly one-sided at worst. Probes go one at a time (the next when the last
is answered), :data:`PROBES` in all, and the one with the shortest round trip
is kept (NTP's best-of-N). A worker that never answers keeps no offset: the
run goes on, uncorrected for it.

Only the coordinator's own record of each probe's t0 is trusted; a worker's
answer to a probe not outstanding, or with a time that is not a number, is
ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from wsload.common.protocol import Clock

#: Probes per worker.
PROBES = 8


@dataclass(frozen=True)
class ClockEstimate:
    """A worker's offset (its clock - the coordinator's) and uncertainty, seconds."""

    offset: float
    uncertainty: float
    probes: int = 1

    @property
    def offset_us(self) -> int:
        return round(self.offset * 1e6)

    @property
    def uncertainty_us(self) -> int:
        return max(1, math.ceil(self.uncertainty * 1e6))


@dataclass
class _Worker:
    outstanding: int | None = None  # the probe number awaited
    sent_at: float = 0.0
    answered: int = 0
    best: ClockEstimate | None = None
    sent: int = 0


@dataclass
class ClockProbes:
    """Every worker's probes and best estimate; no socket, no clock of its own."""

    probes: int = PROBES
    workers: dict[str, _Worker] = field(default_factory=dict)

    def start(self, worker_id: str, wall: float) -> Clock:
        """The first probe to send a worker that joined (at coordinator wall time ``wall``)."""
        state = self.workers.setdefault(worker_id, _Worker())
        return self._probe(state, wall)

    def _probe(self, state: _Worker, wall: float) -> Clock:
        state.outstanding = state.sent
        state.sent += 1
        state.sent_at = wall
        return Clock(state.outstanding, wall)

    def answer(self, worker_id: str, msg: Clock, wall: float) -> Clock | None:
        """A worker's answer, arrived at ``wall``: the next probe to send, or None."""
        state = self.workers.get(worker_id)
        if state is None or msg.worker_time is None or msg.probe != state.outstanding:
            return None
        state.outstanding = None
        t0, t1, t2 = state.sent_at, float(msg.worker_time), wall
        if math.isfinite(t1) and t2 >= t0:
            state.answered += 1
            estimate = ClockEstimate(t1 - (t0 + t2) / 2, (t2 - t0) / 2, state.answered)
            if state.best is None or estimate.uncertainty < state.best.uncertainty:
                state.best = estimate
            else:
                state.best = ClockEstimate(
                    state.best.offset, state.best.uncertainty, state.answered
                )
        if state.sent < self.probes:
            return self._probe(state, wall)
        return None

    def best(self, worker_id: str) -> ClockEstimate | None:
        """The worker's estimate from its shortest round trip; None before any answer."""
        state = self.workers.get(worker_id)
        return None if state is None else state.best


__all__ = ["PROBES", "ClockEstimate", "ClockProbes"]

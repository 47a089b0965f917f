"""When a conversation client's iterations are meant to start: pure arithmetic.

A client of a conversation (:mod:`wsload.worker.session`) runs its program's
loop again and again (or, a program with no loop, a whole session per
iteration); :class:`Pacing` says when each iteration is *due*. The schedule
never drifts: a client behind it catches up, each late iteration's latency
counted from its intended start (the correction for coordinated omission, as
:mod:`wsload.worker.schedule` does for the echo load).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from wsload.common.program import Program

_INF = math.inf


class Pacing:
    """Intended start times of one client's iterations.

    ``period > 0``: ``first + k * period``, a grid that a late iteration
    does not move -- only a think does: the next iteration is due at
    ``slot + min(max(end - slot, 0), think)`` (``slot`` its grid time,
    ``end`` when the previous one ended as intended, ``think`` the think
    time it scripted), and the grid goes on from there. ``first`` defaults to the time of
    the first call plus ``phase`` (so a connection's iterations start after
    its setup, clients spread over the period). ``period <= 0`` is the closed
    loop: each iteration is due when the previous one ended; an infinite
    period (a rate of 0) never starts one. ``follow`` (a varying rate: the
    stages') maps an iteration's start to the next one's; called with
    ``first=True`` for the first, with the time pacing begins.
    """

    __slots__ = ("first", "follow", "k", "last", "period", "phase")

    def __init__(
        self,
        period: float,
        *,
        first: float | None = None,
        phase: float = 0.0,
        follow: Callable[[float, bool], float] | None = None,
    ) -> None:
        self.period = period
        self.first = first
        self.phase = phase
        self.follow = follow
        self.k = 0
        self.last = -_INF

    def next_start(self, now: float, think: float = 0.0) -> float:
        """The next iteration's intended start (may be in the past: the client is behind).

        ``now``: when the previous iteration ended (its intended end, after
        its last think), or the session's setup did; ``think``: the think
        time that iteration scripted (it may postpone the slot by as much,
        never more than the iteration actually ran past it: the target's
        share of an overrun stays lateness).
        """
        period = self.period
        first = self.first
        if first is None:
            first = now + (self.phase if self.follow is None and 0 < period < _INF else 0.0)
            self.first = first
        if self.follow is not None:
            at = self.follow(first, True) if self.k == 0 else self.follow(self.last, False)
        elif period <= 0:
            at = max(now, first) if self.k == 0 else now
        elif not period < _INF:  # a rate of 0: no iteration ever
            at = _INF
        else:
            at = first + self.k * period
        if think > 0.0 and self.k > 0 and now > at:  # the think ran it past its slot
            at = min(now, at + think)
            if self.follow is None:
                self.first, self.k = at, 0  # the grid goes on from the postponed start
        self.k += 1
        self.last = at
        return at


def period_for(program: Program, clients_of_program: int) -> float:
    """Seconds between two iterations of one client of ``program``.

    ``rate`` is iterations per second over all of the scenario's clients in
    the job, so each of its ``clients_of_program`` clients runs one every
    ``clients / rate`` seconds, whichever worker it is on (a worker's share
    of the rate is its share of the clients); else ``interval``.
    """
    if program.rate is not None:
        return clients_of_program / program.rate if program.rate > 0 else _INF
    return program.interval


__all__ = ["Pacing", "period_for"]

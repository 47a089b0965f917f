"""Load profiles: ``[[stages]]`` of connections and rate, linear between stages.

Each stage moves the number of connected clients and the iteration rate
linearly, over its ``duration``, from the previous stage's values (0 before
the first stage) to its own ``clients`` and ``rate``: a ramp, a spike (up
fast, down fast), a step (a short ramp), a soak (a long stage at the same
values). Every stage gives a ``rate`` or none does (a mix is refused, one
line naming the stages without one); when none does, the job's own rate
model applies unchanged (``--rate``, or ``interval`` per client).

Everything here is pure arithmetic on seconds from the run's start, so every
worker derives the same schedule from the same stages and a test can check
the run's per-second series against :meth:`Profile.clients_at` and
:meth:`Profile.expected_iterations`. Client slots are job-wide: slot ``k``
(0-based) is connected while ``clients_at(t) > k`` -- the lowest slots connect
first and leave last -- and :meth:`Profile.windows` gives the exact times
(crossings of the linear segments, no sampling).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from typing import Any

from wsload.common.fields import MAX_CLIENTS, MAX_DURATION
from wsload.common.program import Stage
from wsload.common.stepvalues import unknown_keys
from wsload.common.validation import describe

MAX_STAGES = 1000
#: Highest stage rate (iterations per second), as ``--rate``.
MAX_STAGE_RATE = 1e9
STAGE_KEYS = ("duration", "clients", "rate")


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _parse_one(n: int, item: Any) -> Stage | list[str]:
    where = f"stages: stage {n}"
    if not isinstance(item, Mapping):
        example = "{duration = 10, clients = 100}"
        return [f"{where}: expected a table like {example}, got {describe(item)}"]
    problems = unknown_keys(item, STAGE_KEYS, where)
    duration, clients, rate = item.get("duration"), item.get("clients"), item.get("rate")
    if duration is None:
        problems.append(f"{where}: needs duration (seconds)")
    elif not _number(duration) or not 0 < duration <= MAX_DURATION:
        problems.append(
            f"{where}: duration must be seconds > 0 and <= {MAX_DURATION:g}, "
            f"got {describe(duration)}"
        )
    if clients is None:
        problems.append(f"{where}: needs clients (the connected clients at its end)")
    elif (
        isinstance(clients, bool) or not isinstance(clients, int) or not 0 <= clients <= MAX_CLIENTS
    ):
        problems.append(
            f"{where}: clients must be a whole number from 0 to {MAX_CLIENTS}, "
            f"got {describe(clients)}"
        )
    if rate is not None and (not _number(rate) or not 0 <= rate <= MAX_STAGE_RATE):
        problems.append(
            f"{where}: rate must be iterations per second >= 0 and <= {MAX_STAGE_RATE:g}, "
            f"got {describe(rate)}"
        )
    if problems or duration is None or clients is None:
        return problems
    return Stage(float(duration), int(clients), None if rate is None else float(rate))


def parse_stages(raw: Sequence[Any]) -> tuple[tuple[Stage, ...], list[str]]:
    """The stages of a scenario's ``[[stages]]`` list, and a line per problem (all of them)."""
    if isinstance(raw, str | bytes) or not isinstance(raw, Sequence):
        return (), [f"stages: expected a list of tables ([[stages]]), got {describe(raw)}"]
    if len(raw) > MAX_STAGES:
        return (), [f"stages: {len(raw)} stages, at most {MAX_STAGES}"]
    stages: list[Stage] = []
    problems: list[str] = []
    for n, item in enumerate(raw, 1):
        parsed = _parse_one(n, item)
        if isinstance(parsed, Stage):
            stages.append(parsed)
        else:
            problems += parsed
    problems += _mixed_rate_problems(raw)
    if not problems and raw and not any(s.clients for s in stages):
        problems.append("stages: no stage has clients > 0; the run would test nothing")
    return (tuple(stages), []) if not problems else ((), problems)


def _mixed_rate_problems(raw: Sequence[Any]) -> list[str]:
    """One line when some stages give a ``rate`` and others do not.

    A stage without a rate between stages with one would hold (or ramp from)
    a rate the user never wrote, and the job's ``interval`` would be ignored
    without a word: every stage gives a rate, or none does.
    """
    tables = [(n, item) for n, item in enumerate(raw, 1) if isinstance(item, Mapping)]
    without = [n for n, item in tables if item.get("rate") is None]
    if not without or len(without) == len(tables):
        return []
    shown = ", ".join(str(n) for n in without[:10]) + (", ..." if len(without) > 10 else "")
    which, verb = ("stage", "gives") if len(without) == 1 else ("stages", "give")
    return [
        f"stages: {which} {shown} {verb} no rate while others do: give every stage a rate, "
        "or none (then the job's rate or interval applies)"
    ]


class Profile:
    """The clients and rate of a run over time, from its stages.

    ``base_rate`` is the job's own rate (``None``: the interval model), used
    unchanged when no stage gives a rate. Times are seconds from the run's
    start; before 0 there are no clients and no rate (when stages set it);
    after :attr:`duration` the last stage's values hold.
    """

    __slots__ = ("_c", "_ends", "_r", "_starts", "base_rate", "duration", "peak_clients", "stages")

    def __init__(self, stages: Sequence[Stage], base_rate: float | None = None) -> None:
        if not stages:
            raise ValueError("a profile needs at least one stage")
        self.stages = tuple(stages)
        self.base_rate = base_rate
        self._starts: list[float] = []
        self._ends: list[float] = []
        self._c: list[tuple[float, float]] = []  # clients at each segment's start and end
        self._r: list[tuple[float, float]] | None = None  # rate likewise, when stages set it
        t = 0.0
        c = r = 0.0
        rates: list[tuple[float, float]] = []
        for stage in self.stages:
            self._starts.append(t)
            t += stage.duration
            self._ends.append(t)
            self._c.append((c, float(stage.clients)))
            c = float(stage.clients)
            target = r if stage.rate is None else stage.rate
            rates.append((r, target))
            r = target
        if any(stage.rate is not None for stage in self.stages):
            self._r = rates
        self.duration = t
        self.peak_clients = max(stage.clients for stage in self.stages)

    @property
    def sets_rate(self) -> bool:
        """Whether the stages give the rate (else the job's own rate model applies)."""
        return self._r is not None

    def _segment(self, t: float) -> int:
        """Index of the segment holding ``t`` (0 <= t < duration)."""
        return bisect.bisect_right(self._ends, t)

    @staticmethod
    def _lerp(a: float, b: float, v: tuple[float, float], t: float) -> float:
        return v[0] + (v[1] - v[0]) * (t - a) / (b - a)

    def _value(self, values: list[tuple[float, float]], t: float) -> float:
        if t <= 0:
            return 0.0
        if t >= self.duration:
            return values[-1][1]
        i = self._segment(t)
        return self._lerp(self._starts[i], self._ends[i], values[i], t)

    def clients_at(self, t: float) -> float:
        """The clients the profile asks for at ``t`` (fractional on a ramp)."""
        return self._value(self._c, t)

    def connected_at(self, t: float) -> int:
        """The client slots connected at ``t``: those ``k`` with ``clients_at(t) > k``."""
        return min(self.peak_clients, math.ceil(self.clients_at(t)))

    def rate_at(self, t: float) -> float | None:
        """Job-wide iterations per second at ``t``; ``None``: the interval model applies."""
        if self._r is None:
            return self.base_rate
        return self._value(self._r, t)

    def windows(self, k: int, end: float | None = None) -> list[tuple[float, float]]:
        """When job-wide slot ``k`` is connected: ``(start, stop)`` intervals in order.

        Slot ``k`` is connected for ``start < t < stop`` (``clients_at(t) > k``),
        up to ``end`` (default :attr:`duration`; later, the last stage holds).
        Touching intervals are merged; a spike up, down and up again gives two.
        """
        end = self.duration if end is None else end
        spans: list[tuple[float, float]] = []
        for a, b, (c0, c1) in zip(self._starts, self._ends, self._c, strict=True):
            if a >= end:
                break
            if c0 > k and c1 > k:
                lo, hi = a, b
            elif c1 > k:  # rising through k
                lo, hi = a + (k - c0) * (b - a) / (c1 - c0), b
            elif c0 > k:  # falling through k
                lo, hi = a, a + (c0 - k) * (b - a) / (c0 - c1)
            else:
                continue
            _add(spans, lo, min(hi, end))
        if end > self.duration and self._c[-1][1] > k:
            _add(spans, self.duration, end)
        return spans

    def expected_iterations(self, t0: float, t1: float) -> float | None:
        """The integral of :meth:`rate_at` over ``[t0, t1]``; ``None`` in the interval model."""
        if self._r is None:
            return None if self.base_rate is None else self.base_rate * max(0.0, t1 - t0)
        if t1 <= t0:
            return 0.0
        lo, hi = max(t0, 0.0), max(t1, 0.0)
        total = 0.0
        if lo < self.duration:
            i = self._segment(lo)
            while i < len(self._ends) and self._starts[i] < hi:
                a, b = max(lo, self._starts[i]), min(hi, self._ends[i])
                r = self._r[i]
                total += (
                    (b - a)
                    * (
                        self._lerp(self._starts[i], self._ends[i], r, a)
                        + self._lerp(self._starts[i], self._ends[i], r, b)
                    )
                    / 2
                )
                i += 1
        if hi > self.duration:
            total += (hi - max(lo, self.duration)) * self._r[-1][1]
        return total

    def time_after(self, t0: float, iterations: float) -> float:
        """The earliest ``t >= t0`` with ``expected_iterations(t0, t) == iterations``.

        ``math.inf`` when the rate never gets there (it stays 0 to the end).
        Raises :class:`ValueError` in the interval model (no rate to follow).
        """
        if self._r is None:
            if self.base_rate is None:
                raise ValueError("the profile has no rate (interval model)")
            return t0 + iterations / self.base_rate if self.base_rate > 0 else math.inf
        need = iterations
        if need <= 0:
            return t0
        t = max(t0, 0.0)
        if t < self.duration:
            for i in range(self._segment(t), len(self._ends)):
                a, b = self._starts[i], self._ends[i]
                r0 = self._lerp(a, b, self._r[i], t)
                slope = (self._r[i][1] - self._r[i][0]) / (b - a)
                area = (b - t) * (r0 + self._r[i][1]) / 2
                if area >= need:  # solve slope/2 d^2 + r0 d = need, stably
                    root = math.sqrt(max(0.0, r0 * r0 + 2 * slope * need))
                    d = 2 * need / (r0 + root) if r0 + root > 0 else math.inf
                    if slope > 0:  # never more than from rest; exact where the above underflows
                        d = min(d, math.sqrt(2 * need / slope))
                    return min(b, t + d)
                need -= area
                t = b
        last = self._r[-1][1]
        return t + need / last if last > 0 else math.inf

    def next_start(self, t_prev: float, fraction: float, active: int, phase: float = 1.0) -> float:
        """The intended start of a client's next iteration, its last one due at ``t_prev``.

        This worker drives ``fraction`` of the job's rate with ``active``
        clients, so each client iterates at ``fraction * rate / active`` per
        second. The approximation: ``fraction`` and ``active`` are taken as
        they are at ``t_prev`` for the whole period, while the rate follows
        the profile over it (the next start is where the integral of the
        client's rate from ``t_prev`` reaches one iteration; with a constant
        rate that is ``t_prev + active / (fraction * rate)``). A rate that is 0
        now but rises later gives the time it has risen enough, not infinity.
        Passing ``fraction = 1`` and ``active = connected_at(t_prev)`` shares
        the job's rate among every connected client, whichever worker holds them.

        ``phase`` (0 to 1) takes that share of one period: a client that just
        connected at ``t_prev`` starts its first iteration at
        ``next_start(t_connect, ..., phase=p)`` with its own ``p`` (e.g. spread
        by its slot number), so clients connecting together do not fire together.
        """
        if fraction <= 0:
            return math.inf
        return self.time_after(t_prev, phase * max(active, 1) / fraction)

    def shared_next_start(self, t_prev: float, phase: float = 1.0) -> float:
        """:meth:`next_start` of a client sharing the job's rate with every connected
        client, whichever worker holds them (each one iterates at ``rate / connected``).

        The connected count is taken at the middle of the period rather than at
        ``t_prev`` (one refinement): while clients join or leave it changes
        within a period, and the count at the start alone runs ahead of the
        profile's rate while they join and behind it while they leave (10 % on
        a ramp-down of 100 clients in 5 s at 100/s; 1 % with the refinement).
        """
        first = self.next_start(t_prev, 1.0, self.connected_at(t_prev), phase)
        if math.isinf(first):
            return first
        middle = self.connected_at((t_prev + first) / 2)
        return self.next_start(t_prev, 1.0, middle, phase)


def _add(spans: list[tuple[float, float]], lo: float, hi: float) -> None:
    """Append ``(lo, hi)`` to ``spans``, merging with the last one when they touch."""
    if hi <= lo:
        return
    if spans and spans[-1][1] >= lo:
        spans[-1] = (spans[-1][0], max(spans[-1][1], hi))
    else:
        spans.append((lo, hi))


__all__ = ["MAX_STAGES", "MAX_STAGE_RATE", "STAGE_KEYS", "Profile", "parse_stages"]

"""Fault injection decisions, sans-I/O: when a reply is due, and whether it is sent at all.

The server asks :class:`FaultPolicy` about every message it receives; the
policy answers with the time the reply may go out (or None to drop it) and
whether the connection must be closed after it. Times are plain floats on
the server's monotonic clock and randomness comes from a seeded
:class:`random.Random`, so every decision is testable without a socket or an
event loop, and the asyncio layer (:mod:`wsload.testserver.connection`) only waits
and moves bytes.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from wsload.common.errors import WsloadError

#: Upper bounds that keep every due time a finite, sleepable float.
MAX_DELAY = 3600.0  # seconds
MAX_STALL_PERIOD = 86400.0  # seconds
#: ``--push-every`` bounds (seconds): at most 1,000 pushes a second per
#: connection, at least one an hour.
MIN_PUSH_EVERY = 0.001
MAX_PUSH_EVERY = 3600.0


def push_message(n: int) -> str:
    """The ``n``-th pushed message of a connection: JSON with no id field, answering nothing."""
    return f'{{"type": "heartbeat", "n": {n}}}'


def next_push(started: float, every: float, now: float, last: int) -> tuple[float, int]:
    """When push number ``last + 1`` or later is due, and its number.

    ``started`` is when the connection opened. Pushes are due at ``started +
    k * every`` (k = 1, 2, ...) and never drift; a connection that fell behind
    (a busy server) skips the pushes it missed rather than sending them in a
    burst, and a timer that fired early never sends one number twice.
    """
    k = max(last + 1, math.floor((now - started) / every) + 1)
    return started + k * every, k


class FaultConfigError(WsloadError):
    """Fault flags that contradict each other or are out of range."""


@dataclass(frozen=True)
class Faults:
    """The server's fault flags, in seconds; all off by default.

    ``delay``: every reply goes out this long after its message arrived.
    ``stall_every``/``stall_for``: the first ``stall_for`` seconds of every
    ``stall_every``-second period (counted from the server's start) hold all
    replies; they leave when the stall ends. ``drop_rate``: probability that a
    received message is lost (no reply, no effect), and that one event
    delivery is lost. ``close_after``: close a connection once it has sent
    this many messages (0 = never). ``push_every``: every connection receives
    a message it never asked for (``{"type": "heartbeat", "n": k}``, no id)
    this often (0 = never), as services with heartbeats, presence or
    broadcasts do. Delay and stalls apply to replies only; events and pushes
    go out when due.
    """

    delay: float = 0.0
    stall_every: float = 0.0
    stall_for: float = 0.0
    drop_rate: float = 0.0
    close_after: int = 0
    push_every: float = 0.0

    @property
    def holds_replies(self) -> bool:
        """True when replies may wait (delay or stalls), so they need a queue."""
        return bool(self.delay or self.stall_every)

    def problems(self) -> list[str]:
        """Every reason these flags cannot run, one line each (empty when fine)."""
        out: list[str] = []
        if not (math.isfinite(self.delay) and 0 <= self.delay <= MAX_DELAY):
            out.append(f"--delay must be 0..{MAX_DELAY * 1000:.0f} ms, got {self.delay * 1000:g}")
        if not (math.isfinite(self.drop_rate) and 0.0 <= self.drop_rate <= 1.0):
            out.append(f"--drop-rate must be between 0 and 1, got {self.drop_rate:g}")
        if self.close_after < 0:
            out.append(f"--close-after must be zero or more, got {self.close_after}")
        push = self.push_every
        if not (math.isfinite(push) and (push == 0 or MIN_PUSH_EVERY <= push <= MAX_PUSH_EVERY)):
            out.append(
                f"--push-every must be 0 or {MIN_PUSH_EVERY * 1000:g}.."
                f"{MAX_PUSH_EVERY * 1000:.0f} ms, got {push * 1000:g}"
            )
        every, length = self.stall_every, self.stall_for
        if not (math.isfinite(every) and 0 <= every <= MAX_STALL_PERIOD):
            out.append(f"--stall-every must be 0..{MAX_STALL_PERIOD:g} s, got {every:g}")
        elif not (math.isfinite(length) and length >= 0):
            out.append(f"--stall-for must be zero or more, got {length:g}")
        elif length and not every:
            out.append("--stall-for needs --stall-every (the period the stalls repeat with)")
        elif every and not 0 < length < every:
            out.append(
                f"--stall-every needs a --stall-for above 0 and below it, "
                f"got --stall-for {length:g} with --stall-every {every:g}"
            )
        return out


@dataclass(frozen=True)
class Decision:
    """What to do with one received message.

    ``reply_at`` is the monotonic time its reply may be sent, or None when the
    message is dropped; ``close`` says the connection closes (code 1000,
    reason ``close-after``) right after that reply, or right away if dropped.
    """

    reply_at: float | None
    close: bool

    @property
    def dropped(self) -> bool:
        return self.reply_at is None


class FaultPolicy:
    """Decides, per received message, when its reply is due and whether to close.

    Due times never decrease for increasing arrival times (a stall maps every
    time inside it to its end), so one FIFO queue per connection keeps replies
    in order *and* on time.

    With a seed, the drop decisions form one reproducible sequence for the
    whole server: a single connection sees the same drops on every run; with
    several connections, which one meets which decision depends on how their
    messages interleave.
    """

    def __init__(self, faults: Faults, *, started: float, seed: int | None = None) -> None:
        problems = faults.problems()
        if problems:
            raise FaultConfigError("; ".join(problems))
        self.faults = faults
        self.started = started
        self._rng = random.Random(seed)

    def stall_end(self, when: float) -> float | None:
        """End of the stall ``when`` falls in, or None when it falls outside every stall."""
        f = self.faults
        if not f.stall_every or when < self.started:
            return None
        phase = (when - self.started) % f.stall_every
        if phase < f.stall_for:
            return when + (f.stall_for - phase)
        return None

    def drop_event(self) -> bool:
        """Whether one event delivery is lost (``--drop-rate`` applies to events too).

        Draws from the same seeded sequence as :meth:`decide`, and only when
        ``drop_rate`` is set.
        """
        rate = self.faults.drop_rate
        return bool(rate) and self._rng.random() < rate

    def decide(self, received_at: float, nth_message: int) -> Decision:
        """Message number ``nth_message`` (1-based) of a connection arrived at ``received_at``.

        The drop draw happens only when ``drop_rate`` is set, so enabling other
        faults never shifts a seeded drop sequence.
        """
        f = self.faults
        close = f.close_after > 0 and nth_message >= f.close_after
        if f.drop_rate and self._rng.random() < f.drop_rate:
            return Decision(None, close)
        due = received_at + f.delay
        stall_end = self.stall_end(due)
        return Decision(due if stall_end is None else stall_end, close)


__all__ = [
    "MAX_DELAY",
    "MAX_PUSH_EVERY",
    "MAX_STALL_PERIOD",
    "MIN_PUSH_EVERY",
    "Decision",
    "FaultConfigError",
    "FaultPolicy",
    "Faults",
    "next_push",
    "push_message",
]

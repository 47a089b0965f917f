"""Fault injection decisions, sans-I/O: when a reply is due, and whether it is sent at all.

The server asks :class:`FaultPolicy` about every message it receives; the
policy answers with the time the reply may go out (or None to drop it) and
whether the connection must be closed after it. Times are plain floats on
the server's monotonic clock, randomness comes from a seeded ``Random``, so
every decision is testable without a socket.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from common.errors import WsloadError


class FaultConfigError(WsloadError):
    """Fault flags that contradict each other."""


@dataclass(frozen=True)
class Faults:
    """The server's fault flags; all off by default."""

    delay: float = 0.0  # seconds added to every reply
    stall_every: float = 0.0  # period of stalls, seconds (0 = none)
    stall_for: float = 0.0  # length of each stall, seconds
    drop_rate: float = 0.0  # probability a message gets no reply
    close_after: int = 0  # close a connection after this many messages (0 = never)

    def problems(self) -> list[str]:
        out = []
        if self.delay < 0:
            out.append(f"--delay must be zero or more, got {self.delay * 1000:g}")
        if not 0.0 <= self.drop_rate <= 1.0:
            out.append(f"--drop-rate must be between 0 and 1, got {self.drop_rate:g}")
        if self.close_after < 0:
            out.append(f"--close-after must be zero or more, got {self.close_after}")
        if self.stall_for and not self.stall_every:
            out.append("--stall-for needs --stall-every")
        if self.stall_every < 0 or self.stall_for < 0:
            out.append("--stall-every and --stall-for must be zero or more")
        elif self.stall_every and not 0 < self.stall_for < self.stall_every:
            out.append(
                f"--stall-for ({self.stall_for:g}) must be above 0 and below "
                f"--stall-every ({self.stall_every:g})"
            )
        return out


@dataclass(frozen=True)
class Decision:
    """What to do with one received message."""

    reply_at: float | None  # None: drop it
    close_after_reply: bool


class FaultPolicy:
    """Decides, per received message, when its reply is due and whether to close."""

    def __init__(self, faults: Faults, *, started: float, seed: int | None = None) -> None:
        problems = faults.problems()
        if problems:
            raise FaultConfigError("; ".join(problems))
        self.faults = faults
        self.started = started
        self._rng = random.Random(seed)

    def stall_end(self, now: float) -> float | None:
        """End of the stall ``now`` falls in, or None outside stalls.

        Stalls occupy the first ``stall_for`` seconds of every ``stall_every``
        period, counted from the server's start.
        """
        f = self.faults
        if not f.stall_every:
            return None
        phase = (now - self.started) % f.stall_every
        if phase < f.stall_for:
            return now + (f.stall_for - phase)
        return None

    def drops(self) -> bool:
        """Whether one event delivery is lost (``--drop-rate`` applies to events too)."""
        return bool(self.faults.drop_rate) and self._rng.random() < self.faults.drop_rate

    def decide(self, received_at: float, nth_message: int) -> Decision:
        """Message number ``nth_message`` (1-based) of a connection arrived at ``received_at``."""
        f = self.faults
        close = bool(f.close_after) and nth_message >= f.close_after
        if f.drop_rate and self._rng.random() < f.drop_rate:
            return Decision(None, close)
        due = received_at + f.delay
        stall_end = self.stall_end(due)
        if stall_end is not None:
            due = stall_end
        return Decision(due, close)


__all__ = ["Decision", "FaultConfigError", "FaultPolicy", "Faults"]

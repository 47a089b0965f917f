"""Who may take a worker slot: a pure decision, fed hellos, heartbeats and ``now``.

A worker says hello on its job socket and beats on a second socket of its
own (``<id>#hb``, :mod:`wsload.worker.heartbeat`) from the moment it starts. A slot
goes to a worker only once both have arrived, in either order: a stray
process (a probe, an intruder on an unauthenticated loopback port) that only
sends a hello never takes the slot of the worker that was expected, however
early it comes. Without CURVE keys this is a guard against accidents and
lazy intruders, not a proof of identity; with keys only authorised workers
reach this far at all.

Memory is bounded: at most ``memory`` hellos wait for their heartbeat and
at most ``memory`` heartbeats wait for their hello, the oldest forgotten
first, so a flood of either costs nothing that lasts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from wsload.common.protocol import Hello

#: Hellos waiting for a heartbeat, and heartbeats waiting for a hello, at most.
MAX_PENDING = 256


class Decision(Enum):
    ADMIT = "admit"  # give it a slot and welcome it
    WAIT = "wait"  # say nothing yet: its other half has not come
    REFUSE = "refuse"  # every slot is taken


@dataclass
class Slots:
    """The admission of ``slots`` workers; ``joined`` (how many hold one) is the caller's."""

    slots: int
    #: seconds a heartbeat vouches for a hello that comes after it
    beat_valid: float = 3.0
    memory: int = MAX_PENDING
    pending: dict[str, Hello] = field(default_factory=dict)
    beats: dict[str, float] = field(default_factory=dict)

    def hello(self, hello: Hello, joined: int, now: float) -> Decision:
        """A hello from a worker that holds no slot."""
        if joined >= self.slots:
            return Decision.REFUSE
        beat = self.beats.pop(hello.worker_id, None)
        if beat is not None and now - beat <= self.beat_valid:
            self.pending.pop(hello.worker_id, None)
            return Decision.ADMIT
        self._remember(self.pending, hello.worker_id, hello)
        return Decision.WAIT

    def beat(self, worker_id: str, joined: int, now: float) -> tuple[Decision, Hello | None]:
        """A heartbeat from a worker that holds no slot; with ADMIT, the hello it completes."""
        hello = self.pending.pop(worker_id, None)
        if hello is None:
            self._remember(self.beats, worker_id, now)
            return Decision.WAIT, None
        if joined >= self.slots:
            return Decision.REFUSE, hello
        return Decision.ADMIT, hello

    def _remember(self, memo: dict[str, Any], key: str, value: Any) -> None:
        memo.pop(key, None)  # newest last
        memo[key] = value
        while len(memo) > self.memory:
            del memo[next(iter(memo))]


__all__ = ["MAX_PENDING", "Decision", "Slots"]

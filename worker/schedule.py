"""When each client connects and sends: pure arithmetic on one monotonic clock.

The schedule fixes *intended* times up front. A client that falls behind
(stalled target, saturated loop, full socket buffer) still records each
message's latency from its intended time, and catches up by sending the
backlog as fast as it can rather than quietly stretching its period -- the
correction for coordinated omission (the wrk2 approach). Skipping the
backlog instead would drop exactly the messages that met the stall, and
their latencies with them. A message sent more than :data:`BEHIND_SLACK`
after its intended time is counted ``behind_schedule``, so a summary can
tell the generator's lag from the target's. What is still behind when the
sending time ends is never sent (so never counted sent): the accounting
identity stays exact. Closed loop (``period == 0``) has no schedule: each
message is intended to go as soon as the previous reply arrived.

The pacing bounds every sender keeps (timer slack, the per-turn budget, the
in-flight bound) are here too, shared by the lifecycle (:mod:`wsload.worker.engine`)
and the picows engine's ticker.
"""

from __future__ import annotations

from dataclasses import dataclass

#: How late (seconds) a message may go out before it counts ``behind_schedule``:
#: above a loop turn's jitter (timers tick in milliseconds, a sender yields
#: every couple of milliseconds), far below any latency worth reporting.
BEHIND_SLACK = 0.005
#: uvloop's timers tick in milliseconds: a message due within this many
#: seconds goes out now rather than after a timer that may fire a tick late,
#: so the generator's own timer lag does not inflate intended-time latency.
TIMER_SLACK = 0.001
#: Longest a sender keeps the event loop to itself (seconds). Above capacity
#: every message is always due; without a yield the loop would starve replies,
#: windows, timeouts and the agent's ZeroMQ I/O until the run's end.
TICK_BUDGET = 0.002
#: Messages one connection may have awaiting replies in the open model. At
#: the bound it sends no more until replies (or timeouts) make room: the
#: target is not keeping up, and what it holds back goes out behind schedule,
#: its latency still counted from the intended time. Bounds the in-flight
#: table (~0.5 MB a connection) and what the drain at stop has to wait for,
#: instead of queueing seconds of messages in socket buffers.
MAX_IN_FLIGHT = 4096
#: How often (seconds) a sender held back (in-flight bound, paused writes) looks again.
HOLD_POLL = 0.005


@dataclass(frozen=True)
class Share:
    """This worker's part of a job: clients ``offset .. offset + count - 1`` of ``total``.

    ``rate`` is this worker's messages per second (open model), or ``None``
    for the per-client ``interval`` model.
    """

    count: int
    offset: int = 0
    total: int = 0
    rate: float | None = None

    @property
    def job_total(self) -> int:
        """All clients of the job over every worker (ramp slots are spread over these)."""
        return max(self.total, self.offset + self.count)


def connect_at(start: float, ramp_up: float, share: Share, index: int) -> float:
    """When local client ``index`` opens its connection.

    Slots are spread evenly over ``ramp_up`` by the client's *global* index,
    so several workers together ramp as one population would.
    """
    if ramp_up <= 0:
        return start
    return start + ramp_up * (share.offset + index) / share.job_total


def send_period(interval: float, share: Share) -> float:
    """Seconds between two messages of one client; 0 means closed loop."""
    if share.rate is not None:
        return share.count / share.rate if share.rate > 0 and share.count else 0.0
    return interval


def first_send(connected: float, period: float, share: Share, index: int) -> float:
    """The first intended send of a client, phased so clients do not fire in lockstep."""
    if period <= 0 or share.count <= 1:
        return connected
    return connected + period * (index / share.count)


class SendSchedule:
    """Intended send times ``first + k * period`` of one client.

    The times never drift: a late send does not move the next one.
    """

    __slots__ = ("first", "next_at", "period", "sent")

    def __init__(self, first: float, period: float) -> None:
        self.first = first
        self.period = period
        self.next_at = first
        self.sent = 0

    def advance(self) -> float:
        """Take the current intended time and move to the next one."""
        due = self.next_at
        self.sent += 1
        self.next_at = self.first + self.sent * self.period
        return due


__all__ = ["BEHIND_SLACK", "SendSchedule", "Share", "connect_at", "first_send", "send_period"]

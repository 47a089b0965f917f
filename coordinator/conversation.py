"""The coordinator's side of the worker conversation, sans-I/O.

Given the frames a worker sent (or a tick) and ``now``, :class:`Conversation`
says what to send back and what happened; :class:`wsload.coordinator.session.Session`
owns the ROUTER socket and the clock and does only that. Shaped like
python-websockets' sans-I/O protocol, so every rule of the conversation --
admission (a hello *and* a heartbeat, :mod:`wsload.coordinator.slots`), refusal when
full, the version mismatch answer, liveness, the ``bye`` -- is unit-tested
with a fake clock instead of processes and sleeps.

What the conversation does not decide is the run itself (the job, handovers,
merging: :mod:`wsload.coordinator.run_loop`): it hands the shell :class:`Joined`,
:class:`SamplesIn`, :class:`ResultIn`, :class:`JobRefused` and :class:`Busy`
events for that. Bad input is counted by kind and only the first of each
kind is logged: a hostile peer costs a counter, never a flooded terminal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wsload.common.errors import ProtocolError
from wsload.common.protocol import (
    HEARTBEAT_SUFFIX,
    JOB_REFUSALS,
    Bye,
    Clock,
    Error,
    Heartbeat,
    Hello,
    Message,
    Refuse,
    Result,
    Samples,
    Stop,
    VersionMismatch,
    Welcome,
    decode,
)
from wsload.coordinator.clock import ClockProbes
from wsload.coordinator.run_model import WorkerState
from wsload.coordinator.slots import Decision, Slots

#: The refusal a worker gets when every slot is taken.
FULL = "the coordinator has all the workers it needs"


@dataclass(frozen=True)
class Joined:
    """A worker took a slot (it has been sent its ``welcome``)."""

    hello: Hello


@dataclass(frozen=True)
class SamplesIn:
    worker_id: str
    samples: Samples


@dataclass(frozen=True)
class ResultIn:
    worker_id: str
    result: Result


@dataclass(frozen=True)
class JobRefused:
    """A worker will not run the current job (bad spec, target not allowed...): it ends the run."""

    worker_id: str
    text: str


@dataclass(frozen=True)
class Busy:
    """A worker sent a share it could not take (it runs another job): hand it elsewhere."""

    worker_id: str


Event = Joined | SamplesIn | ResultIn | JobRefused | Busy


@dataclass
class Output:
    """What one step produced: messages to send (to a ROUTER identity), events, log lines."""

    sends: list[tuple[str, Message]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    def extend(self, other: Output) -> None:
        self.sends += other.sends
        self.events += other.events
        self.logs += other.logs


class Conversation:
    """Admission, liveness and the ``bye`` of one run's workers; no socket, no clock."""

    def __init__(
        self, slots: int, *, heartbeat_interval: float = 1.0, lost_after: float = 3.0
    ) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.lost_after = lost_after
        self.slots = Slots(slots, beat_valid=lost_after)
        self.workers: dict[str, WorkerState] = {}
        #: bad input by kind (version, bad, unknown, hello, frames...): counted, logged once
        self.bad_input: dict[str, int] = {}
        #: the current job: samples and results of any other are dropped
        self.job_id = ""
        #: a worker's refusal of the current job, which ends it
        self.refused = ""
        self.refusers: set[str] = set()  # workers that refused it: no result will come
        self._last_beat: float | None = None
        #: each worker's clock offset, probed when it joins (coordinator.clock)
        self.clocks = ClockProbes()

    # -- what arrives -------------------------------------------------------

    def receive(self, frames: list[bytes], now: float, wall: float | None = None) -> Output:
        """One ROUTER message (identity, body) received at ``now`` (``wall``: the wall
        clock then, for clock probes; ``now`` when not given)."""
        wall = now if wall is None else wall
        if len(frames) != 2:
            return self.bad("frames", f"message with {len(frames)} frames ignored")
        identity = frames[0].decode("utf-8", "replace")
        try:
            msg = decode(frames[1])
        except VersionMismatch as exc:
            out = self.bad("version", f"refused {identity}: {exc}")
            out.sends.append((identity, Refuse(str(exc))))
            return out
        except ProtocolError as exc:
            return self.bad("bad", f"bad message from {identity}: {exc}")
        worker_id = identity.removesuffix(HEARTBEAT_SUFFIX)
        if isinstance(msg, Hello):
            return self._hello(identity, msg, now, wall)
        state = self.workers.get(worker_id)
        if state is None:
            if isinstance(msg, Heartbeat):  # a heartbeat thread may beat before its hello
                return self._stranger_beat(identity, worker_id, now, wall)
            return self.bad("unknown", f"message from unknown worker {identity} ignored")
        state.last_seen = now
        out = Output()
        if isinstance(msg, Samples) and msg.job_id == self.job_id and self.job_id:
            out.events.append(SamplesIn(worker_id, msg))
        elif isinstance(msg, Result) and msg.job_id == self.job_id and self.job_id:
            out.events.append(ResultIn(worker_id, msg))
        elif isinstance(msg, Clock):
            probe = self.clocks.answer(worker_id, msg, wall)
            if probe is not None:
                out.sends.append((worker_id, probe))
        elif isinstance(msg, Bye):
            state.left = True
        elif isinstance(msg, Error):
            details = "; ".join(msg.details)
            out.logs.append(f"worker {worker_id} error {msg.code}: {msg.message} {details}")
            if msg.code in JOB_REFUSALS and self.job_id:
                self.refused = f"worker {worker_id} refused the job: {msg.message} {details}"
                self.refusers.add(worker_id)
                out.events.append(JobRefused(worker_id, self.refused))
            elif msg.code == "busy":
                out.events.append(Busy(worker_id))
        return out

    def _hello(self, identity: str, msg: Hello, now: float, wall: float) -> Output:
        if identity != msg.worker_id:
            return self.bad("hello", f"hello from {identity} claims id {msg.worker_id}")
        out = Output()
        state = self.workers.get(msg.worker_id)
        if state is not None:
            if state.left:
                return out  # a long-lived worker looking for its next run: not this one's
            state.last_seen = now
        else:
            decision = self.slots.hello(msg, len(self.workers), now)
            if decision is Decision.REFUSE:
                out.sends.append((identity, Refuse(FULL)))
                return out
            if decision is Decision.WAIT:
                return out  # admitted when its heartbeat comes (coordinator.slots)
            self._admit(msg, now, out)
            out.sends.append((identity, Welcome(msg.worker_id, self.heartbeat_interval)))
            out.sends.append((identity, self.clocks.start(msg.worker_id, wall)))
            return out
        out.sends.append((identity, Welcome(msg.worker_id, self.heartbeat_interval)))
        return out

    def _stranger_beat(self, identity: str, worker_id: str, now: float, wall: float) -> Output:
        """A heartbeat from a worker not admitted: admit its waiting hello, or remember it."""
        out = Output()
        if not identity.endswith(HEARTBEAT_SUFFIX):
            return out
        decision, hello = self.slots.beat(worker_id, len(self.workers), now)
        if decision is Decision.REFUSE:
            out.sends.append((worker_id, Refuse(FULL)))
        elif decision is Decision.ADMIT and hello is not None:
            self._admit(hello, now, out)
            out.sends.append((worker_id, Welcome(worker_id, self.heartbeat_interval)))
            out.sends.append((worker_id, self.clocks.start(worker_id, wall)))
        return out

    def _admit(self, hello: Hello, now: float, out: Output) -> None:
        self.workers[hello.worker_id] = WorkerState(hello, now)
        out.events.append(Joined(hello))

    # -- what the coordinator says on its own -------------------------------

    def tick(self, now: float, wall: float) -> Output:
        """Heartbeat every live worker, once per interval (``wall``: the beat's timestamp)."""
        out = Output()
        if self._last_beat is not None and now - self._last_beat < self.heartbeat_interval:
            return out
        self._last_beat = now
        beat = Heartbeat(wall)
        for worker_id, state in self.workers.items():
            if not state.lost:
                out.sends.append((worker_id + HEARTBEAT_SUFFIX, beat))
        return out

    def silent(self, now: float) -> list[tuple[str, float]]:
        """Workers not yet lost that have been silent past ``lost_after``: (id, seconds)."""
        return [
            (worker_id, now - state.last_seen)
            for worker_id, state in self.workers.items()
            if not state.lost and now - state.last_seen > self.lost_after
        ]

    def lose(self, worker_id: str) -> None:
        """Nothing more is sent to ``worker_id``, not even heartbeats."""
        self.workers[worker_id].lost = True

    def start_job(self, job_id: str) -> None:
        self.job_id = job_id

    def dismiss(self, reason: str = "run over") -> Output:
        """``bye`` to every worker; :meth:`all_gone` says when each answered (or is lost)."""
        return Output(sends=[(worker_id, Bye(reason)) for worker_id in self.workers])

    def all_gone(self) -> bool:
        return all(s.left or s.lost for s in self.workers.values())

    def abandon(self, reason: str) -> list[tuple[str, Message]]:
        """``stop`` and ``bye`` to every worker still there, answers not awaited."""
        return [
            (worker_id, msg)
            for worker_id, state in self.workers.items()
            if not (state.lost or state.left)
            for msg in (Stop(self.job_id, reason), Bye(reason))
        ]

    def bad(self, kind: str, text: str) -> Output:
        """Count bad input of ``kind``; only the first of each kind is logged."""
        seen = self.bad_input.get(kind, 0)
        self.bad_input[kind] = seen + 1
        out = Output()
        if not seen:
            out.logs.append(f"{text} (further ones of this kind are counted, not logged)")
        return out


__all__ = [
    "FULL",
    "Busy",
    "Conversation",
    "Event",
    "JobRefused",
    "Joined",
    "Output",
    "ResultIn",
    "SamplesIn",
]

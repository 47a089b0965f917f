"""What a run is told and what it produces: its options, its workers, its outcome.

Split from :mod:`wsload.coordinator.session` (which moves the messages) so the
session stays about the conversation; the constants here are the run loop's
timings, each with why it has its value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wsload.common.curve import CurveKeys
from wsload.common.protocol import Hello, Result
from wsload.coordinator.aggregate import RunAggregate

#: Seconds between the job message and the planned start, so every worker
#: across a network has it before the common start time; local workers get
#: theirs within milliseconds (``wsload run`` uses LOCAL_START_DELAY).
START_DELAY = 1.0
LOCAL_START_DELAY = 0.25
#: Seconds to wait for the workers to answer the ``bye`` at the end.
BYE_WAIT = 1.0
#: A worker's dead-man stop: it stops its load after this many seconds without
#: a word from the coordinator (``worker.agent.AgentOptions.silence_timeout``).
WORKER_SILENCE = 5.0
#: Seconds over which a lost worker's clients connect on the worker that takes them.
HANDOVER_RAMP = 1.0
#: No handover with less than this many seconds of the run left.
HANDOVER_MIN_LEFT = 1.0
#: While gathering: first "waiting for workers" line after this many seconds
#: (local workers join sooner and stay quiet), then on each change and at
#: least every WAIT_NOTICE_EVERY seconds.
WAIT_NOTICE_AFTER = 1.0
WAIT_NOTICE_EVERY = 5.0
#: Workers an elastic coordinator admits in all.
MAX_WORKERS = 10_000


def _no_exits() -> Mapping[str, str]:
    return {}


@dataclass(frozen=True)
class SessionOptions:
    """How the coordinator runs: where it listens, whom it waits for."""

    endpoint: str = "tcp://127.0.0.1:*"
    expect_workers: int = 1
    worker_wait: float = 30.0
    heartbeat_interval: float = 1.0
    lost_after: float = 3.0
    #: rebalance (hand a lost worker's clients on), continue (run on without them), abort
    on_worker_loss: str = "rebalance"
    #: admit workers beyond ``expect_workers``, also mid-run (``--elastic``)
    elastic: bool = False
    #: local workers whose process exited, by id (:meth:`LocalWorkers.exits`): lost for certain
    process_exits: Callable[[], Mapping[str, str]] = _no_exits
    result_wait: float = 10.0
    start_delay: float = START_DELAY
    curve: CurveKeys | None = None
    #: bind a non-loopback endpoint without ``curve`` (``--insecure``)
    insecure: bool = False
    #: called once a second; a non-empty answer aborts the run with that reason
    on_progress: Callable[[RunAggregate, float], str | None] | None = None
    on_log: Callable[[str], None] = print

    @property
    def handover_delay(self) -> float:
        """Seconds from declaring a silent worker lost to handing its clients on.

        A worker cut off from the coordinator keeps loading until its dead-man
        stop (WORKER_SILENCE after the last word it heard); it was declared
        lost ``lost_after`` after the last word we heard, and words travel
        once per heartbeat interval. Waiting out the difference means a
        client is never run twice at once.
        """
        return max(0.0, WORKER_SILENCE - self.lost_after) + self.heartbeat_interval


@dataclass
class WorkerState:
    hello: Hello
    last_seen: float
    lost: bool = False
    left: bool = False  # it answered our ``bye``


@dataclass
class RunOutcome:
    """What a run produced: the merged figures and how it ended."""

    aggregate: RunAggregate
    elapsed: float
    workers: dict[str, WorkerState] = field(default_factory=dict)
    lost_workers: list[str] = field(default_factory=list)
    aborted: str = ""
    interrupted: bool = False
    interrupted_by: str = ""  # the signal's name: SIGINT, SIGTERM
    #: a lost worker's clients handed on: {"from", "to", "clients", "first_client"}
    handovers: list[dict[str, Any]] = field(default_factory=list)
    orphaned: int = 0  # clients nobody ran at the end (lost, not handed on)
    mode: str = "load"
    refused: bool = False  # a worker would not run the job: it could not run at all
    bad_input: dict[str, int] = field(default_factory=dict)  # hostile or broken peers
    check_result: Result | None = None
    check_worker: str = ""

    def summary(self) -> dict[str, Any]:
        """A functional mode's results (unit, integration, event).

        A load run's summary is the typed ``RunSummary`` that
        :func:`wsload.coordinator.loadrun.conclude` builds from this outcome.
        """
        if self.mode == "load":
            raise TypeError("a load run's summary is coordinator.loadrun.conclude(spec, outcome)")
        return {
            "mode": self.mode,
            "ok": bool(self.check_result and self.check_result.ok),
            "worker": self.check_worker,
            **(self.check_result.details if self.check_result else {}),
            "lost_workers": list(self.lost_workers),
            "interrupted": self.interrupted,
            "interrupted_by": self.interrupted_by,
        }


__all__ = [
    "BYE_WAIT",
    "HANDOVER_MIN_LEFT",
    "HANDOVER_RAMP",
    "LOCAL_START_DELAY",
    "MAX_WORKERS",
    "START_DELAY",
    "WAIT_NOTICE_AFTER",
    "WAIT_NOTICE_EVERY",
    "WORKER_SILENCE",
    "RunOutcome",
    "SessionOptions",
    "WorkerState",
]

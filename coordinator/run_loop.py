"""The run loop: gather the workers, run the job, hand lost workers' clients on, collect.

A mixin of :class:`wsload.coordinator.session.Session`, which owns the socket and
the conversation (hello, admission, heartbeats, the message pump); this part
decides what to send when. Planning and handovers (:mod:`wsload.coordinator.plan`),
admission (:mod:`wsload.coordinator.slots`) and merging
(:mod:`wsload.coordinator.aggregate`) are sans-I/O.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Callable

import zmq
import zmq.asyncio

from wsload.common.protocol import Hello, Job, Message, Stop, encode
from wsload.common.spec import JobSpec
from wsload.coordinator.aggregate import RunAggregate
from wsload.coordinator.conversation import Conversation
from wsload.coordinator.errors import CoordinatorError
from wsload.coordinator.fanout import FanoutLedger, fanout_sources
from wsload.coordinator.plan import Assignment, Roster, WorkerCapacity, plan, worker_spec
from wsload.coordinator.run_model import (
    BYE_WAIT,
    HANDOVER_MIN_LEFT,
    HANDOVER_RAMP,
    MAX_WORKERS,
    WAIT_NOTICE_AFTER,
    WAIT_NOTICE_EVERY,
    RunOutcome,
    SessionOptions,
    WorkerState,
)
from wsload.coordinator.step_aggregate import workload_names


def capacity_of(hello: Hello) -> WorkerCapacity:
    """What a worker can carry, as the planner sees it, from its hello."""
    return WorkerCapacity(hello.worker_id, max(1, hello.cores), hello.fd_limit)


class RunLoop:
    """Gathering, the job, handovers, stop and results, over a :class:`Session`'s socket."""

    # Provided by the Session.
    options: SessionOptions
    endpoint: str
    _sock: zmq.asyncio.Socket
    _stop_requested: asyncio.Event

    async def _pump(self, wait: float, aggregate: RunAggregate | None) -> None:
        raise NotImplementedError

    async def _send(self, identity: str, msg: Message) -> None:
        raise NotImplementedError

    def _run_state(self) -> None:
        """The conversation (admission, liveness) and the run's state (the job's roster)."""
        self._stop_reason = ""
        opts = self.options
        self._conv = Conversation(
            MAX_WORKERS if opts.elastic else opts.expect_workers,
            heartbeat_interval=opts.heartbeat_interval,
            lost_after=opts.lost_after,
        )
        #: the admitted workers (the conversation's own record)
        self.workers: dict[str, WorkerState] = self._conv.workers
        #: bad input by kind (version, bad, unknown, hello, frames): counted, logged once
        self.bad_input: dict[str, int] = self._conv.bad_input
        self._roster: Roster | None = None
        self._assigned: set[str] = set()  # workers sent the current job: each owes a result
        self._job_spec: JobSpec | None = None
        self._end_at = 0.0
        self._outcome: RunOutcome | None = None

    def request_stop(self, reason: str = "") -> None:
        """End the run early (Ctrl-C, SIGTERM: ``reason`` names it): stop, drain, report."""
        if not self._stop_requested.is_set():
            self._stop_reason = reason
        self._stop_requested.set()

    def joined(self) -> str:
        """How far gathering got, for messages: ``1 of 4 joined``."""
        return f"{len(self.workers)} of {self.options.expect_workers} joined"

    # -- gathering ----------------------------------------------------------

    async def gather(self, abort: Callable[[], str | None] = lambda: None) -> None:
        """Wait until ``expect_workers`` have joined, or fail naming the shortfall.

        ``abort`` is polled: a non-empty string (say, a local worker died)
        ends the wait at once with that reason. A stop request (a signal)
        ends it too, without an error: the caller says so. While it waits it
        says how many joined, so a coordinator is never silent for a minute.
        """
        started = time.monotonic()
        deadline = started + self.options.worker_wait
        told, next_notice = -1, started + WAIT_NOTICE_AFTER
        while len(self.workers) < self.options.expect_workers:
            reason = abort()
            if reason:
                raise CoordinatorError(reason)
            if self._stop_requested.is_set():
                return
            now = time.monotonic()
            if now > deadline:
                have = ", ".join(sorted(self.workers)) or "none"
                raise CoordinatorError(
                    f"only {len(self.workers)} of {self.options.expect_workers} workers joined "
                    f"{self.endpoint} within {self.options.worker_wait:g} s (joined: {have})"
                )
            if now >= next_notice or (told >= 0 and told != len(self.workers)):
                told, next_notice = len(self.workers), now + WAIT_NOTICE_EVERY
                self.options.on_log(
                    f"waiting for workers: {self.joined()} at {self.endpoint} "
                    f"({deadline - now:.0f} s left)"
                )
            await self._pump(wait=0.2, aggregate=None)

    # -- running ------------------------------------------------------------

    async def run(self, spec: JobSpec) -> RunOutcome:
        """Plan ``spec`` over the gathered workers, run it, collect every result."""
        opts = self.options
        capacities = [capacity_of(w.hello) for w in self.workers.values()]
        assignments = plan(spec.num_clients, spec.rate, capacities)
        job_id = uuid.uuid4().hex[:12]
        start_at = time.time() + self.options.start_delay
        ledger = FanoutLedger(socket.gethostname(), fanout_sources(spec))
        agg = RunAggregate(start_at, *workload_names(spec), fanout=ledger)
        self._clocks_to(ledger)
        self._conv.start_job(job_id)
        self._job_spec = spec
        self._roster = Roster(
            assignments,
            capacities,
            rate_per_client=spec.rate / spec.num_clients if spec.rate else None,
            delay=opts.handover_delay,
            hand_on=opts.on_worker_loss == "rebalance",
        )
        body = spec.to_dict()
        for a in assignments:
            share = worker_spec(body, a.client_offset, a.num_clients)
            await self._send(
                a.worker_id,
                Job(job_id, share, a.num_clients, a.client_offset, a.rate or 0.0, start_at),
            )
            self._assigned.add(a.worker_id)
        outcome = self._outcome = RunOutcome(agg, 0.0, self.workers, bad_input=self.bad_input)
        end_at = self._end_at = start_at + spec.duration
        next_progress = time.time() + 1.0
        while time.time() < end_at and not self._stop_requested.is_set() and not outcome.aborted:
            await self._pump(wait=0.1, aggregate=agg)
            outcome.aborted, outcome.refused = self._conv.refused, bool(self._conv.refused)
            self._check_liveness(outcome)
            if end_at - time.time() > HANDOVER_MIN_LEFT:
                await self._hand_over(outcome)
            if opts.on_progress is not None and time.time() >= next_progress:
                outcome.aborted = opts.on_progress(agg, time.time() - start_at) or ""
                next_progress += 1.0
        outcome.interrupted = self._stop_requested.is_set()
        outcome.interrupted_by = self._stop_reason if outcome.interrupted else ""
        for worker_id, state in self.workers.items():
            if not state.lost:
                await self._send(worker_id, Stop(job_id, outcome.aborted or "run over"))
        # Results come after each worker's drain and close.
        deadline = time.monotonic() + spec.drain_timeout + spec.connect_timeout + opts.result_wait
        while time.monotonic() < deadline and not self._all_reported(agg):
            await self._pump(wait=0.1, aggregate=agg)
            self._check_liveness(outcome)
        for worker_id in self._assigned:
            missing = agg.worker(worker_id).result is None and worker_id not in self._conv.refusers
            if not self.workers[worker_id].lost and missing:
                self._lose(worker_id, outcome, "no result after stop")
        outcome.orphaned = self._roster.orphaned
        outcome.elapsed = max(0.0, min(time.time(), end_at) - start_at)
        self._roster = None
        self._clocks_to(ledger)  # workers that joined mid-run too
        return outcome

    def _clocks_to(self, ledger: FanoutLedger) -> None:
        """Each worker's clock offset as probed so far (none: unknown, uncorrected)."""
        for worker_id, state in self.workers.items():
            best = self._conv.clocks.best(worker_id)
            ledger.set_clock(
                worker_id,
                state.hello.host,
                None if best is None else best.offset_us,
                None if best is None else best.uncertainty_us,
            )

    async def _hand_over(self, outcome: RunOutcome) -> None:
        """Send each due handover: the running job again, with the clients it adds.

        A worker running the job takes them into it (their connections spread
        until ``start_at``, HANDOVER_RAMP from now); one that joined since
        (``--elastic``) gets the job itself, with the run's remaining time.
        """
        roster, spec = self._roster, self._job_spec
        assert roster is not None
        assert spec is not None
        for handover in roster.due(time.monotonic()):
            a = handover.share
            await self._send_share(a, spec)
            last = a.client_offset + a.num_clients - 1
            self.options.on_log(
                f"{a.worker_id} takes {a.num_clients} clients of {handover.origin} "
                f"(client-{a.client_offset}..client-{last}) over {HANDOVER_RAMP:g} s"
            )
            outcome.handovers.append(
                {
                    "from": handover.origin,
                    "to": a.worker_id,
                    "clients": a.num_clients,
                    "first_client": a.client_offset,
                }
            )

    async def _send_share(self, a: Assignment, spec: JobSpec) -> None:
        # The handed-on clients' own feeder rows travel with their share.
        share = worker_spec(spec.to_dict(), a.client_offset, a.num_clients)
        if a.worker_id in self._assigned:
            ramp_end = time.time() + HANDOVER_RAMP
            job = Job(self._conv.job_id, share, a.num_clients, a.client_offset,
                      a.rate or 0.0, ramp_end)  # fmt: skip
        else:  # an elastic join: the job itself, for what is left of the run
            start_at = time.time() + self.options.start_delay
            left = max(HANDOVER_MIN_LEFT, self._end_at - start_at)
            body = {**share, "duration": left, "ramp_up": 0.0}
            job = Job(
                self._conv.job_id, body, a.num_clients, a.client_offset, a.rate or 0.0, start_at
            )
            self._assigned.add(a.worker_id)
        await self._send(a.worker_id, job)

    async def run_checks(self, spec: JobSpec, limit: float) -> RunOutcome:
        """Hand a functional-mode job to one worker and wait up to ``limit`` s for its result."""
        worker_id = next(iter(self.workers))
        job_id = uuid.uuid4().hex[:12]
        self._conv.start_job(job_id)
        agg = RunAggregate(time.time())
        outcome = RunOutcome(agg, 0.0, self.workers, mode=spec.mode.value, check_worker=worker_id)
        body = worker_spec(spec.to_dict(), 0, spec.num_clients)
        await self._send(worker_id, Job(job_id, body, spec.num_clients, 0, 0.0, time.time()))
        deadline = time.monotonic() + limit
        while agg.worker(worker_id).result is None and not self.workers[worker_id].lost:
            if self._conv.refused:
                outcome.aborted, outcome.refused = self._conv.refused, True
                break
            if time.monotonic() > deadline or self._stop_requested.is_set():
                outcome.aborted = f"no result from {worker_id} within {limit:g} s"
                break
            await self._pump(wait=0.1, aggregate=agg)
            self._check_liveness(outcome)
        outcome.check_result = agg.worker(worker_id).result
        outcome.interrupted = self._stop_requested.is_set()
        return outcome

    def abandon(self, reason: str) -> None:
        """Quitting without a report (a second signal, an error): stop every worker now.

        Each worker gets ``stop`` and ``bye`` without waiting for an answer,
        so remote workers stop their load at once instead of after their
        dead-man timeout; :meth:`close` lingers to deliver them. Synchronous,
        so it works while the run's task is being cancelled.
        """
        sock: zmq.Socket[bytes] = zmq.Socket.shadow(self._sock.underlying)
        for worker_id, msg in self._conv.abandon(reason):
            try:
                sock.send_multipart([worker_id.encode(), encode(msg)], flags=zmq.NOBLOCK)
            except zmq.ZMQError:
                return  # the socket cannot take more: the dead-man stop will do

    async def dismiss(self) -> None:
        """Tell every worker the session is over (local ``--once`` workers exit).

        Waits (up to BYE_WAIT) for each worker to answer with its own ``bye``:
        a ``bye`` queued on a socket that is closed at once was sometimes lost
        (about one run in 20), and the worker then waited out its silence
        timeout before leaving.
        """
        for worker_id, msg in self._conv.dismiss("run over").sends:
            await self._send(worker_id, msg)
        deadline = time.monotonic() + BYE_WAIT
        while time.monotonic() < deadline and not self._conv.all_gone():
            await self._pump(wait=0.05, aggregate=None)

    def _all_reported(self, agg: RunAggregate) -> bool:
        """Every worker sent the job has reported, refused it, or is lost."""
        return all(
            self.workers[worker_id].lost
            or worker_id in self._conv.refusers
            or agg.worker(worker_id).result is not None
            for worker_id in self._assigned
        )

    def _check_liveness(self, outcome: RunOutcome) -> None:
        """Lose the workers gone silent, and at once those whose process exited."""
        exits = self.options.process_exits()
        for worker_id, state in self.workers.items():
            if state.lost or worker_id not in exits:
                continue
            if outcome.aggregate.worker(worker_id).result is None:
                self._lose(worker_id, outcome, exits[worker_id], certain=True)
        for worker_id, silent_for in self._conv.silent(time.monotonic()):
            self._lose(worker_id, outcome, f"silent for {silent_for:.1f} s")

    def _lose(self, worker_id: str, outcome: RunOutcome, why: str, certain: bool = False) -> None:
        """Mark ``worker_id`` lost; its figures so far stay; its clients may be handed on.

        ``certain``: its process is known to be gone, so its clients can be
        handed on at once (otherwise after :attr:`SessionOptions.handover_delay`).
        """
        self._conv.lose(worker_id)
        outcome.aggregate.mark_lost(worker_id)
        outcome.lost_workers.append(worker_id)
        what = ""
        roster, policy = self._roster, self.options.on_worker_loss
        if roster is not None and policy != "abort":
            clients = roster.lose(worker_id, time.monotonic(), certain=certain)
            if clients and policy == "rebalance":
                delay = 0.0 if certain else roster.delay
                what = f"; its {clients} clients go to the other workers in {delay:.0f} s"
            elif clients:
                what = f"; its {clients} clients run nowhere (--on-worker-loss continue)"
        self.options.on_log(f"worker {worker_id} lost: {why}{what}")
        if policy == "abort":
            outcome.aborted = f"worker {worker_id} lost"


__all__ = ["RunLoop", "capacity_of"]

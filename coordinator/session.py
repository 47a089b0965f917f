"""One run over ZeroMQ: gather workers, hand out the plan, merge, stop, report.

The coordinator binds a ROUTER socket. Workers connect a DEALER for jobs and
samples and a second one (identity ``<worker>#hb``) from a heartbeat thread;
see :mod:`worker.heartbeat`. This module only moves messages: planning
(:mod:`coordinator.plan`) and merging (:mod:`coordinator.aggregate`) are
sans-I/O.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import zmq
import zmq.asyncio
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils import z85

from common.endpoint import EndpointError, bound_problem, parse_endpoint, socket_options
from common.errors import ProtocolError
from common.protocol import (
    HEARTBEAT_SUFFIX,
    JOB_REFUSALS,
    Bye,
    Error,
    Heartbeat,
    Hello,
    Job,
    Message,
    Refuse,
    Result,
    Samples,
    Stop,
    VersionMismatch,
    Welcome,
    decode,
    encode,
)
from common.spec import JobSpec
from coordinator.aggregate import RunAggregate
from coordinator.errors import CoordinatorError
from coordinator.handshakes import HandshakeWatcher
from coordinator.plan import Assignment, Roster, WorkerCapacity, plan
from coordinator.run_model import (
    BYE_WAIT,
    HANDOVER_MIN_LEFT,
    HANDOVER_RAMP,
    LOCAL_START_DELAY,
    MAX_WORKERS,
    WAIT_NOTICE_AFTER,
    WAIT_NOTICE_EVERY,
    RunOutcome,
    SessionOptions,
    WorkerState,
)
from coordinator.slots import Decision, Slots

#: The refusal a worker gets when every slot is taken.
FULL = "the coordinator has all the workers it needs"


class Session:
    """Owns the ROUTER socket for one run."""

    def __init__(self, options: SessionOptions) -> None:
        self.options = options
        try:
            endpoint = parse_endpoint(options.endpoint, bind=True)
        except EndpointError as exc:
            raise CoordinatorError(str(exc)) from None
        self._ctx = zmq.asyncio.Context()
        self._auth: KeyLoggingAuthenticator | None = None
        self._handshakes: HandshakeWatcher | None = None
        self._sock = self._ctx.socket(zmq.ROUTER)
        try:
            socket_options(self._sock, endpoint)
            self._sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
            if options.curve is not None:
                # ZAP handler: only workers whose public key is authorised may connect.
                self._auth = KeyLoggingAuthenticator(self._ctx, on_log=options.on_log)
                self._auth.start()
                self._auth.configure_curve(domain="*", location=str(options.curve.authorized_dir))
                options.curve.apply_server(self._sock)
            try:
                self._sock.bind(options.endpoint)
            except zmq.ZMQError as exc:
                raise CoordinatorError(f"cannot bind {options.endpoint}: {exc.strerror}") from None
            self.endpoint: str = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
            # What ZeroMQ really bound, whatever the endpoint's text looked like.
            problem = bound_problem(
                self.endpoint, keys=options.curve is not None, insecure=options.insecure
            )
            if problem:
                raise CoordinatorError(problem)
            self._handshakes = HandshakeWatcher(
                self._sock,
                has_keys=options.curve is not None,
                report=lambda kind, text: self._bad(f"handshake {kind}", text),
            )
        except BaseException:
            self.close(linger=0)
            raise
        self.workers: dict[str, WorkerState] = {}
        self._stop_requested = asyncio.Event()
        #: bad input by kind (version, bad, unknown, hello, frames): counted, logged once
        self.bad_input: dict[str, int] = {}
        self._job_id = ""
        self._last_beat = 0.0
        self._refused = ""  # a worker's refusal of the current job, which ends it
        self._refusers: set[str] = set()  # workers that refused it: no result will come
        self._run_state()

    def close(self, linger: int = 1000) -> None:
        """Close the port; up to ``linger`` ms to deliver what is queued (the ``bye``s).

        The port closes before the ZAP handler stops: a CURVE server with no
        ZAP handler admits any client key. ``destroy`` closes whatever socket
        is left, so the context's termination can never block.
        """
        if self._handshakes is not None:
            self._handshakes.close()
        self._sock.close(linger=linger)
        if self._auth is not None:
            self._auth.stop()
        self._ctx.destroy(linger=0)

    def _run_state(self) -> None:
        """The run loop's own state (the gathering's admission queue, the running job's roster)."""
        self._stop_reason = ""
        slots = MAX_WORKERS if self.options.elastic else self.options.expect_workers
        self._slots = Slots(slots, beat_valid=self.options.lost_after)
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
        capacities = [_capacity(w.hello) for w in self.workers.values()]
        assignments = plan(spec.num_clients, spec.rate, capacities)
        job_id = uuid.uuid4().hex[:12]
        start_at = time.time() + self.options.start_delay
        agg = RunAggregate(start_at)
        self._job_id = job_id
        self._job_spec = spec
        self._roster = Roster(
            assignments,
            capacities,
            rate_per_client=spec.rate / spec.num_clients if spec.rate else None,
            delay=opts.handover_delay,
            hand_on=opts.on_worker_loss == "rebalance",
        )
        for a in assignments:
            await self._send(
                a.worker_id,
                Job(
                    job_id, spec.to_dict(), a.num_clients, a.client_offset, a.rate or 0.0, start_at
                ),
            )
            self._assigned.add(a.worker_id)
        outcome = self._outcome = RunOutcome(agg, 0.0, self.workers, bad_input=self.bad_input)
        end_at = self._end_at = start_at + spec.duration
        next_progress = time.time() + 1.0
        while time.time() < end_at and not self._stop_requested.is_set() and not outcome.aborted:
            await self._pump(wait=0.1, aggregate=agg)
            outcome.aborted, outcome.refused = self._refused, bool(self._refused)
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
            missing = agg.worker(worker_id).result is None and worker_id not in self._refusers
            if not self.workers[worker_id].lost and missing:
                self._lose(worker_id, outcome, "no result after stop")
        outcome.orphaned = self._roster.orphaned
        outcome.elapsed = max(0.0, min(time.time(), end_at) - start_at)
        self._roster = None
        return outcome

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
        if a.worker_id in self._assigned:
            ramp_end = time.time() + HANDOVER_RAMP
            job = Job(self._job_id, spec.to_dict(), a.num_clients, a.client_offset,
                      a.rate or 0.0, ramp_end)  # fmt: skip
        else:  # an elastic join: the job itself, for what is left of the run
            start_at = time.time() + self.options.start_delay
            left = max(HANDOVER_MIN_LEFT, self._end_at - start_at)
            body = {**spec.to_dict(), "duration": left, "ramp_up": 0.0}
            job = Job(self._job_id, body, a.num_clients, a.client_offset, a.rate or 0.0, start_at)
            self._assigned.add(a.worker_id)
        await self._send(a.worker_id, job)

    async def run_checks(self, spec: JobSpec, limit: float) -> RunOutcome:
        """Hand a functional-mode job to one worker and wait up to ``limit`` s for its result."""
        worker_id = next(iter(self.workers))
        job_id = uuid.uuid4().hex[:12]
        self._job_id = job_id
        agg = RunAggregate(time.time())
        outcome = RunOutcome(agg, 0.0, self.workers, mode=spec.mode.value, check_worker=worker_id)
        await self._send(
            worker_id, Job(job_id, spec.to_dict(), spec.num_clients, 0, 0.0, time.time())
        )
        deadline = time.monotonic() + limit
        while agg.worker(worker_id).result is None and not self.workers[worker_id].lost:
            if self._refused:
                outcome.aborted, outcome.refused = self._refused, True
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
        for worker_id, state in self.workers.items():
            if state.lost or state.left:
                continue
            for msg in (Stop(self._job_id, reason), Bye(reason)):
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
        for worker_id in self.workers:
            await self._send(worker_id, Bye("run over"))
        deadline = time.monotonic() + BYE_WAIT
        while time.monotonic() < deadline and not all(
            s.left or s.lost for s in self.workers.values()
        ):
            await self._pump(wait=0.05, aggregate=None)

    def _all_reported(self, agg: RunAggregate) -> bool:
        """Every worker sent the job has reported, refused it, or is lost."""
        return all(
            self.workers[worker_id].lost
            or worker_id in self._refusers
            or agg.worker(worker_id).result is not None
            for worker_id in self._assigned
        )

    def _check_liveness(self, outcome: RunOutcome) -> None:
        """Lose the workers gone silent, and at once those whose process exited."""
        now = time.monotonic()
        exits = self.options.process_exits()
        for worker_id, state in self.workers.items():
            if state.lost:
                continue
            if worker_id in exits and outcome.aggregate.worker(worker_id).result is None:
                self._lose(worker_id, outcome, exits[worker_id], certain=True)
            elif now - state.last_seen > self.options.lost_after:
                self._lose(worker_id, outcome, f"silent for {now - state.last_seen:.1f} s")

    def _lose(self, worker_id: str, outcome: RunOutcome, why: str, certain: bool = False) -> None:
        """Mark ``worker_id`` lost; its figures so far stay; its clients may be handed on.

        ``certain``: its process is known to be gone, so its clients can be
        handed on at once (otherwise after :attr:`SessionOptions.handover_delay`).
        """
        self.workers[worker_id].lost = True
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

    # -- message pump -------------------------------------------------------

    async def _pump(self, wait: float, aggregate: RunAggregate | None) -> None:
        """Handle what arrives within ``wait`` seconds; heartbeat the workers."""
        await self._heartbeat()
        if not await self._sock.poll(timeout=int(wait * 1000)):
            return
        while True:
            try:
                frames = await self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            await self._handle(frames, aggregate)
            if not await self._sock.poll(timeout=0):
                return

    async def _handle(self, frames: list[bytes], agg: RunAggregate | None) -> None:
        if len(frames) != 2:
            self._bad("frames", f"message with {len(frames)} frames ignored")
            return
        identity = frames[0].decode("utf-8", "replace")
        try:
            msg = decode(frames[1])
        except VersionMismatch as exc:
            self._bad("version", f"refused {identity}: {exc}")
            await self._send(identity, Refuse(str(exc)))
            return
        except ProtocolError as exc:
            self._bad("bad", f"bad message from {identity}: {exc}")
            return
        worker_id = identity.removesuffix(HEARTBEAT_SUFFIX)
        state = self.workers.get(worker_id)
        if isinstance(msg, Hello):
            await self._hello(identity, msg)
            return
        if state is None:
            if isinstance(msg, Heartbeat):  # a heartbeat thread may beat before its hello
                await self._stranger_beat(identity, worker_id)
            else:
                self._bad("unknown", f"message from unknown worker {identity} ignored")
            return
        state.last_seen = time.monotonic()
        if isinstance(msg, Samples) and agg is not None and msg.job_id == self._job_id:
            try:
                agg.add_samples(worker_id, msg)
            except ProtocolError as exc:
                self._bad("samples", f"bad samples from {worker_id} ignored: {exc}")
        elif isinstance(msg, Result) and agg is not None and msg.job_id == self._job_id:
            agg.add_result(worker_id, msg)
        elif isinstance(msg, Bye):
            state.left = True
        elif isinstance(msg, Error):
            details = "; ".join(msg.details)
            self.options.on_log(f"worker {worker_id} error {msg.code}: {msg.message} {details}")
            if msg.code in JOB_REFUSALS and self._job_id:
                self._refused = f"worker {worker_id} refused the job: {msg.message} {details}"
                self._refusers.add(worker_id)
            elif msg.code == "busy" and self._roster is not None:  # predates handovers
                back = self._roster.decline(worker_id, time.monotonic())
                if back:
                    self.options.on_log(f"{back} clients handed to {worker_id} go to others")

    async def _hello(self, identity: str, msg: Hello) -> None:
        if identity != msg.worker_id:
            self._bad("hello", f"hello from {identity} claims id {msg.worker_id}")
            return
        if msg.worker_id in self.workers:
            if self.workers[msg.worker_id].left:
                return  # a long-lived worker looking for its next run: not this one's
            self.workers[msg.worker_id].last_seen = time.monotonic()
        else:
            decision = self._slots.hello(msg, len(self.workers), time.monotonic())
            if decision is Decision.REFUSE:
                await self._send(identity, Refuse(FULL))
                return
            if decision is Decision.WAIT:
                return  # admitted when its heartbeat comes (coordinator.slots)
            self._admit(msg)
        await self._send(identity, Welcome(msg.worker_id, self.options.heartbeat_interval))

    # -- admission: a slot needs a hello *and* a heartbeat (coordinator.slots) --

    async def _stranger_beat(self, identity: str, worker_id: str) -> None:
        """A heartbeat from a worker not admitted: admit its waiting hello, or remember it."""
        if not identity.endswith(HEARTBEAT_SUFFIX):
            return
        decision, hello = self._slots.beat(worker_id, len(self.workers), time.monotonic())
        if decision is Decision.REFUSE:
            await self._send(worker_id, Refuse(FULL))
        elif decision is Decision.ADMIT and hello is not None:
            self._admit(hello)
            await self._send(worker_id, Welcome(worker_id, self.options.heartbeat_interval))

    def _admit(self, msg: Hello) -> None:
        self.workers[msg.worker_id] = WorkerState(msg, time.monotonic())
        mid_run = self._roster is not None
        self.options.on_log(
            f"worker {msg.worker_id} joined{' mid-run' if mid_run else ''} ({msg.host}, "
            f"pid {msg.pid}, {msg.cores} cores, fd limit {msg.fd_limit}, wsload {msg.version})"
        )
        if self._roster is not None:  # --elastic: it takes clients nobody runs, now or later
            self._roster.join(_capacity(msg))

    async def _heartbeat(self) -> None:
        now = time.monotonic()
        if now - self._last_beat < self.options.heartbeat_interval:
            return
        self._last_beat = now
        beat = Heartbeat(time.time())
        for worker_id, state in self.workers.items():
            if not state.lost:
                await self._send(worker_id + HEARTBEAT_SUFFIX, beat)

    async def _send(self, identity: str, msg: Message) -> None:
        # A ROUTER never blocks: a message to a peer that is gone is dropped.
        await self._sock.send_multipart([identity.encode(), encode(msg)])

    def _bad(self, kind: str, text: str) -> None:
        """Log the first of each kind of bad input, then count the rest quietly.

        A hostile peer must not be able to flood the log (or the terminal).
        """
        seen = self.bad_input.get(kind, 0)
        self.bad_input[kind] = seen + 1
        if not seen:
            self.options.on_log(f"{text} (further ones of this kind are counted, not logged)")


def _capacity(hello: Hello) -> WorkerCapacity:
    return WorkerCapacity(hello.worker_id, max(1, hello.cores), hello.fd_limit)


class KeyLoggingAuthenticator(AsyncioAuthenticator):
    """The ZAP handler, logging each refused worker key once (at most ``MAX_LOGGED``).

    A worker refused by ZAP only sees its handshake fail; the coordinator's
    operator needs to know which key knocked, to add it to ``authorized/``
    if it belongs there. A hostile peer trying many keys cannot flood the log.
    """

    MAX_LOGGED = 20

    def __init__(self, context: zmq.asyncio.Context, *, on_log: Callable[[str], None]) -> None:
        super().__init__(context)
        self._on_log = on_log
        self._refused: set[bytes] = set()  # at most MAX_LOGGED keys

    async def _authenticate_curve(self, domain: str, client_key: bytes) -> tuple[bool, bytes]:
        allowed, reason = await super()._authenticate_curve(domain, client_key)
        if allowed or client_key in self._refused or len(self._refused) > self.MAX_LOGGED:
            return allowed, reason
        if len(self._refused) == self.MAX_LOGGED:
            self._refused.add(b"")  # the marker: nothing more is logged
            self._on_log(f"more than {self.MAX_LOGGED} worker keys refused: no longer logged")
            return allowed, reason
        self._refused.add(client_key)
        key = z85.encode(client_key).decode("ascii", "replace")
        self._on_log(
            f"refused a worker whose CURVE key is not in authorized/: {key} "
            "(copy its worker.key there to admit it)"
        )
        return allowed, reason


__all__ = ["LOCAL_START_DELAY", "RunOutcome", "Session", "SessionOptions", "WorkerState"]

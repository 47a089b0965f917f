"""One run over ZeroMQ: gather workers, hand out the plan, merge, stop, report.

This module holds the socket and the conversation (hellos and admission,
heartbeats, the message pump); what to send when -- gathering, the job,
handovers, stop, results -- is :class:`coordinator.run_loop.RunLoop`.

The coordinator binds a ROUTER socket. Workers connect a DEALER for jobs and
samples and a second one (identity ``<worker>#hb``) from a heartbeat thread;
see :mod:`worker.heartbeat`. This module only moves messages: planning
(:mod:`coordinator.plan`) and merging (:mod:`coordinator.aggregate`) are
sans-I/O.
"""

from __future__ import annotations

import asyncio
import time
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
    Message,
    Refuse,
    Result,
    Samples,
    VersionMismatch,
    Welcome,
    decode,
    encode,
)
from coordinator.aggregate import RunAggregate
from coordinator.errors import CoordinatorError
from coordinator.handshakes import HandshakeWatcher
from coordinator.run_loop import RunLoop, capacity_of
from coordinator.run_model import (
    LOCAL_START_DELAY,
    RunOutcome,
    SessionOptions,
    WorkerState,
)
from coordinator.slots import Decision

#: The refusal a worker gets when every slot is taken.
FULL = "the coordinator has all the workers it needs"


class Session(RunLoop):
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
            self._roster.join(capacity_of(msg))

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

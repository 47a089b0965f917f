"""One run over ZeroMQ: gather workers, hand out the plan, merge, stop, report.

This module holds the socket and the clock; what is said -- hellos and
admission, refusals, heartbeats, liveness, the ``bye`` -- is decided by the
sans-I/O :class:`wsload.coordinator.conversation.Conversation`, and what to send
when -- gathering, the job, handovers, stop, results -- by
:class:`wsload.coordinator.run_loop.RunLoop`.

The coordinator binds a ROUTER socket. Workers connect a DEALER for jobs and
samples and a second one (identity ``<worker>#hb``) from a heartbeat thread;
see :mod:`wsload.worker.heartbeat`. This module only moves messages: planning
(:mod:`wsload.coordinator.plan`) and merging (:mod:`wsload.coordinator.aggregate`) are
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

from wsload.common.endpoint import EndpointError, bound_problem, parse_endpoint, socket_options
from wsload.common.errors import ProtocolError
from wsload.common.protocol import Hello, Message, encode
from wsload.coordinator.aggregate import RunAggregate
from wsload.coordinator.conversation import Busy, Joined, Output, ResultIn, SamplesIn
from wsload.coordinator.errors import CoordinatorError
from wsload.coordinator.handshakes import HandshakeWatcher
from wsload.coordinator.run_loop import RunLoop, capacity_of
from wsload.coordinator.run_model import (
    LOCAL_START_DELAY,
    RunOutcome,
    SessionOptions,
    WorkerState,
)


class Session(RunLoop):
    """Owns the ROUTER socket for one run."""

    def __init__(self, options: SessionOptions) -> None:
        self.options = options
        self._stop_requested = asyncio.Event()
        self._run_state()  # the conversation (workers, bad input) and the run's state
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
                options.curve.authorize(self._auth)
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

    # -- message pump: the socket and the clock; the rules are the Conversation's --

    async def _pump(self, wait: float, aggregate: RunAggregate | None) -> None:
        """Handle what arrives within ``wait`` seconds; heartbeat the workers."""
        await self._apply(self._conv.tick(time.monotonic(), time.time()), aggregate)
        if not await self._sock.poll(timeout=int(wait * 1000)):
            return
        while True:
            try:
                frames = await self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            out = self._conv.receive(frames, time.monotonic(), time.time())
            await self._apply(out, aggregate)
            if not await self._sock.poll(timeout=0):
                return

    async def _apply(self, out: Output, agg: RunAggregate | None) -> None:
        """Act on one step of the conversation: log, hand events to the run, send."""
        for line in out.logs:
            self.options.on_log(line)
        for event in out.events:
            if isinstance(event, Joined):
                self._joined(event.hello)
            elif isinstance(event, SamplesIn) and agg is not None:
                try:
                    agg.add_samples(event.worker_id, event.samples)
                except ProtocolError as exc:
                    self._bad("samples", f"bad samples from {event.worker_id} ignored: {exc}")
            elif isinstance(event, ResultIn) and agg is not None:
                agg.add_result(event.worker_id, event.result)
            elif isinstance(event, Busy) and self._roster is not None:  # predates handovers
                back = self._roster.decline(event.worker_id, time.monotonic())
                if back:
                    self.options.on_log(f"{back} clients handed to {event.worker_id} go to others")
        for identity, msg in out.sends:
            await self._send(identity, msg)

    def _joined(self, msg: Hello) -> None:
        mid_run = self._roster is not None
        self.options.on_log(
            f"worker {msg.worker_id} joined{' mid-run' if mid_run else ''} ({msg.host}, "
            f"pid {msg.pid}, {msg.cores} cores, fd limit {msg.fd_limit}, wsload {msg.version})"
        )
        if self._roster is not None:  # --elastic: it takes clients nobody runs, now or later
            self._roster.join(capacity_of(msg))

    async def _send(self, identity: str, msg: Message) -> None:
        # A ROUTER never blocks: a message to a peer that is gone is dropped.
        await self._sock.send_multipart([identity.encode(), encode(msg)])

    def _bad(self, kind: str, text: str) -> None:
        """Count bad input (the handshake watcher's); log the first of each kind."""
        for line in self._conv.bad(kind, text).logs:
            self.options.on_log(line)


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

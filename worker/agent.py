"""The worker's ZeroMQ side: say hello, take jobs, stream samples, report.

One agent per worker process. It connects a DEALER socket (identity = the
worker id) to the coordinator's ROUTER, sends ``hello`` until a ``welcome``
or ``refuse`` comes, then runs each ``job`` with an :class:`Engine`,
streaming every window as a ``samples`` message and ending with a
``result``. Liveness runs on :class:`HeartbeatThread`, off this loop; when
the coordinator goes silent the agent stops its load and goes back to
saying hello (or exits, with ``once``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
import zmq
import zmq.asyncio

from common import __version__
from common.errors import ProtocolError, SpecError
from common.protocol import (
    Bye,
    Error,
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
from common.spec import JobSpec, Mode, spec_from_dict
from common.validation import unbindable_address
from worker.engine import Engine, create_engine
from worker.heartbeat import HeartbeatThread
from worker.recorder import WindowBatch
from worker.schedule import Share

HELLO_EVERY = 1.0
#: how soon to try again when the hello could not even be sent (no connection yet)
HELLO_RETRY = 0.05
#: longest a handed-on share may take to connect (the coordinator asks for ~1 s)
HANDOVER_RAMP_MAX = 10.0
SEND_PATIENCE = 5.0
EXIT_OK = 0
EXIT_REFUSED = 2


@dataclass(frozen=True)
class AgentOptions:
    """How an agent reaches its coordinator and what it accepts."""

    endpoint: str
    worker_id: str = ""
    once: bool = False
    heartbeat_interval: float = 1.0
    silence_timeout: float = 5.0
    hello_timeout: float | None = None
    #: called on every socket before connect (CURVE keys, for instance)
    configure: Callable[[Any], None] | None = None
    #: HOST or HOST:PORT this worker may load; empty = any (see target_refusal)
    allowed_targets: tuple[str, ...] = ()


def fd_limit() -> int:
    """Raise the soft descriptor limit to the hard one; return what we have."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


class Agent:
    """Runs jobs from one coordinator at a time."""

    def __init__(self, options: AgentOptions) -> None:
        self.options = options
        self.worker_id = options.worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self._silence = asyncio.Event()
        self._engine: Engine | None = None
        self._job_id = ""  # the job running (or last run): a second job of it adds clients

    async def serve(self) -> int:
        """Serve coordinators until refused, told ``bye``, or (``once``) one session ends."""
        loop = asyncio.get_running_loop()
        ctx = zmq.asyncio.Context()
        try:
            while True:
                self._silence.clear()
                sock = self._socket(ctx)
                hb = HeartbeatThread(
                    zmq.Context.instance(),
                    self.options.endpoint,
                    self.worker_id,
                    on_silence=lambda: _call_soon(loop, self._on_silence),
                    interval=self.options.heartbeat_interval,
                    silence_timeout=self.options.silence_timeout,
                    configure=self.options.configure,
                )
                hb.start()
                try:
                    code = await self._session(sock, hb)
                finally:
                    hb.close()
                    sock.close(linger=1000)
                if code is not None or self.options.once:
                    return code if code is not None else EXIT_OK
        finally:
            ctx.term()

    def _socket(self, ctx: zmq.asyncio.Context) -> zmq.asyncio.Socket:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.ROUTING_ID, self.worker_id.encode())
        sock.setsockopt(zmq.IMMEDIATE, 1)  # queue only to a completed connection
        if self.options.configure is not None:
            self.options.configure(sock)
        sock.connect(self.options.endpoint)
        return sock

    def _take_over(self, job: Job) -> bool:
        """A second ``job`` for the running one: a lost worker's clients, added to it.

        Their connections spread from now until ``start_at`` (bounded); see
        :meth:`worker.engine.Engine.add_clients`. True when it was one.
        """
        engine = self._engine
        if engine is None or job.job_id != self._job_id:
            return False
        ramp = min(max(0.0, job.start_at - time.time()), HANDOVER_RAMP_MAX)
        rate = job.rate if job.rate > 0 else None
        share = Share(job.num_clients, job.client_offset, engine.share.total, rate)
        engine.add_clients(share, ramp)
        return True

    def _on_silence(self) -> None:
        self._silence.set()
        if self._engine is not None:
            self._engine.stop()

    async def _session(self, sock: zmq.asyncio.Socket, hb: HeartbeatThread) -> int | None:
        """One coordinator: returns an exit code to stop, or None to say hello again."""
        welcomed = await self._hello(sock, hb)
        if isinstance(welcomed, int) or welcomed is None:
            return welcomed
        async with asyncio.TaskGroup() as tg:
            job_task: asyncio.Task[None] | None = None
            while not self._silence.is_set():
                msg = await self._recv(sock, wait=0.25)
                if msg is None:
                    continue
                hb.mark_seen()
                if isinstance(msg, Job):
                    if job_task is not None and not job_task.done():
                        if not self._take_over(msg):
                            busy = Error("busy", f"{self.worker_id} is running a job")
                            await self._send(sock, busy)
                        continue
                    self._job_id = msg.job_id
                    job_task = tg.create_task(self._run_job(sock, msg))
                elif isinstance(msg, Stop):
                    if self._engine is not None:
                        self._engine.stop()
                elif isinstance(msg, Bye):
                    if self._engine is not None:
                        self._engine.stop()
                    if job_task is not None:
                        await job_task
                    # Answer, so the coordinator knows its bye arrived before it closes.
                    with contextlib.suppress(zmq.Again):
                        await sock.send(encode(Bye("leaving")), flags=zmq.NOBLOCK)
                    return EXIT_OK
            # The coordinator went silent: the job task stops with the engine.
            if job_task is not None:
                await job_task
        return None

    async def _hello(self, sock: zmq.asyncio.Socket, hb: HeartbeatThread) -> Welcome | int | None:
        hello = Hello(
            worker_id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=__version__,
            cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1,
            fd_limit=fd_limit(),
        )
        waited = 0.0
        while True:
            # Not connected yet (TCP still connecting, coordinator not up, or CURVE
            # handshake refused): a DEALER with no peer would block, so try again
            # soon; once sent, give the coordinator HELLO_EVERY to answer.
            wait = HELLO_EVERY
            try:
                await sock.send(encode(hello), flags=zmq.NOBLOCK)
            except zmq.Again:
                wait = HELLO_RETRY
            msg = await self._recv(sock, wait=wait)
            if isinstance(msg, Welcome):
                hb.mark_seen()
                return msg
            if isinstance(msg, Refuse):
                print(f"wsload worker: refused by coordinator: {msg.reason}", file=sys.stderr)
                return EXIT_REFUSED
            waited += wait
            limit = self.options.hello_timeout
            if limit is not None and waited >= limit:
                print(
                    f"wsload worker: no coordinator answered at {self.options.endpoint} "
                    f"within {limit:g} s",
                    file=sys.stderr,
                )
                return EXIT_REFUSED

    async def _run_job(self, sock: zmq.asyncio.Socket, job: Job) -> None:
        spec, problems = _checked_spec(job)
        if spec is None:
            await self._send(sock, Error("bad-job", "the job spec is invalid", problems))
            return
        refusal = target_refusal(spec, self.options.allowed_targets)
        if refusal:
            await self._send(sock, Error("target-not-allowed", f"{self.worker_id}: {refusal}"))
            return
        refusal = unbindable_address(spec.source_addresses)
        if refusal:
            await self._send(sock, Error("bad-source-address", f"{self.worker_id}: {refusal}"))
            return
        if spec.mode is not Mode.LOAD:
            from worker.checks.runner import run_mode  # aiohttp & co. only for check jobs

            ok, details = await run_mode(spec)
            await self._send(sock, Result(job.job_id, ok, {}, {}, details))
            return
        queue: asyncio.Queue[WindowBatch | None] = asyncio.Queue()
        share = Share(
            count=job.num_clients,
            offset=job.client_offset,
            total=spec.num_clients,
            rate=job.rate if job.rate > 0 else None,
        )
        self._engine = engine = create_engine(
            spec, share, on_batch=queue.put_nowait, start_at=job.start_at
        )
        async with asyncio.TaskGroup() as tg:
            streamer = tg.create_task(self._stream(sock, job.job_id, queue))
            try:
                result = await engine.run()
            finally:
                queue.put_nowait(None)
                await streamer
                self._engine = None
        await self._send(
            sock,
            Result(
                job_id=job.job_id,
                ok=result.balanced,
                counters=result.counters,
                errors=result.errors,
                details={
                    "started_at": result.started_at,
                    "stopped_at": result.stopped_at,
                    "stopped_early": result.stopped_early,
                    "coordinator_lost": self._silence.is_set(),
                    "error_texts": result.error_texts,
                },
            ),
        )

    async def _stream(
        self, sock: zmq.asyncio.Socket, job_id: str, queue: asyncio.Queue[WindowBatch | None]
    ) -> None:
        while (batch := await queue.get()) is not None:
            await self._send(
                sock,
                Samples.window(
                    job_id,
                    batch.seq,
                    (batch.window_start, batch.window_end),
                    batch.counters,
                    batch.errors,
                    (_u32(batch.latency), _u32(batch.service), _u32(batch.connect)),
                ),
            )

    async def _send(self, sock: zmq.asyncio.Socket, message: Message) -> bool:
        """Send, waiting up to SEND_PATIENCE s for the link; False if it never came back.

        A DEALER whose peer is gone would block forever; the heartbeat thread
        notices a dead coordinator within its silence timeout anyway.
        """
        data = encode(message)
        deadline = time.monotonic() + SEND_PATIENCE
        while True:
            try:
                await sock.send(data, flags=zmq.NOBLOCK)
                return True
            except zmq.Again:
                if self._silence.is_set() or time.monotonic() >= deadline:
                    return False  # the coordinator is gone: nobody to tell
                await asyncio.sleep(0.05)

    async def _recv(self, sock: zmq.asyncio.Socket, wait: float) -> Message | None:
        """The next message within ``wait`` seconds; None if none (or a bad one) came."""
        # Never an unbounded await on the socket, and look before polling: with
        # uvloop an edge-triggered ZeroMQ wake-up can be missed (seen under
        # CURVE), leaving a message queued that no poll reports.
        try:
            data = await sock.recv(flags=zmq.NOBLOCK)
        except zmq.Again:
            if not await sock.poll(timeout=int(wait * 1000)):
                return None
            try:
                data = await sock.recv(flags=zmq.NOBLOCK)
            except zmq.Again:
                return None
        try:
            return decode(data)
        except VersionMismatch as exc:
            # The coordinator's refusal of our version is itself in its version.
            return Refuse(f"the coordinator speaks another protocol: {exc}")
        except ProtocolError as exc:
            print(f"wsload worker: ignoring a bad message: {exc}", file=sys.stderr)
            return None


def _checked_spec(job: Job) -> tuple[JobSpec | None, list[str]]:
    try:
        spec = spec_from_dict(job.spec)
    except SpecError as exc:
        return None, exc.problems
    problems = spec.problems()
    return (None, problems) if problems else (spec, [])


def _u32(packed: bytes) -> npt.NDArray[np.uint32]:
    return np.frombuffer(packed, dtype="<u4")


def target_refusal(spec: JobSpec, allowed: tuple[str, ...]) -> str | None:
    """Why this worker must not run ``spec`` (``--allow-target``), or None.

    A shared worker fleet can be restricted to the services it exists to test,
    so whoever reaches its coordinator cannot aim it anywhere else.
    """
    if not allowed:
        return None
    urls = [spec.ws_url] + ([spec.api_url] if spec.mode is Mode.EVENT else [])
    for url in urls:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port or (443 if parts.scheme in ("wss", "https") else 80)
        if not any(_allows(rule, host, port) for rule in allowed):
            return f"target {host}:{port} is not in --allow-target ({', '.join(allowed)})"
    return None


def _allows(rule: str, host: str, port: int) -> bool:
    rule_host, sep, rule_port = rule.lower().rpartition(":")
    if not sep or not rule_port.isdigit():  # HOST alone (or a bare IPv6 address)
        return rule.lower().strip("[]") == host
    return rule_host.strip("[]") == host and int(rule_port) == port


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    loop.call_soon_threadsafe(callback)


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


__all__ = ["Agent", "AgentOptions", "fd_limit", "new_worker_id"]

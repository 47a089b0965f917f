"""The worker's ZeroMQ side: say hello, take jobs, stream samples, report.

One agent per worker process. It connects a DEALER socket (identity = the
worker id) to the coordinator's ROUTER, sends ``hello`` until a ``welcome``
or ``refuse`` comes, then runs each ``job`` with an :class:`Engine`,
streaming every window as a ``samples`` message and ending with a
``result``. Liveness runs on :class:`HeartbeatThread`, off this loop; when
the coordinator goes silent the agent stops its load (the thread exits the
process if the starved loop cannot) and goes back to saying hello.

A worker is long-lived: after a coordinator's ``bye`` it looks for the next
one at the same endpoint, run after run, until it is stopped. With ``once``
it exits after one session (the local workers of ``wsload run``).

What is said when -- hello until welcomed, refusals, a coordinator of
another protocol, jobs and handovers, the ``bye``, the hello timeout -- is
decided by the sans-I/O :class:`wsload.worker.conversation.Conversation`; this
module keeps the sockets, the engine and the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import zmq
import zmq.asyncio

from wsload.common.endpoint import Endpoint, parse_endpoint
from wsload.common.protocol import Error, Job, Message, Result, Samples, StepWindow, encode
from wsload.common.spec import JobSpec, Mode
from wsload.common.validation import unbindable_address
from wsload.worker.admission import checked_spec, target_refusal
from wsload.worker.conversation import (
    Action,
    AnswerClock,
    Conversation,
    End,
    Reply,
    Say,
    Seen,
    SessionEnd,
    StartJob,
    StopLoad,
    TakeOver,
    Welcomed,
)
from wsload.worker.engine import Engine
from wsload.worker.engines import create_engine
from wsload.worker.heartbeat import HeartbeatThread
from wsload.worker.identity import introduce
from wsload.worker.link import Link
from wsload.worker.recorder import WindowBatch
from wsload.worker.schedule import Share

#: longest a handed-on share may take to connect (the coordinator asks for ~1 s)
HANDOVER_RAMP_MAX = 10.0
SEND_PATIENCE = 5.0
#: once the coordinator is silent, a load has its drain timeout, its close
#: bound (each close handshake waits at most the connect timeout, then the
#: socket is aborted) and this long to stop before the heartbeat thread exits
#: the process
DEADMAN_GRACE = 5.0


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


class Agent:
    """Runs jobs from one coordinator at a time."""

    def __init__(self, options: AgentOptions) -> None:
        self.options = options
        self.worker_id = options.worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self._endpoint: Endpoint = parse_endpoint(options.endpoint, bind=False)
        self._silence = asyncio.Event()
        self._engine: Engine | None = None
        self._check: asyncio.Task[None] | None = None
        #: the rules of the conversation (hello, refusal, jobs, bye), sans-I/O
        self._conv = Conversation(
            self.worker_id,
            options.endpoint,
            time.monotonic(),
            once=options.once,
            hello_timeout=options.hello_timeout,
        )

    async def serve(self) -> int:
        """Serve coordinators until stopped, refused for good, or (``once``) one session ends."""
        loop = asyncio.get_running_loop()
        ctx = zmq.asyncio.Context()
        try:
            while True:
                end = await self._session(ctx, loop)
                code, say = self._conv.after(end)
                if code is not None:
                    return code
                if say:
                    print(f"wsload worker: {say}", file=sys.stderr, flush=True)
                if end.retry_after:
                    await asyncio.sleep(end.retry_after)
        finally:
            # Closes any socket a failure left open: term() can never block.
            ctx.destroy(linger=0)

    async def _session(
        self, ctx: zmq.asyncio.Context, loop: asyncio.AbstractEventLoop
    ) -> SessionEnd:
        """One coordinator, on fresh sockets that are closed whatever happens."""
        self._silence.clear()
        self._conv.new_session()
        link = Link(ctx, self._endpoint, self.worker_id, configure=self.options.configure)
        hb: HeartbeatThread | None = None
        try:
            hb = HeartbeatThread(
                zmq.Context.instance(),
                self._endpoint,
                self.worker_id,
                on_silence=lambda: _call_soon(loop, self._on_silence),
                interval=self.options.heartbeat_interval,
                silence_timeout=self.options.silence_timeout,
                configure=self.options.configure,
            )
            hb.start()
            return await self._converse(link, hb)
        finally:
            if hb is not None:
                hb.close()
            link.close(linger=1000)

    def _take_over(self, job: Job) -> bool:
        """A second ``job`` for the running one: a lost worker's clients, added to it.

        Their connections spread from now until ``start_at`` (bounded); see
        :meth:`wsload.worker.engine.Engine.add_clients`. True when it was one.
        """
        engine = self._engine
        if engine is None:
            return False
        ramp = min(max(0.0, job.start_at - time.time()), HANDOVER_RAMP_MAX)
        rate = job.rate if job.rate > 0 else None
        share = Share(job.num_clients, job.client_offset, engine.share.total, rate)
        engine.add_clients(share, ramp, checked_spec(job)[0])
        return True

    def _on_silence(self) -> None:
        self._silence.set()
        if self._engine is not None:
            self._engine.stop()
        if self._check is not None:
            self._check.cancel()

    async def _converse(self, link: Link, hb: HeartbeatThread) -> SessionEnd:
        """Hello, then jobs until ``bye`` or the coordinator's silence."""
        sock = link.sock
        ended = await self._hello(link, hb)
        if ended is not None:
            return ended
        async with asyncio.TaskGroup() as tg:
            job_task: asyncio.Task[None] | None = None
            while not self._silence.is_set():
                data = await self._recv(sock, wait=0.25)
                if data is None:
                    continue
                self._conv.job_running = job_task is not None and not job_task.done()
                self._conv.load_running = self._engine is not None
                for action in self._conv.receive(data):
                    if isinstance(action, Seen):
                        hb.mark_seen()
                    elif isinstance(action, StartJob):
                        job_task = tg.create_task(self._run_job(sock, action.job, hb))
                    elif isinstance(action, TakeOver):
                        if not self._take_over(action.job):
                            await self._send(sock, self._conv.busy())
                    elif isinstance(action, Reply):
                        await self._send(sock, action.message)
                    elif isinstance(action, AnswerClock):  # at once: the round trip is the bound
                        await self._send(sock, action.probe.answer(time.time()))
                    elif isinstance(action, StopLoad):
                        if self._engine is not None:
                            self._engine.stop()
                    elif isinstance(action, Say):
                        _say(action.text)
                    elif isinstance(action, End):
                        if job_task is not None:
                            await job_task
                        if action.end.answer is not None:
                            with contextlib.suppress(zmq.Again):
                                await sock.send(encode(action.end.answer), flags=zmq.NOBLOCK)
                        self._conv.looking(time.monotonic())
                        return action.end
            # The coordinator went silent: the job task stops with the engine.
            if job_task is not None:
                await job_task
        self._conv.looking(time.monotonic())
        return self._conv.silenced()

    async def _hello(self, link: Link, hb: HeartbeatThread) -> SessionEnd | None:
        """Say hello until welcomed (None) or told to leave (the session's end)."""
        sock = link.sock
        hello = encode(introduce(self.worker_id))
        while True:
            # Not connected yet (TCP still connecting, coordinator not up, or CURVE
            # handshake refused): a DEALER with no peer would block, so try again
            # soon; once sent, give the coordinator HELLO_EVERY to answer.
            sent = True
            try:
                await sock.send(hello, flags=zmq.NOBLOCK)
            except zmq.Again:
                sent = False
            data = await self._recv(sock, wait=self._conv.hello_wait(sent))
            actions: list[Action] = [] if data is None else self._conv.receive(data)
            if not any(isinstance(a, Welcomed | End) for a in actions):
                actions += self._conv.unanswered(time.monotonic(), await link.problem())
            for action in actions:
                if isinstance(action, Say):
                    _say(action.text)
                elif isinstance(action, Welcomed):
                    hb.arm()
                    return None
                elif isinstance(action, End):
                    return action.end

    async def _run_job(self, sock: zmq.asyncio.Socket, job: Job, hb: HeartbeatThread) -> None:
        spec, problems = checked_spec(job)
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
        # Once the coordinator falls silent, the load has this long to stop: a
        # worker cut off from the network too waits out its close handshakes.
        hb.load_started(spec.drain_timeout + spec.connect_timeout + DEADMAN_GRACE)
        try:
            if spec.mode is Mode.LOAD:
                await self._run_load(sock, job, spec)
            else:
                await self._run_check(sock, job, spec)
        finally:
            hb.load_stopped()

    async def _run_check(self, sock: zmq.asyncio.Socket, job: Job, spec: JobSpec) -> None:
        from wsload.worker.checks.runner import run_mode  # aiohttp & co. only for check jobs

        self._check = asyncio.current_task()
        try:
            if self._silence.is_set():
                return
            ok, details = await run_mode(spec)
        except asyncio.CancelledError:
            if not self._silence.is_set():
                raise
            return  # the coordinator went silent (see _on_silence): nobody to tell
        finally:
            self._check = None
        await self._send(sock, Result(job.job_id, ok, {}, {}, details))

    async def _run_load(self, sock: zmq.asyncio.Socket, job: Job, spec: JobSpec) -> None:
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
        if self._silence.is_set():  # the coordinator fell silent as the job came
            engine.stop()
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
                    steps={
                        name: StepWindow(step.counters, _u32(step.latency), _u32(step.service))
                        for name, step in batch.steps.items()
                    },
                    scenarios=batch.scenarios,
                    fanout=batch.fanout,
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

    async def _recv(self, sock: zmq.asyncio.Socket, wait: float) -> bytes | None:
        """The next message within ``wait`` seconds; None if none came."""
        # Never an unbounded await on the socket, and look before polling: with
        # uvloop an edge-triggered ZeroMQ wake-up can be missed (seen under
        # CURVE), leaving a message queued that no poll reports.
        try:
            return await sock.recv(flags=zmq.NOBLOCK)
        except zmq.Again:
            if not await sock.poll(timeout=int(wait * 1000)):
                return None
            try:
                return await sock.recv(flags=zmq.NOBLOCK)
            except zmq.Again:
                return None


def _say(text: str) -> None:
    print(f"wsload worker: {text}", file=sys.stderr, flush=True)


def _u32(packed: bytes) -> npt.NDArray[np.uint32]:
    return np.frombuffer(packed, dtype="<u4")


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop already closed: nothing left to stop
        loop.call_soon_threadsafe(callback)


__all__ = ["Agent", "AgentOptions", "SessionEnd"]

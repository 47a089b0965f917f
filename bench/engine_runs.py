"""wsload's engine run in this process by a benchmark: its steady-state CPU per
reply, and its resident memory per client held.

Shared by the engine benchmark (the echo load, idle connections) and the
conversation benchmark (conversations beside the echo load, clients held in
a conversation with a long think).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

from procfs import cpu_seconds, rss_bytes

from wsload.common.spec import JobSpec
from wsload.worker.accounting import EngineResult
from wsload.worker.engines import create_engine
from wsload.worker.recorder import WindowBatch
from wsload.worker.schedule import Share

#: Longest wait for every client to connect.
CONNECT_WAIT = 90.0


@dataclass(frozen=True)
class Measured:
    """Per message: this process's CPU (and its kernel part); busy shares of both sides."""

    cpu_us: float
    sys_us: float
    rate: float
    busy: float
    target_busy: float

    def note(self) -> str:
        side = "generator" if self.busy > 0.9 else "neither" if self.target_busy < 0.9 else "target"
        return (
            f"{self.sys_us:.1f} µs of it in the kernel; {self.rate:,.0f} msg/s; generator "
            f"{self.busy:.0%} of a core, target {self.target_busy:.0%}: {side} saturated"
        )


class Span:
    """Start/stop marks of wall time, this process's CPU (user, system) and the target's CPU."""

    def __init__(self, target_pids: list[int]) -> None:
        self.pids = target_pids
        self.wall = time.monotonic()
        self.times = os.times()
        self.target = sum(cpu_seconds(p) for p in target_pids)

    def done(self, messages: int) -> Measured:
        wall = time.monotonic() - self.wall
        now = os.times()
        user, system = now.user - self.times.user, now.system - self.times.system
        target = sum(cpu_seconds(p) for p in self.pids) - self.target
        per = 1e6 / max(1, messages)
        return Measured(
            (user + system) * per, system * per, messages / wall, (user + system) / wall,
            target / wall,
        )  # fmt: skip


async def steady_state(spec: JobSpec, pids: list[int], seconds: float) -> Measured:
    """Run ``spec`` (its duration ``seconds`` + 1.5) and measure its steady state: from 1 s
    after the start, over ``seconds`` (the last window before the end); ``pids``: the target's.
    """
    received = 0
    span: Span | None = None
    start = time.monotonic()
    result: list[Measured] = []

    def on_batch(batch: WindowBatch) -> None:
        nonlocal received, span
        received += batch.counters.get("received", 0)
        now = time.monotonic()
        if span is None and now >= start + 1.0:
            span, received = Span(pids), 0
        elif span is not None and not result and now >= start + 1.0 + seconds:
            result.append(span.done(received))

    share = Share(count=spec.num_clients, total=spec.num_clients, rate=spec.rate)
    await create_engine(spec, share, on_batch=on_batch).run()
    return result[0]


async def hold(spec: JobSpec, settle: float = 0.0) -> tuple[float, int, EngineResult]:
    """Run ``spec``'s engine in this process until its clients are connected (or
    CONNECT_WAIT passed), then ``settle`` seconds more; then stop it.

    Returns the RSS growth per connected client in bytes, how many were
    connected, and the engine's result.
    """
    n = spec.num_clients
    before = rss_bytes()
    engine = create_engine(spec)
    task = asyncio.create_task(engine.run())
    deadline = time.monotonic() + CONNECT_WAIT
    while engine.recorder.clients_connected < n and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.5)
    await asyncio.sleep(settle)
    connected = engine.recorder.clients_connected
    after = rss_bytes()
    engine.stop()
    result = await task
    return (after - before) / max(1, connected), connected, result

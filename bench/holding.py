"""One worker's engine holding many clients: resident memory per connected client.

Shared by the engine benchmark (idle echo connections) and the conversation
benchmark (clients in a conversation with a long think).
"""

from __future__ import annotations

import asyncio
import time

from procfs import rss_bytes

from wsload.common.spec import JobSpec
from wsload.worker.accounting import EngineResult
from wsload.worker.engines import create_engine

#: Longest wait for every client to connect.
CONNECT_WAIT = 90.0


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

"""A whole load run on one host or many: the library call behind ``wsload run``.

:func:`run_load` binds the coordinator, starts local workers (if asked),
waits for the expected ones, runs the job and returns the outcome. Ctrl-C
(SIGINT) ends the run early but still drains, collects and reports; a second
Ctrl-C interrupts at once. Everything it starts is reaped before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from common.spec import JobSpec, Mode
from coordinator.aggregate import RunAggregate
from coordinator.local import LocalWorkers
from coordinator.session import RunOutcome, Session, SessionOptions


async def run_load(
    spec: JobSpec,
    *,
    local_workers: int,
    options: SessionOptions | None = None,
    on_log: Callable[[str], None] | None = None,
    on_progress: Callable[[RunAggregate, float], str | None] | None = None,
) -> RunOutcome:
    """Run ``spec`` with ``local_workers`` spawned here plus any remote ones expected."""
    opts = options or SessionOptions(expect_workers=local_workers)
    overrides: dict[str, Any] = {}
    if on_log is not None:
        overrides["on_log"] = on_log
    if on_progress is not None:
        overrides["on_progress"] = on_progress
    opts = replace(opts, **overrides)
    session = Session(opts)
    local: LocalWorkers | None = None
    loop = asyncio.get_running_loop()
    interrupts = 0

    def on_sigint() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            opts.on_log("interrupted: stopping, draining and reporting (Ctrl-C again to quit now)")
            session.request_stop()
        else:
            raise KeyboardInterrupt  # the finally below reaps the workers without waiting

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, on_sigint)
    try:
        if local_workers:
            local = LocalWorkers(session.endpoint, local_workers)
        await session.gather(abort=local.died if local else lambda: None)
        if spec.mode is Mode.LOAD:
            outcome = await session.run(spec)
        else:
            outcome = await session.run_checks(spec, check_time_limit(spec))
        await session.dismiss()
        return outcome
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
        if local is not None:
            grace = 10.0 if interrupts < 2 else 0.0
            await asyncio.to_thread(local.close, grace)
        session.close()


def check_time_limit(spec: JobSpec) -> float:
    """How long a functional-mode job may take before the coordinator gives up on it."""
    return 30.0 + spec.connect_timeout + 20 * spec.reply_timeout + spec.event_wait


__all__ = ["check_time_limit", "run_load"]

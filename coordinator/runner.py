"""A whole load run on one host or many: the library call behind ``wsload run``.

:func:`run_session` binds the coordinator, starts local workers (if asked),
waits for the expected ones, runs the job and returns the outcome.

SIGINT (Ctrl-C) and SIGTERM (what CI's ``timeout``, ``docker stop`` and
Kubernetes send) end the run the same way: no new message goes out, the
workers drain and report, and the outcome is marked interrupted (with the
signal's name) so the caller still prints and writes every output. A second
signal of either kind quits at once: :class:`Interrupted` is raised and the
local workers are killed without waiting. Everything it starts is reaped
before it returns, on every path.

Local workers talk to the coordinator over loopback TCP, which any local
user can reach: so the session gets a CURVE key pair made for this run
(:func:`wsload.common.curve.ephemeral`) and admits only the local workers' key,
which they read from an inherited pipe. A stray process can neither take a
slot nor read the job (its headers may carry ``Authorization``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from wsload.common.curve import CurveKeys, ephemeral
from wsload.common.spec import JobSpec, Mode
from wsload.coordinator.aggregate import RunAggregate
from wsload.coordinator.local import LocalWorkers
from wsload.coordinator.session import RunOutcome, Session, SessionOptions

#: The signals that end a run gracefully (the first) or at once (the second).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Seconds local workers get to leave after the session's ``bye``.
LEAVE_GRACE = 10.0


class Interrupted(KeyboardInterrupt):
    """The run was cut short before it could report: a second signal, or one while gathering.

    ``exit_code`` follows the shell's convention, 128 + the signal number:
    130 for SIGINT, 143 for SIGTERM.
    """

    def __init__(self, signum: int, reason: str) -> None:
        super().__init__(reason)
        self.signum = signum
        self.reason = reason

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


async def run_session(
    spec: JobSpec,
    *,
    local_workers: int,
    options: SessionOptions | None = None,
    on_log: Callable[[str], None] | None = None,
    on_progress: Callable[[RunAggregate, float], str | None] | None = None,
) -> RunOutcome:
    """Run ``spec`` with ``local_workers`` spawned here plus any remote ones expected."""
    opts = options or SessionOptions(expect_workers=local_workers)
    local: LocalWorkers | None = None
    overrides: dict[str, Any] = {"process_exits": lambda: local.exits() if local else {}}
    local_keys: CurveKeys | None = None
    if local_workers:
        overrides["curve"], local_keys = ephemeral(opts.curve)
    if on_log is not None:
        overrides["on_log"] = on_log
    if on_progress is not None:
        overrides["on_progress"] = on_progress
    opts = replace(opts, **overrides)
    session = Session(opts)
    loop = asyncio.get_running_loop()
    received: list[int] = []  # the stop signals, in order

    def on_signal(signum: int) -> None:
        received.append(signum)
        name = signal_name(signum)
        if len(received) == 1:
            opts.on_log(f"{name}: stopping, draining and reporting (send it again to quit at once)")
            session.request_stop(name)
        else:
            # Out of the event loop at once; the finally below kills the workers.
            raise Interrupted(signum, f"{name} again: quit without a report")

    installed = []
    for signum in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
    dismissed = False
    try:
        if local_workers:
            local = LocalWorkers(session.endpoint, local_workers, keys=local_keys)
        await session.gather(abort=local.died if local else lambda: None)
        if received:
            raise Interrupted(
                received[0], f"interrupted while waiting for workers: {session.joined()}"
            )
        if spec.mode is Mode.LOAD:
            outcome = await session.run(spec)
        else:
            outcome = await session.run_checks(spec, check_time_limit(spec))
        await session.dismiss()
        dismissed = True
        return outcome
    finally:
        for signum in installed:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)
        if not dismissed:
            session.abandon("the coordinator quit without a report")
        if local is not None:
            # Told ``bye``, they leave by themselves; on any other path (an error,
            # a second signal) nobody waits for their report: killed at once.
            grace = LEAVE_GRACE if dismissed else 0.0
            # Shielded: a cancelled run (second signal) must still wait for the reaping.
            await _shielded(asyncio.to_thread(local.close, grace))
        session.close()
        # The ZAP handler's task ends on the loop's next turn. Until then it still
        # watches its socket's descriptor number, which the next session's ZAP socket
        # in this same loop may reuse: a second run_load would never hear its workers.
        await asyncio.sleep(0)


async def _shielded(work: Any) -> None:
    """Await ``work`` to the end even when the caller is being cancelled."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


def check_time_limit(spec: JobSpec) -> float:
    """How long a functional-mode job may take before the coordinator gives up on it."""
    return 30.0 + spec.connect_timeout + 20 * spec.reply_timeout + spec.event_wait


__all__ = ["STOP_SIGNALS", "Interrupted", "check_time_limit", "run_session", "signal_name"]

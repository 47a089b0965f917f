"""Local worker processes for single-host runs: started, watched, always reaped.

The coordinator starts them as ``python -m worker --once`` so they exit when
the session ends; :meth:`LocalWorkers.close` terminates (then kills) any that
remain, so a run never leaves a process behind.

Each worker runs in a process group of its own: a Ctrl-C on the terminal, or
the SIGTERM that ``timeout`` sends to its whole group, reaches only the
coordinator, which then stops the workers with a ``stop`` message so they
drain and report instead of dying with their figures. If the coordinator
itself dies, each worker stops its load after 5 s of silence and exits.

With ``keys`` (the run's ephemeral CURVE pair, :func:`wsload.common.curve.ephemeral`)
each worker reads its keys from a pipe it inherits (``--keys-fd``): the
secret is never on a command line, which any local user can read in
``/proc/PID/cmdline``, nor in the environment or a file. The pipe is written
and closed before the worker starts (a few hundred bytes fit in its buffer)
and no other child inherits it (``pass_fds``; descriptors are not
inheritable by default).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from wsload.common.curve import CurveKeys, keys_pipe

#: Seconds a terminated worker gets before it is killed.
TERM_WAIT = 5.0


class LocalWorkers:
    """``count`` worker processes connected to ``endpoint``."""

    def __init__(
        self,
        endpoint: str,
        count: int,
        *,
        prefix: str = "local",
        keys: CurveKeys | None = None,
    ) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        tag = f"{prefix}-{os.getpid()}"
        try:
            for i in range(count):
                worker_id = f"{tag}-{i}"
                cmd = [sys.executable, "-P", "-m", "wsload.worker", "--connect", endpoint, "--once"]
                cmd += ["--id", worker_id, "--hello-timeout", "30"]
                self.procs[worker_id] = _spawn(cmd, keys)
        except BaseException:
            self.close(0.0)
            raise

    def died(self) -> str | None:
        """Why the run cannot gather its workers, if a process already exited."""
        for p in self.procs.values():
            if p.poll() is not None:
                return f"local worker (pid {p.pid}) exited with code {p.returncode} before joining"
        return None

    def exits(self) -> dict[str, str]:
        """Workers whose process has exited, by worker id, with how it ended.

        A worker whose process is gone is certainly not loading any more, so
        its clients can be handed on at once (a remote worker's silence could
        be a cut network, so there the coordinator waits out its dead-man stop).
        """
        out = {}
        for worker_id, p in self.procs.items():
            code = p.poll()
            if code is not None:
                out[worker_id] = f"process {p.pid} exited with code {code}"
        return out

    def close(self, grace: float = 10.0) -> None:
        """Wait up to ``grace`` s for the workers to leave; terminate, then kill, the rest.

        With no grace (a second Ctrl-C), the workers are killed at once.
        """
        deadline = time.monotonic() + grace
        for p in self.procs.values():
            if grace <= 0:
                if p.poll() is None:
                    p.kill()
                continue
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=TERM_WAIT)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _spawn(cmd: list[str], keys: CurveKeys | None) -> subprocess.Popen[bytes]:
    """Start one worker; with ``keys``, handed over through a pipe of its own."""
    if keys is None:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, process_group=0)
    with keys_pipe(keys) as fd:
        return subprocess.Popen(
            [*cmd, "--keys-fd", str(fd)], stdin=subprocess.DEVNULL, process_group=0, pass_fds=(fd,)
        )

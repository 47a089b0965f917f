"""Local worker processes for single-host runs: started, watched, always reaped.

The coordinator starts them as ``python -m worker --once`` so they exit when
the session ends; :meth:`LocalWorkers.close` terminates (then kills) any that
remain, so a run never leaves a process behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time


class LocalWorkers:
    """``count`` worker processes connected to ``endpoint``."""

    def __init__(self, endpoint: str, count: int, *, prefix: str = "local") -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        tag = f"{prefix}-{os.getpid()}"
        try:
            for i in range(count):
                cmd = [sys.executable, "-m", "worker", "--connect", endpoint, "--once"]
                cmd += ["--id", f"{tag}-{i}", "--hello-timeout", "30"]
                self.procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL))
        except BaseException:
            self.close()
            raise

    def died(self) -> str | None:
        """Why the run cannot gather its workers, if a process already exited."""
        for p in self.procs:
            if p.poll() is not None:
                return f"local worker (pid {p.pid}) exited with code {p.returncode} before joining"
        return None

    def close(self, grace: float = 10.0) -> None:
        """Wait up to ``grace`` s for the workers to leave; terminate, then kill, the rest."""
        deadline = time.monotonic() + grace
        for p in self.procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

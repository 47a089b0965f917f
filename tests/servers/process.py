"""The shell the test servers here share: start ``python -m MODULE``, read a line, stop it.

Each server prints one readiness line on stdout when it listens (``ready PORT`` or the
like); :func:`start_module` waits for it on a thread (a server that never prints
cannot hang the test), and :func:`stop_process` ends it however it behaves.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

_REPO = Path(__file__).resolve().parents[2]


def start_module(
    module: str, args: list[str], wait: float, stderr: IO[bytes] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m module *args`` in the repository; the process and its first line
    (empty if none came within ``wait`` seconds: the caller stops it and says why)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=_REPO,
        stdout=subprocess.PIPE,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    stdout = proc.stdout
    assert stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(wait)
    return proc, lines[0] if lines else ""


def stop_process(proc: subprocess.Popen[str] | None) -> None:
    """Terminate (kill if it must) and wait. Idempotent."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()

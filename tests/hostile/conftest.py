"""Hostile targets as processes, and ``wsload run`` against them with its workers watched.

``hostile_factory(mode)`` starts ``python -m tests.hostile.server MODE`` (a
raw-socket WebSocket server, :mod:`tests.hostile.server`), waits for the port
it prints, and stops it when the test ends; :meth:`HostileProcess.stop`
returns what it saw (connections, messages, the close codes clients sent).

:func:`run_wsload` runs ``wsload run ... --json`` to completion (bounded by a
timeout, after which the whole process group is killed) while sampling the
resident memory (``VmRSS`` in ``/proc``) of every worker process it spawned.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

WSLOAD = str(Path(sys.executable).with_name("wsload"))
ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 15.0
RSS_EVERY = 0.05


@dataclass
class HostileProcess:
    proc: subprocess.Popen[str]
    port: int

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def stop(self) -> dict[str, Any]:
        """Stop the server (SIGTERM, then SIGKILL) and return the stats it printed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        for line in reversed(out.splitlines()):
            if line.startswith("{"):
                stats: dict[str, Any] = json.loads(line)
                return stats
        return {}


HostileFactory = Callable[..., HostileProcess]


@pytest.fixture
def hostile_factory() -> Iterator[HostileFactory]:
    started: list[HostileProcess] = []

    def start(mode: str, limit: int = 65536) -> HostileProcess:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.hostile.server", mode, "--limit", str(limit)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        server = HostileProcess(proc, 0)
        started.append(server)
        line = _first_line(proc, STARTUP_TIMEOUT)
        assert line.startswith("listening on "), f"hostile server said {line!r}"
        server.port = int(line.split()[-1])
        return server

    yield start
    for server in started:
        server.stop()


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The process's first stdout line, or "" if none came within ``timeout``."""
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()))  # type: ignore[union-attr]
    reader.daemon = True
    reader.start()
    reader.join(timeout)
    return box[0].strip() if box else ""


@dataclass
class RunResult:
    returncode: int
    summary: dict[str, Any]
    stderr: str
    elapsed: float
    #: per worker pid: resident set size samples in KiB, in order
    rss: dict[int, list[int]] = field(default_factory=dict)

    def peak_rss_kib(self) -> int:
        return max((max(s) for s in self.rss.values() if s), default=0)


def run_wsload(url: str, *args: str, timeout: float = 40.0) -> RunResult:
    """``wsload run --ws-url URL ARGS --json FILE``, its workers' RSS sampled meanwhile."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "summary.json"
        err = Path(tmp) / "stderr"
        cmd = [WSLOAD, "run", "--ws-url", url, "--quiet", "--json", str(out), *args]
        started = time.monotonic()
        with err.open("w") as err_file:
            proc = subprocess.Popen(
                cmd, stdout=subprocess.DEVNULL, stderr=err_file, cwd=tmp, process_group=0
            )
            rss: dict[int, list[int]] = {}
            try:
                while proc.poll() is None:
                    if time.monotonic() - started > timeout:
                        os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait()
                        pytest.fail(f"wsload run did not end within {timeout} s: {cmd}")
                    for pid in _children(proc.pid):
                        kib = _rss_kib(pid)
                        if kib:
                            rss.setdefault(pid, []).append(kib)
                    time.sleep(RSS_EVERY)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        elapsed = time.monotonic() - started
        summary = json.loads(out.read_text()) if out.exists() else {}
        return RunResult(proc.returncode, summary, err.read_text(), elapsed, rss)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0

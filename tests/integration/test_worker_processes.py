"""``wsload worker --processes N``: a parent that stops takes its workers with it."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import WSLOAD, children, reap, wait_for
from tests.integration.test_run import free_port


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("X", "Z")


@pytest.mark.timeout(60)
def test_sigterm_to_the_parent_stops_every_worker_process() -> None:
    parent = subprocess.Popen(
        [WSLOAD, "worker", "--connect", f"tcp://127.0.0.1:{free_port()}", "--processes", "2"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for("two worker processes", lambda: len(children(parent.pid)) == 2, 30)
        workers = children(parent.pid)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=20) == 128 + signal.SIGTERM
        wait_for("the workers to be gone", lambda: all(_gone(p) for p in workers), 10)
    finally:
        reap(parent)

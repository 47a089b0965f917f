"""Run control with real processes: SIGTERM like Ctrl-C, a lost worker's clients handed on,
elastic joins, and who may take a worker's slot.

Each test starts ``wsload serve`` (the ground truth for connections and
messages), a real ``wsload run`` or ``wsload coordinator`` with real workers
over real ZeroMQ on loopback, and waits on readiness (the server's open
connections, a line on stderr), never on a fixed sleep.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from tests.accounting import assert_balanced
from tests.integration.conftest import ServerFactory, children, reap, stats, wait_for

WSLOAD = str(Path(sys.executable).with_name("wsload"))


def open_connections(api_url: str) -> int:
    return int(stats(api_url)["connections_open"])


def worker_id_of(pid: int) -> str:
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return args[args.index(b"--id") + 1].decode()


def gone(pid: int) -> bool:
    """The process no longer exists (a zombie still counts as there)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "X"


class Lines:
    """A process's stderr, read on a thread, so a test can wait for a line."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._lock:
                self.lines.append(line)

    def text(self) -> str:
        with self._lock:
            return "".join(self.lines)

    def has(self, needle: str) -> bool:
        return needle in self.text()

    def finish(self, timeout: float = 10) -> str:
        self._thread.join(timeout)
        return self.text()


def start(args: list[str]) -> tuple[subprocess.Popen[str], Lines, Lines]:
    """``wsload ARGS`` with its stdout and stderr read as they come."""
    proc = subprocess.Popen(
        [WSLOAD, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    return proc, Lines(proc.stdout), Lines(proc.stderr)


# -- SIGTERM behaves like Ctrl-C ----------------------------------------------


@pytest.mark.timeout(90)
def test_sigterm_stops_drains_reports_and_writes_every_output(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory()
    out, csv = tmp_path / "s.json", tmp_path / "s.csv"
    proc, stdout_lines, err = start(
        ["run", "--ws-url", server.ws_url, "-c", "6", "-d", "120", "--interval", "0.05",
         "-w", "2", "--json", str(out), "--csv", str(csv)]
    )  # fmt: skip
    workers: list[int] = []
    try:
        wait_for("6 connections", lambda: open_connections(server.api_url) == 6, 30)
        workers = children(proc.pid)
        assert len(workers) == 2
        wait_for("replies", lambda: stats(server.api_url)["messages_sent"] > 50, 10)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=40)
        stdout = stdout_lines.finish()
        stderr = err.finish()
        assert proc.returncode == 143, stderr
        assert time.monotonic() - signalled < 15  # drain (2 s) and report, not 120 s
        assert "SIGTERM: stopping, draining and reporting" in stderr
        assert "INTERRUPTED" in stdout
        assert "Traceback" not in stderr
        summary = json.loads(out.read_text())
        assert summary["interrupted"]
        assert summary["interrupted_by"] == "SIGTERM"
        assert_balanced(summary)
        assert summary["total_sent"] == stats(server.api_url)["messages_received"] > 0
        assert csv.read_text().count("\n") >= 2
        wait_for("the workers to be gone", lambda: all(gone(p) for p in workers), 5)
        wait_for("no connection left", lambda: open_connections(server.api_url) == 0, 5)
    finally:
        reap(proc)
        for pid in workers:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(60)
def test_a_second_signal_quits_at_once_and_reaps_the_workers(
    serve_factory: ServerFactory,
) -> None:
    server = serve_factory("--delay", "60000")  # every reply held a minute: a long drain
    proc, _, err = start(
        ["run", "--ws-url", server.ws_url, "-c", "4", "-d", "120", "-w", "2",
         "--interval", "0.05", "--drain-timeout", "60", "--reply-timeout", "60"]
    )  # fmt: skip
    workers: list[int] = []
    try:
        wait_for("4 connections", lambda: open_connections(server.api_url) == 4, 30)
        workers = children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        wait_for("the first signal handled", lambda: err.has("SIGTERM: stopping"), 10)
        assert proc.poll() is None  # draining: up to a minute for the held replies
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        stderr = err.finish()
        assert proc.returncode == 130, stderr  # 128 + the signal that quit: SIGINT
        assert time.monotonic() - started < 8
        assert "SIGINT again: quit without a report" in stderr
        assert "Traceback" not in stderr
        wait_for("the workers to be gone", lambda: all(gone(p) for p in workers), 5)
    finally:
        reap(proc)
        for pid in workers:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(60)
def test_sigterm_while_waiting_for_workers_says_how_far_it_got() -> None:
    proc, _stdout_lines, err = start(
        ["coordinator", "--bind", "tcp://127.0.0.1:*", "--expect-workers", "2",
         "--worker-wait", "60", "--ws-url", "ws://127.0.0.1:9/ws"]
    )  # fmt: skip
    try:
        wait_for("the waiting line", lambda: err.has("waiting for workers: 0 of 2 joined"), 20)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        stderr = err.finish()
        assert proc.returncode == 143, stderr
        assert "interrupted while waiting for workers: 0 of 2 joined" in stderr
        assert "Traceback" not in stderr
    finally:
        reap(proc)


# -- a lost worker's clients are handed on ------------------------------------


def live_clients(stderr: str) -> list[int]:
    """The live client counts of the progress lines (``clients 8 (+4 on lost workers)``)."""
    return [int(m) for m in re.findall(r"\] clients (\d+)", stderr)]


@pytest.mark.timeout(120)
def test_a_killed_local_workers_clients_are_handed_to_the_survivor(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory()
    out = tmp_path / "s.json"
    proc, stdout_lines, err = start(
        ["run", "--ws-url", server.ws_url, "-c", "8", "-d", "10", "--interval", "0.05",
         "-w", "2", "--json", str(out)]
    )  # fmt: skip
    workers: list[int] = []
    try:
        wait_for("8 connections", lambda: open_connections(server.api_url) == 8, 30)
        workers = children(proc.pid)
        victim = workers[0]
        lost_id = worker_id_of(victim)
        os.kill(victim, signal.SIGKILL)
        # Its process is gone: its clients go to the survivor at once, ramped over 1 s.
        wait_for("the handover", lambda: err.has(f"clients of {lost_id}"), 10)
        wait_for("8 connections again", lambda: open_connections(server.api_url) == 8, 10)
        proc.wait(timeout=60)
        stdout = stdout_lines.finish()
        stderr = err.finish()
        assert proc.returncode == 1, stderr  # degraded: a worker was lost
        assert f"worker {lost_id} lost: process {victim} exited with code -9" in stderr
        assert lost_id in stdout  # the summary names it
        assert live_clients(stderr)[-1] == 8  # the progress line: the clients actually running
        summary = json.loads(out.read_text())
        assert summary["lost_workers"] == [lost_id]
        (survivor,) = set(summary["workers"]) - {lost_id}
        assert sum(h["clients"] for h in summary["handovers"]) == 4
        assert {h["to"] for h in summary["handovers"]} == {survivor}
        assert {h["from"] for h in summary["handovers"]} == {lost_id}
        assert f"4 clients of {lost_id} handed on to {survivor}" in stdout
        assert summary["clients_orphaned"] == 0
        assert_balanced(summary)
        # Each client has one id wherever it ran: 8 distinct connections, 4 of them twice.
        assert stats(server.api_url)["connections_opened"] == 12
    finally:
        reap(proc)
        for pid in workers:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(120)
def test_an_elastic_join_takes_a_silent_workers_clients_after_its_deadman_stop(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    """Remote workers: a silent one is handed on only once it has surely stopped itself."""
    server = serve_factory()
    out = tmp_path / "s.json"
    sock_dir = tmp_path / "zmq"
    sock_dir.mkdir()
    endpoint = f"ipc://{sock_dir}/coordinator"
    coord, stdout_lines, err = start(
        ["coordinator", "--bind", endpoint, "--expect-workers", "2", "--elastic",
         "--ws-url", server.ws_url, "-c", "6", "-d", "25", "--interval", "0.05",
         "--json", str(out)]
    )  # fmt: skip
    procs = [
        subprocess.Popen([WSLOAD, "worker", "--connect", endpoint, "--once", "--id", f"w{i}"])
        for i in range(2)
    ]
    try:
        wait_for("6 connections", lambda: open_connections(server.api_url) == 6, 30)
        procs.append(
            subprocess.Popen([WSLOAD, "worker", "--connect", endpoint, "--once", "--id", "w2"])
        )
        wait_for("w2 joined", lambda: err.has("worker w2 joined mid-run"), 15)
        assert open_connections(server.api_url) == 6  # a spare: no client is invented for it
        procs[0].send_signal(signal.SIGKILL)
        wait_for("w0 lost", lambda: err.has("worker w0 lost: silent for"), 10)
        lost_at = time.monotonic()
        wait_for("the handover", lambda: err.has("w2 takes 3 clients of w0"), 10)
        assert time.monotonic() - lost_at >= 2.5  # waited out w0's dead-man stop
        wait_for("6 connections again", lambda: open_connections(server.api_url) == 6, 10)
        coord.wait(timeout=60)
        stdout = stdout_lines.finish()
        stderr = err.finish()
        assert coord.returncode == 1, stderr
        assert "lost workers: w0" in stdout
        summary = json.loads(out.read_text())
        assert summary["lost_workers"] == ["w0"]
        assert [h["to"] for h in summary["handovers"]] == ["w2"]  # the spare, not the survivor
        assert [h["from"] for h in summary["handovers"]] == ["w0"]
        assert summary["workers"]["w2"]["sent"] > 0
        assert_balanced(summary)
        for p in procs[1:]:
            assert p.wait(timeout=10) == 0
    finally:
        reap(coord, *procs)


@pytest.mark.timeout(60)
def test_a_run_that_cannot_start_kills_its_workers_at_once(serve_factory: ServerFactory) -> None:
    """Every path of a run stops the workers it started: here the job does not fit them."""
    server = serve_factory()
    clients = str(2 * 1_000_000)  # beyond what two workers' descriptor limits can hold
    proc, _, err = start(["run", "--ws-url", server.ws_url, "-c", clients, "-w", "2", "-d", "5"])
    workers: list[int] = []
    try:
        wait_for("two workers", lambda: len(children(proc.pid)) == 2 or proc.poll() is not None, 20)
        workers = children(proc.pid) if proc.poll() is None else []
        proc.wait(timeout=30)
        stderr = err.finish()
        assert proc.returncode == 2, stderr
        assert "do not fit" in stderr
        assert "Traceback" not in stderr
        wait_for("the workers to be gone", lambda: all(gone(p) for p in workers), 3)
        assert stats(server.api_url)["connections_opened"] == 0
    finally:
        reap(proc)
        for pid in workers:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)

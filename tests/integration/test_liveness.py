"""Liveness: saturated workers are not lost, dead coordinators stop every load, workers last.

The first test runs a worker agent in this process on its own thread and
loop, so it can saturate that loop with pure-Python work (holding the GIL, as
a busy client population does) while a real coordinator process watches it.
The others run real ``wsload`` processes (or, for a starved loop,
:mod:`tests.integration.starved_worker`) on loopback.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgpack
import pytest
import uvloop
import zmq

from tests.accounting import assert_balanced
from tests.integration.conftest import WSLOAD, RunningServer, ServerFactory, reap, stats, wait_for
from tests.integration.test_run import free_port
from wsload.common.protocol import PROTOCOL_VERSION
from wsload.worker.agent import DEADMAN_GRACE, Agent, AgentOptions


def spin(seconds: float) -> None:
    """Hold the event loop (and, between switches, the GIL) like a saturated worker."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1


def test_saturated_worker_is_not_declared_lost(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    out = tmp_path / "s.json"
    coord = subprocess.Popen(
        [WSLOAD, "coordinator", "--bind", endpoint, "--expect-workers", "1",
         "--ws-url", server.ws_url, "--num-clients", "5", "--duration", "9",
         "--interval", "0.1", "--reply-timeout", "30", "--json", str(out), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    loop = uvloop.new_event_loop()
    agent = Agent(AgentOptions(endpoint=endpoint, worker_id="busy", once=True))
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(loop.run_until_complete(agent.serve())))
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while stats(server.api_url)["connections_open"] < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        loop.call_soon_threadsafe(spin, 5.0)
        _, stderr = coord.communicate(timeout=60)
        assert coord.returncode == 0, stderr
        summary = json.loads(out.read_text())
        assert summary["lost_workers"] == []
        assert not summary["workers"]["busy"]["lost"]
        assert summary["balanced"]
        # Messages due while the loop was held count from when they were due.
        assert summary["latency_percentiles"]["max"] >= 4.0
        assert summary["total_sent"] == stats(server.api_url)["messages_received"]
        thread.join(timeout=20)
        assert codes == [0]
    finally:
        if coord.poll() is None:
            coord.kill()
        coord.wait()
        thread.join(timeout=20)
        loop.close()


def _patient_stats(api_url: str) -> dict[str, Any]:
    """The server's counters, waiting up to 30 s: a saturated server answers late."""
    with urllib.request.urlopen(f"{api_url}/stats", timeout=30) as response:
        data: dict[str, Any] = json.loads(response.read())
    return data


def _open_now(server: RunningServer) -> int | None:
    """Connections the server counts open, or None while it is too busy to answer."""
    try:
        return int(_patient_stats(server.api_url)["connections_open"])
    except OSError:  # a timeout or a refused request: not an answer yet
        return None


def _reset(api_url: str) -> None:
    request = urllib.request.Request(f"{api_url}/stats/reset", method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()


RUNS = 3  # issue 12: one long-lived worker serves three coordinators in a row


@pytest.mark.timeout(150)
def test_one_worker_serves_runs_in_a_row(serve_factory: ServerFactory, tmp_path: Path) -> None:
    """Without --once a worker outlives its coordinators (the Kubernetes Deployment needs it)."""
    server = serve_factory()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    with tempfile.TemporaryFile() as worker_err:
        worker = subprocess.Popen(
            [WSLOAD, "worker", "--connect", endpoint, "--id", "fleet-1"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=worker_err,
        )  # fmt: skip
        try:
            # That waiting for the next coordinator, however long, is no silence is
            # tests/unit/test_worker_conversation.py (and test_deadman.py), on a fake clock.
            for run in range(RUNS):
                _reset(server.api_url)
                out = tmp_path / f"run{run}.json"
                coord = subprocess.run(
                    [WSLOAD, "coordinator", "--bind", endpoint, "--expect-workers", "1",
                     "--worker-wait", "30", "--ws-url", server.ws_url, "-c", "3", "-d", "1",
                     "--interval", "0.05", "--json", str(out), "--quiet"],
                    capture_output=True, text=True, timeout=60, check=False,
                )  # fmt: skip
                assert coord.returncode == 0, f"run {run}: {coord.stderr}"
                summary = json.loads(out.read_text())
                assert list(summary["workers"]) == ["fleet-1"]
                assert_balanced(summary)
                # The server counts what it received until our connections closed.
                wait_for("connections closed", lambda: not stats(server.api_url)[
                    "connections_open"], 10)  # fmt: skip
                assert summary["total_sent"] == stats(server.api_url)["messages_received"] > 0
                assert worker.poll() is None, f"the worker exited after run {run}"

            def said() -> str:
                worker_err.seek(0)
                return worker_err.read().decode()

            # Said as the worker goes back to waiting, just after its answer to the bye.
            wait_for("the last run's end said", lambda: said().count("run over;") == RUNS, 10)
            err = said()
            assert err.count("run over; waiting for the next coordinator") == RUNS
            assert "went silent" not in err
            assert "Traceback" not in err
        finally:
            reap(worker)


def _coordinator(endpoint: str, url: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [WSLOAD, "coordinator", "--bind", endpoint, "--expect-workers", "1",
         "--ws-url", url, "--duration", "120", "--quiet", *extra],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.timeout(90)
def test_a_starved_worker_exits_when_its_coordinator_dies(serve_factory: ServerFactory) -> None:
    """The loop never runs again: the heartbeat thread ends the load by exiting the process."""
    server = serve_factory()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    silence, drain, close = 2.0, 0.5, 1.0
    coord = _coordinator(endpoint, server.ws_url, "-c", "20", "--interval", "0.05",
                         "--drain-timeout", str(drain),
                         "--connect-timeout", str(close))  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.starved_worker", endpoint, str(silence)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for("20 connections", lambda: stats(server.api_url)["connections_open"] == 20, 30)
        worker.send_signal(signal.SIGUSR1)
        assert worker.stdout is not None
        assert worker.stdout.readline() == b"starving\n"
        coord.send_signal(signal.SIGKILL)
        coord.wait()
        killed = time.monotonic()
        bound = silence + drain + close + DEADMAN_GRACE + 5.0  # slack for a loaded machine
        _, err = worker.communicate(timeout=bound)
        assert worker.returncode == 3, err
        assert b"event loop starved" in err
        assert len(err.strip().splitlines()) == 1, err
        wait_for("connections closed", lambda: not stats(server.api_url)["connections_open"],
                  bound - (time.monotonic() - killed))  # fmt: skip
    finally:
        reap(coord, worker)


@pytest.mark.timeout(90)
def test_an_overloaded_worker_stops_when_its_coordinator_dies(
    serve_factory: ServerFactory,
) -> None:
    """Issue 13's case: a --rate far above what the worker can send, coordinator SIGKILLed."""
    server = serve_factory()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    # 10 clients: every one connects before the first ones' flood saturates the (Python)
    # server so far that later handshakes miss the connect timeout (with 50 they did, and
    # the server's /stats stopped answering: the test waited on the target, not the worker)
    coord = _coordinator(endpoint, server.ws_url, "-c", "10", "--rate", "1000000")
    worker = subprocess.Popen(
        [WSLOAD, "worker", "--connect", endpoint, "--once"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for("10 connections", lambda: _open_now(server) == 10, 30)
        wait_for(
            "load flowing", lambda: _patient_stats(server.api_url)["messages_received"] > 5000, 30
        )
        coord.send_signal(signal.SIGKILL)
        coord.wait()
        killed = time.monotonic()
        bound = 5.0 + 2.0 + DEADMAN_GRACE + 5.0  # silence, drain, grace, slack (closes answered)
        # The worker ends within the dead-man bound, and its exit leaves no connection of its
        # own open; the server, saturated by what it still has buffered, may see it later.
        _, err = worker.communicate(timeout=bound)
        assert time.monotonic() - killed < bound
        assert worker.returncode in (0, 3), err  # stopped by its loop, or by the thread
        assert b"Traceback" not in err
        wait_for("the server to see every connection closed", lambda: _open_now(server) == 0, 45)
    finally:
        reap(coord, worker)


@pytest.mark.timeout(120)
def test_a_long_lived_worker_refused_by_a_full_coordinator_joins_the_next(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    first = subprocess.Popen(
        [WSLOAD, "coordinator", "--bind", endpoint, "--expect-workers", "1",
         "--ws-url", server.ws_url, "-c", "2", "-d", "60", "--interval", "0.1", "--quiet"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    taken = subprocess.Popen(
        [WSLOAD, "worker", "--connect", endpoint, "--once", "--id", "taken"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    with tempfile.TemporaryFile() as spare_err:
        wait_for("taken's clients", lambda: stats(server.api_url)["connections_open"] == 2, 30)
        spare = subprocess.Popen(
            [WSLOAD, "worker", "--connect", endpoint, "--id", "spare"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=spare_err,
        )  # fmt: skip
        refusal = "refused by coordinator: the coordinator has all the workers it needs"

        def refused() -> bool:
            spare_err.seek(0)
            return refusal in spare_err.read().decode()

        try:
            wait_for("the spare refused", refused, 30)
            first.send_signal(signal.SIGINT)  # ends the run: stop, drain, report, bye
            assert first.wait(timeout=30) == 130
            assert taken.wait(timeout=10) == 0
            out = tmp_path / "second.json"
            second = subprocess.run(
                [WSLOAD, "coordinator", "--bind", endpoint, "--expect-workers", "1",
                 "--worker-wait", "30", "--ws-url", server.ws_url, "-c", "2", "-d", "1",
                 "--interval", "0.1", "--json", str(out), "--quiet"],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert second.returncode == 0, second.stderr
            assert list(json.loads(out.read_text())["workers"]) == ["spare"]
            assert spare.poll() is None
            spare_err.seek(0)
            err = spare_err.read().decode()
            assert err.count(refusal) == 1, err  # said once, however often it retried
        finally:
            reap(first, taken, spare)


def test_a_long_lived_worker_leaves_a_coordinator_of_another_protocol() -> None:
    """Retrying cannot help there: exit 2 naming it, even without --once."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    worker = subprocess.Popen(
        [WSLOAD, "worker", "--connect", f"tcp://127.0.0.1:{port}", "--id", "w"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        identity = b""
        while identity != b"w":  # the heartbeat socket (w#hb) may speak first
            assert router.poll(30_000), "no hello"
            identity, _ = router.recv_multipart()
        future = {"v": PROTOCOL_VERSION + 1, "kind": "refuse", "reason": "upgrade"}
        router.send_multipart([identity, msgpack.packb(future)])
        _, err = worker.communicate(timeout=20)
        assert worker.returncode == 2
        assert b"the coordinator speaks another protocol" in err
    finally:
        reap(worker)
        router.close()
        ctx.term()

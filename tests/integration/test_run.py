"""`wsload run` and the coordinator with real worker processes over real ZeroMQ."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest
import zmq

from tests.accounting import assert_balanced
from tests.integration.conftest import ServerFactory, reap, stats, wait_for
from wsload.common.protocol import PROTOCOL_VERSION, Hello, Samples, encode

WSLOAD = str(Path(sys.executable).with_name("wsload"))


def wsload(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WSLOAD, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def wait_for_load(api_url: str, connections: int, messages: int = 40, timeout: float = 30) -> None:
    """Readiness: ``connections`` clients connected and ``messages`` answered by the server.

    Then one more second, so every worker has reported several windows (one
    each 250 ms) before a test disturbs it.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = stats(api_url)
        if s["connections_open"] >= connections and s["messages_received"] >= messages:
            time.sleep(1.0)
            return
        time.sleep(0.1)
    raise AssertionError(f"the load did not start within {timeout:g} s: {stats(api_url)}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("workers", [1, 3])
def test_run_totals_match_the_server(
    serve_factory: ServerFactory, tmp_path: Path, workers: int
) -> None:
    server = serve_factory()
    out = tmp_path / "summary.json"
    proc = wsload(
        "run", "--ws-url", server.ws_url, "--num-clients", "10", "--duration", "2",
        "--interval", "0.05", "--workers", str(workers), "--json", str(out), "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(out.read_text())
    s = stats(server.api_url)
    assert summary["total_sent"] == s["messages_received"] > 0
    assert summary["total_received"] == s["messages_sent"]
    assert_balanced(summary)
    assert len(summary["workers"]) == workers
    assert sum(w["sent"] for w in summary["workers"].values()) == summary["total_sent"]
    assert all(w["consistent"] for w in summary["workers"].values())
    assert s["connections_opened"] == 10
    assert s["connections_open"] == 0
    assert "Success rate:" in proc.stdout
    assert summary["engine"] == "picows"
    assert "(client engine: picows)" in proc.stdout


def test_source_addresses_spread_the_connections(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    proc = wsload(
        "run", "--ws-url", server.ws_url, "-c", "7", "-d", "1", "--interval", "0.1",
        "--workers", "2", "--source-address", "127.0.0.2,127.0.0.3",
        "--source-address", "127.0.0.4", "--quiet",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    by_address = stats(server.api_url)["connections_by_address"]
    assert by_address == {"127.0.0.2": 3, "127.0.0.3": 2, "127.0.0.4": 2}


def test_environment_variables_of_the_original_framework(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    env = dict(os.environ, WS_URL=server.ws_url, NUM_CLIENTS="3", TEST_DURATION="1")
    env["MESSAGE_INTERVAL"] = "0.1"
    proc = subprocess.run(
        [WSLOAD, "run", "--workers", "1", "--quiet"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert stats(server.api_url)["connections_opened"] == 3


def test_demo_runs_without_a_target(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    proc = wsload(
        "run", "--demo", "--duration", "1", "--workers", "1", "--json", str(out), "--quiet"
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(out.read_text())
    assert summary["total_received"] > 0
    assert_balanced(summary)
    assert "the reference server itself counted" in proc.stdout


def test_killed_worker_is_reported_lost(serve_factory: ServerFactory, tmp_path: Path) -> None:
    server = serve_factory()
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    out = tmp_path / "s.json"
    coord = subprocess.Popen(
        [WSLOAD, "coordinator", "--bind", endpoint, "--expect-workers", "2",
         "--ws-url", server.ws_url, "--num-clients", "4", "--duration", "8",
         "--interval", "0.05", "--json", str(out), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    workers = [
        subprocess.Popen([WSLOAD, "worker", "--connect", endpoint, "--once", "--id", f"w{i}"])
        for i in range(2)
    ]
    try:
        wait_for_load(server.api_url, 4)
        workers[0].send_signal(signal.SIGKILL)
        stdout, stderr = coord.communicate(timeout=40)
        assert coord.returncode == 1, stderr
        summary = json.loads(out.read_text())
        assert summary["lost_workers"] == ["w0"]
        assert summary["workers"]["w0"]["status"] == "lost"
        assert summary["workers"]["w1"]["status"] == "ok"
        assert summary["workers"]["w1"]["consistent"]
        assert_balanced(summary)  # w0's messages in flight when it died count as lost
        assert summary["verdict"]["status"] == "degraded"
        assert summary["workers"]["w0"]["sent"] > 0  # its last counters stay in the totals
        assert "lost workers: w0" in stdout.splitlines()[0]  # the first line says why
    finally:
        reap(coord, *workers)


def test_workers_stop_when_the_coordinator_dies(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    coord = subprocess.Popen(
        [WSLOAD, "coordinator", "--bind", endpoint, "--expect-workers", "1",
         "--ws-url", server.ws_url, "--num-clients", "5", "--duration", "60",
         "--interval", "0.1", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    worker = subprocess.Popen([WSLOAD, "worker", "--connect", endpoint, "--once"])
    try:
        deadline = time.monotonic() + 30  # two processes starting on a loaded 2-core box
        while stats(server.api_url)["connections_open"] < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stats(server.api_url)["connections_open"] == 5
        coord.send_signal(signal.SIGKILL)
        coord.wait()
        killed = time.monotonic()
        while stats(server.api_url)["connections_open"] and time.monotonic() - killed < 10:
            time.sleep(0.1)
        assert stats(server.api_url)["connections_open"] == 0
        assert time.monotonic() - killed < 5 + 2.5  # 5 s of silence, then drain and close
        assert worker.wait(timeout=10) == 0
    finally:
        reap(coord, worker)


@pytest.mark.timeout(60)
def test_once_workers_leave_on_the_coordinators_bye(serve_factory: ServerFactory) -> None:
    """Told ``bye``, a worker leaves at once, not after its 5 s silence timeout."""
    server = serve_factory()
    for _ in range(3):  # a lost bye was intermittent (about one run in 20)
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        coord = subprocess.Popen(
            [WSLOAD, "coordinator", "--bind", endpoint, "--expect-workers", "1",
             "--ws-url", server.ws_url, "-c", "2", "-d", "0.5", "--quiet"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        worker = subprocess.Popen([WSLOAD, "worker", "--connect", endpoint, "--once"])
        try:
            assert coord.wait(timeout=30) == 0
            assert worker.wait(timeout=2.5) == 0
        finally:
            reap(coord, worker)


def test_garbage_on_the_port_does_not_disturb_a_run(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory()
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    out = tmp_path / "s.json"
    coord = subprocess.Popen(
        [WSLOAD, "coordinator", "--bind", endpoint, "--expect-workers", "1",
         "--ws-url", server.ws_url, "--num-clients", "4", "--duration", "6",
         "--interval", "0.05", "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    worker = subprocess.Popen([WSLOAD, "worker", "--connect", endpoint, "--once"])
    ctx = zmq.Context()
    try:
        wait_for_load(server.api_url, 4, messages=10)  # the coordinator is bound and running
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(os.urandom(4096))  # not even ZMTP
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(endpoint)
        for junk in (b"\xc1", msgpack.packb({"v": PROTOCOL_VERSION, "kind": "samples"}),
                     msgpack.packb([1, 2, 3]), b"x" * 100_000):  # fmt: skip
            dealer.send(junk)
        dealer.close()
        for i in range(100):  # a flood of hellos, then a window from nobody we know
            intruder = ctx.socket(zmq.DEALER)
            intruder.setsockopt(zmq.LINGER, 2000)  # deliver before closing
            intruder.setsockopt(zmq.ROUTING_ID, f"intruder-{i}".encode())
            intruder.connect(endpoint)
            intruder.send(encode(Hello(f"intruder-{i}", "h", 1, "0", 1, 1024)))
            intruder.send(encode(Samples("job", 0, 0.0, 1.0, {"sent": 10**9, "received": 10**9})))
            intruder.close()
        _, stderr = coord.communicate(timeout=40)
        assert coord.returncode == 0, stderr
        summary = json.loads(out.read_text())
        assert summary["total_sent"] == stats(server.api_url)["messages_received"] > 0
        assert_balanced(summary)
        assert summary["total_sent"] < 10**9  # the intruders' window was not merged
        assert len(summary["workers"]) == 1
        assert summary["bad_input"]["unknown"] >= 100  # every one counted...
        assert stderr.count("unknown worker") == 1  # ...but logged once
    finally:
        ctx.term()
        reap(coord, worker)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--ws-url", "http://x/ws"], "must start with ws:// or wss://"),
        (["run", "--num-clients", "0"], "num_clients must be at least 1"),
        (["run", "--header", "nocolon"], "is not NAME: VALUE"),
        (["coordinator", "--bind", "tcp://0.0.0.0:5999", "--expect-workers", "1"],
         "refusing to bind tcp://0.0.0.0:5999 without keys"),
        (["worker", "--connect", "http://x"], "expected tcp://HOST:PORT"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_exit_2(args: list[str], needle: str) -> None:
    proc = wsload(*args, timeout=30)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.asyncio
async def test_load_tester_api_of_the_original_framework(serve_factory: ServerFactory) -> None:
    from wsload.coordinator.load_tester import WebSocketLoadTester

    server = serve_factory()
    tester = WebSocketLoadTester(server.ws_url, 4, 0.1, workers=2)
    results = await tester.run_test(1.5)
    s = stats(server.api_url)
    assert results["total_sent"] == s["messages_received"] > 0
    assert results["total_received"] == s["messages_sent"]
    assert results["success_rate"] == pytest.approx(100.0)
    assert 0 < results["avg_latency"] < 1.0  # seconds, as before
    assert set(results["latency_percentiles"]) == {"p50", "p90", "p95", "p99", "p99.9", "max"}
    assert len(results["workers"]) == 2
    assert results["passed"] is True
    assert results["thresholds"] == []
    assert_balanced(results)


def test_abort_on_fail_stops_a_doomed_run(serve_factory: ServerFactory, tmp_path: Path) -> None:
    server = serve_factory("--drop-rate", "0.5", "--seed", "5")
    out = tmp_path / "s.json"
    started = time.monotonic()
    proc = wsload(
        "run", "--ws-url", server.ws_url, "-c", "4", "-d", "30", "--interval", "0.05",
        "--reply-timeout", "0.3", "-w", "1", "--quiet", "--json", str(out),
        "--threshold", "timeouts==0", "--abort-on-fail",
    )  # fmt: skip
    assert proc.returncode == 1
    assert time.monotonic() - started < 20  # far short of the 30 s asked for
    summary = json.loads(out.read_text())
    assert summary["aborted"].startswith("threshold timeouts==0 failed")
    assert_balanced(summary)
    assert summary["schema_version"] == 1
    assert [row["second"] for row in summary["time_series"]][:2] == [0, 1]
    (verdict,) = summary["thresholds"]
    assert not verdict["passed"]


def test_ctrl_c_drains_and_reports_partial_run(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    proc = subprocess.Popen(
        [WSLOAD, "run", "--demo", "-c", "5", "-d", "60", "--interval", "0.05", "-w", "1",
         "--quiet", "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(4)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 130, stderr
        assert time.monotonic() - started < 15
        assert "INTERRUPTED" in stdout
        summary = json.loads(out.read_text())
        assert summary["interrupted"]
        assert_balanced(summary)
        assert 0 < summary["elapsed"] < 30
        assert summary["total_received"] > 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_second_ctrl_c_quits_at_once(serve_factory: ServerFactory) -> None:
    """The first Ctrl-C starts a drain that would wait 30 s (the target holds its
    replies 20 s); the second quits at once, with the same exit code."""
    server = serve_factory("--delay", "20000")
    proc = subprocess.Popen(
        [WSLOAD, "run", "--ws-url", server.ws_url, "-c", "5", "-d", "60", "-w", "1",
         "--quiet", "--drain-timeout", "30", "--reply-timeout", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # Messages in flight: the run is under way and its drain will have to wait.
        wait_for("a message in flight", lambda: stats(server.api_url)["messages_received"] > 0, 30)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)  # two signals at once would be delivered as one
        assert proc.poll() is None, "the first Ctrl-C must drain, not quit"
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 130, stderr
        assert time.monotonic() - started < 8
        assert "Traceback" not in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()

"""Faults survived with exact accounting: the target restarts, a worker freezes."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from tests.accounting import assert_balanced
from tests.integration.conftest import WSLOAD, ServerFactory, stats
from tests.integration.test_run import free_port, wait_for_load


def test_target_restarted_mid_run(tmp_path: Path) -> None:
    port = free_port()
    first = subprocess.Popen(
        [WSLOAD, "serve", "--port", str(port)], stdout=subprocess.PIPE, text=True
    )
    assert first.stdout is not None
    assert "listening" in first.stdout.readline()
    out = tmp_path / "s.json"
    run = subprocess.Popen(
        [WSLOAD, "run", "--ws-url", f"ws://127.0.0.1:{port}/ws", "-c", "5", "-d", "10",
         "--interval", "0.05", "-w", "1", "--reply-timeout", "1", "--quiet", "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    second: subprocess.Popen[str] | None = None
    try:
        wait_for_load(f"http://127.0.0.1:{port}/api", 5)
        first.kill()  # the target dies without closing anything
        first.wait()
        time.sleep(1.5)
        second = subprocess.Popen(
            [WSLOAD, "serve", "--port", str(port)], stdout=subprocess.PIPE, text=True
        )
        assert second.stdout is not None
        assert "listening" in second.stdout.readline()
        _, stderr = run.communicate(timeout=60)
        assert run.returncode == 0, stderr
        summary = json.loads(out.read_text())
        c = summary["counters"]
        assert_balanced(summary)
        assert c["disconnects"] >= 5  # every client saw its connection die
        assert c["reconnects"] >= 5  # and came back to the new server
        assert summary["errors"].get("closed_1006", 0) >= 5
        assert summary["errors"].get("refused", 0) >= 1  # tried while nothing listened
        after = stats(f"http://127.0.0.1:{port}/api")
        assert after["connections_opened"] == c["reconnects"]
        assert 0 < after["messages_received"] < summary["total_sent"]
    finally:
        for p in (first, second, run):
            if p is not None and p.poll() is None:
                p.kill()
            if p is not None:
                p.wait()


def test_frozen_worker_is_lost_and_stops_its_load_when_resumed(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    out = tmp_path / "s.json"
    coord = subprocess.Popen(
        [WSLOAD, "coordinator", "--bind", endpoint, "--expect-workers", "2",
         "--ws-url", server.ws_url, "-c", "4", "-d", "12", "--interval", "0.05",
         "--json", str(out), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    workers = [
        subprocess.Popen([WSLOAD, "worker", "--connect", endpoint, "--once", "--id", f"w{i}"])
        for i in range(2)
    ]
    try:
        wait_for_load(server.api_url, 4)
        workers[0].send_signal(signal.SIGSTOP)
        time.sleep(5)  # silent for longer than the 3 s that make a worker lost
        workers[0].send_signal(signal.SIGCONT)
        _, stderr = coord.communicate(timeout=60)
        assert coord.returncode == 1, stderr
        summary = json.loads(out.read_text())
        assert summary["lost_workers"] == ["w0"]
        assert summary["workers"]["w1"]["consistent"]
        assert summary["workers"]["w0"]["sent"] > 0
        assert summary["workers"]["w0"]["status"] == "lost"
        assert_balanced(summary)
        # Resumed, w0 hears no coordinator and stops its load: nothing stays open.
        assert workers[0].wait(timeout=20) == 0
        deadline = time.monotonic() + 10
        while stats(server.api_url)["connections_open"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert stats(server.api_url)["connections_open"] == 0
    finally:
        for p in [coord, *workers]:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.kill()
            p.wait()

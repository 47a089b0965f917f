"""Liveness under load: a worker whose event loop is saturated is not declared lost.

The worker agent runs in this process on its own thread and loop, so the test
can saturate that loop with pure-Python work (holding the GIL, as a busy
client population does) while a real coordinator process watches it.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import uvloop

from tests.integration.conftest import WSLOAD, ServerFactory
from tests.integration.test_run import free_port, stats
from worker.agent import Agent, AgentOptions


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

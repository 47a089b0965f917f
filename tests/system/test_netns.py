"""A distributed run across hosts made of network namespaces.

Target, coordinator and two workers each live in their own namespace, joined
by veth pairs to a bridge in a fifth ("switch") namespace, on a private test
subnet. Nothing touches the machine's own network. Needs root and iproute2;
skipped (with the reason printed) otherwise.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system.netns import NEEDS_NETNS, WSLOAD, Lab, lab_of, start_target, target_stats

pytestmark = [pytest.mark.system, NEEDS_NETNS]


@pytest.fixture
def lab() -> Iterator[Lab]:
    yield from lab_of(["target", "coord", "w1", "w2"])


@pytest.fixture
def host() -> Iterator[Lab]:
    """One host alone: its own loopback and its own ephemeral-port range."""
    yield from lab_of(["host"])


def start_run(
    lab: Lab, out: Path, clients: int, duration: float
) -> tuple[subprocess.Popen[str], dict[str, subprocess.Popen[str]]]:
    """The coordinator on its host and workers w1, w2 on theirs, loading the target."""
    addr = lab.addresses
    coord = lab.popen(
        "coord", WSLOAD, "coordinator", "--bind", f"tcp://{addr['coord']}:5555",
        "--insecure", "--expect-workers", "2", "--worker-wait", "30",
        "--ws-url", f"ws://{addr['target']}:9000/ws", "--num-clients", str(clients),
        "--duration", str(duration), "--interval", "0.05", "--json", str(out), "--quiet",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    worker_cmd = [WSLOAD, "worker", "--connect", f"tcp://{addr['coord']}:5555", "--once"]
    workers = {name: lab.popen(name, *worker_cmd, "--id", name) for name in ("w1", "w2")}
    return coord, workers


@pytest.mark.timeout(120)
def test_distributed_run_across_namespaces(lab: Lab, tmp_path: Path) -> None:
    start_target(lab)
    out = tmp_path / "summary.json"
    coord, _ = start_run(lab, out, clients=20, duration=4)
    _, stderr = coord.communicate(timeout=90)
    assert coord.returncode == 0, stderr
    summary = json.loads(out.read_text())
    stats = target_stats(lab)
    assert set(summary["workers"]) == {"w1", "w2"}
    assert all(w["sent"] > 0 and w["consistent"] for w in summary["workers"].values())
    assert summary["total_sent"] == stats["messages_received"] > 20 * 40
    assert summary["total_received"] == stats["messages_sent"]
    assert summary["balanced"]
    assert stats["connections_opened"] == 20
    assert stats["connections_open"] == 0


@pytest.mark.timeout(120)
def test_worker_cut_off_by_the_network_is_lost(lab: Lab, tmp_path: Path) -> None:
    start_target(lab)
    out = tmp_path / "summary.json"
    coord, workers = start_run(lab, out, clients=10, duration=10)
    deadline = time.monotonic() + 30
    while target_stats(lab)["connections_open"] < 10 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)  # a few windows reported first
    lab.cut("w1")
    _, stderr = coord.communicate(timeout=90)
    assert coord.returncode == 1, stderr
    summary = json.loads(out.read_text())
    assert summary["lost_workers"] == ["w1"]
    assert summary["workers"]["w1"]["sent"] > 0  # what it reported before the cut stays
    assert summary["workers"]["w2"]["consistent"]
    # Cut off, w1 hears no coordinator and stops its own load.
    assert workers["w1"].wait(timeout=30) == 0


@pytest.mark.timeout(120)
def test_ephemeral_ports_exhausted_then_spread_over_source_addresses(
    host: Lab, tmp_path: Path
) -> None:
    # 20 local ports per (source address, target): fewer than the 40 clients.
    host.run("host", "sysctl", "-w", "net.ipv4.ip_local_port_range=40000 40019")
    server = host.popen(
        "host", WSLOAD, "serve", "--host", "127.0.0.1", "--port", "9000", stdout=subprocess.PIPE
    )
    assert server.stdout is not None
    assert "listening on" in server.stdout.readline()

    def run(*extra: str) -> dict[str, Any]:
        out = tmp_path / "summary.json"
        host.run(
            "host", WSLOAD, "run", "--ws-url", "ws://127.0.0.1:9000/ws", "-c", "40", "-d", "2",
            "--interval", "0.1", "--workers", "1", "--no-reconnect", "--json", str(out),
            "--quiet", *extra,
        )  # fmt: skip
        summary: dict[str, Any] = json.loads(out.read_text())
        return summary

    exhausted = run()
    counters = exhausted["counters"]
    assert 0 < counters["connects"] < 40
    assert exhausted["errors"] == {"no_local_port": 40 - counters["connects"]}
    assert counters["connect_failures"] == 40 - counters["connects"]
    assert exhausted["balanced"]

    spread = run("--source-address", "127.0.0.2,127.0.0.3,127.0.0.4")
    assert spread["counters"]["connects"] == 40
    assert spread["errors"] == {}
    assert spread["balanced"]
    by_address = target_stats(host, "host", "127.0.0.1")["connections_by_address"]
    assert by_address == {
        "127.0.0.1": counters["connects"],
        "127.0.0.2": 14,
        "127.0.0.3": 13,
        "127.0.0.4": 13,
    }

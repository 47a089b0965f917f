"""A distributed run across hosts made of network namespaces.

Target, coordinator and two workers each live in their own namespace, joined
by veth pairs to a bridge in a fifth ("switch") namespace, on a private test
subnet. Nothing touches the machine's own network. Needs root and iproute2;
skipped (with the reason printed) otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

WSLOAD = str(Path(sys.executable).with_name("wsload"))
SUBNET = "10.203.{}.{}"

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None,
        reason="network-namespace system tests need root and iproute2",
    ),
]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Lab:
    """Namespaces ``<tag>-<name>`` on one bridge; every name gets 10.203.N.i/24."""

    def __init__(self, names: list[str]) -> None:
        self.tag = f"wsl{os.getpid() % 100000}"
        self.net = os.getpid() % 200 + 20
        self.switch = f"{self.tag}-sw"
        self.addresses: dict[str, str] = {}
        self.procs: list[subprocess.Popen[str]] = []  # stopped by close()
        self.links: dict[str, str] = {}  # name -> its interface, inside its namespace
        self.namespaces = [self.switch]
        ip("netns", "add", self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        for i, name in enumerate(names, start=1):
            ns = self.ns(name)
            self.namespaces.append(ns)
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
            inside, outside = f"{self.tag}{i}a", f"{self.tag}{i}b"
            ip("link", "add", inside, "netns", ns, "type", "veth", "peer", outside, "netns",
               self.switch)  # fmt: skip
            ip("-n", self.switch, "link", "set", outside, "master", "br0", "up")
            address = SUBNET.format(self.net, i)
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", inside)
            ip("-n", ns, "link", "set", inside, "up")
            self.addresses[name] = address
            self.links[name] = inside

    def cut(self, name: str) -> None:
        """Take the host's only link down: to everyone else it simply goes silent."""
        ip("-n", self.ns(name), "link", "set", self.links[name], "down")

    def ns(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def popen(
        self, name: str, *cmd: str, stdout: int | None = None, stderr: int | None = None
    ) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(name), *cmd], text=True, stdout=stdout, stderr=stderr
        )
        self.procs.append(proc)
        return proc

    def run(self, name: str, *cmd: str) -> str:
        return subprocess.run(
            ["ip", "netns", "exec", self.ns(name), *cmd],
            check=True, capture_output=True, text=True, timeout=30,
        ).stdout  # fmt: skip

    def close(self) -> None:
        """Stop every process started here, then remove the namespaces."""
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30, check=False)


def _lab(names: list[str]) -> Iterator[Lab]:
    try:
        made = Lab(names)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot build network namespaces here: {exc.stderr!r}")
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def lab() -> Iterator[Lab]:
    yield from _lab(["target", "coord", "w1", "w2"])


@pytest.fixture
def host() -> Iterator[Lab]:
    """One host alone: its own loopback and its own ephemeral-port range."""
    yield from _lab(["host"])


def start_target(lab: Lab) -> None:
    """The reference server on the target host, port 9000; returns once it listens."""
    server = lab.popen(
        "target", WSLOAD, "serve", "--host", lab.addresses["target"], "--port", "9000",
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert server.stdout is not None
    assert "listening on" in server.stdout.readline()


def target_stats(lab: Lab, name: str = "target", address: str = "") -> dict[str, Any]:
    """``/api/stats`` of the server on host ``name`` (at ``address``, else the host's own)."""
    url = f"http://{address or lab.addresses[name]}:9000/api/stats"
    code = (
        "import urllib.request, sys; "
        f"sys.stdout.write(urllib.request.urlopen({url!r}).read().decode())"
    )
    data: dict[str, Any] = json.loads(lab.run(name, sys.executable, "-c", code))
    return data


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

"""Hosts made of network namespaces, for the system tests.

Each host is a namespace ``<tag>-<name>`` with its own loopback and one veth
link to a bridge in a "switch" namespace, on a private test subnet; the
machine's own network is never touched. The filesystem is shared, so the
venv's ``wsload`` runs on every host. Needs root and iproute2: ``NEEDS_NETNS``
skips (saying why) otherwise.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

WSLOAD = str(Path(sys.executable).with_name("wsload"))
SUBNET = "10.203.{}.{}"

_LABS = itertools.count()

NEEDS_NETNS = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="network-namespace system tests need root and iproute2",
)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Lab:
    """Namespaces ``<tag>-<name>`` on one bridge; every name gets 10.203.N.i/24."""

    def __init__(self, names: list[str]) -> None:
        # unique while alive, even for two labs of one process; interface names <= 15 chars
        self.tag = f"wsl{os.getpid() % 100000}{next(_LABS) % 10}"
        self.net = os.getpid() % 200 + 20
        self.switch = f"{self.tag}-sw"
        self.addresses: dict[str, str] = {}
        self.procs: list[subprocess.Popen[str]] = []  # stopped by close()
        self.links: dict[str, str] = {}  # name -> its interface, inside its namespace
        self.namespaces = [self.switch]
        try:
            self._build(names)
        except BaseException:
            self.close()  # what was made so far
            raise

    def _build(self, names: list[str]) -> None:
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


def lab_of(names: list[str]) -> Iterator[Lab]:
    """A fixture body: the lab, closed afterwards; skips when namespaces cannot be made."""
    try:
        made = Lab(names)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot build network namespaces here: {exc.stderr!r}")
    try:
        yield made
    finally:
        made.close()


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

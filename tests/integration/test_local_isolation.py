"""A local run cannot be joined by anyone else (real processes, real ZeroMQ on loopback).

``wsload run`` listens on a loopback TCP port that any local user can reach.
A stray process finds that port the way another user could (in
``/proc/net/tcp``, by the coordinator's socket inodes), connects from the
first moment, and keeps sending a hello and heartbeats -- everything the
coordinator needs to give a worker a slot -- for the whole run. With the
run's ephemeral CURVE keys it never gets a single message back (no welcome,
no refusal, no job with the run's ``Authorization`` header), the run has
exactly its own workers, and the totals match the target's own counters.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

from tests.accounting import assert_balanced
from tests.integration.conftest import ServerFactory, children, reap, stats
from wsload.common.protocol import HEARTBEAT_SUFFIX, Heartbeat, Hello, encode

WSLOAD = str(Path(sys.executable).with_name("wsload"))
#: A CURVE key as text: 40 Z85 characters.
Z85_KEY = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")


def _listening_ports(pid: int) -> set[int]:
    """TCP ports ``pid`` listens on, from /proc (what any local user can read of it)."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
        table = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except (FileNotFoundError, ProcessLookupError):
        return set()
    ports = set()
    for line in table:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


@pytest.mark.timeout(120)
def test_a_stray_process_cannot_join_a_local_run_nor_read_its_job(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory()
    secret = f"Bearer h5-{secrets.token_hex(16)}"
    out, err_path = tmp_path / "s.json", tmp_path / "stderr"
    with err_path.open("w") as err:
        coord = subprocess.Popen(
            [WSLOAD, "run", "--ws-url", server.ws_url, "--workers", "2", "-c", "4", "-d", "4",
             "--interval", "0.05", "--header", f"Authorization: {secret}", "--json", str(out),
             "--quiet"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    ctx = zmq.Context()
    received: list[bytes] = []
    worker_argvs: dict[int, list[str]] = {}
    try:
        deadline = time.monotonic() + 30
        ports: set[int] = set()
        while not ports:  # from the first moment the coordinator listens
            assert time.monotonic() < deadline, "the coordinator never listened"
            assert coord.poll() is None, err_path.read_text()
            ports = _listening_ports(coord.pid)
        (port,) = ports
        endpoint = f"tcp://127.0.0.1:{port}"
        job = ctx.socket(zmq.DEALER)
        job.setsockopt(zmq.ROUTING_ID, b"stray")
        beat = ctx.socket(zmq.DEALER)
        beat.setsockopt(zmq.ROUTING_ID, b"stray" + HEARTBEAT_SUFFIX.encode())
        for sock in (job, beat):
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(endpoint)
        hello = encode(Hello("stray", socket.gethostname(), os.getpid(), "0", 64, 1 << 20))
        poller = zmq.Poller()
        poller.register(job, zmq.POLLIN)
        poller.register(beat, zmq.POLLIN)
        while coord.poll() is None:  # knock for the whole run
            assert time.monotonic() < deadline + 60, "the run did not end"
            for sock, msg in ((job, hello), (beat, encode(Heartbeat(time.time())))):
                with contextlib.suppress(zmq.Again):  # nobody took it: the queue is full
                    sock.send(msg, zmq.NOBLOCK)
            for sock, _ in poller.poll(100):
                received.append(sock.recv())
            for pid in children(coord.pid):
                worker_argvs.setdefault(pid, _argv(pid))
        for sock in (job, beat):
            while sock.poll(0):
                received.append(sock.recv())
        assert coord.returncode == 0, err_path.read_text()
    finally:
        ctx.destroy(linger=0)
        reap(coord)
    assert received == [], "the stray heard from the coordinator"
    summary = json.loads(out.read_text())
    assert sorted(summary["workers"]) == sorted(
        w for w in summary["workers"] if w.startswith("local-")
    )
    assert len(summary["workers"]) == 2, summary["workers"]
    assert summary["total_sent"] == stats(server.api_url)["messages_received"] > 0
    assert_balanced(summary)
    assert "stray" not in err_path.read_text()  # never admitted, never named as a worker
    # The workers got their keys through a pipe: nothing secret on their command lines.
    worker_argvs = {pid: a for pid, a in worker_argvs.items() if "--keys-fd" in a}
    assert len(worker_argvs) == 2, worker_argvs
    for argv in worker_argvs.values():
        assert not any(Z85_KEY.fullmatch(arg) for arg in argv), argv
        assert secret not in " ".join(argv)

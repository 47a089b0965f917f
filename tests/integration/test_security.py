"""Who may join and where the coordinator listens: CURVE keys, endpoints, frame limits."""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq.asyncio

from tests.accounting import assert_balanced
from tests.integration.conftest import ServerFactory, reap, stats
from tests.integration.test_run import free_port
from wsload.common.curve import generate
from wsload.common.endpoint import parse_endpoint
from wsload.common.errors import KeyFileError
from wsload.coordinator.errors import CoordinatorError
from wsload.coordinator.session import Session, SessionOptions
from wsload.worker.link import Link

WSLOAD = str(Path(sys.executable).with_name("wsload"))


def test_generated_secrets_are_private(tmp_path: Path) -> None:
    written = generate(tmp_path / "keys")
    secrets = [p for p in written if p.name.endswith("_secret")]
    assert len(secrets) == 2
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (tmp_path / "keys" / "authorized" / "worker.key").is_file()
    with pytest.raises(KeyFileError, match="keys already exist"):
        generate(tmp_path / "keys")


def _coordinator(
    endpoint: str, keys: Path, url: str, out: Path, wait: float, *, quiet: bool = True
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [WSLOAD, "coordinator", "--bind", endpoint, "--keys", str(keys),
         "--expect-workers", "1", "--worker-wait", str(wait), "--ws-url", url,
         "--num-clients", "2", "--duration", "1", "--interval", "0.1",
         "--json", str(out), *(["--quiet"] if quiet else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_authorised_worker_runs(serve_factory: ServerFactory, tmp_path: Path) -> None:
    server = serve_factory()
    keys = tmp_path / "keys"
    generate(keys)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    out = tmp_path / "s.json"
    coord = _coordinator(endpoint, keys, server.ws_url, out, 20)
    worker = subprocess.Popen(
        [WSLOAD, "worker", "--connect", endpoint, "--keys", str(keys), "--once"]
    )
    try:
        _, err = coord.communicate(timeout=40)
        assert coord.returncode == 0, err
        assert (
            json.loads(out.read_text())["total_sent"] == stats(server.api_url)["messages_received"]
        )
        assert worker.wait(timeout=15) == 0
    finally:
        reap(coord, worker)


def test_worker_without_an_authorised_key_cannot_join(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory()
    keys, other = tmp_path / "keys", tmp_path / "other"
    generate(keys)
    generate(other)  # a different fleet: its worker key is not authorised
    (other / "coordinator.key").write_text((keys / "coordinator.key").read_text())
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    coord = _coordinator(endpoint, keys, server.ws_url, tmp_path / "s.json", 4, quiet=False)
    intruder = subprocess.Popen(
        [WSLOAD, "worker", "--connect", endpoint, "--keys", str(other), "--once",
         "--hello-timeout", "20"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # Told at once, not after its hello timeout: the ZAP refusal is named.
        _, worker_err = intruder.communicate(timeout=15)
        assert intruder.returncode == 2
        assert worker_err.strip() == (
            "wsload worker: the coordinator refused this worker's key "
            "(not in its authorized/ directory)"
        )
        _, err = coord.communicate(timeout=30)
        assert coord.returncode == 2
        assert "only 0 of 1 workers joined" in err
        # The coordinator names the key it refused, once.
        refused = (other / "worker.key").read_text().split('public-key = "')[1][:40]
        logged = [line for line in err.splitlines() if "not in authorized/" in line]
        assert len(logged) == 1
        assert refused in logged[0]
        assert stats(server.api_url)["connections_opened"] == 0
    finally:
        reap(coord, intruder)


def test_a_worker_without_keys_is_told_the_coordinator_needs_them(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    generate(keys)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    coord = _coordinator(endpoint, keys, "ws://127.0.0.1:9/ws", tmp_path / "s.json", 5, quiet=False)
    try:
        proc = subprocess.run(
            [WSLOAD, "worker", "--connect", endpoint, "--once", "--hello-timeout", "20"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert proc.returncode == 2
        # the greeting that says why may be cut short by the coordinator's reset (a race
        # in ZMTP): either way the worker names the cure
        assert "requires CURVE keys" in proc.stderr
        assert "start this worker with --keys DIR" in proc.stderr
        # (The coordinator names it too when it reads the greeting before the worker,
        # which gives up at once, resets the connection: not asserted, it is a race.)
        _, err = coord.communicate(timeout=30)
        assert coord.returncode == 2
        assert "Traceback" not in err
    finally:
        reap(coord)


def test_worker_refuses_a_coordinator_with_the_wrong_key(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory()
    keys, impostor = tmp_path / "keys", tmp_path / "impostor"
    generate(keys)
    generate(impostor)
    # The impostor coordinator authorises the real worker key but has its own pair.
    (impostor / "authorized" / "worker.key").write_text((keys / "worker.key").read_text())
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    coord = _coordinator(endpoint, impostor, server.ws_url, tmp_path / "s.json", 4, quiet=False)
    worker = subprocess.Popen(
        [WSLOAD, "worker", "--connect", endpoint, "--keys", str(keys), "--once",
         "--hello-timeout", "6"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _, err = coord.communicate(timeout=30)
        assert coord.returncode == 2, err
        assert "it holds another coordinator.key than this coordinator's" in err
        _, worker_err = worker.communicate(timeout=20)
        assert worker.returncode == 2
        assert "is not the coordinator.key this worker holds" in worker_err
        assert stats(server.api_url)["connections_opened"] == 0
    finally:
        reap(coord, worker)


def test_missing_key_directory_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [WSLOAD, "worker", "--connect", "tcp://127.0.0.1:5999", "--keys", str(tmp_path / "no")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "cannot read key" in proc.stderr


@pytest.mark.parametrize(
    ("allowed", "runs"),
    [(["10.9.9.9:80"], False), (["127.0.0.1"], True), (["127.0.0.1:{port}"], True)],
)
def test_allow_target_restricts_what_a_worker_loads(
    serve_factory: ServerFactory, tmp_path: Path, allowed: list[str], runs: bool
) -> None:
    server = serve_factory()
    port = server.ws_url.split(":")[2].split("/")[0]
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    out = tmp_path / "s.json"
    coord = subprocess.Popen(
        [WSLOAD, "coordinator", "--bind", endpoint, "--expect-workers", "1",
         "--ws-url", server.ws_url, "-c", "2", "-d", "1", "--interval", "0.1",
         "--json", str(out), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    rules = [arg for rule in allowed for arg in ("--allow-target", rule.format(port=port))]
    worker = subprocess.Popen([WSLOAD, "worker", "--connect", endpoint, "--once", *rules])
    try:
        _, err = coord.communicate(timeout=40)
        summary = json.loads(out.read_text())
        if runs:
            assert coord.returncode == 0, err
            assert summary["total_sent"] == stats(server.api_url)["messages_received"] > 0
        else:
            assert coord.returncode == 2  # could not run: the fleet refuses that target
            assert "is not in --allow-target (10.9.9.9:80)" in summary["aborted"]
            assert stats(server.api_url)["connections_opened"] == 0
            assert summary["lost_workers"] == []
        assert worker.wait(timeout=15) == 0
    finally:
        reap(coord, worker)


def test_a_secret_key_others_can_read_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    generate(keys)
    (keys / "worker.key_secret").chmod(0o644)
    (keys / "coordinator.key_secret").chmod(0o640)
    for args in (
        ["worker", "--connect", "tcp://127.0.0.1:5999", "--keys", str(keys)],
        ["coordinator", "--keys", str(keys), "--expect-workers", "1"],
    ):
        proc = subprocess.run(
            [WSLOAD, *args], capture_output=True, text=True, timeout=30, check=False
        )
        assert proc.returncode == 2
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert "secret key readable by others" in lines[0]
        assert "chmod 600" in lines[0]


# -- endpoints ----------------------------------------------------------------

BIND_TRICKS = [
    "tcp://0.0.0.0:{port}@127.0.0.1",  # ZeroMQ binds 0.0.0.0:{port}; urlsplit saw 127.0.0.1
    "tcp://*:{port}@127.0.0.1",
    "tcp://127.0.0.1:1;0.0.0.0:{port}",  # ZeroMQ binds the part after ';'
    "tcp://127.0.0.1:99999",  # ZeroMQ binds 34463
    "tcp://0.0.0.0:{port}",
    "tcp://[::]:{port}",
]


@pytest.mark.parametrize("trick", BIND_TRICKS)
def test_bind_tricks_exit_2_before_binding(trick: str) -> None:
    port = free_port()
    endpoint = trick.format(port=port)
    proc = subprocess.run(
        [WSLOAD, "coordinator", "--bind", endpoint, "--expect-workers", "1",
         "--ws-url", "ws://127.0.0.1:9/ws", "--worker-wait", "5"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert endpoint in lines[0]


@pytest.mark.parametrize(
    "endpoint", ["tcp://localhost:*", "tcp://[::1]:*", "tcp://127.0.0.1%lo:*", "tcp://127.0.0.9:0"]
)
def test_loopback_forms_bind_loopback(endpoint: str) -> None:
    """What the parser calls loopback, real ZeroMQ binds on loopback."""
    session = Session(SessionOptions(endpoint=endpoint))
    try:
        host = session.endpoint.removeprefix("tcp://").rpartition(":")[0]
        assert host in ("127.0.0.1", "127.0.0.9", "[::1]"), session.endpoint
    finally:
        session.close(linger=0)


def test_what_zeromq_really_bound_is_checked() -> None:
    with pytest.raises(CoordinatorError, match=r"refusing to bind tcp://0\.0\.0\.0:"):
        Session(SessionOptions(endpoint="tcp://0.0.0.0:*"))
    session = Session(SessionOptions(endpoint="tcp://0.0.0.0:*", insecure=True))
    session.close(linger=0)


@pytest.mark.parametrize(
    ("command", "prefix"),
    [
        ([WSLOAD, "worker"], "wsload"),
        ([sys.executable, "-P", "-m", "wsload.worker"], "wsload worker"),
    ],
)
def test_connect_without_a_port_is_one_line_not_a_hang(command: list[str], prefix: str) -> None:
    proc = subprocess.run(
        [*command, "--connect", "tcp://127.0.0.1"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"{prefix}: --connect 'tcp://127.0.0.1': no port (expected tcp://HOST:PORT)"
    ]


# -- frame size ---------------------------------------------------------------


def _rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def _zmtp_null_peer(port: int) -> socket.socket:
    """A raw ZMTP 3.0 DEALER with the NULL mechanism: no pyzmq, so it can lie about sizes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + bytes([3, 0]) + b"NULL".ljust(20, b"\x00")
    sock.sendall(greeting + b"\x00" * 32)
    name, value = b"Socket-Type", b"DEALER"
    ready = b"\x05READY" + bytes([len(name)]) + name + struct.pack(">I", len(value)) + value
    sock.sendall(bytes([0x04, len(ready)]) + ready)
    return sock


@pytest.mark.timeout(90)
def test_a_peer_announcing_a_huge_frame_costs_no_memory(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    """ZMQ_MAXMSGSIZE: a frame announced at 1 GiB is refused at its header, not buffered."""
    server = serve_factory()
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    out = tmp_path / "s.json"
    coord = subprocess.Popen(
        [WSLOAD, "coordinator", "--bind", endpoint, "--expect-workers", "1",
         "--ws-url", server.ws_url, "-c", "2", "-d", "4", "--interval", "0.05",
         "--json", str(out), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    worker = subprocess.Popen([WSLOAD, "worker", "--connect", endpoint, "--once"])
    try:
        deadline = time.monotonic() + 20
        while stats(server.api_url)["connections_open"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        before = _rss(coord.pid)
        chunk = os.urandom(1 << 20)
        streamed = 0
        with _zmtp_null_peer(port) as peer:
            try:
                peer.sendall(b"\x02" + struct.pack(">Q", 1 << 30))  # one 1 GiB frame
                while streamed < 256 << 20:
                    peer.sendall(chunk)
                    streamed += len(chunk)
            except OSError:
                pass  # dropped at the header: what we want
            grown = _rss(coord.pid) - before
        assert grown < 48 << 20, f"coordinator grew {grown >> 20} MiB ({streamed >> 20} sent)"
        _, err = coord.communicate(timeout=40)
        assert coord.returncode == 0, err
        summary = json.loads(out.read_text())
        assert summary["total_sent"] == stats(server.api_url)["messages_received"] > 0
        assert_balanced(summary)
    finally:
        reap(coord, worker)


def test_a_link_that_fails_to_set_up_leaves_no_socket_open() -> None:
    """A socket left open would make ctx.term() wait for ever (the --connect hang)."""
    ctx = zmq.asyncio.Context()

    def broken_keys(sock: object) -> None:
        raise ValueError("bad key")

    with pytest.raises(ValueError, match="bad key"):
        Link(ctx, parse_endpoint("tcp://127.0.0.1:9", bind=False), "w", configure=broken_keys)
    terminated = threading.Event()

    def term() -> None:
        ctx.term()
        terminated.set()

    threading.Thread(target=term, daemon=True).start()
    assert terminated.wait(10), "ctx.term() blocked: a socket was left open"

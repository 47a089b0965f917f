"""A local run's per-run CURVE keys: made in memory, admitted alone, handed over by pipe.

Real ZeroMQ sockets on loopback and a real ZAP handler (in this process):
the coordinator's side of :func:`wsload.common.curve.ephemeral` admits the run's
worker key and no other, even from a peer that somehow knows the
coordinator's public key. The handoff format is read back through a real
pipe, and every malformed handoff is one line, exit 2, before a worker starts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from click.testing import CliRunner
from zmq.auth.thread import ThreadAuthenticator

from wsload.common.curve import (
    MAX_KEY_FILE,
    CurveKeys,
    coordinator_keys,
    ephemeral,
    generate,
    handoff,
    keys_pipe,
    read_handoff,
    worker_keys,
)
from wsload.common.errors import KeyFileError
from wsload.coordinator.cli import main

#: Generous: a handshake on loopback takes milliseconds, even on a loaded box.
ARRIVE_MS = 10_000


@pytest.fixture
def ctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        yield context
    finally:
        context.destroy(linger=0)


def _router(ctx: zmq.Context[zmq.Socket[bytes]], keys: CurveKeys) -> tuple[zmq.Socket[bytes], str]:
    sock = ctx.socket(zmq.ROUTER)
    keys.apply_server(sock)
    sock.bind("tcp://127.0.0.1:*")
    return sock, sock.getsockopt_string(zmq.LAST_ENDPOINT)


def _say(
    ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str, keys: CurveKeys, text: bytes
) -> zmq.Socket[bytes]:
    """A DEALER that sends ``text``; kept by the caller (a dropped socket is closed)."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    keys.apply_client(sock)
    sock.connect(endpoint)
    sock.send(text)
    return sock


def _heard(router: zmq.Socket[bytes], expected: bytes) -> list[bytes]:
    """Everything the router receives until ``expected`` arrives, and 0.3 s after it."""
    heard: list[bytes] = []
    while router.poll(ARRIVE_MS if expected not in heard else 300):
        heard.append(router.recv_multipart()[1])
    assert expected in heard, heard
    return heard


def test_only_the_runs_own_worker_key_is_admitted(ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
    server, worker = ephemeral()
    assert server.authorized == {worker.public}
    assert worker.server_public == server.public
    auth = ThreadAuthenticator(ctx)
    auth.start()
    try:
        server.authorize(auth)
        router, endpoint = _router(ctx, server)
        # A stray that knows the coordinator's public key and brings a pair of its own...
        _, stray = ephemeral()
        knocks = [
            _say(ctx, endpoint, CurveKeys(stray.public, stray.secret, server.public), b"stray")
        ]
        # ...and the run's own worker, after it.
        knocks.append(_say(ctx, endpoint, worker, b"worker"))
        assert _heard(router, b"worker") == [b"worker"]
    finally:
        auth.stop()


def test_with_a_key_directory_both_its_workers_and_the_local_ones_are_admitted(
    ctx: zmq.Context[zmq.Socket[bytes]], tmp_path: Path
) -> None:
    generate(tmp_path / "keys")
    base = coordinator_keys(tmp_path / "keys")
    server, local = ephemeral(base)
    assert (server.public, server.secret) == (base.public, base.secret)
    auth = ThreadAuthenticator(ctx)
    auth.start()
    try:
        server.authorize(auth)
        router, endpoint = _router(ctx, server)
        remote = _say(ctx, endpoint, worker_keys(tmp_path / "keys"), b"remote")
        assert _heard(router, b"remote") == [b"remote"]
        here = _say(ctx, endpoint, local, b"local")
        assert _heard(router, b"local") == [b"local"]
        assert remote.poll(0) == here.poll(0) == 0  # nothing came back: the router said nothing
    finally:
        auth.stop()


def test_keys_travel_through_a_pipe_that_is_closed_once_read() -> None:
    _, worker = ephemeral()
    with keys_pipe(worker) as fd:
        child_copy = os.dup(fd)  # what a child started with pass_fds=(fd,) holds
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)  # the parent's end is closed once the child has its copy
    assert read_handoff(child_copy) == worker
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(child_copy)  # read to the end, then closed


def _fd_holding(tmp_path: Path, data: bytes) -> int:
    path = tmp_path / "handoff"
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "not what wsload run hands its workers"),
        (b"server-key = x\n", "not what wsload run hands its workers"),
        (handoff(ephemeral()[1]).replace(b"secret-key", b"secret"), "no valid secret-key"),
        (handoff(ephemeral()[1])[:-10], "no valid secret-key"),
        (b"wsload-keys 1\n" + b"x" * MAX_KEY_FILE, f"more than {MAX_KEY_FILE} bytes"),
    ],
    ids=["empty", "no-magic", "no-secret", "truncated", "endless"],
)
def test_a_bad_handoff_is_one_line(tmp_path: Path, data: bytes, needle: str) -> None:
    fd = _fd_holding(tmp_path, data)
    with pytest.raises(KeyFileError, match=needle) as caught:
        read_handoff(fd)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"--keys-fd {fd}: ")


def test_a_descriptor_that_is_not_open_is_exit_2_before_anything_starts() -> None:
    result = CliRunner().invoke(
        main, ["worker", "--connect", "tcp://127.0.0.1:9", "--keys-fd", "1000"], prog_name="wsload"
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert lines == ["wsload: --keys-fd 1000: cannot read keys (Bad file descriptor)"], lines


def test_keys_from_a_directory_and_a_descriptor_at_once_is_exit_2(tmp_path: Path) -> None:
    generate(tmp_path / "keys")
    fd = _fd_holding(tmp_path, handoff(ephemeral()[1]))
    try:
        result = CliRunner().invoke(
            main,
            ["worker", "--connect", "tcp://127.0.0.1:9", "--keys", str(tmp_path / "keys"),
             "--keys-fd", str(fd)],
            prog_name="wsload",
        )  # fmt: skip
    finally:
        os.close(fd)
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == ["wsload: --keys and --keys-fd: give one of them"]

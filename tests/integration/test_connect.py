"""Opening connections against targets that misbehave during the handshake.

A target that hangs up before its 101, answers half a response or garbage,
never answers, or redirects elsewhere costs an error kind on either engine;
the worker process lives on and the run completes. Redirects are never
followed: a worker pinned to one target must not be sent to another.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import wsload.worker.engine
from tests.integration.conftest import WSLOAD
from tests.integration.handshake_target import BEHAVIOURS, SLOW_101, HandshakeTarget
from wsload.common.spec import ENGINES, build_spec
from wsload.worker.connect import connected_socket, source_socket
from wsload.worker.engines import create_engine
from wsload.worker.recorder import WindowBatch

#: every behaviour of the target that fails the handshake
BROKEN = tuple(b for b in BEHAVIOURS if b != "slow_101")

#: what each behaviour of the target is counted as
KINDS = {
    "close": "reset",
    "rst": "reset",
    "half": "reset",
    "garbage": "handshake",
    "silent": "timeout",
    "redirect_301": "http_301",
    "redirect_302": "http_302",
}


def expected_errors(behaviours: tuple[str, ...]) -> dict[str, int]:
    errors: dict[str, int] = {}
    for behaviour in behaviours:
        errors[KINDS[behaviour]] = errors.get(KINDS[behaviour], 0) + 1
    return errors


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.timeout(90)
def test_a_worker_survives_every_broken_handshake(engine: str, tmp_path: Path) -> None:
    """One client per behaviour, in a real ``wsload run``: each an error kind; the worker lives."""
    out = tmp_path / "summary.json"
    with HandshakeTarget(BROKEN) as target:
        proc = subprocess.run(
            [WSLOAD, "run", "--ws-url", target.ws_url, "-c", str(len(BROKEN)),
             "-d", "2", "--interval", "0.1", "--workers", "1", "--engine", engine,
             "--no-reconnect", "--connect-timeout", "1", "--json", str(out), "--quiet"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        served = dict(target.done)
        redirected_hits = target.counter.hits
    # Exit 1 at most: a run that never opened a connection tested nothing; 2 would be bad
    # input, and a worker that died would be listed lost.
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    summary = json.loads(out.read_text())
    assert served == dict.fromkeys(BROKEN, 1)
    assert summary["errors"] == expected_errors(BROKEN)
    assert summary["counters"]["connect_failures"] == len(BROKEN)
    assert summary["counters"]["connects"] == 0
    assert summary["lost_workers"] == []
    assert redirected_hits == 0  # the redirects' destination never saw a connection


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.asyncio
async def test_redirects_are_error_kinds_and_never_followed(engine: str) -> None:
    """With reconnects, every attempt meets a redirect; none reaches where it points."""
    behaviours = ("redirect_301", "redirect_302")
    with HandshakeTarget(behaviours) as target:
        spec = build_spec(
            env={}, ws_url=target.ws_url, engine=engine, num_clients=4, duration=1.0,
            interval=0.1, connect_timeout=1.0, reconnect_max_delay=0.05,
        )  # fmt: skip
        result = await create_engine(spec).run()
        hits = target.counter.hits
        served = sum(target.done.values())
    assert hits == 0
    assert set(result.errors) == {"http_301", "http_302"}
    assert sum(result.errors.values()) == result.counters["connect_failures"] == served >= 8
    assert result.counters["connects"] == 0


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.asyncio
async def test_a_storm_holds_a_bounded_number_of_handshakes_open(
    engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All clients at once: PENDING_HANDSHAKES at a time, and windows go out meanwhile.

    Thousands of handshakes started at once kept the loop busy for seconds:
    no window went out, then every connect landed in one.
    """
    monkeypatch.setattr(wsload.worker.engine, "PENDING_HANDSHAKES", 4)
    clients = 24
    batches: list[WindowBatch] = []
    with HandshakeTarget(("slow_101",)) as target:
        spec = build_spec(
            env={}, ws_url=target.ws_url, engine=engine, num_clients=clients, duration=30.0,
            interval=3600.0, connect_timeout=10.0,
        )  # fmt: skip
        run = create_engine(spec, on_batch=batches.append, window=0.05)
        task = asyncio.create_task(run.run())
        deadline = time.monotonic() + 20
        while run.recorder.connects < clients and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        run.stop()
        result = await task
        most_pending = target.most_pending
    assert result.counters["connects"] == clients
    assert result.errors == {}
    assert 1 <= most_pending <= 4
    # 24 handshakes of SLOW_101 s, 4 at a time, last at least 6 * SLOW_101 s: several windows
    assert 6 * SLOW_101 >= 0.3
    with_connects = [b.counters["connects"] for b in batches if b.counters.get("connects")]
    assert len(with_connects) >= 2, with_connects
    assert sum(with_connects) == clients


@pytest.mark.asyncio
async def test_a_source_address_leaves_the_port_to_connect() -> None:
    """Bound with IP_BIND_ADDRESS_NO_PORT: no port taken at bind(), one chosen by connect().

    A port taken at bind() must be free towards every destination; with
    thousands of sockets in TIME_WAIT the kernel's search for one took
    milliseconds per socket and a storm from --source-address collapsed.
    """
    with HandshakeTarget(("slow_101",)) as target:
        unconnected = source_socket("127.0.0.2")
        try:
            assert unconnected.getsockname() == ("127.0.0.2", 0)
        finally:
            unconnected.close()
        sock = await connected_socket(target.ws_url, "127.0.0.2")
        try:
            host, port = sock.getsockname()
            assert host == "127.0.0.2"
            assert port > 0
            assert sock.getpeername() == ("127.0.0.1", target.port)
        finally:
            sock.close()


def test_a_worker_process_tunes_its_garbage_collector() -> None:
    """Thresholds raised and the start-up heap frozen (see worker.gcpolicy), in a fresh process."""
    code = (
        "import gc; from worker.gcpolicy import THRESHOLDS, tune_collector; tune_collector(); "
        "print(gc.get_threshold() == THRESHOLDS, gc.get_freeze_count() > 1000)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.stdout.split() == ["True", "True"], proc.stderr


@pytest.mark.asyncio
async def test_a_host_name_is_resolved_and_each_address_tried() -> None:
    with HandshakeTarget(("slow_101",)) as target:
        sock = await connected_socket(f"ws://localhost:{target.port}/ws")
        try:
            assert sock.getpeername() == ("127.0.0.1", target.port)
        finally:
            sock.close()

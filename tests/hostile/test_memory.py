"""``wsload run`` against targets that flood or never read: workers' memory stays in budget.

Each case runs the real CLI (coordinator and 2 worker processes) on each
engine with a small ``--max-message-size`` and payloads near it, samples
every worker's resident memory from ``/proc``, and checks it against the
budget README.md documents (:data:`WORKER_BASE_MIB` plus
:func:`per_connection_bytes` per connection), the run's end in bounded time,
balanced accounting per worker and in total, and a stderr with no traceback
and at most one line per error kind per worker.

Without the bounds these cases grew a worker by hundreds of MB in seconds:
sends kept going into a transport nobody drained (never_reads), every ping
got its own pong (ping_flood), picows' read buffer doubled towards Linux's
autotuned socket buffer (ping_flood), a fragmented message never ended
(endless_fragments).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.hostile.conftest import HostileFactory, RunResult, run_wsload
from wsload.common.spec import ENGINES

LIMIT = 65536
PAYLOAD = 60000
CLIENTS = 4
WORKERS = 2
DURATION = 2.0
CONNECT_TIMEOUT = 1.0
#: a worker's resident memory with a few connections, before any message
#: (Python, uvloop, ZeroMQ, NumPy, picows, websockets): about 56 MiB on
#: x86-64 Linux; README.md documents the budget with this allowance
WORKER_BASE_MIB = 80
#: picows' receive cap (worker.engines.picows_listener.RECEIVE_BUFFER) and uvloop's
#: write high-water mark
RECEIVE_BUFFER = 256 * 1024
WRITE_HIGH_WATER = 64 * 1024


def per_connection_bytes(max_message_size: int, payload_size: int) -> int:
    """README's worst case for one connection: read buffer, reassembly, write buffer."""
    read_buffer = 2 * (2 * RECEIVE_BUFFER + max_message_size)
    return read_buffer + max_message_size + WRITE_HIGH_WATER + payload_size + 64 * 1024


def budget_kib() -> int:
    per_worker = -(-CLIENTS // WORKERS)
    return WORKER_BASE_MIB * 1024 + per_worker * per_connection_bytes(LIMIT, PAYLOAD) // 1024


def _load(url: str, engine: str, *extra: str) -> RunResult:
    return run_wsload(
        url,
        "--engine",
        engine,
        "--workers",
        str(WORKERS),
        "-c",
        str(CLIENTS),
        "-d",
        str(DURATION),
        "--max-message-size",
        str(LIMIT),
        "--payload-size",
        str(PAYLOAD),
        "--connect-timeout",
        str(CONNECT_TIMEOUT),
        "--drain-timeout",
        "0.5",
        *extra,
    )


def _check_bounded(run: RunResult, kinds: set[str]) -> dict[str, Any]:
    """What every hostile case must hold; returns the summary."""
    s = run.summary
    assert s, f"no JSON summary; exit {run.returncode}, stderr:\n{run.stderr}"
    assert run.returncode in (0, 1), run.stderr  # 1: nothing answered, said in the summary
    assert "Traceback" not in run.stderr, run.stderr
    assert "never retrieved" not in run.stderr, run.stderr
    worker_lines = [line for line in run.stderr.splitlines() if line.startswith("wsload worker:")]
    assert len(worker_lines) <= WORKERS * max(len(kinds), 1), run.stderr
    # Start (~1.5 s), duration, drain, a close bounded by the connect timeout, then
    # abort: ~6 s, ~10 s with a worker busy parsing a flood. A close that never
    # returns is caught below too: its worker is declared lost, not "ok".
    assert run.elapsed < 30.0, run.elapsed
    assert set(s["errors"]) <= kinds | {"timeout"}, s["errors"]
    assert s["balanced"], s
    c = s["counters"]
    assert c["sent"] == c["received"] + c["timed_out"] + c["lost"] + c["unanswered"], c
    assert len(s["workers"]) == WORKERS
    for name, w in s["workers"].items():
        assert w["sent"] == w["received"] + w["timed_out"] + w["lost"] + w["unanswered"], name
        assert w["status"] == "ok", (name, w)
    assert len(run.rss) == WORKERS, run.rss
    peak, budget = run.peak_rss_kib(), budget_kib()
    assert peak < budget, f"worker RSS peaked at {peak} KiB, budget {budget} KiB"
    return s


@pytest.mark.parametrize("engine", ENGINES)
def test_target_that_never_reads(hostile_factory: HostileFactory, engine: str) -> None:
    """Sends stop while the connection is paused; the close is bounded, then aborted."""
    server = hostile_factory("never_reads")
    # 1000 messages/s of 60 kB: 120 MB over the run if every send were buffered
    run = _load(server.ws_url, engine, "--rate", "1000")
    s = _check_bounded(run, set())
    assert s["write_pauses"] >= 1
    assert s["total_sent"] < 1000 * DURATION / 4  # the rest was held back, not buffered
    assert s["counters"]["received"] == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_ping_flood(hostile_factory: HostileFactory, engine: str) -> None:
    """A target that floods pings and never reads the pongs costs no memory."""
    server = hostile_factory("ping_flood")
    run = _load(server.ws_url, engine, "--rate", "200")
    s = _check_bounded(run, set())
    assert s["write_pauses"] >= 1


@pytest.mark.parametrize("engine", ENGINES)
def test_endless_fragmented_message(hostile_factory: HostileFactory, engine: str) -> None:
    """A message that never ends is cut at --max-message-size: close 1009, kind too_big."""
    server = hostile_factory("endless_fragments", LIMIT)
    run = _load(server.ws_url, engine, "--interval", "0.1")
    s = _check_bounded(run, {"too_big"})
    assert s["errors"]["too_big"] >= CLIENTS
    stats = server.stop()
    assert set(stats["close_codes"]) <= {"1009", "1000"}, stats
    assert stats["close_codes"].get("1009", 0) >= CLIENTS, stats


@pytest.mark.parametrize("engine", ENGINES)
def test_protocol_error_through_the_cli(hostile_factory: HostileFactory, engine: str) -> None:
    """picows' own parser errors (a masked frame) too: kind protocol, one line, no traceback."""
    server = hostile_factory("masked")
    run = _load(server.ws_url, engine, "--interval", "0.1")
    s = _check_bounded(run, {"protocol"})
    assert s["errors"]["protocol"] >= CLIENTS
    assert s["counters"]["received"] == 0
    assert s["counters"]["lost"] == s["total_sent"]
    assert "protocol" in s["error_texts"]
    stats = server.stop()
    assert set(stats["close_codes"]) <= {"1002", "1000"}, stats  # 1000: opened as the run ended
    assert stats["close_codes"]["1002"] >= CLIENTS, stats

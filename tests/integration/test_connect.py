"""Opening connections against targets that misbehave during the handshake.

A target that hangs up before its 101, answers half a response or garbage,
never answers, or redirects elsewhere costs an error kind on either engine;
the worker process lives on and the run completes. Redirects are never
followed: a worker pinned to one target must not be sent to another.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from common.spec import ENGINES, build_spec
from tests.integration.conftest import WSLOAD
from tests.integration.handshake_target import BEHAVIOURS, HandshakeTarget
from worker.engine import create_engine

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
    """One client per behaviour, in a real ``wsload run``: every one an error kind, exit 0."""
    out = tmp_path / "summary.json"
    with HandshakeTarget() as target:
        proc = subprocess.run(
            [WSLOAD, "run", "--ws-url", target.ws_url, "-c", str(len(BEHAVIOURS)),
             "-d", "2", "--interval", "0.1", "--workers", "1", "--engine", engine,
             "--no-reconnect", "--connect-timeout", "1", "--json", str(out), "--quiet"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        served = dict(target.done)
        redirected_hits = target.counter.hits
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    summary = json.loads(out.read_text())
    assert served == dict.fromkeys(BEHAVIOURS, 1)
    assert summary["errors"] == expected_errors(BEHAVIOURS)
    assert summary["counters"]["connect_failures"] == len(BEHAVIOURS)
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

"""RFC 6455 violations by the target fail the connection, on both engines.

Each engine runs in this process against one raw-socket hostile server per
violation (:mod:`tests.hostile.server`), all at once: every violation must
cost the error kind ``protocol`` (``too_big`` for a message over the limit),
once per connection, with the close code the client sent as the server saw
it (1002; 1007 for invalid UTF-8; 1009 for size), no message counted as a
reply, balanced accounting, bounded time, and one stderr line per kind with
no traceback.
"""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from tests.hostile.server import HostileServer
from wsload.common.spec import ENGINES, build_spec
from wsload.worker.client import NotConnected, WebSocketClient
from wsload.worker.engine import EngineResult
from wsload.worker.engines import create_engine
from wsload.worker.engines.picows_listener import valid_close_code
from wsload.worker.errors import failure_kind

LIMIT = 65536
CLIENTS = 2
DURATION = 0.6
#: mode -> (error kind, close code the client must send)
VIOLATIONS = {
    "data_in_fragment": ("protocol", 1002),
    "stray_continuation": ("protocol", 1002),
    "masked": ("protocol", 1002),
    "reserved_bits": ("protocol", 1002),
    "close_code_1006": ("protocol", 1002),
    "close_code_999": ("protocol", 1002),
    "close_code_5000": ("protocol", 1002),
    "control_fragmented": ("protocol", 1002),
    "control_too_big": ("protocol", 1002),
    "invalid_utf8": ("protocol", 1007),
    "invalid_utf8_fragmented": ("protocol", 1007),
    "too_big": ("too_big", 1009),
    "endless_fragments": ("too_big", 1009),
}


async def _run(mode: str, engine: str) -> tuple[EngineResult, HostileServer, float]:
    server = HostileServer(mode, LIMIT)
    port = await server.start()
    spec = build_spec(
        env={},
        ws_url=f"ws://127.0.0.1:{port}/ws",
        engine=engine,
        num_clients=CLIENTS,
        duration=DURATION,
        interval=0.05,
        max_message_size=LIMIT,
        connect_timeout=2.0,
        drain_timeout=0.2,
        reconnect=False,
    )
    started = time.monotonic()
    try:
        result = await create_engine(spec).run()
    finally:
        await server.stop()
    return result, server, time.monotonic() - started


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.asyncio
async def test_every_violation_fails_the_connection(
    engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = await asyncio.gather(*(_run(mode, engine) for mode in VIOLATIONS))
    problems = []
    for mode, (result, server, elapsed) in zip(VIOLATIONS, runs, strict=True):
        kind, code = VIOLATIONS[mode]
        c = result.counters
        seen = {
            "errors": result.errors,
            "server saw close codes": dict(server.close_codes),
            "received": c["received"],
            "balanced": result.balanced,
            "connections": server.connections,
        }
        wanted = {
            "errors": {kind: CLIENTS},
            "server saw close codes": {code: CLIENTS},
            "received": 0,
            "balanced": True,
            "connections": CLIENTS,
        }
        if seen != wanted:
            problems.append(f"{mode}: {seen}, wanted {wanted}")
        if c["lost"] != c["sent"] or c["disconnects"] != CLIENTS:
            problems.append(f"{mode}: every message is lost with its connection: {c}")
        # The violation comes after the first message; failing takes no timeout.
        if elapsed > DURATION + 1.5:
            problems.append(f"{mode}: took {elapsed:.2f} s")
    assert not problems, "\n".join(problems)
    gc.collect()  # an unretrieved future exception is logged when collected
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert "never retrieved" not in err, err
    lines = err.splitlines()
    # One line per kind per engine run (each mode runs its own engine), none per connection.
    assert len(lines) == len(VIOLATIONS), err
    assert all(line.startswith("wsload worker: ") for line in lines), err


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.asyncio
async def test_a_well_behaved_target_is_unaffected(engine: str) -> None:
    """The control case: the same raw-socket server, echoing, costs nothing."""
    result, server, _ = await _run("echo", engine)
    c = result.counters
    assert result.errors == {}
    assert c["received"] == c["sent"] > 0
    assert server.close_codes == {1000: CLIENTS}


@pytest.mark.asyncio
async def test_websocket_client_applies_the_size_limit() -> None:
    """The seed API (WebSocketClient) refuses a message over its limit with 1009, too."""
    server = HostileServer("too_big", LIMIT)
    port = await server.start()
    try:
        client = WebSocketClient(f"ws://127.0.0.1:{port}/ws", max_message_size=LIMIT)
        await client.open()
        await client.send_message({"seq": 1})
        with pytest.raises(NotConnected, match="1009"):
            await client.receive_message(timeout=5)
        await client.disconnect()
    finally:
        await server.stop()
    assert server.close_codes == {1009: 1}


@pytest.mark.parametrize(
    ("code", "allowed"),
    [
        (1000, True),
        (1003, True),
        (1004, False),
        (1005, False),
        (1006, False),
        (1007, True),
        (1014, True),
        (1015, False),
        (2999, False),
        (3000, True),
        (4999, True),
        (5000, False),
        (0, False),
        (999, False),
    ],
)
def test_close_codes_allowed_on_the_wire(code: int, allowed: bool) -> None:
    assert valid_close_code(code) is allowed


def test_failure_kinds() -> None:
    assert [failure_kind(c) for c in (1002, 1007, 1009, 1011)] == [
        "protocol",
        "protocol",
        "too_big",
        "failed_1011",
    ]

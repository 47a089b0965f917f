"""The load engine against the real reference server on loopback.

Every test checks the accounting identity and, where the server has them,
compares the engine's counters with the server's own (``/api/stats``).
"""

from __future__ import annotations

import asyncio
import socket
from array import array
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.integration.conftest import ServerFactory, stats
from tests.integration.engine_run import each_engine, spec_for  # noqa: F401 (the autouse fixture)
from wsload.common.histogram import LatencyHistogram
from wsload.common.spec import MAX_PAYLOAD_SIZE, JobSpec
from wsload.worker.engine import EngineResult
from wsload.worker.engines import create_engine
from wsload.worker.recorder import WindowBatch
from wsload.worker.schedule import Share


async def run_engine(spec: JobSpec, **kwargs: Any) -> tuple[EngineResult, list[WindowBatch]]:
    batches: list[WindowBatch] = []
    result = await create_engine(spec, on_batch=batches.append, **kwargs).run()
    return result, batches


def latencies(batches: list[WindowBatch], attr: str = "latency") -> LatencyHistogram:
    hist = LatencyHistogram()
    for batch in batches:
        values = array("I")
        values.frombytes(getattr(batch, attr))
        for v in values:
            hist.record(v)
    return hist


def assert_balanced(result: EngineResult, batches: list[WindowBatch]) -> None:
    c = result.counters
    assert c["sent"] == c["received"] + c["timed_out"] + c["lost"] + c["unanswered"], c
    for name, total in c.items():
        assert sum(b.counters.get(name, 0) for b in batches) == total, name
    assert batches[-1].final
    assert c["clients_connected"] == 0


@pytest.mark.asyncio
async def test_counts_match_the_server(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    spec = spec_for(server.ws_url, num_clients=20, duration=2.0, interval=0.05)
    result, batches = await run_engine(spec)
    assert_balanced(result, batches)
    c = result.counters
    assert c["sent"] > 20 * 30  # about 40 per client; the schedule is not starved
    assert c["received"] == c["sent"]
    s = stats(server.api_url)
    assert s["messages_received"] == c["sent"]
    assert s["messages_sent"] == c["received"]
    assert s["connections_opened"] == c["connects"] == 20
    assert latencies(batches).count == c["received"]
    assert latencies(batches, "connect").count == 20


@pytest.mark.asyncio
async def test_closed_loop_and_rate_models(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    closed, batches = await run_engine(
        spec_for(server.ws_url, num_clients=4, duration=1.0, interval=0.0)
    )
    assert_balanced(closed, batches)
    assert closed.counters["sent"] > 200
    rated, batches = await run_engine(
        spec_for(server.ws_url, num_clients=5, duration=2.0, rate=100.0),
        share=Share(count=5, total=5, rate=100.0),
    )
    assert_balanced(rated, batches)
    assert 180 <= rated.counters["sent"] <= 205  # 100/s for 2 s, no burst at the end


@pytest.mark.asyncio
async def test_the_documented_maximum_payload_round_trips(serve_factory: ServerFactory) -> None:
    """``--payload-size 16777216`` (the documented maximum) against the reference server."""
    server = serve_factory()
    spec = spec_for(
        server.ws_url, num_clients=1, duration=1.0, interval=0.5,
        payload_size=MAX_PAYLOAD_SIZE, max_message_size=MAX_PAYLOAD_SIZE,
    )  # fmt: skip
    result, batches = await run_engine(spec)
    assert_balanced(result, batches)
    c = result.counters
    assert c["received"] == c["sent"] >= 1
    assert c["bytes_received"] == c["sent"] * MAX_PAYLOAD_SIZE
    assert result.errors == {}
    assert stats(server.api_url)["echoes_sent"] == c["sent"]


@pytest.mark.asyncio
async def test_stall_shows_in_latency_from_intended_send(serve_factory: ServerFactory) -> None:
    server = serve_factory("--stall-every", "1.0", "--stall-for", "0.4")
    spec = spec_for(server.ws_url, num_clients=5, duration=3.0, interval=0.02)
    result, batches = await run_engine(spec)
    assert_balanced(result, batches)
    hist = latencies(batches)
    # Messages sent at the start of a stall wait for its end: ~400 ms.
    assert hist.value_at_percentile(100) >= 300_000
    # Roughly a third of all messages fall inside a stall window.
    assert hist.value_at_percentile(80) >= 50_000
    assert stats(server.api_url)["messages_received"] == result.counters["sent"]


@pytest.mark.asyncio
async def test_dropped_replies_time_out_once(serve_factory: ServerFactory) -> None:
    server = serve_factory("--drop-rate", "0.3", "--seed", "7")
    spec = spec_for(server.ws_url, num_clients=5, duration=2.0, interval=0.02, reply_timeout=0.3)
    result, batches = await run_engine(spec)
    assert_balanced(result, batches)
    c = result.counters
    s = stats(server.api_url)
    assert s["dropped"] > 0
    # Each dropped message timed out exactly once (or was still pending at stop).
    assert c["timed_out"] + c["unanswered"] == s["dropped"]
    assert c["received"] == s["messages_sent"]
    assert c["late"] == 0


@pytest.mark.asyncio
async def test_reconnects_after_server_closes(serve_factory: ServerFactory) -> None:
    server = serve_factory("--close-after", "10")
    spec = spec_for(server.ws_url, num_clients=3, duration=2.0, interval=0.02)
    result, batches = await run_engine(spec)
    assert_balanced(result, batches)
    c = result.counters
    assert c["disconnects"] >= 3
    assert c["reconnects"] >= 3
    s = stats(server.api_url)
    assert s["connections_opened"] == c["connects"]
    # a message the client wrote while the server's close was on its way is dropped
    # by the server's library unread (RFC 6455: data after a close frame is discarded);
    # the client counts it sent and lost, never received: the books still meet
    assert c["sent"] - c["lost"] <= s["messages_received"] <= c["sent"]
    assert c["received"] <= s["messages_received"]
    assert "closed_1000" not in result.errors  # a normal close is not an error


@pytest.mark.asyncio
async def test_out_of_order_replies_match_by_id() -> None:
    """A server that answers each pair of messages in reverse order."""

    async def reverse_pairs(ws: ServerConnection) -> None:
        held: list[str | bytes] = []
        async for msg in ws:
            held.append(msg)
            if len(held) == 2:
                for m in reversed(held):
                    await ws.send(m)
                held.clear()

    async with serve(reverse_pairs, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        spec = spec_for(f"ws://127.0.0.1:{port}/", num_clients=2, duration=1.0, interval=0.01)
        result, batches = await run_engine(spec)
    assert_balanced(result, batches)
    c = result.counters
    assert c["late"] == 0
    assert c["received"] >= c["sent"] - 2  # at most one unpaired message per client


@pytest.mark.asyncio
async def test_replies_that_skip_messages_match_by_id() -> None:
    """A server that answers only every second message, at once.

    Matched by id, every answered message has a tiny latency and the others
    time out. Matched in order, each reply would be credited to the oldest
    unanswered message and latencies would grow without bound.
    """

    async def every_second(ws: ServerConnection) -> None:
        n = 0
        async for msg in ws:
            n += 1
            if n % 2 == 0:
                await ws.send(msg)

    async with serve(every_second, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        spec = spec_for(
            f"ws://127.0.0.1:{port}/", num_clients=2, duration=1.5, interval=0.02,
            reply_timeout=0.2, drain_timeout=0.3,
        )  # fmt: skip
        result, batches = await run_engine(spec)
    assert_balanced(result, batches)
    c = result.counters
    assert c["received"] >= c["sent"] // 2 - 2
    assert c["timed_out"] + c["unanswered"] >= c["sent"] // 2 - 2
    # In order, half the replies would be charged to older messages: the median would
    # grow by an interval per message. By id it stays tiny; a single stall of a loaded
    # machine moves the tail only, so the median is what tells the two apart.
    assert latencies(batches).value_at_percentile(50) < 15_000


@pytest.mark.asyncio
async def test_pushes_unknown_ids_and_duplicates_are_never_replies() -> None:
    """A server that, before each echo, pushes three messages that answer nothing
    (no id, id 0, an id never sent) and repeats the previous echo every fifth time.

    Everything it sends before an echo is read before that echo is, so the
    counts are exact: pushes are unsolicited, repeats late, echoes received.
    """
    sent = {"pushes": 0, "repeats": 0}

    async def noisy(ws: ServerConnection) -> None:
        previous: str | bytes | None = None
        n = 0
        async for msg in ws:
            n += 1
            if previous is not None and n % 5 == 0:
                await ws.send(previous)
                sent["repeats"] += 1
            for push in ('{"type": "heartbeat"}', '{"seq": 0}', '{"seq": 999999999}'):
                await ws.send(push)
                sent["pushes"] += 1
            await ws.send(msg)
            previous = msg

    async with serve(noisy, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        spec = spec_for(f"ws://127.0.0.1:{port}/", num_clients=3, duration=1.0, interval=0.02)
        result, batches = await run_engine(spec)
    assert_balanced(result, batches)
    c = result.counters
    assert c["received"] == c["sent"] > 0
    assert c["unsolicited"] == sent["pushes"] == 3 * c["sent"]
    assert c["late"] == sent["repeats"] > 0


@pytest.mark.asyncio
async def test_a_target_that_never_reads_holds_the_schedule_not_memory() -> None:
    """64 KiB messages at 1,000/s per client to a server that never reads.

    Once the socket buffers are full, the connection's writes pause and the
    sender holds its messages (never written while paused) instead of
    queueing 128 MiB per client; the run still ends on time, accounted.
    """

    async def never_reads(ws: ServerConnection) -> None:
        await ws.wait_closed()

    size, rate, duration = 65536, 2000.0, 2.0
    async with serve(
        never_reads, "127.0.0.1", 0, max_queue=1, max_size=None, close_timeout=0.5
    ) as server:
        port = server.sockets[0].getsockname()[1]
        spec = spec_for(
            f"ws://127.0.0.1:{port}/", num_clients=2, duration=duration, rate=rate,
            payload_size=size, max_message_size=2 * size, drain_timeout=0.5, connect_timeout=2.0,
        )  # fmt: skip
        started = asyncio.get_running_loop().time()
        result, batches = await run_engine(spec, share=Share(count=2, total=2, rate=rate))
        took = asyncio.get_running_loop().time() - started
    assert_balanced(result, batches)
    c = result.counters
    assert 0 < c["sent"] * size <= 2 * 48 * 1024 * 1024  # socket buffers' worth, not 256 MiB
    assert c["received"] == 0
    assert took < duration + 0.5 + 2 * 2.0 + 2  # duration, drain, a bounded close, slack
    assert c["cpu_ms"] > 0  # the worker's CPU time, sampled with the final window too


@pytest.mark.asyncio
async def test_refused_and_rejected_connections_are_counted() -> None:
    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = spec_for(f"ws://127.0.0.1:{port}/", num_clients=3, duration=0.5, interval=0.1)
    result, batches = await run_engine(spec)
    assert_balanced(result, batches)
    assert result.counters["connects"] == 0
    assert result.errors["refused"] == result.counters["connect_failures"] >= 3
    assert f"127.0.0.1:{port}" in result.error_texts["refused"]  # why, for the summary


@pytest.mark.asyncio
async def test_http_status_of_rejected_handshake(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    wrong_path = server.ws_url.replace("/ws", "/nope")
    spec = spec_for(wrong_path, num_clients=2, duration=0.5, interval=0.1, reconnect=False)
    result, _ = await run_engine(spec)
    assert result.counters["connect_failures"] == 2
    (kind,) = result.errors
    assert kind.startswith("http_4")


@pytest.mark.asyncio
async def test_stop_early_drains_and_closes(serve_factory: ServerFactory) -> None:
    server = serve_factory("--delay", "200")
    spec = spec_for(server.ws_url, num_clients=10, duration=30.0, interval=0.05, drain_timeout=0.05)
    engine = create_engine(spec)
    task = asyncio.create_task(engine.run())
    await asyncio.sleep(1.0)
    engine.stop()
    result = await asyncio.wait_for(task, timeout=10)
    c = result.counters
    assert result.stopped_early
    assert result.balanced
    assert c["unanswered"] > 0  # replies 200 ms away were still in flight
    assert stats(server.api_url)["connections_open"] == 0
    assert stats(server.api_url)["messages_received"] == c["sent"]


@pytest.mark.asyncio
async def test_ramp_up_spreads_connections(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    spec = spec_for(server.ws_url, num_clients=10, duration=2.0, ramp_up=1.0, interval=0.1)
    opened: list[int] = []

    def watch(batch: WindowBatch) -> None:
        opened.append(batch.counters.get("connects", 0))

    await create_engine(spec, on_batch=watch).run()
    # The connections arrive over ~4 windows of 250 ms, not all in the first.
    assert max(opened) < 10
    assert sum(opened) == 10

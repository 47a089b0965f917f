"""Conversations on the real engines against the reference server (``wsload serve``).

Each test runs on both client engines in-process and compares the per-step
counts with the server's own (``/api/stats``): every expect met is a reply
the server sent, every push is unsolicited and never a reply, and the
identity ``expected = met + timed_out + failed + lost + unanswered`` holds
per step and for the run, windows summing to the totals.
"""

from __future__ import annotations

import asyncio
from array import array
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.integration.conftest import ServerFactory, stats
from tests.integration.engine_run import each_engine, engine_name, spec_for  # noqa: F401
from wsload.common.spec import JobSpec, build_spec
from wsload.worker.engine import Engine, EngineResult
from wsload.worker.engines import create_engine
from wsload.worker.recorder import WindowBatch

ROOT = Path(__file__).resolve().parents[2]


async def run(spec: JobSpec) -> tuple[Engine, EngineResult, list[WindowBatch]]:
    batches: list[WindowBatch] = []
    engine = create_engine(spec, on_batch=batches.append)
    assert engine.talk is not None  # a conversation, not the echo path
    result = await engine.run()
    return engine, result, batches


def step_totals(batches: list[WindowBatch]) -> dict[str, dict[str, int]]:
    """Every step's counters, summed over the windows."""
    out: dict[str, dict[str, int]] = {}
    for batch in batches:
        for name, step in batch.steps.items():
            mine = out.setdefault(name, {})
            for k, v in step.counters.items():
                mine[k] = mine.get(k, 0) + v
            assert len(step.latency) == len(step.service) == 4 * step.counters.get("met", 0)
    return out


def assert_balanced(engine: Engine, result: EngineResult, batches: list[WindowBatch]) -> None:
    c = result.counters
    assert result.balanced, c
    for name, total in c.items():
        assert sum(b.counters.get(name, 0) for b in batches) == total, name
    assert c["clients_connected"] == 0
    totals = engine.recorder.steps.totals()
    summed = step_totals(batches)
    for name, s in totals.items():
        assert s["expected"] == sum(v for k, v in s.items() if k != "expected"), (name, s)
        assert {k: v for k, v in s.items() if v} == summed.get(name, {}), name
    assert sum(s["expected"] for s in totals.values()) == c["expected"]
    assert sum(s["met"] for s in totals.values()) == c["received"]
    unsolicited = sum(
        b.scenarios.get(n, {}).get("unsolicited", 0) for b in batches for n in b.scenarios
    )
    assert unsolicited == c["unsolicited"]


ECHO_LOOP = [
    {"send": {"type": "msg", "seq": "{seq}", "c": "{client_id}"}},
    {"name": "echo", "expect": {"seq": "{seq}", "c": "{client_id}"}},
]


@pytest.mark.asyncio
async def test_a_loop_counts_what_the_server_echoed_and_pushes_are_unsolicited(
    serve_factory: ServerFactory,
) -> None:
    server = serve_factory("--push-every", "20")
    spec = spec_for(server.ws_url, num_clients=8, duration=2.0, interval=0.02, loop=ECHO_LOOP)
    engine, result, batches = await run(spec)
    assert_balanced(engine, result, batches)
    c = result.counters
    echo = engine.recorder.steps.totals()["echo"]
    s = stats(server.api_url)
    assert c["sent"] == s["messages_received"]
    assert echo["met"] == s["echoes_sent"] == c["received"]
    assert echo["met"] > 8 * 30  # about 100 per client: the loop ran on pace
    assert 8 * 30 < c["unsolicited"] <= s["pushed"]  # heartbeats, none taken as a reply
    assert echo["timed_out"] == echo["failed"] == echo["lost"] == 0
    scenario = engine.recorder.steps.scenarios["default"]
    assert scenario.unsolicited == c["unsolicited"]
    # One send per iteration, but an iteration begun as the run ends (its send
    # held by a full write buffer, or due after sending stopped) sends nothing.
    assert c["sent"] <= scenario.iterations <= c["sent"] + 8


CHAT_SETUP: list[dict[str, Any]] = [
    {
        "send": {"type": "login", "user": "{client_id}", "password": "pw-{client_id}"},
    },
    {
        "name": "login",
        "expect": {"type": "login_ok"},
        "capture": {"token": "token"},
        "fail": {"type": "error"},
    },
    {"send": {"type": "join", "room": "lobby", "token": "{token}"}},
    {"name": "join", "expect": {"type": "joined", "room": "lobby"}},
]
CHAT_LOOP = [
    {"send": {"type": "msg", "id": "m{seq}", "room": "lobby", "token": "{token}", "text": "hi"}},
    {"name": "ack", "expect": {"type": "ack", "id": "m{seq}"}, "fail": {"type": "error"}},
    {"think": 0.02},
]


@pytest.mark.asyncio
async def test_chat_login_captures_a_token_used_by_every_message(
    serve_factory: ServerFactory,
) -> None:
    server = serve_factory("--chat-heartbeat", "50")
    url = server.ws_url.removesuffix("/ws") + "/chat"
    spec = spec_for(
        url, num_clients=6, duration=2.0, interval=0.0, steps=CHAT_SETUP, loop=CHAT_LOOP
    )
    engine, result, batches = await run(spec)
    assert_balanced(engine, result, batches)
    steps = engine.recorder.steps.totals()
    chat = stats(server.api_url)["chat"]
    assert steps["login"]["met"] == chat["logins"] == 6
    assert steps["join"]["met"] == chat["joins"] == 6
    assert steps["ack"]["met"] == chat["acks"] == chat["messages"]
    assert steps["ack"]["met"] > 6 * 20
    assert chat["bad_token"] == chat["errors"] == 0  # the captured token was used
    c = result.counters
    # heartbeats and the other members' broadcasts answer nothing
    assert c["unsolicited"] >= chat["broadcasts"] > 0
    assert c["sent"] == chat["received"]


@pytest.mark.asyncio
async def test_a_failed_login_ends_the_session_and_the_client_tries_again(
    serve_factory: ServerFactory,
) -> None:
    server = serve_factory("--chat-heartbeat", "0")
    url = server.ws_url.removesuffix("/ws") + "/chat"
    setup: list[dict[str, Any]] = [{"send": {"type": "login", "user": "u", "password": "no"}}]
    setup += CHAT_SETUP[1:]
    spec = spec_for(
        url, num_clients=2, duration=1.5, steps=setup, loop=CHAT_LOOP, reconnect_max_delay=0.2
    )
    engine, result, batches = await run(spec)
    assert_balanced(engine, result, batches)
    login = engine.recorder.steps.totals()["login"]
    chat = stats(server.api_url)["chat"]
    assert login["failed"] == chat["login_failures"] >= 4  # each session failed, then again
    assert login["met"] == 0
    assert engine.recorder.steps.totals()["ack"]["expected"] == 0  # the loop never ran
    assert result.counters["connects"] == chat["connections"] == login["failed"]
    assert result.counters["disconnects"] == 0  # every close was ours


@pytest.mark.asyncio
async def test_steps_without_a_loop_run_a_session_per_iteration(
    serve_factory: ServerFactory,
) -> None:
    server = serve_factory()
    steps = [
        {"send": {"type": "hello", "seq": "{seq}"}},
        {"name": "hello", "expect": {"seq": "{seq}"}},
    ]
    # reconnect = false: it is about the server closing; a churn session is the program's own
    spec = spec_for(
        server.ws_url, num_clients=3, duration=1.5, interval=0.1, steps=steps, reconnect=False
    )
    engine, result, batches = await run(spec)
    assert_balanced(engine, result, batches)
    hello = engine.recorder.steps.totals()["hello"]
    s = stats(server.api_url)
    c = result.counters
    assert hello["met"] == s["echoes_sent"] == c["sent"]
    assert c["connects"] == s["connections_opened"] == hello["expected"] > 3 * 8
    assert c["reconnects"] == c["connects"] - 3
    assert c["disconnects"] == 0


def connected_series(batches: list[WindowBatch]) -> list[tuple[float, int, int]]:
    """(seconds from the start to the window's end, connections open, messages sent in it)."""
    series = []
    connected = 0
    start = batches[0].window_start
    for batch in batches:
        connected += batch.counters.get("clients_connected", 0)
        series.append((batch.window_end - start, connected, batch.counters.get("sent", 0)))
    return series


@pytest.mark.asyncio
async def test_stages_ramp_the_echo_loads_connections_and_rate(
    serve_factory: ServerFactory,
) -> None:
    """0 -> 4 clients over 1 s at rate 0, the rate 0 -> 40/s over the next, 4 -> 0
    clients over the last at 40/s: the echo load runs as a compiled echo program."""
    server = serve_factory()
    stages = [
        {"duration": 1, "clients": 4, "rate": 0},
        {"duration": 1, "clients": 4, "rate": 40},
        {"duration": 1, "clients": 0, "rate": 40},
    ]
    spec = spec_for(server.ws_url, stages=stages)
    engine, result, batches = await run(spec)
    assert_balanced(engine, result, batches)
    c = result.counters
    series = connected_series(batches)
    assert max(n for _, n, _ in series) == 4 == c["connects"]
    assert c["disconnects"] == 0  # the ramp-down closes them: ours
    assert sum(sent for t, _, sent in series if t < 0.9) == 0  # no rate yet
    assert 45 <= c["sent"] <= 70  # 20 over the ramp of the rate, 40 over the last second
    assert c["sent"] == stats(server.api_url)["messages_received"]
    assert engine.recorder.steps.totals()["reply"]["met"] == c["received"]


@pytest.mark.asyncio
async def test_a_stage_ramping_down_leaves_pending_expects_unanswered(
    serve_factory: ServerFactory,
) -> None:
    server = serve_factory("--delay", "400")
    stages = [
        {"duration": 0.5, "clients": 3},
        {"duration": 1.5, "clients": 3},
        {"duration": 0.5, "clients": 0},
    ]
    spec = spec_for(server.ws_url, stages=stages, interval=0.0, loop=ECHO_LOOP, reply_timeout=5.0)
    engine, result, batches = await run(spec)
    assert_balanced(engine, result, batches)
    echo = engine.recorder.steps.totals()["echo"]
    # slots 2 and 1 leave during the last stage, each cutting off its message in
    # flight; slot 0 leaves at the run's end, where the drain awaits its reply
    assert echo["unanswered"] == 2
    assert echo["lost"] == echo["timed_out"] == 0
    assert echo["met"] >= 3 * 3
    assert result.counters["disconnects"] == 0


@pytest.mark.asyncio
async def test_the_chat_example_logs_every_client_in_as_its_feeder_user(
    serve_factory: ServerFactory,
) -> None:
    """examples/chat.toml: users.csv rows (unique), login -> token -> join -> loop."""
    root = ROOT
    server = serve_factory("--chat-users", str(root / "examples" / "users.csv"))
    url = server.ws_url.removesuffix("/ws") + "/chat"
    spec = build_spec(
        scenario=str(root / "examples" / "chat.toml"), env={}, ws_url=url,
        engine=engine_name(), num_clients=10, duration=2.0, ramp_up=0.5,
    )  # fmt: skip
    engine, result, batches = await run(spec)
    assert_balanced(engine, result, batches)
    steps = engine.recorder.steps.totals()
    chat = stats(server.api_url)["chat"]
    assert steps["login"]["met"] == chat["logins"] == 10  # every row's password was right
    assert chat["login_failures"] == chat["bad_token"] == 0
    assert steps["join"]["met"] == chat["joins"] == 10
    assert steps["ack"]["met"] == chat["acks"] > 0


@pytest.mark.asyncio
async def test_a_stall_shows_in_the_steps_latency_from_the_due_time(
    serve_factory: ServerFactory,
) -> None:
    """The server holds every reply for 0.4 s once a second. A client waits on its one
    pending expect; the iterations due meanwhile go out late, back to back, and each
    one's latency counts from when it was due: not one slow reply per stall, but a
    stall's worth of them, while their service times stay short."""
    server = serve_factory("--stall-every", "1.0", "--stall-for", "0.4")
    spec = spec_for(server.ws_url, num_clients=4, duration=3.0, interval=0.02, loop=ECHO_LOOP)
    engine, result, batches = await run(spec)
    assert_balanced(engine, result, batches)
    latency = array("I")
    service = array("I")
    for batch in batches:
        if "echo" in batch.steps:
            latency.frombytes(batch.steps["echo"].latency)
            service.frombytes(batch.steps["echo"].service)
    assert len(latency) == engine.recorder.steps.totals()["echo"]["met"]
    assert max(latency) >= 300_000  # the message in flight when a stall began
    slow = sum(1 for v in latency if v >= 100_000)
    slow_service = sum(1 for v in service if v >= 100_000)
    # per stall and client, the one in flight waited in service; the late ones did not
    assert slow >= 3 * slow_service > 0
    # the late sends were the target's doing, not behind_schedule (the generator's):
    # test_think_is_not_lateness_and_a_slow_target_is_not_the_generators checks that
    assert stats(server.api_url)["messages_received"] == result.counters["sent"]


@pytest.mark.asyncio
async def test_a_server_that_closes_on_the_client_gets_it_back_and_the_books_balance(
    serve_factory: ServerFactory,
) -> None:
    server = serve_factory("--close-after", "5")
    spec = spec_for(
        server.ws_url, num_clients=3, duration=2.0, interval=0.02, loop=ECHO_LOOP,
        reconnect_max_delay=0.1,
    )  # fmt: skip
    engine, result, batches = await run(spec)
    assert_balanced(engine, result, batches)
    c = result.counters
    echo = engine.recorder.steps.totals()["echo"]
    s = stats(server.api_url)
    assert c["reconnects"] == c["connects"] - 3 > 3
    # every connection the server closed (all but those open at the end, ours to close)
    assert c["connects"] - 3 <= c["disconnects"] <= c["connects"]
    assert echo["met"] == s["echoes_sent"]
    assert echo["met"] + echo["lost"] + echo["unanswered"] == echo["expected"]


@pytest.mark.asyncio
async def test_stopped_early_a_conversation_drains_and_closes(
    serve_factory: ServerFactory,
) -> None:
    server = serve_factory("--delay", "200")
    spec = spec_for(server.ws_url, num_clients=4, duration=30.0, interval=0.0, loop=ECHO_LOOP)
    engine = create_engine(spec)
    task = asyncio.ensure_future(engine.run())
    await asyncio.sleep(1.0)
    engine.stop()
    result = await asyncio.wait_for(task, timeout=10)
    assert result.stopped_early
    assert result.balanced
    echo = engine.recorder.steps.totals()["echo"]
    assert echo["unanswered"] == 0  # the drain awaited the replies in flight
    assert echo["met"] == stats(server.api_url)["echoes_sent"]
    assert result.counters["clients_connected"] == 0


@pytest.mark.asyncio
async def test_a_target_that_never_reads_holds_the_sends_not_memory() -> None:
    """64 KiB sends as fast as the loop goes, to a server that never reads: once the
    socket buffers are full the session holds its next send (nothing is written while
    writes are paused) instead of queueing without bound; the run ends on time."""

    async def never_reads(ws: ServerConnection) -> None:
        await ws.wait_closed()

    size, duration = 65536, 2.0
    async with serve(
        never_reads, "127.0.0.1", 0, max_queue=1, max_size=None, close_timeout=0.5
    ) as server:
        port = server.sockets[0].getsockname()[1]
        spec = spec_for(
            f"ws://127.0.0.1:{port}/", num_clients=2, duration=duration, interval=0.0,
            loop=[{"send": "{pad}"}], payload_size=size, max_message_size=2 * size,
            drain_timeout=0.5, connect_timeout=2.0,
        )  # fmt: skip
        started = asyncio.get_running_loop().time()
        engine, result, batches = await run(spec)
        took = asyncio.get_running_loop().time() - started
    assert_balanced(engine, result, batches)
    c = result.counters
    assert 0 < c["sent"] * size <= 2 * 48 * 1024 * 1024  # socket buffers' worth
    if engine_name() == "picows":  # websockets' send waits instead (drain)
        assert c["write_pauses"] > 0
    assert took < duration + 0.5 + 2 * 2.0 + 2  # duration, drain, a bounded close, slack


def _step_samples(batches: list[WindowBatch], name: str) -> tuple[array[int], array[int]]:
    latency: array[int] = array("I")
    service: array[int] = array("I")
    for batch in batches:
        if name in batch.steps:
            latency.frombytes(batch.steps[name].latency)
            service.frombytes(batch.steps[name].service)
    return latency, service


@pytest.mark.asyncio
async def test_think_is_not_lateness_and_a_slow_target_is_not_the_generators(
    serve_factory: ServerFactory,
) -> None:
    """A think (0.2 s) longer than the interval (0.1 s): each iteration is due when the
    previous one's think ends, so the latency is about the service time (it grew by
    0.1 s per iteration, and the run looked generator-bound). Then a target slower than
    the interval (replies after 60 ms, an iteration due every 20 ms): every iteration
    after the first is due in the past when the previous reply comes, its latency
    counted from its slot (growing), but none of that is the generator's lateness."""
    fast = serve_factory()
    think = [*ECHO_LOOP, {"think": 0.2}]
    spec = spec_for(fast.ws_url, num_clients=1, duration=1.5, interval=0.1, loop=think)
    engine, result, batches = await run(spec)
    assert_balanced(engine, result, batches)
    latency, service = _step_samples(batches, "echo")
    assert len(latency) >= 4
    lateness = sorted(lat - svc for lat, svc in zip(latency, service, strict=True))
    assert lateness[len(lateness) // 2] < 50_000  # the median send left on time

    slow = serve_factory("--delay", "60")
    spec = spec_for(slow.ws_url, num_clients=2, duration=1.5, interval=0.02, loop=ECHO_LOOP)
    engine, result, batches = await run(spec)
    assert_balanced(engine, result, batches)
    latency, service = _step_samples(batches, "echo")
    assert len(latency) >= 4
    assert max(latency) > max(service)  # the schedule's lateness shows in the latency
    # only a client's first send can leave on a (late) timer; the rest follow replies
    assert result.counters["behind_schedule"] <= 2


@pytest.mark.asyncio
async def test_a_step_that_fails_says_why_in_the_errors(serve_factory: ServerFactory) -> None:
    """A capture path the login reply lacks (``tokn``): every login fails, and the
    errors say so once per kind, with the step's name and the start of the reply."""
    server = serve_factory()
    url = server.ws_url.removesuffix("/ws") + "/chat"
    setup = [dict(step) for step in CHAT_SETUP]
    setup[1]["capture"] = {"token": "tokn"}
    spec = spec_for(url, num_clients=2, duration=1.0, interval=0.0, steps=setup, loop=CHAT_LOOP)
    engine, result, batches = await run(spec)
    assert_balanced(engine, result, batches)
    login = engine.recorder.steps.totals()["login"]
    assert login["failed"] > 0
    assert login["met"] == 0
    assert result.errors["capture_missing"] == login["failed"]
    text = result.error_texts["capture_missing"]
    assert text.startswith("login: capture token: no 'tokn' in the reply: {")
    assert '"login_ok"' in text

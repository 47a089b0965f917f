"""``/chat`` of the reference server, as a real ``wsload serve`` process driven by real clients.

Every reply is checked whole and every counter exactly (``/api/stats``
under ``chat``, read once the server has counted what the test waited for).
Timing checks are lower bounds, and waits are for messages or counters,
never fixed sleeps, except where a test shows that nothing arrives.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from tests.integration.conftest import WSLOAD, RunningServer, ServerFactory
from tests.integration.test_testserver import (
    assert_no_traceback,
    flood_a_delayed_server,
    nothing_arrives,
    stats_when,
)
from wsload.testserver.connection import MAX_QUEUED_REPLIES

IDENTITY_REPLIES = ("logins", "login_failures", "joins", "acks", "bad_token", "errors")
RECV_TIMEOUT = 10.0


def chat_url(server: RunningServer) -> str:
    return server.ws_url.removesuffix("/ws") + "/chat"


def chat_connect(server: RunningServer, **kwargs: Any) -> connect:
    return connect(chat_url(server), proxy=None, compression=None, **kwargs)


async def ask(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    """Send one JSON message and return the next JSON message received."""
    await ws.send(json.dumps(message))
    return await recv(ws)


async def recv(ws: ClientConnection) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), RECV_TIMEOUT))
    return data


async def login(ws: ClientConnection, user: str, password: str | None = None) -> str:
    reply = await ask(ws, {"type": "login", "user": user, "password": password or f"pw-{user}"})
    assert reply["type"] == "login_ok", reply
    token: str = reply["token"]
    return token


async def chat_stats(server: RunningServer, **want: int) -> dict[str, Any]:
    """The chat counters, once those named in ``want`` have reached their values."""
    s = await stats_when(server, lambda s: all(s["chat"][k] == v for k, v in want.items()))
    chat: dict[str, Any] = s["chat"]
    for key, value in want.items():
        assert chat[key] == value, (key, chat)
    return chat


def assert_chat_identities(chat: dict[str, Any]) -> None:
    """Every frame received got one reply or was dropped; every frame sent is counted once."""
    replies = sum(chat[k] for k in IDENTITY_REPLIES)
    assert chat["received"] == replies + chat["dropped"], chat
    assert chat["sent"] == replies + chat["broadcasts"] + chat["heartbeats"], chat


@pytest.mark.asyncio
async def test_conversation_replies_broadcasts_and_counters(serve_factory: ServerFactory) -> None:
    server = serve_factory("--chat-heartbeat", "0")
    async with chat_connect(server) as a, chat_connect(server) as b, chat_connect(server) as c:
        reply = await ask(a, {"type": "login", "user": "alice", "password": "pw-alice"})
        assert reply.keys() == {"type", "user", "token"}
        assert (reply["type"], reply["user"]) == ("login_ok", "alice")
        ta = reply["token"]
        tb, tc = await login(b, "bob"), await login(c, "carol")
        assert len({ta, tb, tc}) == 3
        assert len(ta) >= 16
        assert await ask(a, {"type": "join", "room": "r1", "token": ta}) == {
            "type": "joined", "room": "r1", "members": 1,
        }  # fmt: skip
        joined = await ask(b, {"type": "join", "room": "r1", "token": tb, "id": 7})
        assert joined == {"type": "joined", "room": "r1", "members": 2, "id": 7}
        assert (await ask(c, {"type": "join", "room": "r2", "token": tc}))["members"] == 1
        msg = {"type": "msg", "id": "m1", "room": "r1", "token": ta, "text": "héllo"}
        assert await ask(a, msg) == {"type": "ack", "id": "m1"}
        broadcast = {"type": "broadcast", "room": "r1", "from": "alice", "text": "héllo"}
        assert await recv(b) == broadcast
        msg = {"type": "msg", "id": 2, "room": "r1", "token": tb, "text": "hi alice"}
        assert await ask(b, msg) == {"type": "ack", "id": 2}
        assert await recv(a) == {
            "type": "broadcast", "room": "r1", "from": "bob", "text": "hi alice",
        }  # fmt: skip
        assert await nothing_arrives(c)  # another room: no broadcast
    chat = await chat_stats(
        server, connections=3, connections_open=0, received=8, logins=3, joins=3, messages=2,
        acks=2, broadcasts=2, sent=10,
    )  # fmt: skip
    assert (chat["login_failures"], chat["bad_token"], chat["errors"]) == (0, 0, 0)
    assert (chat["dropped"], chat["broadcasts_dropped"], chat["heartbeats"]) == (0, 0, 0)
    assert chat["bytes_received"] > 0
    assert chat["bytes_sent"] > 0
    assert_chat_identities(chat)
    s = await stats_when(server, lambda s: True)
    assert (s["connections_opened"], s["messages_received"]) == (0, 0)  # /ws counts apart
    reset = await asyncio.to_thread(_post, f"{server.api_url}/stats/reset")
    assert set(reset["chat"].values()) == {0}


def _post(url: str) -> dict[str, Any]:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(urllib.request.Request(url, data=b"", method="POST"), timeout=10) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data


@pytest.mark.asyncio
async def test_bad_credentials_with_the_default_rule(serve_factory: ServerFactory) -> None:
    server = serve_factory("--chat-heartbeat", "0")
    async with chat_connect(server) as ws:
        bad = {"type": "login", "user": "dave", "password": "pw-eve"}
        assert await ask(ws, bad) == {"type": "error", "reason": "bad credentials"}
        assert await ask(ws, {**bad, "id": "l1"}) == {
            "type": "error", "reason": "bad credentials", "id": "l1",
        }  # fmt: skip
        # no token was given: joining is refused
        reply = await ask(ws, {"type": "join", "room": "r", "token": ""})
        assert reply == {"type": "error", "reason": "bad token"}
        await login(ws, "dave")
    chat = await chat_stats(server, received=4, login_failures=2, bad_token=1, logins=1)
    assert_chat_identities(chat)


@pytest.mark.asyncio
async def test_users_file_decides_passwords(serve_factory: ServerFactory, tmp_path: Path) -> None:
    users = tmp_path / "users.csv"
    users.write_text("user,password,room\nuser0001,s3cret,a\nuser0002,pw-user0002,b\n")
    server = serve_factory("--chat-users", str(users), "--chat-heartbeat", "0")
    async with chat_connect(server) as ws:
        await login(ws, "user0001", "s3cret")
        await login(ws, "user0002")
        for user, password in (("user0001", "pw-user0001"), ("nobody", "pw-nobody")):
            reply = await ask(ws, {"type": "login", "user": user, "password": password})
            assert reply == {"type": "error", "reason": "bad credentials"}
    await chat_stats(server, logins=2, login_failures=2)


@pytest.mark.asyncio
async def test_bad_token_gets_an_error_and_no_ack(serve_factory: ServerFactory) -> None:
    server = serve_factory("--chat-heartbeat", "0")
    async with chat_connect(server) as a, chat_connect(server) as b:
        ta, tb = await login(a, "alice"), await login(b, "bob")
        await ask(a, {"type": "join", "room": "r", "token": ta})
        await ask(b, {"type": "join", "room": "r", "token": tb})
        msg: dict[str, Any] = {"type": "msg", "room": "r", "text": "x"}
        for n, token in enumerate(["wrong", tb, None]):  # tb: bound to bob's connection
            sent = {**msg, "id": f"m{n}"} | ({} if token is None else {"token": token})
            assert await ask(a, sent) == {"type": "error", "reason": "bad token", "id": f"m{n}"}
        assert await nothing_arrives(b)  # nothing was broadcast
        # a new login makes the old token stale
        ta2 = await login(a, "alice")
        reply = await ask(a, {**msg, "id": "old", "token": ta})
        assert reply == {"type": "error", "reason": "bad token", "id": "old"}
        assert await ask(a, {**msg, "id": "new", "token": ta2}) == {"type": "ack", "id": "new"}
        assert (await recv(b))["type"] == "broadcast"
    chat = await chat_stats(server, bad_token=4, acks=1, messages=1, broadcasts=1, logins=3)
    assert chat["errors"] == 0
    assert_chat_identities(chat)


@pytest.mark.asyncio
async def test_unknown_types_and_bad_requests_are_errors(serve_factory: ServerFactory) -> None:
    server = serve_factory("--chat-heartbeat", "0")
    async with chat_connect(server) as ws:
        assert await ask(ws, {"type": "dance"}) == {"type": "error", "reason": "unknown type"}
        assert await ask(ws, {"id": 5}) == {"type": "error", "reason": "unknown type", "id": 5}
        await ws.send(b"\x00\x01")
        assert (await recv(ws))["reason"].startswith("bad request")
        for text in ("not json", "[1, 2]"):
            await ws.send(text)
            assert (await recv(ws))["reason"].startswith("bad request")
        token = await login(ws, "alice")
        reply = await ask(ws, {"type": "msg", "id": "m", "room": "r", "token": token, "text": "x"})
        assert reply == {"type": "error", "reason": "not in room (join it first)", "id": "m"}
        reply = await ask(ws, {"type": "join", "room": "", "token": token})
        assert reply["reason"].startswith("bad request")
    chat = await chat_stats(server, received=8, errors=7, logins=1)
    assert chat["acks"] == 0
    assert_chat_identities(chat)


@pytest.mark.asyncio
async def test_heartbeats_follow_the_timer(serve_factory: ServerFactory) -> None:
    every = 0.1
    server = serve_factory("--chat-heartbeat", str(every * 1000))
    async with chat_connect(server) as ws:
        opened = time.time()
        beats = [await recv(ws) for _ in range(4)]
        received = time.time()
        # a request is still answered between heartbeats
        await ws.send(json.dumps({"type": "login", "user": "u", "password": "pw-u"}))
        while (reply := await recv(ws))["type"] == "heartbeat":
            beats.append(reply)
        assert reply["type"] == "login_ok"
    assert all(b.keys() == {"type", "ts"} and b["type"] == "heartbeat" for b in beats)
    stamps = [b["ts"] for b in beats]
    assert opened - 1 <= stamps[0]
    assert stamps[3] <= received + 1
    # due every 0.1 s from the connection's start, never early (timers may fire ~1 ms early)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(gap >= every - 0.01 for gap in gaps), gaps
    s = await stats_when(server, lambda s: s["chat"]["connections_open"] == 0)
    assert s["chat"]["heartbeats"] >= len(beats)
    assert_chat_identities(s["chat"])


@pytest.mark.asyncio
async def test_heartbeat_zero_sends_none(serve_factory: ServerFactory) -> None:
    server = serve_factory("--chat-heartbeat", "0")
    async with chat_connect(server) as ws:
        assert await nothing_arrives(ws, 0.5)
    await chat_stats(server, heartbeats=0, connections=1)


@pytest.mark.asyncio
async def test_delay_holds_acks_not_broadcasts(serve_factory: ServerFactory) -> None:
    delay = 0.3
    server = serve_factory("--delay", str(delay * 1000), "--chat-heartbeat", "0")
    async with chat_connect(server) as a, chat_connect(server) as b:
        started = time.monotonic()
        ta, tb = await login(a, "alice"), await login(b, "bob")
        assert time.monotonic() - started >= 2 * delay  # logins are replies too
        await ask(a, {"type": "join", "room": "r", "token": ta})
        await ask(b, {"type": "join", "room": "r", "token": tb})
        sent = time.monotonic()
        for n in range(3):
            msg = {"type": "msg", "id": n, "room": "r", "token": ta, "text": str(n)}
            await a.send(json.dumps(msg))
        broadcasts = [await recv(b) for _ in range(3)]
        acks = [await recv(a) for _ in range(3)]
        assert time.monotonic() - sent >= delay
    assert [m["text"] for m in broadcasts] == ["0", "1", "2"]
    assert acks == [{"type": "ack", "id": n} for n in range(3)]  # in order
    await chat_stats(server, acks=3, broadcasts=3, messages=3)


@pytest.mark.asyncio
async def test_drop_rate_one_has_no_effect(serve_factory: ServerFactory) -> None:
    server = serve_factory("--drop-rate", "1", "--chat-heartbeat", "0")
    async with chat_connect(server) as ws:
        await ws.send(json.dumps({"type": "login", "user": "u", "password": "pw-u"}))
        assert await nothing_arrives(ws)
    chat = await chat_stats(server, received=1, dropped=1, logins=0)
    assert_chat_identities(chat)


@pytest.mark.asyncio
async def test_close_after_closes_once_replied(serve_factory: ServerFactory) -> None:
    server = serve_factory("--close-after", "2", "--chat-heartbeat", "0")
    async with chat_connect(server) as ws:
        token = await login(ws, "u")
        assert (await ask(ws, {"type": "join", "room": "r", "token": token}))["type"] == "joined"
        with pytest.raises(ConnectionClosedOK):
            await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)
        assert (ws.close_code, ws.close_reason) == (1000, "close-after")
    await chat_stats(server, logins=1, joins=1, connections_open=0)


@pytest.mark.asyncio
async def test_a_member_that_never_reads_costs_dropped_broadcasts_not_memory(
    serve_factory: ServerFactory,
) -> None:
    """The sender keeps getting its acks; the silent member's broadcasts are bounded."""
    server = serve_factory("--chat-heartbeat", "0")
    count, text = 800, "x" * 32 * 1024  # 25 MiB of broadcasts: beyond every buffer on the way
    async with chat_connect(server) as a, chat_connect(server, max_queue=1) as b:
        ta, tb = await login(a, "alice"), await login(b, "bob")
        await ask(a, {"type": "join", "room": "r", "token": ta})
        await ask(b, {"type": "join", "room": "r", "token": tb})
        for n in range(count):
            msg = {"type": "msg", "id": n, "room": "r", "token": ta, "text": text}
            assert await ask(a, msg) == {"type": "ack", "id": n}
        chat = (await stats_when(server, lambda s: True))["chat"]
        assert chat["broadcasts_dropped"] > 0, chat
        b.transport.abort()  # leave without reading: whatever was queued is dropped
    chat = await chat_stats(server, connections_open=0, acks=count, messages=count)
    assert chat["broadcasts"] + chat["broadcasts_dropped"] == count
    assert_chat_identities(chat)


@pytest.mark.asyncio
async def test_delay_bounds_the_chat_reply_queue_and_stops_reading(
    serve_factory: ServerFactory,
) -> None:
    """As on ``/ws`` (the same code): a flood against --delay costs a bounded queue."""
    server = serve_factory("--delay", "600000", "--chat-heartbeat", "0")
    chat = await flood_a_delayed_server(server, chat_url(server), lambda s: s["chat"])
    assert chat["received"] == chat["dropped"] > MAX_QUEUED_REPLIES  # nothing answered
    assert chat["errors"] == 0  # ("m1" is not JSON: its error reply was never sent)
    assert_chat_identities(chat)
    s = await stats_when(server, lambda s: True)
    assert (s["messages_received"], s["replies_queued"], s["reads_paused"]) == (0, 0, 0)
    assert_no_traceback(server)


@pytest.mark.asyncio
async def test_room_membership_follows_the_connection(serve_factory: ServerFactory) -> None:
    server = serve_factory("--chat-heartbeat", "0")
    async with chat_connect(server) as a:
        ta = await login(a, "alice")
        async with chat_connect(server) as b:
            tb = await login(b, "bob")
            await ask(b, {"type": "join", "room": "r", "token": tb})
            assert (await ask(a, {"type": "join", "room": "r", "token": ta}))["members"] == 2
        await chat_stats(server, connections_open=1)
        reply = await ask(a, {"type": "msg", "id": 1, "room": "r", "token": ta, "text": "x"})
        assert reply == {"type": "ack", "id": 1}
        assert (await ask(a, {"type": "join", "room": "r", "token": ta}))["members"] == 1
    await chat_stats(server, broadcasts=0, broadcasts_dropped=0)


@pytest.mark.asyncio
async def test_shutdown_closes_chat_clients(serve_factory: ServerFactory) -> None:
    server = serve_factory("--chat-heartbeat", "0")
    async with chat_connect(server) as ws:
        await login(ws, "u")
        server.proc.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), RECV_TIMEOUT)
        assert ws.close_code == 1001
    assert await asyncio.to_thread(server.proc.wait, 10) == 0
    assert server.stderr() == ""


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--chat-heartbeat", "0.5"], "--chat-heartbeat must be 0 or at least 1 ms"),
        (["--chat-heartbeat", "nan"], "--chat-heartbeat"),
        (["--chat-users", "/nonexistent/users.csv"], "--chat-users /nonexistent/users.csv"),
    ],
)
def test_bad_chat_flags_exit_2_with_one_line(args: list[str], needle: str) -> None:
    proc = subprocess.run(
        [WSLOAD, "serve", "--port", "0", *args],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert needle in proc.stderr
    assert proc.stdout == ""


def test_a_users_file_without_the_columns_is_refused(tmp_path: Path) -> None:
    users = tmp_path / "users.csv"
    users.write_text("name,secret\na,b\n")
    proc = subprocess.run(
        [WSLOAD, "serve", "--port", "0", "--chat-users", str(users), "--stall-for", "1"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "must name columns user and password" in proc.stderr
    assert "--stall-for needs --stall-every" in proc.stderr  # every problem at once
    assert proc.stdout == ""

"""The reference test server as a real subprocess, driven by real clients."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedOK

from tests.integration.conftest import WSLOAD, RunningServer, ServerFactory


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def stats(server: RunningServer) -> dict[str, Any]:
    return http("GET", f"{server.api_url}/stats")[1]


def test_prints_the_url_it_bound(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    assert server.ws_url.startswith("ws://127.0.0.1:")
    assert not server.ws_url.endswith(":0/ws")
    assert server.ws_url.endswith("/ws")
    assert server.api_url == server.ws_url.replace("ws://", "http://").replace("/ws", "/api")
    assert http("GET", f"{server.api_url}/health") == (200, {"status": "ok", "connections_open": 0})


@pytest.mark.asyncio
async def test_echo_ping_and_counters_match(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    async with connect(server.ws_url, compression=None) as ws:
        for i in range(100):
            await ws.send(json.dumps({"type": "test", "seq": i}))
            assert json.loads(await ws.recv()) == {"type": "test", "seq": i}
        blob = bytes(range(256)) * 4
        await ws.send(blob)
        assert await ws.recv() == blob
        await ws.send('{"type": "ping"}')
        assert json.loads(await ws.recv()) == {"type": "pong"}
        await ws.send("not json, ping subscribe")
        assert await ws.recv() == "not json, ping subscribe"
    s = stats(server)
    assert s["connections_opened"] == 1
    assert s["messages_received"] == s["messages_sent"] == 103
    assert s["echoes_sent"] == 102
    assert s["pongs_sent"] == 1
    assert s["bytes_received"] == s["bytes_sent"]
    for _ in range(50):  # the close is counted just after the client sees it
        if stats(server)["connections_open"] == 0:
            break
        await asyncio.sleep(0.05)
    assert stats(server)["connections_open"] == 0


@pytest.mark.asyncio
async def test_events_reach_subscribers_only(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    async with (
        connect(server.ws_url) as a,
        connect(server.ws_url) as b,
        connect(server.ws_url) as other,
    ):
        for ws in (a, b):
            await ws.send(json.dumps({"type": "subscribe", "events": ["tick"]}))
            assert json.loads(await ws.recv()) == {"type": "subscribed", "events": ["tick"]}
        await other.send(json.dumps({"type": "subscribe", "events": ["tock"]}))
        await other.recv()
        body = json.dumps({"event": "tick", "data": {"x": 1}, "count": 3}).encode()
        status, answer = await asyncio.to_thread(http, "POST", f"{server.api_url}/events", body)
        assert status == 200
        assert answer == {"event": "tick", "count": 3, "subscribers": 2, "deliveries": 6}
        for ws in (a, b):
            got = [json.loads(await ws.recv()) for _ in range(3)]
            assert [e["seq"] for e in got] == [1, 2, 3]
            assert all(e["event"] == "tick" and e["data"] == {"x": 1} for e in got)
            assert len({e["id"] for e in got}) == 3
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(other.recv(), timeout=0.3)
    s = stats(server)
    assert s["events_published"] == 3
    assert s["events_delivered"] == 6


@pytest.mark.asyncio
async def test_delay(serve_factory: ServerFactory) -> None:
    server = serve_factory("--delay", "150")
    async with connect(server.ws_url) as ws:
        t0 = time.monotonic()
        await ws.send("a")
        await ws.send("b")
        assert [await ws.recv(), await ws.recv()] == ["a", "b"]
        assert time.monotonic() - t0 >= 0.15


@pytest.mark.asyncio
async def test_drop_everything(serve_factory: ServerFactory) -> None:
    server = serve_factory("--drop-rate", "1")
    async with connect(server.ws_url) as ws:
        for _ in range(5):
            await ws.send("x")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), timeout=0.3)
    s = stats(server)
    assert (s["messages_received"], s["dropped"], s["messages_sent"]) == (5, 5, 0)


@pytest.mark.asyncio
async def test_close_after(serve_factory: ServerFactory) -> None:
    server = serve_factory("--close-after", "3")
    async with connect(server.ws_url) as ws:
        for i in range(3):
            await ws.send(str(i))
        assert [await ws.recv() for _ in range(3)] == ["0", "1", "2"]
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()
        assert ws.close_code == 1000
        assert ws.close_reason == "close-after"


@pytest.mark.asyncio
async def test_stall_holds_replies(serve_factory: ServerFactory) -> None:
    server = serve_factory("--stall-every", "1", "--stall-for", "0.5")
    async with connect(server.ws_url) as ws:
        worst = 0.0
        for _ in range(20):
            t0 = time.monotonic()
            await ws.send("x")
            await ws.recv()
            worst = max(worst, time.monotonic() - t0)
            await asyncio.sleep(0.05)
        assert worst >= 0.2  # some message met a stall


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("POST", "/events", b"{nope", 400, "not valid JSON"),
        ("POST", "/events", b"[1]", 400, "JSON object"),
        ("POST", "/events", b'{"event": ""}', 400, "non-empty string"),
        ("POST", "/events", b'{"event": "x", "count": 0}', 400, "'count' must be 1..10000"),
        ("POST", "/events", b'{"event": "x", "count": "3"}', 400, "must be an integer"),
        ("GET", "/nowhere", None, 404, "Not Found"),
        ("DELETE", "/stats", None, 405, "Method Not Allowed"),
        ("POST", "/events", b"x" * (2 * 1024 * 1024), 413, "body larger than"),
    ],
)
def test_http_errors_are_json_and_harmless(
    serve_factory: ServerFactory, method: str, path: str, body: bytes | None, status: int,
    needle: str,
) -> None:  # fmt: skip
    server = serve_factory()
    got_status, answer = http(method, f"{server.api_url}{path}", body)
    assert got_status == status
    assert needle in answer["error"]
    assert http("GET", f"{server.api_url}/health")[0] == 200  # still serving


def test_plain_get_on_ws_is_a_4xx(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    status, answer = http("GET", server.api_url.replace("/api", "/ws"))
    assert status == 400
    assert "WebSocket upgrade" in answer["error"]


@pytest.mark.parametrize(
    "args",
    [
        ["--port", "70000"],
        ["--drop-rate", "2"],
        ["--delay", "-5"],
        ["--stall-for", "1"],
        ["--stall-every", "1", "--stall-for", "2"],
        ["--nonsense"],
    ],
)
def test_bad_flags_exit_2_with_one_line(args: list[str]) -> None:
    proc = subprocess.run(
        [WSLOAD, "serve", *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_port_in_use_exits_2(serve_factory: ServerFactory) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        proc = subprocess.run(
            [WSLOAD, "serve", "--port", str(port)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"wsload serve: cannot listen on 127.0.0.1:{port}: address already in use"
    )


def test_sigterm_and_sigint_exit_cleanly(serve_factory: ServerFactory) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        server = serve_factory()
        server.proc.send_signal(sig)
        assert server.proc.wait(timeout=10) == 0

"""The event mode as a job of the fan-out machinery, end to end (real servers, one worker).

``tests/integration/test_modes.py`` holds the seed's outputs (missing events
counted exactly, a refused trigger owed); here: what the move to the engine
must not change -- a gateway that wants JSON still gets JSON, names are sent
literally, a name given twice is owed once -- and the design's rule that the
worker never imports the coordinator.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import WSMsgType, web

from tests.integration.conftest import ServerFactory, stats
from wsload.coordinator.checks_api import WebSocketEventTester


def by_name(summary: dict[str, object]) -> dict[str, dict[str, str]]:
    checks = summary["checks"]
    assert isinstance(checks, list)
    return {c["name"]: c for c in checks}


class Gateway:
    """A strict events API: JSON bodies only (415 otherwise), events to subscribers of a name."""

    def __init__(self) -> None:
        self.subscribers: dict[str, set[web.WebSocketResponse]] = {}
        self.content_types: list[str] = []
        self.bodies: list[object] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ws", self.ws)
        app.router.add_post("/api/events", self.events)
        return app

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if data.get("type") == "subscribe":
                for name in data["events"]:
                    self.subscribers.setdefault(name, set()).add(ws)
                await ws.send_json({"type": "subscribed", "events": data["events"]})
        for subs in self.subscribers.values():
            subs.discard(ws)
        return ws

    async def events(self, request: web.Request) -> web.Response:
        self.content_types.append(request.content_type)
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(reason="JSON only")
        body = await request.json()
        self.bodies.append(body)
        name, count = body["event"], body["count"]
        for seq in range(1, count + 1):
            event = {"type": "event", "event": name, "seq": seq, "sent_at": time.time()}
            for ws in list(self.subscribers.get(name, ())):
                await ws.send_json(event)
        return web.json_response({"ok": True})


@pytest_asyncio.fixture
async def gateway() -> AsyncIterator[tuple[Gateway, str]]:
    gw = Gateway()
    runner = web.AppRunner(gw.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        yield gw, f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.timeout(120)
@pytest.mark.asyncio
async def test_a_gateway_that_takes_only_json_gets_json_and_literal_names(
    gateway: tuple[Gateway, str],
) -> None:
    """The trigger goes as application/json (as the event mode always sent it); an event
    name with braces is sent as it is, never rendered as a template."""
    gw, host = gateway
    names = ("price{seq}", "news")
    results = await asyncio.wait_for(
        WebSocketEventTester(
            f"http://{host}/api", f"ws://{host}/ws", num_clients=3, event_count=4,
            event_names=names, event_wait=1.0,
        ).run_event_test(),
        timeout=100,
    )  # fmt: skip
    assert gw.content_types == ["application/json", "application/json"]
    assert sorted(b["event"] for b in gw.bodies) == sorted(names)  # type: ignore[index]
    assert all(b["data"] == {"source": "wsload"} for b in gw.bodies)  # type: ignore[index]
    assert results["ok"], results["checks"]
    assert (results["total_expected"], results["total_received"]) == (24, 24)
    assert results["missing"] == []
    checks = by_name(results)
    assert checks["subscribe"]["reason"] == "subscribed to price{seq}, news (3 of 3 acknowledged)"
    assert checks["trigger price{seq}"]["status"] == "pass"


@pytest.mark.timeout(120)
def test_an_event_name_given_twice_is_triggered_twice_and_owed_once(
    serve_factory: ServerFactory,
) -> None:
    """The server sends each event twice: owed once, so the second copies are duplicates."""
    server = serve_factory()
    results = asyncio.run(
        WebSocketEventTester(
            server.api_url, server.ws_url, num_clients=2, event_count=3,
            event_names=("x", "x"), event_wait=0.5,
        ).run_event_test()
    )  # fmt: skip
    s = stats(server.api_url)
    assert s["events_published"] == 6  # two triggers of 3
    assert (results["total_expected"], results["total_received"]) == (6, 6)
    assert results["duplicates"] == 6
    assert [c["name"] for c in results["checks"]].count("trigger x") == 2
    assert all(c["status"] == "pass" for c in results["checks"] if c["name"] == "trigger x")
    assert by_name(results)["deliveries"]["reason"] == "0 of 6 events missing (); 6 duplicates"
    assert not results["ok"]


def test_the_worker_never_imports_the_coordinator() -> None:
    """Dependencies point one way: coordinator -> common <- worker."""
    probe = (
        "import importlib, pkgutil, sys\n"
        "import wsload.worker as w\n"
        "for m in pkgutil.walk_packages(w.__path__, 'wsload.worker.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(sorted(k for k in sys.modules if k.startswith('wsload.coordinator')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"

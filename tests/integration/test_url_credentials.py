"""URL credentials end to end: both engines send them as Basic auth, no output shows them.

The target is a websockets echo server in a thread of the test process that
records each handshake's ``Authorization`` header; ``wsload run`` is the
installed command, with its real workers, against it on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request

from tests.integration.conftest import WSLOAD

USER, PASSWORD = "alice", "s3cr@t pass"
URL_USERINFO = "alice:s3cr%40t%20pass"
TOKEN = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


class AuthEcho:
    """An echo server on 127.0.0.1 that records every handshake's Authorization header."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(),))
        self._thread.start()
        assert self._ready.wait(10), "the echo server did not start"

    async def _main(self) -> None:
        self._stop = self._loop.create_future()

        def record(_conn: ServerConnection, request: Request) -> None:
            self.seen.append(request.headers.get("Authorization"))

        async def echo(conn: ServerConnection) -> None:
            async for message in conn:
                await conn.send(message)

        async with serve(echo, "127.0.0.1", 0, process_request=record) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop

    def close(self) -> None:
        stop = self._stop

        def finish() -> None:
            if stop is not None and not stop.done():
                stop.set_result(None)

        self._loop.call_soon_threadsafe(finish)
        self._thread.join(15)
        self._loop.close()


@pytest.fixture
def target() -> Iterator[AuthEcho]:
    server = AuthEcho()
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("engine", ["picows", "websockets"])
def test_url_credentials_are_sent_as_basic_auth_and_never_shown(
    target: AuthEcho, tmp_path: Path, engine: str
) -> None:
    url = f"ws://{URL_USERINFO}@127.0.0.1:{target.port}/ws"
    out_json, out_html = tmp_path / "s.json", tmp_path / "r.html"
    proc = subprocess.run(
        [WSLOAD, "run", "--ws-url", url, "--engine", engine, "-w", "1", "-c", "2", "-d", "1",
         "--interval", "0.1", "--json", str(out_json), "--html", str(out_html)],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert target.seen, "no connection reached the target"
    assert set(target.seen) == {f"Basic {TOKEN}"}
    shown = proc.stdout + proc.stderr + out_json.read_text() + out_html.read_text()
    for secret in ("s3cr", TOKEN, URL_USERINFO):
        assert secret not in shown
    assert json.loads(out_json.read_text())["total_received"] > 0

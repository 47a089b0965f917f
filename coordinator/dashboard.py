"""``--dashboard``: the run's page, live, on loopback while the run lasts.

A small aiohttp application owned by the run (:func:`run_with_dashboard`):
``GET /`` is the report page (:func:`wsload.coordinator.html_report.page_html`)
and ``GET /data`` the document of the run so far, which the page fetches once
a second. At the end the page gets the final document (the one ``--html``
writes), so the browser tab freezes on the same report.

A browser never slows the run: the run only hands over, once a second, a
way to build its summary (:meth:`Dashboard.update`, no work done); the
document is built when a page asks, at most once per second whoever asks,
and its JSON is shared by every request. At most :data:`MAX_REQUESTS`
requests are served at once (more get 503), each bounded in time with its
body's delivery (a reader too slow is cut off), so a slow or hostile client
costs at most that many copies of one document.
It binds 127.0.0.1 only: the page shows the target and the run's
parameters, which are nobody else's business (``ssh -L`` to watch from afar),
and answers only requests addressed to a loopback name, so a web page whose
name resolves to 127.0.0.1 (DNS rebinding) cannot read it either.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from wsload.common.errors import WsloadError
from wsload.coordinator.html_report import page_document, page_html
from wsload.coordinator.summary import RunSummary

HOST = "127.0.0.1"
#: Requests served at once; more are refused (503) rather than queued.
MAX_REQUESTS = 16
#: After the run, how long an open page has to fetch the final document (it asks each second).
LINGER = 5.0
#: A page that fetched within this many seconds counts as open.
OPEN_PAGE = 5.0
#: Seconds one request may take, its body's delivery included.
REQUEST_TIMEOUT = 10.0


def _loopback_host(host: str) -> bool:
    """The Host header names loopback (any port: ``ssh -L`` may forward from another one)."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name in ("127.0.0.1", "localhost", "[::1]")


async def _send(request: web.Request, body: bytes, content_type: str) -> web.StreamResponse:
    """Write the whole body before returning, so a slow reader holds its request's slot."""
    response = web.StreamResponse(headers={"Cache-Control": "no-store"})
    response.content_type = content_type
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body)  # waits while the reader's buffer is full
    await response.write_eof()
    return response


class DashboardError(WsloadError):
    """The dashboard could not start (its port is taken, say): the run does not start either."""


class Dashboard:
    """The live page of one run; :meth:`start`, :meth:`update` each second, :meth:`finish`."""

    def __init__(self, port: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.port = port
        self.url = ""
        self._clock = clock
        self._build: Callable[[], RunSummary] | None = None
        self._final = False
        self._body: bytes | None = None
        self._busy = 0
        self._last_fetch = -1e9
        self._fetched_final = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def update(self, build: Callable[[], RunSummary]) -> None:
        """The run so far, once a second: how to build its summary (built only when asked)."""
        if not self._final:
            self._build = build
            self._body = None

    def finish(self, summary: RunSummary) -> None:
        """The run is over: from now on the page gets the final document."""
        self._final = True
        self._build = None
        self._body = self._encode(page_document(summary))

    def _data(self) -> bytes | None:
        if self._body is None and self._build is not None:
            self._body = self._encode(page_document(self._build(), live=True))
        return self._body

    @staticmethod
    def _encode(doc: dict[str, Any]) -> bytes:
        return json.dumps(doc, allow_nan=False, separators=(",", ":")).encode()

    def app(self) -> web.Application:
        async def page(request: web.Request) -> web.StreamResponse:
            body = self._data()
            doc = None if body is None else json.loads(body)
            return await _send(request, page_html(doc, data_url="/data").encode(), "text/html")

        async def data(request: web.Request) -> web.StreamResponse:
            self._last_fetch = self._clock()
            body = self._data()
            if self._final:
                self._fetched_final.set()
            if body is None:
                return web.Response(status=204)
            return await _send(request, body, "application/json")

        @web.middleware
        async def bounded(request: web.Request, handler: Any) -> web.StreamResponse:
            if not _loopback_host(request.host):  # DNS rebinding: a site named for 127.0.0.1
                return web.Response(status=421, text="this page answers to 127.0.0.1 only")
            if self._busy >= MAX_REQUESTS:
                return web.Response(status=503, text="busy")
            self._busy += 1
            try:
                response: web.StreamResponse = await asyncio.wait_for(
                    handler(request), REQUEST_TIMEOUT
                )
                return response
            except TimeoutError:  # a reader too slow for one document: cut off
                if request.transport is not None:
                    request.transport.close()
                return web.Response(status=503, text="too slow")
            finally:
                self._busy -= 1

        app = web.Application(middlewares=[bounded], client_max_size=1024)
        app.router.add_get("/", page)
        app.router.add_get("/data", data)
        return app

    async def start(self) -> str:
        """Bind 127.0.0.1:port (0: a free one) and return the page's address."""
        self._runner = web.AppRunner(self.app(), handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, self.port, backlog=MAX_REQUESTS)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise DashboardError(
                f"--dashboard-port {self.port}: cannot listen on {HOST}: {exc.strerror or exc}"
            ) from exc
        self.port = int(self._runner.addresses[0][1])
        self.url = f"http://{HOST}:{self.port}/"
        return self.url

    async def linger(self) -> None:
        """Give a page that is open the time to fetch the final document (at most LINGER s)."""
        if self._clock() - self._last_fetch < OPEN_PAGE:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._fetched_final.wait(), LINGER)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def run_with_dashboard(
    run: Callable[[Callable[[Callable[[], RunSummary]], None]], Any],
    *,
    port: int = 0,
    on_address: Callable[[str], None],
) -> RunSummary:
    """Serve the dashboard around one run: ``run(on_live)`` is the run's coroutine.

    The address goes to ``on_address`` before the run starts; the server
    stops when the run ends (after an open page had the final document), or
    fails, or is interrupted.
    """
    board = Dashboard(port)
    on_address(await board.start())
    try:
        summary: RunSummary = await run(board.update)
        board.finish(summary)
        await board.linger()
        return summary
    finally:
        await board.stop()


__all__ = ["HOST", "MAX_REQUESTS", "Dashboard", "DashboardError", "run_with_dashboard"]

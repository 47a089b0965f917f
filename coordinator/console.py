"""``wsload client``: a browser console for poking at a WebSocket endpoint.

The original framework's ``--client``. Serves one self-contained page on
loopback (connect to a URL, send text, JSON or binary, see replies with
timestamps and round-trip times) and opens it in a browser when one is
available; otherwise it prints the address to open.

The page records each connection's conversation and ``POST /export`` turns
the recording into a scenario file (:mod:`wsload.coordinator.recording`,
sans-I/O); the page shows it and downloads it. Nothing is fetched from
anywhere else: the page and its export work offline.
"""

from __future__ import annotations

import asyncio
import json
import signal
import webbrowser
from importlib.resources import files
from urllib.parse import quote

import click
from aiohttp import web

from wsload.coordinator.recording import RecordingError, export_scenario, parse_recording

PAGE = files("wsload.coordinator").joinpath("console.html").read_text(encoding="utf-8")
#: Largest recording the page may post (its events are bounded too).
MAX_EXPORT_BYTES = 64 * 1024 * 1024


def console_app() -> web.Application:
    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    app = web.Application(client_max_size=MAX_EXPORT_BYTES)
    app.router.add_get("/", page)
    app.router.add_post("/export", export)
    return app


async def export(request: web.Request) -> web.Response:
    """``POST /export``: a recording (JSON) in, the scenario (TOML text) out; 400 says why not."""
    try:
        body = json.loads(await request.read())
    except (ValueError, RecursionError):
        return web.Response(status=400, text="the recording is not JSON")
    except web.HTTPRequestEntityTooLarge:
        return web.Response(status=413, text=f"a recording is at most {MAX_EXPORT_BYTES} bytes")
    try:
        # CPU work on a thread: a long recording does not stall the page's other requests
        text = await asyncio.to_thread(lambda: export_scenario(parse_recording(body)))
    except RecordingError as exc:
        return web.Response(status=400, text="; ".join(exc.problems))
    return web.Response(text=text, content_type="application/toml", charset="utf-8")


async def serve_console(ws_url: str, port: int, open_browser: bool) -> int:
    runner = web.AppRunner(console_app(), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        click.echo(f"wsload client: cannot listen on 127.0.0.1:{port}: {exc.strerror}", err=True)
        return 2
    bound = runner.addresses[0][1]
    address = f"http://127.0.0.1:{bound}/?url={quote(ws_url, safe='')}"
    click.echo(f"wsload console at {address}", nl=True)
    if open_browser and not _open(address):
        click.echo("no browser found here: open the address above in one", err=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


def _open(address: str) -> bool:
    try:
        return webbrowser.get().open(address)
    except webbrowser.Error:
        return False


@click.command("client")
@click.option("--ws-url", default="ws://localhost:9000/ws", show_default=True, envvar="WS_URL",
              help="URL filled in on the page [env WS_URL].")  # fmt: skip
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Page port (0: any free).")
@click.option("--no-browser", is_flag=True, help="Only print the address; do not open a browser.")
def client(ws_url: str, port: int, no_browser: bool) -> None:
    """Open a browser console: connect to a WebSocket URL, send text or JSON, see replies.

    It records each connection: "Export scenario" turns what was sent and
    received into a scenario file for `wsload run --scenario`.
    """
    raise SystemExit(asyncio.run(serve_console(ws_url, port, not no_browser)))

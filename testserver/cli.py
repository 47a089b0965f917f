"""``wsload serve``: run the reference test server until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import click
import uvloop
from aiohttp import web

from testserver.app import ReferenceServer
from testserver.faults import Faults

EXIT_BAD_INPUT = 2


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=9000,
    show_default=True,
    help="Port to listen on; 0 picks a free one (the printed line tells which).",
)
@click.option(
    "--delay",
    type=click.FloatRange(min=0),
    default=0.0,
    metavar="MS",
    help="Send every reply MS milliseconds after its message arrived (order kept).",
)
@click.option(
    "--stall-every",
    type=click.FloatRange(min=0),
    default=0.0,
    metavar="S",
    help="Every S seconds, hold all replies for --stall-for seconds.",
)
@click.option(
    "--stall-for",
    type=click.FloatRange(min=0),
    default=0.0,
    metavar="S",
    help="Length of each stall, seconds (below --stall-every).",
)
@click.option(
    "--drop-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    metavar="P",
    help="Probability that a message gets no reply at all.",
)
@click.option(
    "--close-after",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Close each connection (code 1000) after it has sent N messages.",
)
@click.option("--seed", type=int, default=None, help="Seed for --drop-rate, to reproduce a run.")
@click.option(
    "--reuse-port",
    is_flag=True,
    help="Share the port with other servers started the same way (SO_REUSEPORT), for benches.",
)
def serve(
    host: str,
    port: int,
    delay: float,
    stall_every: float,
    stall_for: float,
    drop_rate: float,
    close_after: int,
    seed: int | None,
    reuse_port: bool,
) -> None:
    """Run the reference WebSocket test server (echo, events, stats, faults).

    \b
    Endpoints:
      ws://HOST:PORT/ws           echo; {"type":"ping"} -> pong; {"type":"subscribe","events":[..]}
      POST /api/events            {"event": NAME, "data": ..., "count": N} to subscribers
      GET  /api/health, /api/stats    POST /api/stats/reset
    """
    faults = Faults(delay / 1000.0, stall_every, stall_for, drop_rate, close_after)
    problems = faults.problems()
    if problems:
        raise click.UsageError("; ".join(problems))
    sys.exit(uvloop.run(_serve(ReferenceServer(faults, seed), host, port, reuse_port)))


async def _serve(server: ReferenceServer, host: str, port: int, reuse_port: bool) -> int:
    runner = web.AppRunner(server.app(), handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        reason = (os.strerror(exc.errno) if exc.errno else str(exc)).lower()
        click.echo(f"wsload serve: cannot listen on {host}:{port}: {reason}", err=True)
        return EXIT_BAD_INPUT
    bound = runner.addresses[0][1] if runner.addresses else port
    base = f"{_url_host(host)}:{bound}"
    click.echo(f"wsload test server listening on ws://{base}/ws api http://{base}/api")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0

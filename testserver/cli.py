"""``wsload serve``: run the reference test server until Ctrl-C or SIGTERM.

A thin shell: flags become :class:`wsload.testserver.faults.Faults`, checked before
anything binds; the server is :class:`wsload.testserver.app.ReferenceServer`. Its
only stdout output is two lines, with the real port when ``--port 0``: first the
URL line scripts and tests wait for (``/ws`` and the API; its format is
parsed, so it never changes), then one line listing every endpoint, ``/chat``
included, for the person reading it. Bad flags and unusable addresses end with one
line on stderr and exit code 2; a signal ends it with exit code 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Any

import click
from aiohttp import web

from wsload.common.params import BadInput, FiniteFloat, OneStageCommand
from wsload.testserver.app import CLOSE_TIMEOUT, ReferenceServer
from wsload.testserver.chat import ChatConfigError, load_users
from wsload.testserver.faults import (
    MAX_DELAY,
    MAX_PUSH_EVERY,
    MAX_STALL_PERIOD,
    MIN_PUSH_EVERY,
    Faults,
)
from wsload.testserver.pubsub import DeliveryFaults

EXIT_BAD_INPUT = 2
LISTEN_BACKLOG = 4096  #: the kernel caps it at net.core.somaxconn


def _host(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """Accept ``::1`` and ``[::1]`` alike; refuse an empty host (it would mean every address)."""
    host = value.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        raise click.BadParameter("must not be empty (use 0.0.0.0 or :: to listen everywhere)")
    return host


def url_host(host: str) -> str:
    """``host`` as it appears in a URL: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host else host


def endpoints_line(base: str) -> str:
    """The second line of the banner: every endpoint at ``base`` (``host:port``)."""
    return (
        f"endpoints: echo ws://{base}/ws chat ws://{base}/chat pubsub ws://{base}/pubsub "
        f"api http://{base}/api (events, publish, health, stats)"
    )


@click.command(cls=OneStageCommand)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    callback=_host,
    help="Address to listen on. Loopback by default; 0.0.0.0 or :: exposes the server.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=9000,
    show_default=True,
    help="Port to listen on; 0 picks a free one (the printed URL line tells which).",
)
@click.option(
    "--delay",
    type=FiniteFloat(0, MAX_DELAY * 1000),
    default=0.0,
    metavar="MS",
    help="Send every reply MS milliseconds after its message arrived; replies keep their order.",
)
@click.option(
    "--stall-every",
    type=FiniteFloat(0, MAX_STALL_PERIOD),
    default=0.0,
    metavar="S",
    help=(
        "Stall every S seconds: for --stall-for seconds, hold all replies "
        "(and /pubsub fan-outs), then release them."
    ),
)
@click.option(
    "--stall-for",
    type=FiniteFloat(min=0),
    default=0.0,
    metavar="S",
    help="Length of each stall in seconds; above 0 and below --stall-every.",
)
@click.option(
    "--drop-rate",
    type=FiniteFloat(0.0, 1.0),
    default=0.0,
    metavar="P",
    help="Probability (0..1) that a message is lost: a received one gets no reply and has no "
    "effect (a dropped subscribe subscribes to nothing); an event is not delivered.",
)
@click.option(
    "--close-after",
    type=click.IntRange(min=0),
    default=0,
    metavar="N",
    help="Close each connection (code 1000, reason close-after) once it has sent N messages; "
    "0 never closes.",
)
@click.option(
    "--push-every",
    type=FiniteFloat(0, MAX_PUSH_EVERY * 1000),
    default=0.0,
    metavar="MS",
    help='Push {"type": "heartbeat", "n": K} (no id field, answering nothing) to every '
    "/ws connection every MS milliseconds, as services with heartbeats or broadcasts do; 0 never "
    "(/chat has its own, --chat-heartbeat).",
)
@click.option(
    "--chat-users",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="/chat passwords: a CSV file with a header row naming columns user and password "
    '(others ignored). Without it, the password of user U is "pw-" followed by U.',
)
@click.option(
    "--chat-heartbeat",
    type=FiniteFloat(0, MAX_PUSH_EVERY * 1000),
    default=1000.0,
    show_default=True,
    metavar="MS",
    help='Push {"type": "heartbeat", "ts": EPOCH_SECONDS} to every /chat connection every '
    "MS milliseconds; 0 never.",
)
@click.option(
    "--drop-deliveries",
    type=FiniteFloat(0.0, 1.0),
    default=0.0,
    metavar="P",
    help="Share (0..1) of /pubsub deliveries never sent, drawn per subscriber and "
    'publication (counted "dropped" per topic in /api/stats).',
)
@click.option(
    "--duplicate-deliveries",
    type=FiniteFloat(0.0, 1.0),
    default=0.0,
    metavar="P",
    help='Share (0..1) of /pubsub deliveries sent twice (counted "duplicated" per topic).',
)
@click.option(
    "--delivery-delay",
    type=FiniteFloat(0, MAX_DELAY * 1000),
    default=0.0,
    metavar="MS",
    help="Fan each /pubsub publication out MS milliseconds after it arrived.",
)
@click.option(
    "--stream-every",
    type=FiniteFloat(0, MAX_PUSH_EVERY * 1000),
    default=0.0,
    metavar="MS",
    help='Publish {"type": "tick", "topic": "ticks", "seq": N, "sent_at": EPOCH} to /pubsub '
    'subscribers of "ticks" every MS milliseconds (N = 1, 2, ... never skipping); 0 never.',
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed the random sources of --drop-rate and of the /pubsub delivery faults, so a "
    "run's drops and duplicates can be reproduced.",
)
@click.option(
    "--reuse-port",
    is_flag=True,
    help="Let several servers share the port (SO_REUSEPORT), e.g. one per core for benches.",
)
def serve(
    host: str,
    port: int,
    delay: float,
    stall_every: float,
    stall_for: float,
    drop_rate: float,
    close_after: int,
    push_every: float,
    chat_users: str | None,
    chat_heartbeat: float,
    drop_deliveries: float,
    duplicate_deliveries: float,
    delivery_delay: float,
    stream_every: float,
    seed: int | None,
    reuse_port: bool,
) -> None:
    """Run the reference WebSocket test server: echo, chat, pub/sub, events, stats, faults.

    \b
    WebSocket  ws://HOST:PORT/ws
      text and binary frames are echoed unchanged
      {"type": "ping"}                        -> {"type": "pong"}
      {"type": "subscribe", "events": [...]}  -> {"type": "subscribed", ...}
    WebSocket  ws://HOST:PORT/chat (JSON; replies repeat the request's "id")
      {"type": "login", "user": U, "password": P}  -> {"type": "login_ok", "token": T, ...}
      {"type": "join", "room": R, "token": T}      -> {"type": "joined", "members": N, ...}
      {"type": "msg", "id": I, "room": R, "token": T, "text": X} -> {"type": "ack", "id": I}
        and {"type": "broadcast", "from": U, ...} to the room's other members
      bad token -> {"type": "error", "reason": "bad token"}; heartbeats on a timer
    WebSocket  ws://HOST:PORT/pubsub (JSON)
      {"type": "subscribe", "topic": T}  -> {"type": "subscribed", "topic": T}
      {"type": "publish", "topic": T, "seq": N, "sent_at": EPOCH, "data": D}
        -> {"type": "published", ..., "subscribers": K} and to every subscriber of T
           {"type": "delivery", "topic": T, "seq": N, "sent_at": EPOCH, "data": D}
    HTTP       http://HOST:PORT/api
      POST /api/events   {"event": NAME, "data": ..., "count": N} to NAME's subscribers
      POST /api/publish  {"topic": T, "seq": N, ...}: a /pubsub publication
      GET  /api/stats    counters: /ws's at the top level, /chat's under "chat",
                         /pubsub's under "pubsub" (per topic, and total)
      GET  /api/health   POST /api/stats/reset

    Prints two lines and runs until Ctrl-C or SIGTERM: first
    "wsload test server listening on ws://.../ws api http://.../api" (the line
    scripts read), then "endpoints: echo ws://.../ws chat ws://.../chat pubsub
    ws://.../pubsub api http://.../api (events, publish, health, stats)".
    """
    faults = Faults(
        delay / 1000.0, stall_every, stall_for, drop_rate, close_after, push_every / 1000.0
    )
    problems = faults.problems()
    if 0 < stream_every < MIN_PUSH_EVERY * 1000:
        problems.append(
            f"--stream-every must be 0 or at least {MIN_PUSH_EVERY * 1000:g} ms, "
            f"got {stream_every:g}"
        )
    if 0 < chat_heartbeat < MIN_PUSH_EVERY * 1000:
        problems.append(
            f"--chat-heartbeat must be 0 or at least {MIN_PUSH_EVERY * 1000:g} ms, "
            f"got {chat_heartbeat:g}"
        )
    users = None
    if chat_users is not None:
        try:
            users = load_users(chat_users)
        except ChatConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise BadInput(problems)
    delivery = DeliveryFaults(drop_deliveries, duplicate_deliveries, delivery_delay / 1000.0)
    server = ReferenceServer(
        faults, seed, users, chat_heartbeat / 1000.0, delivery, stream_every / 1000.0
    )
    sys.exit(_run(_serve(server, host, port, reuse_port)))


def _run(main: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed (it is a dependency, except on Windows)."""
    try:
        import uvloop  # optional: not installed on Windows
    except ImportError:
        return asyncio.run(main)
    result: int = uvloop.run(main)
    return result


def _os_reason(exc: OSError) -> str:
    """``address already in use`` rather than the loop's wordier wrapping of it."""
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno).lower()
    return (exc.strerror or str(exc)).lower()  # e.g. a getaddrinfo error (negative codes)


async def _serve(server: ReferenceServer, host: str, port: int, reuse_port: bool) -> int:
    runner = web.AppRunner(
        server.app(), handle_signals=False, access_log=None, shutdown_timeout=CLOSE_TIMEOUT
    )
    await runner.setup()
    # A deep accept queue: a connection storm (thousands of clients ramping up at once)
    # waits there for its handshakes instead of being refused or retried (aiohttp's 128).
    site = web.TCPSite(runner, host, port, backlog=LISTEN_BACKLOG, reuse_port=reuse_port or None)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        reason = _os_reason(exc)
        click.echo(f"wsload serve: cannot bind {url_host(host)}:{port}: {reason}", err=True)
        return EXIT_BAD_INPUT
    bound = runner.addresses[0][1] if runner.addresses else port
    base = f"{url_host(host)}:{bound}"
    click.echo(f"wsload test server listening on ws://{base}/ws api http://{base}/api")
    click.echo(endpoints_line(base))
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


__all__ = ["endpoints_line", "serve", "url_host"]

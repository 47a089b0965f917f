"""A real Socket.IO v4 server for the protocol tests: python-socketio on aiohttp.

wsload's Socket.IO codec must be proved against the library its users run,
not against our idea of the protocol, so this is ``python-socketio``'s own
``AsyncServer`` with a small chat application and its own counters::

    python -m tests.servers.socketio_server --ping-interval 0.2 --ack-delay-ms 50

listens on 127.0.0.1 (a free port), prints ``ready PORT`` once it accepts
connections, and runs until SIGTERM/SIGINT. Namespaces ``/`` and ``/chat``
(``--namespaces``) each have:

- ``chat`` (data: anything): acknowledged after ``--ack-delay-ms`` with
  ``{"ok": true, "echo": DATA}``;
- ``join`` (``{"room": R}``): enters room R, acknowledged ``{"joined": R}``;
- ``blob`` (``{"size": N}``): acknowledged with N bytes (a binary ack);
- every ``--news-interval`` seconds (at most ``--news-count`` times), a
  ``news`` broadcast ``{"room": R, "seq": n}`` to each room someone joined,
  the first after the first join (``--news-after N``: after N joins, so a
  test knows who was in the room at every broadcast).

``--welcome``: the connect handler emits ``welcome`` (``{"sid", "ns"}``)
to the new client -- python-socketio writes it *before* the namespace's
CONNECT packet (``always_connect`` false, its default), as real apps do.

``--token T``: a connect whose ``auth`` is not ``{"token": T}`` is refused
(CONNECT_ERROR). ``--path``: where Engine.IO listens (``/socket.io/``).
``--ping-interval``: Engine.IO pings that often (the test that shows pings
are invisible uses 0.2 s).

``GET /stats`` answers the server's own counts, taken where python-socketio
writes and dispatches packets: ``events`` received per name, ``acks`` written
to connected clients, ``emitted`` event packets written per name (a
broadcast to a room of 5 is 5), ``broadcasts`` (one per room per tick),
``connections`` (namespace connects accepted), ``refused``, ``disconnects``.

:class:`SocketIOServer` starts one as a subprocess for a test and always stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import signal
import subprocess
from types import TracebackType
from typing import Any

from tests.servers.process import start_module, stop_process


class _Counts:
    def __init__(self) -> None:
        self.events: collections.Counter[str] = collections.Counter()
        self.emitted: collections.Counter[str] = collections.Counter()
        self.acks = 0
        self.broadcasts = 0
        self.connections = 0
        self.refused = 0
        self.disconnects = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "events": dict(self.events),
            "emitted": dict(self.emitted),
            "acks": self.acks,
            "broadcasts": self.broadcasts,
            "connections": self.connections,
            "refused": self.refused,
            "disconnects": self.disconnects,
        }


def _make_server(args: argparse.Namespace, counts: _Counts) -> Any:
    """The AsyncServer (a subclass that counts what it writes) with the application."""
    import socketio  # type: ignore[import-untyped]
    from engineio import packet as eio_packet  # type: ignore[import-untyped]
    from socketio import packet as sio_packet

    def live(server: Any, eio_sid: str) -> bool:
        sock = server.eio.sockets.get(eio_sid)
        return sock is not None and not sock.closed

    def written(server: Any, encoded: Any) -> None:
        """Count one Socket.IO packet (its encoded text) written to a live client."""
        if not isinstance(encoded, str):
            return
        pkt = sio_packet.Packet(encoded_packet=encoded)
        if pkt.packet_type in (sio_packet.ACK, sio_packet.BINARY_ACK):
            counts.acks += 1
        elif pkt.packet_type in (sio_packet.EVENT, sio_packet.BINARY_EVENT):
            counts.emitted[str(pkt.data[0])] += 1

    class CountingServer(socketio.AsyncServer):  # type: ignore[misc]
        async def _send_packet(self, eio_sid: str, pkt: Any) -> None:
            if live(self, eio_sid):
                encoded = pkt.encode()
                written(self, encoded[0] if isinstance(encoded, list) else encoded)
            await super()._send_packet(eio_sid, pkt)

        async def _send_eio_packet(self, eio_sid: str, eio_pkt: Any) -> None:
            if live(self, eio_sid) and eio_pkt.packet_type == eio_packet.MESSAGE:
                written(self, eio_pkt.data)
            await super()._send_eio_packet(eio_sid, eio_pkt)

    namespaces = [ns.strip() for ns in args.namespaces.split(",") if ns.strip()]
    sio = CountingServer(
        async_mode="aiohttp",
        namespaces=namespaces,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
        max_http_buffer_size=1_000_000,
    )
    rooms: dict[str, set[str]] = {ns: set() for ns in namespaces}
    joined = asyncio.Event()
    delay = args.ack_delay_ms / 1000.0

    for ns in namespaces:

        def bind(ns: str) -> None:
            async def connect(sid: str, environ: Any, auth: Any = None) -> bool:
                if args.token is not None and (
                    not isinstance(auth, dict) or auth.get("token") != args.token
                ):
                    counts.refused += 1
                    raise socketio.exceptions.ConnectionRefusedError("bad token")
                counts.connections += 1
                if args.welcome:  # emitted before python-socketio sends the CONNECT (40)
                    await sio.emit("welcome", {"sid": sid, "ns": ns}, to=sid, namespace=ns)
                return True

            async def disconnect(sid: str, reason: Any = None) -> None:
                counts.disconnects += 1

            async def chat(sid: str, data: Any = None) -> Any:
                counts.events["chat"] += 1
                if delay:
                    await asyncio.sleep(delay)
                return {"ok": True, "echo": data}

            async def join(sid: str, data: Any = None) -> Any:
                counts.events["join"] += 1
                room = str(data.get("room")) if isinstance(data, dict) else "lobby"
                await sio.enter_room(sid, room, namespace=ns)
                rooms[ns].add(room)
                if counts.events["join"] >= args.news_after:
                    joined.set()
                return {"joined": room}

            async def blob(sid: str, data: Any = None) -> Any:
                counts.events["blob"] += 1
                size = int(data.get("size", 4)) if isinstance(data, dict) else 4
                return {"blob": bytes(range(256)) * (size // 256) + bytes(range(size % 256))}

            for name, handler in (
                ("connect", connect),
                ("disconnect", disconnect),
                ("chat", chat),
                ("join", join),
                ("blob", blob),
            ):
                sio.on(name, handler, namespace=ns)

        bind(ns)

    async def news() -> None:
        seq = 0
        await joined.wait()
        while args.news_count == 0 or seq < args.news_count:
            await asyncio.sleep(args.news_interval)
            seq += 1
            for ns, names in rooms.items():
                for room in sorted(names):
                    counts.broadcasts += 1
                    await sio.emit("news", {"room": room, "seq": seq}, to=room, namespace=ns)

    sio.wsload_news = news
    return sio


async def serve(args: argparse.Namespace) -> None:
    from aiohttp import web

    counts = _Counts()
    sio = _make_server(args, counts)
    app = web.Application()
    sio.attach(app, socketio_path=args.path.strip("/"))

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(counts.as_json())

    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = runner.addresses[0][1]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    news = asyncio.create_task(sio.wsload_news()) if args.news_interval > 0 else None
    print(f"ready {port}", flush=True)
    await stop.wait()
    if news is not None:
        news.cancel()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--path", default="/socket.io/", help="where Engine.IO is mounted")
    parser.add_argument("--namespaces", default="/,/chat", help="comma-separated")
    parser.add_argument("--ping-interval", type=float, default=25.0, help="seconds")
    parser.add_argument("--ping-timeout", type=float, default=20.0, help="seconds")
    parser.add_argument("--ack-delay-ms", type=float, default=0.0, help="before a chat's ack")
    parser.add_argument("--news-interval", type=float, default=0.0, help="seconds (0: none)")
    parser.add_argument("--news-count", type=int, default=0, help="broadcast ticks (0: no end)")
    parser.add_argument("--news-after", type=int, default=0, help="joins before the first")
    parser.add_argument("--token", default=None, help="required auth token (default: none)")
    parser.add_argument(
        "--welcome", action="store_true", help="the connect handler emits 'welcome' first"
    )
    args = parser.parse_args(argv)
    if args.ping_interval <= 0 or args.ping_timeout <= 0 or args.ack_delay_ms < 0:
        parser.error("--ping-interval and --ping-timeout must be > 0, --ack-delay-ms >= 0")
    asyncio.run(serve(args))


class SocketIOServer:
    """``with SocketIOServer("--ack-delay-ms", "50") as srv: srv.url, srv.stats()``:
    a server process, always stopped."""

    def __init__(self, *options: str) -> None:
        self.options = options
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        """The site's root (wsload adds ``/socket.io/``)."""
        return f"ws://127.0.0.1:{self.port}/"

    def stats(self) -> dict[str, Any]:
        """The server's counters (``GET /stats``)."""
        import json
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=10) as r:
            found: dict[str, Any] = json.load(r)
        return found

    def __enter__(self) -> SocketIOServer:
        self.proc, line = start_module("tests.servers.socketio_server", [*self.options], 30)
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError(f"socketio server did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        """Terminate (kill if it must) and wait. Idempotent."""
        stop_process(self.proc)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


if __name__ == "__main__":
    main()

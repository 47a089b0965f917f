"""Unit mode: a conformance battery against one WebSocket endpoint.

Each check opens its own connection (or raw TCP socket, for the handshake
checks that a WebSocket library would refuse to send) and ends as pass,
fail or skip with a reason. Checks that need an echo server run only when a
probe message came back unchanged; otherwise they are skipped, saying so.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from wsload.common.spec import JobSpec
from wsload.worker.checks.result import CheckResult, Fail, Skip, run_check
from wsload.worker.client import WebSocketClient

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONCURRENT = 50
BIG = 1024 * 1024


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer to ``key`` (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


class UnitBattery:
    """The checks, in order, against ``spec.ws_url``."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.timeout = spec.reply_timeout
        self.echoes: bool | None = None

    def _client(self) -> WebSocketClient:
        """A client as the spec says; it offers the spec's subprotocols, if any."""
        return WebSocketClient.from_spec(self.spec, "wsload-unit")

    async def run(self) -> list[CheckResult]:
        checks: list[tuple[str, Callable[[], Awaitable[str | None]]]] = [
            ("handshake", self.handshake),
            ("subprotocol negotiation", self.subprotocol),
            ("echo probe", self.probe),
            ("text echo", self.text_echo),
            ("binary echo", self.binary_echo),
            ("1 MiB message", self.big_message),
            ("unicode message", self.unicode_message),
            ("empty message", self.empty_message),
            ("ping answered by pong", self.ping),
            ("close handshake 1000", self.close_handshake),
            ("bad handshake: missing key", self.missing_key),
            ("bad handshake: wrong version", self.wrong_version),
            (f"{CONCURRENT} concurrent connections", self.concurrent),
            ("reconnect after close", self.reconnect),
        ]
        limit = self.spec.connect_timeout + 2 * self.timeout
        return [await run_check(name, check, limit) for name, check in checks]

    # -- raw handshakes -----------------------------------------------------

    async def _raw_handshake(self, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        """Send an upgrade request by hand; return the status and response headers."""
        parts = urlsplit(self.spec.ws_url)
        secure = parts.scheme == "wss"
        host = parts.hostname or "localhost"
        port = parts.port or (443 if secure else 80)
        ssl_ctx = self._client().options.ssl_context() if secure else None
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ssl_ctx, server_hostname=host if secure else None
        )
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            lines = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}"]
            lines += [f"{k}: {v}" for k, v in headers.items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(1):
                    await writer.wait_closed()
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        fields = status_line.split(" ", 2)
        if len(fields) < 2 or not fields[1].isdigit():
            raise Fail(f"not an HTTP response: {status_line!r}")
        answer = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                answer[name.strip().lower()] = value.strip()
        return int(fields[1]), answer

    def _upgrade_headers(self, key: str | None, version: str) -> dict[str, str]:
        headers = {"Upgrade": "websocket", "Connection": "Upgrade"}
        headers["Sec-WebSocket-Version"] = version
        if key is not None:
            headers["Sec-WebSocket-Key"] = key
        headers.update(dict(self.spec.headers))
        return headers

    async def handshake(self) -> str:
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        status, headers = await self._raw_handshake(self._upgrade_headers(key, "13"))
        if status != 101:
            raise Fail(f"expected HTTP 101 Switching Protocols, got {status}")
        got = headers.get("sec-websocket-accept")
        if got != accept_key(key):
            raise Fail(f"Sec-WebSocket-Accept is {got!r}, expected {accept_key(key)!r}")
        return "101 with the right Sec-WebSocket-Accept"

    async def missing_key(self) -> str:
        return await self._expect_refusal(self._upgrade_headers(None, "13"))

    async def wrong_version(self) -> str:
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        return await self._expect_refusal(self._upgrade_headers(key, "12"))

    async def _expect_refusal(self, headers: dict[str, str]) -> str:
        status, _ = await self._raw_handshake(headers)
        if not 400 <= status < 500:
            raise Fail(f"expected an HTTP 4xx refusal, got {status}")
        return f"refused with HTTP {status}"

    # -- over a WebSocket ---------------------------------------------------

    async def subprotocol(self) -> str:
        offered = list(self.spec.subprotocols)
        if not offered:
            raise Skip("no subprotocol asked for (--subprotocol)")
        async with self._client() as client:
            chosen = client.subprotocol
        if chosen not in offered:
            raise Fail(f"offered {offered}, server chose {chosen!r}")
        return f"server chose {chosen}"

    async def probe(self) -> str:
        token = f"wsload-echo-probe-{secrets.token_hex(8)}"
        async with self._client() as client:
            await client.send_message(token)
            reply = await client.receive_message(timeout=self.timeout)
        self.echoes = reply == token
        if not self.echoes:
            raise Skip(f"the target does not echo (sent {token!r}, got {_short(reply)})")
        return "the target echoes: echo checks will run"

    def _need_echo(self) -> None:
        if not self.echoes:
            raise Skip("needs an echo server; the echo probe got no echo")

    async def _round_trip(self, message: str | bytes) -> str:
        self._need_echo()
        async with self._client() as client:
            await client.send_message(message)
            reply = await client.receive_raw(timeout=self.timeout)
        if reply is None:
            raise Fail(f"sent {_short(message)}, no reply within {self.timeout:g} s")
        if reply != message:
            raise Fail(f"sent {_short(message)}, got back {_short(reply)}")
        return f"{len(message)} {'bytes' if isinstance(message, bytes) else 'characters'} back"

    async def text_echo(self) -> str:
        return await self._round_trip('{"type": "test", "data": "Hello, world!"}')

    async def binary_echo(self) -> str:
        return await self._round_trip(os.urandom(4096) + bytes(range(256)))

    async def big_message(self) -> str:
        return await self._round_trip(os.urandom(BIG))

    async def unicode_message(self) -> str:
        return await self._round_trip("héllo wörld ✓ 漢字 🚀 \u0000 end")

    async def empty_message(self) -> str:
        return await self._round_trip("")

    async def ping(self) -> str:
        async with self._client() as client:
            rtt = await client.ping(timeout=self.timeout)
        return f"pong after {rtt * 1000:.2f} ms"

    async def close_handshake(self) -> str:
        client = self._client()
        await client.open()
        await client.disconnect(1000, "wsload check")
        if client.close_received is None:
            raise Fail("the server never answered the close frame")
        code, reason = client.close_received
        if code != 1000:
            raise Fail(f"server answered close 1000 with {code} {reason!r}")
        return f"server answered 1000 {reason!r}"

    async def concurrent(self) -> str:
        clients = [self._client() for _ in range(CONCURRENT)]
        try:
            opened = await asyncio.gather(*(c.connect() for c in clients))
            failed = [c.last_error for c, ok in zip(clients, opened, strict=True) if not ok]
            if failed:
                raise Fail(f"{len(failed)} of {CONCURRENT} failed, first: {failed[0]}")
            if self.echoes:
                for i, c in enumerate(clients):
                    await c.send_message(f"concurrent-{i}")
                replies = await asyncio.gather(
                    *(c.receive_message(timeout=self.timeout) for c in clients)
                )
                wrong = [i for i, r in enumerate(replies) if r != f"concurrent-{i}"]
                if wrong:
                    raise Fail(f"{len(wrong)} connections did not echo their own message")
        finally:
            await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)
        return f"{CONCURRENT} open at once" + (", each echoed" if self.echoes else "")

    async def reconnect(self) -> str:
        for attempt in (1, 2):
            async with self._client() as client:
                if self.echoes:
                    await client.send_message(f"attempt {attempt}")
                    reply = await client.receive_message(timeout=self.timeout)
                    if reply != f"attempt {attempt}":
                        raise Fail(f"after reconnecting, got {_short(reply)}")
        return "connected, closed and connected again"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


async def run_unit(spec: JobSpec) -> list[CheckResult]:
    return await UnitBattery(spec).run()


__all__ = ["UnitBattery", "accept_key", "run_unit"]

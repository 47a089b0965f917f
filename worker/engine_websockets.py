"""The engine on the websockets library: a reader task per connection.

Slower than :mod:`worker.engine_picows` (each message passes through
websockets' asyncio layer: a send lock, a frame assembler, a future per
``recv``), but it speaks permessage-deflate, so jobs with ``compression``
run here.
"""

from __future__ import annotations

import asyncio
import time

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from worker.connect import open_connection
from worker.engine import Conn, Engine


class WebsocketsEngine(Engine):
    async def _open(self, source: str) -> ClientConnection:
        return await open_connection(self.spec.ws_url, self._options, self._ssl, source)

    def _attach(self, link: ClientConnection, conn: Conn) -> asyncio.Task[None]:
        return asyncio.create_task(self._read(conn))

    def _alive(self, conn: Conn) -> bool:
        return conn.link.close_code is None

    async def _send(self, conn: Conn, intended: float) -> bool:
        payload = self._next_message(conn, intended)
        try:
            await conn.link.send(payload)
        except ConnectionClosed:
            return False  # the message stays in flight and is counted lost with the connection
        return True

    async def _close(self, conn: Conn) -> None:
        await conn.link.close(1000)

    async def _read(self, conn: Conn) -> None:
        ws: ClientConnection = conn.link
        on_message = self._on_message
        code = 1006
        try:
            while True:
                msg = await ws.recv(decode=False)
                if on_message(conn, msg) and (
                    not self._sending(conn) or not await self._send(conn, time.monotonic())
                ):
                    conn.wake()
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else 1006
        finally:
            self._on_closed(conn, code)


__all__ = ["WebsocketsEngine"]

"""``WebSocketClient``: the original framework's client API, on websockets.

Kept call for call so existing test code runs unchanged::

    client = WebSocketClient("ws://localhost:9000/ws", "test-client")
    if await client.connect():
        await client.send_message({"type": "test", "data": "Hello, world!"})
        message = await client.receive_message()
        await client.disconnect()

``connect()`` answers True/False as before and keeps the reason in
``last_error``; :meth:`WebSocketClient.open` (and ``async with``) raise the
classified :class:`wsload.worker.errors.ConnectFailed` instead: refused,
``HandshakeRejected`` with the HTTP status, ``TLSFailed``...
"""

from __future__ import annotations

import asyncio
import json
import time
from types import TracebackType
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from wsload.common.spec import DEFAULT_MAX_MESSAGE_SIZE, JobSpec
from wsload.worker.connect import ConnectOptions, harden, open_connection
from wsload.worker.errors import ConnectFailed, WorkerError

Message = dict[str, Any] | list[Any] | str | bytes


class NotConnected(WorkerError):
    """The client has no open connection (never connected, or closed)."""


class WebSocketClient:
    """One WebSocket connection with JSON conveniences, for tests and scripts."""

    def __init__(
        self,
        url: str,
        client_id: str = "test-client",
        *,
        headers: dict[str, str] | None = None,
        subprotocols: list[str] | None = None,
        connect_timeout: float = 10.0,
        compression: bool = False,
        ca_file: str | None = None,
        tls_insecure: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self.url = url
        #: largest message accepted (one frame or a fragmented message's sum);
        #: past it the connection is closed with 1009, as the load engines do
        self.max_message_size = max_message_size
        self.client_id = client_id
        self.options = ConnectOptions(
            headers=tuple((headers or {}).items()),
            subprotocols=tuple(subprotocols or ()),
            timeout=connect_timeout,
            compression=compression,
            ca_file=ca_file or "",
            tls_insecure=tls_insecure,
            ping_interval=20.0,
        )
        self.last_error: ConnectFailed | None = None
        self.connect_time: float | None = None
        self.messages_sent = 0
        self.messages_received = 0
        #: the server's close frame (code, reason) after :meth:`disconnect`, if it sent one
        self.close_received: tuple[int, str] | None = None
        self._ws: ClientConnection | None = None

    @classmethod
    def from_spec(cls, spec: JobSpec, client_id: str) -> WebSocketClient:
        """A client connecting as a job spec says (URL, headers, subprotocols, TLS)."""
        client = cls(spec.ws_url, client_id, max_message_size=spec.max_message_size)
        client.options = ConnectOptions.from_spec(spec, ping_interval=20.0)
        return client

    @property
    def connected(self) -> bool:
        return self._ws is not None and self._ws.close_code is None

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server chose, if any."""
        return self._ws.subprotocol if self._ws is not None else None

    async def open(self) -> None:
        """Connect, or raise :class:`ConnectFailed` saying why."""
        started = time.monotonic()
        try:
            self._ws = await open_connection(self.url, self.options)
        except ConnectFailed as exc:
            self.last_error = exc
            raise
        harden(self._ws, self.max_message_size)
        self.last_error = None
        self.connect_time = time.monotonic() - started

    async def connect(self) -> bool:
        """Connect; True on success, False on failure (reason in ``last_error``)."""
        try:
            await self.open()
        except ConnectFailed:
            return False
        return True

    async def send_message(self, message: Message) -> None:
        """Send a dict/list as JSON text, a str as text, bytes as a binary frame."""
        ws = self._require()
        data = message if isinstance(message, str | bytes) else json.dumps(message)
        try:
            await ws.send(data)
        except ConnectionClosed as exc:
            raise NotConnected(f"{self.client_id}: connection closed ({exc})") from None
        self.messages_sent += 1

    # The original framework's signature takes ``timeout``; keep it.
    async def receive_message(self, timeout: float | None = 5.0) -> Message | None:  # noqa: ASYNC109
        """The next message, or None when none comes within ``timeout`` seconds.

        Text that parses as JSON comes back decoded; other text as str;
        binary frames as bytes.
        """
        data = await self.receive_raw(timeout)
        if isinstance(data, str):
            try:
                decoded: Message = json.loads(data)
            except ValueError:
                return data
            return decoded
        return data

    async def receive_raw(self, timeout: float | None = 5.0) -> str | bytes | None:  # noqa: ASYNC109
        """The next message exactly as it came (str for text, bytes for binary)."""
        ws = self._require()
        try:
            async with asyncio.timeout(timeout):
                data = await ws.recv()
        except TimeoutError:
            return None
        except ConnectionClosed as exc:
            raise NotConnected(f"{self.client_id}: connection closed ({exc})") from None
        self.messages_received += 1
        return data

    async def ping(self, timeout: float = 5.0) -> float:  # noqa: ASYNC109
        """Round-trip time of a WebSocket ping, in seconds."""
        ws = self._require()
        waiter = await ws.ping()
        async with asyncio.timeout(timeout):
            latency: float = await waiter
        return latency

    async def disconnect(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection with ``code`` (normal closure by default).

        Bounded by the connect timeout: a target that does not read cannot
        hold it; the connection is then aborted.
        """
        if self._ws is not None:
            try:  # the library waits for the target to read the close frame, without a limit
                async with asyncio.timeout(self.options.timeout):
                    await self._ws.close(code, reason)
            except TimeoutError:
                self._ws.transport.abort()
            rcvd = self._ws.protocol.close_rcvd
            self.close_received = (rcvd.code, rcvd.reason) if rcvd is not None else None
            self._ws = None

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code if self._ws is not None else None

    def _require(self) -> ClientConnection:
        if self._ws is None:
            raise NotConnected(f"{self.client_id}: not connected (call connect() first)")
        return self._ws

    async def __aenter__(self) -> WebSocketClient:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()


__all__ = ["Message", "NotConnected", "WebSocketClient"]

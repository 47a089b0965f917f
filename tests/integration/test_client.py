"""``WebSocketClient`` against real servers on loopback: the original API and its errors."""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import trustme
from websockets.asyncio.server import ServerConnection, serve

from tests.integration.conftest import ServerFactory
from wsload.worker.client import NotConnected, WebSocketClient
from wsload.worker.errors import ConnectionRefused, HandshakeRejected, TLSFailed


@pytest.mark.asyncio
async def test_original_usage(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    client = WebSocketClient(server.ws_url, "test-client")
    assert await client.connect()
    assert client.connected
    await client.send_message({"type": "test", "data": "Hello, world!"})
    assert await client.receive_message() == {"type": "test", "data": "Hello, world!"}
    await client.send_message("plain text")
    assert await client.receive_message() == "plain text"
    await client.send_message(b"\x00\xffbinary")
    assert await client.receive_message() == b"\x00\xffbinary"
    assert await client.receive_message(timeout=0.2) is None
    assert await client.ping() < 1.0
    assert (client.messages_sent, client.messages_received) == (3, 3)
    await client.disconnect()
    assert not client.connected
    with pytest.raises(NotConnected):
        await client.send_message("after close")


@pytest.mark.asyncio
async def test_async_with_and_errors(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    async with WebSocketClient(server.ws_url) as client:
        await client.send_message({"type": "ping"})
        assert await client.receive_message() == {"type": "pong"}
    assert client.close_code is None  # disconnected and forgotten
    wrong_path = WebSocketClient(server.ws_url.replace("/ws", "/missing"))
    assert not await wrong_path.connect()
    assert isinstance(wrong_path.last_error, HandshakeRejected)
    assert wrong_path.last_error.status == 404
    assert wrong_path.last_error.kind == "http_404"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionRefused):
        async with WebSocketClient(f"ws://127.0.0.1:{port}/ws"):
            pass


@pytest.mark.asyncio
async def test_headers_and_subprotocols_reach_the_server() -> None:
    seen: dict[str, str | None] = {}

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        seen["auth"] = ws.request.headers.get("Authorization")
        seen["agent"] = ws.request.headers.get("User-Agent")
        seen["protocol"] = ws.subprotocol
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, subprotocols=["chat.v2"]) as server:  # type: ignore[list-item]
        port = server.sockets[0].getsockname()[1]
        client = WebSocketClient(
            f"ws://127.0.0.1:{port}/",
            headers={"Authorization": "Bearer t"},
            subprotocols=["chat.v1", "chat.v2"],
        )
        assert await client.connect()
        assert client.subprotocol == "chat.v2"
        await client.disconnect()
    assert seen["auth"] == "Bearer t"
    assert seen["protocol"] == "chat.v2"
    assert (seen["agent"] or "").startswith("wsload/")


@pytest_asyncio.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """A wss:// echo server with a certificate from a throwaway CA."""
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    async def echo(ws: ServerConnection) -> None:
        async for msg in ws:
            await ws.send(msg)

    async with serve(echo, "127.0.0.1", 0, ssl=ctx) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"wss://localhost:{port}/", ca_file


@pytest.mark.asyncio
async def test_tls_verified_insecure_and_failing(tls_server: tuple[str, Path]) -> None:
    url, ca_file = tls_server
    async with WebSocketClient(url, ca_file=str(ca_file)) as client:
        await client.send_message("over tls")
        assert await client.receive_message() == "over tls"
    async with WebSocketClient(url, tls_insecure=True) as client:
        await client.send_message("self-signed ok")
        assert await client.receive_message() == "self-signed ok"
    unverified = WebSocketClient(url)
    assert not await unverified.connect()
    assert isinstance(unverified.last_error, TLSFailed)
    assert unverified.last_error.kind == "tls"

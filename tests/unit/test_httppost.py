"""A ``post`` step's error texts never show the URL's user:password (real loopback sockets)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from wsload.worker.httppost import HttpPoster, _redacted
from wsload.worker.session_client import HttpRequest

SECRET = "s3cr3t-pw"


def request(port: int, timeout: float = 5.0) -> HttpRequest:
    url = f"http://alice:{SECRET}@127.0.0.1:{port}/api/publish?x=1"
    return HttpRequest("POST", url, b"{}", "application/json", timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed: nobody listens there


@asynccontextmanager
async def tcp_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], object],
) -> AsyncIterator[int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handle(reader, writer)  # type: ignore[misc]
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def post(req: HttpRequest) -> tuple[int, str | None, str]:
    poster = HttpPoster()
    try:
        return await asyncio.wait_for(poster.perform(req), 20)
    finally:
        await poster.aclose()


def assert_redacted(text: str) -> None:
    assert text, "an error text is expected"
    assert SECRET not in text, text
    assert "alice" not in text, text
    assert "***@127.0.0.1" in text, text


def test_refused_names_the_address_without_credentials() -> None:
    status, kind, text = asyncio.run(post(request(free_port())))
    assert (status, kind) == (0, "refused")
    assert_redacted(text)


def test_timeout_names_the_address_without_credentials() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        await asyncio.sleep(10)

    async def go() -> tuple[int, str | None, str]:
        async with tcp_server(silent) as port:
            return await post(request(port, timeout=0.3))

    status, kind, text = asyncio.run(go())
    assert (status, kind) == (0, "timeout")
    assert_redacted(text)


def test_a_bad_answer_names_the_address_without_credentials() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()

    async def go() -> tuple[int, str | None, str]:
        async with tcp_server(garbage) as port:
            return await post(request(port))

    status, kind, text = asyncio.run(go())
    assert (status, kind) == (0, "http_error")
    assert_redacted(text)


def test_credentials_go_however_the_url_was_spelled() -> None:
    url = "http://bob:p%40ss w@127.0.0.1:9/p"  # yarl re-spells the space
    for text in (
        f"ClientResponseError: 500, url='{url}'",
        "ClientResponseError: 500, url='http://bob:p%40ss%20w@127.0.0.1:9/p'",
        "cut: bob:p%40ss w@127.0.0.1",
    ):
        out = _redacted(text, url)
        assert "p%40ss" not in out, out
        assert "bob" not in out, out
        assert "***@127.0.0.1" in out, out
    assert _redacted("http://127.0.0.1:9/p: refused", "http://127.0.0.1:9/p") == (
        "http://127.0.0.1:9/p: refused"
    )

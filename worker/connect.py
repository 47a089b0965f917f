"""Opening one WebSocket connection, and naming how it failed.

Both the load engine and :class:`wsload.worker.client.WebSocketClient` open their
connections here, so a failure is classified the same way everywhere:
``refused``, ``timeout``, ``dns``, ``tls``, ``http_<status>`` (the server
answered the upgrade with another status, redirects included: a 3xx is
``http_301``..., never followed, so a worker pinned to a target with
``--allow-target`` cannot be sent elsewhere), ``handshake`` (an answer that is
not a valid handshake), ``reset`` (the target closed or reset the connection
before the handshake completed), ``no_local_port`` (ephemeral ports
exhausted), ``bad_url``, or ``os_<errno name>``.

With a source address (``--source-address``) the socket is made here
(:func:`source_socket`): bound with ``IP_BIND_ADDRESS_NO_PORT``, so the kernel
picks the local port at ``connect()`` per 4-tuple instead of at ``bind()``
(where, with thousands of sockets in TIME_WAIT, the search for a port free for
*every* destination cost milliseconds per call and collapsed a storm).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidMessage, InvalidStatus, InvalidURI
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.typing import Subprotocol

from wsload.common import __version__
from wsload.common.spec import JobSpec
from wsload.worker.errors import ConnectFailed, ConnectionRefused, HandshakeRejected, TLSFailed
from wsload.worker.recorder import Recorder

USER_AGENT = f"wsload/{__version__}"
#: Largest message a client accepts; well above the 1 MiB echo checks.
MAX_MESSAGE_SIZE = 64 * 1024 * 1024
#: Linux's IP_BIND_ADDRESS_NO_PORT (Python names it only from 3.12 on)
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
#: seconds a failed (or server-closed) connection's close frame gets to leave
#: before the socket is aborted: a target that does not read would otherwise
#: hold a graceful close forever (both client engines and the test client)
FAIL_GRACE = 1.0
#: frames received but not yet taken by a websockets reader, past which reading pauses
MAX_QUEUED = 4


@dataclass(frozen=True)
class ConnectOptions:
    """How to open connections; shared by every client of a population."""

    headers: tuple[tuple[str, str], ...] = ()
    subprotocols: tuple[str, ...] = ()
    timeout: float = 10.0
    compression: bool = False
    ca_file: str = ""
    tls_insecure: bool = False
    #: keepalive pings; off for load (they would add traffic nobody asked for)
    ping_interval: float | None = None

    @classmethod
    def from_spec(cls, spec: JobSpec, **overrides: Any) -> ConnectOptions:
        """The options a job spec asks for (headers, subprotocols, TLS, timeouts)."""
        fields: dict[str, Any] = {
            "headers": spec.headers,
            "subprotocols": spec.subprotocols,
            "timeout": spec.connect_timeout,
            "compression": spec.compression,
            "ca_file": spec.ca_file,
            "tls_insecure": spec.tls_insecure,
        }
        return cls(**(fields | overrides))

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for ``wss://`` URLs (built once per population)."""
        ctx = ssl.create_default_context(cafile=self.ca_file or None)
        if self.tls_insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


class _ConnectOnce(connect):
    """websockets' ``connect`` that never follows a redirect (the 3xx is raised as it came)."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


async def open_connection(
    url: str,
    options: ConnectOptions,
    ssl_context: ssl.SSLContext | None = None,
    source: str = "",
) -> ClientConnection:
    """Connect and complete the opening handshake, or raise :class:`ConnectFailed`.

    ``source`` is the local address to connect from (``--source-address``);
    each local address has its own ~28,000 ephemeral ports towards one target.
    Redirects are not followed: they are errors (``http_301``...).
    """
    tls = url.startswith("wss:")
    try:
        async with asyncio.timeout(options.timeout):
            # From a source address the socket is ours (IP_BIND_ADDRESS_NO_PORT);
            # once handed over it is the library's to close (uvloop detaches it
            # when no transport can be made of it).
            extra: dict[str, Any] = {"sock": await connected_socket(url, source)} if source else {}
            return await _ConnectOnce(
                url,
                additional_headers=list(options.headers),
                subprotocols=[Subprotocol(p) for p in options.subprotocols] or None,
                compression="deflate" if options.compression else None,
                open_timeout=None,  # the deadline above covers the TCP connect too
                ping_interval=options.ping_interval,
                close_timeout=options.timeout,
                max_size=MAX_MESSAGE_SIZE,
                ssl=(ssl_context or options.ssl_context()) if tls else None,
                proxy=None,
                user_agent_header=USER_AGENT,
                **extra,
            )
    except Exception as exc:
        raise classify(exc, url) from exc


@lru_cache(maxsize=64)
def target_address(url: str) -> tuple[str, int]:
    """The host and port a ``ws://``/``wss://`` URL connects to (ValueError if none)."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in {url!r}")
    return host, parts.port or (443 if parts.scheme == "wss" else 80)


def source_socket(source: str) -> socket.socket:
    """A non-blocking TCP socket bound to ``source``, its port left to ``connect()``.

    ``IP_BIND_ADDRESS_NO_PORT`` defers the port choice to ``connect()``, where
    the kernel needs a port free only for this destination (the 4-tuple), not
    one free for every destination as a plain ``bind((source, 0))`` must find.
    """
    sock = socket.socket(_family(source), socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        with contextlib.suppress(OSError):  # not Linux: a plain bind, as before
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
    except BaseException:
        sock.close()
        raise
    return sock


async def connected_socket(url: str, source: str = "") -> socket.socket:
    """A TCP connection to ``url``'s host and port (from ``source`` if given).

    The socket is closed if connecting fails or is cancelled; the caller owns
    it otherwise. A host name is resolved (in the source address's family)
    and its addresses tried in turn, as ``loop.create_connection`` does:
    ``localhost`` may resolve to ``::1`` first for a target on 127.0.0.1.
    """
    host, port = target_address(url)
    loop = asyncio.get_running_loop()
    family = _family(source) if source else socket.AF_UNSPEC
    if _is_ip(host):
        return await _connect(loop, family or _family(host), (host, port), source)
    infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
    failure: OSError | None = None
    for found_family, _, _, _, address in infos:
        try:
            return await _connect(loop, found_family, address, source)
        except OSError as exc:
            failure = failure or exc
    raise failure or OSError(errno.EHOSTUNREACH, f"{host}: no address")


async def _connect(
    loop: asyncio.AbstractEventLoop,
    family: socket.AddressFamily,
    address: tuple[Any, ...],
    source: str,
) -> socket.socket:
    if source:
        sock = source_socket(source)
    else:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
    try:
        # loop.sock_connect would do, at twice the cost: it resolves the address
        # again and reads sock.family (an enum conversion) on every call.
        err = sock.connect_ex(address)
        if err == errno.EINPROGRESS:
            writable = loop.create_future()
            loop.add_writer(sock, _wake, writable)
            try:
                await writable
            finally:
                loop.remove_writer(sock)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, f"connect to {address[0]} port {address[1]}: {os.strerror(err)}")
    except BaseException:
        sock.close()
        raise
    return sock


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


@lru_cache(maxsize=64)
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def classify(exc: BaseException, url: str) -> ConnectFailed:
    """Turn whatever a connection attempt raised into a :class:`ConnectFailed` with a kind."""
    if isinstance(exc, ConnectFailed):
        return exc
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        return HandshakeRejected(status, f"{url}: server answered the upgrade with HTTP {status}")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectionRefused("refused", f"{url}: connection refused")
    if isinstance(exc, TimeoutError):
        return ConnectFailed("timeout", f"{url}: connection timed out")
    if isinstance(exc, socket.gaierror):
        return ConnectFailed("dns", f"{url}: cannot resolve host ({exc.strerror})")
    if isinstance(exc, ssl.SSLError):
        return TLSFailed("tls", f"{url}: TLS failed ({exc.reason or exc})")
    if isinstance(exc, InvalidURI):
        return ConnectFailed("bad_url", f"{url}: not a valid WebSocket URL")
    if isinstance(exc, InvalidMessage) and isinstance(exc.__cause__, EOFError | ConnectionError):
        return ConnectFailed("reset", f"{url}: connection closed during the handshake")
    if isinstance(exc, InvalidHandshake):
        return HandshakeRejected(None, f"{url}: invalid handshake ({exc})")
    if isinstance(exc, OSError):
        # EADDRNOTAVAIL from connect(), EADDRINUSE from bind() to a source address
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EADDRINUSE):
            return ConnectFailed("no_local_port", f"{url}: no free local port (ephemeral ports)")
        if exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
            return ConnectFailed("reset", f"{url}: connection reset during handshake")
        name = errno.errorcode.get(exc.errno or 0, "error").lower()
        return ConnectFailed(f"os_{name}", f"{url}: {exc.strerror or exc}")
    return ConnectFailed("handshake", f"{url}: {type(exc).__name__}: {exc}")


def harden(ws: ClientConnection, limit: int, recorder: Recorder | None = None) -> None:
    """Bound what a hostile target can make this connection hold or wait for.

    ``limit`` is the largest message (``max_message_size``; the library then
    closes with 1009). Pauses of writing are counted in ``recorder``
    (``write_pauses``) if given; pongs owed while paused collapse into the latest one;
    a connection this side failed is closed without waiting for the target.
    """
    protocol = ws.protocol
    protocol.max_message_size = limit
    # Reading pauses once this many frames wait for recv() (the library's
    # default is 16): at most MAX_QUEUED x limit bytes queued per connection.
    ws.recv_messages.high, ws.recv_messages.low = MAX_QUEUED, 1
    loop = asyncio.get_running_loop()
    owed: list[Frame] = []
    send_frame, fail = protocol.send_frame, protocol.fail
    pause_writing, resume_writing = ws.pause_writing, ws.resume_writing

    def sending(frame: Frame) -> None:
        if frame.opcode is Opcode.PONG and ws.paused:
            owed[:] = [frame]
        else:
            send_frame(frame)

    def failing(code: int, reason: str = "") -> None:
        fail(code, reason)
        loop.call_soon(_hang_up, ws)  # after the library has written the close frame

    def pausing() -> None:
        pause_writing()
        if recorder is not None:
            recorder.write_pauses += 1

    def resuming() -> None:
        resume_writing()
        if owed and protocol.state is State.OPEN:
            send_frame(owed[0])
            ws.send_data()
        owed.clear()

    protocol.send_frame = sending  # type: ignore[method-assign]
    protocol.fail = failing  # type: ignore[method-assign]
    ws.pause_writing = pausing  # type: ignore[method-assign]
    ws.resume_writing = resuming  # type: ignore[method-assign]


def _hang_up(ws: ClientConnection) -> None:
    """Close the TCP connection of a failed WebSocket: gracefully, aborted past FAIL_GRACE."""
    transport = ws.transport
    if transport.is_closing():
        return
    if ws.paused:  # the target does not read: the close frame would never leave
        transport.abort()
        return
    transport.close()
    asyncio.get_running_loop().call_later(FAIL_GRACE, _abort, transport)


def _abort(transport: Any) -> None:
    transport.abort()


__all__ = [
    "FAIL_GRACE",
    "MAX_QUEUED",
    "ConnectOptions",
    "classify",
    "connected_socket",
    "harden",
    "open_connection",
    "source_socket",
    "target_address",
]

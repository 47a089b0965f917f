"""Opening one WebSocket connection, and naming how it failed.

Both the load engine and :class:`worker.client.WebSocketClient` open their
connections here, so a failure is classified the same way everywhere:
``refused``, ``timeout``, ``dns``, ``tls``, ``http_<status>`` (the server
answered the upgrade with another status), ``handshake`` (any other invalid
handshake), ``no_local_port`` (ephemeral ports exhausted), ``reset``,
``bad_url``, or ``os_<errno name>``.
"""

from __future__ import annotations

import errno
import socket
import ssl
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from common import __version__
from common.spec import JobSpec
from worker.errors import ConnectFailed, ConnectionRefused, HandshakeRejected, TLSFailed

USER_AGENT = f"wsload/{__version__}"
#: Largest message a client accepts; well above the 1 MiB echo checks.
MAX_MESSAGE_SIZE = 64 * 1024 * 1024


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


async def open_connection(
    url: str,
    options: ConnectOptions,
    ssl_context: ssl.SSLContext | None = None,
    source: str = "",
) -> ClientConnection:
    """Connect and complete the opening handshake, or raise :class:`ConnectFailed`.

    ``source`` is the local address to connect from (``--source-address``);
    each local address has its own ~28,000 ephemeral ports towards one target.
    """
    tls = url.startswith("wss:")
    extra: dict[str, Any] = {"local_addr": (source, 0)} if source else {}
    try:
        return await connect(
            url,
            additional_headers=list(options.headers),
            subprotocols=[Subprotocol(p) for p in options.subprotocols] or None,
            compression="deflate" if options.compression else None,
            open_timeout=options.timeout,
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
    if isinstance(exc, InvalidHandshake):
        return HandshakeRejected(None, f"{url}: invalid handshake ({exc})")
    if isinstance(exc, OSError):
        # EADDRNOTAVAIL from connect(), EADDRINUSE from bind() to a source address
        if exc.errno in (errno.EADDRNOTAVAIL, errno.EADDRINUSE):
            return ConnectFailed("no_local_port", f"{url}: no free local port (ephemeral ports)")
        if exc.errno in (errno.ECONNRESET, errno.EPIPE):
            return ConnectFailed("reset", f"{url}: connection reset during handshake")
        name = errno.errorcode.get(exc.errno or 0, "error").lower()
        return ConnectFailed(f"os_{name}", f"{url}: {exc.strerror or exc}")
    return ConnectFailed("handshake", f"{url}: {type(exc).__name__}: {exc}")


__all__ = ["ConnectOptions", "classify", "open_connection"]

"""ZeroMQ endpoints read the way ZeroMQ reads them, so a check cannot be tricked.

``tcp://0.0.0.0:5555@127.0.0.1`` looks like loopback to :func:`urllib.parse.urlsplit`
(user info ``0.0.0.0:5555``, host ``127.0.0.1``), but libzmq takes the host
before the *last* ``:`` and ``atoi``\\ s the rest: it binds every interface on
port 5555. Ports above 65535 wrap around (``99999`` binds 34463), a
``SRC;DEST`` form binds ``DEST``, brackets around any host are dropped, a
``%zone`` suffix names an interface. :func:`parse_endpoint` follows libzmq's
``tcp_address_t``/``ip_resolver_t`` and is stricter than it: a port is digits
in 1..65535 (or ``*``/``0``, ephemeral, for a bind), a host is an IP address,
``*`` (bind) or a plain name, and anything else is refused with one line.

:func:`bind_problem` is the coordinator's "safe by default" check before
binding; :func:`bound_problem` checks ``zmq.LAST_ENDPOINT`` after binding, so
whatever the parser missed (a name that resolves elsewhere, say) is still
caught. No sockets here: the shells apply :func:`socket_options`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

import zmq

from wsload.common.errors import WsloadError
from wsload.common.protocol import MAX_MESSAGE_BYTES

#: ``sockaddr_un.sun_path`` holds 108 bytes with its terminating NUL.
IPC_PATH_MAX = 107
#: A host name or interface name: letters, digits, ``.``, ``-``, ``_`` (no ``@``, ``/``...).
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252})\Z")
#: Names that resolve to loopback on every host we support.
LOOPBACK_NAMES = frozenset({"localhost"})
#: Largest ZeroMQ message a socket accepts (``ZMQ_MAXMSGSIZE``): the wire
#: limit itself; libzmq drops a peer whose frame header announces more,
#: before allocating anything.
MAX_FRAME_BYTES = MAX_MESSAGE_BYTES


class EndpointError(WsloadError):
    """An endpoint ZeroMQ would misread, or that this side must not use."""


@dataclass(frozen=True)
class Endpoint:
    """One parsed endpoint; ``host`` without brackets or zone, ``port`` None = ephemeral."""

    text: str
    transport: str  # "tcp" or "ipc"
    host: str = ""
    port: int | None = None
    source: str = ""  # the SRC of a tcp://SRC;DEST connect endpoint

    @property
    def ipv6(self) -> bool:
        """Whether the socket needs ``ZMQ_IPV6`` (libzmq resolves IPv4 only without it)."""
        return _ip(self.host) is not None and ":" in self.host

    @property
    def loopback(self) -> bool:
        """True only when this endpoint surely stays on this host."""
        if self.transport == "ipc":
            return True
        ip = _ip(self.host)
        if ip is not None:
            return ip.is_loopback
        return self.host.lower() in LOOPBACK_NAMES


def parse_endpoint(text: str, *, bind: bool) -> Endpoint:
    """Parse ``text`` as ZeroMQ would for a bind (``bind``) or a connect.

    Raises :class:`EndpointError` with a one-line reason for anything ZeroMQ
    would reject, silently rewrite (port wrap-around, trailing junk after the
    port), or that cannot be classified.
    """
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise EndpointError(f"{text!r}: contains whitespace or control characters")
    transport, sep, rest = text.partition("://")
    if not sep or transport not in ("tcp", "ipc"):
        raise EndpointError(f"{text!r}: expected tcp://HOST:PORT or ipc://PATH")
    if transport == "ipc":
        if not rest:
            raise EndpointError(f"{text!r}: ipc:// needs a path")
        if len(rest.encode()) > IPC_PATH_MAX:
            raise EndpointError(f"{text!r}: ipc path longer than {IPC_PATH_MAX} bytes")
        return Endpoint(text, "ipc", host=rest)
    source = ""
    if ";" in rest:  # libzmq: strrchr(';') separates a source address from the peer
        source, _, rest = rest.rpartition(";")
        if bind:
            raise EndpointError(f"{text!r}: a SOURCE;ADDRESS form has no meaning for a bind")
        _host_port(text, source, bind=True)  # a source is bound locally: same rules
    host, port = _host_port(text, rest, bind=bind)
    return Endpoint(text, "tcp", host=host, port=port, source=source)


def _host_port(text: str, hostport: str, *, bind: bool) -> tuple[str, int | None]:
    host, sep, port_text = hostport.rpartition(":")  # libzmq: strrchr(':')
    if not sep:
        raise EndpointError(f"{text!r}: no port (expected tcp://HOST:PORT)")
    port = _port(text, port_text, bind=bind)
    if len(host) >= 2 and host[0] == "[" and host[-1] == "]":
        host = host[1:-1]
    host, percent, zone = host.partition("%")
    if percent and not zone:
        raise EndpointError(f"{text!r}: empty interface after '%'")
    if zone and not _NAME.match(zone):
        raise EndpointError(f"{text!r}: {zone!r} is not an interface name")
    if host == "*":
        if not bind:
            raise EndpointError(f"{text!r}: '*' (every interface) is for a bind, not a connect")
        return host, port
    if not host:
        raise EndpointError(f"{text!r}: no host")
    if _ip(host) is None and not _NAME.match(host):
        raise EndpointError(f"{text!r}: {host!r} is not an IP address, a host or interface name")
    return host, port


def _port(text: str, port_text: str, *, bind: bool) -> int | None:
    if port_text in ("*", "0"):
        if bind:
            return None  # the system picks a free port
        raise EndpointError(f"{text!r}: a connect needs the coordinator's port, not {port_text}")
    if not port_text.isascii() or not port_text.isdigit():
        raise EndpointError(f"{text!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise EndpointError(f"{text!r}: port {port} is outside 1..65535")
    return port


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def bind_problem(text: str, *, keys: bool, insecure: bool) -> str | None:
    """Why the coordinator must not bind ``text``, or None.

    Safe by default: an open job port is a tool for attacking third parties,
    so anything that cannot be shown to stay on loopback needs CURVE keys
    (or ``--insecure``, on a trusted network).
    """
    try:
        endpoint = parse_endpoint(text, bind=True)
    except EndpointError as exc:
        return str(exc)
    if endpoint.loopback or keys or insecure:
        return None
    return _public(text)


def bound_problem(last_endpoint: str, *, keys: bool, insecure: bool) -> str | None:
    """The same check on ``zmq.LAST_ENDPOINT``, what the socket really bound."""
    if keys or insecure:
        return None
    try:
        loopback = parse_endpoint(last_endpoint, bind=True).loopback
    except EndpointError:
        loopback = False
    return None if loopback else _public(last_endpoint)


def _public(text: str) -> str:
    return (
        f"refusing to bind {text} without keys: it is not loopback, and anyone who can "
        "reach it could aim load at any target; bind to 127.0.0.1, use --keys, or pass "
        "--insecure on a trusted network"
    )


def socket_options(sock: Any, endpoint: Endpoint | None = None) -> None:
    """Apply what every wsload ZeroMQ socket needs before it binds or connects.

    ``ZMQ_MAXMSGSIZE`` makes libzmq drop a peer that announces a bigger
    frame instead of allocating it (an unauthenticated peer could otherwise
    grow the process by gigabytes); ``ZMQ_LINGER`` 0 so that no close can
    hold ``ctx.term()`` (closes that must deliver pass their own linger);
    ``ZMQ_IPV6`` when the endpoint is an IPv6 address.
    """
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
    sock.setsockopt(zmq.LINGER, 0)
    if endpoint is not None and endpoint.ipv6:
        sock.setsockopt(zmq.IPV6, 1)


__all__ = [
    "MAX_FRAME_BYTES",
    "Endpoint",
    "EndpointError",
    "bind_problem",
    "bound_problem",
    "parse_endpoint",
    "socket_options",
]

"""Value checks shared by the job spec: one readable line per problem, no exceptions.

Each function returns a list of problem lines (empty when the value is fine),
so :meth:`wsload.common.spec.JobSpec.problems` can report every problem at once.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import os
import socket
import ssl
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

#: Header values no output shows (``***`` instead): they carry secrets.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
REDACTED = "***"


def is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (argv bytes that were not arrive as surrogates,
    which msgpack cannot send to a worker)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def describe(value: Any) -> str:
    try:
        text = repr(value)
    except RecursionError:  # a value nested past the interpreter's limit
        text = f"<{type(value).__name__} nested too deep>"
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def url_problems(name: str, url: str, schemes: tuple[str, ...]) -> list[str]:
    """What is wrong with ``url`` for a target of one of ``schemes``, one line, or nothing.

    Credentials (``user:password@``) are accepted here: :func:`split_credentials`
    turns them into a header before a run, and :func:`display_url` hides them.
    """
    shown = display_url(url)
    expected = " or ".join(f"{s}://" for s in schemes)
    if "://" not in url and url.lower().startswith(tuple(f"{s}:" for s in schemes)):
        return [f"{name}: {shown!r} must start with {expected} (two slashes)"]
    if "://" not in url:
        hint = f" (e.g. {schemes[0]}://{url})" if url and not any(c.isspace() for c in url) else ""
        return [f"{name}: {shown!r} is missing {expected}{hint}"]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return [f"{name}: {shown!r} is not a valid URL ({exc})"]
    if parts.scheme not in schemes:
        return [f"{name}: {shown!r} must start with {expected} (got {parts.scheme}://)"]
    if not parts.hostname:
        return [f"{name}: {shown!r} has no host"]
    if port == 0:
        return [f"{name}: {shown!r} has port 0"]
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return [f"{name}: {shown!r} contains whitespace or a control character"]
    if "#" in url:
        return [
            f"{name}: {shown!r} has a fragment (#{parts.fragment}); "
            "a fragment is never sent to a server: drop it"
        ]
    return []


def split_credentials(url: str) -> tuple[str, str | None]:
    """``url`` without ``user:password@``, and the Basic ``Authorization`` value they make.

    RFC 6455 clients send URL credentials as HTTP Basic authentication; doing
    it once, when the spec is built, makes both engines send the same header
    and leaves no password in the URL for any output to print.
    """
    parts = _userinfo(url)
    if parts is None:
        return url, None
    scheme, userinfo, rest = parts
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
    return f"{scheme}://{rest}", f"Basic {token}"


def _userinfo(url: str) -> tuple[str, str, str] | None:
    """``(scheme, user:password, host and the rest)`` of a URL with credentials, else None.

    Parsed by hand, the way :func:`urllib.parse.urlsplit` finds the authority
    (up to the first ``/``, ``?`` or ``#``), so a URL that ``urlsplit``
    refuses still never shows its password.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    userinfo, at, host = rest[:end].rpartition("@")
    if not at:
        return None
    return scheme, userinfo, host + rest[end:]


def display_url(url: str) -> str:
    """``url`` fit to print: credentials shown as ``***`` (``ws://***@host/``)."""
    parts = _userinfo(url)
    return url if parts is None else f"{parts[0]}://{REDACTED}@{parts[2]}"


def redact_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` fit to print: the values of :data:`SECRET_HEADERS` shown as ``***``."""
    return [(k, REDACTED if k.lower() in SECRET_HEADERS else v) for k, v in headers]


def ca_file_problems(name: str, path: str) -> list[str]:
    """A CA bundle that does not load (missing, not a file, no certificate in it), one line.

    Checked before a run: a worker that finds out while opening its first
    ``wss://`` connection has already started, and every client fails alike.
    """
    if not path:
        return []
    if not os.path.isfile(path):
        return [f"{name}: {path!r} is not a readable file"]
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        return [f"{name}: {path!r} holds no usable CA certificate (PEM) ({reason})"]
    return []


def int_problems(name: str, value: int, low: int, high: int) -> list[str]:
    if value < low:
        return [f"{name} must be at least {low}, got {value}"]
    if value > high:
        return [f"{name} must be at most {high:,}, got {value:,}"]
    return []


def number_problems(name: str, value: float, high: float, *, allow_zero: bool) -> list[str]:
    if math.isnan(value):
        return [f"{name} must be a number, got NaN"]
    if math.isinf(value):
        return [f"{name} must be finite, got {value}"]
    if value < 0 or (value == 0 and not allow_zero):
        bound = "zero or more" if allow_zero else "greater than zero"
        return [f"{name} must be {bound}, got {value:g}"]
    if value > high:
        return [f"{name} must be at most {high:g}, got {value:g}"]
    return []


def address_problems(name: str, addresses: tuple[str, ...]) -> list[str]:
    """Local addresses to connect from: IP literals of one family (no host names)."""
    out: list[str] = []
    families: set[int] = set()
    for text in addresses:
        try:
            families.add(ipaddress.ip_address(text).version)
        except ValueError:
            out.append(f"{name}: {text!r} is not an IP address")
    if len(families) > 1:
        out.append(f"{name}: mixes IPv4 and IPv6 addresses; a target is reached over one family")
    return out


def unbindable_address(addresses: tuple[str, ...]) -> str | None:
    """Why this host cannot connect from one of ``addresses``, or None.

    A check of *this* host (it binds a socket to each address), made before a
    run, so an address the host does not have is one clear refusal rather
    than every connection failing as ``no_local_port``.
    """
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((address, 0))
            except OSError as exc:
                return f"cannot connect from source address {address}: {exc.strerror or exc}"
    return None


__all__ = [
    "REDACTED",
    "SECRET_HEADERS",
    "address_problems",
    "ca_file_problems",
    "describe",
    "display_url",
    "int_problems",
    "number_problems",
    "redact_headers",
    "split_credentials",
    "unbindable_address",
    "url_problems",
]

"""Value checks shared by the job spec: one readable line per problem, no exceptions.

Each function returns a list of problem lines (empty when the value is fine),
so :meth:`common.spec.JobSpec.problems` can report every problem at once.
"""

from __future__ import annotations

import ipaddress
import math
import socket
from typing import Any
from urllib.parse import urlsplit


def describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def url_problems(name: str, url: str, schemes: tuple[str, ...]) -> list[str]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return [f"{name}: {url!r} is not a valid URL ({exc})"]
    expected = " or ".join(f"{s}://" for s in schemes)
    if parts.scheme not in schemes:
        got = f"{parts.scheme}://" if parts.scheme else "no scheme"
        return [f"{name}: {url!r} must start with {expected} (got {got})"]
    if not parts.hostname:
        return [f"{name}: {url!r} has no host"]
    if port == 0:
        return [f"{name}: {url!r} has port 0"]
    if any(ch.isspace() for ch in url):
        return [f"{name}: {url!r} contains whitespace"]
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
    "address_problems",
    "describe",
    "int_problems",
    "number_problems",
    "unbindable_address",
    "url_problems",
]

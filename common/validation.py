"""Value checks shared by the job spec: one readable line per problem, no exceptions.

Each function returns a list of problem lines (empty when the value is fine),
so :meth:`common.spec.JobSpec.problems` can report every problem at once.
"""

from __future__ import annotations

import math
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


__all__ = ["describe", "int_problems", "number_problems", "url_problems"]

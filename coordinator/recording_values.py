"""What a recorded value says: JSON paths, stable or volatile, counted per pass, as a template.

The value-level rules under :mod:`.recording_infer` (which message is what)
and :mod:`.recording_steps` (which step says it): pure functions over JSON
values and texts, with no notion of a conversation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

Path = tuple[str | int, ...]

#: Fields that name a message's kind: its shape, and never volatile.
TYPE_KEYS = ("type", "event", "op", "action", "kind", "cmd", "command", "method")

#: Field names (lowercased, without ``_``, ``-`` and spaces) whose values differ every run.
_VOLATILE_KEYS = frozenset(
    [
        "ts",
        "time",
        "timestamp",
        "date",
        "datetime",
        "now",
        "id",
        "uuid",
        "guid",
        "nonce",
        "token",
        "session",
        "sessionid",
        "requestid",
        "reqid",
        "messageid",
        "msgid",
        "correlationid",
        "seq",
        "serial",
        "sentat",
        "createdat",
        "updatedat",
        "receivedat",
        "servertime",
        "elapsed",
        "latency",
        "uptime",
        "expires",
        "expiresat",
        "expiry",
        "signature",
        "sig",
        "hash",
        "etag",
        "secret",
        "jwt",
        "cookie",
    ]
)
_ISO_TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_LONG_HEX = re.compile(r"[0-9a-fA-F]{16,}")
_LONG_DIGITS = re.compile(r"\d{9,}")
_TOKENISH = re.compile(r"[A-Za-z0-9_\-+/=.]{20,}")
_DIGITS = re.compile(r"(\d+)")
#: what the step language reads as a placeholder (common.template)
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\([^{}()]*\))?)\}")


def escape(literal: str) -> str:
    """A literal string as template text: ``{name}`` in it becomes ``{{name}}``, the escape."""
    return _PLACEHOLDER.sub(r"{{\1}}", literal)


def leaves(value: Any, path: Path = ()) -> list[tuple[Path, Any]]:
    """Every scalar of a JSON value with its path (keys and list indexes)."""
    if isinstance(value, dict):
        return [leaf for key, item in value.items() for leaf in leaves(item, (*path, key))]
    if isinstance(value, list):
        return [leaf for i, item in enumerate(value) for leaf in leaves(item, (*path, i))]
    return [(path, value)]


def at(value: Any, path: Path) -> Any:
    """The value at ``path``, or :data:`ABSENT`."""
    for part in path:
        if isinstance(part, str):
            if not isinstance(value, dict) or part not in value:
                return ABSENT
            value = value[part]
        elif not isinstance(value, list) or part >= len(value):
            return ABSENT
        else:
            value = value[part]
    return value


#: what :func:`at` finds at a path the value does not have
ABSENT: Any = object()
#: what a reply's field becomes when it cannot be expected (volatile, or null)
DROP: Any = object()


def same(values: Sequence[Any]) -> bool:
    """All equal with JSON's types (``1``, ``1.0`` and ``true`` differ)."""
    first = values[0]
    return all(type(v) is type(first) and v == first for v in values[1:])


def json_key(value: Any) -> tuple[str, Any]:
    """A JSON value with its type, for sets and dicts (``1``, ``1.0`` and ``true`` differ)."""
    return (type(value).__name__, value)


def volatile(key: str, value: Any) -> bool:
    """Whether a reply's field looks different on every run: a time, an id, a token."""
    if key.lower() in TYPE_KEYS:
        return False
    name = re.sub(r"[_\-\s]", "", key).lower()
    if name in _VOLATILE_KEYS or key.endswith(("_id", "Id", "_at", "At", "_ts", "_time")):
        return True
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int | float):
        return abs(value) >= 1e9  # epoch seconds, milliseconds, microseconds
    if isinstance(value, str):
        return volatile_text(value)
    return False


def volatile_text(text: str) -> bool:
    """Whether a text looks different on every run: a time, a UUID, a long number or token."""
    return bool(
        _ISO_TIME.search(text)
        or _UUID.search(text)
        or _LONG_HEX.search(text)
        or _LONG_DIGITS.search(text)
        or (_TOKENISH.fullmatch(text) and re.search(r"\d", text))
    )


def numbered(values: Sequence[Any]) -> str | None:
    """``{seq}`` where the values count up by one per iteration (``m1``, ``m2`` -> ``m{seq}``)."""
    if len(values) < 2:
        return None
    if all(type(v) is int for v in values):
        steps = {b - a for a, b in pairwise(values)}
        return "{seq}" if steps == {1} else None
    if not all(isinstance(v, str) for v in values):
        return None
    parts = [_DIGITS.split(v) for v in values]
    if any(len(p) != len(parts[0]) for p in parts):
        return None
    counting = None
    for i in range(len(parts[0])):
        column = [p[i] for p in parts]
        if same(column):
            continue
        numbers = [int(c) for c in column] if i % 2 else []
        steps = {b - a for a, b in pairwise(numbers)}
        if counting is not None or steps != {1}:
            return None
        counting = i
    if counting is None:
        return None
    return "".join("{seq}" if i == counting else escape(p) for i, p in enumerate(parts[0]))


def rebuild(value: Any, leaf: Callable[[Path, Any], Any], path: Path = ()) -> Any:
    """``value`` with every scalar replaced by ``leaf(path, scalar)``.

    A scalar replaced by :data:`DROP` leaves its table (and a table it
    empties leaves its parent); an array with a dropped item is dropped.
    """
    if isinstance(value, dict):
        out = {k: rebuild(v, leaf, (*path, k)) for k, v in value.items()}
        kept = {k: v for k, v in out.items() if v is not DROP}
        return DROP if value and not kept and path else kept
    if isinstance(value, list):
        items = [rebuild(v, leaf, (*path, i)) for i, v in enumerate(value)]
        return DROP if any(v is DROP for v in items) else items
    return leaf(path, value)


def tableable(value: Any) -> bool:
    """Whether TOML can hold this JSON value (no null, integers within 64 bits)."""
    if value is None or value is DROP:
        return False
    if isinstance(value, dict):
        return all(tableable(v) for v in value.values())
    if isinstance(value, list):
        return all(tableable(v) for v in value)
    if type(value) is int:
        return -(2**63) <= value < 2**63
    return True


__all__ = [
    "ABSENT",
    "DROP",
    "TYPE_KEYS",
    "Path",
    "at",
    "escape",
    "json_key",
    "leaves",
    "numbered",
    "rebuild",
    "same",
    "tableable",
    "volatile",
    "volatile_text",
]

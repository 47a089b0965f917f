"""The rules that turn a recorded conversation into steps (see :mod:`.recording`).

Pure functions over the page's events; :func:`infer` returns the steps as
plain values and :mod:`.recording` writes them as TOML. Everything is
bounded by the recording's own limits (at most ``MAX_EVENTS`` events); the
searches that could grow with the square of that (a loop's period, a value
inside a later send's text) look a bounded distance ahead.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from wsload.common import template

Path = tuple[str | int, ...]

#: A pause longer than this (seconds) between a reply and the next send is a think step.
THINK_MIN = 0.5
#: Longest loop (sends per iteration) looked for.
MAX_PERIOD = 200
#: How many later sends are searched for a captured value inside a longer string.
SUBSTRING_HORIZON = 100
#: Fields that name a message's kind: its shape, and never volatile.
TYPE_KEYS = ("type", "event", "op", "action", "kind", "cmd", "command", "method")
#: Variables the step language defines itself: a capture never takes these names.
RESERVED = template.RESERVED

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


@dataclass(frozen=True)
class Event:
    """One thing that happened on the connection, ``t`` seconds after it opened.

    ``direction``: ``out`` (the user sent it), ``in`` (it arrived) or
    ``mark`` ("repeat from here"). ``kind``: ``text``, ``json`` (sent with
    "Send JSON") or ``binary`` (``data`` is then hex).
    """

    t: float
    direction: str
    kind: str = "text"
    data: str = ""


@dataclass(frozen=True)
class StepOut:
    """One step to write: ``action`` is the step language's key, ``value`` its value."""

    action: str
    value: Any
    name: str = ""
    capture: tuple[tuple[str, str], ...] = ()
    comment: str = ""


@dataclass
class Inferred:
    """The scenario, before it is written: steps, loop, pacing and notes for the reader."""

    setup: list[StepOut] = field(default_factory=list)
    loop: list[StepOut] = field(default_factory=list)
    interval: float | None = None
    notes: list[str] = field(default_factory=list)
    sent: int = 0
    received: int = 0


@dataclass
class Msg:
    index: int
    t: float
    out: bool
    kind: str  # json (a parsed JSON value), text, binary (hex in raw)
    value: Any
    raw: str
    shape: str = ""


def escape(literal: str) -> str:
    """A literal string as template text: ``{name}`` in it becomes ``{{name}}``, the escape."""
    return _PLACEHOLDER.sub(r"{{\1}}", literal)


def read_messages(events: Sequence[Event]) -> tuple[list[Msg], int | None]:
    """The messages in order, and which send (0-based) follows the first mark (None: no mark)."""
    msgs: list[Msg] = []
    sends = 0
    mark: int | None = None
    marked = False
    for event in events:
        if event.direction == "mark":
            marked = marked or mark is None
            continue
        out = event.direction == "out"
        kind, value = event.kind, event.data
        if kind == "binary":
            value = event.data.lower()
        elif kind == "json" or (not out and event.data.lstrip()[:1] in ("{", "[")):
            try:
                value, kind = json.loads(event.data), "json"
            except (ValueError, RecursionError):
                kind = "text"
        msg = Msg(len(msgs), event.t, out, kind, value, event.data)
        msg.shape = _shape(msg)
        if out:
            if marked:
                mark, marked = sends, False
            sends += 1
        msgs.append(msg)
    return msgs, mark


def _shape(msg: Msg) -> str:
    """What kind of message this is, for telling replies from pushes and finding the loop."""
    if msg.kind == "json":
        if isinstance(msg.value, dict):
            for key in TYPE_KEYS:
                if isinstance(msg.value.get(key), str):
                    return f"{key}={msg.value[key]}"
            return "{" + ",".join(sorted(msg.value)) + "}"
        return "json " + type(msg.value).__name__
    return msg.kind


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


ABSENT: Any = object()
#: what a reply's field becomes when it cannot be expected (volatile, or null)
DROP: Any = object()


def same(values: Sequence[Any]) -> bool:
    """All equal with JSON's types (``1``, ``1.0`` and ``true`` differ)."""
    first = values[0]
    return all(type(v) is type(first) and v == first for v in values[1:])


def _key(value: Any) -> tuple[str, Any]:
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


class Conversation:
    """The recording read once: sends, what arrived after each, pushes and captures."""

    def __init__(self, msgs: list[Msg]) -> None:
        self.msgs = msgs
        self.sends = [m for m in msgs if m.out]
        self.before: list[Msg] = []  # arrived before the first send
        self.windows: list[list[Msg]] = [[] for _ in self.sends]
        position = -1
        for m in msgs:
            if m.out:
                position += 1
            elif position < 0:
                self.before.append(m)
            else:
                self.windows[position].append(m)
        #: message index -> its captures (path, value, variable)
        self.captures: dict[int, list[tuple[Path, Any, str]]] = {}
        #: message index -> the captured variables' values when it was sent or arrived
        self.vars_at: dict[int, dict[str, Any]] = {}
        self._find_captures()
        self.push_shapes = self._push_shapes()

    def kept(self, window: Sequence[Msg]) -> list[Msg]:
        """The replies in a window: not pushed, or pushed but answered (captured from)."""
        return [m for m in window if m.shape not in self.push_shapes or m.index in self.captures]

    def pushed(self) -> list[Msg]:
        """Messages the server pushed that the user never answered."""
        received = [m for m in self.msgs if not m.out]
        return [m for m in received if m.shape in self.push_shapes and m.index not in self.captures]

    def _push_shapes(self) -> set[str]:
        """Shapes that arrive unasked: before any send, or after only some sends of a shape.

        A reply's shape follows every send of its shape, as many times each
        time; a heartbeat's does not.
        """
        push = {m.shape for m in self.before}
        by_shape: dict[str, list[int]] = {}
        for position, send in enumerate(self.sends):
            by_shape.setdefault(send.shape, []).append(position)
        for positions in by_shape.values():
            counts = [Counter(m.shape for m in self.windows[p]) for p in positions]
            for shape in set().union(*counts):
                if len({c[shape] for c in counts}) > 1:
                    push.add(shape)
        return push

    def _find_captures(self) -> None:
        """Values that first arrive and are later sent by the user (tokens)."""
        later: dict[tuple[str, Any], list[int]] = {}
        for position, send in enumerate(self.sends):
            for value in _sent_values(send):
                later.setdefault(_key(value), []).append(position)
        names: dict[tuple[str, Path], str] = {}
        current: dict[str, Any] = {}
        sent: set[tuple[str, Any]] = set()
        position = 0
        for m in self.msgs:
            self.vars_at[m.index] = dict(current)
            if m.out:
                sent.update(_key(v) for v in _sent_values(m))
                position += 1
                continue
            if m.kind != "json":
                continue
            known = {_key(v) for v in current.values()}
            found: list[tuple[Path, Any, str]] = []
            for path, value in leaves(m.value):
                key = _key(value)
                if not _capturable(path, value) or key in sent or key in known:
                    continue
                if not self._sent_later(value, position, later.get(key, ())):
                    continue
                name = names.get((m.shape, path))
                if name is None:
                    name = names[(m.shape, path)] = _new_name(path, set(names.values()))
                found.append((path, value, name))
                current[name] = value
                known.add(key)
            if found:
                self.captures[m.index] = found

    def _sent_later(self, value: Any, position: int, equal_at: Sequence[int]) -> bool:
        if any(p >= position for p in equal_at):
            return True
        if not isinstance(value, str) or len(value) < 8:
            return False
        for send in self.sends[position : position + SUBSTRING_HORIZON]:
            if any(isinstance(v, str) and value in v for v in _sent_values(send)):
                return True
        return False


def _sent_values(send: Msg) -> list[Any]:
    if send.kind == "json":
        return [v for _, v in leaves(send.value)]
    return [send.raw] if send.kind == "text" else []


def _capturable(path: Path, value: Any) -> bool:
    if not path or path[-1] in TYPE_KEYS or any(isinstance(p, str) and "." in p for p in path):
        return False
    if isinstance(value, str):
        return len(value) >= 4
    return type(value) is int and abs(value) >= 1000


def _new_name(path: Path, taken: set[str]) -> str:
    last = next((p for p in reversed(path) if isinstance(p, str)), "value")
    base = re.sub(r"\W", "_", last, flags=re.ASCII).strip("_") or "value"
    if not re.match(r"[A-Za-z_]", base):
        base = "v_" + base
    name, n = base, 1
    while name in taken or name in RESERVED:
        n += 1
        name = f"{base}_{n}"
    return name

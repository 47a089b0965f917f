"""Reading a recorded conversation (see :mod:`.recording` for the rules).

Pure functions over the page's events: the messages in order
(:func:`read_messages`), and the :class:`Conversation` they make: what
arrived after each send, which shapes the server pushed unasked, which
received values the user sent back (captures). :func:`.recording_steps.infer`
turns that into steps as plain values and :mod:`.recording` writes them as
TOML. Everything is bounded by the recording's own limits (at most
``MAX_EVENTS`` events); the searches that could grow with the square of
that (a loop's period, a value inside a later send's text) look a bounded
distance ahead.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from wsload.common import template
from wsload.coordinator.recording_values import TYPE_KEYS, Path, json_key, leaves

#: A pause longer than this (seconds) between a reply and the next send is a think step.
THINK_MIN = 0.5
#: Longest loop (sends per iteration) looked for.
MAX_PERIOD = 200
#: How many later sends are searched for a captured value inside a longer string.
SUBSTRING_HORIZON = 100
#: Variables the step language defines itself: a capture never takes these names.
RESERVED = template.RESERVED


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
                later.setdefault(json_key(value), []).append(position)
        names: dict[tuple[str, Path], str] = {}
        current: dict[str, Any] = {}
        sent: set[tuple[str, Any]] = set()
        position = 0
        for m in self.msgs:
            self.vars_at[m.index] = dict(current)
            if m.out:
                sent.update(json_key(v) for v in _sent_values(m))
                position += 1
                continue
            if m.kind != "json":
                continue
            known = {json_key(v) for v in current.values()}
            found: list[tuple[Path, Any, str]] = []
            for path, value in leaves(m.value):
                key = json_key(value)
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

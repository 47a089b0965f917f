"""Templates of the step language, compiled once and rendered per message.

A template is text with placeholders in braces: ``{client_id}``, ``{seq}``,
``{ts}``, ``{pad}``, ``{uuid}``, ``{random_int(a,b)}``, a feeder column or
a variable captured by an earlier step (``{token}``). Only a brace around a
name (or a ``random_int(...)`` call) is a placeholder; every other brace is
literal, so a JSON text template needs no escaping of its own braces
(``'{"id": "{seq}"}'``), as with the echo payload
(:mod:`wsload.worker.payload`, which stays the echo path's own fast template).
``{{name}}`` is the escape: it renders as the literal text ``{name}``.

Three compiled kinds, all :class:`wsload.common.program.Renderer`:

- :class:`TextTemplate` renders text. A value that is not text renders as
  compact JSON (a number as itself, a captured object as its JSON); ``{ts}``
  with six decimals (as a table's value it is the exact number, so an
  expect of ``"{ts}"`` compares equal to what was sent).
- :class:`JsonTemplate` renders a table or array (``send = {...}``) as
  compact JSON text. A string that is exactly one placeholder takes the
  value's own type (``id = "{seq}"`` is the number, a captured object stays
  an object); a string with placeholders among text stays a string.
- :class:`ValueTemplate` renders a table or array as a Python value (what an
  ``expect`` compares with).

Compiling walks the value once and leaves literal pieces and slot functions:
rendering joins them, with no parsing, no regular expression and, for
:class:`JsonTemplate`, no JSON encoding of the literal parts. Keys of tables
are literal (no placeholders). A variable missing at render time (a capture
that never happened) renders as ``""`` in text and ``null`` as a value.
"""

from __future__ import annotations

import difflib
import json
import random
import re
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any

#: Variables every client has; ``uuid`` and ``random_int(a,b)`` are drawn per use.
BUILTINS = ("client_id", "seq", "ts", "pad", "uuid")
#: Names a capture or a feeder column may not take (they would hide these).
RESERVED = frozenset((*BUILTINS, "random_int"))
#: A variable name (feeder column, capture).
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

_BODY = r"[A-Za-z_][A-Za-z0-9_]*(?:\([^{}()]*\))?"
_TOKEN = re.compile(r"\{\{(" + _BODY + r")\}\}|\{(" + _BODY + r")\}")
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\(\s*([+-]?\d{1,18})\s*,\s*([+-]?\d{1,18})\s*\)\Z")

Slot = Callable[[Mapping[str, Any], random.Random], Any]
_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def to_json(value: Any) -> str:
    """Compact JSON text, non-ASCII kept as is: how tables are sent."""
    return _DUMPS(value)


def _as_text(value: Any) -> str:
    """A variable's value inside text."""
    if value.__class__ is str:
        return value
    if value.__class__ is int:
        return str(value)
    return _DUMPS(value)


def _as_json(value: Any) -> str:
    """A variable's value as a JSON value."""
    if value.__class__ is int:
        return str(value)
    return _DUMPS(value)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class _Placeholder:
    """One parsed placeholder: a variable, ``ts``, ``uuid`` or ``random_int(a, b)``."""

    __slots__ = ("high", "kind", "low", "name")

    def __init__(self, kind: str, name: str, low: int = 0, high: int = 0) -> None:
        self.kind, self.name, self.low, self.high = kind, name, low, high

    def value(self) -> Slot:
        """The slot that yields the value itself (a string that is only this placeholder)."""
        if self.kind == "uuid":
            return lambda v, r: _uuid(r)
        if self.kind == "random_int":
            low, high = self.low, self.high
            return lambda v, r: r.randint(low, high)
        name = self.name
        return lambda v, r: v.get(name)

    def text(self) -> Slot:
        """The slot that yields the value as text."""
        if self.kind == "uuid":
            return lambda v, r: _uuid(r)
        if self.kind == "random_int":
            low, high = self.low, self.high
            return lambda v, r: str(r.randint(low, high))
        name = self.name
        if name == "ts":
            return lambda v, r: f"{v.get('ts', 0.0):.6f}"
        return lambda v, r: _as_text(v.get(name, ""))

    def json_value(self) -> Slot:
        """The slot that yields the value as JSON text."""
        if self.kind == "uuid":
            return lambda v, r: '"' + _uuid(r) + '"'
        if self.kind == "random_int":
            low, high = self.low, self.high
            return lambda v, r: str(r.randint(low, high))
        name = self.name  # ts too: a float's JSON is exact, so an expect of it compares equal
        return lambda v, r: _as_json(v.get(name))

    def json_text(self) -> Slot:
        """The slot that yields the value as text inside a JSON string (escaped)."""
        text = self.text()
        if self.kind in ("uuid", "random_int") or self.name == "ts":
            return text  # nothing in these needs escaping
        return lambda v, r: _DUMPS(text(v, r))[1:-1]


def _parse_placeholder(body: str) -> _Placeholder | str:
    """The placeholder ``{body}``, or why it is not one."""
    if "(" not in body:
        return _Placeholder("uuid" if body == "uuid" else "var", body)
    call = _CALL.match(body)
    fname = body.split("(", 1)[0]
    if fname != "random_int":
        return f"unknown function {fname!r} in {{{body}}} (only random_int(a,b))"
    if call is None:
        return f"{{{body}}}: random_int takes two integers, random_int(a,b)"
    low, high = int(call.group(2)), int(call.group(3))
    if low > high:
        return f"{{{body}}}: random_int(a,b) needs a <= b"
    return _Placeholder("random_int", "random_int", low, high)


def _split(source: str) -> tuple[list[str], list[_Placeholder], list[str]]:
    """Literal pieces (one more than placeholders), the placeholders, problems."""
    literals: list[str] = []
    holders: list[_Placeholder] = []
    problems: list[str] = []
    pending = ""
    pos = 0
    for m in _TOKEN.finditer(source):
        pending += source[pos : m.start()]
        pos = m.end()
        if m.group(1) is not None:  # {{name}}: the literal {name}
            pending += "{" + m.group(1) + "}"
            continue
        parsed = _parse_placeholder(m.group(2))
        if isinstance(parsed, str):
            problems.append(parsed)
            pending += m.group(0)
            continue
        literals.append(pending)
        holders.append(parsed)
        pending = ""
    literals.append(pending + source[pos:])
    return literals, holders, problems


def unknown_variable_problems(names: Collection[str], known: Collection[str]) -> list[str]:
    """One line per variable in ``names`` that is neither built in nor in ``known``."""
    out: list[str] = []
    choices = sorted({*BUILTINS, *known})
    for name in sorted(names):
        if name in BUILTINS or name in known:
            continue
        close = difflib.get_close_matches(name, choices, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(choices)
        out.append(f"unknown variable {{{name}}} ({hint})")
    return out


class _Parts:
    """Literal pieces with slots between them; ``render`` joins them."""

    __slots__ = ("_const", "_literals", "_slots", "names")

    def __init__(self, literals: list[str], slots: list[Slot], names: frozenset[str]) -> None:
        self._literals = tuple(literals)
        self._slots = tuple(slots)
        self._const = literals[0] if not slots else None
        #: variables this template reads (not uuid or random_int)
        self.names = names

    @property
    def constant(self) -> bool:
        """No placeholder: renders the same text every time."""
        return self._const is not None

    def render(self, values: Mapping[str, Any], rng: random.Random) -> str:
        if self._const is not None:
            return self._const
        lits = self._literals
        if len(lits) == 2:  # one placeholder: the common case
            return lits[0] + self._slots[0](values, rng) + lits[1]  # type: ignore[no-any-return]
        out = [lits[0]]
        i = 1
        for slot in self._slots:
            out.append(slot(values, rng))
            out.append(lits[i])
            i += 1
        return "".join(out)


class TextTemplate(_Parts):
    """A text template (``send = "hello {user} {seq}"``, ``expect = "pong {seq}"``)."""

    __slots__ = ("problems", "source")

    def __init__(self, source: str) -> None:
        literals, holders, self.problems = _split(source)
        self.source = source
        names = frozenset(h.name for h in holders if h.kind == "var")
        super().__init__(literals, [h.text() for h in holders], names)


class JsonTemplate(_Parts):
    """A table or array template rendered as compact JSON text (``send = {...}``)."""

    __slots__ = ("problems", "source")

    def __init__(self, source: Any) -> None:
        self.source = source
        builder = _JsonBuilder()
        builder.add(source, 0)
        self.problems = builder.problems
        builder.literals.append(builder.pending)
        super().__init__(builder.literals, builder.slots, frozenset(builder.names))


class _JsonBuilder:
    """Writes a value as JSON text, leaving slots where placeholders are."""

    def __init__(self) -> None:
        self.literals: list[str] = []
        self.slots: list[Slot] = []
        self.names: set[str] = set()
        self.problems: list[str] = []
        self.pending = ""

    def _slot(self, slot: Slot) -> None:
        self.literals.append(self.pending)
        self.slots.append(slot)
        self.pending = ""

    def add(self, value: Any, depth: int) -> None:
        if depth > _MAX_DEPTH:  # the step parser bounds depth first; a backstop
            raise ValueError("nested too deep")
        if isinstance(value, dict):
            self.pending += "{"
            for i, (key, item) in enumerate(value.items()):
                self.pending += ("," if i else "") + _DUMPS(str(key)) + ":"
                self.add(item, depth + 1)
            self.pending += "}"
        elif isinstance(value, list | tuple):
            self.pending += "["
            for i, item in enumerate(value):
                self.pending += "," if i else ""
                self.add(item, depth + 1)
            self.pending += "]"
        elif isinstance(value, str):
            literals, holders, problems = _split(value)
            self.problems += problems
            self.names.update(h.name for h in holders if h.kind == "var")
            if len(holders) == 1 and literals == ["", ""]:
                self._slot(holders[0].json_value())
                return
            self.pending += '"' + _DUMPS(literals[0])[1:-1]
            for holder, literal in zip(holders, literals[1:], strict=True):
                self._slot(holder.json_text())
                self.pending += _DUMPS(literal)[1:-1]
            self.pending += '"'
        else:
            self.pending += _DUMPS(value)


_MAX_DEPTH = 64


class ValueTemplate:
    """A table or array template rendered as a Python value (what an expect compares with).

    ``tree`` is the compiled form :mod:`wsload.common.match` compiles
    further: a constant or a :class:`Node`.
    """

    __slots__ = ("names", "problems", "source", "tree")

    def __init__(self, source: Any) -> None:
        self.source = source
        self.names: set[str] = set()
        self.problems: list[str] = []
        self.tree = self._compile(source, 0)

    def _compile(self, value: Any, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise ValueError("nested too deep")
        if isinstance(value, dict):
            return Node(
                "dict", tuple((str(k), self._compile(v, depth + 1)) for k, v in value.items())
            )
        if isinstance(value, list | tuple):
            return Node("list", tuple(self._compile(v, depth + 1) for v in value))
        if not isinstance(value, str):
            return value
        literals, holders, problems = _split(value)
        self.problems += problems
        self.names.update(h.name for h in holders if h.kind == "var")
        if not holders:
            return "".join(literals)
        if len(holders) == 1 and literals == ["", ""]:
            return Node("slot", holders[0].value())
        return Node("text", _Parts(literals, [h.text() for h in holders], frozenset()).render)

    def render(self, values: Mapping[str, Any], rng: random.Random) -> Any:
        return render_tree(self.tree, values, rng)


class Node:
    """A compiled part of a :class:`ValueTemplate`: ``dict``, ``list``, ``slot`` (a string
    that is one placeholder: any value) or ``text`` (placeholders among text: a string)."""

    __slots__ = ("arg", "kind")

    def __init__(self, kind: str, arg: Any) -> None:
        self.kind, self.arg = kind, arg

    @property
    def constant(self) -> bool:
        if self.kind == "slot" or self.kind == "text":
            return False
        items = (n for _, n in self.arg) if self.kind == "dict" else self.arg
        return all(not isinstance(n, Node) or n.constant for n in items)


def render_tree(tree: Any, values: Mapping[str, Any], rng: random.Random) -> Any:
    """The Python value of a compiled tree, placeholders filled."""
    if tree.__class__ is not Node:
        return tree
    if tree.kind == "slot" or tree.kind == "text":
        return tree.arg(values, rng)
    if tree.kind == "dict":
        return {k: render_tree(n, values, rng) for k, n in tree.arg}
    return [render_tree(n, values, rng) for n in tree.arg]


def compile_send(value: Any) -> TextTemplate | JsonTemplate:
    """The renderer of a ``send``: text as a text template, a table or array as JSON."""
    return TextTemplate(value) if isinstance(value, str) else JsonTemplate(value)


__all__ = [
    "BUILTINS",
    "NAME",
    "RESERVED",
    "JsonTemplate",
    "Node",
    "TextTemplate",
    "ValueTemplate",
    "compile_send",
    "render_tree",
    "to_json",
    "unknown_variable_problems",
]

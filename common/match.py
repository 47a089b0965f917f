"""Matchers of the step language: does this message answer that ``expect``?

Each is a :class:`wsload.common.program.Matcher`, compiled once and asked
once per received message while its step waits, so the common case (a
message meant for something else) must cost little:

- :class:`SubsetMatcher` (``expect = {type = "ack", id = "m{seq}"}``): the
  message is JSON whose every expected key is present with an equal value;
  nested tables are subsets, arrays equal element-wise (their tables again
  subsets); numbers compare by value (``1 == 1.0``), ``true`` is not ``1``.
  Before parsing, the constant strings of the expectation are looked for in
  the raw bytes (``b'"ack"' in data``): a message without them cannot
  match. That test only rejects, and only when the message holds no
  backslash (an escape could spell the same string otherwise).
- :class:`TextMatcher` (``expect = "pong {seq}"``): exactly that text.
- :class:`RegexMatcher` (``expect_regex``): the pattern is found in the text.
- :class:`BinaryMatcher` (``expect_binary``, hex): exactly these bytes.

Text matchers want a text message, the binary one a binary message.

:func:`parse_json` parses a message once however many matchers look at it:
it remembers the last message it parsed (by identity, holding a reference,
so the identity cannot be reused meanwhile). Matching is bounded: JSON
nested deeper than the parser's recursion limit is no match, not a
traceback. :func:`capture` follows a dotted path (``"a.b.0.c"``) into a
matched message (or names a group of a regex match) and returns
:data:`MISSING` when it is absent.
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections.abc import Callable, Mapping
from typing import Any

from wsload.common.template import Node, TextTemplate, ValueTemplate, render_tree


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __bool__(self) -> bool:
        return False


#: What :func:`capture` returns when the path is not in the message.
MISSING: Any = _Sentinel("MISSING")
#: What :func:`parse_json` returns for a message that is not JSON.
NOT_JSON: Any = _Sentinel("NOT_JSON")

_cache: tuple[object, Any] = (None, NOT_JSON)
_loads = json.loads


def parse_json(data: bytes | str) -> Any:
    """``json.loads(data)``, or :data:`NOT_JSON`; a message asked twice is parsed once.

    Only ``bytes`` and ``str`` (immutable) are remembered: a reused buffer
    must not answer with an earlier message's value.
    """
    global _cache
    cached = _cache
    if cached[0] is data:
        return cached[1]
    try:  # decoding first is faster than json.loads' own detection (text frames are UTF-8)
        value = _loads(data.decode() if data.__class__ is bytes else data)
    except (ValueError, RecursionError, TypeError):
        value = NOT_JSON
    if data.__class__ is bytes or data.__class__ is str:
        _cache = (data, value)
    return value


def prime_json(data: bytes, value: Any) -> None:
    """Remember ``value`` as the parse of ``data`` (a protocol codec parsed it already)."""
    global _cache
    _cache = (data, value)


def _same(expected: Any, actual: Any) -> bool:
    """Scalar equality of the step language: numbers by value, other types must agree."""
    if expected.__class__ is actual.__class__:
        return bool(expected == actual)
    if expected.__class__ in _NUMBERS and actual.__class__ in _NUMBERS:
        return bool(expected == actual)
    return False


_NUMBERS = (int, float)


def contains(expected: Any, actual: Any) -> bool:
    """Whether ``actual`` holds ``expected``: tables as subsets, arrays element-wise.

    Recursive over ``expected``; the caller catches :class:`RecursionError`
    (an expected value captured from a very deep message).
    """
    if isinstance(expected, dict):
        if actual.__class__ is not dict:
            return False
        for key, value in expected.items():
            if key not in actual or not contains(value, actual[key]):
                return False
        return True
    if isinstance(expected, list):
        if actual.__class__ is not list or len(actual) != len(expected):
            return False
        return all(contains(e, a) for e, a in zip(expected, actual, strict=True))
    return _same(expected, actual)


#: A compiled check: does ``actual`` hold the expected value, given the client's variables?
Check = Callable[[Any, Mapping[str, Any], random.Random], bool]
_ABSENT: Any = _Sentinel("ABSENT")


def _compile_check(node: Any) -> Check:
    """The check of a :class:`ValueTemplate` tree (``contains`` specialised per node)."""
    if node.__class__ is not Node:
        if node is None or node.__class__ is bool:
            return lambda a, v, r: a is node
        if node.__class__ in _NUMBERS:
            return lambda a, v, r: (a.__class__ is int or a.__class__ is float) and a == node
        cls = node.__class__
        return lambda a, v, r: a.__class__ is cls and a == node
    kind = node.kind
    if kind == "text":
        render = node.arg
        return lambda a, v, r: a.__class__ is str and a == render(v, r)
    if kind == "slot":
        slot = node.arg
        return lambda a, v, r: contains(slot(v, r), a)
    if kind == "list":
        items = tuple(_compile_check(n) for n in node.arg)
        size = len(items)

        def check_list(a: Any, v: Mapping[str, Any], r: random.Random) -> bool:
            if a.__class__ is not list or len(a) != size:
                return False
            return all(check(x, v, r) for check, x in zip(items, a, strict=True))

        return check_list
    # a table: its constant scalars first, its placeholders last (cheapest first)
    pairs = sorted(node.arg, key=lambda kv: _cost(kv[1]))
    keyed = tuple((key, _compile_check(sub)) for key, sub in pairs)

    def check_dict(a: Any, v: Mapping[str, Any], r: random.Random) -> bool:
        if a.__class__ is not dict:
            return False
        for key, check in keyed:
            x = a.get(key, _ABSENT)
            if x is _ABSENT or not check(x, v, r):
                return False
        return True

    return check_dict


def _cost(node: Any) -> int:
    if node.__class__ is not Node:
        return 0
    return 1 if node.kind in ("dict", "list") else 2


def _needles(node: Any, out: list[str]) -> None:
    """Constant strings of the expectation whose JSON spelling is unique without escapes."""
    if node.__class__ is Node:
        if node.kind == "dict":
            for _, sub in node.arg:
                _needles(sub, out)
        elif node.kind == "list":
            for sub in node.arg:
                _needles(sub, out)
    elif node.__class__ is str and not any(c in node for c in '"\\') and node.isprintable():
        out.append('"' + node + '"')


#: Most raw-bytes pre-checks per matcher (each one a C scan of the message).
MAX_NEEDLES = 3


class SubsetMatcher:
    """A JSON message holding the expected table (or equal to the expected array)."""

    __slots__ = ("_bneedles", "_check", "_sneedles", "_tree", "names", "problems", "source")

    def __init__(self, source: Any) -> None:
        template = ValueTemplate(source)
        self.source = source
        self.problems = template.problems
        self.names = frozenset(template.names)
        self._tree = template.tree
        self._check = _compile_check(self._tree)
        found: list[str] = []
        _needles(self._tree, found)
        chosen = sorted(set(found), key=len, reverse=True)[:MAX_NEEDLES]
        self._sneedles = tuple(chosen)
        self._bneedles = tuple(n.encode() for n in chosen)

    def expected(self, values: Mapping[str, Any], rng: random.Random) -> Any:
        """The expectation with its placeholders filled (to explain a mismatch)."""
        return render_tree(self._tree, values, rng)

    def match(
        self, data: bytes | str, text: bool, values: Mapping[str, Any], rng: random.Random
    ) -> Any:
        if not text:
            return None
        if data.__class__ is str:
            needles: tuple[Any, ...] = self._sneedles
            backslash: Any = "\\"
        else:
            needles, backslash = self._bneedles, b"\\"
        for needle in needles:
            if needle not in data:
                if backslash in data:
                    break  # an escape may spell it: only the parse can tell
                return None
        parsed = parse_json(data)
        if parsed is NOT_JSON:
            return None
        try:
            return parsed if self._check(parsed, values, rng) else None
        except RecursionError:
            return None


class TextMatcher:
    """Exactly this text (a template: ``expect = "pong {seq}"``)."""

    __slots__ = ("_bytes", "_template", "_text", "names", "problems", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self._template = TextTemplate(source)
        self.problems = self._template.problems
        self.names = self._template.names
        constant = self._template.render({}, random.Random(0)) if self._template.constant else None
        self._text = constant
        self._bytes = constant.encode() if constant is not None else None

    def expected(self, values: Mapping[str, Any], rng: random.Random) -> str:
        """The text with its placeholders filled (to explain a mismatch)."""
        return self._template.render(values, rng)

    def match(
        self, data: bytes | str, text: bool, values: Mapping[str, Any], rng: random.Random
    ) -> Any:
        if not text:
            return None
        if self._text is not None:
            want: Any = self._text if data.__class__ is str else self._bytes
        else:
            want = self._template.render(values, rng)
            if data.__class__ is not str:
                want = want.encode()
        return data if data == want else None


class RegexMatcher:
    """A text message in which the pattern is found (``re.search``)."""

    __slots__ = ("names", "pattern", "problems", "source")

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.source = pattern.pattern
        self.pattern = pattern
        self.names: frozenset[str] = frozenset()
        self.problems: list[str] = []

    def match(
        self, data: bytes | str, text: bool, values: Mapping[str, Any], rng: random.Random
    ) -> Any:
        if not text:
            return None
        body = data if isinstance(data, str) else data.decode("utf-8", "replace")
        return self.pattern.search(body)


class BinaryMatcher:
    """A binary message of exactly these bytes."""

    __slots__ = ("expected", "names", "problems", "source")

    def __init__(self, expected: bytes) -> None:
        self.expected = expected
        self.source = expected.hex()
        self.names: frozenset[str] = frozenset()
        self.problems: list[str] = []

    def match(
        self, data: bytes | str, text: bool, values: Mapping[str, Any], rng: random.Random
    ) -> Any:
        if text:
            return None
        return data if data == self.expected else None


@functools.lru_cache(maxsize=4096)
def split_path(path: str) -> tuple[str, ...]:
    """``"a.b.0.c"`` as its parts (remembered: paths come from compiled programs)."""
    return tuple(path.split("."))


def path_problem(path: Any, what: str = "a capture path") -> str | None:
    """Why ``path`` is not a usable dotted path, or None (``what`` names it in the line)."""
    if not isinstance(path, str) or not path:
        return f"{what} must be a non-empty string like 'a.b.0.c'"
    if any(part == "" for part in path.split(".")):
        return f"{what.removeprefix('a ')} {path!r} has an empty part"
    return None


def capture(parsed: Any, path: str) -> Any:
    """The value at dotted ``path`` of a matched message, or :data:`MISSING`.

    Each part is a key of a table or, on an array, an index (``0``, or
    ``-1`` for the last). For an ``expect_regex`` match the path names a
    group (or its number) and the value is its text.
    """
    if isinstance(parsed, re.Match):
        try:
            group = parsed.group(int(path) if path.isdigit() else path)
        except IndexError:  # no such group
            return MISSING
        return MISSING if group is None else group
    current = parsed
    for part in split_path(path):
        if current.__class__ is dict:
            current = current.get(part, MISSING)
            if current is MISSING:
                return MISSING
        elif current.__class__ is list:
            try:
                current = current[int(part)]
            except (ValueError, IndexError):
                return MISSING
        else:
            return MISSING
    return current


def compile_matcher(value: Any) -> SubsetMatcher | TextMatcher:
    """The matcher of ``expect`` (or ``fail``): text exactly, a table or array as a JSON subset."""
    return TextMatcher(value) if isinstance(value, str) else SubsetMatcher(value)


__all__ = [
    "MAX_NEEDLES",
    "MISSING",
    "NOT_JSON",
    "BinaryMatcher",
    "RegexMatcher",
    "SubsetMatcher",
    "TextMatcher",
    "capture",
    "compile_matcher",
    "contains",
    "parse_json",
    "path_problem",
    "prime_json",
    "split_path",
]

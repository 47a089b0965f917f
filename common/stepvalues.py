"""The step language's values checked: numbers of seconds, think times, hex, names, captures.

What :func:`wsload.common.steps.compile_step` asks of each value of a step,
one line per problem, without I/O; kept apart so the step grammar stays
readable. :func:`value_shape_problem` bounds every value a step carries
(depth, items, JSON types) iteratively, so no check recurses without bound.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Collection, Mapping
from typing import Any

from wsload.common.match import BinaryMatcher, RegexMatcher, SubsetMatcher, path_problem
from wsload.common.program import Think
from wsload.common.template import NAME, RESERVED
from wsload.common.validation import is_utf8

EXPECT_KEYS = ("expect", "expect_regex", "expect_binary")

#: The default conversation: a JSON round trip whose every field must survive.
DEFAULT_STEPS: tuple[dict[str, Any], ...] = (
    {
        "send": {
            "type": "integration",
            "id": "wsload-{seq}",
            "text": "héllo ✓",
            "number": 12345.5,
            "flag": True,
            "nested": {"list": [1, "two", None], "empty": {}},
        }
    },
    {
        "expect": {
            "type": "integration",
            "id": "wsload-1",
            "text": "héllo ✓",
            "number": 12345.5,
            "flag": True,
            "nested": {"list": [1, "two", None], "empty": {}},
        }
    },
    {"close": 1000},
)

#: Most steps one scenario may have (a conversation, not a data set).
MAX_STEPS = 10_000
#: Deepest nesting of a step's value (tables in arrays in tables...).
MAX_VALUE_DEPTH = 32
#: Most items in one table or array of a step's value.
MAX_VALUE_ITEMS = 10_000
#: Longest ``think`` or ``timeout`` of one step, seconds.
MAX_STEP_SECONDS = 3600.0
#: Longest step name (a metric name in every report).
MAX_NAME_LENGTH = 100


def value_shape_problem(value: Any) -> str | None:
    """Why ``value`` is not a bounded JSON-like value, or None; iterative, never recurses.

    TOML also has dates and times, which neither JSON nor the wire carries.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            if depth > MAX_VALUE_DEPTH:
                return f"nested more than {MAX_VALUE_DEPTH} levels deep"
            if len(item) > MAX_VALUE_ITEMS:
                return f"a table or array of {len(item):,} items (at most {MAX_VALUE_ITEMS:,})"
            if isinstance(item, dict) and not all(isinstance(k, str) for k in item):
                return "a table with a key that is not a string"
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, int) and not isinstance(item, bool) and not _INT64 <= item < _UINT64:
            return "an integer beyond 64 bits"
        elif isinstance(item, str) and not is_utf8(item):
            return "text that is not UTF-8"
        elif item is not None and not isinstance(item, str | int | float | bytes):
            kind = type(item).__name__
            return f"a {kind} (only JSON values: text, numbers, true/false, tables, arrays)"
    return None


_INT64, _UINT64 = -(2**63), 2**64  # what msgpack carries


def seconds_ok(value: Any, *, positive: bool = False) -> bool:
    """A usable number of seconds: finite, not negative (or above zero), within the bound."""
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (value > 0 if positive else value >= 0)
        and value <= MAX_STEP_SECONDS
    )


def did_you_mean(word: str, choices: Collection[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_keys(table: Mapping[Any, Any], keys: Collection[str], where: str = "") -> list[str]:
    """``<where>: unknown key 'k' (did you mean 'x'?)`` per key of ``table`` not in ``keys``.

    The one wording of a misspelt key in every table of a scenario file
    (steps, scenarios, feeder, stages); without ``where`` the line has no
    location (the caller adds it).
    """
    at = f"{where}: " if where else ""
    return [
        f"{at}unknown key {key!r}{did_you_mean(str(key), keys)}" for key in table if key not in keys
    ]


def parse_think(key: str, value: Any) -> Think | str:
    bad = (
        f"{key} must be a number of seconds (0 to {MAX_STEP_SECONDS:g}), "
        "{uniform = [a, b]} or {exponential = mean}"
    )
    if seconds_ok(value):
        return Think("fixed", float(value))
    if not isinstance(value, dict) or len(value) != 1:
        return bad
    ((kind, arg),) = value.items()
    if kind == "uniform":
        ok = isinstance(arg, list) and len(arg) == 2 and all(seconds_ok(a) for a in arg)
        if not ok or arg[0] > arg[1]:
            return f"{key}: uniform takes [low, high] seconds, 0 <= low <= high <= 3600"
        return Think("uniform", float(arg[0]), float(arg[1]))
    if kind == "exponential":
        if not seconds_ok(arg):
            return f"{key}: exponential takes a mean in seconds (0 to {MAX_STEP_SECONDS:g})"
        return Think("exponential", float(arg))
    return f"{key}: unknown distribution {kind!r}{did_you_mean(kind, ('uniform', 'exponential'))}"


def parse_hex(value: Any) -> bytes | None:
    try:
        return bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        return None


def name_problem(name: Any) -> str | None:
    if not isinstance(name, str) or not name.strip():
        return "name must be a non-empty string"
    if len(name) > MAX_NAME_LENGTH:
        return f"name is {len(name)} characters, at most {MAX_NAME_LENGTH}"
    if not name.isprintable() or name != name.strip():
        return "name must be printable, without leading or trailing spaces"
    return None


def parse_captures(
    raw: Any, key: str, body: Any, feeder_columns: Collection[str] | None
) -> tuple[list[tuple[str, str]], list[str]]:
    """``capture = {var = "path"}``: the pairs, or why not.

    For ``expect_regex`` the path names a group, by name or number; a number
    may be written as an integer (``{n = 2}``) and is kept as its text.
    """
    if key not in EXPECT_KEYS:
        return [], [f"capture applies to expects only, not to {key}"]
    if not isinstance(raw, dict) or not raw:
        return [], ['capture takes a table of variable = "dotted.path"']
    if not isinstance(body, SubsetMatcher | RegexMatcher):
        if body is None:
            return [], []  # the expect itself is wrong: said already
        what = "a binary" if isinstance(body, BinaryMatcher) else "an exact text"
        return [], [
            f"capture needs a JSON expect (a table) or expect_regex with groups, not {what} expect"
        ]
    pairs: list[tuple[str, str]] = []
    problems: list[str] = []
    for var, path in raw.items():
        if not NAME.match(var):
            problems.append(f"capture: {var!r} is not a variable name (letters, digits, _)")
        elif var in RESERVED:
            problems.append(f"capture: {var!r} would hide the built-in variable {{{var}}}")
        elif feeder_columns and var in feeder_columns:
            problems.append(f"capture: {var!r} would hide the feeder column {{{var}}}")
        elif isinstance(path, int) and not isinstance(path, bool):
            if not isinstance(body, RegexMatcher):
                problems.append(
                    f"capture {var}: a capture path is a string, a dotted path like "
                    f"'a.b.0.c' (a group number such as {path} is for expect_regex)"
                )
            elif not 0 <= path <= body.pattern.groups:
                problems.append(f"capture {var}: the regular expression has no group {path}")
            else:
                pairs.append((var, str(path)))
        elif (p := path_problem(path)) is not None:
            problems.append(f"capture {var}: {p}")
        elif isinstance(body, RegexMatcher) and not _has_group(body.pattern, path):
            problems.append(f"capture {var}: the regular expression has no group {path!r}")
        else:
            pairs.append((var, path))
    return pairs, problems


def _has_group(pattern: re.Pattern[str], path: str) -> bool:
    return path in pattern.groupindex or (path.isdigit() and 0 <= int(path) <= pattern.groups)


__all__ = [
    "DEFAULT_STEPS",
    "EXPECT_KEYS",
    "MAX_NAME_LENGTH",
    "MAX_STEPS",
    "MAX_STEP_SECONDS",
    "MAX_VALUE_DEPTH",
    "MAX_VALUE_ITEMS",
    "did_you_mean",
    "name_problem",
    "parse_captures",
    "parse_hex",
    "parse_think",
    "seconds_ok",
    "unknown_keys",
    "value_shape_problem",
]

"""Integration scenario steps: parsed and checked without I/O, on both sides.

A scenario is a list of ``[[steps]]``, each one action with an optional
``timeout`` (seconds)::

    [[steps]]
    send = '{"type": "order", "id": "{seq}", "items": [1, 2]}'   # text template
    [[steps]]
    expect = {type = "order", items = [1, 2]}    # JSON subset of the reply
    [[steps]]
    expect_regex = '"id": "\\d+"'                # or a regular expression
    [[steps]]
    send_binary = "00ff10"                       # hex; expect_binary the same way
    [[steps]]
    wait = 0.5
    [[steps]]
    close = 1000

The parser lives in ``common`` so the coordinator checks a scenario before
any worker starts (a malformed step is bad input, exit 2, like a bad
top-level key), and the worker parses the same steps with the same code.
:func:`step_problems` reports every malformed step at once, one line each;
:func:`parse_steps` raises :class:`ScenarioError` with all of them.

Bounds: at most :data:`MAX_STEPS` steps, step values nested at most
:data:`MAX_VALUE_DEPTH` deep with at most :data:`MAX_VALUE_ITEMS` items in
any one table or array, so a scenario always fits the wire's limits and no
check recurses without bound.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wsload.common.errors import SpecError
from wsload.common.validation import is_utf8

ACTIONS = ("send", "send_binary", "expect", "expect_regex", "expect_binary", "wait", "close")

#: Most steps one scenario may have (a conversation, not a data set).
MAX_STEPS = 10_000
#: Deepest nesting of a step's value (tables in arrays in tables...).
MAX_VALUE_DEPTH = 32
#: Most items in one table or array of a step's value.
MAX_VALUE_ITEMS = 10_000
#: Longest ``wait`` or ``timeout`` of one step, seconds.
MAX_STEP_SECONDS = 3600.0

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


class ScenarioError(SpecError):
    """One or more scenario steps are malformed (each problem names its step)."""


@dataclass(frozen=True)
class Step:
    number: int
    action: str
    value: Any
    timeout: float | None

    @property
    def name(self) -> str:
        shown = self.value if isinstance(self.value, str | int | float) else json.dumps(self.value)
        text = str(shown)
        text = text if len(text) <= 28 else text[:25] + "..."
        return f"step {self.number}: {self.action} {text}"


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


def _seconds(value: Any) -> bool:
    """A usable number of seconds: finite, not negative, not a bool, within the bound."""
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and 0 <= value <= MAX_STEP_SECONDS
    )


def _parse_one(n: int, item: Any) -> Step | str:
    """The step, or the one line saying what is wrong with it."""
    if not isinstance(item, dict) or not all(isinstance(k, str) for k in item):
        return f"step {n}: expected a table of action = value"
    unknown = [k for k in item if k not in ACTIONS and k != "timeout"]
    if unknown:
        return f"step {n}: unknown key {unknown[0]!r} (use one of {', '.join(ACTIONS)})"
    actions = [k for k in item if k in ACTIONS]
    if len(actions) != 1:
        return f"step {n}: needs exactly one of {', '.join(ACTIONS)}"
    action = actions[0]
    value = item[action]
    shape = value_shape_problem(value)
    if shape:
        return f"step {n}: {action} value is {shape}"
    timeout = item.get("timeout")
    if timeout is not None and (not _seconds(timeout) or timeout == 0):
        return (
            f"step {n}: timeout must be a positive number of seconds (at most {MAX_STEP_SECONDS:g})"
        )
    if action in ("send_binary", "expect_binary"):
        try:
            value = bytes.fromhex(value) if isinstance(value, str) else None
        except ValueError:
            value = None
        if value is None:
            return f"step {n}: {action} must be a hex string"
    elif action == "expect_regex":
        if not isinstance(value, str):
            return f"step {n}: expect_regex must be a string"
        try:
            value = re.compile(value)
        except (re.error, RecursionError, OverflowError) as exc:
            return f"step {n}: bad regular expression ({exc})"
    elif action == "wait":
        if not _seconds(value):
            return f"step {n}: wait must be a number of seconds (0 to {MAX_STEP_SECONDS:g})"
    elif action == "close":
        if value is True:
            value = 1000
        if isinstance(value, bool) or not isinstance(value, int) or not 1000 <= value < 5000:
            return f"step {n}: close takes a close code (1000-4999) or true"
    elif action == "send" and not isinstance(value, str | dict | list):
        return f"step {n}: send takes a text template or a table"
    return Step(n, action, value, float(timeout) if timeout else None)


def _parse_all(raw: Sequence[Any]) -> tuple[list[Step], list[str]]:
    if len(raw) > MAX_STEPS:
        return [], [f"steps: {len(raw):,} steps, at most {MAX_STEPS:,}"]
    steps: list[Step] = []
    problems: list[str] = []
    for n, item in enumerate(raw, start=1):
        parsed = _parse_one(n, item)
        if isinstance(parsed, str):
            problems.append(parsed)
        else:
            steps.append(parsed)
    return steps, problems


def step_problems(raw: Sequence[Any]) -> list[str]:
    """Every malformed step, one line each; empty when all steps are fine."""
    return _parse_all(raw)[1]


def parse_steps(raw: Sequence[Any]) -> list[Step]:
    """Check and normalise scenario steps; raises :class:`ScenarioError` naming each bad step."""
    steps, problems = _parse_all(raw)
    if problems:
        raise ScenarioError(problems)
    return steps


__all__ = [
    "ACTIONS",
    "DEFAULT_STEPS",
    "MAX_STEPS",
    "MAX_STEP_SECONDS",
    "MAX_VALUE_DEPTH",
    "MAX_VALUE_ITEMS",
    "ScenarioError",
    "Step",
    "parse_steps",
    "step_problems",
    "value_shape_problem",
]

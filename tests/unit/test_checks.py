"""Sans-I/O parts of the functional modes: scenario parsing, matching, event bookkeeping."""

from __future__ import annotations

import datetime
import math
from typing import Any

import pytest

from wsload.common.steps import MAX_VALUE_ITEMS, step_problems
from wsload.worker.checks.integration import (
    DEFAULT_STEPS,
    ScenarioError,
    parse_steps,
    subset_mismatch,
)
from wsload.worker.checks.unit import accept_key


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_accept_key_of_rfc_6455_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_default_scenario_parses() -> None:
    steps = parse_steps(DEFAULT_STEPS)
    assert [s.action for s in steps] == ["send", "expect", "close"]


def test_steps_are_normalised() -> None:
    steps = parse_steps(
        [
            {"send_binary": "00ff"},
            {"expect_binary": "00FF", "timeout": 2},
            {"expect_regex": r"\d+"},
            {"wait": 0.5},
            {"close": True},
        ]
    )
    assert steps[0].value == b"\x00\xff"
    assert steps[1].timeout == 2.0
    assert steps[2].value.search("abc 12")
    assert steps[4].value == 1000


@pytest.mark.parametrize(
    ("step", "needle"),
    [
        ({"sned": "x"}, "step 1: unknown key 'sned'"),
        ({}, "needs exactly one of"),
        ({"send": "a", "expect": "b"}, "needs exactly one of"),
        ({"send_binary": "zz"}, "must be a hex string"),
        ({"expect_regex": "("}, "bad regular expression"),
        ({"wait": -1}, "wait must be a number"),
        ({"close": 999}, "close takes a close code"),
        ({"send": 5}, "send takes a text template or a table"),
        ({"send": "x", "timeout": 0}, "timeout must be a positive number"),
    ],
)
def test_bad_steps_name_the_step(step: dict[str, object], needle: str) -> None:
    with pytest.raises(ScenarioError, match=needle.replace("(", r"\(")):
        parse_steps([step])


@pytest.mark.parametrize(
    ("expected", "actual", "found"),
    [
        ({"a": 1}, {"a": 1, "b": 2}, None),
        ({"a": {"b": [1, {"c": "x"}]}}, {"a": {"b": [1, {"c": "x", "d": 0}]}}, None),
        ({"a": 1.0}, {"a": 1}, None),
        ({"a": 1}, {"b": 1}, "$.a: missing"),
        ({"a": [1, 2]}, {"a": [1]}, "$.a: expected a list of 2"),
        ({"a": {"b": True}}, {"a": {"b": 1}}, "$.a.b: expected True, got 1"),
        ({"a": "x"}, [1], "$: expected an object, got list"),
    ],
)
def test_subset_mismatch(expected: object, actual: object, found: str | None) -> None:
    got = subset_mismatch(expected, actual)
    if found is None:
        assert got is None
    else:
        assert got is not None
        assert got.startswith(found)


@pytest.mark.parametrize(
    ("step", "needle"),
    [
        ({"wait": math.nan}, "wait must be a number of seconds"),
        ({"wait": math.inf}, "wait must be a number of seconds"),
        ({"wait": 1e9}, "wait must be a number of seconds (0 to 3600)"),
        ({"send": "x", "timeout": math.nan}, "timeout must be a positive number"),
        ({"send": "x", "timeout": math.inf}, "timeout must be a positive number"),
        ({"expect": datetime.date(2024, 1, 1)}, "expect value is a date"),
        ({"send": {"a": [datetime.time(1, 2)]}}, "send value is a time"),
        ({"expect": _nested(33)}, "nested more than 32 levels deep"),
        ({"expect": list(range(MAX_VALUE_ITEMS + 1))}, "a table or array of 10,001 items"),
        ("send", "step 1: expected a table of action = value"),
    ],
)
def test_steps_values_are_bounded_and_finite(step: object, needle: str) -> None:
    problems = step_problems([step])
    assert len(problems) == 1, problems
    assert needle in problems[0]


def test_every_bad_step_is_named_at_once() -> None:
    steps = [{"send": "ok"}, {"sned": "x"}, {"wait": -1}, {"close": 1}, {"expect": "ok"}]
    assert [p.split(":")[0] for p in step_problems(steps)] == ["step 2", "step 3", "step 4"]
    with pytest.raises(ScenarioError) as info:
        parse_steps(steps)
    assert len(info.value.problems) == 3


def test_the_worker_parses_steps_with_the_common_parser() -> None:
    import wsload.common.steps
    import wsload.worker.checks.integration

    assert wsload.worker.checks.integration.parse_steps is wsload.common.steps.parse_steps

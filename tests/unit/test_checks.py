"""Sans-I/O parts of the functional modes: scenario parsing, matching, event bookkeeping."""

from __future__ import annotations

import pytest

from worker.checks.event import Deliveries
from worker.checks.integration import DEFAULT_STEPS, ScenarioError, parse_steps, subset_mismatch
from worker.checks.unit import accept_key


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


def test_deliveries_count_duplicates_and_disorder() -> None:
    d = Deliveries()
    assert d.add("e", 1)
    assert d.add("e", 3)
    assert d.add("e", 2)  # late but new
    assert not d.add("e", 3)  # duplicate
    assert (d.duplicates, d.out_of_order, len(d.seen)) == (1, 1, 3)

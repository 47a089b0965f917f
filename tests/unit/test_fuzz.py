"""Every decoder of outside input, fuzzed: only its own error type may come out.

Bounded (max_examples) so CI time stays fixed; the protocol and histogram
decoders have their own fuzz tests beside their other tests.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from typing import Any
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from wsload.common.errors import SpecError
from wsload.common.spec import FIELD_NAMES, build_spec, spec_from_dict
from wsload.common.steps import ScenarioError, parse_steps, value_shape_problem
from wsload.common.thresholds import ThresholdError, parse_threshold
from wsload.common.validation import display_url, split_credentials, url_problems
from wsload.worker.payload import PayloadTemplate

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from([*FIELD_NAMES, "bogus"]), _json, max_size=8))
def test_spec_from_the_wire(data: dict[str, Any]) -> None:
    with contextlib.suppress(SpecError):
        spec = spec_from_dict(data)
        problems = spec.problems()  # range checks must not raise either
        assert all(isinstance(p, str) for p in problems)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=40))
def test_threshold_expressions(expr: str) -> None:
    with contextlib.suppress(ThresholdError):
        parse_threshold(expr)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["send", "send_binary", "expect", "expect_regex", "expect_binary",
                             "wait", "close", "timeout", "other"]),
            _json,
            max_size=3,
        ),
        max_size=5,
    )
)  # fmt: skip
def test_scenario_steps(steps: list[dict[str, Any]]) -> None:
    with contextlib.suppress(ScenarioError):
        parse_steps(steps)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.integers(min_value=0, max_value=4096))
def test_payload_templates_render(template: str, size: int) -> None:
    bare = PayloadTemplate(template).render("client-1", 7, 1.5)
    text = PayloadTemplate(template, size, seed=1).render("client-1", 7, 1.5)
    if size == 0:
        assert text == bare
    else:
        # Padded to exactly ``size``, unless the message is longer without any padding
        # (the added '"pad": ""' slot of a JSON template costs at most 12 characters).
        assert len(text) == size or size < len(text) <= len(bare) + 12


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12), st.text(max_size=12), st.text(max_size=30))
def test_url_credentials_never_print(user: str, password: str, rest: str) -> None:
    secret = "S3cr3t" + password
    url = f"ws://{quote(user, safe='')}:{quote(secret, safe='')}@{rest}"
    problems = url_problems("ws_url", url, ("ws", "wss"))
    assert all(isinstance(p, str) and "\n" not in p for p in problems)
    assert "S3cr3t" not in display_url(url)
    assert not any("S3cr3t" in p for p in problems)
    bare, authorization = split_credentials(url)
    assert "S3cr3t" not in bare
    if authorization is not None:
        assert authorization.startswith("Basic ")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_url_checks_take_any_text(url: str) -> None:
    for problem in url_problems("ws_url", url, ("ws", "wss")):
        assert "\n" not in problem
    display_url(url)
    split_credentials(url)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_step_values_of_any_shape(value: Any) -> None:
    problem = value_shape_problem(value)
    assert problem is None or isinstance(problem, str)


_toml_value = st.recursive(
    st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["send", "expect", "wait", "timeout", "x"]), inner)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from([*FIELD_NAMES, "bogus"]), _toml_value, max_size=6))
def test_any_scenario_is_a_spec_or_problem_lines(data: dict[str, Any]) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as fh:
        fh.write(_toml(data))
        fh.flush()
        try:
            build_spec(scenario=fh.name, env={})
        except SpecError as exc:
            problems = exc.problems
        else:
            return
    assert problems
    assert all(isinstance(p, str) and "\n" not in p for p in problems)


def _toml(data: dict[str, Any]) -> str:
    """A TOML document of ``data``: each value as an inline value (arrays, inline tables)."""
    return "".join(f"{key} = {_inline(value)}\n" for key, value in data.items())


def _inline(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, int | str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return "{" + ", ".join(f"{k} = {_inline(v)}" for k, v in value.items()) + "}"

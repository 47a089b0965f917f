"""Templates of the step language: placeholders, escapes, types, and what compiling refuses."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import pytest

from wsload.common.template import (
    JsonTemplate,
    TextTemplate,
    ValueTemplate,
    compile_send,
    unknown_variable_problems,
)
from wsload.worker.payload import PayloadTemplate

VALUES: dict[str, Any] = {
    "client_id": "c-7",
    "seq": 42,
    "ts": 1700000000.25,
    "pad": "",
    "user": "alice",
    "token": {"k": [1, "x"]},
}


def rng() -> random.Random:
    return random.Random(5)


def test_text_template_fills_every_placeholder() -> None:
    t = TextTemplate("hello {user} {seq} at {ts} from {client_id}")
    assert t.render(VALUES, rng()) == "hello alice 42 at 1700000000.250000 from c-7"
    assert t.names == {"user", "seq", "ts", "client_id"}
    assert not t.problems
    assert not t.constant


def test_text_without_placeholders_is_constant() -> None:
    t = TextTemplate("ping")
    assert t.constant
    assert t.render({}, rng()) == "ping"


def test_json_braces_are_literal_and_double_braces_escape_a_placeholder() -> None:
    t = TextTemplate('{"a": {"b": "{user}"}} {{seq}} {{ {not a name} {1x}')
    assert t.render(VALUES, rng()) == '{"a": {"b": "alice"}} {seq} {{ {not a name} {1x}'
    assert t.names == {"user"}


def test_a_value_that_is_not_text_renders_as_compact_json_in_text() -> None:
    t = TextTemplate("t={token} s={seq}")
    assert t.render(VALUES, rng()) == 't={"k":[1,"x"]} s=42'


def test_the_echo_payload_template_renders_as_before() -> None:
    # the echo path keeps its own template; the same text means the same message
    source = '{"type": "test", "client": "{client_id}", "seq": {seq}, "ts": {ts}}'
    echo = PayloadTemplate(source).render("c-7", 42, 1700000000.25)
    assert TextTemplate(source).render(VALUES, rng()) == echo


def test_uuid_and_random_int_draw_from_the_given_rng() -> None:
    t = TextTemplate("{uuid} {random_int(3, 5)} {random_int(-2,-2)}")
    first = t.render({}, random.Random(9)).split()
    again = t.render({}, random.Random(9)).split()
    assert first == again
    assert uuid.UUID(first[0]).version == 4
    assert 3 <= int(first[1]) <= 5
    assert first[2] == "-2"
    assert t.names == frozenset()


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("{random_int(5,1)}", "random_int(a,b) needs a <= b"),
        ("{random_int(a,b)}", "random_int takes two integers"),
        ("{random_int(1)}", "random_int takes two integers"),
        ("{rand(1,2)}", "unknown function 'rand'"),
    ],
)
def test_bad_calls_are_problems(source: str, needle: str) -> None:
    (problem,) = TextTemplate(source).problems
    assert needle in problem


def test_unknown_variables_get_did_you_mean() -> None:
    problems = unknown_variable_problems({"tokn", "seq", "user", "zzz"}, {"token", "user"})
    assert problems[0] == "unknown variable {tokn} (did you mean 'token'?)"
    assert problems[1].startswith("unknown variable {zzz} (known: client_id, pad, seq, token")


def test_a_table_is_sent_as_compact_json_with_typed_placeholders() -> None:
    t = JsonTemplate(
        {"type": "msg", "id": "m{seq}", "n": "{seq}", "tok": "{token}", "ts": "{ts}",
         "q": 'say "{user}"', "esc": "{{seq}}", "list": [1, "{user}", None, True]}
    )  # fmt: skip
    text = t.render(VALUES, rng())
    assert json.loads(text) == {
        "type": "msg", "id": "m42", "n": 42, "tok": {"k": [1, "x"]}, "ts": 1700000000.25,
        "q": 'say "alice"', "esc": "{seq}", "list": [1, "alice", None, True],
    }  # fmt: skip
    assert ", " not in text
    assert ": " not in text
    assert t.names == {"seq", "token", "user", "ts"}


def test_json_strings_are_escaped_and_non_ascii_kept() -> None:
    t = JsonTemplate({"text": "héllo {user}"})
    assert t.render({"user": 'a"b\\c\n'}, rng()) == '{"text":"héllo a\\"b\\\\c\\n"}'


def test_a_missing_variable_renders_empty_or_null() -> None:
    assert TextTemplate("[{gone}]").render({}, rng()) == "[]"
    assert JsonTemplate({"a": "{gone}"}).render({}, rng()) == '{"a":null}'


def test_value_template_keeps_types_and_constants() -> None:
    v = ValueTemplate({"type": "ack", "id": "m{seq}", "n": "{seq}", "deep": {"x": ["{user}"]}})
    assert v.render(VALUES, rng()) == {
        "type": "ack", "id": "m42", "n": 42, "deep": {"x": ["alice"]},
    }  # fmt: skip
    assert ValueTemplate({"a": [1, 2]}).render({}, rng()) == {"a": [1, 2]}


def test_compile_send_picks_text_or_json() -> None:
    assert isinstance(compile_send("x {seq}"), TextTemplate)
    assert isinstance(compile_send({"a": 1}), JsonTemplate)
    assert compile_send([1, "{seq}"]).render(VALUES, rng()) == "[1,42]"

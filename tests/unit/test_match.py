"""Matchers of the step language: JSON subsets, text, regex, bytes, captures, and their bounds."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

import wsload.common.match as match_module
from wsload.common.match import (
    MISSING,
    NOT_JSON,
    BinaryMatcher,
    RegexMatcher,
    SubsetMatcher,
    TextMatcher,
    capture,
    compile_matcher,
    contains,
    parse_json,
)

RNG = random.Random(1)


def m(expected: Any, data: bytes | str, values: dict[str, Any] | None = None) -> Any:
    return SubsetMatcher(expected).match(data, True, values or {}, RNG)


@pytest.mark.parametrize(
    ("expected", "data", "ok"),
    [
        ({"type": "ack"}, b'{"type": "ack", "id": 3}', True),
        ({"type": "ack"}, b'{"type": "nack"}', False),
        ({"type": "ack"}, b'{"kind": "ack"}', False),
        ({"a": {"b": [1, {"c": "x"}]}}, b'{"a": {"b": [1, {"c": "x", "d": 0}]}, "e": 1}', True),
        ({"a": [1, 2]}, b'{"a": [1, 2, 3]}', False),
        ({"a": [1, 2]}, b'{"a": [2, 1]}', False),
        ({"a": 1.0}, b'{"a": 1}', True),
        ({"a": 1}, b'{"a": true}', False),
        ({"a": True}, b'{"a": 1}', False),
        ({"a": "1"}, b'{"a": 1}', False),
        ({"a": {}}, b'{"a": {"b": 1}}', True),
        ({"a": {}}, b'{"a": []}', False),
        ({"type": "ack"}, b'["ack"]', False),
        ([1, "two"], b'[1, "two"]', True),
        ({"type": "ack"}, b'not json with "ack"', False),
        ({"t": "héllo"}, '{"t": "héllo"}'.encode(), True),
    ],
)
def test_json_subset(expected: Any, data: bytes, ok: bool) -> None:
    assert (m(expected, data) is not None) is ok
    assert (m(expected, data.decode("utf-8", "replace")) is not None) is ok  # str data too


def test_templates_inside_the_expectation_take_the_clients_values() -> None:
    expected = {"type": "ack", "id": "m{seq}", "n": "{seq}", "items": ["{user}", 2]}
    data = b'{"type": "ack", "id": "m7", "n": 7, "items": ["bob", 2]}'
    assert m(expected, data, {"seq": 7, "user": "bob"}) == {
        "type": "ack", "id": "m7", "n": 7, "items": ["bob", 2],
    }  # fmt: skip
    assert m(expected, data, {"seq": 8, "user": "bob"}) is None


def test_a_captured_object_compares_as_a_subset() -> None:
    expected = {"room": "{room}"}
    assert m(expected, b'{"room": {"id": 1, "n": "a"}}', {"room": {"id": 1}}) is not None
    assert m(expected, b'{"room": {"id": 2}}', {"room": {"id": 1}}) is None


def test_the_raw_pre_check_rejects_without_parsing_but_never_wrongly() -> None:
    matcher = SubsetMatcher({"type": "ack", "id": "m{seq}"})
    heartbeat = b'{"type": "heartbeat", "id": "m1"}'
    assert matcher.match(heartbeat, True, {"seq": 1}, RNG) is None
    assert match_module._cache[0] is not heartbeat  # never parsed
    # the same string spelled with an escape still matches: the pre-check only rejects
    escaped = b'{"type": "\\u0061ck", "id": "m1"}'
    assert matcher.match(escaped, True, {"seq": 1}, RNG) == {"type": "ack", "id": "m1"}


def test_text_flag_and_binary_messages() -> None:
    data = b'{"type": "ack"}'
    assert SubsetMatcher({"type": "ack"}).match(data, False, {}, RNG) is None
    assert TextMatcher("pong").match(b"pong", False, {}, RNG) is None
    assert RegexMatcher(re.compile("p.ng")).match(b"pong", False, {}, RNG) is None
    assert BinaryMatcher(b"\x00\x01").match(b"\x00\x01", True, {}, RNG) is None
    assert BinaryMatcher(b"\x00\x01").match(b"\x00\x01", False, {}, RNG) == b"\x00\x01"
    assert BinaryMatcher(b"\x00\x01").match(b"\x00\x02", False, {}, RNG) is None


def test_exact_text_constant_and_template() -> None:
    assert TextMatcher("pong").match(b"pong", True, {}, RNG) == b"pong"
    assert TextMatcher("pong").match("pong", True, {}, RNG) == "pong"
    assert TextMatcher("pong").match(b"pong ", True, {}, RNG) is None
    assert TextMatcher("pong {seq}").match(b"pong 3", True, {"seq": 3}, RNG) is not None
    assert TextMatcher("pong {seq}").match(b"pong 3", True, {"seq": 4}, RNG) is None
    assert TextMatcher("").match(b"", True, {}, RNG) == b""  # matched, though falsy


def test_regex_searches_text() -> None:
    r = RegexMatcher(re.compile(r"id=(?P<id>\d+)"))
    found = r.match(b"ok id=12 done", True, {}, RNG)
    assert found is not None
    assert capture(found, "id") == "12"
    assert capture(found, "1") == "12"
    assert capture(found, "nope") is MISSING
    assert r.match(b"\xff id=3", True, {}, RNG) is not None  # bad UTF-8 is replaced, not raised
    assert r.match(b"id=x", True, {}, RNG) is None


def test_one_parse_per_message() -> None:
    data = b'{"type": "ack", "id": 1}'
    first = parse_json(data)
    assert parse_json(data) is first
    SubsetMatcher({"type": "ack"}).match(data, True, {}, RNG)
    assert match_module._cache[0] is data
    buffer = bytearray(b'{"a": 1}')  # a reused buffer is never remembered
    assert parse_json(buffer) == {"a": 1}
    buffer[6:7] = b"2"
    assert parse_json(buffer) == {"a": 2}
    assert parse_json(b"{nope") is NOT_JSON


def test_hostile_nesting_is_no_match_not_a_traceback() -> None:
    deep = b"[" * 200_000 + b"]" * 200_000
    assert parse_json(deep) is NOT_JSON
    assert SubsetMatcher([]).match(deep, True, {}, RNG) is None


def _deep(depth: int) -> tuple[bytes, Any]:
    text = b'{"a": ' * depth + b"1" + b"}" * depth
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return text, value


def test_comparing_with_a_captured_value_as_deep_as_the_parser_allows_is_bounded() -> None:
    depth = 5000
    while parse_json(_deep(depth)[0]) is NOT_JSON:  # the deepest message this stack parses
        depth -= 50
    data, value = _deep(depth + 50)  # compared one level deeper than that: recursion runs out
    parsed_data, _ = _deep(depth)
    assert parse_json(parsed_data) is not NOT_JSON
    matcher = SubsetMatcher({"a": "{deep}"})
    assert matcher.match(parsed_data, True, {"deep": value}, RNG) is None
    assert matcher.match(data, True, {"deep": value}, RNG) is None


def test_capture_follows_dotted_paths() -> None:
    msg = {"a": {"b": [{"c": 5}, {"c": 6}]}, "0": "zero", "n": None}
    assert capture(msg, "a.b.0.c") == 5
    assert capture(msg, "a.b.-1.c") == 6
    assert capture(msg, "0") == "zero"  # a table's key, even when it looks like a number
    assert capture(msg, "n") is None  # present, null
    assert capture(msg, "a.b.2.c") is MISSING
    assert capture(msg, "a.b.x") is MISSING
    assert capture(msg, "a.b.0.c.d") is MISSING
    assert capture(msg, "zz") is MISSING
    assert not MISSING


def test_compile_matcher_and_contains() -> None:
    assert isinstance(compile_matcher("pong"), TextMatcher)
    assert isinstance(compile_matcher({"a": 1}), SubsetMatcher)
    assert contains({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2, "c": 3}], "d": 4})
    assert not contains({"a": [1]}, {"a": [1, 2]})

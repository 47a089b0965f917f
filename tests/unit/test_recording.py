"""A conversation recorded in the console becomes a scenario that replays it.

Every exported file is read back by the step language itself
(``build_spec(scenario=...)`` and ``compile_workload``) and replayed over the
recording: each send step renders to what the user sent, each expect step
matches a recorded reply (skipping what it does not match, as a client
counts unsolicited messages), captures take the recorded values.
"""

from __future__ import annotations

import json
import random
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wsload.common.match import capture
from wsload.common.program import Action, Program
from wsload.common.spec import build_spec
from wsload.common.steps import compile_workload
from wsload.common.template import TextTemplate
from wsload.coordinator.recording import (
    MAX_EVENTS,
    RecordingError,
    export_scenario,
    parse_recording,
    toml_value,
)
from wsload.coordinator.recording_values import escape

URL = "ws://127.0.0.1:9/ws"


class Rec:
    """A recording written the way the page records it."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def send(self, t: float, value: Any, kind: str = "json") -> Rec:
        data = json.dumps(value) if kind == "json" else value
        self.events.append({"t": t, "dir": "out", "kind": kind, "data": data})
        return self

    def recv(self, t: float, value: Any, kind: str = "text") -> Rec:
        data = value if isinstance(value, str) else json.dumps(value)
        self.events.append({"t": t, "dir": "in", "kind": kind, "data": data})
        return self

    def mark(self, t: float) -> Rec:
        self.events.append({"t": t, "dir": "mark"})
        return self

    def body(self, loop: str = "auto") -> dict[str, Any]:
        return {"url": URL, "loop": loop, "events": self.events}


def export(rec: Rec, tmp_path: Path, loop: str = "auto") -> tuple[str, dict[str, Any], Program]:
    """The TOML text, as parsed, and its compiled program (checked by the step language)."""
    text = export_scenario(parse_recording(rec.body(loop)))
    path = tmp_path / "recorded.toml"
    path.write_text(text, encoding="utf-8")
    spec = build_spec(scenario=path)
    assert spec.ws_url == URL
    workload = compile_workload(spec)
    assert len(workload.programs) == 1
    return text, tomllib.loads(text), workload.programs[0]


def replay(program: Program, rec: Rec, passes: int) -> dict[str, Any]:
    """Run the program over the recording; returns the variables at the end."""
    rng = random.Random(0)
    values: dict[str, Any] = {"client_id": "0", "seq": 0, "ts": 0.0, "pad": ""}
    events = iter(e for e in rec.events if e["dir"] != "mark")
    for seq, steps in [(0, program.setup)] + [(n, program.loop) for n in range(1, passes + 1)]:
        values["seq"] = seq
        for step in steps:
            if step.action in (Action.SEND, Action.SEND_BINARY):
                _replay_send(step.action, step.body, _next(events, "out"), values, rng)
            elif step.expects:
                parsed = _replay_expect(step.body, events, values, rng, step.name)
                for name, where in step.capture:
                    values[name] = capture(parsed, where)
    return values


def _next(events: Iterator[dict[str, Any]], direction: str) -> dict[str, Any]:
    for event in events:
        if event["dir"] == direction:
            return event
    raise AssertionError(f"the recording has no more '{direction}' events")


def _replay_send(
    action: Action, body: Any, event: dict[str, Any], values: dict[str, Any], rng: random.Random
) -> None:
    if action == Action.SEND_BINARY:
        assert body == bytes.fromhex(event["data"])
        return
    rendered = body.render(values, rng)
    if event["kind"] == "json":
        assert json.loads(rendered) == json.loads(event["data"])
    else:
        assert rendered == event["data"]


def _replay_expect(
    matcher: Any, events: Iterator[dict[str, Any]], values: dict[str, Any], rng: Any, name: str
) -> Any:
    for event in events:
        assert event["dir"] == "in", f"{name}: a send came before the reply it expects"
        binary = event["kind"] == "binary"
        data = bytes.fromhex(event["data"]) if binary else event["data"].encode()
        parsed = matcher.match(data, not binary, values, rng)
        if parsed is not None:
            return parsed
    raise AssertionError(f"{name}: no recorded message matches")


def steps_of(doc: dict[str, Any], table: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = doc.get(table, [])
    return steps


def chat(passes: int = 3) -> Rec:
    """Login (token), join, then message/ack passes, among heartbeats."""
    rec = Rec().recv(0.1, {"type": "heartbeat", "ts": 1764126000.123})
    rec.send(1.0, {"type": "login", "user": "alice", "password": "pw"})
    rec.recv(1.01, {"type": "login_ok", "token": "tok-8f3a9c2e1b7d", "server_time": 1764126001.2})
    rec.send(2.5, {"type": "join", "room": "lobby", "token": "tok-8f3a9c2e1b7d"})
    rec.recv(2.51, {"type": "joined", "room": "lobby", "members": 3})
    rec.recv(2.9, {"type": "heartbeat", "ts": 1764126002.9})
    for n in range(1, passes + 1):
        t = 3.0 + 2 * (n - 1)
        rec.send(t, {"type": "msg", "id": f"m{n}", "token": "tok-8f3a9c2e1b7d", "text": "hi"})
        uuid = f"{n:08x}-aaaa-4bbb-8ccc-{n:012x}"
        rec.recv(t + 0.01, {"type": "ack", "id": f"m{n}", "uuid": uuid})
        if n == 2:
            rec.recv(t + 0.5, {"type": "heartbeat", "ts": 1764126004.5})
    return rec


def test_a_chat_becomes_steps_then_a_loop_with_captures_seq_and_no_heartbeats(
    tmp_path: Path,
) -> None:
    text, doc, program = export(chat(), tmp_path)
    setup, loop = steps_of(doc, "steps"), steps_of(doc, "loop")
    assert setup == [
        {"send": {"type": "login", "user": "alice", "password": "pw"}},
        {"name": "login_ok", "expect": {"type": "login_ok"}, "capture": {"token": "token"}},
        {"think": 1.49},
        {"send": {"type": "join", "room": "lobby", "token": "{token}"}},
        {"name": "joined", "expect": {"type": "joined", "room": "lobby"}},  # not the count
    ]
    assert loop == [
        {"send": {"type": "msg", "id": "m{seq}", "token": "{token}", "text": "hi"}},
        {"name": "ack", "expect": {"type": "ack", "id": "m{seq}"}},
    ]
    assert doc["interval"] == 2.0  # one pass every 2 s, as recorded
    assert "heartbeat" not in json.dumps(setup + loop)
    left_out = r"^# left out: 3 message\(s\) the server pushed unasked .*heartbeat"
    assert re.search(left_out, text, re.M)
    assert "unsolicited" in text
    values = replay(program, chat(), passes=3)
    assert values["token"] == "tok-8f3a9c2e1b7d"
    assert program.steps[1].capture == (("token", "token"),)


def test_volatile_reply_fields_are_left_out_and_stable_ones_kept(tmp_path: Path) -> None:
    reply = {
        "type": "status",
        "ok": True,
        "level": 3,
        "code": 0,
        "label": "ready",
        "at": 1764126001.5,
        "created_at": "2026-11-26T03:20:31Z",
        "session": "s-77",
        "request_id": "r-1",
        "trace": "0123456789abcdef0123",
        "detail": {"stamp": 1764126001, "mode": "fast"},
        "nothing": None,
    }
    rec = Rec().send(0.0, {"type": "status?"}).recv(0.01, reply)
    _, doc, program = export(rec, tmp_path)
    expect = steps_of(doc, "steps")[1]["expect"]
    assert expect == {"type": "status", "ok": True, "code": 0, "label": "ready",
                      "detail": {"mode": "fast"}}  # fmt: skip
    replay(program, rec, passes=0)


def test_a_value_the_user_sent_stays_in_the_reply_even_if_it_looks_volatile(
    tmp_path: Path,
) -> None:
    rec = Rec().send(0.0, {"type": "get", "request_id": "r-42", "at": 1764126001})
    rec.recv(0.01, {"type": "got", "request_id": "r-42", "at": 1764126001, "id": "x-9"})
    _, doc, program = export(rec, tmp_path)
    assert steps_of(doc, "steps")[1]["expect"] == {
        "type": "got",
        "request_id": "r-42",
        "at": 1764126001,
    }
    replay(program, rec, passes=0)


def test_think_steps_only_for_pauses_longer_than_half_a_second(tmp_path: Path) -> None:
    rec = Rec().send(0.0, {"type": "a"}).recv(0.01, {"type": "a"})
    rec.send(0.3, {"type": "b"}).recv(0.31, {"type": "b"})
    rec.send(2.31, {"type": "c"}).recv(2.32, {"type": "c"})
    _, doc, program = export(rec, tmp_path)
    assert [s for s in steps_of(doc, "steps") if "think" in s] == [{"think": 2.0}]
    assert "loop" not in doc  # nothing repeats: a session per iteration
    assert program.churns
    replay(program, rec, passes=0)


def test_echoed_text_loops_and_numbered_text_becomes_seq(tmp_path: Path) -> None:
    rec = Rec()
    for n in range(1, 4):
        rec.send(n, f"hello {n}", "text").recv(n + 0.01, f"hello {n}")
    _, doc, program = export(rec, tmp_path)
    assert "steps" not in doc
    assert steps_of(doc, "loop") == [
        {"send": "hello {seq}"},
        {"name": "reply", "expect": "hello {seq}"},
    ]
    replay(program, rec, passes=3)


def test_the_mark_starts_the_loop_and_none_means_steps_only(tmp_path: Path) -> None:
    rec = Rec().send(0.0, {"type": "a"}).recv(0.01, {"type": "a"}).mark(0.1)
    rec.send(0.2, {"type": "b"}).recv(0.21, {"type": "b"})
    rec.send(0.3, {"type": "c"}).recv(0.31, {"type": "c"})
    _, doc, program = export(rec, tmp_path)
    assert [s.get("send") for s in steps_of(doc, "steps")] == [{"type": "a"}, None]
    loop = [s.get("send") for s in steps_of(doc, "loop")]
    assert loop == [{"type": "b"}, None, {"type": "c"}, None]
    replay(program, rec, passes=1)
    _, doc, program = export(rec, tmp_path, loop="none")
    assert "loop" not in doc
    assert len(steps_of(doc, "steps")) == 6
    assert program.churns


def test_binary_sends_and_replies_as_hex(tmp_path: Path) -> None:
    rec = Rec().send(0.0, "00ff10", "binary").recv(0.01, "00FF10", "binary")
    _, doc, program = export(rec, tmp_path)
    assert steps_of(doc, "steps") == [
        {"send_binary": "00ff10"},
        {"name": "binary reply", "expect_binary": "00ff10"},
    ]
    replay(program, rec, passes=0)


def test_literal_braces_are_escaped_so_they_are_sent_as_typed(tmp_path: Path) -> None:
    literal = "{name} and {{seq}} and {random_int(1,2)} and {not a placeholder}"
    assert TextTemplate(escape(literal)).render({}, random.Random(0)) == literal
    rec = Rec().send(0.0, literal, "text").recv(0.01, literal)
    rec.send(1.0, {"type": "x", "text": literal}).recv(1.01, {"type": "x", "text": literal})
    _, doc, program = export(rec, tmp_path)
    assert steps_of(doc, "steps")[0]["send"] == escape(literal)
    replay(program, rec, passes=0)


def test_a_json_send_toml_cannot_hold_goes_as_json_text(tmp_path: Path) -> None:
    value = {"type": "q", "filter": None, "big": 2**70, "list": [1, "{x}"]}
    rec = Rec().send(0.0, value).recv(0.01, value)
    _, doc, program = export(rec, tmp_path)
    send = steps_of(doc, "steps")[0]["send"]
    assert isinstance(send, str)
    assert json.loads(send.replace("{{x}}", "{x}")) == value
    assert steps_of(doc, "steps")[1]["expect"] == {"type": "q", "list": [1, "{{x}}"]}
    replay(program, rec, passes=0)


def test_json_text_that_varies_in_nothing_is_sent_as_typed(tmp_path: Path) -> None:
    typed = '[1,  2, null, {"k": "{v}"}]'
    rec = Rec().recv(0.0, {"type": "welcome"})  # before any send: pushed
    rec.events.append({"t": 0.1, "dir": "out", "kind": "json", "data": typed})  # as typed
    rec.recv(0.11, typed)
    _, doc, program = export(rec, tmp_path)
    assert steps_of(doc, "steps") == [
        {"send": '[1,  2, null, {"k": "{{v}}"}]'},
        {"name": "reply", "expect": '[1,  2, null, {"k": "{{v}}"}]'},
    ]
    replay(program, rec, passes=0)


def test_a_text_reply_with_changing_numbers_is_expected_by_a_pattern(tmp_path: Path) -> None:
    rec = Rec()
    for n, (t, stamp) in enumerate([(0.0, "2026-11-26T03:20:31Z"), (1.0, "2026-11-26T03:20:32Z")]):
        rec.send(t, "time?", "text").recv(t + 0.01, f"now {stamp} (#{n * 7 + 3})")
    _, doc, program = export(rec, tmp_path)
    expect = steps_of(doc, "loop")[1]
    assert set(expect) == {"name", "expect_regex"}
    assert re.search(expect["expect_regex"], "now 2030-01-01T00:00:00Z (#123)")
    assert not re.search(expect["expect_regex"], "later 2030-01-01T00:00:00Z (#123)")
    replay(program, rec, passes=2)


def test_replies_in_varying_order_keep_only_the_one_carrying_the_send_back(
    tmp_path: Path,
) -> None:
    rec = Rec()
    for n in (1, 2):
        t = float(n)
        rec.send(t, {"type": "msg", "id": f"m{n}"})
        broadcast = {"type": "message", "text": "hi"}
        ack = {"type": "ack", "id": f"m{n}"}
        for reply in [broadcast, ack] if n == 1 else [ack, broadcast]:
            rec.recv(t + 0.01, reply)
    text, doc, program = export(rec, tmp_path)
    assert steps_of(doc, "loop")[1:] == [{"name": "ack", "expect": {"type": "ack", "id": "m{seq}"}}]
    assert "came in varying order" in text
    replay(program, rec, passes=2)


def test_a_pushed_challenge_the_user_answers_is_expected_and_captured(tmp_path: Path) -> None:
    rec = Rec().recv(0.0, {"type": "challenge", "nonce": "n0nce-77x"})
    rec.send(1.0, {"type": "auth", "answer": "n0nce-77x"}).recv(1.01, {"type": "authed"})
    _, doc, program = export(rec, tmp_path)
    assert steps_of(doc, "steps") == [
        {"name": "challenge", "expect": {"type": "challenge"}, "capture": {"nonce": "nonce"}},
        {"send": {"type": "auth", "answer": "{nonce}"}},
        {"name": "authed", "expect": {"type": "authed"}},
    ]
    replay(program, rec, passes=0)


def test_a_token_inside_text_is_captured_and_templated(tmp_path: Path) -> None:
    rec = (
        Rec().send(0.0, {"type": "login"}).recv(0.01, {"type": "ok", "auth": {"key": "abcdefgh12"}})
    )
    rec.send(1.0, "USE abcdefgh12 NOW", "text").recv(1.01, "done")
    _, doc, program = export(rec, tmp_path)
    steps = steps_of(doc, "steps")
    assert steps[1]["capture"] == {"key": "auth.key"}
    assert steps[2]["think"] == 0.99
    assert steps[3]["send"] == "USE {key} NOW"
    assert replay(program, rec, passes=0)["key"] == "abcdefgh12"


def test_nothing_sent_is_nothing_to_export() -> None:
    recording = parse_recording(Rec().recv(0.0, "hello").body())
    with pytest.raises(RecordingError, match="nothing was sent"):
        export_scenario(recording)


def test_a_bad_recording_is_refused_with_every_problem_at_once() -> None:
    with pytest.raises(RecordingError) as caught:
        parse_recording(
            {
                "url": 7,
                "loop": "sometimes",
                "events": [
                    {"t": -1, "dir": "out"},
                    {"t": 0, "dir": "sideways"},
                    {"t": 0, "dir": "out", "kind": "binary", "data": "abc"},
                    {"t": 0, "dir": "out", "kind": "json", "data": "{nope"},
                    {"t": 0, "dir": "out", "kind": "smoke"},
                    "not an event",
                ],
            }
        )
    assert [p.split(":")[0] for p in caught.value.problems] == [
        "url", "loop", "events[1]", "events[2]", "events[3]", "events[4]", "events[5]", "events[6]",
    ]  # fmt: skip
    with pytest.raises(RecordingError, match="at most"):
        parse_recording({"events": [{"t": 0, "dir": "in"}] * (MAX_EVENTS + 1)})
    with pytest.raises(RecordingError, match="JSON object"):
        parse_recording([])


@pytest.mark.parametrize(
    "value",
    [
        'quote " backslash \\ tab \t newline \n nul \x00 del \x7f é ✓ 😀',
        {"a b": [1, 2.5, -0.0, 1e300, True], "nested": {"": {}}, "x.y": []},
        [[], [1, [2]], "s"],
        1.0,
        -(2**63),
    ],
)
def test_toml_values_read_back_equal(value: Any) -> None:
    assert tomllib.loads(f"v = {toml_value(value)}")["v"] == value


def test_a_long_recording_exports_within_bounds(tmp_path: Path) -> None:
    """The most events a page may record: a loop found, exported, compiled, quickly."""
    rec = Rec().send(0.0, {"type": "login"}).recv(0.001, {"type": "ok", "token": "t0k3n-abcdef"})
    n = (MAX_EVENTS - 2) // 3
    for i in range(1, n + 1):
        rec.send(i * 0.01, {"type": "msg", "id": i, "token": "t0k3n-abcdef"})
        rec.recv(i * 0.01 + 0.001, {"type": "ack", "id": i})
        rec.recv(i * 0.01 + 0.002, {"type": "tick", "n": i} if i % 7 == 0 else {"type": "ack2"})
    _, doc, program = export(rec, tmp_path)
    assert steps_of(doc, "loop")[0]["send"] == {"type": "msg", "id": "{seq}", "token": "{token}"}
    assert "tick" not in json.dumps(doc.get("loop"))
    replay(program, rec, passes=5)

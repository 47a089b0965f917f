"""The protocol verbs of the step language: every verb of every protocol compiles to its Step,
every bad input gives its own line before anything runs, and a file may mix protocols."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.integration.test_bad_scenarios import refused
from wsload.common.program import Action, Program, ProtocolSpec, Step
from wsload.common.protocols import (
    ALL_VERBS,
    PROTOCOLS,
    SUBPROTOCOLS,
    VERBS,
    option_defaults,
)
from wsload.common.spec import JobSpec, build_spec
from wsload.common.steps import STEP_KEYS, compile_workload, workload_problems
from wsload.common.template import ValueTemplate
from wsload.common.workload import SCENARIO_KEYS

RNG = random.Random(0)
VALUES = {"client_id": 7, "seq": 3, "user": "ann", "q": 1}


#: a feeder as build_spec reads it: its columns are variables of the steps and options
FEEDER = {"file": "u.csv", "mode": "cycle", "columns": ["user", "q"], "rows": [["ann", "1"]]}


def program(protocol: Any, *loop: dict[str, Any]) -> Program:
    spec = JobSpec(protocol=protocol, loop=loop, feeder={**FEEDER, "offset": 0, "total": 1})
    (compiled,) = compile_workload(spec).programs
    return compiled


def problems(protocol: Any, *loop: dict[str, Any]) -> list[str]:
    return workload_problems(JobSpec(protocol=protocol, loop=loop))


def rendered(step: Step) -> Any:
    assert isinstance(step.body, ValueTemplate)
    return step.body.render(VALUES, RNG)


#: protocol, step table, its action, whether it waits, the body it renders
VERB_CASES: list[tuple[str, dict[str, Any], Action, bool, Any]] = [
    (
        "socketio",
        {"emit": {"event": "chat", "data": {"text": "hi {seq}"}}, "ack": True},
        Action.EMIT,
        True,
        {"event": "chat", "data": {"text": "hi 3"}},
    ),
    (
        "socketio",
        {"emit": {"event": "move", "args": [1, "{seq}"]}},
        Action.EMIT,
        False,
        {"event": "move", "args": [1, 3]},
    ),
    ("socketio", {"emit": {"event": "ping"}, "ack": False}, Action.EMIT, False, {"event": "ping"}),
    ("socketio", {"send": "hi {seq}"}, Action.EMIT, False, {"event": "message", "data": "hi 3"}),
    ("socketio", {"send": {"n": "{seq}"}}, Action.EMIT, False,
     {"event": "message", "data": {"n": 3}}),
    (
        "graphql",
        {"subscribe": {"query": "subscription { news }", "id": "s1", "variables": {"a": 1}}},
        Action.SUBSCRIBE,
        False,
        {"query": "subscription { news }", "id": "s1", "variables": {"a": 1}},
    ),
    (
        "graphql",
        {"query": {"query": "query Q { me }", "operation_name": "Q"}},
        Action.QUERY,
        True,
        {"query": "query Q { me }", "operation_name": "Q"},
    ),
    ("graphql", {"unsubscribe": {"id": "s1"}}, Action.UNSUBSCRIBE, False, {"id": "s1"}),
    (
        "stomp",
        {"send": {"destination": "/queue/a", "body": {"n": "{seq}"}}, "receipt": True},
        Action.SEND,
        True,
        {"destination": "/queue/a", "body": {"n": 3}},
    ),
    (
        "stomp",
        {"send": {"destination": "/queue/a", "body": "text", "headers": {"x": 1}}},
        Action.SEND,
        False,
        {"destination": "/queue/a", "body": "text", "headers": {"x": 1}},
    ),
    (
        "stomp",
        {"subscribe": {"destination": "/topic/t", "id": "sub-{client_id}", "ack": "client"}},
        Action.SUBSCRIBE,
        False,
        {"destination": "/topic/t", "id": "sub-7", "ack": "client"},
    ),
    (
        "stomp",
        {"unsubscribe": {"id": "sub-1"}, "receipt": True},
        Action.UNSUBSCRIBE,
        True,
        {"id": "sub-1"},
    ),
    (
        "mqtt",
        {"send": {"topic": "t/{user}", "payload": {"n": "{seq}"}, "qos": 1}},
        Action.SEND,
        True,
        {"topic": "t/ann", "payload": {"n": 3}, "qos": 1},
    ),
    (
        "mqtt",
        {"send": {"topic": "t", "payload": "x", "retain": True}},
        Action.SEND,
        False,
        {"topic": "t", "payload": "x", "retain": True},
    ),
    ("mqtt", {"send": {"topic": "t", "qos": 0}}, Action.SEND, False, {"topic": "t", "qos": 0}),
    # a qos that is a template is rendered at run time: such a send does not wait
    ("mqtt", {"send": {"topic": "t", "qos": "{q}"}}, Action.SEND, False, {"topic": "t", "qos": 1}),
    ("mqtt", {"subscribe": {"topic": "t", "qos": 1}}, Action.SUBSCRIBE, True,
     {"topic": "t", "qos": 1}),
    ("mqtt", {"subscribe": {"topic": "t/#"}}, Action.SUBSCRIBE, True, {"topic": "t/#"}),
    ("mqtt", {"subscribe": {"topic": ["a", "b/+"], "qos": 2}}, Action.SUBSCRIBE, True,
     {"topic": ["a", "b/+"], "qos": 2}),
    ("mqtt", {"unsubscribe": {"topic": "t/#"}}, Action.UNSUBSCRIBE, True, {"topic": "t/#"}),
]  # fmt: skip


@pytest.mark.parametrize(("protocol", "table", "action", "answer", "body"), VERB_CASES)
def test_every_verb_compiles_to_its_step(
    protocol: str, table: dict[str, Any], action: Action, answer: bool, body: Any
) -> None:
    """The verb's table is the step's body (a template rendered per step); whether it waits
    is the protocol's rule; a step that waits is measured and fails as <protocol>_error."""
    compiled = program(protocol, {"name": "it", **table})
    (step,) = compiled.loop
    assert step.action is action
    assert step.answer is answer
    assert step.expects is answer  # an answer step is a measured step; a push is not
    assert step.fail_kind == (f"{protocol}_error" if answer else "fail_matched")
    assert rendered(step) == body
    assert compiled.protocol is not None
    assert compiled.protocol.name == protocol


def test_every_declared_verb_is_covered_and_known_to_the_grammar() -> None:
    covered = {(p, k) for p, t, *_ in VERB_CASES for k in t if k not in ("ack", "receipt")}
    declared = {(p.name, v.name) for p in PROTOCOLS.values() if p.name != "raw" for v in p.verbs}
    assert covered == declared
    assert set(ALL_VERBS) <= set(STEP_KEYS)
    assert "protocol" in SCENARIO_KEYS
    assert VERBS["graphql"] == {Action.SUBSCRIBE, Action.QUERY, Action.UNSUBSCRIBE}
    assert VERBS["socketio"] == {Action.EMIT}
    assert SUBPROTOCOLS == {
        "raw": (),
        "socketio": (),
        "graphql": ("graphql-transport-ws",),
        "stomp": ("v12.stomp", "v11.stomp", "v10.stomp"),
        "mqtt": ("mqtt",),
    }


def test_common_verbs_keep_their_meaning_in_every_protocol() -> None:
    loop = (
        {"expect": {"event": "news"}, "name": "news", "capture": {"room": "data.room"}},
        {"expect_regex": "x(?P<n>\\d)"},
        {"think": 0.1},
        {"post": "/api/publish"},
        {"close": True},
    )
    for name in ("socketio", "graphql", "stomp", "mqtt"):
        compiled = program(name, *loop)
        assert [s.action for s in compiled.loop] == [
            Action.EXPECT,
            Action.EXPECT_REGEX,
            Action.THINK,
            Action.POST,
            Action.CLOSE,
        ]
        assert not any(s.answer for s in compiled.loop)


def test_raw_is_the_default_and_is_never_stored() -> None:
    assert program(None, {"send": "x"}).protocol is None
    assert program("raw", {"send": "x"}).protocol is None
    assert program({"name": "raw"}, {"send_binary": "00"}).protocol is None


def test_options_are_a_template_with_the_protocols_defaults() -> None:
    """Rendered per connection with the client's variables; defaults filled in, so the codec
    gets every option (an MQTT client id of its own per client)."""
    mqtt = program("mqtt", {"send": {"topic": "t"}}).protocol
    assert mqtt is not None
    assert mqtt.options is not None
    assert mqtt.options.render(VALUES, RNG) == {
        "client_id": "wsload-7",
        "keepalive": 30,
        "clean_session": True,
    }
    stomp = program(
        {"name": "stomp", "login": "{user}", "passcode": "pw", "heart_beat": [0, 5000]},
        {"send": {"destination": "/q"}},
    ).protocol
    assert stomp is not None
    assert stomp.options is not None
    assert stomp.options.render(VALUES, RNG) == {
        "host": "/",
        "heart_beat": [0, 5000],
        "login": "ann",
        "passcode": "pw",
    }
    sio = program({"name": "socketio", "auth": {"token": "t{seq}"}}, {"emit": {"event": "e"}})
    assert isinstance(sio.protocol, ProtocolSpec)
    assert sio.protocol.name == "socketio"
    assert sio.protocol.options is not None
    assert sio.protocol.options.render(VALUES, RNG) == {
        "namespace": "/",
        "path": "/socket.io/",
        "auth": {"token": "t3"},
    }
    assert option_defaults("graphql") == {}


def test_answer_steps_capture_from_the_answer_and_are_metrics() -> None:
    join_step = {"name": "join", "emit": {"event": "join"}, "ack": True}
    chat_step = {"emit": {"event": "chat", "data": "{r}"}, "ack": True, "timeout": 2}
    spec = JobSpec(
        protocol="socketio",
        steps=({**join_step, "capture": {"r": "data.room"}},),
        loop=({**chat_step, "fail": {"data": "no"}}, {"emit": {"event": "fire"}}),
        thresholds=("step.join.p99<50ms", "step.step 2.timed_out==0"),
    )
    assert workload_problems(spec) == []
    workload = compile_workload(spec)
    join, chat, _ = workload.programs[0].steps
    assert join.capture == (("r", "data.room"),)
    assert chat.timeout == 2.0
    assert chat.fail is not None
    assert workload.step_names == ("join", "step 2")  # "fire" waits for nothing: no metric
    spec = dataclasses.replace(spec, thresholds=("step.step 3.p99<1s",))
    assert workload_problems(spec) == [
        "threshold 'step.step 3.p99<1s': no step named 'step 3' (did you mean 'step 2'? steps: "
        "'join', 'step 2')"
    ]


def test_publish_sits_on_emit_and_protocol_sends() -> None:
    for protocol, step in (
        ("socketio", {"emit": {"event": "pub", "data": {"seq": "{seq}"}}}),
        ("mqtt", {"send": {"topic": "news", "payload": {"seq": "{seq}"}}}),
    ):
        compiled = program(protocol, {**step, "publish": {"topic": "news", "seq": "{seq}"}})
        assert compiled.loop[0].publish is not None


MIXED = """\
protocol = {name = "mqtt", username = "{user}"}
num_clients = 4
[feeder]
file = "users.csv"
mode = "cycle"
[[scenarios]]
name = "chat"
weight = 3
protocol = {name = "socketio", namespace = "/chat"}
[[scenarios.steps]]
name = "join"
emit = {event = "join", data = {room = "r1"}}
ack = true
[[scenarios.loop]]
expect = {event = "news"}
[[scenarios]]
name = "sensors"
weight = 1
[[scenarios.loop]]
name = "publish"
send = {topic = "s/{client_id}", payload = {v = "{seq}"}, qos = 1}
[[scenarios]]
name = "plain"
protocol = "raw"
[[scenarios.loop]]
send_binary = "00ff"
"""


def test_a_file_mixes_protocols_per_scenario(tmp_path: Path) -> None:
    """A scenario's own protocol wins; one without speaks the file's; raw may be asked for."""
    (tmp_path / "users.csv").write_text("user\nann\nbob\n")
    (tmp_path / "mixed.toml").write_text(MIXED)
    spec = build_spec(scenario=tmp_path / "mixed.toml", env={}, ws_url="ws://127.0.0.1:9/")
    assert spec.protocol == {"name": "mqtt", "username": "{user}"}
    chat, sensors, plain = compile_workload(spec).programs
    assert chat.protocol is not None
    assert chat.protocol.name == "socketio"
    assert chat.setup[0].action is Action.EMIT
    assert chat.setup[0].fail_kind == "socketio_error"
    assert sensors.protocol is not None
    assert sensors.protocol.name == "mqtt"
    assert sensors.protocol.options is not None
    assert (
        sensors.protocol.options.render({"user": "bob", "client_id": 1}, RNG)["username"] == "bob"
    )
    assert sensors.loop[0].answer
    assert sensors.loop[0].fail_kind == "mqtt_error"
    assert plain.protocol is None
    assert plain.loop[0].action is Action.SEND_BINARY
    # explicit names are the scenario's own; default ones name their scenario
    assert compile_workload(spec).step_names == ("join", "chat step 2", "publish")


def test_an_unknown_protocol_is_said_once_with_a_suggestion() -> None:
    assert problems("sockteio", {"emit": {"event": "x"}}, {"send": {"bad": 1}}) == [
        "protocol: unknown protocol 'sockteio' (did you mean 'socketio'?; known: raw, "
        "socketio, graphql, stomp, mqtt)"
    ]
    assert problems({"namespace": "/"}, {"emit": {"event": "x"}}) == [
        'protocol: needs name = "..." (e.g. "socketio")'
    ]
    assert problems(7, {"send": "x"}) == ["protocol: the name must be text, got int 7"]


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("stomp", {"emit": {"event": "x"}},
     "loop: step 1: 'emit' is not a step of protocol \"stomp\" (its steps: send, subscribe, "
     "unsubscribe, expect, expect_regex, think, close, post)"),
    ("raw", {"emit": {"event": "x"}},
     "loop: step 1: 'emit' is not a step of protocol \"raw\" (its steps: send, send_binary, "
     "expect_binary, expect, expect_regex, think, close, post); it needs protocol = \"socketio\""),
    ("graphql", {"send": "x"},
     "loop: step 1: 'send' is not a step of protocol \"graphql\" (its steps: subscribe, query, "
     "unsubscribe, expect, expect_regex, think, close, post)"),
    ("socketio", {"send_binary": "00"},
     "loop: step 1: 'send_binary' is not a step of protocol \"socketio\" (its steps: emit, send, "
     "expect, expect_regex, think, close, post)"),
    ("mqtt", {"expect_binary": "00"},
     "loop: step 1: 'expect_binary' is not a step of protocol \"mqtt\" (its steps: send, "
     "subscribe, unsubscribe, expect, expect_regex, think, close, post)"),
    ("socketio", {"emit": {"evnt": "x", "event": "e"}},
     "loop: step 1: emit: unknown key 'evnt' (did you mean 'event'?)"),
    ("socketio", {"emit": {"data": 1}}, "loop: step 1: emit: needs event = ..."),
    ("socketio", {"emit": {"event": 1}}, "loop: step 1: emit: event must be text, got int 1"),
    ("socketio", {"emit": {"event": "e", "data": 1, "args": [1]}},
     "loop: step 1: emit: give data or args, not both"),
    ("socketio", {"emit": "chat"},
     "loop: step 1: emit takes a table {event, data, args}, got str 'chat'"),
    ("socketio", {"emit": {"event": "e"}, "ack": "yes"},
     "loop: step 1: ack must be true or false, got str 'yes'"),
    ("socketio", {"send": "x", "ack": True},
     'loop: step 1: ack applies to emit steps of protocol "socketio" only, not to send'),
    ("stomp", {"send": {"destination": "/q"}, "ack": True},
     'loop: step 1: ack applies to emit steps of protocol "socketio" only, not to send of '
     'protocol "stomp"'),
    ("mqtt", {"send": {"topic": "t"}, "receipt": True},
     "loop: step 1: receipt applies to send, subscribe and unsubscribe steps of protocol "
     '"stomp" only, not to send of protocol "mqtt"'),
    ("raw", {"expect": "x", "receipt": True},
     "loop: step 1: receipt applies to send, subscribe and unsubscribe steps of protocol "
     '"stomp" only, not to expect of protocol "raw"'),
    ("mqtt", {"send": {"topic": "t", "qos": 2}}, "loop: step 1: send: qos 2 is not supported"),
    ("mqtt", {"subscribe": {"topic": []}},
     "loop: step 1: subscribe: topic must be text or an array of text, got list []"),
    ("mqtt", {"subscribe": {"topic": "t", "qos": 3}},
     "loop: step 1: subscribe: qos must be one of 0, 1, 2, got int 3"),
    ("mqtt", {"send": {"topic": "t", "qos": 5}},
     "loop: step 1: send: qos must be one of 0, 1, got int 5"),
    ("mqtt", {"send": {"topic": "t", "qos": True}},
     "loop: step 1: send: qos must be an integer, got bool True"),
    ("mqtt", {"send": {"topic": "t", "retain": "no"}},
     "loop: step 1: send: retain must be true or false, got str 'no'"),
    ("mqtt", {"send": {"topic": "t", "payload": 3}},
     "loop: step 1: send: payload must be text or a table, got int 3"),
    ("mqtt", {"unsubscribe": {}}, "loop: step 1: unsubscribe: needs topic = ..."),
    ("stomp", {"subscribe": {"destination": "/t", "ack": "clint"}},
     "loop: step 1: subscribe: ack must be one of 'auto', 'client', 'client-individual', got "
     "str 'clint'"),
    ("stomp", {"send": {"destination": "/q", "headers": {"a": [1]}}},
     "loop: step 1: send: headers must be a table of text values, got dict {'a': [1]}"),
    ("stomp", {"unsubscribe": {"id": 3}}, "loop: step 1: unsubscribe: id must be text, got int 3"),
    ("graphql", {"query": {"qeury": "{ a }", "query": "{ a }"}},
     "loop: step 1: query: unknown key 'qeury' (did you mean 'query'?)"),
    ("graphql", {"subscribe": {"query": "s", "variables": [1]}},
     "loop: step 1: subscribe: variables must be a table, got list [1]"),
    ("graphql", {"query": {"query": "{ a {random_int(2,1)} }"}},
     "loop: step 1: query: {random_int(2,1)}: random_int(a,b) needs a <= b"),
    ("graphql", {"subscribe": {"query": "s"}, "capture": {"x": "payload"}},
     "loop: step 1: capture applies to expects and to steps that wait for the answer (query), "
     "not to subscribe"),
    ("stomp", {"send": {"destination": "/q"}, "fail": {"command": "ERROR"}},
     "loop: step 1: fail applies to expects and to steps that wait for the answer (a step with "
     "receipt = true), not to send"),
    ("socketio", {"emit": {"event": "e"}, "ack": True, "capture": {"seq": "data"}},
     "loop: step 1: capture: 'seq' would hide the built-in variable {seq}"),
    ("socketio", {"emit": {"event": "e"}, "ack": True, "capture": {"x": "a..b"}},
     "loop: step 1: capture x: capture path 'a..b' has an empty part"),
    ("socketio", {"emit": {"event": "{nope}"}},
     "loop: step 1: unknown variable {nope} (known: client_id, pad, seq, ts, uuid)"),
    ("socketio", {"emit": {"event": "e"}, "emmit": 1},
     "loop: step 1: unknown key 'emmit' (did you mean 'emit'?)"),
    # what a codec refuses when it encodes, when the table's text is literal
    ("mqtt", {"send": {"topic": "news/#"}},
     "loop: step 1: send: topic 'news/#' has a wildcard (+ or #): a publish names one topic "
     "(wildcards are for subscribe)"),
    ("mqtt", {"send": {"topic": "a/+/{client_id}"}},
     "loop: step 1: send: topic 'a/+/{client_id}' has a wildcard (+ or #): a publish names one "
     "topic (wildcards are for subscribe)"),
    ("mqtt", {"send": {"topic": ""}}, "loop: step 1: send: topic must not be empty"),
    ("mqtt", {"subscribe": {"topic": ["a/#", ""]}},
     "loop: step 1: subscribe: topic must not be empty"),
    ("mqtt", {"unsubscribe": {"topic": "t" * 65536}},
     "loop: step 1: unsubscribe: topic is longer than 65535 bytes (the protocol's limit)"),
    ("graphql", {"query": {"query": ""}}, "loop: step 1: query: query must not be empty"),
    ("graphql", {"subscribe": {"query": ""}}, "loop: step 1: subscribe: query must not be empty"),
    ("socketio", {"think": 1, "emit": {"event": "e"}},
     "loop: step 1: needs exactly one of emit, send, expect, expect_regex, think, close, post "
     "(has think and emit)"),
]  # fmt: skip


@pytest.mark.parametrize(("protocol", "step", "line"), BAD)
def test_each_bad_step_gives_its_line(protocol: str, step: dict[str, Any], line: str) -> None:
    assert problems(protocol, step) == [line]


BAD_OPTIONS: list[tuple[Any, str]] = [
    ({"name": "socketio", "namspace": "/"},
     "protocol: unknown option 'namspace' (did you mean 'namespace'?)"),
    ({"name": "socketio", "auth": "tok"}, "protocol: auth must be a table, got str 'tok'"),
    ({"name": "stomp", "heart_beat": 10}, "protocol: heart_beat must be two integers >= 0, e.g. "
     "[10000, 10000], got int 10"),
    ({"name": "mqtt", "keepalive": 70000},
     "protocol: keepalive must be between 0 and 65535, got 70000"),
    ({"name": "mqtt", "clean_session": 1},
     "protocol: clean_session must be true or false, got int 1"),
    ({"name": "mqtt", "client_id": "c{nope}"},
     "protocol: unknown variable {nope} (known: client_id, pad, seq, ts, uuid)"),
    ({"name": "graphql", "payload": {"token": "{uuid}"}, "x": 1}, "protocol: unknown option 'x'"),
    ({"name": "raw", "namespace": "/"}, "protocol: unknown option 'namespace'"),
    # what a codec refuses when it is built (a namespace not a path crashed every worker)
    ({"name": "socketio", "namespace": "chat"},
     "protocol: namespace must be a path starting with /, got 'chat' (did you mean '/chat'?)"),
    ({"name": "socketio", "namespace": "room-{client_id}"},
     "protocol: namespace must be a path starting with /, got 'room-{client_id}' (did you mean "
     "'/room-{client_id}'?)"),
    ({"name": "mqtt", "client_id": "c" * 65536},
     "protocol: client_id is longer than 65535 bytes (the protocol's limit)"),
    ({"name": "mqtt", "password": "{uuid}" + "p" * 65536},
     "protocol: password is longer than 65535 bytes (the protocol's limit)"),
]  # fmt: skip


@pytest.mark.parametrize(("protocol", "line"), BAD_OPTIONS)
def test_each_bad_option_gives_its_line(protocol: Any, line: str) -> None:
    steps: dict[str, dict[str, Any]] = {"raw": {"send": "x"}, "graphql": {"think": 0}}
    step = steps.get(protocol["name"], {"think": 0})
    assert problems(protocol, step) == [line]


def test_a_literal_option_is_checked_and_a_templated_one_left_to_the_codec() -> None:
    """A namespace that starts with a placeholder, or a path, or empty (the codec's "/"),
    passes; what it renders is judged by the codec when it is built."""
    for namespace in ("/chat", "{client_id}", "{client_id}/x", "/{client_id}", ""):
        assert problems({"name": "socketio", "namespace": namespace}, {"think": 0}) == []
    assert problems("mqtt", {"send": {"topic": "{uuid}"}}, {"subscribe": {"topic": "a/+"}}) == []
    # {{x}} is the escape of the literal text {x}: not a placeholder, not a path
    assert problems({"name": "socketio", "namespace": "{{x}}"}, {"think": 0}) == [
        "protocol: namespace must be a path starting with /, got '{{x}}' (did you mean '/{{x}}'?)"
    ]


def test_a_misspelt_key_of_the_protocol_table_gets_its_did_you_mean() -> None:
    assert problems({"nmae": "mqtt"}, {"think": 0}) == [
        "protocol: unknown option 'nmae' (did you mean 'name'?)",
        'protocol: needs name = "..." (e.g. "socketio")',
    ]
    # an option of some protocol is not said unknown before the name says which
    assert problems({"namespace": "/", "nam": "socketio"}, {"think": 0}) == [
        "protocol: unknown option 'nam' (did you mean 'name'?)",
        'protocol: needs name = "..." (e.g. "socketio")',
    ]


def test_the_cli_refuses_a_namespace_that_is_not_a_path(tmp_path: Path) -> None:
    """The trial's ns_only.toml: exit 2 before any worker starts (it crashed every worker)."""
    (tmp_path / "ns.toml").write_text(
        'protocol = {name = "socketio", namespace = "chat", auth = {token = "s3cret"}}\n'
        '[[loop]]\nemit = {event = "chat", data = 1}\nack = true\n'
    )
    (tmp_path / "typo.toml").write_text(
        'protocol = {nmae = "mqtt"}\n[[loop]]\nsend = {topic = "a/#", qos = 1}\n'
    )
    url = "ws://127.0.0.1:9/"
    assert refused("run", "--ws-url", url, "--scenario", str(tmp_path / "ns.toml")) == [
        "protocol: namespace must be a path starting with /, got 'chat' (did you mean '/chat'?)"
    ]
    assert refused("run", "--ws-url", url, "--scenario", str(tmp_path / "typo.toml")) == [
        "protocol: unknown option 'nmae' (did you mean 'name'?)",
        'protocol: needs name = "..." (e.g. "socketio")',
    ]


def test_a_scenarios_protocol_problems_name_the_scenario() -> None:
    scenarios = (
        {"name": "a", "protocol": {"name": "mqtt", "qos": 1}, "loop": [{"emit": {"event": "e"}}]},
        {"name": "b", "protocol": "stmop", "loop": [{"send": {"destination": "/q"}}]},
        {"name": "c", "loop": [{"subscribe": {"destination": "/q"}, "receipt": True}]},
    )
    assert workload_problems(JobSpec(protocol="graphql", scenarios=scenarios)) == [
        "scenarios[1] (a): protocol: unknown option 'qos'",
        "scenarios[2] (b): protocol: unknown protocol 'stmop' (did you mean 'stomp'?; known: "
        "raw, socketio, graphql, stomp, mqtt)",
        "scenarios[1] (a): loop: step 1: 'emit' is not a step of protocol \"mqtt\" (its steps: "
        "send, subscribe, unsubscribe, expect, expect_regex, think, close, post)",
        "scenarios[3] (c): loop: step 1: subscribe: unknown key 'destination'",
        "scenarios[3] (c): loop: step 1: subscribe: needs query = ...",
        "scenarios[3] (c): loop: step 1: receipt applies to send, subscribe and unsubscribe "
        'steps of protocol "stomp" only, not to subscribe of protocol "graphql"',
    ]


def test_a_protocol_needs_a_conversation_and_a_load_run() -> None:
    assert workload_problems(JobSpec(protocol="socketio")) == [
        "protocol: needs [[steps]], [[loop]] or [[scenarios]] (the echo load speaks raw frames)"
    ]
    from wsload.common.fields import Mode

    assert workload_problems(
        JobSpec(protocol="socketio", steps=({"emit": {"event": "e"}},), mode=Mode.INTEGRATION)
    ) == [
        "protocol: the integration check (wsload test --integration) speaks raw frames only: "
        "run a protocol scenario with wsload run"
    ]


BAD_FILE = """\
protocol = "stomp"
[[steps]]
emit = {event = "join"}
[[steps]]
send = {destnation = "/queue/a"}
receipt = "yes"
[[loop]]
name = "order"
send = {destination = "/queue/a", body = {n = "{seq}"}}
receipt = true
[[loop]]
send_binary = "00"
[[scenarios]]
name = "x"
"""


def test_the_cli_refuses_a_bad_protocol_scenario_before_anything_starts(tmp_path: Path) -> None:
    """Exit 2, one line per problem, every problem at once, as every scenario problem."""
    (tmp_path / "bad.toml").write_text(BAD_FILE.replace('[[scenarios]]\nname = "x"\n', ""))
    lines = refused(
        "run", "--ws-url", "ws://127.0.0.1:9/ws", "--scenario", str(tmp_path / "bad.toml")
    )
    assert lines == [
        "steps: step 1: 'emit' is not a step of protocol \"stomp\" (its steps: send, subscribe, "
        "unsubscribe, expect, expect_regex, think, close, post)",
        "steps: step 2: send: unknown key 'destnation' (did you mean 'destination'?)",
        "steps: step 2: send: needs destination = ...",
        "steps: step 2: receipt must be true or false, got str 'yes'",
        "loop: step 2: 'send_binary' is not a step of protocol \"stomp\" (its steps: send, "
        "subscribe, unsubscribe, expect, expect_regex, think, close, post)",
    ]
    (tmp_path / "proto.toml").write_text('protocol = "sockteio"\n[[loop]]\nemit = {event = "e"}\n')
    lines = refused(
        "run", "--ws-url", "ws://127.0.0.1:9/ws", "--scenario", str(tmp_path / "proto.toml")
    )
    assert lines == [
        "protocol: unknown protocol 'sockteio' (did you mean 'socketio'?; known: raw, socketio, "
        "graphql, stomp, mqtt)"
    ]
    (tmp_path / "type.toml").write_text('protocol = 3\n[[loop]]\nsend = "x"\n')
    lines = refused(
        "run", "--ws-url", "ws://127.0.0.1:9/ws", "--scenario", str(tmp_path / "type.toml")
    )
    assert lines == [
        f"{tmp_path / 'type.toml'}: protocol: expected a protocol's name or a table, got int 3"
    ]


def test_the_readme_protocol_block_compiles_as_it_says(tmp_path: Path) -> None:
    readme = Path(__file__).resolve().parents[2] / "README.md"
    section = readme.read_text().split("**Protocols over WebSocket.**", 1)[1]
    block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "tokens.csv").write_text("token\nt1\n")
    (tmp_path / "s.toml").write_text(block + '[feeder]\nfile = "tokens.csv"\nmode = "cycle"\n')
    spec = build_spec(scenario=tmp_path / "s.toml", env={}, ws_url="ws://127.0.0.1:9/")
    workload = compile_workload(spec)
    (compiled,) = workload.programs
    assert compiled.protocol is not None
    assert compiled.protocol.options is not None
    assert compiled.protocol.options.render({"token": "t1"}, RNG)["auth"] == {"token": "t1"}
    assert [(s.action, s.answer) for s in compiled.steps] == [
        (Action.EMIT, True),
        (Action.EMIT, True),
        (Action.EXPECT, False),
    ]
    assert workload.step_names == ("join", "chat", "step 3")


def test_a_protocols_subscribers_and_publishers_are_fanout_programs() -> None:
    """[deliveries] paths read the view: an MQTT subscriber and a publisher over MQTT."""
    subscriber = {
        "name": "sub",
        "protocol": "mqtt",
        "steps": [{"subscribe": {"topic": ["news", "sport"], "qos": 1}}],
        "loop": [{"think": 60}],
        "deliveries": {"topic": "topic", "seq": "payload.seq", "sent_at": "payload.ts"},
    }
    publish = {"topic": "news", "payload": {"seq": "{seq}", "ts": "{ts}"}, "qos": 1}
    publisher = {
        "name": "pub",
        "protocol": "mqtt",
        "loop": [{"send": publish, "publish": {"topic": "news", "seq": "{seq}"}}],
    }
    spec = JobSpec(scenarios=(subscriber, publisher))
    assert workload_problems(spec) == []
    sub, pub = compile_workload(spec).programs
    assert sub.deliveries is not None
    assert sub.deliveries.seq == "payload.seq"
    assert pub.loop[0].publish is not None
    assert pub.loop[0].answer  # qos 1: the publication counts once written; its PUBACK measured


def test_the_protocol_travels_to_the_workers_with_the_spec() -> None:
    from wsload.common.spec import spec_from_dict

    for protocol in ("stomp", {"name": "mqtt", "keepalive": 10, "username": "{user}"}, None):
        spec = JobSpec(protocol=protocol, loop=({"think": 1},))
        assert spec_from_dict(spec.to_dict()) == spec


_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from(["", "x", "{seq}", "{nope}", "{q}", "auto", "/q", "t/#"])
)
_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["event", "data", "args", "topic", "qos", "id"]), inner)
    ),
    max_leaves=6,
)
_KEYS = sorted({k.name for p in PROTOCOLS.values() for v in p.verbs for k in v.keys})
_tables = st.dictionaries(st.sampled_from([*_KEYS, "x"]), _values, max_size=4)
_OPTION_KEYS = sorted({k.name for p in PROTOCOLS.values() for k in p.options})


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([*PROTOCOLS, "nope", None]),
    st.dictionaries(st.sampled_from([*_OPTION_KEYS, "x"]), _values, max_size=3),
    st.lists(
        st.dictionaries(
            st.sampled_from([*STEP_KEYS, "other"]), _tables | _values, min_size=1, max_size=3
        ),
        max_size=4,
    ),
)
def test_any_protocol_steps_compile_or_give_problems(
    name: str | None, options: dict[str, Any], loop: list[Any]
) -> None:
    """No table, however wrong, is a traceback: it compiles or gives one-line problems."""
    protocol = {"name": name, **options} if name is not None and options else name
    spec = JobSpec(protocol=protocol, loop=tuple(loop))
    found = workload_problems(spec)
    assert all(isinstance(p, str) and "\n" not in p for p in found)
    if not found:
        for step in (s for p in compile_workload(spec).programs for s in p.loop):
            assert step.expects is (
                step.answer
                or step.action in (Action.EXPECT, Action.EXPECT_REGEX, Action.EXPECT_BINARY)
            )


@pytest.mark.parametrize("name", ["socketio", "graphql", "stomp", "mqtt"])
def test_each_protocol_example_fails_a_run_with_errors_or_nothing_owed(name: str) -> None:
    """A server that dies mid-run must fail the shipped example (the trial's passed): each
    declares errors==0 and a latency bound on its measured step; a publish/subscribe one
    also fanout.delivery_rate (no data, nothing owed, fails) and fanout.missing==0."""
    path = Path(__file__).resolve().parents[2] / "examples" / f"{name}.toml"
    spec = build_spec(scenario=path, env={})
    assert "errors==0" in spec.thresholds
    assert any(t.startswith("step.") and ".p99<" in t for t in spec.thresholds)
    steps = {t.split(".")[1] for t in spec.thresholds if t.startswith("step.")}
    named = {s.name for p in compile_workload(spec).programs for s in p.steps if s.name}
    assert steps <= named, (steps, named)
    if name != "socketio":
        assert {"fanout.missing==0", "fanout.delivery_rate>=99.9"} <= set(spec.thresholds)


def test_wsload_run_help_mentions_protocols() -> None:
    """A new user reading ``wsload run --help`` learns that a scenario may speak a protocol."""
    import subprocess

    from tests.integration.conftest import WSLOAD

    proc = subprocess.run(
        [WSLOAD, "run", "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    text = " ".join(proc.stdout.split())
    assert "protocol = socketio/graphql/stomp/mqtt (see README: Protocols over WebSocket)" in text

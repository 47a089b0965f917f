"""The step language compiled: good scenarios give the expected programs, bad ones every problem."""

from __future__ import annotations

import itertools
import random
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsload.common import program as program_module
from wsload.common.errors import SpecError
from wsload.common.match import RegexMatcher, SubsetMatcher, TextMatcher
from wsload.common.program import Action, Program, Think, Workload
from wsload.common.spec import JobSpec, build_spec, spec_from_dict
from wsload.common.steps import (
    STEP_KEYS,
    ScenarioError,
    compile_workload,
    step_problems,
    workload_problems,
)
from wsload.common.template import JsonTemplate, TextTemplate
from wsload.common.workload import SCENARIO_KEYS


def documented_scenario() -> str:
    """The scenario file of :mod:`wsload.common.program`'s docstring (its indented block)."""
    doc = program_module.__doc__ or ""
    lines = doc.split("::\n", 1)[1].splitlines()
    block = list(itertools.takewhile(lambda line: not line or line.startswith("    "), lines))
    return textwrap.dedent("\n".join(block)).strip() + "\n"


#: The documented conversation, read from the docstring so that the two cannot
#: drift apart, with its stages' peak at 3 clients (a 3-row CSV feeds it here).
CHAT = documented_scenario().replace("clients = 100", "clients = 3")


def problems(**fields: Any) -> list[str]:
    return workload_problems(JobSpec(**fields))


def write_chat(tmp_path: Path, rows: int = 3, text: str = CHAT) -> Path:
    (tmp_path / "users.csv").write_text(
        "user,password\n" + "".join(f"u{i},p{i}\n" for i in range(rows))
    )
    scenario = tmp_path / "chat.toml"
    scenario.write_text(text)
    return scenario


def test_the_documented_conversation_compiles(tmp_path: Path) -> None:
    """The example in common.program's docstring (CHAT) compiles to the program it describes."""
    assert "clients = 3" in CHAT  # the docstring still has its [[stages]] table
    spec = build_spec(scenario=write_chat(tmp_path), env={}, ws_url="ws://127.0.0.1:9/")
    assert spec.duration == 10.0  # from the stages, not given
    assert spec.num_clients == 3
    assert spec.feeder is not None
    assert spec.feeder["columns"] == ["user", "password"]
    assert spec.feeder["total"] == 3
    workload = compile_workload(spec)
    (program,) = workload.programs
    assert program.name == "default"
    assert [(s.number, s.name, s.action) for s in program.setup] == [
        (1, "login", Action.SEND),
        (2, "login ok", Action.EXPECT),
    ]
    assert [(s.number, s.name, s.action) for s in program.loop] == [
        (3, "step 3", Action.SEND),
        (4, "ack", Action.EXPECT),
        (5, "step 5", Action.THINK),
    ]
    login_ok, ack = program.setup[1], program.loop[1]
    assert login_ok.capture == (("token", "token"),)
    assert isinstance(login_ok.fail, SubsetMatcher)
    assert ack.timeout == 2.0
    assert program.loop[2].body == Think("uniform", 0.5, 1.5)
    assert workload.step_names == ("login ok", "ack")
    assert workload.stages[0].clients == 3
    assert workload.feeder is not None
    assert workload.feeder.row_for(1, random.Random(0)) == {"user": "u1", "password": "p1"}
    # what a client does with it
    values: dict[str, Any] = {"client_id": "c", "seq": 4, "ts": 1.0, "pad": "", "token": "T"}
    sent = program.loop[0].body.render(values, random.Random(0))
    assert sent == '{"type":"msg","id":"m4","token":"T","text":"hello"}'
    assert ack.body.match(b'{"type":"ack","id":"m4"}', True, values, random.Random(0))


def test_the_spec_carries_the_new_fields_to_workers(tmp_path: Path) -> None:
    spec = build_spec(scenario=write_chat(tmp_path), env={}, ws_url="ws://127.0.0.1:9/")
    again = spec_from_dict(spec.to_dict())
    assert again == spec
    assert again.problems() == []
    assert compile_workload(again).step_names == ("login ok", "ack")


def test_every_kind_of_step() -> None:
    workload = compile_workload(
        JobSpec(
            steps=(
                {"send": "hello {client_id}"},
                {"send_binary": "00ff"},
                {"expect": "pong"},
                {"expect_regex": r"id=(?P<id>\d+)", "capture": {"id": "id"}},
                {"expect_binary": "0A0b"},
                {"wait": 0.5},
                {"think": {"exponential": 2}},
                {"send": "{id}"},
                {"close": True},
                {"close": 4000},
            )
        )
    )
    (program,) = workload.programs
    assert program.churns
    bodies = [s.body for s in program.steps]
    assert isinstance(bodies[0], TextTemplate)
    assert bodies[1] == b"\x00\xff"
    assert isinstance(bodies[2], TextMatcher)
    assert isinstance(bodies[3], RegexMatcher)
    assert bodies[4].expected == b"\x0a\x0b"
    assert bodies[5] == Think("fixed", 0.5)
    assert program.steps[5].action is Action.THINK  # wait is think
    assert bodies[6] == Think("exponential", 2.0)
    assert bodies[8:] == [1000, 4000]
    assert workload.step_names == ("step 3", "step 4", "step 5")


def test_echo_is_no_program() -> None:
    assert compile_workload(JobSpec()) == Workload(programs=())
    assert problems() == []


def test_every_problem_at_once_with_where_it_is() -> None:
    found = problems(
        steps=(
            {"send": {"user": "{usr}"}},
            {"expct": {"type": "ok"}},
            {"expect": "x", "capture": {"tok": "a"}},
            {"send": "x", "capture": {"a": "b"}, "fail": "no"},
        ),
        loop=(
            {"send": "{tokn} {random_int(5,1)}"},
            {"thnk": 1},
            {"wait": {"gauss": 1}},
            {"close": 999},
            {"send": "a", "think": 1},
            {},
        ),
    )
    assert found == [
        "steps: step 1: unknown variable {usr} (known: client_id, pad, seq, ts, uuid)",
        "steps: step 2: unknown key 'expct' (did you mean 'expect'?)",
        "steps: step 3: capture needs a JSON expect (a table) or expect_regex with groups, "
        "not an exact text expect",
        "steps: step 4: fail applies to expects only, not to send",
        "steps: step 4: capture applies to expects only, not to send",
        "loop: step 1: {random_int(5,1)}: random_int(a,b) needs a <= b",
        "loop: step 1: unknown variable {tokn} (did you mean 'tok'?)",
        "loop: step 2: unknown key 'thnk' (did you mean 'think'?)",
        "loop: step 3: wait: unknown distribution 'gauss'",
        "loop: step 4: close takes a close code (1000-4999) or true",
        "loop: step 5: needs exactly one of send, send_binary, expect, expect_regex, "
        "expect_binary, think, close, post (has send and think)",
        "loop: step 6: needs exactly one of send, send_binary, expect, expect_regex, "
        "expect_binary, think, close, post (has none)",
    ]


def test_bad_scenario_raises_with_every_problem() -> None:
    with pytest.raises(ScenarioError) as info:
        compile_workload(JobSpec(steps=({"sned": 1},), loop=({"wait": -1},)))
    assert info.value.problems == [
        "steps: step 1: unknown key 'sned' (did you mean 'send'?)",
        "loop: step 1: wait must be a number of seconds (0 to 3600), "
        "{uniform = [a, b]} or {exponential = mean}",
    ]


def test_variables_known_at_each_step() -> None:
    # setup captures reach the loop; a loop step sees earlier loop captures, not later ones
    ok = problems(
        steps=({"expect": {"t": 1}, "capture": {"token": "token"}},),
        loop=(
            {"send": "{token}"},
            {"expect": {"t": 2}, "capture": {"room": "room.id"}},
            {"send": {"room": "{room}", "token": "{token}"}},
        ),
    )
    assert ok == []
    assert problems(
        loop=(
            {"send": "{room}"},
            {"expect": {"t": 2}, "capture": {"room": "room.id"}},
            {"expect": {"r": "{room}"}, "capture": {"x": "x"}},
            {"expect": {"x": "{x}"}, "capture": {"x": "x"}},
        )
    ) == ["loop: step 1: {room} is captured only by step 2, after this one"]
    assert problems(steps=({"expect": {"a": "{me}"}, "capture": {"me": "a"}},)) == [
        "steps: step 1: {me} is captured by this step: usable in the steps after it"
    ]


@pytest.mark.parametrize(
    ("step", "needle"),
    [
        ({"expect": {"a": 1}, "capture": {"seq": "a"}}, "would hide the built-in variable {seq}"),
        ({"expect": {"a": 1}, "capture": {"1x": "a"}}, "'1x' is not a variable name"),
        ({"expect": {"a": 1}, "capture": {"x": "a..b"}}, "has an empty part"),
        ({"expect": {"a": 1}, "capture": {"x": 5}}, "a capture path is a string"),
        ({"expect": {"a": 1}, "capture": {"x": ""}}, "must be a non-empty string"),
        ({"expect_regex": "(a)", "capture": {"x": 2}}, "the regular expression has no group 2"),
        ({"expect": {"a": 1}, "capture": "a"}, 'capture takes a table of variable = "dotted.path"'),
        ({"expect_regex": "(a)", "capture": {"x": "b"}}, "the regular expression has no group 'b'"),
        ({"expect_binary": "00", "capture": {"x": "a"}}, "not a binary expect"),
        ({"expect": {"a": 1}, "name": ""}, "name must be a non-empty string"),
        ({"expect": {"a": 1}, "name": " x"}, "without leading or trailing spaces"),
        ({"expect": {"a": 1}, "name": "x" * 101}, "at most 100"),
        ({"expect": {"a": 1}, "timeout": 0}, "timeout must be a positive number"),
        ({"expect": {"a": 1}, "fail": {"b": "{nope}"}}, "unknown variable {nope}"),
        ({"think": {"uniform": [2, 1]}}, "0 <= low <= high <= 3600"),
        ({"think": {"exponential": -1}}, "exponential takes a mean"),
        ({"think": {"uniform": [1, 2], "exponential": 1}}, "think must be a number of seconds"),
    ],
)
def test_step_options_are_checked(step: dict[str, Any], needle: str) -> None:
    (problem,) = problems(steps=(step,))
    assert problem.startswith("steps: step 1: ")
    assert needle in problem


def test_regex_captures_by_group_name_or_number() -> None:
    assert problems(steps=({"expect_regex": "(?P<a>x)(y)", "capture": {"a": "a", "b": "2"}},)) == []


def test_step_names_are_unique_in_a_program() -> None:
    assert problems(
        steps=({"send": "a", "name": "x"}, {"expect": "a", "name": "x"}, {"send": "b"}),
        loop=({"expect": "c", "name": "step 3"},),
    ) == [
        "steps: step 2: name 'x' is taken by steps: step 1 (step names are unique; only "
        "expects of different scenarios may share one)",
        "loop: step 1: name 'step 3' is taken by steps: step 3 (step names are unique; only "
        "expects of different scenarios may share one)",
    ]


def _scenario(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "loop": [{"send": "x"}, {"expect": "x"}], **extra}


def test_scenarios_mix_programs() -> None:
    workload = compile_workload(
        JobSpec(
            num_clients=10,
            rate=100.0,
            scenarios=(
                _scenario("chat", weight=3),
                _scenario("idle", clients=2, interval=5),
                _scenario("burst", weight=1, rate=7),
            ),
        )
    )
    chat, idle, burst = workload.programs
    assert (chat.name, chat.weight, chat.clients) == ("chat", 3.0, None)
    assert (idle.clients, idle.interval) == (2, 5.0)
    # the job's rate is shared by clients: idle has 2 of 10, chat 3/4 of the other 8
    assert chat.rate == pytest.approx(60.0)
    assert idle.rate == pytest.approx(20.0)
    assert burst.rate == 7.0
    assert chat.interval == 0.5  # the job's
    assert [s.name for s in chat.steps] == ["chat step 1", "chat step 2"]
    assert workload.step_names == ("chat step 2", "idle step 2", "burst step 2")


def test_one_scenario_keeps_plain_step_names() -> None:
    (program,) = compile_workload(JobSpec(scenarios=(_scenario("only"),))).programs
    assert [s.name for s in program.steps] == ["step 1", "step 2"]
    assert program == Program("only", (), program.loop, None, 0.5, None, 1.0)


def test_scenario_problems_name_the_scenario() -> None:
    found = problems(
        num_clients=5,
        steps=({"send": "x"},),
        scenarios=(
            {"name": "chat", "loop": [{"send": "x"}], "wieght": 2, "clients": 4, "weight": 1},
            {"name": "chat", "steps": [{"sned": "x"}], "clients": 3},
            {"steps": [{"send": "x"}], "rate": 0},
            {"name": "empty"},
            "not a table",
        ),
    )
    assert found == [
        "scenarios: top-level [[steps]]/[[loop]] and [[scenarios]] do not mix: "
        "move the steps into a scenario",
        "scenarios[1] (chat): unknown key 'wieght' (did you mean 'weight'?)",
        "scenarios[1] (chat): give clients or weight, not both",
        "scenarios[2] (chat): another scenario has the name 'chat'",
        'scenarios[3]: needs name = "..."',
        "scenarios[3] (?): rate must be iterations per second > 0, got int 0",
        "scenarios[4] (empty): needs [[scenarios.steps]] or [[scenarios.loop]]",
        "scenarios[5]: expected a table, got str 'not a table'",
        "scenarios: their clients add up to 7, more than the job's 5",
        "scenarios[2] (chat): steps: step 1: unknown key 'sned' (did you mean 'send'?)",
    ]


def test_expects_of_different_scenarios_may_share_a_name() -> None:
    login = {"expect": {"type": "ok"}, "name": "login"}
    workload = compile_workload(
        JobSpec(
            scenarios=(
                {"name": "a", "steps": [{"send": "x"}, login]},
                {"name": "b", "steps": [{"send": "y"}, login]},
            )
        )
    )
    assert workload.step_names == ("login",)
    assert problems(
        scenarios=(
            {"name": "a", "steps": [{"send": "x", "name": "s"}]},
            {"name": "b", "steps": [{"expect": "y", "name": "s"}]},
        )
    ) == [
        "scenarios[2] (b): steps: step 1: name 's' is taken by scenarios[1] (a): steps: step 1 "
        "(step names are unique; only expects of different scenarios may share one)"
    ]


def test_too_many_steps() -> None:
    assert problems(loop=tuple({"send": "x"} for _ in range(10_001))) == [
        "loop: 10,001 steps, at most 10,000"
    ]
    assert problems(steps=({"send": "x"},) * 6000, loop=({"send": "x"},) * 6000) == [
        "steps and loop: more than 10,000 steps in all"
    ]


def test_the_integration_grammar_keeps_its_shape() -> None:
    assert step_problems([{"send": "ok"}, {"sned": "x"}, {"wait": 1, "name": "pause"}]) == [
        "step 2: unknown key 'sned' (did you mean 'send'?)"
    ]


def test_stages_set_duration_and_clients_when_not_given(tmp_path: Path) -> None:
    spec = build_spec(env={}, stages=({"duration": 5, "clients": 4}, {"duration": 5, "clients": 2}))
    assert (spec.duration, spec.num_clients) == (10.0, 4)
    with pytest.raises(SpecError) as info:
        build_spec(env={}, duration=3.0, num_clients=9, ramp_up=1.0,
                   stages=({"duration": 5, "clients": 4},))  # fmt: skip
    assert info.value.problems == [
        "duration (3 s) differs from the stages' total (5 s): leave duration out, the stages "
        "set it",
        "num_clients (9) differs from the stages' peak (4): leave it out, the stages set it",
        "ramp_up: the stages ramp the clients; leave ramp_up out",
    ]


def test_feeder_problems_before_the_run(tmp_path: Path) -> None:
    scenario = write_chat(tmp_path, rows=2)  # 2 users, 3 clients at the stages' peak
    with pytest.raises(SpecError) as info:
        build_spec(scenario=scenario, env={}, ws_url="ws://127.0.0.1:9/")
    (problem,) = info.value.problems
    assert problem.startswith("feeder: users.csv has 2 rows, the job has 3 clients")
    # the integration check runs one client: its first row is enough
    assert build_spec(scenario=scenario, env={}, mode="integration").feeder is not None
    (tmp_path / "users.csv").unlink()
    with pytest.raises(SpecError) as info:
        build_spec(scenario=scenario, env={}, ws_url="ws://127.0.0.1:9/")
    (problem,) = info.value.problems
    assert "users.csv" in problem
    lonely = tmp_path / "lonely.toml"
    (tmp_path / "users.csv").write_text("user\nu0\n")
    lonely.write_text('num_clients = 1\n[feeder]\nfile = "users.csv"\nmod = "cycle"\n')
    with pytest.raises(SpecError) as info:
        build_spec(scenario=lonely, env={})
    assert info.value.problems == [
        "feeder: unknown key 'mod' (did you mean 'mode'?)",
        "feeder: only a conversation ([[steps]], [[loop]] or [[scenarios]]) uses "
        "a feeder's columns",
    ]
    lonely.write_text('num_clients = 1\n[feeder]\nfile = "users.csv"\n')
    with pytest.raises(SpecError) as info:
        build_spec(scenario=lonely, env={})
    assert info.value.problems == [
        "feeder: only a conversation ([[steps]], [[loop]] or [[scenarios]]) uses a feeder's columns"
    ]


def test_a_capture_may_not_hide_a_feeder_column(tmp_path: Path) -> None:
    text = CHAT.replace('capture = {token = "token"}', 'capture = {user = "token"}')
    with pytest.raises(SpecError) as info:
        build_spec(scenario=write_chat(tmp_path, text=text), env={}, ws_url="ws://127.0.0.1:9/")
    assert info.value.problems == [
        "steps: step 2: capture: 'user' would hide the feeder column {user}",
        "loop: step 1: unknown variable {token} (known: client_id, pad, password, seq, ts, "
        "user, uuid)",
    ]


def test_send_renders_tables_as_json() -> None:
    (program,) = compile_workload(JobSpec(steps=({"send": {"n": "{seq}"}},))).programs
    assert isinstance(program.steps[0].body, JsonTemplate)


_pieces = st.sampled_from(["{seq}", "{user}", "{obj}", "{ts}", "{{seq}}", "{", "}", "a", "é", '"'])
_strings = st.lists(_pieces, max_size=4).map("".join)
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _strings
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8,
)  # fmt: skip
VARS: dict[str, Any] = {
    "seq": 3, "user": 'x"y', "obj": {"k": [1, None]}, "ts": 1700000000.1234567, "pad": "",
}  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=5), _values, min_size=1, max_size=4))
def test_what_a_send_table_sends_its_expect_twin_matches(table: dict[str, Any]) -> None:
    """A table sent by ``send`` matches the same table as ``expect``, with the same variables."""
    send, expect = JsonTemplate(table), SubsetMatcher(table)
    text = send.render(VARS, random.Random(0))
    assert expect.match(text.encode(), True, VARS, random.Random(0)) is not None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from([*STEP_KEYS, "other"]),
            _values | st.dictionaries(st.sampled_from(["uniform", "exponential", "x"]), _values),
            max_size=3,
        ),
        max_size=4,
    ),
    st.lists(st.dictionaries(st.sampled_from([*SCENARIO_KEYS, "x"]), _values), max_size=2),
)
def test_any_steps_compile_or_give_problems(steps: list[Any], scenarios: list[Any]) -> None:
    spec = JobSpec(steps=tuple(steps), scenarios=tuple(scenarios))
    found = workload_problems(spec)
    assert all(isinstance(p, str) and "\n" not in p for p in found)
    if not found:
        compile_workload(spec)


def test_an_integer_capture_takes_a_regex_group_by_number() -> None:
    step = (
        compile_workload(
            JobSpec(
                loop=({"send": "x"}, {"expect_regex": r"id=(\d+) n=(\d+)", "capture": {"n": 2}})
            )
        )
        .programs[0]
        .loop[1]
    )
    assert step.capture == (("n", "2"),)
    assert problems(steps=({"expect_regex": "(a)", "capture": {"n": True}},)) == [
        "steps: step 1: capture n: a capture path must be a non-empty string like 'a.b.0.c'"
    ]


def test_a_malformed_step_hides_no_other_problem() -> None:
    """Names of steps that did not compile still count: a taken name is said, and a
    threshold is checked against every step whose name is known (an expect or maybe one)."""
    found = problems(
        thresholds=("step.x.p99<50ms", "step.bad.p99<50ms", "step.ack.p99<5"),
        steps=({"send": "{usr}", "name": "login"}, {"expect": "ok", "name": "login", "tmeout": 1}),
        loop=({"name": "bad", "expct": "x"}, {"expect": "{tok}", "name": "ack"}),
    )
    assert found == [
        "steps: step 1: unknown variable {usr} (known: client_id, pad, seq, ts, uuid)",
        "steps: step 2: unknown key 'tmeout' (did you mean 'timeout'?)",
        "loop: step 1: unknown key 'expct' (did you mean 'expect'?)",
        "loop: step 2: unknown variable {tok} (known: client_id, pad, seq, ts, uuid)",
        "steps: step 2: name 'login' is taken by steps: step 1 (step names are unique; only "
        "expects of different scenarios may share one)",
        "threshold 'step.x.p99<50ms': no step named 'x' (steps: 'ack', 'bad', 'login')",
    ]
    # a step whose name cannot be known: no threshold is checked against the names
    unknown = problems(thresholds=("step.x.p99<50ms",), steps=({"expect": "a", "name": 5},))
    assert unknown == ["steps: step 1: name must be a non-empty string"]

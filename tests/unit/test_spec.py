"""The job spec: defaults, layering, validation messages. No sockets."""

from __future__ import annotations

import base64
import math
import os
from pathlib import Path

import pytest
import trustme

from wsload.common.errors import SpecError
from wsload.common.protocol import Job, decode, encode
from wsload.common.scenario import MAX_SCENARIO_BYTES
from wsload.common.spec import (
    DEFAULT_API_URL,
    DEFAULT_WS_URL,
    MAX_LIST_ITEMS,
    MAX_SPEC_BYTES,
    JobSpec,
    Mode,
    build_spec,
    env_overrides,
    spec_from_dict,
)
from wsload.common.steps import MAX_STEPS
from wsload.common.thresholds import MAX_THRESHOLDS
from wsload.common.validation import display_url, redact_headers


def problems_of(**kwargs: object) -> list[str]:
    with pytest.raises(SpecError) as info:
        build_spec(**kwargs)  # type: ignore[arg-type]
    return info.value.problems


def test_defaults_match_the_original_framework() -> None:
    spec = build_spec(env={})
    assert spec.ws_url == DEFAULT_WS_URL == "ws://localhost:9000/ws"
    assert spec.api_url == DEFAULT_API_URL == "http://localhost:9000/api"
    assert (spec.num_clients, spec.duration, spec.interval) == (5, 5.0, 0.5)
    assert spec.mode is Mode.LOAD
    assert spec.rate is None


def test_environment_variables_of_the_original_framework() -> None:
    env = {
        "WS_URL": "wss://example.test:8443/socket",
        "API_URL": "https://example.test/api",
        "NUM_CLIENTS": "12",
        "TEST_DURATION": "30",
        "MESSAGE_INTERVAL": "0.2",
    }
    spec = build_spec(env=env)
    assert spec.ws_url == "wss://example.test:8443/socket"
    assert spec.api_url == "https://example.test/api"
    assert (spec.num_clients, spec.duration, spec.interval) == (12, 30.0, 0.2)


def test_flags_override_environment_which_overrides_scenario(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text('num_clients = 3\nduration = 9\ninterval = 1\n[headers]\nX-A = "1"\n')
    spec = build_spec(scenario=scenario, env={"NUM_CLIENTS": "4"}, duration=7.0, interval=None)
    assert spec.num_clients == 4  # env beats scenario
    assert spec.duration == 7.0  # flag beats scenario
    assert spec.interval == 1.0  # None flag means "not given"
    assert spec.headers == (("X-A", "1"),)


def test_empty_environment_variable_is_ignored() -> None:
    assert build_spec(env={"NUM_CLIENTS": "  "}).num_clients == 5


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"NUM_CLIENTS": "ten"}, "NUM_CLIENTS: expected an integer, got 'ten'"),
        ({"TEST_DURATION": "5s"}, "TEST_DURATION: expected a number, got '5s'"),
        ({"MESSAGE_INTERVAL": "nan"}, "interval must be a number, got NaN"),
        ({"WS_URL": "http://localhost:9000/ws"}, "must start with ws:// or wss://"),
        ({"API_URL": "localhost:9000/api"}, "is missing http:// or https://"),
    ],
)
def test_bad_environment_is_named(env: dict[str, str], needle: str) -> None:
    assert any(needle in p for p in problems_of(env=env))


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        ({"ws_url": "ftp://x/ws"}, "ws_url: 'ftp://x/ws' must start with ws:// or wss://"),
        ({"ws_url": "ws:///nohost"}, "has no host"),
        ({"ws_url": "ws://host:99999/"}, "is not a valid URL"),
        ({"ws_url": "ws://host:0/"}, "has port 0"),
        ({"num_clients": 0}, "num_clients must be at least 1, got 0"),
        ({"num_clients": -3}, "num_clients must be at least 1"),
        ({"num_clients": 10**9}, "num_clients must be at most"),
        ({"duration": 0.0}, "duration must be greater than zero"),
        ({"duration": math.nan}, "duration must be a number, got NaN"),
        ({"duration": math.inf}, "duration must be finite"),
        ({"interval": -1.0}, "interval must be zero or more"),
        ({"rate": 0.0}, "rate must be greater than zero"),
        ({"ramp_up": 10.0, "duration": 5.0}, "ramp_up (10 s) must not exceed duration (5 s)"),
        ({"payload_size": -1}, "payload_size must be at least 0"),
        ({"reply_timeout": 0.0}, "reply_timeout must be greater than zero"),
        ({"headers": (("Bad Name", "v"),)}, "not a valid HTTP header name"),
        ({"headers": (("X-A", "a\r\nb"),)}, "contains a line break"),
        ({"subprotocols": ("chat v1",)}, "not a valid subprotocol token"),
        ({"thresholds": (" ",)}, "threshold ' ': expected METRIC OP VALUE"),
        ({"thresholds": ("p98<5ms",)}, "unknown metric 'p98'"),
        ({"mode": "stress"}, "mode: expected one of load, unit, integration, event"),
        ({"num_clients": "5"}, "num_clients: expected an integer, got str '5'"),
        ({"num_clients": True}, "num_clients: expected an integer"),
        ({"duration": "long"}, "duration: expected a number"),
        ({"num_clientz": 5}, "unknown field 'num_clientz' (did you mean 'num_clients'?)"),
    ],
)
def test_bad_values_get_one_clear_line(flags: dict[str, object], needle: str) -> None:
    problems = problems_of(env={}, **flags)
    assert any(needle in p for p in problems), problems
    assert all("\n" not in p for p in problems)


def test_every_problem_is_reported_at_once() -> None:
    problems = problems_of(env={}, ws_url="http://x", num_clients=0, duration=-1.0)
    assert len(problems) == 3


def test_scenario_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert problems_of(scenario=missing) == [f"{missing}: scenario file not found"]
    bad = tmp_path / "bad.toml"
    bad.write_text("num_clients = = 3\n")
    (problem,) = problems_of(scenario=bad)
    assert problem.startswith(f"{bad}: invalid TOML")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("num_client = 3\nduration = 'x'\n")
    found = problems_of(scenario=unknown)
    assert f"{unknown}: unknown field 'num_client' (did you mean 'num_clients'?)" in found
    assert any(p.startswith(f"{unknown}: duration: expected a number") for p in found)
    assert problems_of(scenario=tmp_path) == [f"{tmp_path}: is a directory, not a scenario file"]


def test_wire_round_trip() -> None:
    spec = build_spec(
        env={},
        rate=100.0,
        headers=(("Authorization", "Bearer x"),),
        subprotocols=("chat",),
        thresholds=("p99<50ms",),
        mode="event",
    )
    assert spec_from_dict(spec.to_dict()) == spec
    assert spec.mode is Mode.EVENT


def test_env_overrides_only_names_known_variables() -> None:
    assert env_overrides({"HOME": "/root", "NUM_CLIENTS": "2"}) == {"num_clients": 2}


def test_direct_construction_is_validated_by_problems() -> None:
    assert JobSpec().problems() == []
    assert JobSpec(num_clients=0).problems() == ["num_clients must be at least 1, got 0"]


def test_client_engine_auto_is_picows_unless_compression_needs_websockets() -> None:
    assert JobSpec().client_engine == "picows"
    assert JobSpec(compression=True).client_engine == "websockets"
    assert JobSpec(engine="websockets").client_engine == "websockets"
    assert JobSpec(engine="picows", compression=True).problems() == [
        "engine: picows does not do compression; use --engine websockets or auto"
    ]
    assert JobSpec(engine="fast").problems() == [
        "engine: expected one of auto, picows, websockets, got 'fast'"
    ]


def test_a_wrong_type_does_not_hide_the_other_problems(tmp_path: Path) -> None:
    scenario = tmp_path / "four.toml"
    scenario.write_text(
        'num_clients = 0\ninterval = "x"\nbogus = 1\nduration = nan\n'
        'thresholds = ["p98<1ms"]\n[[steps]]\nsned = 1\n'
    )
    problems = problems_of(scenario=scenario, env={})
    assert len(problems) == 6, problems
    assert f"{scenario}: interval: expected a number, got str 'x'" in problems
    assert f"{scenario}: unknown field 'bogus'" in problems
    assert "num_clients must be at least 1, got 0" in problems
    assert "duration must be a number, got NaN" in problems
    assert any("unknown metric 'p98'" in p for p in problems)
    assert any(p.startswith("steps: step 1: unknown key 'sned'") for p in problems)


def test_a_field_of_the_wrong_type_gets_no_misleading_range_line() -> None:
    # duration is unusable, so "ramp_up must not exceed duration (5 s)" would be false
    assert problems_of(env={}, duration="long", ramp_up=10.0) == [
        "duration: expected a number, got str 'long'"
    ]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "+nan"])
@pytest.mark.parametrize("field", ["duration", "interval", "rate", "reply_timeout", "event_wait"])
def test_nan_and_inf_from_toml_are_refused(tmp_path: Path, field: str, value: str) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(f"{field} = {value}\n")
    (problem,) = problems_of(scenario=scenario, env={})
    assert problem.startswith(field), problem
    assert "NaN" in problem or "finite" in problem or "zero or more" in problem


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("localhost:9000", "ws_url: 'localhost:9000' is missing ws:// or wss:// (e.g. ws://"),
        ("ws://host/ws#x", "ws_url: 'ws://host/ws#x' has a fragment (#x)"),
        ("ws:/host/ws", "must start with ws:// or wss:// (two slashes)"),
        ("ws://host/ws#", "has a fragment"),
        ("ws://host/a\tb", "contains whitespace or a control character"),
    ],
)
def test_url_problems_say_what_is_wrong(url: str, needle: str) -> None:
    problems = problems_of(env={}, ws_url=url)
    assert len(problems) == 1, problems
    assert needle in problems[0]


def test_url_credentials_become_a_basic_authorization_header() -> None:
    spec = build_spec(env={}, ws_url="ws://us%40er:p%3Ass@host:9000/ws?a=1")
    assert spec.ws_url == "ws://host:9000/ws?a=1"
    assert spec.headers == (("Authorization", "Basic " + _b64("us@er:p:ss")),)
    assert spec_from_dict(spec.to_dict()) == spec  # what the workers get: no password in the URL
    assert "p%3Ass" not in repr(spec.to_dict())


def test_url_credentials_beside_an_authorization_header_are_refused() -> None:
    problems = problems_of(
        env={}, ws_url="ws://u:secret@host/ws", headers=(("authorization", "Bearer t"),)
    )
    assert len(problems) == 1
    assert "and an Authorization header" in problems[0]
    assert not any("secret" in p for p in problems)


def test_a_bad_url_with_credentials_never_prints_them() -> None:
    problems = problems_of(env={}, ws_url="ws://u:secret@host:99999/ws#f")
    assert problems
    assert not any("secret" in p for p in problems), problems


def test_redaction_helpers_for_outputs() -> None:
    assert display_url("wss://u:secret@host:1/p?q") == "wss://***@host:1/p?q"
    assert display_url("ws://host/p@x") == "ws://host/p@x"  # an @ in the path is not userinfo
    assert redact_headers([("Authorization", "Basic x"), ("cookie", "s=1"), ("X-A", "1")]) == [
        ("Authorization", "***"),
        ("cookie", "***"),
        ("X-A", "1"),
    ]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_limits_are_checked_before_the_run() -> None:
    many = tuple(["p99<1s"] * (MAX_THRESHOLDS + 1))
    assert problems_of(env={}, thresholds=many) == [
        f"thresholds: {MAX_THRESHOLDS + 1:,} given, at most {MAX_THRESHOLDS:,}"
    ]
    steps = tuple({"wait": 0} for _ in range(MAX_STEPS + 1))
    assert problems_of(env={}, steps=steps) == [
        f"steps: {MAX_STEPS + 1:,} steps, at most {MAX_STEPS:,}"
    ]
    headers = tuple((f"X-{i}", "v") for i in range(MAX_LIST_ITEMS + 1))
    assert problems_of(env={}, headers=headers) == [
        f"headers: {MAX_LIST_ITEMS + 1:,} items, at most {MAX_LIST_ITEMS:,}"
    ]
    (problem,) = problems_of(env={}, payload="x" * MAX_SPEC_BYTES)
    assert "over the wire's limit" in problem


def test_a_spec_at_the_limits_fits_one_wire_message() -> None:
    spec = build_spec(
        env={},
        mode="integration",
        thresholds=tuple(["p99<1s"] * MAX_THRESHOLDS),
        steps=tuple({"send": "x" * 100} for _ in range(MAX_STEPS)),
        headers=tuple((f"X-{i}", "v" * 100) for i in range(MAX_LIST_ITEMS)),
    )
    job = Job("j", spec.to_dict(), 5, 0, 0.0, 0.0)
    assert decode(encode(job)) == job


def test_the_ca_file_must_hold_a_certificate(tmp_path: Path) -> None:
    assert problems_of(env={}, ca_file="/dev/null") == [
        "ca_file: '/dev/null' is not a readable file"
    ]
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    (problem,) = problems_of(env={}, ca_file=str(junk))
    assert problem.startswith(f"ca_file: '{junk}' holds no usable CA certificate")
    good = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(good))
    assert build_spec(env={}, ca_file=str(good)).ca_file == str(good)


def test_scenario_reads_are_bounded(tmp_path: Path) -> None:
    assert problems_of(scenario="/dev/zero") == [
        "/dev/zero: larger than 1024 KiB; a scenario must be smaller"
    ]
    big = tmp_path / "big.toml"
    big.write_text("#" * MAX_SCENARIO_BYTES + "\n")
    assert "larger than 1024 KiB" in problems_of(scenario=big)[0]
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"a = '\xff'\n")
    assert problems_of(scenario=binary) == [f"{binary}: not UTF-8 text (byte 5)"]


def test_a_fifo_nobody_writes_reads_as_empty_instead_of_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert build_spec(scenario=fifo, env={}) == build_spec(env={})


@pytest.mark.parametrize("text", ["a = " + "[" * 3000 + "]" * 3000, "a = " + "{b = " * 3000])
def test_deep_nesting_is_one_line(tmp_path: Path, text: str) -> None:
    scenario = tmp_path / "deep.toml"
    scenario.write_text(text + "\n")
    (problem,) = problems_of(scenario=scenario)
    assert problem.startswith(str(scenario))
    assert "\n" not in problem


def test_nested_step_values_are_bounded(tmp_path: Path) -> None:
    scenario = tmp_path / "deep.toml"
    scenario.write_text("[[steps]]\nexpect = " + "[" * 100 + "]" * 100 + "\n")
    assert problems_of(scenario=scenario, env={}) == [
        "steps: step 1: expect value is nested more than 32 levels deep"
    ]


def test_text_that_cannot_travel_is_refused() -> None:
    # bytes that are not UTF-8 reach Python from argv as surrogates; msgpack cannot send them
    problems = problems_of(env={}, payload="\udcff", headers=(("X-A", "\udcfe"),))
    assert sorted(problems) == [
        "headers: contains bytes that are not UTF-8 text",
        "payload: contains bytes that are not UTF-8 text",
    ]
    assert problems_of(env={}, steps=({"expect": {"a": 2**64}},)) == [
        "steps: step 1: expect value is an integer beyond 64 bits"
    ]


def test_a_huge_environment_value_is_shown_short() -> None:
    (problem,) = problems_of(env={"NUM_CLIENTS": "9" * 5000})
    assert problem.startswith("NUM_CLIENTS: expected an integer, got '999")
    assert len(problem) < 100

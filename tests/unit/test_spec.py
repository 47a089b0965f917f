"""The job spec: defaults, layering, validation messages. No sockets."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from common.errors import SpecError
from common.spec import (
    DEFAULT_API_URL,
    DEFAULT_WS_URL,
    JobSpec,
    Mode,
    build_spec,
    env_overrides,
    spec_from_dict,
)


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

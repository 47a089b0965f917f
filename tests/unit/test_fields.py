"""Each job field declared once: the declarations make the options, the env layer and the checks.

A throwaway click command carries :func:`wsload.common.params.job_options`, so
these tests parse real command lines through click without starting
anything; the commands themselves are covered by ``test_bad_invocations``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import click
import pytest
import trustme
from click.testing import CliRunner

from wsload.common.errors import SpecError
from wsload.common.fields import BY_NAME, ENV_VARS, FIELDS, value_problems
from wsload.common.params import job_flags, job_options
from wsload.common.spec import FIELD_KINDS, FIELD_NAMES, JobSpec, build_spec
from wsload.coordinator.cli import main


def _parse(command: Literal["run", "test"], *args: str) -> dict[str, Any]:
    """The spec fields a command line of ``command``'s job options sets."""
    got: dict[str, Any] = {}

    @click.command()
    @job_options(command)
    def probe(**params: Any) -> None:
        flags, problems = job_flags(params)
        assert not problems, problems
        got.update(flags)

    result = CliRunner().invoke(probe, list(args))
    assert result.exit_code == 0, result.output
    return got


def test_the_declarations_list_every_spec_field_in_order() -> None:
    assert tuple(f.name for f in FIELDS) == FIELD_NAMES
    assert set(FIELD_KINDS) == set(FIELD_NAMES)
    assert ENV_VARS == {
        "WS_URL": "ws_url",
        "API_URL": "api_url",
        "NUM_CLIENTS": "num_clients",
        "TEST_DURATION": "duration",
        "MESSAGE_INTERVAL": "interval",
    }


#: A good value for each flag and the field value it gives.
GOOD: dict[str, tuple[list[str], Any]] = {
    "ws_url": (["--ws-url", "ws://h/ws"], "ws://h/ws"),
    "api_url": (["--api-url", "http://h/api"], "http://h/api"),
    "num_clients": (["-c", "7"], 7),
    "duration": (["-d", "2.5"], 2.5),
    "interval": (["--interval", "0"], 0.0),
    "rate": (["--rate", "100"], 100.0),
    "ramp_up": (["--ramp-up", "1"], 1.0),
    "payload": (["--payload", "x{seq}"], "x{seq}"),
    "payload_size": (["--payload-size", "64"], 64),
    "headers": (["--header", "A: 1", "--header", "B:2"], (("A", "1"), ("B", "2"))),
    "subprotocols": (["--subprotocol", "a", "--subprotocol", "b"], ("a", "b")),
    "connect_timeout": (["--connect-timeout", "3"], 3.0),
    "reply_timeout": (["--reply-timeout", "4"], 4.0),
    "drain_timeout": (["--drain-timeout", "0"], 0.0),
    "id_field": (["--id-field", "n"], "n"),
    "match": (["--match", "order"], "order"),
    "max_message_size": (["--max-message-size", "2048"], 2048),
    "reconnect": (["--no-reconnect"], False),
    "tls_insecure": (["--tls-insecure"], True),
    "source_addresses": (["--source-address", "127.0.0.1, 127.0.0.2"], ("127.0.0.1", "127.0.0.2")),
    "engine": (["--engine", "websockets"], "websockets"),
    "thresholds": (["--threshold", "p99<1s"], ("p99<1s",)),
    "event_names": (["--event-name", "a"], ("a",)),
    "event_count": (["--event-count", "3"], 3),
    "event_wait": (["--event-wait", "0.5"], 0.5),
}  # fmt: skip


@pytest.mark.parametrize("command", ["run", "test"])
def test_every_flag_sets_its_field_with_the_declared_type(
    command: Literal["run", "test"], tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    good = {**GOOD, "ca_file": (["--ca-file", str(ca)], str(ca))}
    offered = [f.name for f in FIELDS if f.flag and command in f.commands]
    assert set(offered) <= set(good), set(offered) - set(good)
    for name in offered:
        args, expected = good[name]
        flags = _parse(command, *args)
        assert flags == {name: expected}, name
        spec = build_spec(env={}, **flags)
        assert getattr(spec, name) == expected, name


def test_options_not_given_set_nothing_so_lower_layers_show_through() -> None:
    assert _parse("run") == {}
    assert _parse("test") == {}


def test_precedence_defaults_scenario_environment_flags(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text("num_clients = 3\nduration = 9.0\nreply_timeout = 7.0\n")
    env = {"NUM_CLIENTS": "4", "TEST_DURATION": "8"}
    spec = build_spec(scenario=scenario, env=env, **_parse("run", "-c", "5"))
    got = (spec.num_clients, spec.duration, spec.reply_timeout, spec.interval)
    assert got == (5, 8.0, 7.0, 0.5)


def test_help_says_each_environment_variable_and_default() -> None:
    for command in ("run", "test"):
        out = CliRunner().invoke(main, [command, "--help"], terminal_width=400).output
        for var, name in ENV_VARS.items():
            default = JobSpec.__dataclass_fields__[name].default
            shown = f"{default:g}" if isinstance(default, float) else str(default)
            assert f"[env {var}; default {shown}]" in out, (command, var)
        assert "{default}" not in out
        assert "{env}" not in out


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("num_clients", 0, "num_clients must be at least 1"),
        ("duration", 0.0, "duration must be greater than zero"),
        ("interval", -1.0, "interval must be zero or more"),
        ("rate", None, None),
        ("event_count", 10_001, "event_count must be at most 10,000"),
        ("engine", "fast", "engine: expected one of auto, picows, websockets"),
        ("match", "fuzzy", "match: expected one of id, order"),
        ("payload", "anything", None),
    ],
)
def test_declared_ranges_and_choices_are_checked(name: str, value: Any, needle: str | None) -> None:
    lines = value_problems(name, value)
    if needle is None:
        assert lines == []
        return
    assert len(lines) == 1, lines
    assert needle in lines[0]
    with pytest.raises(SpecError) as caught:  # the spec checks the same, with the rest
        build_spec(env={}, **{name: value})
    assert any(needle in line for line in caught.value.problems)


def test_every_ranged_field_refuses_its_bounds_plus_one() -> None:
    for field in FIELDS:
        if field.high is None:
            continue
        default = JobSpec.__dataclass_fields__[field.name].default
        too_big: Any = int(field.high) + 1 if isinstance(default, int) else field.high * 2
        spec = dataclasses.replace(JobSpec(), **{field.name: too_big})
        assert any(p.startswith(field.name) for p in spec.problems()), field.name
        assert BY_NAME[field.name].low is not None, field.name


def test_each_command_offers_the_declared_flags() -> None:
    ctx = click.Context(main)
    for name, offers in (("run", "run"), ("coordinator", "run"), ("test", "test")):
        command = main.get_command(ctx, name)
        assert command is not None
        opts = {opt for param in command.params for opt in param.opts}
        for field in FIELDS:
            if field.flag and offers in field.commands:
                assert field.flag in opts, (name, field.flag)
                assert field.alias is None or field.alias in opts, (name, field.alias)


def test_conversation_fields_come_from_a_scenario_file_only(tmp_path: Path) -> None:
    for name in ("loop", "scenarios", "feeder", "stages"):
        assert BY_NAME[name].flag is None
    assert FIELD_KINDS["loop"] == FIELD_KINDS["scenarios"] == FIELD_KINDS["stages"] == "steps"
    assert FIELD_KINDS["feeder"] == "table?"
    scenario = tmp_path / "bad.toml"
    scenario.write_text('feeder = "users.csv"\nloop = 3\nscenarios = [1]\n')
    with pytest.raises(SpecError) as info:
        build_spec(scenario=scenario, env={})
    assert info.value.problems == [
        f"{scenario}: feeder: expected a table, got str 'users.csv'",
        f"{scenario}: loop: expected a list of tables ([[...]]), got int 3",
        f"{scenario}: scenarios: expected a list of tables ([[...]]), got list [1]",
    ]

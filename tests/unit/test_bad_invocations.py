"""Every bad invocation, table-driven through click's CliRunner: exit 2, one line per problem.

No process starts: each case is refused while the command validates its
input, in this process. The table grows with the commands: a test walks
every option of ``run``, ``coordinator``, ``test``, ``worker``, ``serve``,
``keys generate`` and ``client`` and fails when one that takes a value has no case here
(or is listed in :data:`NO_BAD_VALUE` with the reason none exists), and
when a float option is not a :class:`wsload.common.params.FiniteFloat`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from wsload.common.curve import generate
from wsload.common.params import FiniteFloat
from wsload.common.scenario import MAX_SCENARIO_BYTES
from wsload.common.spec import MAX_SPEC_BYTES
from wsload.common.steps import MAX_STEPS
from wsload.common.thresholds import MAX_THRESHOLDS
from wsload.coordinator.cli import main

URL = "ws://127.0.0.1:9/ws"  # discard port: never reached, input is refused first
#: The original framework's variables, unset so the host's environment cannot change a case.
CLEAN_ENV = {v: None for v in ("WS_URL", "API_URL", "NUM_CLIENTS", "TEST_DURATION",
                               "MESSAGE_INTERVAL")}  # fmt: skip


@dataclass(frozen=True)
class Case:
    """``args`` must exit 2 with exactly one stderr line per needle, each needle in its line."""

    args: tuple[str, ...]
    needles: tuple[str, ...]
    #: a job-option case of ``run`` also checked on ``coordinator`` (same options, same checks)
    shared: bool = True


def case(*args: str, needle: str | tuple[str, ...], shared: bool = True) -> Case:
    return Case(args, needle if isinstance(needle, tuple) else (needle,), shared)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad-invocations")
    (root / "malformed.toml").write_text("num_clients = = 1\n")
    (root / "four.toml").write_text(
        'num_clients = 0\ninterval = "x"\nbogus = 1\n[[steps]]\nwait = nan\n'
    )
    (root / "deep.toml").write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    many = ",".join(['"p99<1s"'] * (MAX_THRESHOLDS + 1))
    (root / "thresholds.toml").write_text(f"thresholds = [{many}]\n")
    (root / "steps.toml").write_text("[[steps]]\nwait = 0\n" * (MAX_STEPS + 1))
    (root / "badstep.toml").write_text('[[steps]]\nsned = "x"\n[[steps]]\nwait = inf\n')
    (root / "big.toml").write_text("# padding\n" * (MAX_SCENARIO_BYTES // 10 + 1))
    (root / "notca.pem").write_text("not a certificate\n")
    (root / "adir").mkdir()
    generate(root / "keys")
    return root


def _u(*args: str) -> tuple[str, ...]:
    """``run`` arguments with a target URL (so the default one cannot be the problem)."""
    return ("--ws-url", URL, *args)


RUN_CASES: list[Case] = [
    case("--ws-url", "localhost:9000", needle="'localhost:9000' is missing ws:// or wss://"),
    case("--ws-url", "http://x/ws", needle="must start with ws:// or wss:// (got http://)"),
    case("--ws-url", "ws://h/ws#frag", needle="has a fragment (#frag)"),
    case("--ws-url", "ws://host:99999/", needle="is not a valid URL"),
    case("--ws-url", "ws://u:secret@h/ws", "--header", "Authorization: x",
         needle="has credentials (user:password@) and an Authorization header"),
    case(*_u("--api-url", "localhost:9000/api"), needle="is missing http:// or https://"),
    case(*_u("-c", "0"), needle="num_clients must be at least 1"),
    case(*_u("--num-clients", "abc"), needle="'abc' is not a valid integer"),
    case(*_u("-d", "nan"), needle="'-d': 'nan' is not a finite number"),
    case(*_u("--duration", "0"), needle="duration must be greater than zero"),
    case(*_u("--interval", "inf"), needle="'--interval': 'inf' is not a finite number"),
    case(*_u("--interval", "-1"), needle="interval must be zero or more"),
    case(*_u("--rate", "nan"), needle="'--rate': 'nan' is not a finite number"),
    case(*_u("--rate", "0"), needle="rate must be greater than zero"),
    case(*_u("--ramp-up", "-inf"), needle="'--ramp-up': '-inf' is not a finite number"),
    case(*_u("--ramp-up", "10", "-d", "5"), needle="must not exceed duration"),
    case(*_u("--payload", "x" * (MAX_SPEC_BYTES + 1)), needle="over the wire's limit"),
    case(*_u("--payload-size", "-1"), needle="payload_size must be at least 0"),
    case(*_u("--payload", "\udcff"), needle="payload: contains bytes that are not UTF-8 text"),
    case(*_u("--header", "nocolon"), needle="--header: 'nocolon' is not NAME: VALUE"),
    case(*_u("--header", "Bad Name: x"), needle="not a valid HTTP header name"),
    case(*_u("--subprotocol", "a b"), needle="not a valid subprotocol token"),
    case(*_u("--connect-timeout", "nan"), needle="'--connect-timeout': 'nan' is not a finite"),
    case(*_u("--connect-timeout", "0"), needle="connect_timeout must be greater than zero"),
    case(*_u("--reply-timeout", "inf"), needle="'--reply-timeout': 'inf' is not a finite"),
    case(*_u("--drain-timeout", "nan"), needle="'--drain-timeout': 'nan' is not a finite"),
    case(*_u("--drain-timeout", "-1"), needle="drain_timeout must be zero or more"),
    case(*_u("--id-field", 'a"b'), needle="is not a usable JSON field name"),
    case(*_u("--match", "fuzzy"), needle="'--match'"),
    case(*_u("--max-message-size", "10"), needle="max_message_size must be at least 1024"),
    case(*_u("--max-message-size", "big"), needle="'big' is not a valid integer"),
    case(*_u("--source-address", "localhost"), needle="'localhost' is not an IP address"),
    case(*_u("--engine", "fast"), needle="'--engine'"),
    case(*_u("--ca-file", "/nonexistent/ca.pem"), needle="is not a readable file"),
    case("--ws-url", "wss://127.0.0.1:9/", "--ca-file", "{d}/notca.pem",
         needle="holds no usable CA certificate"),
    case("--ws-url", "wss://127.0.0.1:9/", "--ca-file", "/dev/null",
         needle="'/dev/null' is not a readable file"),
    case(*_u("--scenario", "{d}/missing.toml"), needle="scenario file not found"),
    case(*_u("--scenario", "{d}/adir"), needle="is a directory"),
    case(*_u("--scenario", "/dev/zero"), needle="larger than 1024 KiB"),
    case(*_u("--scenario", "{d}/big.toml"), needle="larger than 1024 KiB"),
    case(*_u("--scenario", "{d}/malformed.toml"), needle="invalid TOML"),
    case(*_u("--scenario", "{d}/deep.toml"), needle="nested too deep"),
    case(*_u("--scenario", "{d}/thresholds.toml"), needle=f"at most {MAX_THRESHOLDS:,}"),
    case(*_u("--scenario", "{d}/steps.toml"), needle=f"at most {MAX_STEPS:,}"),
    case(*_u("--scenario", "{d}/badstep.toml"),
         needle=("step 1: unknown key 'sned'", "step 2: wait must be a number of seconds")),
    case(*_u("--scenario", "{d}/four.toml"),
         needle=("interval: expected a number", "unknown field 'bogus'",
                 "num_clients must be at least 1", "step 1: wait must be a number")),
    case(*_u("--json", "/nonexistent/dir/s.json"), needle="no directory"),
    case(*_u("--csv", "{d}/adir"), needle="is a directory"),
    case(*_u("--junit", "/nonexistent/dir/j.xml"), needle="no directory"),
    case(*_u("--html", "{d}/adir"), needle="is a directory"),
    case(*_u("--hdr", "/nonexistent/dir/h.hlog"), needle="no directory"),
    case(*_u("--threshold", "p98<5ms"), needle="unknown metric 'p98'"),
    case(*_u("--threshold", "p99<5"), needle="needs a time unit"),
    case(*_u("--on-worker-loss", "maybe"), needle="'--on-worker-loss'"),
    case(*_u("--metrics-port", "70000"), needle="'--metrics-port'"),
    case(*_u("--dashboard-port", "70000"), needle="'--dashboard-port'"),
    case(*_u("--metrics-port", "0", "--metrics-host", "0.0.0.0"), needle="--metrics-public"),
    case(*_u("--metrics-port", "0", "--metrics-linger", "nan"),
         needle="'--metrics-linger': 'nan' is not a finite number"),
    case(*_u("--otlp", "grpc://h:4317"), needle="OTLP over HTTP"),
    # several problems at once: one line each
    case(*_u("-d", "nan", "--interval", "inf", "-c", "x"),
         needle=("'-d': 'nan'", "'--interval': 'inf'", "'x' is not a valid integer")),
    case("--ws-url", "ws://h/#x", "-c", "0", "--header", "bad", "--threshold", "fast",
         needle=("has a fragment", "num_clients must be at least 1", "is not NAME: VALUE",
                 "expected METRIC OP VALUE")),
    case(*_u("-d", "nan", "-c", "0", "--scenario", "{d}/badstep.toml"),  # click's and the spec's
         needle=("'-d': 'nan'", "num_clients must be at least 1", "step 1: unknown key 'sned'",
                 "step 2: wait must be")),
    case(*_u("--json", "/nonexistent/dir/s.json", "--duration", "-1"),
         needle=("no directory", "duration must be greater than zero")),
    # run's own options
    case(*_u("--workers", "0"), needle="'--workers'", shared=False),
    case(*_u("-w", "x"), needle="'x' is not a valid integer", shared=False),
    case(*_u("--source-address", "192.0.2.77"), needle="cannot connect from source address",
         shared=False),
    case("--demo", "--ws-url", URL, needle="--demo starts its own target", shared=False),
    case("--demo", "--ws-url", URL, "-c", "0", shared=False,
         needle=("--demo starts its own target", "num_clients must be at least 1")),
    case(*_u("--source-address", "192.0.2.77", "--json", "/nonexistent/dir/s.json"), shared=False,
         needle=("cannot connect from source address 192.0.2.77", "no directory")),
]  # fmt: skip

COORDINATOR_CASES: list[Case] = [
    case("--expect-workers", "1", "--worker-wait", "nan",
         needle="'--worker-wait': 'nan' is not a finite number"),
    case("--expect-workers", "1", "--worker-wait", "inf", needle="'--worker-wait'"),
    case("--expect-workers", "1", "--worker-wait", "0", needle="'--worker-wait'"),
    case("--expect-workers", "0", needle="'--expect-workers'"),
    case(needle="Missing option '--expect-workers'"),
    case("--expect-workers", "1", "--bind", "udp://x:1", needle="--bind"),
    case("--expect-workers", "1", "--bind", "tcp://0.0.0.0:5999",
         needle="refusing to bind tcp://0.0.0.0:5999 without keys"),
    case("--expect-workers", "1", "--keys", "/nonexistent", needle="cannot read key"),
    case("--expect-workers", "1", "--bind", "tcp://0.0.0.0:5999", "-c", "0", "--keys", "/no/keys",
         needle=("num_clients must be at least 1", "cannot read key")),
    case("--expect-workers", "1", "--bind", "tcp://0.0.0.0:5999", "-c", "0",
         needle=("num_clients must be at least 1", "refusing to bind")),
    case("--expect-workers", "x", "--worker-wait", "nan",
         needle=("'x' is not a valid integer", "'--worker-wait': 'nan'")),
] + [  # every job-option case of run holds for coordinator too
    Case((*c.args, "--expect-workers", "1"), c.needles) for c in RUN_CASES if c.shared
]  # fmt: skip

TEST_CASES: list[Case] = [
    case(needle="choose what to test"),
    case("--unit", "--ws-url", "ftp://x", needle="must start with ws:// or wss://"),
    case("--event", "--api-url", "localhost:9000/api", needle="is missing http:// or https://"),
    case("--load", "-c", "0", needle="num_clients must be at least 1"),
    case("--load", "-d", "nan", needle="'-d': 'nan' is not a finite number"),
    case("--load", "--interval", "inf", needle="'--interval': 'inf' is not a finite number"),
    case("--integration", "--scenario", "{d}/badstep.toml",
         needle=("step 1: unknown key 'sned'", "step 2: wait must be a number of seconds")),
    case("--integration", "--scenario", "/dev/zero", needle="larger than 1024 KiB"),
    case("--unit", "--subprotocol", "a b", needle="not a valid subprotocol token"),
    case("--unit", "--reply-timeout", "nan", needle="'--reply-timeout': 'nan' is not a finite"),
    case("--unit", "--connect-timeout", "0", needle="connect_timeout must be greater than zero"),
    case("--event", "--event-name", " ", needle="event_names: expected one or more non-empty"),
    case("--event", "--event-count", "0", needle="event_count must be at least 1"),
    case("--event", "--event-wait", "inf", needle="'--event-wait': 'inf' is not a finite number"),
    case("--load", "--workers", "0", needle="'--workers'"),
    case("--load", "--threshold", "p98<5ms", needle="unknown metric 'p98'"),
    case("--unit", "--junit", "{d}/adir", needle="is a directory"),
    case("--unit", "--json", "/nonexistent/dir/r.json", needle="no directory"),
    case("--load", "-d", "nan", "--event-wait", "inf", "--event-count", "x",
         needle=("'-d': 'nan'", "'--event-wait': 'inf'", "'x' is not a valid integer")),
]  # fmt: skip

WORKER_CASES: list[Case] = [
    case(needle="Missing option '--connect'"),
    case("--connect", "http://x", needle="--connect"),
    case("--connect", "tcp://127.0.0.1:9", "--hello-timeout", "nan",
         needle="'--hello-timeout': 'nan' is not a finite number"),
    case("--connect", "tcp://127.0.0.1:9", "--hello-timeout", "0", needle="'--hello-timeout'"),
    case("--connect", "tcp://127.0.0.1:9", "--hello-timeout", "inf", needle="'--hello-timeout'"),
    case("--connect", "tcp://127.0.0.1:9", "--processes", "0", needle="'--processes'"),
    case("--connect", "tcp://127.0.0.1:9", "--keys", "/nonexistent", needle="cannot read key"),
    case("--connect", "tcp://127.0.0.1:9", "--processes", "x", "--hello-timeout", "nan",
         needle=("'x' is not a valid integer", "'--hello-timeout': 'nan'")),
]  # fmt: skip

SERVE_CASES: list[Case] = [
    case("--port", "70000", needle="'--port'"),
    case("--host", " ", needle="'--host': must not be empty"),
    case("--delay", "nan", needle="'--delay': 'nan' is not a finite number"),
    case("--delay", "-1", needle="'--delay'"),
    case("--stall-every", "nan", needle="'--stall-every': 'nan' is not a finite number"),
    case("--stall-for", "inf", needle="'--stall-for': 'inf' is not a finite number"),
    case("--stall-for", "5", needle="--stall-for needs --stall-every"),
    case("--drop-rate", "nan", needle="'--drop-rate': 'nan' is not a finite number"),
    case("--close-after", "-1", needle="'--close-after'"),
    case("--push-every", "nan", needle="'--push-every': 'nan' is not a finite number"),
    case("--seed", "x", needle="'x' is not a valid integer"),
    case("--chat-heartbeat", "nan", needle="'--chat-heartbeat': 'nan' is not a finite number"),
    case("--chat-heartbeat", "0.5", needle="--chat-heartbeat must be 0 or at least 1 ms"),
    case("--chat-users", "{d}/adir", needle="--chat-users"),
    case("--drop-deliveries", "1.5", needle="'--drop-deliveries'"),
    case("--duplicate-deliveries", "nan",
         needle="'--duplicate-deliveries': 'nan' is not a finite number"),
    case("--delivery-delay", "-1", needle="'--delivery-delay'"),
    case("--stream-every", "0.5", needle="--stream-every must be 0 or at least 1 ms"),
    case("--chat-users", "{d}/malformed.toml", "--stall-for", "5",
         needle=("must name columns user and password", "--stall-for needs --stall-every")),
    case("--delay", "nan", "--drop-rate", "2", "--port", "-1",
         needle=("'--delay': 'nan'", "'--drop-rate'", "'--port'")),
]  # fmt: skip

KEYS_CASES: list[Case] = [
    case("generate", "{d}/keys", needle="keys already exist"),
    case("generate", needle="Missing argument 'DIRECTORY'"),
    case("rotate", needle="No such command 'rotate'"),
]  # fmt: skip

CLIENT_CASES: list[Case] = [
    case("--port", "70000", needle="'--port'"),
    case("--port", "x", needle="'x' is not a valid integer"),
]

TABLE: dict[str, list[Case]] = {
    "run": RUN_CASES,
    "coordinator": COORDINATOR_CASES,
    "test": TEST_CASES,
    "worker": WORKER_CASES,
    "serve": SERVE_CASES,
    "keys": KEYS_CASES,
    "client": CLIENT_CASES,
}

#: Options that take a value no input can make wrong, with the reason.
NO_BAD_VALUE = {
    ("run", "--payload"): "covered: a template too large for the wire",
    ("worker", "--id"): "any text names a worker",
    ("worker", "--allow-target"): "any HOST[:PORT] text is a name to compare with",
    ("client", "--ws-url"): "only filled in on the page, where the user edits it",
}

PARAMS = [
    pytest.param(command, c, id=f"{command} {' '.join(c.args)}"[:90])
    for command, cases in TABLE.items()
    for c in cases
]


def _invoke(command: str, args: tuple[str, ...], files: Path) -> tuple[int, list[str], str]:
    argv = [command, *(a.replace("{d}", str(files)) for a in args)]
    result = CliRunner().invoke(main, argv, prog_name="wsload", env=CLEAN_ENV)
    return result.exit_code, result.stderr.splitlines(), result.stdout


@pytest.mark.parametrize(("command", "bad"), PARAMS)
def test_bad_invocation_is_one_line_per_problem_and_exit_2(
    files: Path, command: str, bad: Case
) -> None:
    code, lines, out = _invoke(command, bad.args, files)
    assert code == 2, (lines, out)
    assert len(lines) == len(bad.needles), lines
    for needle in bad.needles:
        assert any(needle in line for line in lines), (needle, lines)
    assert all(line.startswith("wsload") for line in lines), lines
    assert "Traceback" not in "\n".join(lines) + out


def _commands() -> dict[str, click.Command]:
    ctx = click.Context(main)
    found = {name: main.get_command(ctx, name) for name in TABLE}
    keys = found["keys"]
    assert isinstance(keys, click.Group)
    found["keys generate"] = keys.get_command(ctx, "generate")
    return {name: cmd for name, cmd in found.items() if cmd is not None}


def test_every_option_that_takes_a_value_has_a_bad_case() -> None:
    missing = []
    for name, command in _commands().items():
        table_name = name.split()[0]
        given = {arg for c in TABLE[table_name] for arg in c.args}
        for param in command.params:
            if isinstance(param, click.Option) and (param.is_flag or param.hidden):
                continue
            opts = set(param.opts) if isinstance(param, click.Option) else set()
            if isinstance(param, click.Argument):  # covered by a case of the command
                continue
            if (table_name, param.opts[0]) in NO_BAD_VALUE or opts & given:
                continue
            missing.append(f"{name} {param.opts[0]}")
    assert not missing, f"options with no bad-value case in the table: {missing}"


def test_every_float_option_refuses_nan_and_inf() -> None:
    plain = [
        f"{name} {param.opts[0]}"
        for name, command in _commands().items()
        for param in command.params
        if isinstance(param.type, click.types.FloatParamType)
        and not isinstance(param.type, FiniteFloat)
    ]
    assert not plain, f"float options that let nan/inf through: {plain}"

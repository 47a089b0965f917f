"""Conversations through the CLI: a bad scenario is refused before anything starts, naming its
steps; a good one runs as the integration check against the reference chat server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import WSLOAD, ServerFactory, stats
from wsload.coordinator.checks_api import run_checks

URL = "ws://127.0.0.1:9/ws"  # discard port: never reached, input is refused first
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

BAD_STEPS = """\
num_clients = 3
[feeder]
file = "users.csv"
[[steps]]
send = {type = "login", user = "{usr}"}
[[steps]]
expct = {type = "ok"}
[[loop]]
send = "{tokn}"
[[loop]]
think = {uniform = [2, 1]}
"""

BAD_SCENARIOS = """\
[[scenarios]]
name = "chat"
weight = 2
[[scenarios.loop]]
send = "hi"
[[scenarios]]
name = "lurk"
wieght = 1
[[scenarios.steps]]
expect = {type = "joined"}
capture = {token = "token.0"}
[[scenarios.loop]]
send = {t = "{tokem}"}
[[scenarios.loop]]
clse = 1000
"""


def refused(*args: str) -> list[str]:
    """Run ``wsload`` expecting bad input: exit 2, one line per problem, nothing started."""
    env = {k: v for k, v in os.environ.items() if k not in ("WS_URL", "NUM_CLIENTS")}
    proc = subprocess.run(
        [WSLOAD, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "joined" not in proc.stderr  # no worker started
    assert proc.stdout == ""
    return [line.removeprefix("wsload: ") for line in proc.stderr.splitlines()]


@pytest.fixture
def bad_files(tmp_path: Path) -> Path:
    (tmp_path / "users.csv").write_text("user,password\nu1,p1\nu2,p2\n")
    (tmp_path / "steps.toml").write_text(BAD_STEPS)
    (tmp_path / "scenarios.toml").write_text(BAD_SCENARIOS)
    return tmp_path


STEP_PROBLEMS = [
    "steps: step 1: unknown variable {usr} (did you mean 'user'?)",
    "steps: step 2: unknown key 'expct' (did you mean 'expect'?)",
    "loop: step 1: unknown variable {tokn} (known: client_id, pad, password, seq, ts, user, uuid)",
    "loop: step 2: think: uniform takes [low, high] seconds, 0 <= low <= high <= 3600",
    "feeder: users.csv has 2 rows, the job has 3 clients (mode unique gives each client its "
    'own row): add rows or use mode = "cycle"',
]


def test_run_refuses_a_bad_conversation_naming_every_step(bad_files: Path) -> None:
    lines = refused("run", "--ws-url", URL, "--scenario", str(bad_files / "steps.toml"))
    assert lines == STEP_PROBLEMS


def test_the_integration_check_refuses_it_the_same_way(bad_files: Path) -> None:
    lines = refused(
        "test", "--integration", "--ws-url", URL, "--scenario", str(bad_files / "steps.toml")
    )
    assert lines == STEP_PROBLEMS[:-1]  # one client: the feeder's two rows are enough


def test_run_refuses_bad_scenarios_naming_the_scenario(bad_files: Path) -> None:
    lines = refused("run", "--ws-url", URL, "--scenario", str(bad_files / "scenarios.toml"))
    assert lines == [
        "scenarios[2] (lurk): unknown key 'wieght' (did you mean 'weight'?)",
        "scenarios[2] (lurk): loop: step 1: unknown variable {tokem} (did you mean 'token'?)",
        "scenarios[2] (lurk): loop: step 2: unknown key 'clse' (did you mean 'close'?)",
    ]


EVERYTHING = """\
num_clients = 5
thresholds = ["step.ack.p99<50", "step.x.p99<50ms", "step.a<b.c.p99<50ms"]
[feeder]
file = "users.csv"
[[steps]]
name = "login"
send = {type = "login", user = "{usr}"}
[[steps]]
name = "login"
expct = {type = "ok"}
[[steps]]
expect = {type = "ok"}
capture = {n = 2}
[[loop]]
send = "{tokn}"
[[loop]]
name = "ack"
expect_regex = 'id=(\\d+)'
capture = {id = 1, n = 2}
[[loop]]
think = {uniform = [2, 1]}
[[stages]]
duration = 5
clients = 5
[[stages]]
duration = 5
clients = 5
rate = 10
"""


def test_every_independent_problem_is_reported_in_one_pass(tmp_path: Path) -> None:
    """A malformed step hides neither the other steps' variables, a taken name, the feeder's
    row count, nor a threshold naming an unknown step; a loop step is located in its block."""
    (tmp_path / "users.csv").write_text("user,password\nu1,p1\nu2,p2\n")
    (tmp_path / "all.toml").write_text(EVERYTHING)
    lines = refused("run", "--ws-url", URL, "--scenario", str(tmp_path / "all.toml"))
    assert lines == [
        "threshold 'step.ack.p99<50': p99 needs a time unit: us, ms or s",
        "threshold 'step.a<b.c.p99<50ms': expected step.NAME.METRIC OP VALUE, e.g. "
        'step.ack.p99<50ms (quote a step name that holds < > = or ": step."a<b".p99<50ms)',
        "stages: stage 1 gives no rate while others do: give every stage a rate, or none "
        "(then the job's rate or interval applies)",
        "steps: step 1: unknown variable {usr} (did you mean 'user'?)",
        "steps: step 2: unknown key 'expct' (did you mean 'expect'?)",
        "steps: step 3: capture n: a capture path is a string, a dotted path like 'a.b.0.c' "
        "(a group number such as 2 is for expect_regex)",
        "loop: step 1: unknown variable {tokn} (known: client_id, n, pad, password, seq, ts, "
        "user, uuid)",
        "loop: step 2: capture n: the regular expression has no group 2",
        "loop: step 3: think: uniform takes [low, high] seconds, 0 <= low <= high <= 3600",
        "steps: step 2: name 'login' is taken by steps: step 1 (step names are unique; only "
        "expects of different scenarios may share one)",
        "feeder: users.csv has 2 rows, the job has 5 clients (mode unique gives each client its "
        'own row): add rows or use mode = "cycle"',
        "threshold 'step.x.p99<50ms': no step named 'x' (steps: 'ack', 'login', 'step 3')",
    ]


def test_a_bad_feeder_mode_hides_neither_its_file_nor_the_thresholds(tmp_path: Path) -> None:
    (tmp_path / "steps.toml").write_text(
        'thresholds = ["step.ack.p99<50", "step.x.p99<50ms"]\n'
        '[feeder]\nfile = "nope.csv"\nmode = "rnadom"\n'
        '[[loop]]\nsend = "{user}"\n[[loop]]\nname = "ack"\nexpect = "ok"\n'
    )
    lines = refused("run", "--ws-url", URL, "--scenario", str(tmp_path / "steps.toml"))
    assert lines == [
        f"feeder: nope.csv (looked for {tmp_path / 'nope.csv'}): CSV file not found",
        "threshold 'step.ack.p99<50': p99 needs a time unit: us, ms or s",
        "feeder: mode 'rnadom' is not one of unique, cycle, random (did you mean 'random'?)",
        "threshold 'step.x.p99<50ms': no step named 'x' (steps: 'ack')",
    ]
    # the file there: read despite the bad mode, so its columns check the steps' variables
    (tmp_path / "nope.csv").write_text("usr\nu1\n")
    lines = refused("run", "--ws-url", URL, "--scenario", str(tmp_path / "steps.toml"))
    assert lines == [
        "feeder: mode 'rnadom' is not one of unique, cycle, random (did you mean 'random'?)",
        "threshold 'step.ack.p99<50': p99 needs a time unit: us, ms or s",
        "loop: step 1: unknown variable {user} (did you mean 'usr'?)",
        "threshold 'step.x.p99<50ms': no step named 'x' (steps: 'ack')",
    ]


BAD_FANOUT = """\
num_clients = 2
[[scenarios]]
name = "sub"
[[scenarios.steps]]
send = {type = "subscribe", topic = "news"}
[scenarios.deliveries]
mtch = {type = "delivery"}
topics = ["news", "sports"]
source = "servr"
[[scenarios]]
name = "pub"
[[scenarios.loop]]
send = {type = "publish", seq = "{seq}"}
publish = {topic = "news", seq = "{ts}"}
[[scenarios.loop]]
post = {url = "ftp://127.0.0.1/publish", methd = "PUT"}
[[scenarios.loop]]
expect = {type = "ok"}
publish = {topic = "news", seq = "{seq}"}
"""


def test_run_refuses_a_bad_fanout_scenario_naming_every_problem(tmp_path: Path) -> None:
    """[scenarios.deliveries], publish and post problems, all at once, before anything starts."""
    (tmp_path / "fanout.toml").write_text(BAD_FANOUT)
    lines = refused("run", "--ws-url", URL, "--scenario", str(tmp_path / "fanout.toml"))
    assert lines == [
        "scenarios[1] (sub): deliveries: unknown key 'mtch' (did you mean 'match'?)",
        'scenarios[1] (sub): deliveries: needs seq = "dotted.path": where a delivery holds '
        "its publication number",
        'scenarios[1] (sub): deliveries: topics: several topics need topic = "dotted.path" '
        "(where a delivery says which topic it belongs to)",
        'scenarios[1] (sub): deliveries: source must be "wsload" or "server", got str '
        "'servr' (did you mean 'server'?)",
        "scenarios[1] (sub): deliveries: a subscriber needs [[scenarios.loop]]: with "
        "[[steps]] alone each iteration is a session that closes once its steps are done, "
        "before anything is delivered (a client that only listens: [[scenarios.loop]] "
        "think = 60)",
        "scenarios[2] (pub): loop: step 1: publish: seq must render to an integer: an "
        'integer, or exactly one placeholder like "{seq}": {ts} is epoch seconds, a float',
        "scenarios[2] (pub): loop: step 2: post: unknown key 'methd' (did you mean 'method'?)",
        "scenarios[2] (pub): loop: step 2: post: url 'ftp://127.0.0.1/publish' must be "
        "http:// or https:// (got ftp://)",
        "scenarios[2] (pub): loop: step 3: publish applies to send and post steps only, "
        "not to expect",
    ]


@pytest.mark.asyncio
async def test_a_conversation_runs_as_the_integration_check(serve_factory: ServerFactory) -> None:
    """examples/chat.toml once, one client: login, token captured, join, one message acked."""
    server = serve_factory()
    chat_url = server.ws_url.rsplit("/", 1)[0] + "/chat"
    summary = await run_checks(
        "integration", ws_url=chat_url, scenario=str(EXAMPLES / "chat.toml"), reply_timeout=5.0
    )
    checks = summary["checks"]
    assert isinstance(checks, list)
    assert [(c["name"], c["status"]) for c in checks] == [
        ("connect", "pass"),
        ('step 1: send {"type": "login", "user":...', "pass"),
        ("step 2: login", "pass"),
        ('step 3: send {"type": "join", "room": ...', "pass"),
        ("step 4: join", "pass"),
        ('step 5: send {"type": "msg", "id": "m{...', "pass"),
        ("step 6: ack", "pass"),
        ("step 7: think uniform 0.5-1.5 s", "pass"),
    ], checks
    assert checks[2]["reason"].startswith("matched; captured token='")
    chat = stats(server.api_url)["chat"]
    assert chat["logins"] == 1
    assert chat["joins"] == 1
    assert chat["acks"] == 1

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
    "loop: step 3: unknown variable {tokn} (known: client_id, pad, password, seq, ts, user, uuid)",
    "loop: step 4: think: uniform takes [low, high] seconds, 0 <= low <= high <= 3600",
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
        "scenarios[2] (lurk): step 2: unknown variable {tokem} (did you mean 'token'?)",
        "scenarios[2] (lurk): step 3: unknown key 'clse' (did you mean 'close'?)",
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

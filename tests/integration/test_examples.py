"""Every shipped example scenario runs, and its per-step counts equal the server's own.

Each example in ``examples/`` is run as a user runs it (``wsload run
--scenario``, a subprocess, ``--json``) against the reference server as a
subprocess, made shorter and smaller with flags (flags win over the file)
but otherwise as written. The ``/chat`` examples are checked against the
server's ``chat`` counters: logins, joins, acks and messages equal the
steps' figures, and every broadcast and heartbeat the clients read counts as
unsolicited, never as a reply. Replies get a wide ``--reply-timeout`` so a
loaded machine makes a run slower, not red.
"""

from __future__ import annotations

import json
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import WSLOAD, RunningServer, ServerFactory, stats, wait_for
from wsload.common.protocol import STEP_COUNTERS
from wsload.common.spec import build_spec
from wsload.common.workload import compile_workload, workload_problems

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RUN_TIMEOUT = 120.0
#: example -> flags that make its run short (its own settings otherwise)
SHORT = {
    "chat": ["-c", "20", "-d", "4", "--ramp-up", "1", "--workers", "2"],
    "echo": ["-c", "10", "-d", "3", "--rate", "100", "--workers", "1"],
    "churn": ["-c", "5", "-d", "3", "--interval", "0.5", "--workers", "1"],
    "mix": ["-c", "20", "-d", "4", "--ramp-up", "1", "--workers", "2"],
    "stages": ["--workers", "1"],  # its stages are the point: 20 s as written
    "fanout": ["-c", "41", "-d", "4", "--ramp-up", "1", "--workers", "2"],
    "stream": ["-c", "20", "-d", "4", "--ramp-up", "1", "--workers", "2"],
}


def run_example(
    tmp_path: Path, name: str, ws_url: str | None, *extra: str
) -> tuple[dict[str, Any], subprocess.CompletedProcess[str]]:
    out = tmp_path / f"{name}.json"
    target = ["--ws-url", ws_url] if ws_url else []
    proc = subprocess.run(
        [WSLOAD, "run", "--scenario", str(EXAMPLES / f"{name}.toml"), *target,
         "--reply-timeout", "10", *SHORT[name], *extra, "--json", str(out)],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    summary: dict[str, Any] = json.loads(out.read_text())
    return summary, proc


def url(server: RunningServer, path: str) -> str:
    return server.ws_url.removesuffix("/ws") + path


def settled(server: RunningServer, key: str) -> dict[str, Any]:
    """The server's counters once every connection of ``key`` (``chat`` or top) has closed."""

    def closed() -> bool:
        s = stats(server.api_url)
        return bool((s["chat"] if key == "chat" else s)["connections_open"] == 0)

    wait_for("the run's connections to close on the server", closed, 10)
    return stats(server.api_url)


def step_sum(summary: dict[str, Any], suffix: str, counter: str) -> int:
    """``counter`` summed over the steps named ``suffix`` (a mix may prefix its scenario)."""
    steps = summary["steps"]
    found = [s for name, s in steps.items() if name == suffix or name.endswith(f" {suffix}")]
    assert found, (suffix, list(steps))
    return sum(int(s[counter]) for s in found)


def assert_steps_balanced(summary: dict[str, Any]) -> None:
    """``expected = met + timed_out + failed + lost + unanswered`` for every step."""
    assert summary["steps"], "a conversation reports its steps"
    for name, step in summary["steps"].items():
        others = sum(int(step[k]) for k in STEP_COUNTERS if k not in ("expected",))
        assert step["expected"] == others, (name, step)
    assert summary["balanced"]


def assert_chat_agrees(summary: dict[str, Any], chat: dict[str, Any]) -> None:
    """The steps' figures are the server's: one expect per request, met once per reply."""
    assert summary["counters"]["sent"] == chat["received"]
    for step, requests, replies in (
        ("login", "logins", "logins"),
        ("join", "joins", "joins"),
        ("ack", "messages", "acks"),
    ):
        expected, met = step_sum(summary, step, "expected"), step_sum(summary, step, "met")
        assert expected == chat[requests], (step, summary["steps"], chat)
        waited_out = sum(step_sum(summary, step, k) for k in ("timed_out", "unanswered"))
        assert met <= chat[replies] <= met + waited_out, (step, summary["steps"], chat)
    assert chat["errors"] == chat["bad_token"] == chat["login_failures"] == 0
    # broadcasts and heartbeats are never replies: unsolicited, at most what the server sent
    pushed = chat["broadcasts"] + chat["heartbeats"]
    assert 0 < summary["unsolicited"] <= pushed, (summary["unsolicited"], chat)


@pytest.mark.parametrize("name", ["fanout", "stream"])
def test_fanout_examples_compile(name: str) -> None:
    """The fan-out examples are valid scenarios as written and as the runs below shorten them."""
    for clients in (None, int(SHORT[name][1])):
        spec = build_spec(scenario=str(EXAMPLES / f"{name}.toml"), num_clients=clients)
        assert workload_problems(spec) == []
        programs = compile_workload(spec).programs
        assert all(p.deliveries is not None or p.name == "publisher" for p in programs)
    if name == "fanout":
        publisher = next(p for p in programs if p.name == "publisher")
        assert publisher.clients == 1
        assert any(step.publish is not None for step in publisher.loop)
    else:
        assert [p.deliveries.source for p in programs if p.deliveries] == ["server"]


def test_fanout_publisher_reaches_the_subscribers(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    """examples/fanout.toml: 40 subscribers and one publisher, their deliveries accounted."""
    server = serve_factory("--chat-heartbeat", "0")
    summary, _ = run_example(
        tmp_path, "fanout", url(server, "/pubsub"), "--api-url", server.api_url
    )
    wait_for(
        "the run's connections to close on the server",
        lambda: stats(server.api_url)["pubsub"]["connections_open"] == 0,
        10,
    )
    did = stats(server.api_url)["pubsub"]["topics"]["news"]
    assert_steps_balanced(summary)
    assert step_sum(summary, "subscribed", "met") == 40
    news = summary["fanout"]["topics"]["news"]
    assert news["published"] == did["published"] > 0
    assert news["expected"] == news["delivered"] + news["missing"]
    assert 0 < news["delivered"] <= did["deliveries"]
    assert (news["duplicates"], news["extra"], news["out_of_order"]) == (0, 0, 0)
    assert summary["unsolicited"] == 0  # every delivery is recognised as one


def test_stream_subscribers_count_the_servers_ticks(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    """examples/stream.toml: subscribers of the server's own stream; gaps are its drops."""
    server = serve_factory("--chat-heartbeat", "0", "--stream-every", "50")
    summary, _ = run_example(tmp_path, "stream", url(server, "/pubsub"))
    assert_steps_balanced(summary)
    fanout = summary["fanout"]
    ticks = fanout["topics"]["ticks"]
    assert ticks["delivered"] > 20 * 10  # 20 subscribers, 20 ticks a second, seconds of them
    assert (ticks["missing"], ticks["duplicates"]) == (0, 0)  # the server dropped none
    assert fanout["clock"]["source"] == "server"
    assert summary["unsolicited"] == 0


#: protocol examples: each run against its real server by tests/integration/test_protocol_NAME.py
PROTOCOL_EXAMPLES = {"socketio", "graphql", "stomp", "mqtt"}


def test_every_example_has_a_test() -> None:
    for name in PROTOCOL_EXAMPLES & {p.stem for p in EXAMPLES.glob("*.toml")}:
        assert (EXAMPLES.parent / "tests" / "integration" / f"test_protocol_{name}.py").is_file()
    assert {p.stem for p in EXAMPLES.glob("*.toml")} - PROTOCOL_EXAMPLES == set(SHORT)
    assert (EXAMPLES / "users.csv").is_file()


def test_chat_two_workers_count_what_the_server_counts(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    """The issue's done-when: CSV users, login -> token -> loop of message/ack among pushes."""
    delay, stall = 0.03, 0.5
    server = serve_factory(
        "--chat-heartbeat", "200", "--delay", str(delay * 1000),
        "--stall-every", "2", "--stall-for", str(stall),
    )  # fmt: skip
    summary, _ = run_example(tmp_path, "chat", url(server, "/chat"))
    chat = settled(server, "chat")["chat"]
    assert_steps_balanced(summary)
    assert_chat_agrees(summary, chat)
    assert chat["connections"] == 20
    assert step_sum(summary, "login", "met") == 20  # one unique user each, all let in
    assert chat["heartbeats"] > 0
    # every ack waited for the delay; those sent early in a stall for most of it
    # (about 80 messages, one in eight sent in a stall's first quarter second)
    ack = summary["steps"]["ack"]["latency_percentiles"]
    assert ack["p50"] >= delay
    assert ack["max"] >= stall / 2


def test_echo_as_a_conversation(serve_factory: ServerFactory, tmp_path: Path) -> None:
    server = serve_factory()
    summary, _ = run_example(tmp_path, "echo", url(server, "/ws"))
    s = settled(server, "ws")
    assert_steps_balanced(summary)
    echo = summary["steps"]["echo"]
    assert summary["counters"]["sent"] == s["messages_received"] == echo["expected"]
    assert echo["met"] <= s["echoes_sent"] <= echo["met"] + echo["timed_out"] + echo["unanswered"]
    assert echo["met"] > 0


def test_churn_opens_a_connection_per_session(serve_factory: ServerFactory, tmp_path: Path) -> None:
    server = serve_factory("--chat-heartbeat", "0")
    summary, _ = run_example(tmp_path, "churn", url(server, "/chat"))
    chat = settled(server, "chat")["chat"]
    assert_steps_balanced(summary)
    assert summary["counters"]["sent"] == chat["received"]
    sessions = step_sum(summary, "login", "expected")
    assert sessions == chat["logins"] + chat["dropped"]
    assert sessions > 5  # more sessions than clients: each one on a fresh connection
    assert chat["connections"] >= sessions
    assert step_sum(summary, "ack", "expected") == chat["messages"]


def test_mix_splits_clients_by_weight(serve_factory: ServerFactory, tmp_path: Path) -> None:
    server = serve_factory("--chat-heartbeat", "500")
    summary, _ = run_example(tmp_path, "mix", url(server, "/chat"))
    chat = settled(server, "chat")["chat"]
    assert_steps_balanced(summary)
    assert_chat_agrees(summary, chat)
    scenarios = summary["scenarios"]
    assert (scenarios["chatters"]["clients"], scenarios["lurkers"]["clients"]) == (4, 16)
    assert step_sum(summary, "login", "met") == chat["logins"] == 20


def test_stages_spike(serve_factory: ServerFactory, tmp_path: Path) -> None:
    """The shipped spike, its stages shortened to 40 %: clients and rate follow the profile."""
    text = (EXAMPLES / "stages.toml").read_text()
    doc = tomllib.loads(text)
    scaled = tmp_path / "spike.toml"
    scaled.write_text(
        text.split("[[stages]]")[0]
        + "".join(
            f"[[stages]]\nduration = {0.4 * st['duration']:g}\nclients = {st['clients']}\n"
            f"rate = {st['rate']}\n"
            for st in doc["stages"]
        )
        + "\n".join(
            "[[loop]]\n" + "\n".join(f"{k} = {_toml(v)}" for k, v in step.items())
            for step in doc["loop"]
        )
    )
    server = serve_factory()
    out = tmp_path / "spike.json"
    started = time.monotonic()
    proc = subprocess.run(
        [WSLOAD, "run", "--scenario", str(scaled), "--ws-url", url(server, "/ws"),
         "--reply-timeout", "10", "--json", str(out)],
        capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.monotonic() - started >= 8  # the stages' total duration: 0.4 x 20 s
    summary: dict[str, Any] = json.loads(out.read_text())
    s = settled(server, "ws")
    assert_steps_balanced(summary)
    assert summary["counters"]["sent"] == s["messages_received"]
    # 0 -> 50/s over 2 s; 500/s and 200 clients from 2.8 s to 4.8 s; 50/s again from 5.6 s
    series = {point["second"]: point for point in summary["time_series"]}
    sent = {t: p["sent"] for t, p in series.items()}
    baseline = max(sent.get(t, 0) for t in range(2))
    spike = max(sent.get(t, 0) for t in (3, 4))
    after = max(sent.get(t, 0) for t in (6, 7))
    assert spike >= 4 * baseline > 0, sent
    assert spike >= 4 * after > 0, sent
    # the clients connected at the end of each second: the gauge's deltas summed
    connected, level = {}, 0
    for t in range(max(series) + 1):
        level += series.get(t, {}).get("clients_connected", 0)
        connected[t] = level
    assert connected[1] <= 25, connected
    assert connected[4] >= 150, connected
    assert connected[7] <= 40, connected
    assert s["connections_opened"] >= 200


def _toml(value: Any) -> str:
    """A scalar or inline table of the example's steps, written back as TOML."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


@pytest.mark.parametrize("example", ["chat", "echo"])
def test_demo_runs_an_example_on_the_endpoint_it_names(tmp_path: Path, example: str) -> None:
    """``wsload run --demo --scenario examples/X.toml``: no server to start, the right path."""
    summary, proc = run_example(tmp_path, example, None, "--demo", "-d", "2", "--ramp-up", "0")
    assert_steps_balanced(summary)
    note = proc.stdout.splitlines()[-1]
    assert note.startswith("  the reference server itself counted: ")
    if example == "chat":
        assert f"{step_sum(summary, 'login', 'met')} logins" in note
    assert step_sum(summary, "ack" if example == "chat" else "echo", "met") > 0


def test_demo_refuses_a_path_it_does_not_serve(tmp_path: Path) -> None:
    scenario = tmp_path / "other.toml"
    scenario.write_text('ws_url = "ws://localhost:9000/feed"\n')
    proc = subprocess.run(
        [WSLOAD, "run", "--demo", "--scenario", str(scenario), "--json", "/nonexistent/s.json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--demo serves /ws, /chat and /pubsub, not the path of ws_url '/feed'" in proc.stderr
    assert "/nonexistent" in proc.stderr  # with every other problem, before anything starts
    assert "listening" not in proc.stdout + proc.stderr

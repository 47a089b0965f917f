"""Bad input, table-driven: every case exits 2 with one line that names the problem."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import WSLOAD
from wsload.common.curve import generate

URL = "ws://127.0.0.1:9/ws"  # discard port: never reached, input is refused first


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad-input")
    (root / "malformed.toml").write_text("num_clients = = 1\n")
    (root / "unknown.toml").write_text("num_client = 3\n")
    (root / "wrongtype.toml").write_text('duration = "long"\n')
    (root / "badstep.toml").write_text('[[steps]]\nsned = "x"\n')
    (root / "adir").mkdir()
    generate(root / "keys")
    return root


CASES: list[tuple[list[str], str]] = [
    (["run", "--ws-url", "http://x/ws"], "must start with ws:// or wss://"),
    (["run", "--ws-url", "ws://"], "has no host"),
    (["run", "--ws-url", "ws://host:99999/"], "is not a valid URL"),
    (["run", "--ws-url", URL, "-c", "0"], "num_clients must be at least 1"),
    (["run", "--ws-url", URL, "-c", "-5"], "num_clients must be at least 1"),
    (["run", "--ws-url", URL, "-c", "100000000"], "num_clients must be at most"),
    (["run", "--ws-url", URL, "-c", "abc"], "'abc' is not a valid integer"),
    (["run", "--ws-url", URL, "-d", "0"], "duration must be greater than zero"),
    (["run", "--ws-url", URL, "-d", "nan"], "'nan' is not a finite number"),
    (["run", "--ws-url", URL, "-d", "inf"], "'inf' is not a finite number"),
    (["run", "--ws-url", "localhost:9000"], "'localhost:9000' is missing ws:// or wss://"),
    (["run", "--ws-url", "ws://127.0.0.1:9/ws#x"], "has a fragment (#x)"),
    (["run", "--ws-url", URL, "--scenario", "/dev/zero"], "larger than 1024 KiB"),
    (["run", "--ws-url", "wss://127.0.0.1:9/", "--ca-file", "/etc/hostname"],
     "holds no usable CA certificate"),
    (["test", "--integration", "--ws-url", URL, "--scenario", "{d}/badstep.toml"],
     "step 1: unknown key 'sned'"),
    (["run", "--ws-url", URL, "--interval", "-1"], "interval must be zero or more"),
    (["run", "--ws-url", URL, "--rate", "0"], "rate must be greater than zero"),
    (["run", "--ws-url", URL, "--ramp-up", "10", "-d", "5"], "must not exceed duration"),
    (["run", "--ws-url", URL, "--payload-size", "-1"], "payload_size must be at least 0"),
    (["run", "--ws-url", URL, "--header", "nocolon"], "is not NAME: VALUE"),
    (["run", "--ws-url", URL, "--header", "Bad Name: x"], "not a valid HTTP header name"),
    (["run", "--ws-url", URL, "--subprotocol", "a b"], "not a valid subprotocol token"),
    (["run", "--ws-url", URL, "--reply-timeout", "0"], "reply_timeout must be greater than"),
    (["run", "--ws-url", URL, "--threshold", "p98<5ms"], "unknown metric 'p98'"),
    (["run", "--ws-url", URL, "--threshold", "p99<5"], "needs a time unit"),
    (["run", "--ws-url", URL, "--threshold", "fast"], "expected METRIC OP VALUE"),
    (["run", "--ws-url", URL, "--scenario", "{d}/missing.toml"], "scenario file not found"),
    (["run", "--ws-url", URL, "--scenario", "{d}/malformed.toml"], "invalid TOML"),
    (["run", "--ws-url", URL, "--scenario", "{d}/unknown.toml"], "did you mean 'num_clients'"),
    (["run", "--ws-url", URL, "--scenario", "{d}/wrongtype.toml"], "duration: expected a number"),
    (["run", "--ws-url", URL, "--json", "/nonexistent/dir/s.json"], "no directory"),
    (["run", "--ws-url", URL, "--html", "{d}/adir"], "is a directory"),
    (["run", "--ws-url", URL, "--workers", "0"], "--workers"),
    (["run", "--ws-url", URL, "--on-worker-loss", "maybe"], "--on-worker-loss"),
    (["run", "--demo", "--ws-url", URL], "--demo starts its own target"),
    (["run", "--ws-url", URL, "--ca-file", "/nonexistent/ca.pem"], "ca_file"),
    (["run", "--ws-url", URL, "-c", "100000", "-w", "1", "-d", "1"], "clients do not fit"),
    (["run", "--ws-url", URL, "--source-address", "localhost"], "'localhost' is not an IP address"),
    (["run", "--ws-url", URL, "--source-address", "127.0.0.1,::1"], "mixes IPv4 and IPv6"),
    (["run", "--ws-url", URL, "--source-address", "192.0.2.77"],
     "cannot connect from source address 192.0.2.77"),
    (["coordinator", "--bind", "tcp://0.0.0.0:5999", "--expect-workers", "1"],
     "refusing to bind tcp://0.0.0.0:5999 without keys"),
    (["coordinator", "--bind", "udp://x:1", "--expect-workers", "1"], "expected tcp://"),
    (["coordinator", "--keys", "/nonexistent", "--expect-workers", "1"], "cannot read key"),
    (["coordinator", "--expect-workers", "0"], "--expect-workers"),
    (["coordinator", "--expect-workers", "1", "--worker-wait", "nan"], "not a finite number"),
    (["coordinator"], "Missing option '--expect-workers'"),
    (["worker", "--connect", "http://x"], "expected tcp://HOST:PORT"),
    (["worker", "--connect", "tcp://127.0.0.1:9", "--processes", "0"], "--processes"),
    (["worker", "--connect", "tcp://127.0.0.1:9", "--hello-timeout", "nan"], "not a finite number"),
    (["worker"], "Missing option '--connect'"),
    (["serve", "--port", "70000"], "--port"),
    (["serve", "--drop-rate", "2"], "--drop-rate"),
    (["test"], "choose what to test"),
    (["test", "--unit", "--ws-url", "ftp://x"], "must start with ws:// or wss://"),
    (["keys", "generate", "{d}/keys"], "keys already exist"),
    (["launch"], "No such command 'launch'"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "needle"), CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_invocation(files: Path, args: list[str], needle: str) -> None:
    argv = [a.replace("{d}", str(files)) for a in args]
    env = {k: v for k, v in os.environ.items() if k not in ("WS_URL", "NUM_CLIENTS")}
    proc = subprocess.run(
        [WSLOAD, *argv], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    # Progress lines (workers joining; on a slow machine, still waiting for them) aside.
    progress = ("wsload: worker ", "wsload: waiting for workers")
    lines = [line for line in proc.stderr.splitlines() if not line.startswith(progress)]
    assert len(lines) == 1, proc.stderr
    if "do not fit" not in needle:  # only capacity needs workers: they report their fd limits
        assert "joined" not in proc.stderr, proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    ("var", "value", "needle"),
    [
        ("NUM_CLIENTS", "ten", "NUM_CLIENTS: expected an integer, got 'ten'"),
        ("TEST_DURATION", "5s", "TEST_DURATION: expected a number, got '5s'"),
        ("MESSAGE_INTERVAL", "-1", "interval must be zero or more"),
        ("WS_URL", "localhost:9000", "is missing ws:// or wss://"),
    ],
)
def test_bad_environment(var: str, value: str, needle: str) -> None:
    env = dict(os.environ, **{var: value})
    proc = subprocess.run(
        [WSLOAD, "run", "-d", "1"], capture_output=True, text=True, timeout=60, env=env,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert needle in proc.stderr

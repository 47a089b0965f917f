"""How a run ends, end to end: it tested nothing, a threshold failed, outputs went wrong.

Real ``wsload`` processes against real sockets on 127.0.0.1. The name that
does not resolve is looked up inside a network namespace of the test's own
(only ``lo``), so no DNS query leaves the machine.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.accounting import assert_balanced
from tests.integration.conftest import WSLOAD, ServerFactory
from wsload.coordinator.load_tester import WebSocketLoadTester


def run(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WSLOAD, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port bound but not listening: every connection to it is refused (RST), no race."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_a_refused_target_fails_and_says_why_first(refusing_port: int) -> None:
    proc = run(
        "run", "--ws-url", f"ws://127.0.0.1:{refusing_port}/ws", "-c", "2", "-d", "1",
        "-w", "1", "--quiet", "--json", "-",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout)  # stdout holds the JSON and nothing else
    first = proc.stderr.splitlines()[0]  # the human summary went to stderr
    assert first.startswith("wsload: FAILED: nothing tested: no connection to ")
    assert f"127.0.0.1:{refusing_port}" in first
    assert "(refused" in first
    assert summary["nothing_tested"] in first
    assert summary["verdict"] == {"code": 1, "status": "failed", "reasons": [first[16:]]}
    assert summary["passed"] is False
    assert summary["success_rate"] is None
    assert summary["avg_latency"] is None
    assert set(summary["latency_percentiles"].values()) == {None}
    assert "p99  " in proc.stderr
    assert_balanced(summary)


def _netns_ok() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    probe = ["unshare", "-rn", "sh", "-c", "ip link set lo up"]
    return subprocess.run(probe, capture_output=True, check=False, timeout=10).returncode == 0


@pytest.mark.skipif(
    not _netns_ok(), reason="needs unshare -rn and ip (a private network namespace)"
)
def test_a_name_that_does_not_resolve_fails_and_says_why_first(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    script = (
        'ip link set lo up && exec "$0" run --ws-url ws://nonexistent.invalid:9000/ws '
        f"-c 2 -d 1 -w 1 --quiet --connect-timeout 2 --json {out}"
    )
    proc = subprocess.run(
        ["unshare", "-rn", "sh", "-c", script, WSLOAD],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("wsload: FAILED: nothing tested: no connection to ")
    assert "nonexistent.invalid:9000" in first
    assert "(dns" in first
    summary = json.loads(out.read_text())
    assert set(summary["errors"]) == {"dns"}
    assert_balanced(summary)


@pytest.mark.parametrize("where", ["flag", "scenario"])
def test_test_load_honours_thresholds(
    serve_factory: ServerFactory, tmp_path: Path, where: str
) -> None:
    server = serve_factory("--drop-rate", "0.1", "--seed", "7")
    scenario = tmp_path / "s.toml"
    scenario.write_text('thresholds = ["success_rate>=99.9"]\n')
    rule = (
        ["--threshold", "success_rate>=99.9"] if where == "flag" else ["--scenario", str(scenario)]
    )
    proc = run(
        "test", "--load", "--ws-url", server.ws_url, "-c", "4", "-d", "2", "--interval", "0.02",
        "--reply-timeout", "0.5", "-w", "1", *rule, "--json", str(tmp_path / "r.json"),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "== load: FAILED" in proc.stdout
    assert "threshold success_rate>=99.9 failed (measured " in proc.stdout
    load = json.loads((tmp_path / "r.json").read_text())["modes"]["load"]
    (verdict,) = load["thresholds"]
    assert not verdict["passed"]
    assert load["checks"][0]["status"] == "fail"
    assert_balanced(load)


def test_test_load_fails_when_it_tested_nothing(refusing_port: int) -> None:
    proc = run(
        "test", "--load", "--ws-url", f"ws://127.0.0.1:{refusing_port}/ws", "-c", "2", "-d", "1",
        "-w", "1",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "== load: FAILED" in proc.stdout
    assert "nothing tested: no connection to " in proc.stdout


def test_json_to_standard_output(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    proc = run(
        "run", "--ws-url", server.ws_url, "-c", "3", "-d", "1", "--interval", "0.05", "-w", "2",
        "--json", "-", "--threshold", "p99<5s",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["passed"] is True
    assert summary["verdict"] == {"code": 0, "status": "passed", "reasons": []}
    assert summary["parameters"]["target"] == server.ws_url
    assert summary["parameters"]["workers"] == 2
    assert summary["unsolicited"] == 0
    assert "wsload: PASSED" in proc.stderr
    assert_balanced(summary)


def _mount_ns_ok() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"]
    return subprocess.run(probe, capture_output=True, check=False, timeout=10).returncode == 0


@pytest.mark.skipif(
    not _mount_ns_ok(), reason="needs root to mount a tiny tmpfs in a private mount namespace"
)
def test_a_full_disk_keeps_the_old_file_and_the_other_outputs(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory()
    full = tmp_path / "full"
    full.mkdir()
    csv_path = tmp_path / "s.csv"
    # In its own mount namespace: a 64 KiB tmpfs, an old summary, and a filler to the brim.
    script = (
        f"mount -t tmpfs -o size=64k tmpfs {full} && echo old > {full}/s.json && "
        f"(head -c 1000000 /dev/zero > {full}/filler || true) && "
        f'"$0" run --ws-url {server.ws_url} -c 2 -d 1 -w 1 --quiet '
        f"--json {full}/s.json --csv {csv_path}; "
        f'echo "rc=$?"; cat {full}/s.json; ls -a {full}'
    )
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, WSLOAD],
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    lines = proc.stdout.splitlines()
    assert "rc=0" in lines, proc.stdout + proc.stderr  # the run passed; the write failure is told
    assert lines[lines.index("rc=0") + 1] == "old"  # never a truncated file
    assert not [n for n in lines if n.endswith(".tmp")]  # and no temporary left behind
    failures = [line for line in proc.stderr.splitlines() if "cannot write" in line]
    assert failures == [f"wsload: cannot write {full}/s.json: No space left on device"]
    assert csv_path.read_text().startswith("time,clients,")


@pytest.mark.asyncio
async def test_python_api_judges_thresholds_like_the_cli(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    tester = WebSocketLoadTester(
        server.ws_url, 2, 0.1, workers=1, thresholds=["timeouts==0", "rps>=1000000000"]
    )
    results = await tester.run_test(1.0)
    assert results["passed"] is False
    assert [t["passed"] for t in results["thresholds"]] == [True, False]
    assert results["verdict"]["reasons"][0].startswith("threshold rps>=1000000000 failed")
    assert_balanced(results)


def test_pushes_and_a_generator_bound_run_are_said(serve_factory: ServerFactory) -> None:
    """Unsolicited pushes get their own line; a rate no worker can send is called generator-bound.

    1e6 messages a second from one worker is beyond any machine's reach, so
    the run says its figures show wsload's limit, not the target's.
    """
    server = serve_factory("--push-every", "20")
    proc = run(
        "run", "--ws-url", server.ws_url, "-c", "4", "-d", "2", "-w", "1", "--rate", "1000000",
        "--json", "-",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["unsolicited"] == summary["counters"]["unsolicited"] > 0
    assert f"Unsolicited (pushed, not replies): {summary['unsolicited']} " in proc.stderr
    bound = summary["generator_bound"]
    assert bound is not None
    assert "went out behind schedule" in bound["reason"]
    assert f"GENERATOR-BOUND (the figures show wsload's limit): {bound['reason']}" in proc.stderr
    assert summary["behind_schedule"] > 0.01 * summary["total_sent"]
    assert_balanced(summary)

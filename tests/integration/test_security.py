"""CURVE keys: who may join, whom a worker trusts, how keys are written."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from common.curve import generate
from common.errors import KeyFileError
from tests.integration.conftest import ServerFactory, reap
from tests.integration.test_run import free_port, stats

WSLOAD = str(Path(sys.executable).with_name("wsload"))


def test_generated_secrets_are_private(tmp_path: Path) -> None:
    written = generate(tmp_path / "keys")
    secrets = [p for p in written if p.name.endswith("_secret")]
    assert len(secrets) == 2
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (tmp_path / "keys" / "authorized" / "worker.key").is_file()
    with pytest.raises(KeyFileError, match="keys already exist"):
        generate(tmp_path / "keys")


def _coordinator(
    endpoint: str, keys: Path, url: str, out: Path, wait: float
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [WSLOAD, "coordinator", "--bind", endpoint, "--keys", str(keys),
         "--expect-workers", "1", "--worker-wait", str(wait), "--ws-url", url,
         "--num-clients", "2", "--duration", "1", "--interval", "0.1",
         "--json", str(out), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_authorised_worker_runs(serve_factory: ServerFactory, tmp_path: Path) -> None:
    server = serve_factory()
    keys = tmp_path / "keys"
    generate(keys)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    out = tmp_path / "s.json"
    coord = _coordinator(endpoint, keys, server.ws_url, out, 20)
    worker = subprocess.Popen(
        [WSLOAD, "worker", "--connect", endpoint, "--keys", str(keys), "--once"]
    )
    try:
        _, err = coord.communicate(timeout=40)
        assert coord.returncode == 0, err
        assert (
            json.loads(out.read_text())["total_sent"] == stats(server.api_url)["messages_received"]
        )
        assert worker.wait(timeout=15) == 0
    finally:
        reap(coord, worker)


def test_worker_without_an_authorised_key_cannot_join(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory()
    keys, other = tmp_path / "keys", tmp_path / "other"
    generate(keys)
    generate(other)  # a different fleet: its worker key is not authorised
    (other / "coordinator.key").write_text((keys / "coordinator.key").read_text())
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    coord = _coordinator(endpoint, keys, server.ws_url, tmp_path / "s.json", 4)
    intruder = subprocess.Popen(
        [WSLOAD, "worker", "--connect", endpoint, "--keys", str(other), "--once",
         "--hello-timeout", "6"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _, err = coord.communicate(timeout=30)
        assert coord.returncode == 2
        assert "only 0 of 1 workers joined" in err
        assert intruder.wait(timeout=20) == 2
        assert stats(server.api_url)["connections_opened"] == 0
    finally:
        reap(coord, intruder)


def test_worker_refuses_a_coordinator_with_the_wrong_key(
    serve_factory: ServerFactory, tmp_path: Path
) -> None:
    server = serve_factory()
    keys, impostor = tmp_path / "keys", tmp_path / "impostor"
    generate(keys)
    generate(impostor)
    # The impostor coordinator authorises the real worker key but has its own pair.
    (impostor / "authorized" / "worker.key").write_text((keys / "worker.key").read_text())
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    coord = _coordinator(endpoint, impostor, server.ws_url, tmp_path / "s.json", 4)
    worker = subprocess.Popen(
        [WSLOAD, "worker", "--connect", endpoint, "--keys", str(keys), "--once",
         "--hello-timeout", "6"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _, err = coord.communicate(timeout=30)
        assert coord.returncode == 2, err
        assert worker.wait(timeout=20) == 2
        assert stats(server.api_url)["connections_opened"] == 0
    finally:
        reap(coord, worker)


def test_missing_key_directory_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [WSLOAD, "worker", "--connect", "tcp://127.0.0.1:5999", "--keys", str(tmp_path / "no")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "cannot read key" in proc.stderr


@pytest.mark.parametrize(
    ("allowed", "runs"),
    [(["10.9.9.9:80"], False), (["127.0.0.1"], True), (["127.0.0.1:{port}"], True)],
)
def test_allow_target_restricts_what_a_worker_loads(
    serve_factory: ServerFactory, tmp_path: Path, allowed: list[str], runs: bool
) -> None:
    server = serve_factory()
    port = server.ws_url.split(":")[2].split("/")[0]
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    out = tmp_path / "s.json"
    coord = subprocess.Popen(
        [WSLOAD, "coordinator", "--bind", endpoint, "--expect-workers", "1",
         "--ws-url", server.ws_url, "-c", "2", "-d", "1", "--interval", "0.1",
         "--json", str(out), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    rules = [arg for rule in allowed for arg in ("--allow-target", rule.format(port=port))]
    worker = subprocess.Popen([WSLOAD, "worker", "--connect", endpoint, "--once", *rules])
    try:
        _, err = coord.communicate(timeout=40)
        summary = json.loads(out.read_text())
        if runs:
            assert coord.returncode == 0, err
            assert summary["total_sent"] == stats(server.api_url)["messages_received"] > 0
        else:
            assert coord.returncode == 2  # could not run: the fleet refuses that target
            assert "is not in --allow-target (10.9.9.9:80)" in summary["aborted"]
            assert stats(server.api_url)["connections_opened"] == 0
            assert summary["lost_workers"] == []
        assert worker.wait(timeout=15) == 0
    finally:
        reap(coord, worker)

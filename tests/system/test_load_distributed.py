"""`make load-distributed` (deploy/load-distributed.sh): refused inputs, quoting, a real run.

The first tests need nothing special: the script runs with recording stand-ins
for ``ssh`` and ``wsload`` first on PATH, to show that hostile settings stop it
before anything runs and that what it sends to a remote shell comes back out of
``sh`` and ``bash`` as exactly the words meant. The system tests run the real
thing: sshd (Debian's openssh-server) on two namespace hosts with a throwaway
key pair and known_hosts, ``make load-distributed`` on a third, the reference
server on a fourth; they need root, iproute2 and sshd, and skip saying so.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.system.netns import NEEDS_NETNS, WSLOAD, Lab, lab_of, start_target, target_stats

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "load-distributed.sh"
SSHD = "/usr/sbin/sshd"
# A key directory name that breaks any unquoted use, locally or on the remote shell.
HOSTILE_DIR = "keys 'q' \"d\" `touch PWNED`;$(touch PWNED) *"

RECORDER = """#!/bin/sh
printf '%s\\0' "$@" > "$RECORD/$(basename "$0").$$"
"""


@pytest.fixture
def shims(tmp_path: Path) -> dict[str, str]:
    """Environment with ``ssh`` and ``wsload`` replaced by argv recorders writing to RECORD."""
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    for name in ("ssh", "wsload", "remote-wsload"):
        (bin_dir / name).write_text(RECORDER)
        (bin_dir / name).chmod(0o755)
    return {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "RECORD": str(record),
        "HOSTS": "load1 root@load2",
        "COORDINATOR": "10.0.0.5",
        "WORKERS_PER_HOST": "2",
    }


def run_script(env: dict[str, str], *extra: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *extra], env=env, cwd=cwd, capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip


def recorded(env: dict[str, str], name: str) -> list[list[str]]:
    """The argv of every call of the stand-in ``name``."""
    files = sorted(Path(env["RECORD"]).glob(f"{name}.*"))
    return [f.read_bytes().decode().split("\0")[:-1] for f in files]


HOSTILE = [
    ({"COORDINATOR": "10.0.0.5;touch PWNED"}, "COORDINATOR"),
    ({"COORDINATOR": "$(touch PWNED)"}, "COORDINATOR"),
    ({"WORKERS_PER_HOST": "a[$(touch PWNED)]"}, "WORKERS_PER_HOST"),
    ({"WORKERS_PER_HOST": "0"}, "WORKERS_PER_HOST"),
    ({"WORKERS_PER_HOST": "1e3"}, "WORKERS_PER_HOST"),
    ({"WORKERS_PER_HOST": "99999999999999999999"}, "WORKERS_PER_HOST"),
    ({"PORT": "5555 -oProxyCommand=touch"}, "PORT"),
    ({"HELLO_TIMEOUT": "nan"}, "HELLO_TIMEOUT"),
    ({"HOSTS": "load1 -oProxyCommand=touch_PWNED"}, "HOSTS"),
    ({"HOSTS": "load1 `touch${IFS}PWNED`"}, "HOSTS"),
    ({"HOSTS": "x;y@load1"}, "HOSTS"),
    ({"HOSTS": "load1\n-oProxyCommand=touch_PWNED"}, "HOSTS"),  # a second line is read too
    ({"HOSTS": ""}, "HOSTS"),
    ({"REMOTE_WSLOAD": "-oops"}, "REMOTE_WSLOAD"),
    ({"ARGS": "--header 'Authorization: Bearer x"}, "ARGS: unmatched single quote"),
    ({"ARGS": "--bind tcp://0.0.0.0:1"}, "ARGS: --bind"),
    ({"ARGS": "--insecure"}, "ARGS: --insecure"),
]


@pytest.mark.parametrize(("settings", "named"), HOSTILE)
def test_hostile_setting_is_refused_before_anything_runs(
    shims: dict[str, str], tmp_path: Path, settings: dict[str, str], named: str
) -> None:
    result = run_script({**shims, **settings}, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"load-distributed: {named}")
    assert result.stderr.count("\n") == 1, result.stderr
    assert not list(Path(shims["RECORD"]).iterdir())  # neither ssh nor wsload ran
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "keys").exists()


def test_every_problem_is_reported_at_once(shims: dict[str, str], tmp_path: Path) -> None:
    bad = {"HOSTS": "-x", "COORDINATOR": "a b", "WORKERS_PER_HOST": "$((1))", "PORT": "0"}
    result = run_script({**shims, **bad}, cwd=tmp_path)
    assert result.returncode == 2
    named = [line.split()[1] for line in result.stderr.splitlines()]
    assert named == ["HOSTS:", "COORDINATOR:", "WORKERS_PER_HOST", "PORT"]
    assert not list(Path(shims["RECORD"]).iterdir())


def test_remote_command_and_coordinator_arguments_keep_their_words(
    shims: dict[str, str], tmp_path: Path
) -> None:
    keys = tmp_path / HOSTILE_DIR
    keys.mkdir()
    (keys / "coordinator.key_secret").touch()  # so that the script does not generate keys
    remote_wsload = str(Path(shims["PATH"].split(":")[0]) / "remote-wsload")
    env = {
        **shims,
        "KEYS": str(keys),
        "REMOTE_WSLOAD": remote_wsload,
        "ARGS": """--ws-url ws://svc:9000/ws --header 'Authorization: Bearer x' """
        """--payload "{\\"id\\": \\"{seq}\\", \\"v\\": '\\$HOME'}" -c 10""",
    }
    result = run_script(env, "--", "--json", "out file.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    [coordinator] = recorded(env, "wsload")
    assert coordinator == [
        "coordinator", "--bind", "tcp://0.0.0.0:5555", "--keys", str(keys),
        "--expect-workers", "4", "--ws-url", "ws://svc:9000/ws",
        "--header", "Authorization: Bearer x",
        "--payload", """{"id": "{seq}", "v": '$HOME'}""", "-c", "10",
        "--json", "out file.json",
    ]  # fmt: skip
    sessions = recorded(env, "ssh")
    assert sorted(argv[-2] for argv in sessions) == ["load1", "root@load2"]
    worker = [
        "worker", "--connect", "tcp://10.0.0.5:5555", "--keys", str(keys),
        "--processes", "2", "--once", "--hello-timeout", "120",
    ]  # fmt: skip
    for argv in sessions:
        assert argv[-3] == "--"  # a host can never be read as an ssh option
        remote = argv[-1]
        for shell in ("sh", "bash"):  # what a remote login shell makes of it
            for f in Path(env["RECORD"]).glob("remote-wsload.*"):
                f.unlink()
            subprocess.run([shell, "-c", remote], env=env, cwd=tmp_path, check=True, timeout=10)
            assert recorded(env, "remote-wsload") == [worker]
    assert not (tmp_path / "PWNED").exists()


# --- the real thing: sshd in network namespaces -------------------------------------------


@dataclass
class SshLab:
    lab: Lab
    tmp: Path
    ssh_config: Path
    sshd_pids: list[int]


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process, from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # ended meanwhile
        table[int(entry.name)] = (int(stat.rpartition(")")[2].split()[1]), cmdline)
    return table


def leftovers(ssh_lab: SshLab, marker: str) -> list[str]:
    """Processes still running under the sshd daemons, or naming ``marker``."""
    table = process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = set(), list(ssh_lab.sshd_pids)
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    found |= {pid for pid, (_, cmd) in table.items() if marker in cmd and pid != os.getpid()}
    return [f"{pid}: {table[pid][1]}" for pid in sorted(found) if pid in table]


def wait_until_gone(ssh_lab: SshLab, marker: str, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := leftovers(ssh_lab, marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def start_sshd(lab: Lab, tmp: Path, name: str) -> int:
    """sshd on host ``name``, root by key only; returns its pid once it listens."""
    config, log = tmp / f"sshd-{name}.conf", tmp / f"sshd-{name}.log"
    config.write_text(
        f"ListenAddress {lab.addresses[name]}:22\n"
        f"HostKey {tmp}/host_key\n"
        f"AuthorizedKeysFile {tmp}/id.pub\n"
        "PidFile none\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPrintMotd no\n"
    )
    sshd = lab.popen(name, SSHD, "-D", "-f", str(config), "-E", str(log))
    deadline = time.monotonic() + 20
    while "Server listening" not in (log.read_text() if log.exists() else ""):
        if sshd.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"sshd on {name} did not start: {log.read_text() if log.exists() else ''}")
        time.sleep(0.05)
    return sshd.pid


@pytest.fixture(scope="module")
def ssh_lab() -> Iterator[SshLab]:
    """Hosts target, coord, h1, h2; sshd on h1 and h2; an ssh config naming them h1, h2."""
    if not os.path.exists(SSHD) or shutil.which("ssh") is None:
        pytest.skip("needs Debian's openssh-server (sshd) and ssh: `make sshd` installs them")
    shadow = Path("/etc/shadow").read_text() if os.access("/etc/shadow", os.R_OK) else ""
    if any(line.startswith("root:!") for line in shadow.splitlines()):
        pytest.skip("root's account is locked ('!' in /etc/shadow): sshd refuses its key logins")
    with (
        tempfile.TemporaryDirectory(prefix="wsload-ssh-") as tmp_name,
        contextlib.contextmanager(lab_of)(["target", "coord", "h1", "h2"]) as lab,
    ):
        tmp = Path(tmp_name)
        sshd_pids: list[int] = []
        try:
            for key in ("host_key", "id"):
                subprocess.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / key)],
                    check=True, timeout=30,
                )  # fmt: skip
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
            host_key = (tmp / "host_key.pub").read_text().split()
            known, config = [], ["Host *", "  User root", f"  IdentityFile {tmp}/id"]
            config += ["  IdentitiesOnly yes", f"  UserKnownHostsFile {tmp}/known_hosts"]
            config += ["  GlobalKnownHostsFile /dev/null", "  StrictHostKeyChecking yes"]
            config += ["  CheckHostIP no", "  UpdateHostKeys no", "  LogLevel ERROR"]
            for name in ("h1", "h2"):
                address = lab.addresses[name]
                known.append(f"{name},{address} {host_key[0]} {host_key[1]}")
                config[:0] = [f"Host {name}", f"  HostName {address}"]
                sshd_pids.append(start_sshd(lab, tmp, name))
            start_target(lab)
            (tmp / "known_hosts").write_text("\n".join(known) + "\n")
            (tmp / "ssh_config").write_text("\n".join(config) + "\n")
            yield SshLab(lab, tmp, tmp / "ssh_config", sshd_pids)
        finally:
            for line in leftovers(SshLab(lab, tmp, tmp, sshd_pids), tmp_name):
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(line.split(":")[0]), signal.SIGKILL)
            # lab_of's close stops the sshd daemons and removes the namespaces


def reset_target(lab: Lab) -> None:
    """Zero the reference server's counters: each test counts its own run."""
    url = f"http://{lab.addresses['target']}:9000/api/stats/reset"
    code = f"import urllib.request; urllib.request.urlopen(urllib.request.Request({url!r}, b''))"
    lab.run("target", sys.executable, "-c", code)
    assert target_stats(lab)["connections_open"] == 0


# The script's settings and an enclosing make's flags: none may leak in from the test's caller.
OWN_ENV = {
    *("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "HOSTS", "COORDINATOR", "WORKERS_PER_HOST", "PORT"),
    *("KEYS", "REMOTE_KEYS", "WSLOAD", "REMOTE_WSLOAD", "HELLO_TIMEOUT", "SSH_CONFIG", "ARGS"),
}
MAKE_ENV = {name: value for name, value in os.environ.items() if name not in OWN_ENV}


def make_command(ssh_lab: SshLab, keys: Path, args: str, hosts: str = "h1 h2") -> list[str]:
    addr = ssh_lab.lab.addresses
    return [
        "ip", "netns", "exec", ssh_lab.lab.ns("coord"),
        "make", "-s", "-C", str(REPO), "-o", ".venv/.installed", "load-distributed",
        f"HOSTS={hosts}", "WORKERS_PER_HOST=1", f"COORDINATOR={addr['coord']}",
        f"KEYS={keys}", f"REMOTE_WSLOAD={WSLOAD}", f"SSH_CONFIG={ssh_lab.ssh_config}",
        "HELLO_TIMEOUT=30",
        f"ARGS=--ws-url ws://{addr['target']}:9000/ws --worker-wait 30 --interval 0.05 "
        f"--header 'Authorization: Bearer x' {args}",
    ]  # fmt: skip


@NEEDS_NETNS
@pytest.mark.system
@pytest.mark.timeout(60)
def test_make_load_distributed_over_ssh(ssh_lab: SshLab) -> None:
    reset_target(ssh_lab.lab)
    keys = ssh_lab.tmp / "run1" / "keys 'n' `x`;y"  # no $: make would expand it
    out = ssh_lab.tmp / "run1" / "summary.json"
    keys.parent.mkdir()
    make = subprocess.run(
        make_command(ssh_lab, keys, f"-c 10 -d 3 --json {out} --quiet"),
        capture_output=True, text=True, timeout=50, check=False, env=MAKE_ENV,
    )  # fmt: skip
    assert make.returncode == 0, make.stdout + make.stderr
    summary = json.loads(out.read_text())
    stats = target_stats(ssh_lab.lab)
    assert len(summary["workers"]) == 2  # one from each host
    assert all(worker["sent"] > 0 for worker in summary["workers"].values())
    assert summary["total_sent"] == stats["messages_received"] > 0
    assert summary["total_received"] == stats["messages_sent"]
    assert summary["balanced"]
    assert stats["connections_opened"] == 10
    assert stats["connections_open"] == 0
    assert wait_until_gone(ssh_lab, str(keys), timeout=10) == []


@NEEDS_NETNS
@pytest.mark.system
@pytest.mark.timeout(60)
def test_sigterm_ends_the_run_and_every_remote_worker(ssh_lab: SshLab) -> None:
    keys = ssh_lab.tmp / "run2" / "keys"
    keys.parent.mkdir()
    make = subprocess.Popen(
        make_command(ssh_lab, keys, "-c 2 -d 30 --quiet"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env=MAKE_ENV,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        marker = f"worker --connect tcp://{ssh_lab.lab.addresses['coord']}:5555 --keys {keys}"
        while sum(marker in cmd for _, cmd in process_table().values()) < 2:
            assert make.poll() is None, make.communicate()[0]
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.1)
        while target_stats(ssh_lab.lab)["connections_open"] < 2:  # the run is on
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.1)
        os.killpg(make.pid, signal.SIGTERM)  # what `timeout` does to the group
        output, _ = make.communicate(timeout=30)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
    assert make.returncode != 0, output
    assert wait_until_gone(ssh_lab, str(keys), timeout=15) == []

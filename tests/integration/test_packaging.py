"""Install as a user would: the README's commands, make dist, pipx, make image, the action.

The wheel is built by ``make dist`` (python -m build, then twine check --strict)
in a copy of the checkout, so the test neither writes into the checkout nor
races another build, then installed by ``pipx install ./dist/wsload-*.whl``
exactly as the README writes it, into a PIPX_HOME and PIPX_BIN_DIR of the
test's own (dependencies come from the package index, as on a user's machine),
and the installed ``wsload`` runs from a directory outside the checkout. One
test does all of it (about a minute, mostly pip), so no two test processes
build the same wheel at once.

Beside it: ``make image`` where no engine can build (one line, exit 1), the
action's load step run by bash, and the Kubernetes base's worker and
coordinator containers run here as processes, with their own args and keys.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import yaml

from tests.accounting import assert_balanced
from tests.integration.conftest import WSLOAD, ServerFactory, reap, stats, wait_for
from tests.integration.test_run import free_port
from tests.unit.test_deploy import BASE, by_kind, environment, expand, pod, pod_keys, render
from wsload.common.curve import generate

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def readme_install_commands() -> list[str]:
    """The commands of the README's install section, comments stripped."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Install for your own use\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_installs_with_the_commands_tested_here() -> None:
    """A README command this file does not run would be one that may fail as written."""
    assert readme_install_commands() == [
        "make dist",
        "pipx install ./dist/wsload-*.whl",
        "wsload --version",
    ]
    assert "pipx install wsload" not in (ROOT / "README.md").read_text(), "not published yet"


def checkout_copy(dest: Path) -> Path:
    """The checkout's files as git sees them (tracked, or new and not ignored), links kept."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source, target = ROOT / name, dest / name
        if not source.is_symlink() and not source.exists():
            continue  # deleted in the work tree, not yet committed
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    return dest


def package_data(tree: Path) -> set[str]:
    """The non-Python files the wheel must carry, as wsload/... paths."""
    coordinator = tree / "coordinator"
    found = [*coordinator.glob("*.html"), *coordinator.glob("scripts/*.sh")]
    found += [p for p in coordinator.glob("report_page/*") if p.is_file()]
    return {f"wsload/coordinator/{p.relative_to(coordinator)}" for p in found}


@pytest.mark.timeout(420)
def test_make_dist_builds_a_wheel_pipx_installs_and_runs(tmp_path: Path) -> None:
    source = checkout_copy(tmp_path / "checkout")
    # `make dist`, with this venv's tools (no .venv in the copy: STAMP is not rebuilt)
    subprocess.run(
        ["make", "--no-print-directory", "dist", f"BIN={VENV_BIN}", "STAMP="],
        cwd=source,
        check=True,
        timeout=240,
        capture_output=True,
    )
    dist = source / "dist"
    wheel, sdist = dist / f"wsload-{VERSION}-py3-none-any.whl", dist / f"wsload-{VERSION}.tar.gz"
    assert sorted(dist.iterdir()) == sorted([wheel, sdist])

    wanted = package_data(source)
    assert "wsload/coordinator/console.html" in wanted
    names = set(zipfile.ZipFile(wheel).namelist())
    assert wanted <= names, f"missing from the wheel: {wanted - names}"
    assert {n.split("/")[0] for n in names} == {"wsload", f"wsload-{VERSION}.dist-info"}
    with tarfile.open(sdist) as tar:
        in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert wanted <= in_sdist, f"missing from the sdist: {wanted - in_sdist}"

    # `pipx install ./dist/wsload-*.whl`, as the README writes it
    pipx = {
        "PIPX_HOME": str(tmp_path / "pipx"),
        "PIPX_BIN_DIR": str(tmp_path / "bin"),
        "PIPX_MAN_DIR": str(tmp_path / "man"),
        "USE_EMOJI": "0",
    }
    env = {**os.environ, **pipx, "PATH": f"{tmp_path / 'bin'}:{VENV_BIN}:{os.environ['PATH']}"}
    subprocess.run(
        ["bash", "-c", readme_install_commands()[1]],
        cwd=source,
        env=env,
        check=True,
        timeout=300,
        capture_output=True,
    )
    installed = tmp_path / "bin" / "wsload"
    assert installed.exists()
    elsewhere = tmp_path / "elsewhere"  # nothing of the checkout on the path
    elsewhere.mkdir()
    version = subprocess.run(
        ["bash", "-c", readme_install_commands()[2]],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert version.stdout.strip() == f"wsload {VERSION}"
    python = tmp_path / "pipx" / "venvs" / "wsload" / "bin" / "python"
    where = subprocess.run(
        [str(python), "-c", "import wsload; print(wsload.__file__)"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert where.stdout.startswith(str(tmp_path / "pipx")), where.stdout

    run = subprocess.run(
        [str(installed), "run", "--demo", "--workers", "1", "-c", "2", "-d", "1",
         "--interval", "0.1", "--json", "summary.json", "--quiet"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads((elsewhere / "summary.json").read_text())
    assert summary["total_sent"] > 0
    assert summary["total_received"] == summary["total_sent"]


def bin_with(tmp_path: Path, tools: list[str]) -> str:
    """A PATH of one folder holding links to ``tools`` (and no container engine)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in tools:
        found = shutil.which(tool)
        if found:
            (folder / tool).symlink_to(found)
    return str(folder)


@pytest.mark.parametrize("with_docker_client", [False, True], ids=["nothing", "docker-client"])
def test_make_image_without_an_engine_says_why_in_one_line(
    tmp_path: Path, with_docker_client: bool
) -> None:
    tools = ["bash", "env", "timeout", "sed", "head", "dirname"]
    if with_docker_client:
        docker = shutil.which("docker")
        if docker is None:
            pytest.skip("no docker client here")
        if subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode == 0:
            pytest.skip("a Docker engine runs here: make image would build")
        tools.append("docker")
    result = subprocess.run(
        [str(ROOT / "deploy" / "image.sh")],
        env={"PATH": bin_with(tmp_path, tools)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("make image: no container engine can build here: ")
    assert "podman is not installed" in lines[0]
    if with_docker_client:
        assert "no Docker engine answers" in lines[0]
    else:
        assert "docker is not installed" in lines[0]


def test_make_image_checks_the_engine_before_building_anything() -> None:
    recipe = subprocess.run(
        ["make", "-n", "--no-print-directory", "image", "STAMP="],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert recipe[0] == "deploy/image.sh --check"
    assert recipe[-1] == "deploy/image.sh wsload:latest"


def action_step(name: str) -> dict[str, Any]:
    spec = yaml.safe_load((ROOT / "action.yml").read_text())
    (step,) = [s for s in spec["runs"]["steps"] if s.get("name") == name]
    return step  # type: ignore[no-any-return]


def substitute_inputs(value: str, inputs: dict[str, str]) -> str:
    """GitHub's ${{ inputs.NAME }} expressions, the only kind the action's env uses."""
    out = re.sub(r"\$\{\{\s*inputs\.(\w+)\s*\}\}", lambda m: inputs[m.group(1)], value)
    assert "${{" not in out, value
    return out


@pytest.mark.timeout(120)
def test_action_smoke_load_step_runs_and_writes_junit(tmp_path: Path) -> None:
    """The action's load step, run by bash as the runner would (against --demo, wsload
    from this venv as the install step would put it on PATH): every threshold line
    reaches wsload, a failed one fails the step, and the JUnit report is there."""
    spec = yaml.safe_load((ROOT / "action.yml").read_text())
    inputs = {name: str(i.get("default", "")) for name, i in spec["inputs"].items()}
    inputs.update(
        ws_url="",
        clients="2",
        duration="1",
        interval="0.1",
        workers="1",
        thresholds=inputs["thresholds"] + "rps>=1000000000\n\n",
        junit="report/junit.xml",
    )
    (tmp_path / "report").mkdir()
    step = action_step("Smoke load")
    env = {name: substitute_inputs(value, inputs) for name, value in step["env"].items()}
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", step["run"]],  # GitHub's bash shell options
        cwd=tmp_path,
        env={**os.environ, **env, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    cases = ElementTree.parse(tmp_path / "report" / "junit.xml").getroot().iter("testcase")
    verdicts = {case.get("name"): case.find("failure") is None for case in cases}
    thresholds = [t for t in inputs["thresholds"].splitlines() if t.strip()]
    assert len(thresholds) == 4
    assert sum(1 for name in verdicts if any(t in str(name) for t in thresholds)) == 4, verdicts
    assert [name for name, ok in verdicts.items() if not ok] == [
        name for name in verdicts if "rps" in str(name)
    ]


def on_loopback(args: list[str], port: int, keys: Path) -> list[str]:
    """A container's args as a process here runs them: the pod network's addresses
    become 127.0.0.1:port (nothing binds beyond loopback), /keys the pod's key folder."""
    swap = {
        "tcp://*:5555": f"tcp://127.0.0.1:{port}",
        "tcp://wsload-coordinator:5555": f"tcp://127.0.0.1:{port}",
        "/keys": str(keys),
    }
    assert set(swap) <= set(args) | {"tcp://*:5555", "tcp://wsload-coordinator:5555"}
    return [swap.get(arg, arg) for arg in args]


RUNS = 2
OVER = "run over; waiting for the next coordinator"


@pytest.mark.timeout(150)
def test_the_base_pods_serve_run_after_run(serve_factory: ServerFactory, tmp_path: Path) -> None:
    """The kustomize base's worker and coordinator, run here as processes with their
    containers' own args and environment, each with the keys its init container
    copies: the one long-lived worker serves one coordinator Job after another, with
    CURVE on (the keys the Secrets hold), and every message sent is answered."""
    server = serve_factory()
    objects = render(BASE)
    kinds = by_kind(objects)
    generate(tmp_path / "generated")  # `wsload keys generate keys`
    _, worker_keys = pod_keys(kinds["Deployment"], tmp_path / "generated", tmp_path / "worker")
    _, job_keys = pod_keys(kinds["Job"], tmp_path / "generated", tmp_path / "job")
    port = free_port()
    (worker_container,) = pod(kinds["Deployment"])["containers"]
    (job_container,) = pod(kinds["Job"])["containers"]
    # the ConfigMap as an overlay would set it for one replica, against the test server
    env = environment(job_container, objects) | {
        "WS_URL": server.ws_url,
        "NUM_CLIENTS": "3",
        "TEST_DURATION": "1",
        "MESSAGE_INTERVAL": "0.05",
        "EXPECT_WORKERS": "1",
    }
    worker_err = tmp_path / "worker.err"  # a file, never a pipe nobody reads
    with worker_err.open("wb") as err_file:
        worker = subprocess.Popen(
            [WSLOAD, *on_loopback(worker_container["args"], port, worker_keys)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err_file,
        )
    try:
        for run in range(RUNS):
            out = tmp_path / f"run{run}.json"
            args = on_loopback(expand(job_container["args"], env), port, job_keys)
            job = subprocess.run(
                [WSLOAD, *args, "--json", str(out), "--quiet"],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=90,
            )
            assert job.returncode == 0, f"run {run}: {job.stderr}"
            summary = json.loads(out.read_text())
            assert len(summary["workers"]) == 1
            assert_balanced(summary)
            assert summary["total_sent"] > 0
            assert summary["total_received"] == summary["total_sent"]
            assert worker.poll() is None, f"the worker exited after run {run}"
        assert stats(server.api_url)["messages_received"] >= 2 * RUNS
        # said as the worker goes back to waiting, just after its answer to the bye
        wait_for("the last run's end said", lambda: worker_err.read_text().count(OVER) == RUNS, 10)
    finally:
        if worker.poll() is None:
            worker.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(timeout=15)
        reap(worker)
    err = worker_err.read_text()
    assert err.count(OVER) == RUNS, err
    assert "Traceback" not in err

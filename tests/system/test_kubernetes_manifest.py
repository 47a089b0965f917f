"""deploy/kubernetes/wsload.yaml stays in step with the CLI it starts.

Kubernetes cannot run here, so this reads the manifest's two commands and
checks what would otherwise only fail in a cluster: every option exists, the
coordinator uses keys, the worker Deployment's workers are long-lived (with
``--once`` each pod would exit, and be restarted, after every run) and the
coordinator waits for as many workers as the Deployment has replicas.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from wsload.coordinator.cli import main

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "wsload.yaml"


def commands() -> dict[str, list[str]]:
    """The containers' commands (flow-style lists, JSON as written), by wsload subcommand."""
    found = [json.loads(m) for m in re.findall(r"command: (\[.*?\])", MANIFEST.read_text(), re.S)]
    return {command[1]: command for command in found}


def test_manifest_commands_use_existing_options() -> None:
    found = commands()
    assert set(found) == {"coordinator", "worker"}
    for name, command in found.items():
        assert command[0] == "wsload"
        sub = main.get_command(click.Context(main), name)
        assert sub is not None, name
        known = {opt for param in sub.params for opt in param.opts}
        assert {arg for arg in command[2:] if arg.startswith("-")} <= known, name


def test_workers_are_long_lived_and_the_coordinator_uses_keys() -> None:
    found = commands()
    worker, coordinator = found["worker"], found["coordinator"]
    assert "--once" not in worker
    assert "--hello-timeout" not in worker  # a worker waits for the next coordinator
    assert "--keys" in worker
    assert "--keys" in coordinator
    assert "--insecure" not in coordinator
    replicas = re.search(r"name: wsload-worker\nspec:\n  replicas: (\d+)", MANIFEST.read_text())
    assert replicas is not None
    expect = coordinator[coordinator.index("--expect-workers") + 1]
    assert expect == replicas.group(1)

"""The original framework's entry point: ``./scripts/websocket_test.py`` runs ``wsload test``.

Its users' CI jobs call the script with the original flags and environment
variables; those must keep working unchanged, whichever ``python3`` is first
on their PATH (here: one that cannot import wsload, as on a CI runner where
wsload lives in a virtual environment).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import ServerFactory

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "websocket_test.py"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin") or "python3"
    return subprocess.run(
        [python, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.timeout(120)
def test_the_original_flags_run_wsload_test(serve_factory: ServerFactory) -> None:
    server = serve_factory()
    proc = _run("--unit", "--integration", "--ws-url", server.ws_url, "--api-url", server.api_url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "== unit: PASSED" in proc.stdout
    assert "== integration: PASSED" in proc.stdout


@pytest.mark.timeout(120)
def test_the_original_environment_variables_still_configure_it(
    serve_factory: ServerFactory,
) -> None:
    server = serve_factory()
    proc = _run(
        "--load",
        env={"WS_URL": server.ws_url, "NUM_CLIENTS": "3", "TEST_DURATION": "1",
             "MESSAGE_INTERVAL": "0.1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "== load: PASSED" in proc.stdout


def test_help_and_bad_flags_behave_as_wsload_test() -> None:
    help_text = _run("--help")
    assert help_text.returncode == 0
    assert help_text.stdout.startswith("Usage: wsload test")
    for flag in ("--all", "--unit", "--integration", "--load", "--event", "--client", "--bash"):
        assert flag in help_text.stdout
    bad = _run("--num-clients", "zero")
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr

"""The CLI group: version, help, and one-line errors with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from wsload.common import __version__
from wsload.coordinator.cli import main

WSLOAD = str(Path(sys.executable).with_name("wsload"))


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"wsload {__version__}"


def test_help_lists_serve() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "serve" in result.output


def test_unknown_command_is_one_line_exit_2() -> None:
    proc = subprocess.run(
        [WSLOAD, "launch-missiles"], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "No such command 'launch-missiles'" in lines[0]
    assert "Traceback" not in proc.stderr


def test_bad_option_value_is_one_line_exit_2() -> None:
    proc = subprocess.run(
        [WSLOAD, "serve", "--port", "notaport"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("wsload serve: ")
    assert "--port" in lines[0]


def test_bare_wsload_and_bare_keys_print_the_normal_help_exit_0() -> None:
    for args, first in (([], "Usage: wsload [OPTIONS] COMMAND"), (["keys"], "Usage: wsload keys")):
        proc = subprocess.run(
            [WSLOAD, *args], capture_output=True, text=True, timeout=30, check=False
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == ""
        lines = proc.stdout.splitlines()
        assert lines[0].startswith(first)
        assert len(lines) > 5  # the help as click lays it out, not squashed on one line
        assert "Commands:" in lines


def test_worker_help_says_it_serves_run_after_run() -> None:
    result = CliRunner().invoke(main, ["worker", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "run after run, until stopped" in text
    assert "--once exits after one session" in text

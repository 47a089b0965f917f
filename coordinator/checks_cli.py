"""``wsload test``: the original framework's one script for every kind of test.

``wsload test --all`` runs the unit battery, the integration scenario, a load
run and the event test in turn, each as a job of the coordinator (one worker
for the checks, ``--workers`` for the load), and exits 1 if any of them
failed, 2 if one could not run.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import click
import uvloop

from wsload.common.params import OneStageCommand, job_options
from wsload.common.spec import JobSpec, Mode, build_spec
from wsload.common.validation import display_url
from wsload.coordinator.console import serve_console
from wsload.coordinator.event_job import event_job
from wsload.coordinator.event_mode import EventOutcome, run_event
from wsload.coordinator.loadrun import run_load
from wsload.coordinator.outputs import (
    STDOUT,
    Output,
    check_writable,
    json_text,
    junit_text,
    write_all,
)
from wsload.coordinator.report import format_checks, format_summary
from wsload.coordinator.runner import run_session
from wsload.coordinator.session import RunOutcome, SessionOptions
from wsload.coordinator.summary import RunSummary

MODES = (Mode.UNIT, Mode.INTEGRATION, Mode.LOAD, Mode.EVENT)


@click.command("test", cls=OneStageCommand)
@click.option("--all", "run_all", is_flag=True, help="Run unit, integration, load and event tests.")
@click.option("--unit", is_flag=True, help="Conformance battery against --ws-url.")
@click.option(
    "--integration", is_flag=True, help="Scripted conversation (--scenario, or a JSON round trip)."
)
@click.option("--load", is_flag=True, help="A load run through the coordinator.")
@click.option(
    "--event", is_flag=True, help="Trigger events over --api-url, count them on --ws-url."
)
@click.option(
    "--bash", "run_bash", is_flag=True, help="Shell smoke check: curl handshake, round trip."
)
@click.option(
    "--client", "open_client", is_flag=True, help="Open the browser console (wsload client)."
)
@job_options("test")
@click.option(
    "--scenario", type=click.Path(dir_okay=False), help="TOML scenario: settings and [[steps]]."
)
@click.option(
    "--workers",
    "-w",
    type=click.IntRange(1, 512),
    help="Worker processes for --load (default: cores).",
)
@click.option(
    "--junit",
    "junit_path",
    type=click.Path(dir_okay=False),
    help="Write every check as a JUnit test case (for CI systems).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Write every mode's results as JSON (- for standard output).",
)
def test(
    run_all: bool,
    unit: bool,
    integration: bool,
    load: bool,
    event: bool,
    open_client: bool,
    run_bash: bool,
    json_path: str | None,
    junit_path: str | None,
    workers: int | None,
    **fields: Any,
) -> None:
    """Test a WebSocket service: does it work (unit, integration, event), does it hold (load)?

    \b
    Examples:
      wsload test --all --ws-url ws://localhost:9000/ws --api-url http://localhost:9000/api
      wsload test --unit --integration --load --num-clients 10 --duration 30 --interval 0.2
      wsload test --integration --scenario checkout.toml
      wsload test --bash --ws-url ws://localhost:9000/ws     # curl handshake + round trip
      wsload test --client                                  # the browser console
    """
    check_writable(json_path, junit_path)
    to_stderr = STDOUT in (json_path, junit_path)  # stdout carries the document then

    def echo(text: str) -> None:
        click.echo(text, err=to_stderr)

    base = {k: v for k, v in fields.items() if v not in (None, ())}
    ws_url = build_spec(env=os.environ, ws_url=base.get("ws_url")).ws_url
    if open_client:
        raise SystemExit(asyncio.run(serve_console(ws_url, 0, open_browser=True)))
    chosen = [m for m, on in zip(MODES, (unit, integration, load, event), strict=True) if on]
    if run_all:
        chosen = list(MODES)
    if not chosen and not run_bash:
        raise click.UsageError(
            "choose what to test: --all, --unit, --integration, --load, --event, --bash, --client"
        )
    failed: list[str] = []
    if run_bash:
        echo(f"== bash: {ws_url}")
        if _smoke_script(ws_url, to_stderr) != 0:
            failed.append("bash")
    scenario = base.pop("scenario", None)
    if base.get("thresholds"):
        base["thresholds"] = tuple(base["thresholds"])
    specs = [build_spec(scenario=scenario, env=os.environ, **base, mode=m.value) for m in chosen]
    for spec in specs:
        if spec.mode is Mode.EVENT:
            event_job(spec)  # its workload compiles: bad input ends here, before any run
    results: dict[str, Any] = {}
    for spec in specs:
        if spec.mode is Mode.LOAD:
            # The same library call and verdict as wsload run: thresholds, "tested nothing".
            summary = _run_load(spec, workers, to_stderr, scenario)
            echo(format_summary(summary))
            ok = summary.passed
            figures = summary.figures
            reason = "; ".join(summary.verdict.reasons) or (
                f"{figures.total_received} of {figures.total_sent} answered"
            )
            document = summary.to_json()
            document["checks"] = [
                {"name": "load run", "status": "pass" if ok else "fail", "reason": reason,
                 "duration": figures.elapsed}
            ]  # fmt: skip
            interrupted = summary.ending.interrupted
        else:
            outcome = _run(spec, to_stderr)
            document = outcome.summary()
            echo(format_checks(document))
            ok = bool(document["ok"]) and not outcome.aborted
            interrupted = outcome.interrupted
        results[spec.mode.value] = document
        echo(f"== {spec.mode.value}: {'PASSED' if ok else 'FAILED'}\n")
        if not ok:
            failed.append(spec.mode.value)
        if interrupted:
            break
    outputs = []
    if json_path:
        outputs.append(Output(json_path, lambda: json_text({"modes": results})))
    if junit_path:
        outputs.append(Output(junit_path, lambda: junit_text(results)))
    for failure in write_all(outputs):
        click.echo(f"wsload: {failure}", err=True)
    if failed:
        click.echo(f"failed: {', '.join(failed)}", err=True)
        sys.exit(1)


def _smoke_script(ws_url: str, to_stderr: bool) -> int:
    """Run the shipped shell smoke check; its exit code (its output on stderr if asked)."""
    script = files("wsload.coordinator").joinpath("scripts/ws_smoke.sh")
    env = dict(os.environ, WSLOAD=str(Path(sys.executable).with_name("wsload")))
    out = sys.stderr if to_stderr else None
    return subprocess.run(
        ["bash", str(script), ws_url], env=env, check=False, stdout=out
    ).returncode


def _announce(spec: JobSpec, to_stderr: bool) -> None:
    api = f" (api {spec.api_url})" if spec.mode is Mode.EVENT else ""
    click.echo(f"== {spec.mode.value}: {display_url(spec.ws_url)}{api}", err=to_stderr)


def _log(text: str) -> None:
    if "joined" not in text:
        click.echo(f"wsload: {text}", err=True)


def _run(spec: JobSpec, to_stderr: bool) -> RunOutcome | EventOutcome:
    """A functional mode: one local worker (the event mode: a load job of it, judged)."""
    _announce(spec, to_stderr)
    options = SessionOptions(expect_workers=1)
    if spec.mode is Mode.EVENT:
        return uvloop.run(run_event(spec, options=options, on_log=_log))
    return uvloop.run(run_session(spec, local_workers=1, options=options, on_log=_log))


def _run_load(
    spec: JobSpec, workers: int | None, to_stderr: bool, scenario: str | None
) -> RunSummary:
    """The load mode, judged as ``wsload run`` judges it (:func:`run_load`)."""
    _announce(spec, to_stderr)
    local = workers or len(os.sched_getaffinity(0))
    options = SessionOptions(expect_workers=local)
    run = run_load(spec, local_workers=local, options=options, on_log=_log, scenario=scenario)
    return uvloop.run(run)

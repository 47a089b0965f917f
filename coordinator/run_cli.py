"""``wsload run`` (single host) and ``wsload coordinator`` (workers elsewhere).

Both take the original framework's load flags and environment variables
(``--ws-url``/``WS_URL``, ``--num-clients``/``NUM_CLIENTS``,
``--duration``/``TEST_DURATION``, ``--interval``/``MESSAGE_INTERVAL``) plus
wsload's own. Exit codes (decided by :func:`wsload.coordinator.verdict.judge`): 0
the run passed, 1 it failed (a threshold, or it tested nothing) or degraded
(a worker was lost), 2 it could not run, 130 interrupted (143 by SIGTERM).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click
import uvloop

from wsload.common.curve import coordinator_keys
from wsload.common.endpoint import bind_problem
from wsload.common.errors import KeyFileError, SpecError, WsloadError
from wsload.common.params import POSITIVE_SECONDS, OneStageCommand, job_flags, job_options
from wsload.common.spec import JobSpec, build_spec
from wsload.common.validation import unbindable_address
from wsload.coordinator.demo import DemoServer, demo_path_problem
from wsload.coordinator.figures import RunProgress
from wsload.coordinator.loadrun import run_load
from wsload.coordinator.metrics_cli import METRICS_KEYS, metrics_cli_options, metrics_options
from wsload.coordinator.metrics_http import metrics_problems
from wsload.coordinator.outputs import (
    STDOUT,
    Output,
    check_writable,
    csv_text,
    json_text,
    junit_text,
    write_all,
)
from wsload.coordinator.report import LiveView, format_summary, live_lines, progress_line
from wsload.coordinator.runner import Interrupted
from wsload.coordinator.session import LOCAL_START_DELAY, SessionOptions
from wsload.coordinator.summary import RunSummary

EXIT_DEGRADED = 1
EXIT_COULD_NOT_RUN = 2
EXIT_INTERRUPTED = 130

F = Callable[..., Any]


def _load_options(func: F) -> F:
    """The options shared by ``run`` and ``coordinator`` (outermost first).

    The job's own come from the field declarations (:func:`wsload.common.params.job_options`);
    the others are about the run: its file, outputs and policies.
    """
    options = [
        job_options("run"),
        click.option(
            "--scenario",
            type=click.Path(dir_okay=False),
            help="A scenario file (TOML, at most 1 MiB): job settings (flags win), steps, "
            "[[scenarios]], protocol = socketio/graphql/stomp/mqtt (see README: Protocols "
            "over WebSocket).",
        ),
        click.option(
            "--json",
            "json_path",
            type=click.Path(dir_okay=False, writable=True, allow_dash=True),
            help="Write the summary as JSON here (- for standard output; the human summary "
            "then goes to stderr).",
        ),
        click.option(
            "--csv",
            "csv_path",
            type=click.Path(dir_okay=False, allow_dash=True),
            help="Write one row per second as it happened (time, wall clock, clients, sent, "
            "received, rates, timeouts, losses, reconnects, errors by kind, p50/p95/p99; "
            "- for standard output).",
        ),
        click.option(
            "--junit",
            "junit_path",
            type=click.Path(dir_okay=False),
            help="Write thresholds as JUnit test cases (for CI systems).",
        ),
        click.option(
            "--abort-on-fail",
            is_flag=True,
            help="Stop the run as soon as a threshold can no longer pass (timeouts==0, errors<N).",
        ),
        click.option(
            "--html",
            "html_path",
            type=click.Path(dir_okay=False),
            help="Write the run's interactive report: the --dashboard page, frozen on the final "
            "figures (one self-contained file, works offline).",
        ),
        click.option(
            "--dashboard",
            is_flag=True,
            help="Serve a live page of the run on 127.0.0.1 (its address is printed), updated "
            "every second; it stops with the run, the page keeping the final report.",
        ),
        click.option(
            "--dashboard-port",
            type=click.IntRange(0, 65535),
            default=0,
            show_default=True,
            help="The --dashboard page's port on 127.0.0.1 (0: any free one).",
        ),
        click.option(
            "--hdr",
            "hdr_path",
            type=click.Path(dir_okay=False),
            help="Write per-second latency histograms in the HdrHistogram log format (.hlog).",
        ),
        *metrics_cli_options(),
        click.option("--quiet", "-q", is_flag=True, help="No progress lines, only the summary."),
        click.option(
            "--on-worker-loss",
            type=click.Choice(["rebalance", "continue", "abort"]),
            default="rebalance",
            show_default=True,
            help="What a lost worker does to the run: rebalance hands its clients to the other "
            "workers (ramped over 1 s; at once when its process exited, else after its 5 s "
            "dead-man stop, so no client runs twice), continue runs on without them, abort "
            "stops the run. Either way the exit code is 1.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _spec(params: dict[str, Any]) -> JobSpec:
    """The job spec of the options, or :class:`SpecError` naming every problem at once."""
    flags, problems = job_flags(params)
    try:
        spec = build_spec(scenario=params.get("scenario"), env=os.environ, **flags)
    except SpecError as exc:
        problems += exc.problems
    if problems:
        raise SpecError(problems)
    return spec


def _split(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate the job's fields from the run's own options, and validate both.

    Every problem of the job and of the report paths is raised at once
    (:class:`SpecError`), before anything starts: no worker, no demo server.
    """
    reports = ("json_path", "csv_path", "junit_path", "hdr_path", "html_path")
    run_keys = [*reports, "quiet", "on_worker_loss", "workers", "abort_on_fail", "demo"]
    run_keys += ["bind", "expect_workers", "insecure", "worker_wait", "keys_dir", "elastic"]
    run_keys += ["dashboard", "dashboard_port", *METRICS_KEYS]
    run = {k: params.pop(k) for k in run_keys if k in params}
    run["scenario"] = params.get("scenario")  # kept in params too: the job is read from it
    problems: list[str] = []
    for key in reports:
        try:
            check_writable(run.get(key))
        except WsloadError as exc:
            problems.append(str(exc))
    try:
        spec = _spec(dict(params))  # built again once the demo target, if any, is known
    except SpecError as exc:
        problems += exc.problems
    else:
        unbindable = unbindable_address(spec.source_addresses) if "workers" in run else None
        if unbindable:  # wsload run: its workers connect from this host
            problems.append(f"--source-address: {unbindable}")
        demo_path = demo_path_problem(spec.ws_url) if run.get("demo") else None
        # --demo loads the scenario's /ws, /chat or /pubsub
        if demo_path and not params.get("ws_url"):
            problems.append(demo_path)
    problems += metrics_problems(metrics_options(run))
    if run.get("demo") and params.get("ws_url"):
        problems.append("--demo starts its own target: drop --ws-url (or --demo)")
    if run.get("bind"):  # wsload coordinator: its endpoint and keys too, in the same go
        try:
            if run.get("keys_dir"):
                coordinator_keys(run["keys_dir"])
        except KeyFileError as exc:
            problems.append(str(exc))
        problems += _check_bind(run["bind"], bool(run.get("keys_dir")), bool(run.get("insecure")))
    if problems:
        raise SpecError(problems)
    return params, run


def _job_problems(params: dict[str, Any]) -> list[str]:
    """What :func:`_split` finds in the options that converted (the bad ones None).

    :class:`wsload.common.params.OneStageCommand` adds these lines to the options
    click refused, so ``-d nan -c 0`` names both problems in one go.
    """
    try:
        _split(dict(params))
    except SpecError as exc:
        return exc.problems
    except WsloadError as exc:
        return [str(exc)]
    return []


def _finish(spec: JobSpec, summary: RunSummary, run: dict[str, Any], note: str = "") -> None:
    """Print the summary, write every output asked for, exit with the verdict's code.

    Every output renders from the one :class:`~wsload.coordinator.summary.RunSummary`
    (:func:`wsload.coordinator.loadrun.run_load`); the code is its verdict's (0
    passed, 1 failed or degraded, 2 could not run, 130 interrupted). An
    output that cannot be written is reported on one line on stderr and does
    not change it; with ``--json -`` or ``--csv -`` the human summary goes to stderr.
    """
    to_stderr = STDOUT in (run.get(k) for k in ("json_path", "csv_path", "junit_path",
                                                "hdr_path", "html_path"))  # fmt: skip
    click.echo(format_summary(summary), err=to_stderr)
    if note:
        click.echo(note, err=to_stderr)

    def html() -> str:
        from wsload.coordinator.html_report import render

        return render(summary)

    renderers: dict[str, Callable[[], str]] = {
        "json_path": lambda: json_text(summary),
        "csv_path": lambda: csv_text(summary.figures),
        "junit_path": lambda: junit_text({"load": summary}),
        "hdr_path": lambda: summary.figures.hdr_log,
        "html_path": html,
    }
    outputs = [Output(run[k], render) for k, render in renderers.items() if run.get(k)]
    for failure in write_all(outputs):
        click.echo(f"wsload: {failure}", err=True)
    if summary.verdict.code:
        sys.exit(summary.verdict.code)


def _execute(spec: JobSpec, run: dict[str, Any], local: int, opts: SessionOptions) -> RunSummary:
    """Run the job through the library call every entry point uses, with progress on stderr."""
    quiet = run.get("quiet", False)

    def log(text: str) -> None:
        if not quiet:
            click.echo(f"wsload: {text}", err=True)

    live = LiveView(lambda text: click.echo(text, err=True, nl=False))
    tty = sys.stderr.isatty()

    def progress(snapshot: RunProgress) -> None:
        if not quiet and tty:  # one screen redrawn each second; plain lines for logs and CI
            live.draw(live_lines(snapshot, spec.duration, spec.num_clients))
        elif not quiet:
            click.echo(progress_line(snapshot, spec.duration), err=True)

    def load(on_live: Callable[[Callable[[], RunSummary]], None] | None = None) -> Any:
        return run_load(spec, local_workers=local, options=opts,
                        abort_on_fail=bool(run.get("abort_on_fail")), on_log=log,
                        on_progress=progress, scenario=run.get("scenario"),
                        on_live=on_live, metrics=metrics_options(run))  # fmt: skip

    def address(url: str) -> None:
        click.echo(f"wsload: dashboard at {url}", err=True)

    try:
        if run.get("dashboard"):
            from wsload.coordinator.dashboard import run_with_dashboard

            return uvloop.run(
                run_with_dashboard(load, port=run.get("dashboard_port") or 0, on_address=address)
            )
        summary: RunSummary = uvloop.run(load())
        return summary
    except Interrupted as exc:  # a second signal, or one before the run began: no report
        click.echo(f"wsload: {exc.reason}", err=True)
        sys.exit(exc.exit_code)


@click.command(cls=OneStageCommand, validate=_job_problems)
@_load_options
@click.option(
    "--workers",
    "-w",
    type=click.IntRange(1, 512),
    default=None,
    help="Local worker processes (default: the number of cores).",
)
@click.option(
    "--demo", is_flag=True, help="Start the reference test server and load it (no target needed)."
)
def run(**params: Any) -> None:
    """Run a load test on this machine: coordinator plus local worker processes.

    \b
    Examples:
      wsload run --demo
      wsload run --demo --scenario examples/chat.toml   (the demo serves /ws, /chat and /pubsub)
      wsload run --ws-url ws://localhost:9000/ws --num-clients 100 --duration 30 --interval 0.2
      WS_URL=ws://svc:9000/ws wsload run --rate 5000 --workers 2 --json out.json

    Ctrl-C or SIGTERM stops sending, drains, and still reports and writes every
    output (exit 130, or 143 for SIGTERM); a second one quits at once. Exit 0
    passed, 1 failed or degraded, 2 could not run.
    """
    job, run_opts = _split(params)
    workers = run_opts["workers"] or len(os.sched_getaffinity(0))
    with DemoServer.maybe(run_opts["demo"], job) as demo:
        if demo is not None:  # the endpoint the job names (a scenario's /chat), on the demo
            job["ws_url"] = demo.url_for(_spec(job).ws_url)
            job["api_url"] = demo.api_url  # and its HTTP API, for post steps
        spec = _spec(job)
        problem = unbindable_address(spec.source_addresses)  # the workers run on this host
        if problem:
            raise click.BadParameter(problem, param_hint="--source-address")
        opts = SessionOptions(
            endpoint="tcp://127.0.0.1:*",
            expect_workers=workers,
            start_delay=LOCAL_START_DELAY,
            on_worker_loss=run_opts["on_worker_loss"],
        )
        outcome = _execute(spec, run_opts, workers, opts)
        note = ""
        if demo is not None:
            # The demo's point: wsload's figures agree with the target's own counters.
            note = demo.note(spec.ws_url)
    _finish(spec, outcome, run_opts, note)


@click.command(cls=OneStageCommand, validate=_job_problems)
@_load_options
@click.option(
    "--bind",
    default="tcp://127.0.0.1:5555",
    show_default=True,
    help="ZeroMQ endpoint workers connect to: tcp://HOST:PORT (HOST an IP address, localhost, "
    "or * for every interface; PORT 1..65535, or * for any free one) or ipc://PATH. One that "
    "is not loopback needs --keys or --insecure.",
)
@click.option(
    "--expect-workers",
    type=click.IntRange(1, 10_000),
    required=True,
    help="Workers to wait for before starting.",
)
@click.option(
    "--worker-wait",
    type=POSITIVE_SECONDS,
    default=60.0,
    show_default=True,
    help="Seconds to wait for them.",
)
@click.option(
    "--keys",
    "keys_dir",
    type=click.Path(file_okay=False),
    help="CURVE key directory (wsload keys generate): encrypt and admit authorised workers only.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help=(
        "Allow a non-loopback --bind without keys: anyone who reaches the port "
        "can aim load anywhere."
    ),
)
@click.option(
    "--elastic",
    is_flag=True,
    help="Admit workers beyond --expect-workers, also mid-run: one that joins takes the "
    "clients nobody runs (a lost worker's), never clients from a live worker.",
)
def coordinator(**params: Any) -> None:
    """Coordinate workers started elsewhere with `wsload worker --connect ENDPOINT`."""
    job, run_opts = _split(params)
    keys, problems = None, []
    try:
        keys = coordinator_keys(run_opts["keys_dir"]) if run_opts["keys_dir"] else None
    except KeyFileError as exc:
        problems.append(str(exc))
    problems += _check_bind(run_opts["bind"], bool(run_opts["keys_dir"]), run_opts["insecure"])
    if problems:  # one line each, before anything binds
        raise SpecError(problems)
    spec = _spec(job)
    opts = SessionOptions(
        curve=keys,
        insecure=run_opts["insecure"],
        endpoint=run_opts["bind"],
        expect_workers=run_opts["expect_workers"],
        worker_wait=run_opts["worker_wait"],
        on_worker_loss=run_opts["on_worker_loss"],
        elastic=run_opts["elastic"],
    )
    _finish(spec, _execute(spec, run_opts, 0, opts), run_opts)


def _check_bind(endpoint: str, keys: bool, insecure: bool) -> list[str]:
    """Safe by default: an endpoint ZeroMQ would read as non-loopback needs keys."""
    problem = bind_problem(endpoint, keys=keys, insecure=insecure)
    return [f"--bind {problem}" if problem.startswith("'") else problem] if problem else []

"""``wsload worker``: serve a coordinator's jobs from this machine.

Kept in the worker package and loaded by the ``wsload`` group only when this
command runs, so a worker host never imports the coordinator's code paths.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import click
import uvloop

from wsload.common.curve import CurveKeys, keys_pipe, read_handoff, worker_keys
from wsload.common.endpoint import EndpointError, parse_endpoint
from wsload.common.errors import KeyFileError, SpecError
from wsload.common.params import POSITIVE_SECONDS, OneStageCommand
from wsload.worker.agent import Agent, AgentOptions
from wsload.worker.gcpolicy import tune_collector
from wsload.worker.identity import new_worker_id


@click.command(cls=OneStageCommand)
@click.option(
    "--connect",
    "endpoint",
    required=True,
    metavar="ENDPOINT",
    help="The coordinator's ZeroMQ endpoint: tcp://HOST:PORT (e.g. tcp://10.0.0.5:5555), "
    "tcp://SOURCE_IP:*;HOST:PORT to connect from a given address, or ipc://PATH.",
)
@click.option(
    "--processes",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Worker processes to start on this machine (one event loop each; use one per core).",
)
@click.option(
    "--once",
    is_flag=True,
    help="Exit after one coordinator session. Without it the worker serves run after run "
    "until stopped.",
)
@click.option("--id", "worker_id", default="", help="Worker id (default: host-pid-random).")
@click.option(
    "--keys",
    "keys_dir",
    type=click.Path(file_okay=False),
    help="CURVE key directory: encrypt, and accept only the coordinator whose key it holds.",
)
@click.option(
    "--keys-fd",
    type=click.IntRange(3, None),
    default=None,
    hidden=True,  # how `wsload run` hands its local workers the run's keys
    help="Read this run's CURVE keys from this inherited file descriptor (then close it): "
    "how wsload run hands its local workers a per-run key pair without putting a "
    "secret on the command line.",
)
@click.option(
    "--allow-target",
    "allowed_targets",
    multiple=True,
    metavar="HOST[:PORT]",
    help="Only run jobs aimed at these targets (repeatable); others are refused.",
)
@click.option(
    "--hello-timeout",
    type=POSITIVE_SECONDS,
    default=None,
    help="Give up (exit 2) if no coordinator answers within this many seconds.",
)
def worker(
    endpoint: str,
    processes: int,
    once: bool,
    worker_id: str,
    keys_dir: str | None,
    keys_fd: int | None,
    allowed_targets: tuple[str, ...],
    hello_timeout: float | None,
) -> None:
    """Run load for a coordinator: connect to it, take jobs, stream samples back.

    \b
    A worker is long-lived: when a run ends it waits for the next coordinator
    at the same endpoint, run after run, until stopped (Ctrl-C, SIGTERM);
    --once exits after one session instead.
    \b
    Exit codes: 0 done, 2 bad input or refused (wrong keys, another protocol
    version, no coordinator within --hello-timeout), 3 the coordinator went
    silent and the load would not stop within its grace period (the process
    exits so that every connection closes), 130 interrupted.
    """
    problems: list[str] = []
    try:
        parse_endpoint(endpoint, bind=False)
    except EndpointError as exc:
        problems.append(f"--connect {exc}")
    keys = None
    try:
        if keys_dir and keys_fd is not None:
            problems.append("--keys and --keys-fd: give one of them")
        elif keys_fd is not None:
            keys = read_handoff(keys_fd)
        elif keys_dir:
            keys = worker_keys(keys_dir)
    except KeyFileError as exc:
        problems.append(str(exc))
    if problems:
        raise SpecError(problems)
    if processes > 1:
        extra = ["--keys", keys_dir] if keys_dir else []
        extra += [arg for target in allowed_targets for arg in ("--allow-target", target)]
        piped = keys if keys_fd is not None else None
        sys.exit(_run_many(endpoint, processes, once, worker_id, hello_timeout, extra, piped))
    options = AgentOptions(
        endpoint=endpoint,
        worker_id=worker_id or new_worker_id(),
        once=once,
        hello_timeout=hello_timeout,
        configure=keys.apply_client if keys else None,
        allowed_targets=allowed_targets,
    )
    tune_collector()  # thousands of connections: see worker.gcpolicy
    try:
        sys.exit(uvloop.run(Agent(options).serve()))
    except KeyboardInterrupt:
        sys.exit(130)


def _run_many(
    endpoint: str,
    n: int,
    once: bool,
    worker_id: str,
    hello_timeout: float | None,
    extra: list[str],
    piped: CurveKeys | None = None,
) -> int:
    """Start ``n`` single-process workers and wait for all of them.

    Keys read from ``--keys-fd`` (``piped``) go on to each through a pipe of
    its own, as they came: never on a command line.
    """
    base = worker_id or new_worker_id()
    procs: list[subprocess.Popen[bytes]] = []
    # SIGTERM (systemd, Kubernetes, kill) ends the parent through the finally
    # below, which stops every child: by default it would die alone and leave
    # its workers loading on.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        for i in range(n):
            cmd = [
                sys.executable,
                "-P",
                "-m",
                "wsload.worker",
                "--connect",
                endpoint,
                "--id",
                f"{base}-{i}",
            ]
            cmd += extra
            if once:
                cmd.append("--once")
            if hello_timeout is not None:
                cmd += ["--hello-timeout", str(hello_timeout)]
            if piped is None:
                procs.append(subprocess.Popen(cmd))
                continue
            with keys_pipe(piped) as fd:
                procs.append(subprocess.Popen([*cmd, "--keys-fd", str(fd)], pass_fds=(fd,)))
        codes = [p.wait() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait()
    return max(codes)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)

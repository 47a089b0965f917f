"""A load run, judged: the library call behind ``wsload run``, ``test --load`` and the API.

:func:`run_load` runs a job (:func:`wsload.coordinator.runner.run_session`), stops
it early when ``abort_on_fail`` and a threshold can no longer pass, and
:func:`conclude` turns the outcome into the run's one
:class:`~wsload.coordinator.summary.RunSummary` (figures, how it ended, its
parameters, the verdict). Every entry point goes through these two, so they
agree on thresholds, "tested nothing" and the exit code
(``summary.verdict.code``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from wsload.common import __version__
from wsload.common.spec import JobSpec
from wsload.common.stages import Profile, parse_stages
from wsload.common.validation import display_url, redact_headers
from wsload.coordinator.aggregate import RunAggregate
from wsload.coordinator.figures import RunProgress, frozen_map
from wsload.coordinator.metrics_http import MetricsOut
from wsload.coordinator.metrics_options import MetricsOptions
from wsload.coordinator.runner import run_session
from wsload.coordinator.session import RunOutcome, SessionOptions
from wsload.coordinator.step_aggregate import workload_names
from wsload.coordinator.summary import Handover, RunEnding, RunParameters, RunSummary
from wsload.coordinator.verdict import doomed, judge, target_name


def parameters(
    spec: JobSpec, workers: int, started_at: float, scenario: str | None = None
) -> RunParameters:
    """The run's parameters as the summary shows them; no secret is ever printed.

    The target's credentials show as ``***`` (the spec normally holds none:
    they become an ``Authorization`` header when it is built), and so do the
    values of ``Authorization``, ``Cookie`` and the like. ``scenario``: the
    scenario file the job was read from, as given. A conversation's feeder
    (its file, mode and rows: never the rows themselves), stages (how many,
    their total duration and peak of clients) and scenarios (names and
    clients) come from the spec.
    """
    _steps, names, clients = workload_names(spec)
    return RunParameters(
        target=display_url(spec.ws_url),
        clients=spec.num_clients,
        rate=spec.rate,
        interval=None if spec.rate else spec.interval,
        duration=spec.duration,
        ramp_up=spec.ramp_up,
        engine=spec.client_engine,
        match=spec.match,
        workers=workers,
        headers=tuple((str(k), str(v)) for k, v in redact_headers(spec.headers)),
        started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_at)),
        wsload_version=__version__,
        scenario=None if scenario is None else str(scenario),
        feeder=_feeder(spec),
        stages=_stages(spec),
        scenarios=tuple((name, clients.get(name)) for name in names),
        started_at_unix=round(started_at, 6),
        connect_timeout=spec.connect_timeout,
        reply_timeout=spec.reply_timeout,
        drain_timeout=spec.drain_timeout,
        payload_size=spec.payload_size,
        reconnect=spec.reconnect,
        compression=spec.compression,
        protocol=_protocol(spec),
        thresholds=tuple(spec.thresholds),
    )


def _protocol(spec: JobSpec) -> str | None:
    """The conversation's protocol by name (``{name = "graphql", legacy = true}``: graphql)."""
    proto = spec.protocol
    name = proto.get("name") if isinstance(proto, dict) else proto
    return None if name is None else str(name)


def _feeder(spec: JobSpec) -> Mapping[str, Any] | None:
    """The feeder in brief: its file, its mode and how many rows the file has."""
    feeder = spec.feeder
    if not feeder:
        return None
    return frozen_map(
        {"file": feeder.get("file"), "mode": feeder.get("mode"), "rows": feeder.get("total")}
    )


def _stages(spec: JobSpec) -> Mapping[str, Any] | None:
    """``[[stages]]`` in brief: how many, their total duration, their peak of clients."""
    if not spec.stages:
        return None
    stages, problems = parse_stages(spec.stages)
    if problems or not stages:
        return frozen_map({"count": len(spec.stages), "duration": None, "peak_clients": None})
    profile = Profile(stages)
    return frozen_map(
        {"count": len(stages), "duration": profile.duration, "peak_clients": profile.peak_clients}
    )


def ending(outcome: RunOutcome) -> RunEnding:
    """How the run ended, as a frozen value."""
    return RunEnding(
        bad_input=frozen_map(outcome.bad_input),
        lost_workers=tuple(outcome.lost_workers),
        aborted=outcome.aborted,
        interrupted=outcome.interrupted,
        interrupted_by=outcome.interrupted_by,
        handovers=tuple(
            Handover(str(h["from"]), str(h["to"]), int(h["clients"]), int(h["first_client"]))
            for h in outcome.handovers
        ),
        clients_orphaned=outcome.orphaned,
        refused=outcome.refused,
    )


def conclude(spec: JobSpec, outcome: RunOutcome, scenario: str | None = None) -> RunSummary:
    """The run's summary and verdict (no I/O); call once, at the end of the run.

    ``scenario``: the scenario file the job was read from, for the parameters.
    """
    figures = outcome.aggregate.figures(outcome.elapsed)
    end = ending(outcome)
    verdict = judge(spec.thresholds, figures, end, target=target_name(spec.ws_url))
    started = outcome.aggregate.started_at
    return RunSummary(
        figures, end, parameters(spec, len(outcome.workers), started, scenario), verdict
    )


def live_summary(
    spec: JobSpec, agg: RunAggregate, elapsed: float, scenario: str | None = None
) -> RunSummary:
    """The run so far as a summary (the live dashboard's): thresholds judged on it so far."""
    figures = agg.figures(elapsed, live=True)
    verdict = judge(spec.thresholds, figures, RunEnding(), target=target_name(spec.ws_url))
    params = parameters(spec, len(agg.workers), agg.started_at, scenario)
    return RunSummary(figures, RunEnding(), params, verdict)


def abort_check(spec: JobSpec) -> Callable[[RunProgress], str]:
    """``--abort-on-fail``: the reason a threshold can no longer pass, or ""."""
    return lambda progress: doomed(spec.thresholds, progress)


def _quiet(_text: str) -> None:
    """A library call prints nothing unless asked to."""


def default_workers(spec: JobSpec) -> int:
    """Local worker processes when none are asked for: one per core, at most one per client."""
    return max(1, min(len(os.sched_getaffinity(0)), spec.num_clients))


async def run_load(
    spec: JobSpec,
    *,
    local_workers: int | None = None,
    options: SessionOptions | None = None,
    abort_on_fail: bool = False,
    on_log: Callable[[str], None] | None = None,
    on_progress: Callable[[RunProgress], None] | None = None,
    scenario: str | None = None,
    on_live: Callable[[Callable[[], RunSummary]], None] | None = None,
    metrics: MetricsOptions | None = None,
) -> RunSummary:
    """Run a load job and judge it: the one library entry point of a load run.

    ``local_workers`` defaults to :func:`default_workers` (all of them
    expected before the start); ``on_progress`` gets the run so far once a
    second; ``on_log`` the coordinator's lines (default: ``options.on_log``,
    or none without ``options``). Raises :class:`wsload.coordinator.runner.Interrupted`
    when a second signal (or one before the run began) quits without a report.
    ``scenario``: the scenario file the spec was read from (shown in the parameters).
    ``on_live`` (the live dashboard) gets, once a second, a function that builds
    the run so far as a summary (:func:`live_summary`): nothing is built unless asked.
    ``metrics``: where the live metrics go (Prometheus ``/metrics``, OTLP), if anywhere.
    """
    check = abort_check(spec)
    if local_workers is None:
        local_workers = default_workers(spec)
    if options is None:
        options = SessionOptions(expect_workers=local_workers, on_log=on_log or _quiet)

    def progress(agg: RunAggregate, elapsed: float) -> str | None:
        snapshot = agg.progress(elapsed)
        if on_progress is not None:
            on_progress(snapshot)
        if on_live is not None:
            # built when a page asks, up to a second later: its elapsed is then's
            ticked = time.monotonic()
            on_live(lambda: live_summary(spec, agg, elapsed + time.monotonic() - ticked, scenario))
        out.progress(agg, elapsed)
        return check(snapshot) if abort_on_fail else None

    # Live metrics (--metrics-port, --otlp): up before any worker starts, closed with the run.
    async with MetricsOut(metrics or MetricsOptions(), on_log or options.on_log) as out:
        outcome = await run_session(
            spec, local_workers=local_workers, options=options, on_log=on_log, on_progress=progress
        )
        summary = conclude(spec, outcome, scenario)
        # An interrupted run (Ctrl-C, SIGTERM) does not wait for a last scrape.
        await out.finish(summary.figures, outcome.aggregate, linger=not outcome.interrupted)
    return summary


__all__ = [
    "abort_check",
    "conclude",
    "default_workers",
    "ending",
    "live_summary",
    "parameters",
    "run_load",
]

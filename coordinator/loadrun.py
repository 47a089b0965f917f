"""A load run, judged: the library call behind ``wsload run``, ``test --load`` and the API.

:func:`run_judged` runs a job (:func:`coordinator.runner.run_load`), stops
it early when ``abort_on_fail`` and a threshold can no longer pass, and
:func:`conclude` turns the outcome into the final summary (figures, the
run's parameters, thresholds) and its :class:`~coordinator.verdict.Verdict`.
Every entry point goes through these two, so they agree on thresholds,
"tested nothing" and the exit code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common import __version__
from common.spec import JobSpec
from common.validation import display_url, redact_headers
from coordinator.aggregate import RunAggregate
from coordinator.runner import run_load
from coordinator.session import RunOutcome, SessionOptions
from coordinator.verdict import Verdict, doomed, judge, target_name


@dataclass(frozen=True)
class LoadRun:
    """A finished load run: what happened, the summary every output renders, the verdict."""

    outcome: RunOutcome
    summary: dict[str, Any]
    verdict: Verdict


def parameters(spec: JobSpec, workers: int, started_at: float) -> dict[str, Any]:
    """The run's parameters as the JSON shows them; no secret is ever printed.

    The target's credentials show as ``***`` (the spec normally holds none:
    they become an ``Authorization`` header when it is built), and so do the
    values of ``Authorization``, ``Cookie`` and the like.
    """
    return {
        "target": display_url(spec.ws_url),
        "clients": spec.num_clients,
        "rate": spec.rate,
        "interval": None if spec.rate else spec.interval,
        "duration": spec.duration,
        "ramp_up": spec.ramp_up,
        "engine": spec.client_engine,
        "match": spec.match,
        "workers": workers,
        "headers": [list(pair) for pair in redact_headers(spec.headers)],
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_at)),
        "wsload_version": __version__,
    }


def conclude(spec: JobSpec, outcome: RunOutcome) -> LoadRun:
    """The final summary of a load run and its verdict (no I/O)."""
    summary = outcome.summary()
    verdict = judge(
        spec.thresholds, summary, target=target_name(spec.ws_url), refused=outcome.refused
    )
    summary["engine"] = spec.client_engine
    summary["parameters"] = parameters(spec, len(outcome.workers), outcome.aggregate.started_at)
    summary["thresholds"] = list(verdict.thresholds)
    summary["nothing_tested"] = next(
        (r for r in verdict.reasons if r.startswith("nothing tested")), None
    )
    summary["verdict"] = verdict.to_json()
    summary["passed"] = verdict.passed
    return LoadRun(outcome, summary, verdict)


def abort_check(spec: JobSpec) -> Callable[[RunAggregate], str]:
    """``--abort-on-fail``: the reason a threshold can no longer pass, or ""."""
    return lambda agg: doomed(spec.thresholds, agg.totals(), agg.errors())


async def run_judged(
    spec: JobSpec,
    *,
    local_workers: int,
    options: SessionOptions | None = None,
    abort_on_fail: bool = False,
    on_log: Callable[[str], None] | None = None,
    on_progress: Callable[[RunAggregate, float], None] | None = None,
) -> LoadRun:
    """Run a load job and judge it; ``on_progress`` is called once a second."""
    check = abort_check(spec)

    def progress(agg: RunAggregate, elapsed: float) -> str | None:
        if on_progress is not None:
            on_progress(agg, elapsed)
        return check(agg) if abort_on_fail else None

    outcome = await run_load(
        spec, local_workers=local_workers, options=options, on_log=on_log, on_progress=progress
    )
    return conclude(spec, outcome)


__all__ = ["LoadRun", "abort_check", "conclude", "parameters", "run_judged"]

"""A conversation's per-step truth, merged over workers: sans-I/O, fed by :class:`RunAggregate`.

Every ``expect`` step is a measured transaction. A worker's window carries,
per step, the step's counter deltas (common.protocol.STEP_COUNTERS) and one
latency and service time per expect met (:meth:`Samples.step_arrays`); per
scenario, the messages no expect took (``unsolicited``) and the iterations
run. This module adds them up per worker and in total, keeps a latency and
a service-time histogram per step and the step counters per second, and
turns them into :class:`~wsload.coordinator.figures.StepFigures`.

The identity ``expected = met + timed_out + failed + lost + unanswered``
holds per step, per worker and in total: a worker lost before its final
result leaves expects it had begun but not resolved, and those count as
``lost`` in their step, as the run-level counters do for its messages.

Bounded: a hostile or broken worker cannot grow the summary with names of
its own. The job's step names, when known (the coordinator compiles the
same workload: :func:`workload_names`), come first in their order; at most
MAX_STEPS names are kept in all, and the counts of any name past that
bound go to OTHER_STEPS (a step's histograms cost ~380 KB).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from wsload.common.errors import WsloadError
from wsload.common.histogram import LatencyHistogram
from wsload.common.protocol import SCENARIO_COUNTERS, STEP_COUNTERS, StepArrays
from wsload.coordinator.figures import (
    Percentiles,
    ScenarioFigures,
    StepCounters,
    StepFigures,
    distribution,
    frozen_map,
)

if TYPE_CHECKING:
    from wsload.common.spec import JobSpec

#: Most distinct step names one run keeps (each has two histograms).
MAX_STEPS = 128
#: Most distinct scenario names one run keeps.
MAX_SCENARIOS = 256
#: Where the counts of names past the bounds go.
OTHER_STEPS = "(other steps)"
OTHER_SCENARIOS = "(other scenarios)"


def add_counts(into: dict[str, int], delta: Mapping[str, int]) -> None:
    """Add ``delta``'s counts to ``into``'s (a name new to ``into`` starts at 0)."""
    for k, v in delta.items():
        into[k] = into.get(k, 0) + v


def in_flight(counters: Mapping[str, int]) -> int:
    """Expects begun and not (yet) resolved."""
    resolved = sum(counters.get(k, 0) for k in STEP_COUNTERS if k != "expected")
    return max(0, counters.get("expected", 0) - resolved)


class StepAggregate:
    """Every worker's step and scenario windows, merged.

    ``names``: the job's ``expect`` step names in order (empty when not
    known); they come first in the figures, each shown even if it never
    began (expected 0). ``scenarios``: its scenario names, likewise, and
    ``clients`` how many of the job's clients each one runs.
    """

    def __init__(
        self,
        names: Sequence[str] = (),
        scenarios: Sequence[str] = (),
        clients: Mapping[str, int] | None = None,
    ) -> None:
        #: clients per scenario, as the job assigns them (None: not known)
        self.clients = dict(clients or {})
        self.totals: dict[str, dict[str, int]] = {
            name: {} for name in list(dict.fromkeys(names))[:MAX_STEPS]
        }
        self.latency: dict[str, LatencyHistogram] = {}
        self.service: dict[str, LatencyHistogram] = {}
        self.by_worker: dict[str, dict[str, dict[str, int]]] = {}
        self.scenarios: dict[str, dict[str, int]] = {
            name: {} for name in list(dict.fromkeys(scenarios))[:MAX_SCENARIOS]
        }
        #: second of the run -> step name -> counters reported in it
        self.seconds: dict[int, dict[str, dict[str, int]]] = {}

    def _name(self, name: str) -> str:
        return name if name in self.totals or len(self.totals) < MAX_STEPS else OTHER_STEPS

    def _scenario(self, name: str) -> str:
        room = len(self.scenarios) < MAX_SCENARIOS
        return name if name in self.scenarios or room else OTHER_SCENARIOS

    def add(
        self,
        worker_id: str,
        second: int,
        steps: Mapping[str, StepArrays],
        scenarios: Mapping[str, Mapping[str, int]],
    ) -> None:
        """Merge one window's steps (already decoded and checked) and scenarios."""
        if steps:
            mine = self.by_worker.setdefault(worker_id, {})
            this_second = self.seconds.setdefault(second, {})
            for raw_name, (counters, latency, service) in steps.items():
                name = self._name(raw_name)
                delta = {k: v for k, v in counters.items() if k in STEP_COUNTERS}
                add_counts(self.totals.setdefault(name, {}), delta)
                add_counts(mine.setdefault(name, {}), delta)
                add_counts(this_second.setdefault(name, {}), delta)
                if latency.size:
                    self._histogram(self.latency, name).record_many(latency)
                    self._histogram(self.service, name).record_many(service)
        for raw_name, scenario in scenarios.items():
            delta = {k: v for k, v in scenario.items() if k in SCENARIO_COUNTERS}
            add_counts(self.scenarios.setdefault(self._scenario(raw_name), {}), delta)

    @staticmethod
    def _histogram(hists: dict[str, LatencyHistogram], name: str) -> LatencyHistogram:
        """The step's histogram, made on its first sample (one costs ~190 KB)."""
        hist = hists.get(name)
        if hist is None:
            hist = hists[name] = LatencyHistogram()
        return hist

    def worker_counters(self, worker_id: str, lost: bool) -> dict[str, dict[str, int]]:
        """A worker's counters per step; ``lost`` (lost before its result): in flight as lost."""
        out: dict[str, dict[str, int]] = {}
        for name, counters in self.by_worker.get(worker_id, {}).items():
            c = {k: counters.get(k, 0) for k in STEP_COUNTERS}
            if lost:
                c["lost"] += in_flight(counters)
            out[name] = c
        return out

    def progress(self) -> Mapping[str, StepCounters]:
        """Each step's counters so far (the live totals, for ``--abort-on-fail``)."""
        return frozen_map({n: StepCounters.from_mapping(c) for n, c in self.totals.items()})

    def second(self, second: int) -> Mapping[str, StepCounters]:
        """The step counters reported in one second of the run."""
        row = self.seconds.get(second, {})
        ordered = [n for n in self.totals if n in row]  # the workload's order
        return frozen_map({n: StepCounters.from_mapping(row[n]) for n in ordered})

    def figures(self, lost_workers: Iterable[str]) -> tuple[StepFigures, ...]:
        """Every step's figures; ``lost_workers`` (lost before their result) add their in-flight."""
        lost = set(lost_workers)
        per_worker = {w: self.worker_counters(w, w in lost) for w in self.by_worker}
        out = []
        for name in self.totals:
            total = dict.fromkeys(STEP_COUNTERS, 0)
            workers = {}
            for worker_id, steps in per_worker.items():
                if name in steps:
                    add_counts(total, steps[name])
                    workers[worker_id] = StepCounters.from_mapping(steps[name])
            lat = self.latency.get(name, LatencyHistogram())
            svc = self.service.get(name, LatencyHistogram())
            out.append(
                StepFigures(
                    name,
                    StepCounters.from_mapping(total),
                    Percentiles.of(lat),
                    Percentiles.of(svc),
                    lat.mean / 1e6 if lat.count else None,
                    frozen_map(workers),
                    distribution(lat),
                )
            )
        return tuple(out)

    def scenario_figures(self) -> tuple[ScenarioFigures, ...]:
        return tuple(
            ScenarioFigures(
                name, c.get("unsolicited", 0), c.get("iterations", 0), self.clients.get(name)
            )
            for name, c in self.scenarios.items()
        )


def workload_names(
    spec: JobSpec,
) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, int]]:
    """The job's ``expect`` step names and scenario names in order, and each scenario's
    clients (:func:`wsload.common.mix.assign`); empty for echo.

    The spec was validated before the run; should it not compile here, the
    figures simply list steps in the order workers report them.
    """
    from wsload.common.mix import assign
    from wsload.common.workload import compile_workload

    try:
        workload = compile_workload(spec)
    except WsloadError:
        return (), (), {}
    programs = workload.programs
    if not programs:
        return (), (), {}
    try:
        mix = assign(programs, spec.num_clients)
        clients = {p.name: mix.count(i) for i, p in enumerate(programs)}
    except ValueError:
        clients = {}
    return tuple(workload.step_names), tuple(p.name for p in programs), clients


__all__ = [
    "MAX_SCENARIOS",
    "MAX_STEPS",
    "OTHER_SCENARIOS",
    "OTHER_STEPS",
    "StepAggregate",
    "add_counts",
    "in_flight",
    "workload_names",
]

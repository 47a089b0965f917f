"""A job's workload compiled: ``[[steps]]``, ``[[loop]]``, ``[[scenarios]]``, feeder, stages.

:func:`compile_workload` turns a :class:`wsload.common.spec.JobSpec` into a
:class:`wsload.common.program.Workload`; :func:`workload_problems` is every
problem at once, one line each, with where it is::

    steps: step 3: unknown key 'expct' (did you mean 'expect'?)
    loop: step 5: unknown variable {tokn} (did you mean 'token'?)
    scenarios[2] (chat): step 1: needs exactly one of send, ... (has none)

Steps are numbered from 1 over ``[[steps]]`` then ``[[loop]]`` of their
program; ``scenarios[i]`` counts the ``[[scenarios]]`` tables from 1.
A step's default name is ``step N`` (``<scenario> step N`` when the job
mixes several scenarios). Step names are unique in the workload, with one
exception: two *expects* of different scenarios that give the same explicit
``name`` are one metric (their counts and latencies add up), so a login
shared by several scenarios reads as one row.

A job with no steps, loop or scenarios compiles to ``Workload(programs=())``:
the echo load, on its own fast path. Variables known to a step's templates:
the built-ins, the feeder's columns, and what earlier steps of its program
captured (``[[steps]]`` in order, then ``[[loop]]``: a loop step sees the
setup's captures and those of earlier loop steps).

Pacing of a program: a scenario's own ``rate`` or ``interval``; without
its own rate, a job-wide ``rate`` is shared by the scenarios in proportion
to their clients (fixed ``clients``, or ``weight`` of the rest).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from wsload.common.feeder import feeder_problems
from wsload.common.fields import MAX_CLIENTS, MAX_DURATION, Mode
from wsload.common.program import Feeder, Program, Stage, Workload
from wsload.common.stages import Profile, parse_stages
from wsload.common.steps import (
    MAX_NAME_LENGTH,
    MAX_STEPS,
    Compiled,
    ScenarioError,
    compile_steps,
)
from wsload.common.stepvalues import unknown_keys
from wsload.common.thresholds import step_threshold_problems
from wsload.common.validation import describe
from wsload.common.workload_inputs import spec_feeder, stage_problems

if TYPE_CHECKING:
    from wsload.common.spec import JobSpec

SCENARIO_KEYS = ("name", "weight", "clients", "steps", "loop", "rate", "interval")
#: Most ``[[scenarios]]`` one job may mix.
MAX_SCENARIOS = 100
#: Name of the one program of a job without ``[[scenarios]]``.
DEFAULT_PROGRAM = "default"


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


class _Build:
    """Collects programs, step names and problems while a workload compiles."""

    def __init__(self, spec: JobSpec, feeder: Feeder | None, clients: int) -> None:
        self.spec = spec
        #: None: a feeder was given but could not be read (any variable may be a column)
        self.columns: tuple[str, ...] | None = feeder.columns if feeder else ()
        if spec.feeder and feeder is None:
            self.columns = None
        self.clients = clients
        self.problems: list[str] = []
        self.programs: list[Program] = []
        #: step name -> (program index, is an expect, explicit, where it is)
        self.names: dict[str, tuple[int, bool, bool, str]] = {}
        self.step_names: list[str] = []

    def program(
        self,
        index: int,
        name: str,
        setup_raw: Sequence[Any],
        loop_raw: Sequence[Any],
        where: tuple[str, str],
        name_prefix: str,
        **pacing: Any,
    ) -> None:
        setup, p1, captured = compile_steps(
            setup_raw, feeder_columns=self.columns, prefix=where[0], name_prefix=name_prefix
        )
        loop, p2, _ = compile_steps(
            loop_raw,
            first=len(setup_raw) + 1,
            known=captured,
            feeder_columns=self.columns,
            prefix=where[1],
            name_prefix=name_prefix,
        )
        self.problems += p1 + p2
        for c, section in [(c, where[0]) for c in setup] + [(c, where[1]) for c in loop]:
            self._name(index, c, f"{section}step {c.step.number}")
        self.programs.append(
            Program(
                name,
                tuple(c.step for c in setup),
                tuple(c.step for c in loop),
                **pacing,
            )
        )

    def _name(self, index: int, c: Compiled, where: str) -> None:
        step = c.step
        seen = self.names.get(step.name)
        if seen is None:
            self.names[step.name] = (index, step.expects, c.explicit_name, where)
            if step.expects:
                self.step_names.append(step.name)
            return
        other_index, other_expects, other_explicit, other_where = seen
        shared = (
            other_index != index
            and step.expects
            and other_expects
            and c.explicit_name
            and other_explicit
        )
        if not shared:
            self.problems.append(
                f"{where}: name {step.name!r} is taken by {other_where} "
                "(step names are unique; only expects of different scenarios may share one)"
            )


def _list(raw: Any, what: str) -> tuple[Sequence[Any], list[str]]:
    if raw is None:
        return (), []
    if not isinstance(raw, list | tuple):
        return (), [f"{what}: expected a list of tables ([[{what.rsplit(' ', 1)[-1]}]])"]
    return raw, []


def _scenario_pacing(
    where: str, table: Mapping[str, Any], problems: list[str]
) -> tuple[float | None, float | None, int | None, float]:
    """rate, interval, clients, weight of one scenario table (None: not given)."""
    rate, interval = table.get("rate"), table.get("interval")
    clients, weight = table.get("clients"), table.get("weight")
    if rate is not None and (not _number(rate) or not 0 < rate <= 1e9):
        problems.append(f"{where}: rate must be iterations per second > 0, got {describe(rate)}")
        rate = None
    if interval is not None and (not _number(interval) or not 0 <= interval <= MAX_DURATION):
        problems.append(f"{where}: interval must be seconds >= 0, got {describe(interval)}")
        interval = None
    if clients is not None and weight is not None:
        problems.append(f"{where}: give clients or weight, not both")
    if clients is not None and (
        isinstance(clients, bool) or not isinstance(clients, int) or not 1 <= clients <= MAX_CLIENTS
    ):
        problems.append(f"{where}: clients must be an integer >= 1, got {describe(clients)}")
        clients = None
    if weight is not None and (not _number(weight) or not 0 < weight <= 1e6):
        problems.append(f"{where}: weight must be a number > 0, got {describe(weight)}")
        weight = None
    return rate, interval, clients, float(weight) if weight is not None else 1.0


def _scenarios(build: _Build, raw: Any) -> None:
    spec = build.spec
    items, problems = _list(raw, "scenarios")
    build.problems += problems
    if len(items) > MAX_SCENARIOS:
        build.problems.append(f"scenarios: {len(items)} scenarios, at most {MAX_SCENARIOS}")
        return
    if items and (spec.steps or spec.loop):
        build.problems.append(
            "scenarios: top-level [[steps]]/[[loop]] and [[scenarios]] do not mix: "
            "move the steps into a scenario"
        )
    Pacing = tuple[float | None, float | None, int | None, float]
    parsed: list[tuple[str, Sequence[Any], Sequence[Any], Pacing]] = []
    seen: set[str] = set()
    total_steps = 0
    for i, table in enumerate(items, 1):
        if not isinstance(table, Mapping):
            build.problems.append(f"scenarios[{i}]: expected a table, got {describe(table)}")
            continue
        name = table.get("name")
        label = name if isinstance(name, str) and name else "?"
        where = f"scenarios[{i}] ({label})"
        build.problems += unknown_keys(table, SCENARIO_KEYS, where)
        if not isinstance(name, str) or not name.strip():
            build.problems.append(f'scenarios[{i}]: needs name = "..."')
        elif len(name) > MAX_NAME_LENGTH or not name.isprintable() or name != name.strip():
            build.problems.append(f"{where}: name must be printable, at most 100 characters")
        elif name in seen:
            build.problems.append(f"{where}: another scenario has the name {name!r}")
        if isinstance(name, str):
            seen.add(name)
        steps, p1 = _list(table.get("steps"), f"{where}: steps")
        loop, p2 = _list(table.get("loop"), f"{where}: loop")
        build.problems += p1 + p2
        total_steps += len(steps) + len(loop)
        if not steps and not loop and not p1 + p2:
            build.problems.append(f"{where}: needs [[scenarios.steps]] or [[scenarios.loop]]")
        parsed.append((label, steps, loop, _scenario_pacing(where, table, build.problems)))
    if total_steps > MAX_STEPS:
        build.problems.append(f"scenarios: {total_steps:,} steps in all, at most {MAX_STEPS:,}")
        return
    fixed = sum(p[3][2] or 0 for p in parsed)
    weights = sum(p[3][3] for p in parsed if p[3][2] is None)
    if fixed > build.clients:
        build.problems.append(
            f"scenarios: their clients add up to {fixed}, more than the job's {build.clients}"
        )
    many = len(items) > 1
    for i, (label, steps, loop, (rate, interval, clients, weight)) in enumerate(parsed):
        if rate is None and spec.rate is not None and build.clients:
            share = (
                clients / build.clients
                if clients is not None
                else max(build.clients - fixed, 0) / build.clients * weight / (weights or 1.0)
            )
            rate = spec.rate * share if share > 0 else None
        where = f"scenarios[{i + 1}] ({label}): "
        build.program(
            i,
            label,
            steps,
            loop,
            (where, where),
            f"{label} " if many else "",
            rate=rate,
            interval=spec.interval if interval is None else float(interval),
            clients=clients,
            weight=weight,
        )


def _compile(spec: JobSpec) -> tuple[Workload, list[str]]:
    problems: list[str] = []
    stages: tuple[Stage, ...] = ()
    clients = spec.num_clients
    if spec.stages:
        stages, stage_problems = parse_stages(spec.stages)
        problems += stage_problems
        if stages:
            clients = Profile(stages).peak_clients
    # the integration check runs one client, on the feeder's first row
    feeder_clients = 1 if spec.mode is Mode.INTEGRATION else clients
    feeder = spec_feeder(spec, problems)
    build = _Build(spec, feeder, clients)
    if spec.scenarios:
        _scenarios(build, spec.scenarios)
    elif spec.steps or spec.loop:
        if len(spec.steps) > MAX_STEPS or len(spec.loop) > MAX_STEPS:
            count = max(len(spec.steps), len(spec.loop))
            which = "steps" if len(spec.steps) > MAX_STEPS else "loop"
            problems.append(f"{which}: {count:,} steps, at most {MAX_STEPS:,}")
        elif len(spec.steps) + len(spec.loop) > MAX_STEPS:
            problems.append(f"steps and loop: more than {MAX_STEPS:,} steps in all")
        else:
            build.program(
                0,
                DEFAULT_PROGRAM,
                spec.steps,
                spec.loop,
                ("steps: ", "loop: "),
                "",
                rate=spec.rate,
                interval=spec.interval,
            )
    problems += build.problems
    if feeder is not None:
        if not build.programs and not problems:
            problems.append(
                "feeder: only a conversation ([[steps]], [[loop]] or [[scenarios]]) uses "
                "a feeder's columns"
            )
        problems += feeder_problems(feeder, feeder_clients)
    workload = Workload(
        programs=tuple(build.programs),
        feeder=feeder,
        stages=stages,
        step_names=tuple(build.step_names),
    )
    return workload, problems


def workload_problems(spec: JobSpec) -> list[str]:
    """Every problem of the job's steps, loop, scenarios, feeder and stages, one line each.

    A per-step threshold (``step.NAME.p99<50ms``) must name one of the
    workload's expect steps; it is checked once the steps themselves are
    fine (before, their names are not known).
    """
    workload, problems = _compile(spec)
    if not problems:
        problems = step_threshold_problems(spec.thresholds, workload.step_names)
    return problems + stage_problems(spec)


def compile_workload(spec: JobSpec) -> Workload:
    """The job's compiled workload; raises :class:`ScenarioError` with every problem."""
    workload, problems = _compile(spec)
    if problems:
        raise ScenarioError(problems)
    return workload


__all__ = [
    "DEFAULT_PROGRAM",
    "MAX_SCENARIOS",
    "SCENARIO_KEYS",
    "compile_workload",
    "workload_problems",
]

"""A job's workload compiled: ``[[steps]]``, ``[[loop]]``, ``[[scenarios]]``, feeder, stages.

:func:`compile_workload` turns a :class:`wsload.common.spec.JobSpec` into a
:class:`wsload.common.program.Workload`; :func:`workload_problems` is every
problem at once, one line each, with where it is::

    steps: step 3: unknown key 'expct' (did you mean 'expect'?)
    loop: step 2: unknown variable {tokn} (did you mean 'token'?)
    scenarios[2] (chat): steps: step 1: needs exactly one of send, ... (has none)

A problem locates a step by its position in its own block (``loop: step 2``
is the second ``[[loop]]`` entry, as a user counts); ``scenarios[i]``
counts the ``[[scenarios]]`` tables from 1. A step's number, and its
default name ``step N``, count from 1 over ``[[steps]]`` then ``[[loop]]``
of its program, so the names stay distinct (``<scenario> step N`` when the
job mixes several scenarios). One malformed step hides nothing else: the
other steps' variables, every step's name (a step that did not compile
keeps the name its table gives), the feeder and the per-step thresholds
are all checked in the same pass. Step names are unique in the workload, with one
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
to their clients (fixed ``clients``, or ``weight`` of the rest); the
``[[scenarios]]`` tables are checked in
:mod:`wsload.common.workload_scenarios`. A program's protocol over the
WebSocket: its scenario's ``protocol``, else the file's top-level one, else
raw frames (:mod:`wsload.common.protocol_steps`; ``Program.protocol`` None).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from wsload.common.fanout_checks import LISTEN_HINT, Place, program_fanout, publication_problems
from wsload.common.feeder import feeder_problems
from wsload.common.fields import Mode
from wsload.common.program import Feeder, Program, Stage, Workload
from wsload.common.protocol_steps import PROTOCOL_VERBS, RAW_CHOICE, ProtocolChoice, parse_protocol
from wsload.common.stages import Profile, parse_stages
from wsload.common.steps import (
    ACTIONS,
    ALIASES,
    MAX_STEPS,
    ScenarioError,
    compile_steps,
)
from wsload.common.stepvalues import EXPECT_KEYS, name_problem
from wsload.common.template import unknown_variable_problems
from wsload.common.thresholds import fanout_threshold_problems, step_threshold_problems
from wsload.common.workload_inputs import spec_feeder, stage_problems
from wsload.common.workload_scenarios import MAX_SCENARIOS, SCENARIO_KEYS, add_scenarios

if TYPE_CHECKING:
    from wsload.common.spec import JobSpec

#: Name of the one program of a job without ``[[scenarios]]``.
DEFAULT_PROGRAM = "default"


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
        #: the top-level ``protocol`` (a scenario without its own speaks it)
        self.protocol = RAW_CHOICE
        #: where each program's parts are in the file (for problems across programs)
        self.places: list[Place] = []
        #: step name -> (program index, is an expect, explicit, where it is)
        self.names: dict[str, tuple[int, bool, bool, str]] = {}
        self.step_names: list[str] = []
        #: names of steps that did not compile but may be expects
        self.maybe_expects: set[str] = set()
        #: False when some step's (or scenario's) name cannot be known
        self.names_known = True

    def program(
        self,
        index: int,
        name: str,
        setup_raw: Sequence[Any],
        loop_raw: Sequence[Any],
        where: tuple[str, str],
        name_prefix: str,
        deliveries_raw: Any = None,
        deliveries_where: str = "deliveries: ",
        protocol: ProtocolChoice | None = None,
        **pacing: Any,
    ) -> None:
        speaks = protocol or self.protocol
        setup, p1, captured = compile_steps(
            setup_raw,
            feeder_columns=self.columns,
            prefix=where[0],
            name_prefix=name_prefix,
            decl=speaks.decl,
        )
        loop, p2, loop_captured = compile_steps(
            loop_raw,
            first=len(setup_raw) + 1,
            known=captured,
            feeder_columns=self.columns,
            prefix=where[1],
            name_prefix=name_prefix,
            decl=speaks.decl,
        )
        self.problems += p1 + p2
        located = Place(where[0], where[1], deliveries_where, len(setup_raw))
        deliveries, p3 = program_fanout(
            located,
            [c.step for c in setup],
            [c.step for c in loop],
            bool(loop_raw),
            deliveries_raw,
            None if self.columns is None else {*self.columns, *captured},
            loop_captured - captured,
        )
        self.problems += p3
        done = {c.step.number: c for c in (*setup, *loop)}
        blocks = ((where[0], 1, setup_raw), (where[1], len(setup_raw) + 1, loop_raw))
        for section, first, items in blocks:
            for position, item in enumerate(items, 1):
                number = first + position - 1
                place = f"{section}step {position}"
                c = done.get(number)
                if c is not None:
                    self._name(index, c.step.name, c.step.expects, c.explicit_name, place)
                else:  # its name still counts: a taken name is its own problem
                    self._failed(index, item, f"{name_prefix}step {number}", place, speaks)
        self.programs.append(
            Program(
                name,
                tuple(c.step for c in setup),
                tuple(c.step for c in loop),
                deliveries=deliveries,
                protocol=speaks.spec,
                **pacing,
            )
        )
        self.places.append(located)

    def _failed(
        self, index: int, item: Any, default: str, where: str, speaks: ProtocolChoice
    ) -> None:
        """Name a step that did not compile, as far as it can be known.

        Its name and whether it is an expect are taken from the raw table
        (a table with no single action may be an expect); a step whose name
        cannot be known makes the names uncertain, so per-step thresholds
        are not checked against them.
        """
        if not isinstance(item, Mapping):
            self.names_known = False
            return
        name = item.get("name", default)
        if not isinstance(name, str) or name_problem(name):
            self.names_known = False
            return
        actions = [k for k in item if k in ACTIONS or k in ALIASES or k in PROTOCOL_VERBS]
        # a protocol's verb may wait for its answer (a measured step) or not
        waits = (*EXPECT_KEYS, *PROTOCOL_VERBS, *(("send",) if speaks.spec else ()))
        expects = len(actions) != 1 or actions[0] in waits
        if expects:
            self.maybe_expects.add(name)
        if "name" in item:  # a default name is distinct unless a given one takes it
            self._name(index, name, expects, True, where, compiled=False)

    def choose(self, raw: Any, where: str) -> ProtocolChoice:
        """A ``protocol`` value parsed, its problems located by ``where`` (``protocol: ...``)."""
        choice = parse_protocol(raw)
        self.problems += [where + p for p in choice.problems]
        if self.columns is not None and choice.names:  # options: built-ins and feeder columns
            unknown = unknown_variable_problems(choice.names, self.columns)
            self.problems += [f"{where}protocol: {p}" for p in unknown]
        return choice

    def _name(
        self,
        index: int,
        name: str,
        expects: bool,
        explicit: bool,
        where: str,
        compiled: bool = True,
    ) -> None:
        seen = self.names.get(name)
        if seen is None:
            self.names[name] = (index, expects, explicit, where)
            if expects and compiled:
                self.step_names.append(name)
            return
        other_index, other_expects, other_explicit, other_where = seen
        shared = other_index != index and expects and other_expects and explicit and other_explicit
        if not shared:
            self.problems.append(
                f"{where}: name {name!r} is taken by {other_where} "
                "(step names are unique; only expects of different scenarios may share one)"
            )


def _protocol_problems(spec: JobSpec, build: _Build) -> list[str]:
    """A protocol needs a conversation, and the integration check speaks raw frames only."""
    if spec.protocol is not None and not build.programs and not build.problems:
        return [
            "protocol: needs [[steps]], [[loop]] or [[scenarios]] (the echo load speaks raw frames)"
        ]
    if spec.mode is Mode.INTEGRATION and any(p.protocol for p in build.programs):
        return [
            "protocol: the integration check (wsload test --integration) speaks raw frames "
            "only: run a protocol scenario with wsload run"
        ]
    return []


def _compile(spec: JobSpec) -> tuple[Workload, list[str], list[str] | None]:
    """The workload, its problems, and the names a per-step threshold may use (None:
    some step's name cannot be known, so no threshold is checked against them)."""
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
    build.protocol = build.choose(spec.protocol, "")
    if spec.scenarios:
        add_scenarios(build, spec.scenarios)
    elif spec.steps or spec.loop:
        build.names_known = False  # until the steps compile below
        if len(spec.steps) > MAX_STEPS or len(spec.loop) > MAX_STEPS:
            count = max(len(spec.steps), len(spec.loop))
            which = "steps" if len(spec.steps) > MAX_STEPS else "loop"
            problems.append(f"{which}: {count:,} steps, at most {MAX_STEPS:,}")
        elif len(spec.steps) + len(spec.loop) > MAX_STEPS:
            problems.append(f"steps and loop: more than {MAX_STEPS:,} steps in all")
        else:
            build.names_known = True
            build.program(
                0,
                DEFAULT_PROGRAM,
                spec.steps,
                spec.loop,
                ("steps: ", "loop: "),
                "",
                spec.deliveries,
                rate=spec.rate,
                interval=spec.interval,
            )
    if spec.deliveries is not None:
        if spec.scenarios:
            problems.append(
                "deliveries: a top-level [deliveries] is for the steps of a scenario without "
                "[[scenarios]]; give each scenario its own [scenarios.deliveries]"
            )
        elif not spec.steps and not spec.loop:
            problems.append("deliveries: needs [[steps]] or [[loop]]" + LISTEN_HINT.format("loop"))
    problems += build.problems
    problems += _protocol_problems(spec, build)
    problems += publication_problems(
        list(zip(build.programs, build.places, strict=True)), spec.mode
    )
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
    names = [*build.step_names, *sorted(build.maybe_expects)] if build.names_known else None
    return workload, problems, names


def workload_problems(spec: JobSpec) -> list[str]:
    """Every problem of the job's steps, loop, scenarios, feeder and stages, one line each.

    A ``fanout.*`` threshold needs a workload with ``[deliveries]``; a
    per-step threshold (``step.NAME.p99<50ms``) must name one of the
    workload's expect steps; it is checked whenever every step's name is
    known, even when some steps (or other thresholds) have problems: a step
    that did not compile still has its name, and counts as an expect when
    it may be one.
    """
    _, problems, names = _compile(spec)
    if names is not None:
        problems += step_threshold_problems(spec.thresholds, names)
    subscribes = bool(spec.deliveries) or any(
        isinstance(entry, dict) and entry.get("deliveries") for entry in spec.scenarios
    )
    problems += fanout_threshold_problems(spec.thresholds, subscribes)
    return problems + stage_problems(spec)


def compile_workload(spec: JobSpec) -> Workload:
    """The job's compiled workload; raises :class:`ScenarioError` with every problem."""
    workload, problems, _ = _compile(spec)
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

"""The step language: one step's grammar, parsed and checked without I/O, on both sides.

A step is a table of one action and its options::

    [[steps]]
    name = "login"                                   # the metric name (default: step N)
    send = {type = "login", user = "{user}"}         # a table is sent as JSON
    [[steps]]
    expect = {type = "login_ok"}                     # JSON subset of a reply, or exact text
    capture = {token = "session.token"}              # dotted path; later: {token}
    fail = {type = "error"}                          # a reply matching this fails the step
    timeout = 2                                      # seconds (default: reply_timeout)
    [[steps]]
    expect_regex = 'id=(?P<id>\\d+)'                 # or a regular expression
    [[steps]]
    send_binary = "00ff10"                           # hex; expect_binary the same way
    [[steps]]
    think = {uniform = [0.5, 1.5]}                   # or seconds, or {exponential = mean}
    [[steps]]
    close = 1000                                     # or true
    [[steps]]
    post = {url = "/api/publish", body = {seq = "{seq}"}}  # an HTTP request (or the url alone)
    publish = {topic = "news", seq = "{seq}"}        # on send or post: a publication

``wait`` is an alias of ``think`` (the integration mode's older name).
Templates (:mod:`wsload.common.template`) may use the built-in variables,
the feeder's columns and what earlier steps captured; anything else is a
problem, with a "did you mean". :func:`compile_step` turns one raw table
into a :class:`wsload.common.program.Step`; :mod:`wsload.common.workload`
puts steps together into programs (``[[steps]]``, ``[[loop]]``,
``[[scenarios]]``) and is re-exported here (:func:`compile_workload`,
:func:`workload_problems`).

For the integration mode, :func:`parse_steps` and :func:`step_problems`
keep their shape: a list of :class:`ScriptStep` (the normalised raw value
beside the compiled step), problems as ``step N: ...``.

The checks of single values (seconds, think times, hex, names, captures,
the shape of a value) are in :mod:`wsload.common.stepvalues`; those of
``post``, ``publish`` and a program's ``[deliveries]`` in
:mod:`wsload.common.fanout_language`. Bounds: at
most :data:`MAX_STEPS` steps, step values nested at most
:data:`MAX_VALUE_DEPTH` deep with at most :data:`MAX_VALUE_ITEMS` items in
any one table or array, so a scenario always fits the wire's limits and no
check recurses without bound.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wsload.common.errors import SpecError
from wsload.common.fanout_language import parse_publish
from wsload.common.match import compile_matcher
from wsload.common.program import Action, Step
from wsload.common.protocol_steps import (
    ANSWER_KEYS,
    PROTOCOL_VERBS,
    answer_captures,
    answer_option_problems,
    not_a_step,
    only_on_expects,
    steps_word,
)
from wsload.common.protocols import COMMON_VERBS, RAW, ProtocolDecl
from wsload.common.step_bodies import action_body, step_label
from wsload.common.stepvalues import (
    DEFAULT_STEPS,
    EXPECT_KEYS,
    MAX_NAME_LENGTH,
    MAX_STEP_SECONDS,
    MAX_STEPS,
    MAX_VALUE_DEPTH,
    MAX_VALUE_ITEMS,
    did_you_mean,
    name_problem,
    parse_captures,
    seconds_ok,
    unknown_keys,
    value_shape_problem,
)
from wsload.common.template import unknown_variable_problems

if TYPE_CHECKING:
    from wsload.common.program import Workload
    from wsload.common.spec import JobSpec

#: The actions, as a step file spells them (``wait`` is an alias of ``think``).
ACTIONS = (
    "send",
    "send_binary",
    "expect",
    "expect_regex",
    "expect_binary",
    "think",
    "close",
    "post",
)
ALIASES: Mapping[str, str] = {"wait": "think"}
OPTIONS = ("name", "timeout", "capture", "fail", "publish", *ANSWER_KEYS)
#: Every verb a step may have in some protocol (:mod:`wsload.common.protocols`).
VERB_KEYS = (*ACTIONS, *ALIASES, *PROTOCOL_VERBS)
STEP_KEYS = (*VERB_KEYS, *OPTIONS)


class ScenarioError(SpecError):
    """One or more scenario steps are malformed (each problem names its step)."""


@dataclass(frozen=True)
class Compiled:
    """One step compiled: the typed step, its normalised raw value, what it captures."""

    step: Step
    value: Any
    captures: tuple[str, ...]
    explicit_name: bool


def compile_step(
    number: int,
    item: Any,
    known: Collection[str] = (),
    later: Mapping[str, int] | None = None,
    feeder_columns: Collection[str] | None = (),
    default_name: str = "",
    position: int | None = None,
    decl: ProtocolDecl | None = RAW,
) -> Compiled | list[str]:
    """Step ``number`` compiled, or every problem with it (without its location).

    ``known`` are the variables its templates may use besides the built-ins
    (feeder columns, earlier captures); ``later`` maps variables captured
    only by later steps to the first such step, by its position in the
    step's list (``position``, default ``number``), for a clearer message.
    ``feeder_columns`` None: the feeder could not be read, so any variable
    may be one of its columns (its problem is said once, not per use).
    ``decl``: the protocol the step speaks (None: an unknown one, whose
    problem is said once; only its common verbs are checked).
    """
    if not isinstance(item, dict) or not all(isinstance(k, str) for k in item):
        return ["expected a table of action = value"]
    problems: list[str] = []
    unknown = unknown_keys(item, STEP_KEYS)
    problems += unknown
    actions = [k for k in item if k in VERB_KEYS]
    if len(actions) != 1:
        if not unknown or actions:
            verb = "has " + " and ".join(actions) if actions else "has none"
            choices = ", ".join(ACTIONS) if decl is RAW else steps_word(decl)
            problems.append(f"needs exactly one of {choices} ({verb})")
        return problems
    key = actions[0]
    if decl is None and key not in COMMON_VERBS and key not in ALIASES:
        return problems  # the protocol is unknown (said once): its verbs cannot be checked
    if decl is not None and key not in decl.step_names and key not in ALIASES:
        return [*problems, not_a_step(decl, key)]
    action = Action(ALIASES.get(key, key)) if key in ACTIONS or key in ALIASES else Action.SEND
    compiled = action_body(key, action, item[key], item, decl or RAW)
    action, body, value, answer = compiled.action, compiled.body, compiled.value, compiled.answer
    problems += compiled.problems
    names = compiled.names
    if decl is not None and (decl is RAW or decl.verb(key) is None):
        problems += answer_option_problems(decl, key, item)  # ack/receipt out of place
    expects = key in EXPECT_KEYS or answer
    timeout = item.get("timeout")
    if timeout is not None and not seconds_ok(timeout, positive=True):
        problems.append(
            f"timeout must be a positive number of seconds (at most {MAX_STEP_SECONDS:g})"
        )
    name = item.get("name")
    if name is not None and (p := name_problem(name)):
        problems.append(p)
    fail = None
    if "fail" in item:
        raw_fail = item["fail"]
        if not expects:
            problems.append(only_on_expects("fail", key, decl))
        elif (shape := value_shape_problem(raw_fail)) is not None:
            problems.append(f"fail value is {shape}")
        else:
            fail = compile_matcher(raw_fail)
            problems += fail.problems
            names |= fail.names
    publish = None
    if "publish" in item:
        publish, publish_problems, publish_names = parse_publish(
            item["publish"], "send" if key == "emit" else key, feeder_columns
        )
        problems += publish_problems
        names |= publish_names
    captures: list[tuple[str, str]] = []
    if "capture" in item and not expects and decl not in (RAW, None):
        problems.append(only_on_expects("capture", key, decl))
    elif "capture" in item:
        captures, capture_problems = (
            answer_captures(item["capture"], feeder_columns)
            if answer
            else parse_captures(item["capture"], key, body, feeder_columns)
        )
        problems += capture_problems
    unknown_variables = (
        unknown_variable_problems(names, known) if feeder_columns is not None else []
    )
    for line in unknown_variables:
        var = line.split("{", 1)[1].split("}", 1)[0]
        if later and var in later:
            line = (
                f"{{{var}}} is captured by this step: usable in the steps after it"
                if later[var] == (number if position is None else position)
                else f"{{{var}}} is captured only by step {later[var]}, after this one"
            )
        problems.append(line)
    if problems:
        return problems
    step = Step(
        number=number,
        name=name if name is not None else default_name or f"step {number}",
        action=action,
        body=body,
        timeout=float(timeout) if timeout is not None else None,
        capture=tuple(captures),
        fail=fail,
        publish=publish,
        answer=answer,
        fail_kind=(decl or RAW).fail_kind if answer else "fail_matched",
    )
    return Compiled(step, value, tuple(var for var, _ in captures), name is not None)


@dataclass(frozen=True)
class ScriptStep:
    """A step as the integration mode runs it: the compiled step and the normalised value.

    ``value`` is what the step file said, normalised: bytes for the binary
    actions, a compiled pattern for ``expect_regex``, the close code, a
    :class:`Think` for ``think``/``wait``.
    """

    number: int
    action: str
    value: Any
    timeout: float | None
    step: Step
    label: str | None = None

    @property
    def name(self) -> str:
        """The check's name in a report (:func:`step_label`)."""
        return step_label(self.step)


def compile_steps(
    raw: Sequence[Any],
    *,
    first: int = 1,
    known: Collection[str] = (),
    feeder_columns: Collection[str] | None = (),
    prefix: str = "",
    name_prefix: str = "",
    decl: ProtocolDecl | None = RAW,
) -> tuple[list[Compiled], list[str], set[str]]:
    """Steps ``first``.. of one list: compiled, problems (``step N: ...``), variables captured.

    Each step may use ``known`` and what the steps before it in this list captured.
    A problem line locates its step by its position in this list (the second
    ``[[loop]]`` entry is ``loop: step 2``, as a user counts), while the step's
    number and default name (``step N``) count from ``first``, so that the
    names of a program's ``[[steps]]`` and ``[[loop]]`` stay distinct.
    ``decl`` is the protocol the steps speak (see :func:`compile_step`).
    """
    later: dict[str, int] = {}  # variable -> position in this list of its first capture
    for n, item in enumerate(raw, start=1):
        if isinstance(item, dict) and isinstance(item.get("capture"), dict):
            for var in item["capture"]:
                later.setdefault(str(var), n)
    have = set(known) | set(feeder_columns or ())
    out: list[Compiled] = []
    problems: list[str] = []
    captured: set[str] = set()
    for position, item in enumerate(raw, start=1):
        n = first + position - 1
        hint = {v: s for v, s in later.items() if s >= position and v not in have}
        got = compile_step(
            n, item, have, hint, feeder_columns, f"{name_prefix}step {n}", position, decl
        )
        if isinstance(got, list):
            problems += [f"{prefix}step {position}: {p}" for p in got]
            if isinstance(item, dict) and isinstance(item.get("capture"), dict):
                names = {str(v) for v in item["capture"]}
                have |= names  # one problem, not one more per use of its variables
                captured |= names
            continue
        out.append(got)
        have |= set(got.captures)
        captured |= set(got.captures)
    return out, problems, captured


def _script(compiled: list[Compiled]) -> list[ScriptStep]:
    return [
        ScriptStep(
            c.step.number,
            c.step.action.value,
            c.value,
            c.step.timeout,
            c.step,
            c.step.name if c.explicit_name else None,
        )
        for c in compiled
    ]


def _parse_all(raw: Sequence[Any]) -> tuple[list[ScriptStep], list[str]]:
    if len(raw) > MAX_STEPS:
        return [], [f"steps: {len(raw):,} steps, at most {MAX_STEPS:,}"]
    compiled, problems, _ = compile_steps(raw)
    return _script(compiled), problems


def step_problems(raw: Sequence[Any]) -> list[str]:
    """Every malformed step of one ``[[steps]]`` list, one line each (``step N: ...``)."""
    return _parse_all(raw)[1]


def parse_steps(raw: Sequence[Any]) -> list[ScriptStep]:
    """Check and normalise one list of steps; raises :class:`ScenarioError` naming each bad step."""
    steps, problems = _parse_all(raw)
    if problems:
        raise ScenarioError(problems)
    return steps


def compile_workload(spec: JobSpec) -> Workload:
    """The job's compiled workload (:func:`wsload.common.workload.compile_workload`)."""
    from wsload.common.workload import compile_workload as compile_

    return compile_(spec)


def workload_problems(spec: JobSpec) -> list[str]:
    """Every problem of the job's workload (:func:`wsload.common.workload.workload_problems`)."""
    from wsload.common.workload import workload_problems as problems

    return problems(spec)


#: Old name of :class:`ScriptStep`.
LegacyStep = ScriptStep

__all__ = [
    "ACTIONS",
    "ALIASES",
    "DEFAULT_STEPS",
    "MAX_NAME_LENGTH",
    "MAX_STEPS",
    "MAX_STEP_SECONDS",
    "MAX_VALUE_DEPTH",
    "MAX_VALUE_ITEMS",
    "OPTIONS",
    "STEP_KEYS",
    "Compiled",
    "ScenarioError",
    "ScriptStep",
    "Step",
    "compile_step",
    "compile_steps",
    "compile_workload",
    "did_you_mean",
    "parse_steps",
    "seconds_ok",
    "step_label",
    "step_problems",
    "value_shape_problem",
    "workload_problems",
]

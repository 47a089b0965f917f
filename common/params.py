"""Click pieces every ``wsload`` command shares: finite floats, and every bad option at once.

Lives in ``common`` because both sides' commands use it (``wsload worker``
must not import the coordinator, nor the coordinator the worker).

- :class:`FiniteFloat` is click's ``FloatRange`` that also refuses ``nan``
  and ``inf``: ``float()`` accepts both, and ``FloatRange`` lets NaN through
  because every comparison with NaN is false, so ``--worker-wait nan`` used
  to wait forever.
- :class:`OneStageCommand` reports every bad option value of an invocation
  at once, one line each (:class:`BadInput`), where click stops at the first.
- :func:`job_options` makes the job's options of ``wsload run``,
  ``wsload coordinator`` and ``wsload test`` from the field declarations
  (:data:`wsload.common.fields.FIELDS`, :class:`wsload.common.spec.JobSpec`), and
  :func:`job_flags` turns what they were given back into spec fields.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import click
from click.core import iter_params_for_processing

from wsload.common.fields import FIELDS, Field
from wsload.common.spec import FIELD_KINDS, JobSpec


class FiniteFloat(click.FloatRange):
    """A float option that must be finite, optionally within a range (``FloatRange``'s)."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)  # NaN passes every range check
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number

    def _describe_range(self) -> str:
        """No ``[x<=None]`` in ``--help`` when only finiteness is asked for."""
        if self.min is None and self.max is None:
            return ""
        return super()._describe_range()


#: Any finite number; the job spec checks the range (with every other problem).
FINITE = FiniteFloat()
#: Seconds that must be above zero: waits and timeouts of the command itself.
POSITIVE_SECONDS = FiniteFloat(min=0, min_open=True, max=86400.0)


class BadInput(click.UsageError):
    """Several bad option values, one line each (``problems``); exit code 2."""

    def __init__(self, problems: Sequence[str], ctx: click.Context | None = None) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems), ctx)


#: Click 8.2+ marks an option not given with a sentinel until parsing ends; then None.
_UNSET = getattr(click.core, "UNSET", object())

#: Checks a command runs on its converted options (the bad ones as None): one line each.
Validator = Callable[[dict[str, Any]], list[str]]


class OneStageCommand(click.Command):
    """A command that names every bad option value at once, not only the first.

    Click converts options one by one and stops at the first that fails;
    when one does, this class converts every option again in a throwaway
    context and raises :class:`BadInput` with one line per failing option,
    followed by what ``validate`` (``click.command(cls=OneStageCommand,
    validate=...)``) finds in the options that did convert, the bad ones
    given as None: ``-d nan -c 0`` names both, not one per attempt.
    """

    def __init__(self, *args: Any, validate: Validator | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.validate = validate

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        given = list(args)
        try:
            return super().parse_args(ctx, args)
        except click.BadParameter:
            problems, values = bad_parameters(self, ctx, given)
            if self.validate is not None:
                problems += self.validate(values)
            if len(problems) > 1:
                raise BadInput(problems, ctx) from None
            raise


def bad_parameters(
    command: click.Command, ctx: click.Context, args: list[str]
) -> tuple[list[str], dict[str, Any]]:
    """Each option of ``command`` whose value in ``args`` does not convert, one line each.

    Also the values of every option, None for those that failed.
    """
    probe = click.Context(command, parent=ctx.parent, info_name=ctx.info_name)
    try:
        opts, _, order = command.make_parser(probe).parse_args(args=list(args))
    except click.UsageError as exc:
        return [exc.format_message()], {}
    out: list[str] = []
    values: dict[str, Any] = {}
    for param in iter_params_for_processing(order, command.get_params(probe)):
        if param.is_eager or param.name is None:  # --help, --version: they exit
            continue
        values[param.name] = None
        try:
            value, _ = param.consume_value(probe, opts)
            value = param.process_value(probe, value)
            values[param.name] = None if value is _UNSET else value
        except click.BadParameter as exc:
            if exc.param is None:
                exc.param = param
            exc.ctx = probe
            out.append(exc.format_message())
    return out, values


F = TypeVar("F", bound=Callable[..., Any])
_DEFAULTS: Mapping[str, Any] = {f.name: f.default for f in dataclasses.fields(JobSpec)}


def job_options(command: Literal["run", "test"]) -> Callable[[F], F]:
    """The click options of every job field ``command`` offers, in the declarations' order.

    ``run`` is also ``wsload coordinator``. Every option defaults to None (a
    repeatable one to ``()``): not given, so the scenario file and the
    environment show through (:func:`wsload.common.spec.build_spec` layers them).
    """
    options = [_option(f, command) for f in FIELDS if f.flag and command in f.commands]

    def decorate(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _option(field: Field, command: str) -> Callable[[F], F]:
    assert field.flag is not None
    kind = FIELD_KINDS[field.name]
    text = field.test_help if command == "test" and field.test_help else field.help
    default = _DEFAULTS[field.name]
    shown = f"{default:g}" if isinstance(default, float) else str(default)
    text = text.replace("{env}", f"[env {field.env}; default {shown}]")
    text = text.replace("{default}", shown)
    decls = [field.flag, *([field.alias] if field.alias else [])]
    if kind == "bool":
        return click.option(*decls, _flag_name(field), is_flag=True, default=None, help=text)
    kw: dict[str, Any] = {"help": text, "metavar": field.metavar}
    if field.choices:
        kw["type"] = click.Choice(field.choices)
    elif kind == "int":
        kw["type"] = int
    elif kind in ("float", "float?"):
        kw["type"] = FINITE  # finite here, the range with every other problem in the spec
    kw["multiple"] = kind in ("strs", "headers")
    return click.option(*decls, field.name, **kw)


def _flag_name(field: Field) -> str:
    """A boolean's parameter: its flag's name (``no_reconnect`` sets ``reconnect`` false)."""
    assert field.flag is not None
    return field.flag.removeprefix("--").replace("-", "_")


def job_flags(params: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The spec fields set by the options of :func:`job_options`, and a line per bad value.

    Options not given are left out. ``--header`` takes ``NAME: VALUE``; a
    repeatable option with ``commas`` also splits its values on commas.
    """
    flags: dict[str, Any] = {}
    problems: list[str] = []
    for field in FIELDS:
        kind = FIELD_KINDS[field.name]
        if field.flag is None:
            continue
        if kind == "bool":
            name = _flag_name(field)
            if params.get(name):
                flags[field.name] = not name.startswith("no_")
            continue
        value = params.get(field.name)
        if value is None or value == ():  # not given; a repeatable option: not repeated
            continue
        if kind == "headers":
            value, bad = _headers(field.flag, value)
            problems += bad
            if not value:
                continue
        elif field.commas:
            value = tuple(part.strip() for raw in value for part in raw.split(","))
            value = tuple(part for part in value if part)
        elif kind == "strs":
            value = tuple(value)
        flags[field.name] = value
    return flags, problems


def _headers(flag: str, given: Sequence[str]) -> tuple[tuple[tuple[str, str], ...], list[str]]:
    pairs: list[tuple[str, str]] = []
    problems: list[str] = []
    for raw in given:
        name, sep, value = raw.partition(":")
        if sep:
            pairs.append((name.strip(), value.strip()))
        else:
            problems.append(f"{flag}: {raw!r} is not NAME: VALUE")
    return tuple(pairs), problems


__all__ = [
    "FINITE",
    "POSITIVE_SECONDS",
    "BadInput",
    "FiniteFloat",
    "OneStageCommand",
    "Validator",
    "job_flags",
    "job_options",
]

"""Click pieces every ``wsload`` command shares: finite floats, and every bad option at once.

Lives in ``common`` because both sides' commands use it (``wsload worker``
must not import the coordinator, nor the coordinator the worker).

- :class:`FiniteFloat` is click's ``FloatRange`` that also refuses ``nan``
  and ``inf``: ``float()`` accepts both, and ``FloatRange`` lets NaN through
  because every comparison with NaN is false, so ``--worker-wait nan`` used
  to wait forever.
- :class:`OneStageCommand` reports every bad option value of an invocation
  at once, one line each (:class:`BadInput`), where click stops at the first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import click
from click.core import iter_params_for_processing


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


__all__ = [
    "FINITE",
    "POSITIVE_SECONDS",
    "BadInput",
    "FiniteFloat",
    "OneStageCommand",
    "Validator",
]

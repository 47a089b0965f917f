"""A job's ``[[scenarios]]`` compiled into programs: names, pacing, shares of the rate.

Each ``[[scenarios]]`` table (``name``, ``weight`` or ``clients``, its own
``steps``/``loop``/``rate``/``interval``/``deliveries``/``protocol``) is
checked here, every problem at once and located as ``scenarios[i]
(name): ...``, then handed to the workload's builder
(:mod:`wsload.common.workload`) as one program. Without its own rate, a
scenario takes a share of the job's ``rate`` in proportion to its clients
(fixed ``clients``, or ``weight`` of the rest); without its own
``protocol`` it speaks the file's top-level one. Apart from the workload
module so that each stays readable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from wsload.common.fanout_checks import LISTEN_HINT
from wsload.common.fields import MAX_CLIENTS, MAX_DURATION
from wsload.common.steps import MAX_NAME_LENGTH, MAX_STEPS
from wsload.common.stepvalues import unknown_keys
from wsload.common.validation import describe

if TYPE_CHECKING:
    from wsload.common.workload import _Build

SCENARIO_KEYS = (
    "name",
    "weight",
    "clients",
    "steps",
    "loop",
    "rate",
    "interval",
    "deliveries",
    "protocol",
)
#: Most ``[[scenarios]]`` one job may mix.
MAX_SCENARIOS = 100


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


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


def add_scenarios(build: _Build, raw: Any) -> None:
    spec = build.spec
    items, problems = _list(raw, "scenarios")
    build.problems += problems
    if len(items) > MAX_SCENARIOS or problems:
        build.problems += (
            [f"scenarios: {len(items)} scenarios, at most {MAX_SCENARIOS}"] if not problems else []
        )
        build.names_known = False
        return
    if items and (spec.steps or spec.loop):
        build.problems.append(
            "scenarios: top-level [[steps]]/[[loop]] and [[scenarios]] do not mix: "
            "move the steps into a scenario"
        )
    Pacing = tuple[float | None, float | None, int | None, float]
    parsed: list[tuple[str, Sequence[Any], Sequence[Any], Pacing, Any, Any]] = []
    seen: set[str] = set()
    total_steps = 0
    for i, table in enumerate(items, 1):
        if not isinstance(table, Mapping):
            build.problems.append(f"scenarios[{i}]: expected a table, got {describe(table)}")
            build.names_known = False
            continue
        name = table.get("name")
        label = name if isinstance(name, str) and name else "?"
        where = f"scenarios[{i}] ({label})"
        build.problems += unknown_keys(table, SCENARIO_KEYS, where)
        if not isinstance(name, str) or not name.strip():
            build.problems.append(f'scenarios[{i}]: needs name = "..."')
            build.names_known = False
        elif len(name) > MAX_NAME_LENGTH or not name.isprintable() or name != name.strip():
            build.problems.append(f"{where}: name must be printable, at most 100 characters")
        elif name in seen:
            build.problems.append(f"{where}: another scenario has the name {name!r}")
        if isinstance(name, str):
            seen.add(name)
        steps, p1 = _list(table.get("steps"), f"{where}: steps")
        loop, p2 = _list(table.get("loop"), f"{where}: loop")
        build.problems += p1 + p2
        build.names_known &= not p1 + p2
        total_steps += len(steps) + len(loop)
        if not steps and not loop and not p1 + p2:
            build.problems.append(
                f"{where}: needs [[scenarios.steps]] or [[scenarios.loop]]"
                + (LISTEN_HINT.format("scenarios.loop") if "deliveries" in table else "")
            )
        pacing = _scenario_pacing(where, table, build.problems)
        protocol = build.choose(table["protocol"], f"{where}: ") if "protocol" in table else None
        parsed.append((label, steps, loop, pacing, table.get("deliveries"), protocol))
    if total_steps > MAX_STEPS:
        build.problems.append(f"scenarios: {total_steps:,} steps in all, at most {MAX_STEPS:,}")
        build.names_known = False
        return
    fixed = sum(p[3][2] or 0 for p in parsed)
    weights = sum(p[3][3] for p in parsed if p[3][2] is None)
    if fixed > build.clients:
        build.problems.append(
            f"scenarios: their clients add up to {fixed}, more than the job's {build.clients}"
        )
    many = len(items) > 1
    for i, (label, steps, loop, pacing, deliveries, protocol) in enumerate(parsed):
        rate, interval, clients, weight = pacing
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
            (f"{where}steps: ", f"{where}loop: "),
            f"{label} " if many else "",
            deliveries,
            f"{where}deliveries: ",
            protocol,
            rate=rate,
            interval=spec.interval if interval is None else float(interval),
            clients=clients,
            weight=weight,
        )


__all__ = ["MAX_SCENARIOS", "SCENARIO_KEYS", "add_scenarios"]

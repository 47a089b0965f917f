"""A job's feeder and stages as its workload takes them: read, filled in, checked.

:func:`read_feeder` and :func:`fields_from_stages` run in ``build_spec``
(the feeder's file is read once, relative to the scenario file; the stages
set a duration and a client count not given); :func:`spec_feeder` and
:func:`stage_problems` are what :mod:`wsload.common.workload` asks of them
when it compiles a job. Apart, so that the workload module keeps to steps,
loops and scenarios.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsload.common.errors import SpecError
from wsload.common.feeder import (
    feeder_from_dict,
    feeder_table_problems,
    feeder_to_dict,
    load_feeder,
    mode_problem,
)
from wsload.common.program import Feeder
from wsload.common.stages import Profile, parse_stages

if TYPE_CHECKING:
    from wsload.common.spec import JobSpec

#: The problem of a ``[feeder]`` table whose file was not read into the spec.
NOT_READ = "feeder: the file was not read (build_spec reads it, relative to the scenario file)"


def spec_feeder(spec: JobSpec, problems: list[str]) -> Feeder | None:
    """The job's feeder as build_spec read it; None, its problems added, when it has none
    or it cannot be used."""
    raw = spec.feeder
    if not raw:
        return None
    if "columns" not in raw:  # a raw [feeder] table: build_spec reads the file
        table_problems = feeder_table_problems(raw)
        problems += table_problems or [NOT_READ]
        return None
    try:
        return feeder_from_dict(raw)
    except SpecError as exc:
        problems += exc.problems
        return None


def stage_problems(spec: JobSpec) -> list[str]:
    """With ``[[stages]]``, the stages set the run's length and its peak of clients."""
    if not spec.stages:
        return []
    stages, problems = parse_stages(spec.stages)
    if problems or not stages:
        return []  # said by workload_problems
    profile = Profile(stages)
    out: list[str] = []
    if not math.isclose(spec.duration, profile.duration, rel_tol=1e-9, abs_tol=1e-6):
        out.append(
            f"duration ({spec.duration:g} s) differs from the stages' total "
            f"({profile.duration:g} s): leave duration out, the stages set it"
        )
    if spec.num_clients != profile.peak_clients:
        out.append(
            f"num_clients ({spec.num_clients}) differs from the stages' peak "
            f"({profile.peak_clients}): leave it out, the stages set it"
        )
    if spec.ramp_up:
        out.append("ramp_up: the stages ramp the clients; leave ramp_up out")
    return out


def read_feeder(values: dict[str, Any], base: Path) -> list[str]:
    """Replace a ``[feeder]`` table by the feeder it names, read now (``file`` relative to
    ``base``, the scenario file's folder when the table came from it).

    The file is read even when the table has other problems (a misspelt
    mode or key), so that its own problems are said in the same pass and
    its columns still check the steps' variables; the table's problems are
    then returned here. A problem names the path looked for when the name
    was resolved relative to the scenario file.
    """
    table = values.get("feeder")
    if not isinstance(table, dict) or not table or "columns" in table:
        return []  # JobSpec.problems says what is wrong with it
    file = table.get("file")
    if not isinstance(file, str) or not file:
        return []  # the table's problem (no file) is said by JobSpec.problems
    table_problems = feeder_table_problems(table)
    mode = table.get("mode", "unique")
    good_mode = mode_problem(mode) is None
    path = base / file
    shown = file if Path(file).is_absolute() else f"{file} (looked for {path.absolute()})"
    try:
        feeder = load_feeder(path, mode if good_mode else "unique", shown)
    except SpecError as exc:
        return exc.problems  # the table stays; JobSpec.problems adds its own problems
    if not good_mode:
        # "random" checks what a bad mode can be checked for (a unique-only row count
        # would mislead); the mode's own problem is in table_problems
        feeder = replace(feeder, mode="random")
    values["feeder"] = feeder_to_dict(feeder)
    return table_problems


def fields_from_stages(values: dict[str, Any]) -> None:
    """With ``[[stages]]``, a duration or client count not given is the stages' own."""
    if not values.get("stages"):
        return
    stages, problems = parse_stages(values["stages"])
    if problems or not stages:
        return
    profile = Profile(stages)
    values.setdefault("duration", profile.duration)
    values.setdefault("num_clients", profile.peak_clients)


__all__ = ["NOT_READ", "fields_from_stages", "read_feeder", "spec_feeder", "stage_problems"]

"""Feeders: a CSV file whose rows become the template variables of the job's clients.

``[feeder] file = "users.csv", mode = "unique"`` gives client ``g`` (its
number over the whole job) the columns of row ``g`` as variables (``{user}``,
``{password}``). ``unique`` rows are disjoint across workers and hosts: the
coordinator hands each worker only the rows of its clients
(:func:`slice_feeder`), and a job with more clients than rows is refused
before it starts (:func:`feeder_problems`) rather than silently reusing
rows, which would log the same user in twice. ``cycle`` wraps around
(row ``g mod rows``), ``random`` draws a row per client; both send every
row to every worker, so they are bounded by what one job message carries.

Reading is bounded like :func:`wsload.common.scenario.read_toml`: at most
:data:`MAX_FEEDER_BYTES` and :data:`MAX_FEEDER_ROWS`, no directories or
devices, a FIFO read without hanging on a missing writer. Every failure is
one line naming the file, raised as :class:`wsload.common.errors.SpecError`.
The dict form (:func:`feeder_to_dict`) is plain lists and strings, so it
travels in ``JobSpec.to_dict()`` as msgpack; a worker checks it again with
:func:`feeder_from_dict`, since it arrives from the wire.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wsload.common.errors import SpecError
from wsload.common.program import Feeder
from wsload.common.protocol import MAX_CONTAINER_LEN, MAX_MESSAGE_BYTES
from wsload.common.scenario import read_bounded, read_problem
from wsload.common.stepvalues import did_you_mean, unknown_keys
from wsload.common.validation import describe

FEEDER_MODES = ("unique", "cycle", "random")
#: Keys of the scenario's ``[feeder]`` table.
FEEDER_KEYS = ("file", "mode")
#: Largest CSV file read: a list of users, not a data set.
MAX_FEEDER_BYTES = 64 * 1024 * 1024
#: Most rows kept (about 200 MB of Python strings on the coordinator at most).
MAX_FEEDER_ROWS = 1_000_000
MAX_FEEDER_COLUMNS = 256
#: Most rows one job message can carry: msgpack decoding refuses longer arrays.
#: ``cycle``/``random`` send every row to every worker; ``unique`` a worker's slice.
MAX_SHARED_ROWS = MAX_CONTAINER_LEN
#: Most bytes of fields a ``cycle``/``random`` feeder may hold (half a job message).
MAX_SHARED_BYTES = MAX_MESSAGE_BYTES // 2
#: Template variables a column must not shadow.
RESERVED_NAMES = frozenset({"client_id", "seq", "ts", "pad", "uuid", "random_int"})

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DICT_KEYS = ("file", "mode", "columns", "rows", "offset", "total")


def mode_problem(mode: Any) -> str | None:
    """One line when ``mode`` is not a feeder mode, with a did-you-mean; else None."""
    if isinstance(mode, str) and mode in FEEDER_MODES:
        return None
    hint, shown = "", describe(mode)
    if isinstance(mode, str):
        hint = did_you_mean(mode.lower(), FEEDER_MODES)
        shown = repr(mode[:40])
    choices = ", ".join(FEEDER_MODES)
    return f"feeder: mode {shown} is not one of {choices}{hint}"


def feeder_table_problems(table: Any) -> list[str]:
    """What is wrong with a scenario's raw ``[feeder]`` table (before the file is read)."""
    if not isinstance(table, Mapping):
        return [f'feeder: expected a table like {{file = "users.csv"}}, got {describe(table)}']
    problems = unknown_keys(table, FEEDER_KEYS, "feeder")
    file = table.get("file")
    if file is None:
        problems.append('feeder: needs file = "name.csv" (relative to the scenario file)')
    elif not isinstance(file, str) or not file:
        problems.append(f"feeder: file must be a non-empty string, got {describe(file)}")
    if "mode" in table and (p := mode_problem(table["mode"])):
        problems.append(p)
    return problems


def column_problems(columns: Sequence[Any]) -> list[str]:
    """What is wrong with a header: each column a unique template variable name."""
    problems: list[str] = []
    if not columns:
        problems.append("no columns")
    if len(columns) > MAX_FEEDER_COLUMNS:
        problems.append(f"{len(columns)} columns, at most {MAX_FEEDER_COLUMNS}")
        return problems
    seen: set[str] = set()
    for n, name in enumerate(columns, 1):
        if not isinstance(name, str) or not name:
            problems.append(f"column {n} has no name")
        elif not _IDENTIFIER.match(name):
            problems.append(
                f"column {name[:40]!r} is not a variable name "
                "(letters, digits and _, not starting with a digit)"
            )
        elif name in RESERVED_NAMES:
            problems.append(f"column {name!r} would hide the built-in variable {{{name}}}")
        elif name in seen:
            problems.append(f"column {name!r} appears twice")
        if isinstance(name, str):
            seen.add(name)
    if len(problems) > 5:  # a data file mistaken for a feeder: the first few say enough
        problems[5:] = [f"and {len(problems) - 5} more problems with column names"]
    return problems


def load_feeder(path: str | Path, mode: str = "unique", shown: str | None = None) -> Feeder:
    """The feeder in CSV file ``path``; :class:`SpecError` naming the file on any problem.

    ``shown`` is how a problem names the file (default: ``path``), e.g.
    ``users.csv (looked for /abs/dir/users.csv)`` when the name was resolved
    relative to the scenario file, so a user sees where it was looked for.

    The first row names the columns (surrounding spaces ignored); blank lines
    are skipped; every other row must have one field per column. A UTF-8
    byte order mark (spreadsheet exports) is ignored.
    """
    where = str(path)
    label = shown or where
    problems = [p] if (p := mode_problem(mode)) else []
    try:
        columns, rows = _parse(label, _read(where, label))
    except SpecError as exc:
        raise SpecError(problems + exc.problems) from None
    if problems:
        raise SpecError(problems)
    return Feeder(columns, rows, mode, 0, len(rows), where)


def _read(path: str, where: str) -> str:
    try:
        data = read_bounded(path, MAX_FEEDER_BYTES, devices=False)
    except OSError as exc:
        raise SpecError(["feeder: " + read_problem(where, exc, "CSV file")]) from None
    if len(data) > MAX_FEEDER_BYTES:
        limit = MAX_FEEDER_BYTES // (1024 * 1024)
        raise SpecError([f"feeder: {where}: larger than {limit} MiB; a feeder must be smaller"])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError([f"feeder: {where}: not UTF-8 text (byte {exc.start})"]) from None


def _parse(where: str, text: str) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[str, ...]] = []
    header: tuple[str, ...] | None = None
    bad_line = bad_fields = bad_count = 0
    try:
        for record in reader:
            if not record:
                continue  # a blank line
            if header is None:
                header = tuple(name.strip() for name in record)
                if problems := column_problems(header):
                    line = reader.line_num
                    raise SpecError([f"feeder: {where}: line {line}: {p}" for p in problems])
                continue
            if len(record) != len(header):
                if not bad_count:
                    bad_line, bad_fields = reader.line_num, len(record)
                bad_count += 1
                continue
            if len(rows) >= MAX_FEEDER_ROWS:
                raise SpecError([f"feeder: {where}: more than {MAX_FEEDER_ROWS} rows"])
            rows.append(tuple(record))
    except csv.Error as exc:
        raise SpecError([f"feeder: {where}: line {reader.line_num}: {exc}"]) from None
    if header is None:
        raise SpecError([f"feeder: {where}: empty; a feeder needs a header row and rows"])
    if bad_count:
        more = f" (and {bad_count - 1} more such rows)" if bad_count > 1 else ""
        raise SpecError(
            [
                f"feeder: {where}: line {bad_line} has {bad_fields} fields, "
                f"the header has {len(header)}{more}"
            ]
        )
    if not rows:
        raise SpecError([f"feeder: {where}: no rows after the header"])
    return header, tuple(rows)


def _name(feeder: Feeder) -> str:
    return os.path.basename(feeder.file) or "the feeder"


def feeder_problems(feeder: Feeder, clients: int) -> list[str]:
    """What stops ``feeder`` from serving a job of ``clients`` clients (before the run)."""
    name = _name(feeder)
    if feeder.mode == "unique":
        if feeder.total < clients:
            return [
                f"feeder: {name} has {feeder.total} rows, the job has {clients} clients "
                "(mode unique gives each client its own row): "
                'add rows or use mode = "cycle"'
            ]
        return []
    size = sum(len(field) + 1 for row in feeder.rows for field in row)
    if len(feeder.rows) > MAX_SHARED_ROWS or size > MAX_SHARED_BYTES:
        return [
            f"feeder: {name} has {len(feeder.rows)} rows ({size // 1024} KiB); mode "
            f"{feeder.mode} sends every row to every worker, which takes at most "
            f"{MAX_SHARED_ROWS} rows and {MAX_SHARED_BYTES // (1024 * 1024)} MiB: "
            'use mode = "unique" or fewer rows'
        ]
    return []


def feeder_to_dict(feeder: Feeder) -> dict[str, Any]:
    """Plain lists and strings (msgpack- and JSON-safe); :func:`feeder_from_dict` reverses it."""
    return {
        "file": feeder.file,
        "mode": feeder.mode,
        "columns": list(feeder.columns),
        "rows": [list(row) for row in feeder.rows],
        "offset": feeder.offset,
        "total": feeder.total,
    }


def _count(value: Any, default: int) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def feeder_from_dict(data: Any) -> Feeder:
    """The :class:`Feeder` of :func:`feeder_to_dict`'s form, checked: it may come from the wire."""
    if not isinstance(data, Mapping):
        raise SpecError([f"feeder: expected a table, got {describe(data)}"])
    problems = [f"feeder: unknown key {k!r}" for k in data if k not in _DICT_KEYS]
    file, mode = data.get("file", ""), data.get("mode", "unique")
    if not isinstance(file, str):
        problems.append(f"feeder: file must be a string, got {describe(file)}")
    if p := mode_problem(mode):
        problems.append(p)
    columns, rows = data.get("columns"), data.get("rows")
    if not isinstance(columns, list | tuple):
        problems.append(f"feeder: columns must be a list, got {describe(columns)}")
        columns = ()
    problems += [f"feeder: {p}" for p in column_problems(columns)]
    if not isinstance(rows, list | tuple):
        problems.append(f"feeder: rows must be a list, got {describe(rows)}")
        rows = ()
    elif len(rows) > MAX_FEEDER_ROWS:
        problems.append(f"feeder: more than {MAX_FEEDER_ROWS} rows")
        rows = ()
    for n, row in enumerate(rows):
        ok = isinstance(row, list | tuple) and all(isinstance(f, str) for f in row)
        if not ok or len(row) != len(columns):
            problems.append(f"feeder: row {n} must be {len(columns)} strings, got {describe(row)}")
            break
    offset, total = _count(data.get("offset"), 0), _count(data.get("total"), len(rows))
    if offset is None or total is None:
        problems.append("feeder: offset and total must be integers >= 0")
    elif mode == "unique" and offset + len(rows) > total:
        problems.append(f"feeder: rows {offset}..{offset + len(rows) - 1} exceed total {total}")
    elif mode != "unique" and (offset != 0 or total != len(rows) or not rows):
        problems.append(f"feeder: mode {mode} needs every row (offset 0, total = rows, >= 1)")
    if problems:
        raise SpecError(problems)
    return Feeder(
        tuple(columns),
        tuple(tuple(row) for row in rows),
        str(mode),
        offset or 0,
        total or 0,
        str(file),
    )


def feeder_covers(feeder: Feeder, client: int) -> bool:
    """Whether ``feeder`` holds job-wide client ``client``'s row (a worker given
    several shares, e.g. a lost worker's clients handed on, keeps a feeder per share)."""
    if feeder.mode != "unique":
        return True
    return feeder.offset <= client < feeder.offset + len(feeder.rows)


def slice_feeder(data: Mapping[str, Any], offset: int, count: int) -> dict[str, Any]:
    """The feeder (dict form) job-wide clients ``offset .. offset + count - 1`` need.

    ``unique``: only their rows, with ``offset`` set so that
    :meth:`Feeder.row_for` indexes them by job-wide client number;
    ``cycle``/``random``: every row (a copy of ``data``). Raises
    :class:`ValueError` when ``data`` does not hold those rows (the caller
    checked :func:`feeder_problems` first).
    """
    if offset < 0 or count < 0:
        raise ValueError(f"clients {offset}+{count}: offset and count must be >= 0")
    out = dict(data)
    if data.get("mode", "unique") != "unique":
        return out
    rows: Sequence[Any] = data["rows"]
    first = int(data.get("offset", 0))
    if offset < first or offset + count > first + len(rows):
        raise ValueError(
            f"feeder rows for clients {offset}..{offset + count - 1} are not in this feeder "
            f"(it holds rows {first}..{first + len(rows) - 1})"
        )
    start = offset - first
    out["rows"] = [list(row) for row in rows[start : start + count]]
    out["offset"] = offset
    return out


__all__ = [
    "FEEDER_KEYS",
    "FEEDER_MODES",
    "MAX_FEEDER_BYTES",
    "MAX_FEEDER_COLUMNS",
    "MAX_FEEDER_ROWS",
    "MAX_SHARED_BYTES",
    "MAX_SHARED_ROWS",
    "RESERVED_NAMES",
    "column_problems",
    "feeder_covers",
    "feeder_from_dict",
    "feeder_problems",
    "feeder_table_problems",
    "feeder_to_dict",
    "load_feeder",
    "mode_problem",
    "slice_feeder",
]

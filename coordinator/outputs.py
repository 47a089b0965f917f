"""Machine outputs of a run: JSON summary, per-second CSV, JUnit XML, and the writer.

Every output is written atomically: to a temporary file in the target's own
directory, flushed to disk (fsync), then renamed over the target, so a full
disk or a crash leaves the previous file or none, never a truncated one. A
path that exists and is not a regular file (``/dev/stdout``, a FIFO,
``/dev/full``) is written in place. ``-`` means standard output.

:func:`write_all` attempts every requested output even when one fails and
returns one line per failure; the caller reports them without changing the
run's verdict (the exit code already says what the file would have said).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from wsload.common.thresholds import STEP_PREFIX, ThresholdError, parse_threshold
from wsload.coordinator.errors import CoordinatorError
from wsload.coordinator.figures import RunFigures, SecondSummary
from wsload.coordinator.summary import RunSummary
from wsload.coordinator.verdict import never_met_line

SCHEMA_VERSION = 1
#: The CSV's first columns, as they have always been (positional readers keep working).
CSV_COLUMNS = ("time", "clients", "sent", "received", "errors", "p50_ms", "p95_ms", "p99_ms")
#: Then the wall clock (ISO 8601 UTC, the end of the row's second), rates per second and the
#: counters that say what went wrong and when: the same columns in every run.
CSV_MORE_COLUMNS = ("timestamp", "sent_per_s", "received_per_s")
#: Counters shown as they were counted in each second (after ``received_per_s``).
CSV_COUNTERS = ("timed_out", "failed", "lost", "late", "unsolicited", "connects",
                "reconnects", "disconnects", "connect_failures")  # fmt: skip
#: A conversation's CSV adds these columns per ``expect`` step, as ``step.<name>.<counter>``.
CSV_STEP_COUNTERS = ("expected", "met", "timed_out", "failed")
#: Last, one ``error.<kind>`` column per error kind the run saw (sorted by kind).
CSV_ERROR_PREFIX = "error."
#: The path that means standard output.
STDOUT = "-"


def check_writable(*paths: str | None) -> None:
    """Refuse, before a run starts, report paths that could not be written after it."""
    if sum(1 for p in paths if p == STDOUT) > 1:
        raise CoordinatorError("only one output can go to standard output (-)")
    for path in paths:
        if not path or path == STDOUT:
            continue
        target = Path(path)
        folder = target.parent if str(target.parent) else Path(".")
        if target.is_dir():
            raise CoordinatorError(f"cannot write {path}: it is a directory")
        if not folder.is_dir():
            raise CoordinatorError(f"cannot write {path}: no directory {folder}")
        if target.exists() and not target.is_file():
            if not os.access(target, os.W_OK):
                raise CoordinatorError(f"cannot write {path}: permission denied")
            continue  # a device or FIFO: written in place, the folder need not be writable
        if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
            raise CoordinatorError(f"cannot write {path}: permission denied")


def _umask() -> int:
    """The process umask, read without changing it (Linux), else the usual 022."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def _write(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see the module docstring); ``-`` is stdout."""
    try:
        if path == STDOUT:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        target = Path(path)
        try:
            mode = target.stat().st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            with target.open("w") as out:  # a device or a FIFO: there is nothing to rename
                out.write(text)
            return
        _atomic_write(target, text.encode(), stat.S_IMODE(mode) if mode else 0o666 & ~_umask())
    except OSError as exc:
        raise CoordinatorError(f"cannot write {path}: {exc.strerror or exc}") from None


def _atomic_write(target: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


@dataclass(frozen=True)
class Output:
    """One requested output: where, and how to render it (called only when written)."""

    path: str
    render: Callable[[], str]


def write_all(outputs: Sequence[Output]) -> list[str]:
    """Write each output, whatever happened to the others; one line per failure."""
    failures = []
    for output in outputs:
        try:
            text = output.render()
        except Exception as exc:  # one broken report must not cost the others
            failures.append(f"cannot write {output.path}: rendering failed: {exc!r}")
            continue
        try:
            _write(output.path, text)
        except CoordinatorError as exc:
            failures.append(str(exc))
    return failures


def json_text(document: RunSummary | Mapping[str, Any]) -> str:
    """The JSON document: a run summary's :meth:`~RunSummary.to_json`, or a document of modes."""
    body = document.to_json() if isinstance(document, RunSummary) else dict(document)
    return json.dumps({"schema_version": SCHEMA_VERSION, **body}, indent=2) + "\n"


def write_json(path: str, document: RunSummary | Mapping[str, Any]) -> None:
    _write(path, json_text(document))


def csv_text(source: RunFigures | Sequence[SecondSummary]) -> str:
    """One row per second of the run: what was counted in it, as it happened.

    Columns: :data:`CSV_COLUMNS` (the second's end from the start, connected
    clients at its end, counts in it, percentiles; ``-`` for a second with
    no samples), then :data:`CSV_MORE_COLUMNS` and :data:`CSV_COUNTERS`:
    the wall-clock end of the second (``-`` when the start is not known),
    sent and received per second of the run the row covers (the last
    second may be a part of one; a second after the run's end, where
    in-flight answers drained, has ``-``: no load was applied in it) and
    the second's timeouts, failures, losses, late and unsolicited
    messages, connections opened, reconnects, disconnects and failed
    connects.

    A conversation's rows go on with each ``expect`` step's counts in that
    second (``step.<name>.expected``, ``.met``, ``.timed_out``, ``.failed``):
    given the run's :class:`RunFigures`, every step of the workload has its
    columns in the workload's order, zeros in a second where nothing
    happened, so the columns are the same from run to run of one scenario
    (CI parses them); given only the series, the steps that appear in it.
    An echo run's rows have none. Last, one ``error.<kind>`` column per
    error kind of the run, by kind: when each error happened (workers bound
    the kinds, so the columns are bounded too).
    """
    started: float | None = None
    elapsed: float | None = None
    if isinstance(source, RunFigures):
        series: Sequence[SecondSummary] = source.time_series
        steps = [s.name for s in source.steps]
        kinds = set(source.errors)
        started, elapsed = source.started_at, source.elapsed
    else:
        series = source
        steps = []
        kinds = set()
    steps += [n for n in dict.fromkeys(n for row in series for n in row.steps) if n not in steps]
    kinds |= {k for row in series for k in row.errors}
    errors = sorted(kinds)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            *CSV_COLUMNS,
            *CSV_MORE_COLUMNS,
            *CSV_COUNTERS,
            *(f"step.{n}.{k}" for n in steps for k in CSV_STEP_COUNTERS),
            *(CSV_ERROR_PREFIX + k for k in errors),
        ]
    )
    clients = 0
    for row in series:
        c = row.counters
        clients += c.clients_connected
        covered = _covered(row.second, elapsed)
        writer.writerow(
            [
                row.second + 1,
                clients,
                c.sent,
                c.received,
                sum(row.errors.values()),
                *(_ms(row.latency.get(k)) for k in ("p50", "p95", "p99")),
                _timestamp(started, row.second + 1),
                _rate(c.sent, covered),
                _rate(c.received, covered),
                *(getattr(c, k) for k in CSV_COUNTERS),
                *(
                    getattr(row.steps[n], k) if n in row.steps else 0
                    for n in steps
                    for k in CSV_STEP_COUNTERS
                ),
                *(row.errors.get(k, 0) for k in errors),
            ]
        )
    return out.getvalue()


def _covered(second: int, elapsed: float | None) -> float | None:
    """How much of the run's load phase second ``second`` covers: 1, less for the last
    (partial) one, None after the end (the drain) or when the run's length is not known
    (then each row is taken as a whole second)."""
    if elapsed is None:
        return 1.0
    part = min(1.0, elapsed - second)
    return part if part > 0 else None


def _rate(count: int, covered: float | None) -> str:
    return "-" if covered is None else f"{count / covered:.1f}"


def _timestamp(started: float | None, offset: float) -> str:
    """ISO 8601 UTC with milliseconds, ``started + offset``; ``-`` when the start is not known."""
    if started is None:
        return "-"
    moment = datetime.fromtimestamp(started + offset, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _ms(seconds: float | None) -> str:
    """Milliseconds, or ``-`` for a second with no samples (not 0: nothing was measured)."""
    return "-" if seconds is None else f"{seconds * 1000:.3f}"


def write_csv(path: str, source: RunFigures | Sequence[SecondSummary]) -> None:
    _write(path, csv_text(source))


def write_text(path: str, text: str) -> None:
    _write(path, text)


def _case(classname: str, name: str, failure: str = "", text: str = "") -> ET.Element:
    """A test case; failed when ``failure`` (the message) is given, ``text`` its body."""
    case = ET.Element("testcase", classname=classname, name=name)
    if failure:
        ET.SubElement(case, "failure", message=failure).text = text or failure
    return case


def _threshold_case(mode: str, name: str, passed: bool, shown: str) -> ET.Element:
    failure = "" if passed else f"measured {shown}"
    return _case(f"wsload.{mode}.thresholds", name, failure, f"{name} failed: {failure}")


def _step_cases(mode: str, summary: RunSummary) -> list[ET.Element]:
    """One case per ``expect`` step: failed when it was never met (as the verdict says), had
    timeouts or failures, or failed a threshold of its own; skipped when it never began."""
    failed_thresholds: dict[str, list[str]] = {}
    for t in summary.verdict.thresholds:
        if t.passed or not t.threshold.lstrip().startswith(STEP_PREFIX):
            continue
        with contextlib.suppress(ThresholdError):
            name = parse_threshold(t.threshold).step
            if name is not None:
                line = f"threshold {t.threshold} failed (measured {t.shown})"
                failed_thresholds.setdefault(name, []).append(line)
    cases = []
    for step in summary.figures.steps:
        c = step.counters
        counts = ((c.timed_out, "timed out"), (c.failed, "failed"))
        problems = [never_met_line(step)] if c.expected and not c.met else []
        problems += [f"{n} {what} of {c.expected} expected" for n, what in counts if n]
        problems += failed_thresholds.get(step.name, [])
        message = "; ".join(problems)
        case = _case(f"wsload.{mode}.steps", step.name, message)
        if not c.expected and not problems:
            ET.SubElement(case, "skipped", message="never began: no client reached it")
        cases.append(case)
    return cases


def _fanout_cases(mode: str, summary: RunSummary) -> list[ET.Element]:
    """One case for a run's deliveries: failed when any went missing or a ``fanout.*``
    threshold failed; none when the run published and received nothing."""
    fanout = summary.figures.fanout
    if fanout is None or not fanout.active:
        return []
    t = fanout.total
    problems = [f"{t.missing} of {t.expected} deliveries missing"] if t.missing else []
    problems += [
        f"threshold {r.threshold} failed (measured {r.shown})"
        for r in summary.verdict.thresholds
        if not r.passed and r.threshold.lstrip().startswith("fanout.")
    ]
    if fanout.missing_sample:
        first = fanout.missing_sample[0]
        problems.append(f"first missing: {first.topic}#{first.seq} to client {first.client}")
    failure = "; ".join(problems)
    return [_case(f"wsload.{mode}", "fanout", failure)]


def _summary_cases(mode: str, summary: RunSummary) -> list[ET.Element]:
    """A load run's cases: its thresholds, its steps, "tested something", its workers."""
    cases = [
        _threshold_case(mode, t.threshold, t.passed, t.shown) for t in summary.verdict.thresholds
    ]
    cases += _step_cases(mode, summary)
    cases += _fanout_cases(mode, summary)
    empty = summary.verdict.nothing_tested
    if empty:
        cases.append(_case(f"wsload.{mode}", "tested something", empty))
    lost = summary.ending.lost_workers
    if lost:
        cases.append(_case(f"wsload.{mode}", "workers", f"lost workers: {', '.join(lost)}"))
    return cases


def _document_cases(mode: str, summary: Mapping[str, Any]) -> list[ET.Element]:
    """A mode's cases from its JSON document (functional checks, ``test --load``)."""
    cases = [
        _threshold_case(mode, t["threshold"], t["passed"], t["shown"])
        for t in summary.get("thresholds", [])
    ]
    for c in summary.get("checks", []):
        case = ET.Element(
            "testcase", classname=f"wsload.{mode}", name=c["name"], time=f"{c['duration']:.3f}"
        )
        if c["status"] == "fail":
            ET.SubElement(case, "failure", message=c["reason"]).text = c["reason"]
        elif c["status"] == "skip":
            ET.SubElement(case, "skipped", message=c["reason"])
        cases.append(case)
    if summary.get("nothing_tested"):
        cases.append(_case(f"wsload.{mode}", "tested something", summary["nothing_tested"]))
    if summary.get("lost_workers"):
        lost = ", ".join(summary["lost_workers"])
        cases.append(_case(f"wsload.{mode}", "workers", f"lost workers: {lost}"))
    return cases


def junit_text(suites: Mapping[str, RunSummary | Mapping[str, Any]]) -> str:
    """A JUnit document: thresholds and functional checks as test cases, per mode."""
    root = ET.Element("testsuites", name="wsload")
    for mode, summary in suites.items():
        if isinstance(summary, RunSummary):
            cases = _summary_cases(mode, summary)
        else:
            cases = _document_cases(mode, summary)
        failures = sum(1 for c in cases if c.find("failure") is not None)
        skipped = sum(1 for c in cases if c.find("skipped") is not None)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=f"wsload {mode}",
            tests=str(len(cases)),
            failures=str(failures),
            skipped=str(skipped),
            errors="0",
        )
        suite.extend(cases)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(path: str, suites: Mapping[str, RunSummary | Mapping[str, Any]]) -> None:
    _write(path, junit_text(suites))


__all__ = [
    "CSV_COLUMNS",
    "CSV_COUNTERS",
    "CSV_ERROR_PREFIX",
    "CSV_MORE_COLUMNS",
    "CSV_STEP_COUNTERS",
    "SCHEMA_VERSION",
    "STDOUT",
    "Output",
    "check_writable",
    "csv_text",
    "json_text",
    "junit_text",
    "write_all",
    "write_csv",
    "write_json",
    "write_junit",
    "write_text",
]

"""Machine outputs of a run: JSON summary, per-second CSV, JUnit XML.

Each writer takes the summary dict (plus the time series for CSV) and a
path, and turns an unwritable path into a one-line :class:`CoordinatorError`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from coordinator.errors import CoordinatorError

SCHEMA_VERSION = 1
CSV_COLUMNS = ("time", "clients", "sent", "received", "errors", "p50_ms", "p95_ms", "p99_ms")


def check_writable(*paths: str | None) -> None:
    """Refuse, before a run starts, report paths that could not be written after it."""
    for path in paths:
        if not path:
            continue
        target = Path(path)
        folder = target.parent if str(target.parent) else Path(".")
        if target.is_dir():
            raise CoordinatorError(f"cannot write {path}: it is a directory")
        if not folder.is_dir():
            raise CoordinatorError(f"cannot write {path}: no directory {folder}")
        if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
            raise CoordinatorError(f"cannot write {path}: permission denied")


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError as exc:
        raise CoordinatorError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_json(path: str, summary: dict[str, Any]) -> None:
    _write(path, json.dumps({"schema_version": SCHEMA_VERSION, **summary}, indent=2) + "\n")


def csv_text(series: list[dict[str, Any]]) -> str:
    """One row per second: connected clients at the end of it, counts in it, percentiles."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    clients = 0
    for row in series:
        clients += row.get("clients_connected", 0)
        errors = sum(row.get("errors", {}).values())
        writer.writerow(
            [
                row["second"] + 1,
                clients,
                row.get("sent", 0),
                row.get("received", 0),
                errors,
                *(f"{row.get(k, 0.0) * 1000:.3f}" for k in ("p50", "p95", "p99")),
            ]
        )
    return out.getvalue()


def write_csv(path: str, series: list[dict[str, Any]]) -> None:
    _write(path, csv_text(series))


def write_text(path: str, text: str) -> None:
    _write(path, text)


def junit_text(suites: dict[str, dict[str, Any]]) -> str:
    """A JUnit document: thresholds and functional checks as test cases, per mode."""
    root = ET.Element("testsuites", name="wsload")
    for mode, summary in suites.items():
        cases: list[ET.Element] = []
        for t in summary.get("thresholds", []):
            case = ET.Element(
                "testcase", classname=f"wsload.{mode}.thresholds", name=t["threshold"]
            )
            if not t["passed"]:
                ET.SubElement(
                    case, "failure", message=f"measured {t['shown']}"
                ).text = f"{t['threshold']} failed: measured {t['shown']}"
            cases.append(case)
        for c in summary.get("checks", []):
            case = ET.Element(
                "testcase", classname=f"wsload.{mode}", name=c["name"], time=f"{c['duration']:.3f}"
            )
            if c["status"] == "fail":
                ET.SubElement(case, "failure", message=c["reason"]).text = c["reason"]
            elif c["status"] == "skip":
                ET.SubElement(case, "skipped", message=c["reason"])
            cases.append(case)
        if summary.get("lost_workers"):
            case = ET.Element("testcase", classname=f"wsload.{mode}", name="workers")
            lost = ", ".join(summary["lost_workers"])
            ET.SubElement(case, "failure", message=f"lost workers: {lost}")
            cases.append(case)
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


def write_junit(path: str, suites: dict[str, dict[str, Any]]) -> None:
    _write(path, junit_text(suites))


__all__ = [
    "CSV_COLUMNS",
    "SCHEMA_VERSION",
    "check_writable",
    "csv_text",
    "junit_text",
    "write_csv",
    "write_json",
    "write_junit",
    "write_text",
]

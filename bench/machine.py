"""The machine a benchmark ran on, printed beside every figure."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

LIBRARIES = ("websockets", "picows", "uvloop", "pyzmq", "msgpack", "numpy", "aiohttp")


def describe() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    libs = []
    for name in LIBRARIES:
        try:
            libs.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return (
        f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; " + ", ".join(libs)
    )


@dataclass(frozen=True)
class Figure:
    """One measured figure: what, how much, the goal, and whether it met it.

    ``met`` is None for a reference (no goal of its own); ``note`` says what
    it was measured beside (a ratio to the reference in the same run) or
    which side saturated.
    """

    name: str
    value: str
    goal: str = ""
    met: bool | None = None
    note: str = ""


def report(figures: list[Figure]) -> str:
    """The machine, then one aligned table of figures."""
    width = max(len(f.name) for f in figures)
    vwidth = max(len(f.value) for f in figures)
    gwidth = max(len(f.goal) for f in figures)
    lines = [f"machine: {describe()}", ""]
    lines.append(f"  {'figure':<{width}}  {'value':>{vwidth}}  {'goal':<{gwidth}}  verdict")
    for f in figures:
        verdict = {True: "met", False: "MISSED", None: "-"}[f.met]
        line = f"  {f.name:<{width}}  {f.value:>{vwidth}}  {f.goal:<{gwidth}}  {verdict}"
        lines.append(line + (f"  ({f.note})" if f.note else ""))
    return "\n".join(lines)

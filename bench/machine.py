"""The machine a benchmark ran on, printed beside every figure."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

LIBRARIES = ("websockets", "uvloop", "pyzmq", "msgpack", "numpy", "aiohttp")


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


def table(rows: list[tuple[str, str, str]]) -> str:
    """Rows of (figure, value, goal) aligned for a terminal."""
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"  {name:<{width}}  {value:>16}  {goal}" for name, value, goal in rows)

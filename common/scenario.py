"""Reading a TOML scenario file, bounded: a hostile or mistaken path costs one line, never memory.

:func:`read_toml` reads at most :data:`MAX_SCENARIO_BYTES` (1 MiB) plus one
byte, so ``--scenario /dev/zero`` is refused at once instead of reading until
``MemoryError``; a FIFO is opened without blocking, so a pipe nobody writes
to reads as empty rather than hanging; nesting deep enough to exhaust the
parser's recursion is refused as such, not as a 3,000-line traceback. Every
failure is a :class:`wsload.common.errors.SpecError` with one line naming the file.
"""

from __future__ import annotations

import errno
import os
import stat
import tomllib
from pathlib import Path
from typing import Any

from wsload.common.errors import SpecError

#: Largest scenario file read (a conversation and settings, not a data set).
MAX_SCENARIO_BYTES = 1024 * 1024


def read_bounded(path: str | Path, limit: int, *, devices: bool = True) -> bytes:
    """At most ``limit + 1`` bytes of ``path`` (one more tells it is too big).

    A FIFO is opened without blocking, then read once its writer is there;
    a directory raises IsADirectoryError; with ``devices=False`` anything but
    a regular file or a pipe (``/dev/zero``, a terminal) raises ENODEV
    before a byte is read. Shared by every bounded read of a user's file
    (scenarios, feeders).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory")
        if stat.S_ISFIFO(mode):  # a pipe: wait for its writer, now that open did not hang
            os.set_blocking(fd, True)
        elif not devices and not stat.S_ISREG(mode):
            raise OSError(errno.ENODEV, "is a device")
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_problem(where: str, exc: OSError, noun: str) -> str:
    """The one line saying why ``read_bounded`` could not read ``where`` (a ``noun``)."""
    if isinstance(exc, FileNotFoundError):
        return f"{where}: {noun} not found"
    if isinstance(exc, IsADirectoryError):
        return f"{where}: is a directory, not a {noun}"
    if isinstance(exc, PermissionError):
        return f"{where}: permission denied"
    if isinstance(exc, BlockingIOError):
        return f"{where}: nothing to read (a device or socket that would block)"
    if exc.errno == errno.ENODEV:
        return f"{where}: is a device, not a {noun}"
    return f"{where}: cannot read: {exc.strerror or exc}"


def read_toml(path: str | Path) -> dict[str, Any]:
    """The TOML document in ``path``; :class:`SpecError` with one line on any failure."""
    where = str(path)
    try:
        data = read_bounded(path, MAX_SCENARIO_BYTES)
    except OSError as exc:
        raise SpecError([read_problem(where, exc, "scenario file")]) from None
    if len(data) > MAX_SCENARIO_BYTES:
        raise SpecError(
            [f"{where}: larger than {MAX_SCENARIO_BYTES // 1024} KiB; a scenario must be smaller"]
        )
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SpecError([f"{where}: not UTF-8 text (byte {exc.start})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError([f"{where}: invalid TOML: {exc}"]) from None
    except RecursionError:
        raise SpecError([f"{where}: arrays or tables nested too deep"]) from None


__all__ = ["MAX_SCENARIO_BYTES", "read_bounded", "read_problem", "read_toml"]

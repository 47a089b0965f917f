"""Real processes on loopback: the reference test server as a subprocess fixture.

``serve_factory`` starts ``wsload serve --port 0 [flags]`` through the
installed console script (next to ``sys.executable``), so every test drives
the same process a user runs: real sockets, real signal handling, real exit
codes. It waits for the one URL line the server prints, hands back the URLs,
and terminates and waits for every server it started when the test ends,
whether the test passed, failed or timed out inside the fixture.

The server's stderr goes to a temporary file (never a pipe nobody reads, which
could fill up and block it), so a test can assert it logged no traceback.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

import pytest

WSLOAD = str(Path(sys.executable).with_name("wsload"))
STARTUP_TIMEOUT = 15.0  # seconds; a cold start takes well under one
STOP_TIMEOUT = 10.0

URL_LINE = re.compile(r"^wsload test server listening on (ws://\S+/ws) api (http://\S+/api)$")


@dataclass
class RunningServer:
    """A ``wsload serve`` child process and the URLs it printed.

    ``ws_url`` is ``ws://HOST:PORT/ws``; ``api_url`` is ``http://HOST:PORT/api``
    (append ``/stats``, ``/events``, ...).
    """

    proc: subprocess.Popen[str]
    ws_url: str
    api_url: str
    line: str
    stderr_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        port = urlsplit(self.ws_url).port
        assert port is not None
        return port

    def stderr(self) -> str:
        """Everything the server wrote to stderr so far."""
        if self.stderr_file is None or self.stderr_file.closed:
            return ""
        self.stderr_file.flush()
        self.stderr_file.seek(0)
        return self.stderr_file.read().decode(errors="replace")

    def stop(self) -> int:
        """Terminate (then kill, if it must) and wait; returns the exit code. Idempotent."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode

    def close(self) -> None:
        """Stop the server and release its stderr file."""
        try:
            self.stop()
        finally:
            if self.stderr_file is not None:
                self.stderr_file.close()


class ServerFactory(Protocol):
    """``serve_factory(*flags, host=...)``: start a server; the fixture stops it."""

    def __call__(self, *args: str, host: str = "127.0.0.1") -> RunningServer: ...


def stats(api_url: str) -> dict[str, Any]:
    """The reference server's own counters (``GET /api/stats``): the ground truth."""
    with urllib.request.urlopen(f"{api_url}/stats", timeout=5) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Poll ``check()`` every 50 ms until it is true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux /proc); none once it has exited."""
    out: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(p) for p in (task / "children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []
    return out


def reap(*procs: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    """Kill whichever of ``procs`` still runs, and wait for all: a test's ``finally``."""
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def start_server(*args: str, host: str = "127.0.0.1") -> RunningServer:
    """Start ``wsload serve --host HOST --port 0 ARGS`` and wait for its URL line.

    Raises RuntimeError (with the server's stderr) if it exits or stays
    silent instead; the process is killed and waited for in that case too.
    The caller owns the result and must :meth:`RunningServer.close` it.
    """
    stderr_file = tempfile.TemporaryFile()  # noqa: SIM115 (owned by the server, see close())
    proc = subprocess.Popen(
        [WSLOAD, "serve", "--host", host, "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    server = RunningServer(proc, "", "", "", stderr_file)
    try:
        line = _read_line(proc, STARTUP_TIMEOUT)
        found = URL_LINE.match(line.rstrip("\n"))
        if not found:
            server.stop()
            raise RuntimeError(
                f"wsload serve {' '.join(args)} did not start: stdout {line!r}, "
                f"exit code {proc.returncode}, stderr {server.stderr()!r}"
            )
    except BaseException:
        server.close()
        raise
    server.line = line
    server.ws_url, server.api_url = found.group(1), found.group(2)
    return server


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The first stdout line, or "" if none comes within ``timeout`` (then it is killed)."""
    assert proc.stdout is not None
    stdout = proc.stdout
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():  # silent: kill it, which ends the readline with EOF
        proc.kill()
        proc.wait()
        reader.join(STOP_TIMEOUT)
    return lines[0] if lines else ""


@pytest.fixture
def serve_factory() -> Iterator[ServerFactory]:
    """Start test servers with given flags; every one is stopped after the test."""
    with contextlib.ExitStack() as cleanup:

        def factory(*args: str, host: str = "127.0.0.1") -> RunningServer:
            server = start_server(*args, host=host)
            cleanup.callback(server.close)
            return server

        yield factory

"""Real processes on loopback: the reference test server as a subprocess fixture."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

WSLOAD = str(Path(sys.executable).with_name("wsload"))
_LINE = re.compile(r"listening on (ws://\S+) api (http://\S+)")


@dataclass
class RunningServer:
    """A ``wsload serve`` child process and the URLs it printed."""

    proc: subprocess.Popen[str]
    ws_url: str
    api_url: str
    line: str

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


ServerFactory = Callable[..., RunningServer]


def start_server(*args: str) -> RunningServer:
    """Start ``wsload serve --port 0 ARGS`` and wait for its URL line."""
    proc = subprocess.Popen(
        [WSLOAD, "serve", "--host", "127.0.0.1", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    found = _LINE.search(line)
    if not found:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"test server did not start: {line!r}")
    return RunningServer(proc, found.group(1), found.group(2), line)


@pytest.fixture
def serve_factory() -> Iterator[ServerFactory]:
    """Start test servers with given flags; every one is stopped after the test."""
    started: list[RunningServer] = []

    def factory(*args: str) -> RunningServer:
        server = start_server(*args)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()

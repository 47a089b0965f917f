"""The reference test server as a child process, for ``wsload run --demo``.

Started as ``wsload serve --port 0`` (a free port) rather than imported, so
the coordinator keeps no dependency on the test server's code, and stopped
(terminate, then kill) when the run ends.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wsload.coordinator.errors import CoordinatorError

_URL = re.compile(r"(ws://\S+)")


class DemoServer:
    """A running ``wsload serve`` on loopback; ``ws_url`` is where it listens."""

    def __init__(self, *args: str) -> None:
        wsload = Path(sys.executable).with_name("wsload")
        cmd = [str(wsload), "serve", "--host", "127.0.0.1", "--port", "0", *args]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = _URL.search(line)
        if not found:
            self.close()
            raise CoordinatorError(f"the demo test server did not start ({line.strip()!r})")
        self.ws_url = found.group(1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stats(self) -> dict[str, Any]:
        """The server's own counters (``GET /api/stats``)."""
        url = self.ws_url.replace("ws://", "http://").removesuffix("/ws") + "/api/stats"
        with urllib.request.urlopen(url, timeout=5) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data

    @classmethod
    @contextlib.contextmanager
    def maybe(cls, wanted: bool, job: dict[str, Any]) -> Iterator[DemoServer | None]:
        """A running demo server when ``wanted``, else None."""
        if not wanted:
            yield None
            return
        if job.get("ws_url"):
            raise CoordinatorError("--demo starts its own target: drop --ws-url (or --demo)")
        server = cls()
        try:
            yield server
        finally:
            server.close()

"""The reference test server as a child process, for ``wsload run --demo``.

Started as ``wsload serve --port 0`` (a free port) rather than imported, so
the coordinator keeps no dependency on the test server's code, and stopped
(terminate, then kill) when the run ends.

The demo loads the endpoint the job's own URL names: ``/ws`` (echo, the
default) or ``/chat`` (the conversation target, heartbeats every second), so
``wsload run --demo --scenario examples/chat.toml`` runs the chat example
against the demo server with nothing else changed; any other path is refused
before anything starts.
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
from urllib.parse import urlsplit

from wsload.coordinator.errors import CoordinatorError

_URL = re.compile(r"(ws://\S+)")
#: The reference server's WebSocket endpoints, the paths a demo can load.
DEMO_PATHS = ("/ws", "/chat", "/pubsub")


def demo_path_problem(ws_url: str) -> str | None:
    """Why ``--demo`` cannot load the endpoint ``ws_url`` names (None when it can)."""
    path = urlsplit(ws_url).path or "/ws"
    if path in DEMO_PATHS:
        return None
    return (
        f"--demo serves {', '.join(DEMO_PATHS[:-1])} and {DEMO_PATHS[-1]}, "
        f"not the path of ws_url {path!r}: "
        "use one of those or drop --demo"
    )


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

    def url_for(self, ws_url: str) -> str:
        """The demo server's URL for the endpoint ``ws_url`` names (/ws, /chat or /pubsub)."""
        problem = demo_path_problem(ws_url)
        if problem:
            raise CoordinatorError(problem)
        return self.ws_url.removesuffix("/ws") + (urlsplit(ws_url).path or "/ws")

    def note(self, ws_url: str) -> str:
        """One line: what the server itself counted on the endpoint the run loaded."""
        s = self.stats()
        if urlsplit(ws_url).path == "/pubsub":
            t = s["pubsub"]["total"]
            return (
                f"  the reference server itself counted: {t['published']} published, "
                f"{t['deliveries']} deliveries, {t['dropped']} dropped, "
                f"{t['duplicated']} duplicated, {t['dropped_slow']} dropped (slow subscribers)"
            )
        if urlsplit(ws_url).path == "/chat":
            c = s["chat"]
            return (
                f"  the reference server itself counted: {c['logins']} logins, "
                f"{c['joins']} joins, {c['messages']} messages, {c['acks']} acks, "
                f"{c['broadcasts']} broadcasts, {c['heartbeats']} heartbeats, "
                f"{c['connections']} connections"
            )
        return (
            f"  the reference server itself counted: {s['messages_received']} received, "
            f"{s['messages_sent']} sent, {s['connections_opened']} connections"
        )

    @property
    def api_url(self) -> str:
        """The demo server's HTTP API (what ``post`` steps and event triggers reach)."""
        return self.ws_url.replace("ws://", "http://").removesuffix("/ws") + "/api"

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

"""Worker liveness on a thread of its own, off the busy event loop.

A worker's event loop can be saturated by its clients for seconds at a time;
if heartbeats rode on it, a busy worker would look dead (the classic
"failed to send heartbeat, setting state to missing" of Locust's
distributed mode). So a dedicated thread owns a second DEALER socket,
identified as ``<worker_id>#hb``, that sends a heartbeat every interval and
watches the coordinator's heartbeats.

The same thread enforces the dead-man rule (:mod:`wsload.worker.deadman`): when the
coordinator has been silent for ``silence_timeout`` seconds it calls
``on_silence`` (once per silence) so the loop stops its load; if the load
has not stopped ``grace`` seconds later (the loop is starved), it prints one
line and exits the process with :data:`EXIT_DEADMAN`, which closes every
connection. No load outlives its coordinator.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from wsload.common.endpoint import Endpoint, parse_endpoint, socket_options
from wsload.common.errors import ProtocolError
from wsload.common.protocol import HEARTBEAT_SUFFIX, Heartbeat, decode, encode
from wsload.worker.deadman import Action, DeadMan

#: Exit code of a worker that had to exit because its load would not stop.
EXIT_DEADMAN = 3


def hard_exit(reason: str) -> None:
    """One line on stderr, then leave at once: the kernel closes every socket."""
    with contextlib.suppress(OSError):
        os.write(2, f"wsload worker: {reason}\n".encode(errors="replace"))
    os._exit(EXIT_DEADMAN)


class HeartbeatThread(threading.Thread):
    """Sends heartbeats and watches for the coordinator's; stops with :meth:`close`."""

    def __init__(
        self,
        ctx: zmq.Context[zmq.Socket[bytes]],
        endpoint: str | Endpoint,
        worker_id: str,
        *,
        on_silence: Callable[[], None],
        interval: float = 1.0,
        silence_timeout: float = 5.0,
        configure: Callable[[Any], None] | None = None,
        on_deadline: Callable[[str], None] = hard_exit,
    ) -> None:
        super().__init__(name=f"heartbeat-{worker_id}", daemon=True)
        self._ctx = ctx
        self._endpoint = (
            endpoint if isinstance(endpoint, Endpoint) else parse_endpoint(endpoint, bind=False)
        )
        self._identity = (worker_id + HEARTBEAT_SUFFIX).encode()
        self._on_silence = on_silence
        self._on_deadline = on_deadline
        self._interval = interval
        self._configure = configure
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._deadman = DeadMan(silence_timeout, time.monotonic())
        self._grace = 0.0

    @property
    def coordinator_silent_for(self) -> float:
        with self._lock:
            return self._deadman.silent_for(time.monotonic())

    def mark_seen(self) -> None:
        """Any message from the coordinator proves it alive (called from the loop too)."""
        with self._lock:
            self._deadman.seen(time.monotonic())

    def arm(self) -> None:
        """The coordinator welcomed this worker: from now on its silence stops the load."""
        with self._lock:
            self._deadman.arm(time.monotonic())

    def load_started(self, grace: float) -> None:
        """A load runs; once the coordinator falls silent it has ``grace`` s to stop."""
        with self._lock:
            self._grace = grace
            self._deadman.load_started(grace, time.monotonic())

    def load_stopped(self) -> None:
        with self._lock:
            self._deadman.load_stopped()

    def close(self, timeout: float = 5.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        sock = self._ctx.socket(zmq.DEALER)
        try:
            socket_options(sock, self._endpoint)
            sock.setsockopt(zmq.ROUTING_ID, self._identity)
            if self._configure is not None:
                self._configure(sock)
            sock.connect(self._endpoint.text)
            self._loop(sock)
        finally:
            sock.close(linger=0)

    def _loop(self, sock: zmq.Socket[bytes]) -> None:
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        next_beat = 0.0
        while not self._stop_event.is_set():
            now = time.monotonic()
            if now >= next_beat:
                # zmq.Again: not connected yet; the next beat tries again.
                with contextlib.suppress(zmq.Again):
                    sock.send(encode(Heartbeat(time.time())), zmq.NOBLOCK)
                next_beat = now + self._interval
            timeout_ms = max(1, int(min(next_beat - now, 0.2) * 1000))
            if poller.poll(timeout_ms):
                self._drain(sock)
            with self._lock:
                action = self._deadman.poll(time.monotonic())
                silent_for = self._deadman.silent_for(time.monotonic())
            if action is Action.STOP:
                self._on_silence()
            elif action is Action.EXIT:
                self._on_deadline(
                    f"the coordinator has been silent for {silent_for:.0f} s and the load did "
                    f"not stop within {self._grace:g} s of being asked (event loop starved): "
                    f"exiting (code {EXIT_DEADMAN}) to close every connection"
                )

    def _drain(self, sock: zmq.Socket[bytes]) -> None:
        while True:
            try:
                data = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                decode(data)
            except ProtocolError:
                continue  # not from a coordinator we understand: not a sign of life
            self.mark_seen()


__all__ = ["EXIT_DEADMAN", "HeartbeatThread", "hard_exit"]

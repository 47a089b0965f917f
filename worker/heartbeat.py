"""Worker liveness on a thread of its own, off the busy event loop.

A worker's event loop can be saturated by its clients for seconds at a time;
if heartbeats rode on it, a busy worker would look dead (the classic
"failed to send heartbeat, setting state to missing" of Locust's
distributed mode). So a dedicated thread owns a second DEALER socket,
identified as ``<worker_id>#hb``, that sends a heartbeat every interval and
watches the coordinator's heartbeats. When the coordinator has been silent
for ``silence_timeout`` seconds, the thread calls ``on_silence`` (once per
silence) so the worker stops its load: no load outlives its coordinator.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from common.errors import ProtocolError
from common.protocol import HEARTBEAT_SUFFIX, Heartbeat, decode, encode


class HeartbeatThread(threading.Thread):
    """Sends heartbeats and watches for the coordinator's; stops with :meth:`close`."""

    def __init__(
        self,
        ctx: zmq.Context[zmq.Socket[bytes]],
        endpoint: str,
        worker_id: str,
        *,
        on_silence: Callable[[], None],
        interval: float = 1.0,
        silence_timeout: float = 5.0,
        configure: Callable[[Any], None] | None = None,
    ) -> None:
        super().__init__(name=f"heartbeat-{worker_id}", daemon=True)
        self._ctx = ctx
        self._endpoint = endpoint
        self._identity = (worker_id + HEARTBEAT_SUFFIX).encode()
        self._on_silence = on_silence
        self._interval = interval
        self._silence_timeout = silence_timeout
        self._configure = configure
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._last_seen = time.monotonic()
        self._silent = False

    @property
    def coordinator_silent_for(self) -> float:
        with self._lock:
            return time.monotonic() - self._last_seen

    def mark_seen(self) -> None:
        """Any message from the coordinator proves it alive (called from the loop too)."""
        with self._lock:
            self._last_seen = time.monotonic()
            self._silent = False

    def close(self, timeout: float = 5.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.ROUTING_ID, self._identity)
        sock.setsockopt(zmq.LINGER, 0)
        if self._configure is not None:
            self._configure(sock)
        sock.connect(self._endpoint)
        try:
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
                silent = time.monotonic() - self._last_seen > self._silence_timeout
                fire = silent and not self._silent
                if fire:
                    self._silent = True
            if fire:
                self._on_silence()

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


__all__ = ["HeartbeatThread"]

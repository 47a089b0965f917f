"""Name the workers that fail the coordinator's handshake, instead of waiting in silence.

A worker without keys knocking at a coordinator with keys (or the reverse),
or one holding another fleet's ``coordinator.key``, never gets a message
through: the coordinator used to wait out ``--worker-wait`` and say only
"0 of 1 workers joined". ZeroMQ's socket monitor reports each failed
handshake; :func:`describe` names the likely cause (sans-I/O) and
:class:`HandshakeWatcher` feeds the session's bad-input log (first of each
kind logged, the rest counted). Refused keys are logged by the ZAP handler.

Best effort: a worker gives up at once on a mechanism mismatch, and when its
reset overtakes its greeting the coordinator sees only a disconnect; the
worker's own message (:mod:`wsload.worker.link`) is the one to rely on. A worker
with another ``coordinator.key`` keeps trying, so that one is always named.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message


def describe(event: int, value: int, *, has_keys: bool) -> tuple[str, str] | None:
    """(kind, text) for a failed handshake worth naming, or None."""
    if event != zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        return None
    if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        if has_keys:
            return "no-keys", "a worker without CURVE keys tried to join: start it with --keys DIR"
        return "keys", "a worker with CURVE keys tried to join, but this coordinator has no --keys"
    if value == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC and has_keys:
        return (
            "wrong-key",
            "a worker failed the CURVE handshake: it holds another coordinator.key "
            "than this coordinator's",
        )
    return None


class HandshakeWatcher:
    """Reads ``sock``'s handshake failures on the running loop until :meth:`close`."""

    def __init__(
        self, sock: zmq.asyncio.Socket, *, has_keys: bool, report: Callable[[str, str], None]
    ) -> None:
        self._sock = sock
        self._has_keys = has_keys
        self._report = report
        self._monitor: zmq.asyncio.Socket | None = sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        )
        self._task: asyncio.Task[None] | None = None
        try:
            self._task = asyncio.get_running_loop().create_task(self._watch())
        except RuntimeError:  # no loop (a session made outside one): nothing to watch with
            self.close()

    async def _watch(self) -> None:
        while self._monitor is not None:
            try:
                frames = await self._monitor.recv_multipart()
                event = parse_monitor_message(frames)
            except (zmq.ZMQError, ValueError, IndexError, TypeError):
                return
            found = describe(int(event["event"]), int(event["value"]), has_keys=self._has_keys)
            if found is not None:
                self._report(*found)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._monitor is not None:
            with contextlib.suppress(zmq.ZMQError):
                self._sock.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None


__all__ = ["HandshakeWatcher", "describe"]

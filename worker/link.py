"""The worker's ZeroMQ link: a DEALER that is always closed, and named handshake failures.

A socket left open makes ``ctx.term()`` wait for ever, so :class:`Link`
closes its socket and its monitor on every path, exceptions included.

A CURVE handshake that fails is silent at the socket level: the hello just
never gets through, and the worker used to say only "no coordinator
answered". ZeroMQ's socket monitor reports why (``EVENT_HANDSHAKE_FAILED_*``);
:func:`handshake_problem` turns those events into one line saying which side
holds the wrong key, and whether trying again can help.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from wsload.common.endpoint import Endpoint, socket_options

#: The monitor events that explain a failed handshake.
HANDSHAKE_EVENTS = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


@dataclass(frozen=True)
class HandshakeProblem:
    """Why the link to the coordinator cannot be made; ``final``: trying again cannot help."""

    text: str
    final: bool


def handshake_problem(event: int, value: int, *, has_keys: bool) -> HandshakeProblem | None:
    """Explain one monitor event (sans-I/O), or None if it is not a handshake failure."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        # The coordinator's ZAP handler answered no (status code in ``value``).
        return HandshakeProblem(
            "the coordinator refused this worker's key (not in its authorized/ directory)",
            final=True,
        )
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            text = (
                "the coordinator does not use CURVE keys but this worker does (--keys)"
                if has_keys
                else "the coordinator requires CURVE keys: start this worker with --keys DIR"
            )
            return HandshakeProblem(text, final=True)
        return HandshakeProblem(
            f"the ZeroMQ handshake failed (protocol error {value:#x}): is that a wsload "
            "coordinator of the same version?",
            final=False,
        )
    if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        if has_keys:
            return HandshakeProblem(
                "the CURVE handshake failed: the coordinator's key is not the coordinator.key "
                "this worker holds",
                final=False,
            )
        # A CURVE coordinator may reset a keyless worker's connection before its
        # greeting says why (a race in ZMTP): the likeliest cause is named anyway.
        return HandshakeProblem(
            "the ZeroMQ handshake failed (no detail): if the coordinator requires CURVE "
            "keys, start this worker with --keys DIR",
            final=False,
        )
    return None


class Link:
    """A connected DEALER (``sock``) and its handshake monitor, closed together."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        endpoint: Endpoint,
        identity: str,
        *,
        configure: Callable[[Any], None] | None = None,
    ) -> None:
        self.has_keys = configure is not None
        self.sock: zmq.asyncio.Socket = ctx.socket(zmq.DEALER)
        self._monitor: zmq.asyncio.Socket | None = None
        try:
            socket_options(self.sock, endpoint)
            self.sock.setsockopt(zmq.ROUTING_ID, identity.encode())
            self.sock.setsockopt(zmq.IMMEDIATE, 1)  # queue only to a completed connection
            if configure is not None:
                configure(self.sock)
            self._monitor = self.sock.get_monitor_socket(HANDSHAKE_EVENTS)
            self.sock.connect(endpoint.text)
        except BaseException:
            self.close(linger=0)
            raise

    async def problem(self) -> HandshakeProblem | None:
        """The worst handshake failure reported since the last call (never waits)."""
        worst: HandshakeProblem | None = None
        while self._monitor is not None:
            try:
                frames = await self._monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                event = parse_monitor_message(frames)
            except (ValueError, IndexError, TypeError):
                continue
            found = handshake_problem(
                int(event["event"]), int(event["value"]), has_keys=self.has_keys
            )
            if found is not None and (worst is None or found.final):
                worst = found
        return worst

    def close(self, linger: int) -> None:
        """Close the monitor and the socket (``linger`` ms to deliver what is queued)."""
        if self._monitor is not None:
            with contextlib.suppress(zmq.ZMQError):
                self.sock.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None
        self.sock.close(linger=linger)


__all__ = ["HANDSHAKE_EVENTS", "HandshakeProblem", "Link", "handshake_problem"]

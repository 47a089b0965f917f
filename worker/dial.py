"""Opening a client's connections: paced, counted and backed off, for every kind of load.

One client's loop of connecting differs by load (the echo load sends on
its schedule; a conversation connects in its stage windows, a churn client
when its iteration is due), but each attempt is the same: wait for a
handshake slot (PENDING_HANDSHAKES at a time, sharing the senders' turn),
count the connect or the failure (its error kind), count a reconnect,
and after a failure or a server's close, back off exponentially (capped
at ``reconnect_max_delay``). :class:`Dialing` is that part of
:class:`wsload.worker.engine.Engine`; :class:`Redial` is what one client
carries from one attempt to the next.
"""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from typing import TYPE_CHECKING

from wsload.common.spec import JobSpec
from wsload.worker.accounting import Link, Phase, backoff
from wsload.worker.errors import ConnectFailed
from wsload.worker.naps import Naps
from wsload.worker.recorder import Recorder
from wsload.worker.schedule import TICK_BUDGET

if TYPE_CHECKING:
    from wsload.worker.protocol_session import Opening

_mono = time.monotonic


class Redial:
    """One client's connecting: failures in a row (its backoff) and whether it connected before."""

    __slots__ = ("connected_before", "failures")

    def __init__(self) -> None:
        self.failures = 0
        self.connected_before = False


class Dialing(Naps):
    """A mixin of :class:`wsload.worker.engine.Engine`: one counted connection attempt at a time."""

    spec: JobSpec
    recorder: Recorder
    phase: Phase
    _handshakes: asyncio.Semaphore  # made by the engine (PENDING_HANDSHAKES is its)

    async def open_paced(
        self, source: str, opened: Opening | None = None
    ) -> tuple[Link, float] | None:
        """Open one connection, PENDING_HANDSHAKES at a time: the link and when its opening began.

        ``opened``: a protocol client's URL and subprotocols (None: the job's).
        None if the run ended while it queued; raises ConnectFailed.
        """
        async with self._handshakes:  # a storm opens PENDING_HANDSHAKES at a time
            if _mono() - self._turn_started > TICK_BUDGET:  # opens share the turn
                await self._yield_turn()
            if self.phase is not Phase.RUNNING:  # the run ended while this one queued
                return None
            t0 = _mono()
            return await self.open_link(source, opened), t0

    @abstractmethod
    async def open_link(self, source: str, opened: Opening | None = None) -> Link:
        """Open one connection (from local address ``source``), or raise ConnectFailed.

        ``opened`` (a protocol client's): connect to its URL offering its
        subprotocols (before the job's ``--subprotocol`` ones).
        """

    async def dial(
        self, source: str, redial: Redial, opened: Opening | None = None
    ) -> tuple[Link, float] | bool:
        """One attempt to connect, counted: the link and when it opened.

        True: it failed (counted), the backoff is napped, try again; False:
        give up (the run ended while it queued, or it failed and
        ``reconnect`` is off).
        """
        rec = self.recorder
        try:
            paced = await self.open_paced(source, opened)
        except ConnectFailed as exc:
            rec.connect_failures += 1
            rec.error(exc.kind, str(exc))
            if not self.spec.reconnect:
                return False
            await self.back_off(redial)
            return True
        if paced is None:
            return False
        link, t0 = paced
        connected = _mono()
        rec.connected(int((connected - t0) * 1e6))
        if redial.connected_before:
            rec.reconnects += 1
        redial.connected_before = True
        return link, connected

    async def back_off(self, redial: Redial) -> None:
        """One more failure in a row: nap the backoff it earns (the run's end cuts it short)."""
        redial.failures += 1
        await self.nap(self._backoff(redial.failures))

    def _backoff(self, failures: int) -> float:
        return backoff(failures, self.spec.reconnect_max_delay)


__all__ = ["Dialing", "Redial"]

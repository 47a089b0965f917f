"""The run's waits: naps that the run's phase changes cut short, and the senders' shared turn.

Split from :mod:`wsload.worker.engine` (the lifecycle): every wait of a run
(a ramp slot, a backoff, a send's due time, a paused connection) is a
:meth:`Naps.nap`, so one call (:meth:`Naps.wake_naps`) wakes them all when
the run moves to draining or closing, and no task sleeps past its run. The
turn budget keeps the clients' senders together from holding the event loop
for more than TICK_BUDGET at a time (above capacity, replies and windows
still run).
"""

from __future__ import annotations

import asyncio
import time

from wsload.worker.accounting import resolve

_mono = time.monotonic


class Naps:
    """A mixin of :class:`wsload.worker.engine.Engine`: its naps and its senders' turn."""

    def __init__(self) -> None:
        self._naps: set[asyncio.Future[None]] = set()
        #: when the current turn of scheduled sending began (see :meth:`_yield_turn`)
        self._turn_started = 0.0
        self._turn_reset = False

    async def nap(self, delay: float, fut: asyncio.Future[None] | None = None) -> None:
        """Sleep ``delay`` seconds, or less when the run moves to its next phase.

        Resolving ``fut`` (the caller's own wake-up) ends the nap early too.
        Public: a subclass's own services (the picows ticker) nap this way.
        """
        if delay <= 0:
            return
        loop = asyncio.get_running_loop()
        fut = fut or loop.create_future()
        handle = loop.call_later(delay, resolve, fut)
        self._naps.add(fut)
        try:
            await fut
        finally:
            handle.cancel()
            self._naps.discard(fut)

    def wake_naps(self) -> None:
        """End every nap now (the run's phase changed)."""
        for fut in list(self._naps):
            resolve(fut)

    async def _yield_turn(self) -> None:
        """Let the event loop run once; the next turn's budget starts when it comes back.

        The first sender over budget schedules the turn's reset ahead of
        every sender's own wake-up, so the senders that follow in the same
        loop iteration yield too instead of each taking a fresh budget.
        """
        if not self._turn_reset:
            self._turn_reset = True
            asyncio.get_running_loop().call_soon(self._new_turn)
        await asyncio.sleep(0)

    def _new_turn(self) -> None:
        self._turn_reset = False
        self._turn_started = _mono()


__all__ = ["Naps"]

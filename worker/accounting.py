"""The population's core: what each message does to the counters, and the run's phase.

:class:`Accounting` is the per-message path, kept apart from the run's
lifecycle (:mod:`wsload.worker.engine`) because it is the part that decides the
figures: a message sent (:meth:`Accounting.next_message`: in flight, and
``behind_schedule`` when it leaves late), a message from the server
(:meth:`Accounting.on_message`: a reply only when it matches, otherwise
``unsolicited`` or ``late``), a connection gone (:meth:`Accounting.on_closed`).
It also holds the two facts every client engine's hot path asks about --
the run's :class:`Phase` and when sending ends (``send_until``) -- as plain
public attributes, so a connection's callbacks (:mod:`wsload.worker.engines`) read
them without reaching into the lifecycle, and :func:`backoff`, the reconnect
policy. :class:`Link` is what each client engine's connection implements
for the lifecycle (declared here, with the core it calls back, so that
neither the lifecycle nor the engines import each other in a cycle). No
socket and no event loop: the unit tests drive it with a fake
clock. It runs once per message on every engine, so it reads plain
attributes and calls as little as it can.
"""

from __future__ import annotations

import asyncio
import enum
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from wsload.common.spec import JobSpec
from wsload.worker.recorder import Recorder
from wsload.worker.schedule import BEHIND_SLACK
from wsload.worker.tracker import InFlight, id_pattern, unmatched

if TYPE_CHECKING:
    from wsload.worker.session import Conversation

_mono = time.monotonic
#: first reconnect delay (seconds); doubles per failure up to ``reconnect_max_delay``
RECONNECT_BASE_DELAY = 0.05


class Phase(enum.IntEnum):
    """Where the run is: sending, waiting for replies, closing, over."""

    RUNNING = 0
    DRAINING = 1
    CLOSING = 2
    DONE = 3


class Alive(Protocol):
    """The one thing :meth:`Accounting.sending` asks of a connection."""

    @property
    def alive(self) -> bool: ...


class Conn:
    """One open connection of one client; ``link`` is the engine's own connection object.

    ``seq`` is the client's last message number; it carries over to the next
    connection so ids stay unique per client, and ``base`` is its value when
    this connection opened: only ids in ``base + 1 .. seq`` were sent here. In
    closed loop the reply handler sends the next message itself as soon as a
    reply arrives (no task switch per round trip); ``stalled`` is resolved
    when it cannot (a timeout, a close, the end of the run), to hand control
    back to the sending coroutine. ``closed`` completes when the connection is
    gone.
    """

    __slots__ = (
        "base",
        "closed",
        "closed_by_us",
        "inflight",
        "link",
        "render",
        "seq",
        "session",
        "stalled",
    )

    def __init__(
        self,
        link: Any,
        render: Callable[[int, float], str],
        seq: int,
        closed: asyncio.Future[None],
    ) -> None:
        self.link = link
        self.render = render
        self.seq = seq
        self.base = seq
        self.inflight = InFlight()
        self.stalled: asyncio.Future[None] | None = None
        self.closed = closed
        self.closed_by_us = False
        #: a conversation's state machine (:class:`wsload.worker.session.Session`); None: echo
        self.session: Conversation | None = None

    def wake(self) -> None:
        """Hand control back to the sending coroutine (the reply chain stopped)."""
        if self.stalled is not None:
            resolve(self.stalled)


class Link(Protocol):
    """One open WebSocket connection of one client."""

    @property
    def alive(self) -> bool:
        """A message sent now can still reach the server."""

    @property
    def paused(self) -> bool:
        """The target is not reading (the write buffer is full): no data message goes out."""

    def attach(self, conn: Conn) -> asyncio.Task[None] | None:
        """Start handing messages and the close to the core, for ``conn``.

        A close that came before is handed over now. Returns the reader task
        if the engine needs one; the lifecycle cancels it once ``conn`` is gone.
        """

    def resumed(self) -> asyncio.Future[None]:
        """A future that completes when writing resumes (or the connection ends)."""

    async def send(self, text: str) -> bool:
        """Write one data message; False when the connection is gone."""

    async def close(self) -> None:
        """Close with code 1000 and wait, bounded, until the connection is gone."""


class Accounting:
    """The counters' side of an engine (:class:`wsload.worker.engine.Engine` derives from it).

    ``stamped``: the payload template uses ``{ts}`` (so each message needs
    the wall-clock time); ``closed_loop``: a reply triggers the next message.

    Public, for the client engines' callbacks (they run once per message, so
    these are plain attributes, not properties): ``recorder``, the counters;
    ``phase``, set by the lifecycle; ``send_until``, the monotonic time after
    which no message goes out; ``closed_loop``.
    """

    def __init__(self, spec: JobSpec, *, stamped: bool, closed_loop: bool) -> None:
        self.recorder = Recorder()
        self.phase = Phase.RUNNING
        self.send_until = 0.0
        self.closed_loop = closed_loop
        self._stamped = stamped
        self._find_id: Callable[[bytes], re.Match[bytes] | None] = id_pattern(spec.id_field).search
        self._by_order = spec.match == "order"

    def sending(self, link: Alive) -> bool:
        """Whether a message may go out on ``link`` now: the run sends and the link is open."""
        return self.phase is Phase.RUNNING and link.alive and _mono() < self.send_until

    def next_message(self, conn: Conn, intended: float) -> str:
        """Account the client's next message as sent and in flight; return its text.

        The one place both engines pass through, so it also counts a message
        that goes out more than BEHIND_SLACK after its intended time as
        ``behind_schedule`` (the generator or a paused connection held it);
        its latency still counts from ``intended``.
        """
        conn.seq = seq = conn.seq + 1
        payload = conn.render(seq, time.time() if self._stamped else 0.0)
        rec = self.recorder
        sent = _mono()
        if intended < sent:
            if sent - intended > BEHIND_SLACK:
                rec.behind_schedule += 1
            conn.inflight[seq] = (intended, sent)
        else:  # a send up to TIMER_SLACK early counts from when it actually went out
            conn.inflight[seq] = (sent, sent)
        rec.sent += 1
        rec.expected += 1
        rec.bytes_sent += len(payload) if payload.isascii() else len(payload.encode())
        return payload

    def on_message(self, conn: Conn, msg: bytes) -> bool:
        """Account one message from the server; True when the closed loop should send now.

        By id (the default), only a message carrying the id of a message in
        flight is a reply; one without the id field, or with an id never sent
        on this connection, is ``unsolicited`` (a push), and one whose message
        was already resolved (timed out, or answered: a duplicate) is
        ``late``. Neither is charged to a message in flight. By order
        (``match = "order"``), any message answers the oldest one in flight:
        wrong as soon as the server pushes, so only on request.
        """
        now = _mono()
        rec = self.recorder
        rec.bytes_received += len(msg)
        inflight = conn.inflight
        if self._by_order:
            times = inflight.take(None)
            if times is None:
                rec.late += 1
                return False
        else:
            found = self._find_id(msg)
            if found is None:
                rec.unsolicited += 1
                return False
            seq = int(found.group(1))
            times = inflight.pop(seq, None)
            if times is None:
                if unmatched(seq, conn.base, conn.seq) == "late":
                    rec.late += 1
                else:
                    rec.unsolicited += 1
                return False
        intended, sent = times
        rec.reply(int((now - intended) * 1e6), int((now - sent) * 1e6))
        return self.closed_loop and conn.stalled is not None and not inflight

    def on_closed(self, conn: Conn, code: int, failure: str = "", text: str = "") -> None:
        """The connection is gone (``code`` 1006 when no close frame came).

        ``failure`` is the error kind when this side failed it (``protocol``,
        ``too_big``: :func:`wsload.worker.errors.failure_kind`), counted even while
        the run closes; then ``code`` is the one this side sent.
        """
        if failure:
            self.recorder.error(failure, text)
        if not conn.closed_by_us:
            self.recorder.disconnects += 1
            if not failure and code not in (1000, 1001):
                self.recorder.error(f"closed_{code}")
        conn.wake()
        resolve(conn.closed)


@dataclass(frozen=True)
class EngineResult:
    """Totals of one engine run; ``expected == received + timed_out + failed + lost + unanswered``.

    ``error_texts`` holds the first message of each error kind (bounded, see
    :class:`wsload.worker.recorder.Recorder`), so a run that tested nothing can say why.
    """

    counters: dict[str, int]
    errors: dict[str, int]
    started_at: float
    stopped_at: float
    stopped_early: bool
    error_texts: dict[str, str] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        c = self.counters
        resolved = c["received"] + c["timed_out"] + c["failed"] + c["lost"] + c["unanswered"]
        return c["expected"] == resolved


def backoff(failures: int, cap: float, jitter: Callable[[], float] = random.random) -> float:
    """Seconds before reconnect attempt number ``failures`` (1, 2, ...): capped, doubling, jittered.

    Half to all of ``RECONNECT_BASE_DELAY * 2 ** (failures - 1)``, at most
    ``cap``: clients that lost their connections together do not all come
    back in the same instant.
    """
    delay = min(cap, RECONNECT_BASE_DELAY * 2.0 ** min(failures - 1, 30))
    return delay * (0.5 + 0.5 * jitter())


def resolve(fut: asyncio.Future[None]) -> None:
    """Complete ``fut`` (a wake-up) unless it already is."""
    if not fut.done():
        fut.set_result(None)


__all__ = [
    "RECONNECT_BASE_DELAY",
    "Accounting",
    "Alive",
    "Conn",
    "EngineResult",
    "Link",
    "Phase",
    "backoff",
    "resolve",
]

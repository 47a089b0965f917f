"""A conversation over a protocol (Socket.IO, GraphQL, STOMP, MQTT): a session through a codec.

A scenario with ``protocol = ...`` runs each connection as a
:class:`ProtocolSession`: the client's :class:`wsload.worker.session.Session`
(the step machine, its rules unchanged) behind the connection's
:class:`wsload.worker.codecs.base.Codec`, with the same surface for the
engines (:class:`wsload.worker.session.Conversation`). Sans-I/O like both:
every input carries ``now``.

- **Handshake.** :meth:`ProtocolSession.start` sends the codec's opening
  frames and holds the steps until :attr:`Codec.ready`; then the session
  starts, with the ``due`` the engine gave (a churn iteration's handshake is
  in its latency, as its TCP connect is). The handshake is bounded by the
  job's connect timeout: past it, error kind ``handshake_timeout`` and the
  connection is closed, reconnected after the backoff (a server that speaks
  another protocol costs that, never a hang).
- **Frames in.** Each received frame goes to :meth:`Codec.receive`; its
  replies (pongs, PUBACKs, ACKs) are sent at once, each application message
  goes to the session as a text message whose data is its *view*
  (:func:`wsload.common.match.prime_json` primed with the value the codec
  parsed, so no matcher parses it again), and a :class:`Failure` counts its
  error kind (its first text kept); a fatal one closes the connection with
  its close code (a pending expect is ``lost``) and the client reconnects
  after the backoff.
- **Frames out.** The session's protocol steps are encoded by the codec
  (:meth:`wsload.worker.session_client.Client.encode`); a step that waits for
  its answer is matched by the key (:mod:`wsload.common.answer`).
- **Time.** :attr:`ProtocolSession.deadline` is the earliest of the
  session's, the codec's (keep-alives, a ping that did not come) and the
  handshake's. A failure the codec's timer finds is left in its ``failure``
  (:meth:`Codec.on_timer` returns frames only), counted once.
- **Goodbye.** Before this side closes, the codec's goodbye frames go out
  (STOMP and MQTT DISCONNECT), once.

Answers: a view ``{"answer":KEY,...}`` goes to the session only when the
pending answer step waits for KEY; any other is ``late`` or unsolicited
(:func:`wsload.worker.protocol_parts.stray`). Housekeeping replies sent
while the engine says ``paused`` are bounded (:data:`WRITE_BACKLOG`).

Counting: the protocol's housekeeping (handshake, pings, heart-beats, acks,
goodbye) is never a message sent, received or unsolicited; ``bytes_sent``
and ``bytes_received`` count what crossed the wire, housekeeping included,
never the views.
"""

from __future__ import annotations

import math
from typing import Any

from wsload.common.match import prime_json
from wsload.worker.codecs.base import UNPARSED, Codec, Failure, Frame, Received
from wsload.worker.protocol_parts import (
    BACKLOG_CLOSE,
    WRITE_BACKLOG,
    Opening,
    awaited,
    backlog_failure,
    count_error,
    opening,
    stray,
    wire_size,
)
from wsload.worker.schedule import TIMER_SLACK
from wsload.worker.session import EMPTY, Client, Conversation, Effects, Session

_INF = math.inf
#: the close code of a handshake this side gives up on (the peer did not speak the protocol)
HANDSHAKE_CLOSE = 1002
#: the close code after a codec raised (a codec's bug must not be a traceback in a callback)
CODEC_FAILED = 1011
#: what every answer's view begins with (see :mod:`wsload.worker.codecs.base`)
_ANSWER = b'{"answer":'


def session_for(
    client: Client, until: float, opened: Opening | None, handshake_timeout: float
) -> Conversation:
    """The connection's session: a plain :class:`Session` for raw frames (no codec, no cost)."""
    if opened is None:
        return Session(client, until=until)
    return ProtocolSession(client, opened.codec, until, handshake_timeout)


class ProtocolSession:
    """One connection of a protocol client: see the module's docstring."""

    __slots__ = (
        "_backlog",
        "_codec_stuck",
        "_due",
        "_hs_deadline",
        "_hs_timeout",
        "_over",
        "_said_goodbye",
        "_started",
        "_timer_failure",
        "client",
        "codec",
        "session",
    )

    def __init__(
        self, client: Client, codec: Codec, until: float = _INF, handshake_timeout: float = 10.0
    ) -> None:
        self.client = client
        self.codec = codec
        client.codec = codec
        codec.rng = client.rng  # its random draws reproducible per client
        self.session = Session(client, until=until)
        self._hs_timeout = handshake_timeout
        self._hs_deadline = _INF
        self._due: float | None = None
        self._started = False  # the handshake is done: the session runs its steps
        self._over = False  # this side gave up (a fatal failure, a handshake timeout)
        self._said_goodbye = False
        #: the codec's ``failure`` its timer found, once counted
        self._timer_failure: Failure | None = None
        #: a codec deadline its timer was called for and left as it was (ignored since)
        self._codec_stuck = -_INF
        #: bytes of housekeeping sent while paused (the peer does not read them)
        self._backlog = 0

    # -- what the engine asks ---------------------------------------------------

    @property
    def deadline(self) -> float:
        if self._over or self.session.over:
            return _INF
        at = self.session.deadline
        codec_at = self.codec.deadline
        if codec_at < at and codec_at != self._codec_stuck:
            at = codec_at
        return at if at < self._hs_deadline else self._hs_deadline

    @property
    def paused(self) -> bool:
        return self.session.paused

    @paused.setter
    def paused(self, value: bool) -> None:
        self.session.paused = value
        if not value:
            self._backlog = 0

    @property
    def until(self) -> float:
        return self.session.until

    @property
    def over(self) -> bool:
        return self._over or self.session.over

    @property
    def backoff(self) -> bool:
        return self._over or self.session.backoff

    @property
    def pending(self) -> bool:
        return self.session.pending

    @property
    def awaiting(self) -> bool:
        return self.session.awaiting

    # -- inputs -------------------------------------------------------------------

    def start(self, now: float, due: float | None = None) -> Effects:
        """The connection is open: the codec's opening frames; the steps once it is ready."""
        self._due = due
        try:
            frames = self.codec.open(now)
        except Exception as exc:
            return self._codec_failed(now, exc)
        out: list[Any] = self._wire(frames)
        if self.codec.ready:
            return self._begin(now, out)
        self._hs_deadline = now + self._hs_timeout
        return tuple(out) if out else EMPTY

    def on_message(self, now: float, data: bytes, text: bool) -> Effects:
        """One WebSocket message: what the codec makes of it, for the session."""
        if self._over:  # this side is closing: nothing more is read
            return EMPTY
        self.client.rec.bytes_received += len(data)
        try:
            got = self.codec.receive(now, data, text)
        except Exception as exc:
            return self._codec_failed(now, exc)
        return self._received(now, got)

    def on_http(self, now: float, status: int, error: str | None = None, text: str = "") -> Effects:
        """A ``post`` step's answer (the session's)."""
        if self._over:
            return EMPTY
        return self._then([], self.session.on_http(now, status, error, text))

    def on_timer(self, now: float) -> Effects:
        """Time passed :attr:`deadline`: the handshake's, the codec's, the session's."""
        if self._over:
            return EMPTY
        slack = now + TIMER_SLACK
        if self._hs_deadline <= slack:
            return self._handshake_timeout(now)
        out: list[Any] = []
        codec = self.codec
        at = codec.deadline
        if at <= slack and at != self._codec_stuck:
            try:  # up to TIMER_SLACK early, as for the session: the codec sees its deadline
                out = self._wire(codec.on_timer(now if now > at else at))
            except Exception as exc:
                return self._codec_failed(now, exc)
            if self._backlog > WRITE_BACKLOG:
                return self._failed(now, backlog_failure(self._backlog), [])
            if codec.deadline == at:  # not moved on: never fired again (no busy loop)
                self._codec_stuck = at
            # what the timer found (a ping or heart-beat that did not come): counted once
            failure = codec.failure
            if failure is not None and failure is not self._timer_failure:
                self._timer_failure = failure
                effects = self._failed(now, failure, out)
                if self._over:
                    return effects
                out = list(effects)
        session = self.session
        if self._started and session.deadline <= slack:
            return self._then(out, session.on_timer(now))
        return tuple(out) if out else EMPTY

    def resume(self, now: float) -> Effects:
        """Writes are allowed again: a held send goes out."""
        self._backlog = 0
        session = self.session
        if not self._started or self._over:
            session.paused = False
            return EMPTY
        return self._then([], session.resume(now))

    def on_closed(self, now: float) -> None:
        """The connection is gone: a pending expect is lost."""
        self._hs_deadline = _INF
        self.session.on_closed(now)

    def drain(self, now: float) -> None:
        """The run stops sending: no new send (a handshake still going on starts no step)."""
        self.session.drain(now)

    def stop(self, now: float) -> None:
        """The run is over (or a stage closes this client): a pending expect is unanswered.

        The engine then sends :meth:`goodbye` and closes. A handshake still
        going on counts ``handshake_unfinished`` (else a run whose handshakes
        never end, shorter than the connect timeout, says nothing of why).
        """
        if self._hs_deadline < _INF:
            name = self.codec.name
            count_error(
                self.client.rec,
                "handshake_unfinished",
                f"the run ended during a {name} handshake (does the server speak {name}?)",
            )
        self._hs_deadline = _INF
        self.session.stop(now)

    def goodbye(self) -> Effects:
        """The codec's goodbye frames, once (none before the handshake or after a failure)."""
        frames = self._goodbye()
        return tuple(frames) if frames else EMPTY

    # -- the machinery ------------------------------------------------------------

    def _wire(self, frames: list[Frame]) -> list[Any]:
        """Housekeeping frames to send: their bytes count, they are no message."""
        if frames:
            rec = self.client.rec
            size = 0
            for frame in frames:
                size += wire_size(frame)
            rec.bytes_sent += size
            if self.session.paused:
                self._backlog += size
            return list(frames)
        return []

    def _begin(self, now: float, out: list[Any]) -> Effects:
        """The handshake is done: the session's steps begin."""
        self._hs_deadline = _INF
        self._started = True
        return self._then(out, self.session.start(now, self._due))

    def _received(self, now: float, got: Received) -> Effects:
        """Apply what one frame (or a timer) meant: replies, readiness, messages, a failure."""
        if not got.replies and got.failure is None and self._started:
            messages = got.messages
            if len(messages) == 1:  # the common case (a push, an answer): no list, no copy
                message = messages[0]
                view = message.view
                if message.parsed is not UNPARSED:
                    prime_json(view, message.parsed)
                if view.startswith(_ANSWER) and not awaited(self.session, view):
                    return stray(self.client, view)
                self.client.rec.bytes_received -= len(view)  # the session counts it again
                effects = self.session.on_message(now, view, True)
                if effects and type(effects[-1]) is int:  # the session closes: goodbye first
                    return self._then([], effects)
                return effects
            if not messages:
                return EMPTY
        out: list[Any] = self._wire(got.replies) if got.replies else []
        if self._backlog > WRITE_BACKLOG:
            return self._failed(now, backlog_failure(self._backlog), [])
        if not self._started and self.codec.ready:
            out = list(self._begin(now, out))
            if out and type(out[-1]) is int:  # the session closed at once (a churn with no steps)
                return tuple(out)
        if got.messages:
            session = self.session
            rec = self.client.rec
            for message in got.messages:
                view = message.view
                if message.parsed is not UNPARSED:
                    prime_json(view, message.parsed)
                if view.startswith(_ANSWER) and not awaited(self.session, view):
                    stray(self.client, view)
                    continue
                rec.bytes_received -= len(view)  # the session counts it: the wire's bytes did
                effects = session.on_message(now, view, True)
                if effects:
                    out = list(self._then(out, effects))
                    if type(out[-1]) is int:  # the session closed: what follows is not read
                        return tuple(out)
        failure = got.failure
        if failure is not None:
            return self._failed(now, failure, out)
        return tuple(out) if out else EMPTY

    def _then(self, out: list[Any], effects: Effects) -> Effects:
        """``out`` then the session's effects; a close the session asks for says goodbye first."""
        if effects:
            if type(effects[-1]) is int:
                out.extend(effects[:-1])
                out.extend(self._goodbye())
                out.append(effects[-1])
            else:
                out.extend(effects)
        return tuple(out) if out else EMPTY

    def _goodbye(self) -> list[Any]:
        if self._said_goodbye or self._over or not self._started:
            return []
        self._said_goodbye = True
        try:
            frames = self.codec.goodbye()
        except Exception:  # a codec's bug: no goodbye then, the close still goes
            return []
        return self._wire(frames)

    def _failed(self, now: float, failure: Failure, out: list[Any]) -> Effects:
        """The codec's failure: its error kind; a fatal one closes (reconnect after the backoff)."""
        count_error(self.client.rec, failure.kind, failure.text)
        if not failure.fatal:
            return tuple(out) if out else EMPTY
        self._give_up(now)
        out.append(failure.close_code)
        return tuple(out)

    def _handshake_timeout(self, now: float) -> Effects:
        name = self.codec.name
        count_error(
            self.client.rec,
            "handshake_timeout",
            f"no {name} handshake within {self._hs_timeout:g} s (does the server speak {name}?)",
        )
        self._give_up(now)
        return (HANDSHAKE_CLOSE,)

    def _codec_failed(self, now: float, exc: Exception) -> Effects:
        count_error(
            self.client.rec, "codec_error", f"{self.codec.name}: {type(exc).__name__}: {exc}"
        )
        self._give_up(now)
        return (CODEC_FAILED,)

    def _give_up(self, now: float) -> None:
        """This side closes: the session ends as if the connection were gone (pending: lost)."""
        self._over = True
        self._hs_deadline = _INF
        self.session.on_closed(now)


__all__ = [
    "BACKLOG_CLOSE",
    "CODEC_FAILED",
    "HANDSHAKE_CLOSE",
    "WRITE_BACKLOG",
    "Opening",
    "ProtocolSession",
    "opening",
    "session_for",
]

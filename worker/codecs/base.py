"""What a protocol codec is: the sans-I/O layer between WebSocket frames and steps.

A scenario that says ``protocol = "socketio"`` (or ``"graphql"``,
``"stomp"``, ``"mqtt"``) runs each connection through a :class:`Codec`:

- **frames in, messages out**: :meth:`Codec.receive` takes one WebSocket
  message (a text or binary frame, already reassembled) and returns a
  :class:`Received`: the application messages it carried (each a
  :class:`Message` whose ``view`` is what expects, captures and
  ``[deliveries]`` look at), the frames to send back at once (Engine.IO's
  pong, an MQTT PUBACK for a QoS 1 delivery, a STOMP ACK) and, when the peer
  broke the protocol or refused us, an :class:`Failure`.
- **steps in, frames out**: :meth:`Codec.encode` turns one step's rendered
  table (``emit = {event = "chat", data = {...}}``) into the frames to send,
  and, for a step that waits for the protocol's answer, the answer's
  correlation key (a Socket.IO ack id, a STOMP receipt id, an MQTT packet id,
  a GraphQL operation id).
- **housekeeping of its own**: the handshake (:meth:`Codec.open` and
  :attr:`Codec.ready`), heart-beats and keep-alives on a timer
  (:attr:`Codec.deadline`, :meth:`Codec.on_timer`), a polite goodbye
  (:meth:`Codec.goodbye`). None of it is a step's message: it is never
  counted as sent, received or unsolicited.

No socket, no event loop, no clock: ``now`` is passed in (monotonic
seconds), so each codec is unit-tested with bytes and a fake clock, then
against its real server.

**Views.** A message's ``view`` is compact JSON text (UTF-8 bytes), so the
step language's matchers (JSON subsets, regex, captures, the deliveries'
byte patterns) work on every protocol unchanged. When the codec has the view
as a Python value already it passes it as ``parsed`` (the session primes
:func:`wsload.common.match.parse_json` with it: no second parse). A message
that answers a request carries its key as the view's FIRST member,
``{"answer":KEY,...}`` (KEY an int or a string, as JSON), so the answer's
matcher can test the view's first bytes; an answer that is the protocol's
error (a GraphQL ``error``, a STOMP ERROR naming the receipt, a Socket.IO
ack is never one) also has an ``"error"`` member: the step fails with its
``fail_kind`` (``graphql_error``, ``stomp_error``, ``mqtt_error``). A push
never has an ``answer`` member.

**Bounds.** A codec holds at most a bounded amount per connection: partial
binary attachments (Socket.IO), pending answer keys (at most one per step
waiting, as steps run in order), a frame's size (the engine's
``max_message_size`` already bounds a WebSocket message). A peer that sends
garbage costs a :class:`Failure`, never a traceback.
"""

from __future__ import annotations

import base64
import json
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from json import encoder as _json_encoder
from typing import Any, ClassVar

from wsload.common.fields import DEFAULT_MAX_MESSAGE_SIZE
from wsload.common.program import Action

#: one WebSocket message to send: text (``str``) or binary (``bytes``)
Frame = str | bytes
#: the key that correlates a request with its answer
AnswerKey = int | str
#: what :class:`Message.parsed` holds when the codec did not parse the view
UNPARSED: Any = object()
#: an error's text is cut to this many characters
TEXT_LIMIT = 200
#: the first bytes a JSON text may start with (a payload starting otherwise is not parsed)
_JSON_START = frozenset(b'{["-0123456789tfn"')
#: the rng of codecs no session gave one (unit tests)
_RNG = random.Random()


def _not_json(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not a JSON value")


#: CPython's C encoder, called without JSONEncoder's two Python wrappers (0.7 vs 2 us)
_C_ENCODER = getattr(_json_encoder, "c_make_encoder", None)
_encode: Callable[[Any, int], list[str]] | None = (
    None
    if _C_ENCODER is None
    else _C_ENCODER(
        None, _not_json, _json_encoder.encode_basestring, None, ":", ",", False, False, False
    )
)
_slow_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def dumps(value: Any) -> str:
    """Compact JSON, non-ASCII as is, NaN refused (ValueError), no cycle check (a tree).

    The one form of every view and every JSON frame the codecs write. Too
    deep a value raises RecursionError: a caller with a peer's value catches it.
    """
    if _encode is None:  # pragma: no cover - an interpreter without the C accelerator
        return _slow_dumps(value)
    return "".join(_encode(value, 0))


def cut(text: str, limit: int = TEXT_LIMIT) -> str:
    """An error's text, at most ``limit`` characters (``...`` says it was cut)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


#: JSON as RFC 8259 says: NaN and Infinity are not JSON (a view must dump again)
_decode = json.JSONDecoder(parse_constant=_no_constant).decode


def payload_view(data: bytes) -> tuple[Any, str]:
    """A peer's payload (an MQTT payload, a STOMP body) as a view shows it, and its JSON text.

    Its JSON value when it is JSON that dumps again (a nesting too deep for
    the interpreter, RecursionError either way, is not: a peer's nesting
    never costs a traceback or the connection), else its text, else
    ``{"_binary":"<base64>"}``. The text is compact JSON, to splice into the
    view (the value is never dumped again, whatever its depth).
    """
    stripped = data.lstrip()
    if stripped and stripped[0] in _JSON_START:
        try:
            value = _decode(data.decode())
            return value, dumps(value)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            pass
    try:
        text: Any = data.decode()
    except UnicodeDecodeError:
        text = {"_binary": base64.b64encode(data).decode()}
    return text, dumps(text)


@dataclass(frozen=True, slots=True)
class Message:
    """One application message as the steps see it (see the module's docstring)."""

    view: bytes
    parsed: Any = UNPARSED


@dataclass(frozen=True, slots=True)
class Failure:
    """The peer broke the protocol, refused the handshake, or sent the protocol's error.

    ``kind`` is the error kind counted (``protocol_error``, ``handshake_refused``,
    ``stomp_error``, ``socketio_disconnect``...), ``text`` its first text (no
    credentials in it). ``fatal``: the connection cannot go on (the session
    closes it with ``close_code`` and reconnects after the backoff);
    otherwise only counted.
    """

    kind: str
    text: str
    fatal: bool = True
    close_code: int = 1002


@dataclass(slots=True)
class Received:
    """What one received frame meant: see :meth:`Codec.receive`."""

    messages: list[Message] = field(default_factory=list)
    replies: list[Frame] = field(default_factory=list)
    failure: Failure | None = None


#: the common result: nothing to do (never mutate it)
NOTHING = Received()


class Codec(ABC):
    """One connection's protocol state. Made per connection by :func:`codec_for`.

    ``options`` is the scenario's ``protocol`` table rendered for this
    client (``{"namespace": "/chat", "auth": {"token": "..."}}``), already
    checked by :mod:`wsload.common.protocols` before the run.
    """

    #: the name in ``protocol = ...``
    name: ClassVar[str]
    #: the WebSocket subprotocol to offer (None: none)
    subprotocol: ClassVar[str | None] = None
    #: step verbs this protocol has (the language checks the same set)
    verbs: ClassVar[frozenset[Action]] = frozenset()

    def __init__(
        self, options: Mapping[str, Any], max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    ) -> None:
        self.options = options
        #: the job's bound on one message: a codec that reassembles (MQTT's byte
        #: stream, Socket.IO's attachments) holds at most this much per message
        self.max_message_size = max_message_size
        #: a failure :meth:`on_timer` found (a ping, heart-beat or keep-alive that
        #: did not come): the session counts it once, and closes when it is fatal
        self.failure: Failure | None = None
        #: the handshake is done: steps may run (:meth:`open` may set it at once)
        self.ready = False
        #: when :meth:`on_timer` wants to be called (inf: never)
        self.deadline = float("inf")
        #: random draws the codec makes (MQTT's default client id): the session gives the
        #: client's rng before :meth:`open`, so a run is reproducible per client
        self.rng: random.Random = _RNG

    @staticmethod
    def url(ws_url: str, options: Mapping[str, Any]) -> str:
        """The URL to connect to for the job's ``ws_url`` (Socket.IO adds its path)."""
        return ws_url

    @classmethod
    def subprotocols(cls, options: Mapping[str, Any]) -> tuple[str, ...]:
        """The subprotocols to offer, preferred first: :attr:`subprotocol` split at commas
        (an option may change them: GraphQL's ``legacy = true`` offers ``graphql-ws``)."""
        return tuple(p.strip() for p in (cls.subprotocol or "").split(",") if p.strip())

    @abstractmethod
    def open(self, now: float) -> list[Frame]:
        """The WebSocket is open: the frames that begin the handshake (may be none)."""

    @abstractmethod
    def receive(self, now: float, data: bytes, text: bool) -> Received:
        """One received WebSocket message: the messages it carried, replies, a failure.

        During the handshake it may set :attr:`ready` (the session's steps
        start then); a message received before that is never a step's.
        """

    @abstractmethod
    def encode(
        self, action: Action, value: Any, answer: bool
    ) -> tuple[list[Frame], AnswerKey | None]:
        """A step's rendered table as frames; the answer's key when ``answer``.

        Raises :class:`CodecInputError` for a table it cannot send (the
        language checks shapes before the run; templates can still render
        a wrong type): the step counts it as an error kind, not a traceback.
        """

    def on_timer(self, now: float) -> list[Frame]:
        """Time reached :attr:`deadline`: heart-beats or keep-alives to send."""
        return []

    def goodbye(self) -> list[Frame]:
        """Frames to send before this side closes (STOMP DISCONNECT, MQTT DISCONNECT)."""
        return []


class CodecInputError(ValueError):
    """A rendered step value the codec cannot encode (a wrong type from a template)."""


__all__ = [
    "NOTHING",
    "TEXT_LIMIT",
    "UNPARSED",
    "AnswerKey",
    "Codec",
    "CodecInputError",
    "Failure",
    "Frame",
    "Message",
    "Received",
    "cut",
    "dumps",
    "payload_view",
]

"""Socket.IO v4 (Engine.IO 4) over the WebSocket transport, sans-I/O.

One :class:`SocketIOCodec` per connection speaks the client's side of the
two layered protocols a Socket.IO v4 server (the JavaScript ``socket.io``
4.x, ``python-socketio`` 5.x) expects on ``/socket.io/?EIO=4&transport=websocket``:

- **Engine.IO** packets are one text frame each, a digit then a payload:
  ``0`` open (the server's ``{"sid", "pingInterval", "pingTimeout", ...}``),
  ``1`` close, ``2`` ping (the *server* pings in v4: we answer ``3`` with
  the same payload), ``3`` pong, ``4`` message (a Socket.IO packet), ``6``
  noop. Binary frames are Socket.IO attachments, sent bare.
- **Socket.IO** packets after the ``4``: a type digit (``0`` CONNECT, ``1``
  DISCONNECT, ``2`` EVENT, ``3`` ACK, ``4`` CONNECT_ERROR, ``5``
  BINARY_EVENT, ``6`` BINARY_ACK), for 5/6 the attachment count and ``-``,
  the namespace and ``,`` unless it is ``/``, an ack id (digits), then a
  JSON array: ``42["news",{"room":"r1"}]``, ``43/chat,7[{"ok":true}]``.

The handshake: the server opens (``0{...}``), we connect to the namespace
(``40`` + ``/ns,`` + the ``auth`` table as JSON), it accepts (``40{"sid"}``:
:attr:`~SocketIOCodec.ready`) or refuses (``44{"message"}``:
``socketio_connect_error``). The server's pings are housekeeping: answered
here, never a step's message; none within ``pingInterval + pingTimeout``
(the server's own figures) is ``ping_timeout`` at :attr:`deadline`.

**Views** (see :mod:`wsload.worker.codecs.base`): an event ``42["news",A0]``
is ``{"event":"news","data":A0}``, with two or more arguments also
``"args":[A0,A1,...]``; an ack ``43<id>[A0]`` is ``{"answer":ID,"data":A0}``
(no argument: ``{"answer":ID,"args":[]}``, so the answer's first member is
always followed by another). An emit with ``ack = true`` carries the next
ack id of this connection (0, 1, ...).

**Cost.** A load's hot path is emit + ack, so views are spliced from the
frame's own bytes (:mod:`wsload.worker.codecs.socketio_views`), not parsed
and dumped again; the one ``json.loads`` per message checks the frame and
primes the matchers' parse cache (:attr:`Message.parsed`) for events.

**Order.** Events before the namespace's CONNECT (python-socketio's connect
handler may emit first) are held, at most :data:`MAX_EARLY`, released with it.
Another namespace's event or ack is counted, not fatal.

**Bounds.** A binary packet waits for at most :data:`MAX_ATTACHMENTS`
attachments of :data:`MAX_ATTACHMENT_BYTES` (or the job's ``max_message_size``,
if less) in total; more, an attachment nobody announced, a text packet
before the announced ones are in, or any frame that is not
Engine.IO/Socket.IO is ``protocol_error`` (fatal).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from wsload.common.fields import DEFAULT_MAX_MESSAGE_SIZE
from wsload.common.program import Action
from wsload.worker.codecs.base import (
    NOTHING,
    AnswerKey,
    Codec,
    CodecInputError,
    Failure,
    Frame,
    Message,
    Received,
)
from wsload.worker.codecs.socketio_views import (
    ack_message,
    dumps,
    event_message,
    fail,
    fill_binary,
    other_namespace,
    start,
)

#: attachments one binary packet may announce (python-socketio refuses 10+ digits)
MAX_ATTACHMENTS = 64
#: bytes of attachments one binary packet may hold until it is complete
MAX_ATTACHMENT_BYTES = 16 * 1024 * 1024
#: events held between the Engine.IO open and the namespace's CONNECT, at most
MAX_EARLY = 64
#: Engine.IO's defaults, when the open packet does not say (milliseconds)
PING_INTERVAL_MS = 25_000
PING_TIMEOUT_MS = 20_000

_loads = json.loads
_INF = float("inf")


def _not_socketio(data: bytes) -> Received:
    return fail(f"not an Engine.IO 4 packet: {start(data)!r}")


class SocketIOCodec(Codec):
    """The client side of one Socket.IO v4 connection (see the module's docstring)."""

    name: ClassVar[str] = "socketio"
    verbs: ClassVar[frozenset[Action]] = frozenset({Action.EMIT})

    def __init__(
        self, options: Mapping[str, Any], max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    ) -> None:
        super().__init__(options, max_message_size)
        namespace = options.get("namespace") or "/"
        if not isinstance(namespace, str) or not namespace.startswith("/"):
            raise CodecInputError(f"namespace must be a path such as /chat, not {namespace!r}")
        #: what follows a packet's type: "" for "/", else "/chat,"
        self._ns = "" if namespace == "/" else namespace + ","
        self._nsb = self._ns.encode()
        self._auth = options.get("auth")
        self._opened = False
        self._window = (PING_INTERVAL_MS + PING_TIMEOUT_MS) / 1000
        self._next_id = 0
        #: a binary packet waiting for its attachments: (is an ack, ack id, args, expected count)
        self._binary: tuple[bool, bytes, Any, int] | None = None
        self._attachments: list[bytes] = []
        self._attached = 0
        #: events that came before the namespace's CONNECT: released with it
        self._early: list[Message] = []

    @staticmethod
    def url(ws_url: str, options: Mapping[str, Any]) -> str:
        """The Engine.IO URL: the site's root gets ``path`` (``/socket.io/``); always
        ``EIO=4&transport=websocket`` in the query (the job's other parameters kept)."""
        parts = urlsplit(ws_url)
        path = parts.path
        if path in ("", "/"):
            path = str(options.get("path") or "/socket.io/")
            path = ("" if path.startswith("/") else "/") + path
            path += "" if path.endswith("/") else "/"
        query = [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if k not in ("EIO", "transport")
        ]
        query = [("EIO", "4"), ("transport", "websocket"), *query]
        return urlunsplit((parts.scheme, parts.netloc, path, urlencode(query), parts.fragment))

    def open(self, now: float) -> list[Frame]:
        """Nothing: the server speaks first (its Engine.IO open packet)."""
        return []

    # -- receiving -------------------------------------------------------------

    def receive(self, now: float, data: bytes, text: bool) -> Received:
        if not text:
            return self._attachment(data)
        if self._binary is not None and data[:1] not in (b"2", b"3", b"6"):
            # (Engine.IO's ping, pong and noop may come between a packet and its attachments)
            return fail(f"text frame while a binary packet waits for attachments: {start(data)}")
        head = data[:2]
        if self.ready:  # the hot packets, once connected to the namespace
            if head == b"43":
                return self._ack(data, 2)
            if head == b"42":
                return self._event(data, 2)
        kind = data[:1]
        if not self._opened:
            return self._open(now, data) if kind == b"0" else _not_socketio(data)
        if kind == b"2":  # ping: pong with the same payload, and the next ping is due
            self.deadline = now + self._window
            return Received(replies=["3" + data[1:].decode("utf-8", "replace")])
        if kind == b"4":
            return self._packet(data)
        if kind == b"1":
            return Received(failure=Failure("socketio_disconnect", "Engine.IO close", True, 1000))
        if kind in (b"3", b"6"):  # pong (we never ping), noop
            return NOTHING
        return _not_socketio(data)

    def _open(self, now: float, data: bytes) -> Received:
        try:
            info = _loads(data[1:].decode())
            interval = info.get("pingInterval", PING_INTERVAL_MS)
            timeout = info.get("pingTimeout", PING_TIMEOUT_MS)
            window = (float(interval) + float(timeout)) / 1000
        except (ValueError, TypeError, AttributeError, RecursionError):
            return _not_socketio(data)
        if not 0 < window < 1e7:
            return _not_socketio(data)
        self._opened = True
        self._window = window
        self.deadline = now + window
        connect = "40" + self._ns
        if self._auth is not None:
            connect += dumps(self._auth)
        return Received(replies=[connect])

    def _namespace(self, data: bytes, pos: int) -> int:
        """Where the packet's body starts past our namespace; -1: another namespace's."""
        if self._nsb:
            return pos + len(self._nsb) if data.startswith(self._nsb, pos) else -1
        return -1 if data[pos : pos + 1] == b"/" else pos

    def _packet(self, data: bytes) -> Received:
        """A Socket.IO packet other than a plain EVENT or ACK (the hot ones)."""
        kind = data[1:2]
        if kind in (b"5", b"6"):
            return self._binary_packet(data)
        pos = self._namespace(data, 2)
        if pos < 0:
            return Received(
                failure=Failure(
                    "protocol_error", f"packet of another namespace: {start(data)}", False
                )
            )
        if kind == b"0":
            if self.ready:
                return fail("a second CONNECT from the server")
            self.ready = True
            if self._early:  # what the server's connect handler emitted first
                early, self._early = self._early, []
                return Received(early)
            return NOTHING
        if kind == b"4":
            try:
                body = _loads(data[pos:].decode())
                reason = body.get("message", body) if isinstance(body, dict) else body
            except (ValueError, RecursionError):
                reason = start(data[pos:])
            return Received(
                failure=Failure(
                    "socketio_connect_error", f"refused: {str(reason)[:160]}", True, 1000
                )
            )
        if kind == b"1":
            return Received(
                failure=Failure("socketio_disconnect", "the server disconnected us", True, 1000)
            )
        if kind == b"2" and not self.ready:
            return self._held(self._event(data, 2))
        if kind in (b"2", b"3"):
            return fail(f"EVENT or ACK before the namespace's CONNECT: {start(data)}")
        return fail(f"not a Socket.IO packet: {start(data)!r}")

    def _held(self, got: Received) -> Received:
        """An event before the namespace's CONNECT: its messages held (bounded) until it
        comes, its replies (an ack the server asked for) sent at once."""
        if got.failure is not None or not got.messages:
            return got
        if len(self._early) + len(got.messages) > MAX_EARLY:
            return fail(f"more than {MAX_EARLY} events before the namespace's CONNECT")
        self._early.extend(got.messages)
        return Received(replies=got.replies) if got.replies else NOTHING

    def _ack(self, data: bytes, pos: int) -> Received:
        """``43[/ns,]<id>[...]``: the answer to our emit ``id`` (the hot path: no dict, no dump)."""
        nsb = self._nsb
        if nsb:
            if not data.startswith(nsb, pos):
                return other_namespace("ACK", data)
            pos += len(nsb)
        elif data[pos : pos + 1] == b"/":
            return other_namespace("ACK", data)
        bracket = data.find(b"[", pos)
        key = data[pos:bracket]
        if bracket < 0 or not key.isdigit() or len(key) > 15:
            return fail(f"ACK without its id and array: {start(data)}")
        if key[0] == 48 and len(key) > 1:  # "007": JSON has no leading zeros
            key = str(int(key)).encode()
        body = data[bracket:]
        try:
            args = _loads(body.decode())
        except (ValueError, RecursionError):
            args = None
        if args.__class__ is not list:
            return fail(f"ACK whose body is not a JSON array: {start(data)}")
        if len(args) == 1:  # the common case: the one argument's own text, spliced
            if body[-1] != 93:  # "]" (whitespace after it)
                body = body.rstrip()
            return Received([Message(b'{"answer":' + key + b',"data":' + body[1:-1] + b"}")])
        return Received([ack_message(key, body, args)])

    def _event(self, data: bytes, pos: int) -> Received:
        pos = self._namespace(data, pos)
        if pos < 0:
            return other_namespace("event", data)
        bracket = data.find(b"[", pos)
        ident = data[pos:bracket]
        if bracket < 0 or (ident and not (ident.isdigit() and len(ident) <= 15)):
            return fail(f"EVENT whose body is not [name, ...]: {start(data)}")
        body = data[bracket:]
        try:
            args = _loads(body.decode())
        except (ValueError, RecursionError):
            args = None
        if args.__class__ is not list or not args or args[0].__class__ is not str:
            return fail(f"EVENT whose body is not [name, ...]: {start(data)}")
        message = event_message(body, args)
        if ident:  # the server asks for an ack: answered empty (housekeeping)
            return Received([message], ["43" + self._ns + ident.decode() + "[]"])
        return Received([message])

    # -- binary packets --------------------------------------------------------

    def _binary_packet(self, data: bytes) -> Received:
        dash = data.find(b"-", 2)
        count = data[2:dash]
        if dash < 0 or not count.isdigit() or len(count) > 3:
            return fail(f"binary packet without its attachment count: {start(data)}")
        expected = int(count)
        if not 0 < expected <= MAX_ATTACHMENTS:
            return fail(f"binary packet with {expected} attachments (at most {MAX_ATTACHMENTS})")
        is_ack = data[1:2] == b"6"
        pos = self._namespace(data, dash + 1)
        if pos < 0:
            return fail(f"binary packet of another namespace: {start(data)}")
        bracket = data.find(b"[", pos)
        ident = data[pos:bracket]
        if bracket < 0 or ((ident or is_ack) and not (ident.isdigit() and len(ident) <= 15)):
            return fail(f"binary packet without its id and array: {start(data)}")
        try:
            args = _loads(data[bracket:].decode())
        except (ValueError, RecursionError):
            args = None
        if args.__class__ is not list or not (is_ack or (args and args[0].__class__ is str)):
            return fail(f"binary packet whose body is not a JSON array: {start(data)}")
        if is_ack and ident[0] == 48 and len(ident) > 1:  # "007": JSON has no leading zeros
            ident = str(int(ident)).encode()
        self._binary = (is_ack, ident, args, expected)
        self._attachments = []
        self._attached = 0
        return NOTHING

    def _attachment(self, data: bytes) -> Received:
        if self._binary is None:
            return fail("a binary frame no binary packet announced")
        self._attached += len(data)
        limit = min(MAX_ATTACHMENT_BYTES, self.max_message_size)
        if self._attached > limit:
            self._binary = None
            self._attachments = []
            return fail(f"binary attachments past {limit} bytes")
        self._attachments.append(bytes(data))
        is_ack, ident, args, expected = self._binary
        if len(self._attachments) < expected:
            return NOTHING
        attachments, self._attachments, self._binary = self._attachments, [], None
        try:
            args = fill_binary(args, attachments, 0)
        except (IndexError, TypeError, RecursionError):
            return fail("a binary placeholder names no attachment")
        if is_ack:
            return Received([ack_message(ident, dumps(args).encode(), args)])
        message = event_message(b"", args)
        got = Received([message])
        if ident:
            got.replies.append("43" + self._ns + ident.decode() + "[]")
        return got if self.ready else self._held(got)

    # -- sending ---------------------------------------------------------------

    def encode(
        self, action: Action, value: Any, answer: bool
    ) -> tuple[list[Frame], AnswerKey | None]:
        if action is Action.EMIT:
            if value.__class__ is not dict or value.get("event").__class__ is not str:
                raise CodecInputError(f"emit needs a table with an event name, not {value!r:.80}")
            args = value.get("args")
            if args is None:
                packet = [value["event"], value["data"]] if "data" in value else [value["event"]]
            elif args.__class__ is list:
                packet = [value["event"], *args]
            else:
                raise CodecInputError(f"emit args must be a list, not {args!r:.80}")
        else:
            raise CodecInputError(f"{action} is not a step of protocol socketio")
        try:
            body = dumps(packet)
        except (TypeError, ValueError, RecursionError) as exc:
            raise CodecInputError(f"emit data is not JSON: {exc}") from None
        if not answer:
            return ["42" + self._ns + body], None
        ident = self._next_id
        self._next_id = ident + 1
        return ["42" + self._ns + str(ident) + body], ident

    # -- time and goodbye ------------------------------------------------------

    def on_timer(self, now: float) -> list[Frame]:
        """The server's ping is overdue: ``ping_timeout`` (in :attr:`failure`)."""
        if now >= self.deadline and self.failure is None:
            self.deadline = _INF
            self.failure = Failure(
                "ping_timeout",
                f"no Engine.IO ping from the server within {self._window:g} s "
                "(its pingInterval + pingTimeout)",
                True,
                1000,
            )
        return []

    def goodbye(self) -> list[Frame]:
        """Leave the namespace (``41``), as a client's ``disconnect()`` does."""
        return ["41" + self._ns] if self.ready else []


__all__ = ["MAX_ATTACHMENTS", "MAX_ATTACHMENT_BYTES", "MAX_EARLY", "SocketIOCodec"]

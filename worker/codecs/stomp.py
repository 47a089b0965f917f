"""STOMP 1.2 over WebSocket (RabbitMQ's Web-STOMP, ActiveMQ, Spring's broker relay...).

A STOMP frame (https://stomp.github.io/stomp-specification-1.2.html) is a
command line, header lines, a blank line and a body ended by NUL; between
frames the peer may send bare EOLs (heart-beats). Over WebSocket a frame
usually fills one message, but several may share one and a large one may be
split: this codec reads the messages as one byte stream (a partial frame is
kept, bounded: :mod:`.stomp_frames` reads and writes the frames).

- handshake: :meth:`StompCodec.open` sends ``CONNECT`` (``accept-version``
  1.2, 1.1 and 1.0, ``host``, ``login``/``passcode``, ``heart-beat`` and the
  option ``headers``); the steps run after ``CONNECTED``. A server that
  answers with anything else speaks another protocol: ``protocol_error``.
- heart-beats, negotiated as the spec says: we send ``"\\n"`` every
  ``max(ours, what the server wants)`` ms (:meth:`StompCodec.on_timer`), and
  when nothing at all came for twice the server's interval the connection
  is dead: ``heartbeat_timeout`` (:attr:`StompCodec.failure`). Received EOLs
  are swallowed. Neither is ever a step's message.
- steps: ``send = {destination, body, headers, content_type}`` (a table
  body is sent as JSON with ``content-type: application/json``),
  ``subscribe = {destination, id, ack, headers}``, ``unsubscribe = {id}``.
  ``receipt = true`` on any of them adds a ``receipt`` header whose value
  (``r1``, ``r2``... per connection) is the answer's key: the ``RECEIPT``
  becomes ``{"answer":"r1","command":"RECEIPT"}``, an ``ERROR`` naming it
  ``{"answer":"r1","command":"ERROR","error":MESSAGE}`` (the step fails
  with ``stomp_error``). Any other ``ERROR`` is ``stomp_error``, fatal (the
  spec has the server close after one; RabbitMQ sometimes goes on, but
  which request it refused is unknown).
- ``MESSAGE`` -> ``{"command":"MESSAGE","destination":D,"subscription":S,
  "message_id":M,"headers":{...},"body":B}`` (B the JSON value when the body
  is JSON, else its text, else ``{"_binary":"<base64>"}``), for ``expect``
  and ``[deliveries]`` (paths such as ``body.seq``). A subscription with ``ack = "client"`` or
  ``"client-individual"`` has each of its messages ACKed by the codec.

Bounds: a frame's size (the job's ``max_message_size``, at most
:data:`~.stomp_frames.MAX_FRAME`) and its header section (:mod:`.stomp_frames`;
a peer past them costs ``protocol_error``; a partial frame is parsed again
only once it may be whole: linear time however it is split), receipts remembered
(:data:`MAX_RECEIPTS`) and subscriptions with client acks
(:data:`MAX_SUBSCRIPTIONS`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, ClassVar

from wsload.common.fields import DEFAULT_MAX_MESSAGE_SIZE
from wsload.common.program import Action
from wsload.common.protocols import STOMP_ACKS, SUBPROTOCOLS, VERBS, option_defaults
from wsload.worker.codecs.base import (
    NOTHING,
    TEXT_LIMIT,
    AnswerKey,
    Codec,
    CodecInputError,
    Failure,
    Frame,
    Message,
    Received,
    cut,
    dumps,
    payload_view,
)
from wsload.worker.codecs.stomp_frames import (
    MAX_FRAME,
    StompProtocolError,
    parse_frames,
    write_frame,
)

#: receipts we wait for at once (a step that timed out leaves its receipt: its
#: RECEIPT may still come, late; the oldest is forgotten past this)
MAX_RECEIPTS = 1024
#: subscriptions whose messages the codec ACKs
MAX_SUBSCRIPTIONS = 1024
_DEFAULTS = option_defaults("stomp")
#: the default heart-beat: we can send every 10 s, we want one every 10 s (ms)
DEFAULT_HEART_BEAT: tuple[int, int] = tuple(_DEFAULTS["heart_beat"])

_CLIENT_ACKS = ("client", "client-individual")
_ACK_MODES = STOMP_ACKS


def _text(value: Any, what: str) -> str:
    """A header value from a rendered template: text, or a number/bool as text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise CodecInputError(f"{what} must be text, not {type(value).__name__}")


def _error_text(headers: Mapping[str, str], body: bytes) -> str:
    """An ERROR's text: its ``message`` header and its body's first line (RabbitMQ puts
    ``Bad CONNECT`` in one and ``Access refused for user 'u'`` in the other)."""
    lines = body[: TEXT_LIMIT * 2].decode("utf-8", "replace").strip().splitlines()
    parts = [p for p in (headers.get("message", "").strip(), lines[0] if lines else "") if p]
    return cut(": ".join(parts) or "ERROR frame")


class StompCodec(Codec):
    """One STOMP connection (see the module's docstring)."""

    name: ClassVar[str] = "stomp"
    #: offered in this order (v12.stomp first); RabbitMQ picks the first it speaks
    subprotocol: ClassVar[str | None] = ", ".join(SUBPROTOCOLS["stomp"])
    verbs: ClassVar[frozenset[Action]] = VERBS["stomp"]

    def __init__(
        self, options: Mapping[str, Any], max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    ) -> None:
        super().__init__(options, max_message_size)
        self.version = "1.2"
        self._partial = bytearray()
        #: the bytes the partial frame has in all, when its content-length says (0: unknown)
        self._need = 0
        #: a frame's bound: the job's max_message_size, at most MAX_FRAME
        self._max_frame = min(MAX_FRAME, max_message_size)
        # pending receipt ids, oldest first (an OrderedDict: dropping the oldest is O(1))
        self._receipts: OrderedDict[str, None] = OrderedDict()
        self._next_receipt = 1
        self._next_subscription = 1
        self._client_acks: dict[str, str] = {}  # subscription id -> ack mode
        self._send_every = 0.0  # seconds (0: we send no heart-beats)
        self._hear_within = 0.0  # seconds (0: we do not watch the server)
        self._next_beat = float("inf")
        self._heard_at = 0.0
        beat = options.get("heart_beat", DEFAULT_HEART_BEAT)
        try:
            self._beat = (max(0, int(beat[0])), max(0, int(beat[1])))
        except (TypeError, ValueError, IndexError, KeyError):
            self._beat = DEFAULT_HEART_BEAT

    # -- the handshake and heart-beats ----------------------------------------------------

    def open(self, now: float) -> list[Frame]:
        headers: dict[str, str] = {
            "accept-version": "1.2,1.1,1.0",
            "host": _text(self.options.get("host", _DEFAULTS["host"]), "host"),
        }
        for key in ("login", "passcode"):
            if self.options.get(key) is not None:
                headers[key] = _text(self.options[key], key)
        headers["heart-beat"] = f"{self._beat[0]},{self._beat[1]}"
        extra = self.options.get("headers") or {}
        if isinstance(extra, Mapping):
            for key, value in extra.items():
                headers.setdefault(str(key), _text(value, f"header {key}"))
        self._heard_at = now
        # CONNECT's headers are never escaped (1.2): a value cannot hold EOLs
        lines = [f"{k}:{v}" for k, v in headers.items() if "\n" not in k + v]
        return ["CONNECT\n" + "\n".join(lines) + "\n\n\0"]

    def _connected(self, now: float, headers: Mapping[str, str]) -> None:
        """CONNECTED: the negotiated version and heart-beats; steps may run."""
        self.version = headers.get("version", "1.0")
        sx, sy = 0, 0
        parts = headers.get("heart-beat", "0,0").split(",")
        if len(parts) == 2 and parts[0].strip().isdigit() and parts[1].strip().isdigit():
            sx, sy = int(parts[0]), int(parts[1])
        cx, cy = self._beat
        self._send_every = max(cx, sy) / 1000 if cx and sy else 0.0
        self._hear_within = 2 * max(sx, cy) / 1000 if sx and cy else 0.0
        self._next_beat = now + self._send_every if self._send_every else float("inf")
        self.ready = True
        self._rearm()

    def _rearm(self) -> None:
        hear_by = self._heard_at + self._hear_within if self._hear_within else float("inf")
        self.deadline = min(self._next_beat, hear_by)

    def on_timer(self, now: float) -> list[Frame]:
        if self._hear_within and now >= self._heard_at + self._hear_within:
            if self.failure is None:
                self.failure = Failure(
                    "heartbeat_timeout",
                    f"nothing from the server for {self._hear_within:g} s "
                    "(twice its heart-beat interval)",
                )
            self.deadline = float("inf")
            return []
        frames: list[Frame] = []
        if now >= self._next_beat:
            frames.append("\n")
            self._next_beat = now + self._send_every
        self._rearm()
        return frames

    def goodbye(self) -> list[Frame]:
        return ["DISCONNECT\n\n\0"] if self.ready else []

    # -- received frames ------------------------------------------------------------------

    def receive(self, now: float, data: bytes, text: bool) -> Received:
        self._heard_at = now
        if self._hear_within:
            self._rearm()
        buf: bytes | bytearray = data
        if self._partial:
            # the rest of a frame: appended in place, parsed again only when it may
            # be whole (its content-length's bytes are all here; without one, a NUL
            # came), so a frame sent in many small pieces costs linear time
            self._partial += data
            size = len(self._partial)
            need = self._need
            if size < self._max_frame and (size < need if need else b"\0" not in data):
                return NOTHING
            buf, self._partial = self._partial, bytearray()
        elif data == b"\n" or data == b"\r\n":
            return NOTHING
        try:
            frames, used, self._need = parse_frames(buf, self.version != "1.0", self._max_frame)
        except StompProtocolError as exc:
            self._need = 0
            return Received(failure=Failure("protocol_error", cut(str(exc))))
        if used < len(buf):
            self._partial = bytearray(buf[used:])
        if not frames:
            return NOTHING
        out = Received()
        for command, headers, body in frames:
            failure = self._frame(now, command, headers, body, out)
            if failure is not None:
                out.failure = failure
                break
        return out

    def _frame(
        self, now: float, command: str, headers: dict[str, str], body: bytes, out: Received
    ) -> Failure | None:
        if command == "MESSAGE" and self.ready:
            out.messages.append(self._message(headers, body, out))
            return None
        if command == "RECEIPT" and self.ready:
            rid = headers.get("receipt-id", "")
            self._receipts.pop(rid, None)
            view = {"answer": rid, "command": "RECEIPT"}
            text = f'{{"answer":{dumps(rid)},"command":"RECEIPT"}}'
            out.messages.append(Message(text.encode(), view))
            return None
        if command == "ERROR":
            error = _error_text(headers, body)
            failed = headers.get("receipt-id")
            if failed is not None and failed in self._receipts:
                del self._receipts[failed]
                view = {"answer": failed, "command": "ERROR", "error": error}
                out.messages.append(Message(dumps(view).encode(), view))
                return None
            return Failure("stomp_error", error)
        if command == "CONNECTED" and not self.ready:
            self._connected(now, headers)
            return None
        state = "after CONNECTED" if self.ready else "instead of CONNECTED"
        return Failure("protocol_error", f"unexpected STOMP frame {cut(command)} {state}")

    def _message(self, headers: dict[str, str], body: bytes, out: Received) -> Message:
        subscription = headers.get("subscription", "")
        view: dict[str, Any] = {
            "command": "MESSAGE",
            "destination": headers.get("destination", ""),
            "subscription": subscription,
            "message_id": headers.get("message-id", ""),
            "headers": headers,
        }
        if subscription in self._client_acks:
            out.replies.append(self._ack(headers))
        # the body's JSON spliced in: never dumped again, whatever its nesting
        head = dumps(view)
        view["body"], text = payload_view(body)
        return Message(f'{head[:-1]},"body":{text}}}'.encode(), view)

    def _ack(self, headers: Mapping[str, str]) -> str:
        """The ACK of one MESSAGE, as the negotiated version spells it."""
        if self.version == "1.2":
            return self._frame_text("ACK", {"id": headers.get("ack", "")}, "")
        ack = {"message-id": headers.get("message-id", "")}
        if self.version == "1.1":
            ack["subscription"] = headers.get("subscription", "")
        return self._frame_text("ACK", ack, "")

    # -- steps ----------------------------------------------------------------------------

    def encode(
        self, action: Action, value: Any, answer: bool
    ) -> tuple[list[Frame], AnswerKey | None]:
        if not isinstance(value, Mapping):
            raise CodecInputError(f"{action} takes a table, not {type(value).__name__}")
        headers: dict[str, str] = {}
        body = ""
        if action is Action.SEND:
            headers["destination"] = _text(value.get("destination"), "destination")
            raw = value.get("body", "")
            content_type = value.get("content_type")
            if isinstance(raw, str):
                body = raw
            else:
                body = dumps(raw)
                content_type = content_type or "application/json"
            if content_type is not None:
                headers["content-type"] = _text(content_type, "content_type")
            headers["content-length"] = str(len(body.encode()))
        elif action is Action.SUBSCRIBE:
            sid = value.get("id")
            if sid is None:
                sid = f"sub-{self._next_subscription}"
                self._next_subscription += 1
            sid = _text(sid, "id")
            headers["id"] = sid
            headers["destination"] = _text(value.get("destination"), "destination")
            mode = _text(value.get("ack", "auto"), "ack")
            if mode not in _ACK_MODES:
                raise CodecInputError(f"ack must be one of {', '.join(_ACK_MODES)}, not {mode!r}")
            headers["ack"] = mode
            if mode in _CLIENT_ACKS:
                if sid not in self._client_acks and len(self._client_acks) >= MAX_SUBSCRIPTIONS:
                    raise CodecInputError(f"more than {MAX_SUBSCRIPTIONS} client-ack subscriptions")
                self._client_acks[sid] = mode
            else:
                self._client_acks.pop(sid, None)
        elif action is Action.UNSUBSCRIBE:
            sid = _text(value.get("id"), "id")
            headers["id"] = sid
            self._client_acks.pop(sid, None)
        else:
            raise CodecInputError(f"{action} is not a step of protocol stomp")
        extra = value.get("headers") or {}
        if not isinstance(extra, Mapping):
            raise CodecInputError("headers must be a table")
        for name, item in extra.items():
            headers.setdefault(str(name), _text(item, f"header {name}"))
        receipt: str | None = None
        if answer:
            receipt = f"r{self._next_receipt}"
            self._next_receipt += 1
            headers["receipt"] = receipt
            if len(self._receipts) >= MAX_RECEIPTS:
                self._receipts.popitem(last=False)
            self._receipts[receipt] = None
        command = "SEND" if action is Action.SEND else action.value.upper()
        return [self._frame_text(command, headers, body)], receipt

    def _frame_text(self, command: str, headers: Mapping[str, str], body: str) -> str:
        return write_frame(command, headers, body, self.version)


__all__ = ["StompCodec"]

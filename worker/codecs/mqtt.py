"""MQTT 3.1.1 (and 5, ``version = 5``) over WebSocket (subprotocol ``mqtt``): the sans-I/O codec.

MQTT over WebSocket is a byte stream carried in binary frames: a frame may
hold several packets or part of one (brokers are free to split), so the
codec reassembles the stream (:class:`~wsload.worker.codecs.mqtt_wire.PacketReader`,
bounded by the job's ``max_message_size`` per packet) before it reads a
packet. What a scenario sees:

- ``send = {topic, payload, qos, retain}`` is a PUBLISH; QoS 1 waits for its
  PUBACK (the answer's key is the packet id), QoS 0 waits for nothing, QoS 2
  is refused (not supported). ``subscribe = {topic, qos}`` waits for its
  SUBACK, ``unsubscribe = {topic}`` for its UNSUBACK. Packet ids run
  1..65535 per connection, skipping the ones still waiting for an answer.
- A received PUBLISH is the message ``{"topic":T,"payload":P,"qos":Q,"retain":R}``
  (P the payload's JSON value when it is JSON, else its text, else
  ``{"_binary":"<base64>"}``): an expect's or a ``[deliveries]``'s. A QoS 1
  delivery is PUBACKed and a QoS 2 one goes through PUBREC/PUBREL/PUBCOMP
  (delivered once) by the codec itself: housekeeping, never counted.
- Answers: ``{"answer":PID,"type":"puback"|"suback"|"unsuback"}``, and a
  refused subscription (SUBACK 0x80) ``{"answer":PID,"type":"suback","error":...}``,
  which fails the step with ``mqtt_error``.
- The handshake: CONNECT on open (client id, username/password, keep-alive,
  clean session), ready on CONNACK 0; any other return code is
  ``Failure("mqtt_refused")``. The keep-alive: a PINGREQ ``keepalive``
  seconds after the last packet the codec sent itself (CONNECT, PINGREQ, a
  PUBACK...; a step's packets do not defer it, as :meth:`MqttCodec.encode`
  has no clock: a busy publisher pings too), its PINGRESP swallowed; none within
  ``keepalive`` more is ``Failure("keepalive_timeout")``, left in
  :attr:`MqttCodec.failure` by :meth:`MqttCodec.on_timer` (the codecs'
  convention: the session counts it once and closes). DISCONNECT is the goodbye.
- A packet that breaks the protocol (bad length, a packet a server never
  sends, a text frame) is ``Failure("protocol_error")``: the connection is
  closed, never a traceback.

Options (rendered per connection, defaults from
:mod:`wsload.common.protocols`): ``client_id`` (``wsload-{client_id}``;
an empty one: ``wsload-`` and 16 hex digits from the client's rng, 23
characters, the length every broker must accept; reproducible per client),
``username``, ``password``, ``keepalive`` (seconds, 30; 0 = none),
``clean_session`` (true), ``version`` (4, MQTT 3.1.1; 5: MQTT 5, whose
reason codes 0x80 and up refuse a publish, a subscription or an
unsubscribe as an error answer, whose CONNACK may set the keep-alive, cap
the QoS 1 publishes in flight (Receive Maximum), the publishes' QoS
(Maximum QoS) and a packet's size (Maximum Packet Size: a step past them
is ``bad_step_value``, its text says which), and whose server may send
DISCONNECT: ``Failure("mqtt_disconnect")`` with its reason). No free packet
id (65,535 requests wait) or the server's Receive Maximum reached is
``Failure("mqtt_backlog")``: fatal, reconnected after the backoff.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from wsload.common.fields import DEFAULT_MAX_MESSAGE_SIZE
from wsload.common.program import Action
from wsload.common.protocols import SUBPROTOCOLS, VERBS, option_defaults
from wsload.worker.codecs.base import (
    NOTHING,
    AnswerKey,
    Codec,
    CodecInputError,
    Failure,
    Frame,
    Message,
    Received,
    dumps,
    payload_view,
)
from wsload.worker.codecs.mqtt_steps import payload, qos, topics
from wsload.worker.codecs.mqtt_wire import (
    CONNACK,
    DISCONNECT,
    MAX_REMAINING,
    MAXIMUM_PACKET_SIZE,
    MAXIMUM_QOS,
    PINGREQ_PACKET,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    RECEIVE_MAXIMUM,
    SERVER_KEEP_ALIVE,
    SUBACK,
    UNSUBACK,
    MalformedPacket,
    PacketReader,
    ack_packet,
    connect_packet,
    publish_packet,
    read_answer,
    read_properties,
    read_publish,
    read_u16,
    reason,
    subscribe_packet,
    unsubscribe_packet,
)

_DEFAULTS = option_defaults("mqtt")
DEFAULT_KEEPALIVE: int = _DEFAULTS["keepalive"]
_ANSWER_TYPES = {PUBACK: "puback", SUBACK: "suback", UNSUBACK: "unsuback"}
_SEND_TYPE = {Action.SEND: PUBACK, Action.SUBSCRIBE: SUBACK, Action.UNSUBSCRIBE: UNSUBACK}
_PACKET_IDS = 65535
#: the largest packet MQTT can frame (a remaining length of 4 varint bytes, plus its header)
MAX_PACKET = MAX_REMAINING + 5
_BOOL = ("false", "true")


class MqttCodec(Codec):
    """One MQTT connection's state (see the module's docstring)."""

    name: ClassVar[str] = "mqtt"
    subprotocol: ClassVar[str | None] = SUBPROTOCOLS["mqtt"][0]
    verbs: ClassVar[frozenset[Action]] = VERBS["mqtt"]

    def __init__(
        self, options: Mapping[str, Any], max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    ) -> None:
        super().__init__(options, max_message_size)
        client_id = options.get("client_id")
        #: the CONNECT's client id ("": made at :meth:`open` from the client's rng)
        self.client_id = str(client_id) if client_id else ""
        keepalive = options.get("keepalive", DEFAULT_KEEPALIVE)
        if isinstance(keepalive, str) and keepalive.isdigit():
            keepalive = int(keepalive)
        if isinstance(keepalive, bool) or not isinstance(keepalive, int):
            keepalive = DEFAULT_KEEPALIVE  # the language checked it: a template's wrong type
        self.keepalive = min(max(keepalive, 0), 65535)
        #: MQTT 5 (``version = 5``; 4, MQTT 3.1.1, is the default)
        self.v5 = options.get("version") in (5, "5")
        #: QoS 1 publishes the server takes unanswered at once (MQTT 5's Receive Maximum)
        self.receive_maximum = _PACKET_IDS
        #: the highest QoS the server takes in a publish, the largest packet it takes
        #: (MQTT 5's CONNACK Maximum QoS and Maximum Packet Size)
        self.maximum_qos = 1
        self.maximum_packet = MAX_PACKET
        self.reader = PacketReader(max_message_size)
        #: packet id -> the answer's packet type; ``silent`` ids answer no step
        self.waiting: dict[int, int] = {}
        self.silent: set[int] = set()
        self.next_id = 1
        #: QoS 2 deliveries received, their PUBREL not yet (delivered once)
        self.qos2_in: set[int] = set()
        self.last_sent = 0.0
        self.ping_sent: float | None = None

    # -- the handshake and the keep-alive --------------------------------

    def open(self, now: float) -> list[Frame]:
        opts = self.options
        if not self.client_id:  # 16 hex digits: 23 characters, what every broker accepts
            self.client_id = f"wsload-{self.rng.getrandbits(64):016x}"
        username, password = opts.get("username"), opts.get("password")
        packet = connect_packet(
            self.client_id,
            keepalive=self.keepalive,
            clean_session=opts.get("clean_session", True) not in (False, "false", 0, "0"),
            username=None if username is None else str(username),
            password=None if password is None else str(password).encode(),
            v5=self.v5,
        )
        self._sent(now)
        return [packet]

    def _sent(self, now: float) -> None:
        self.last_sent = now
        self._schedule()

    def _schedule(self) -> None:
        if not self.keepalive or self.failure is not None:
            self.deadline = float("inf")
        elif self.ping_sent is not None:
            self.deadline = self.ping_sent + self.keepalive
        else:
            self.deadline = self.last_sent + self.keepalive

    def on_timer(self, now: float) -> list[Frame]:
        if not self.keepalive or self.failure is not None or now < self.deadline:
            return []
        if self.ping_sent is not None:  # the PINGRESP is overdue
            self.failure = Failure(
                "keepalive_timeout", f"no PINGRESP within the keep-alive ({self.keepalive} s)"
            )
            self._schedule()
            return []
        self.ping_sent = now
        self._sent(now)
        return [PINGREQ_PACKET]

    def goodbye(self) -> list[Frame]:
        return [bytes((DISCONNECT << 4, 0))] if self.ready else []  # 5: reason 0, normal

    # -- steps -------------------------------------------------------------

    def _packet_id(self) -> int:
        if len(self.waiting) >= _PACKET_IDS:
            self._full(f"no free packet id: {_PACKET_IDS} requests wait for their answers")
        pid = self.next_id
        while pid in self.waiting:
            pid = pid % _PACKET_IDS + 1
        self.next_id = pid % _PACKET_IDS + 1
        return pid

    def _full(self, text: str) -> None:
        """No request can be sent until answers come, which they do not: the connection is
        given up (a fatal failure, reconnected after the backoff), not each step refused."""
        if self.failure is None:
            self.failure = Failure("mqtt_backlog", text)
            self.deadline = 0.0  # past: the session's timer counts it and closes at once
        raise CodecInputError(text)

    def _sized(self, frame: bytes) -> bytes:
        if len(frame) > self.maximum_packet:
            raise CodecInputError(
                f"a packet of {len(frame)} bytes is past the server's Maximum Packet Size "
                f"({self.maximum_packet}, its CONNACK says)"
            )
        return frame

    def encode(
        self, action: Action, value: Any, answer: bool
    ) -> tuple[list[Frame], AnswerKey | None]:
        if not isinstance(value, Mapping):
            raise CodecInputError(f"{action} needs a table, got {type(value).__name__}")
        if action is Action.SEND:
            topic = value.get("topic")
            if not isinstance(topic, str) or not topic or "+" in topic or "#" in topic:
                raise CodecInputError(f"a publish needs a topic without wildcards, got {topic!r}")
            if self.maximum_qos < 1:
                level = qos(value, 0, "is past the server's Maximum QoS (0, its CONNACK says)")
            else:
                level = qos(value, 1)
            data = payload(value)
            if level == 0:
                if answer:
                    raise CodecInputError("a QoS 0 publish has no answer to wait for")
                retain = bool(value.get("retain"))
                return [self._sized(publish_packet(topic, data, 0, retain, 0, self.v5))], None
            if self.receive_maximum < _PACKET_IDS and self.receive_maximum <= sum(
                1 for kind in self.waiting.values() if kind == PUBACK
            ):
                self._full(
                    f"the server's receive maximum ({self.receive_maximum}) QoS 1 publishes "
                    "wait for their PUBACK"
                )
            pid = self._packet_id()
            frame = publish_packet(topic, data, level, bool(value.get("retain")), pid, self.v5)
        elif action is Action.SUBSCRIBE:
            filters, level = topics(value), qos(value, 2)
            pid = self._packet_id()
            frame = subscribe_packet(pid, [(t, level) for t in filters], self.v5)
        elif action is Action.UNSUBSCRIBE:
            pid = self._packet_id()
            frame = unsubscribe_packet(pid, topics(value), self.v5)
        else:
            raise CodecInputError(f"{action} is not a step of protocol mqtt")
        frame = self._sized(frame)
        self.waiting[pid] = _SEND_TYPE[action]
        if not answer:
            self.silent.add(pid)
        return [frame], (pid if answer else None)

    # -- received ------------------------------------------------------------

    def receive(self, now: float, data: bytes, text: bool) -> Received:
        if self.failure is not None:  # the timer's: the session counted it, and closes
            return NOTHING
        if text:
            return self._fail("MQTT over WebSocket is binary: got a text message")
        if (
            not self.ready
            and not self.reader.buffer
            and data[:2] not in (b"\x20\x02", b"\x20", b"")
            and not (self.v5 and data[:1] == b"\x20")
        ):
            return self._fail(f"expected a CONNACK, got {bytes(data[:8])!r}")
        try:
            packets = self.reader.feed(data)
        except MalformedPacket as e:
            return self._fail(str(e))
        if not packets:
            return NOTHING
        out = Received()
        try:
            for first, body in packets:
                self._packet(now, first, body, out)
                if out.failure is not None and out.failure.fatal:
                    break
        except MalformedPacket as e:
            return self._fail(str(e), out)
        if out.replies:
            self._sent(now)
        return out

    def _fail(self, text: str, out: Received | None = None) -> Received:
        failure = Failure("protocol_error", text)
        if out is None:
            return Received(failure=failure)
        out.failure = failure
        return out

    def _packet(self, now: float, first: int, body: memoryview, out: Received) -> None:
        kind, flags = first >> 4, first & 0x0F
        if not self.ready:
            if kind != CONNACK or flags or (len(body) != 2 and not self.v5):
                raise MalformedPacket(f"expected a CONNACK, got packet type {kind}")
            self._connack(body, out)
            return
        if kind == PUBLISH:
            self._publish(flags, body, out)
            return
        if kind == DISCONNECT and self.v5:  # the server's, with its reason
            code = body[0] if len(body) else 0
            text = f"the server disconnected: {reason(code)}"
            out.failure = Failure("mqtt_disconnect", text, close_code=1000)
            return
        if flags != (2 if kind == PUBREL else 0):
            raise MalformedPacket(f"packet type {kind} with flags {flags:#x}")
        if kind in _ANSWER_TYPES:
            self._answer(kind, body, out)
        elif kind == PINGRESP:
            if len(body):
                raise MalformedPacket("PINGRESP with a body")
            self.ping_sent = None
            self._schedule()
        elif kind == PUBREL:
            pid = read_u16(body, 0, len(body) == 2 or self.v5)
            self.qos2_in.discard(pid)
            out.replies.append(ack_packet(PUBCOMP, pid))
        else:  # CONNACK again, PUBREC/PUBCOMP (we never publish QoS 2), client packets
            raise MalformedPacket(f"unexpected packet type {kind} from the server")

    def _publish(self, flags: int, body: memoryview, out: Received) -> None:
        qos = (flags >> 1) & 3
        topic, pid, payload = read_publish(body, qos, self.v5)
        if qos == 2:
            out.replies.append(ack_packet(PUBREC, pid))
            if pid in self.qos2_in:  # a resent one: delivered already
                return
            self.qos2_in.add(pid)
        elif qos == 1:
            out.replies.append(ack_packet(PUBACK, pid))
        shown, text = payload_view(payload)
        retain = bool(flags & 1)
        value = {"topic": topic, "payload": shown, "qos": qos, "retain": retain}
        view = f'{{"topic":{dumps(topic)},"payload":{text},"qos":{qos},"retain":{_BOOL[retain]}}}'
        out.messages.append(Message(view.encode(), value))

    def _connack(self, body: memoryview, out: Received) -> None:
        if len(body) < 2:
            raise MalformedPacket("a CONNACK of less than 2 bytes")
        code = body[1]
        if code:
            out.failure = Failure("mqtt_refused", f"CONNACK refused: {reason(code)}")
            return
        if self.v5:
            props = read_properties(body, 2)[0]
            keepalive = props.get(SERVER_KEEP_ALIVE)
            if isinstance(keepalive, int):  # the server's keep-alive is the one to keep
                self.keepalive = keepalive
                self._schedule()
            receive_maximum = props.get(RECEIVE_MAXIMUM)
            if isinstance(receive_maximum, int) and receive_maximum:
                self.receive_maximum = receive_maximum
            maximum_qos = props.get(MAXIMUM_QOS)
            if isinstance(maximum_qos, int) and maximum_qos < 2:
                self.maximum_qos = maximum_qos
            maximum_packet = props.get(MAXIMUM_PACKET_SIZE)
            if isinstance(maximum_packet, int) and maximum_packet:
                self.maximum_packet = min(maximum_packet, MAX_PACKET)
        self.ready = True

    def _answer(self, kind: int, body: memoryview, out: Received) -> None:
        pid, codes = read_answer(kind, body, self.v5)
        expected = self.waiting.get(pid)
        if expected != kind:
            text = f"{_ANSWER_TYPES[kind].upper()} for packet id {pid}, which waits for no such"
            out.failure = Failure("protocol_error", text, fatal=False)
            return
        del self.waiting[pid]
        if pid in self.silent:
            self.silent.discard(pid)
            return
        value: dict[str, Any] = {"answer": pid, "type": _ANSWER_TYPES[kind]}
        refused = next((code for code in codes if code >= 0x80), None)
        if refused is not None:
            what = {PUBACK: "publish", SUBACK: "subscription", UNSUBACK: "unsubscribe"}[kind]
            value["error"] = (
                f"{what} refused: {reason(refused)}" if self.v5 else "subscription refused"
            )
        out.messages.append(Message(dumps(value).encode(), value))


__all__ = ["MqttCodec"]

"""The MQTT 3.1.1 codec, sans-I/O: bytes in, bytes and views out, a fake clock.

Packets are written out byte by byte from the specification (3.1.1,
chapter 3) rather than by the codec's own builders, so an encoder bug
cannot hide behind the same bug in the decoder.
"""

from __future__ import annotations

import json
import random
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsload.common.program import Action
from wsload.worker.codecs import codec_class
from wsload.worker.codecs.base import CodecInputError, Failure, Received
from wsload.worker.codecs.mqtt import MqttCodec

CONNACK_OK = b"\x20\x02\x00\x00"
PINGREQ = b"\xc0\x00"
PINGRESP = b"\xd0\x00"


def u16(n: int) -> bytes:
    return struct.pack(">H", n)


def s(text: str) -> bytes:
    return u16(len(text.encode())) + text.encode()


def publish(topic: str, payload: bytes, qos: int = 0, pid: int = 0, retain: bool = False) -> bytes:
    body = s(topic) + (u16(pid) if qos else b"") + payload
    assert len(body) < 128
    return bytes((0x30 | qos << 1 | int(retain), len(body))) + body


def ready(options: dict[str, object] | None = None, now: float = 100.0) -> MqttCodec:
    codec = MqttCodec({"client_id": "c1", **(options or {})})
    codec.open(now)
    assert codec.receive(now, CONNACK_OK, False) == Received()
    assert codec.ready
    return codec


def views(received: Received) -> list[object]:
    return [json.loads(m.view) for m in received.messages]


def test_registered_under_its_name() -> None:
    assert codec_class("mqtt") is MqttCodec
    assert MqttCodec.subprotocol == "mqtt"
    assert MqttCodec.verbs == {Action.SEND, Action.SUBSCRIBE, Action.UNSUBSCRIBE}


def test_connect_packet_is_3_1_1_with_every_option() -> None:
    codec = MqttCodec(
        {
            "client_id": "me",
            "username": "u",
            "password": "p",
            "keepalive": 10,
            "clean_session": True,
        }
    )
    [frame] = codec.open(0.0)
    body = s("MQTT") + b"\x04" + b"\xc2" + u16(10) + s("me") + s("u") + s("p")
    assert frame == b"\x10" + bytes((len(body),)) + body
    assert not codec.ready


def test_connect_without_credentials_and_persistent_session() -> None:
    [frame] = MqttCodec({"client_id": "me", "keepalive": 0, "clean_session": False}).open(0.0)
    body = s("MQTT") + b"\x04\x00" + u16(0) + s("me")
    assert frame == b"\x10" + bytes((len(body),)) + body


def _default_id(rng: random.Random | None = None) -> str:
    codec = MqttCodec({"client_id": ""})
    if rng is not None:
        codec.rng = rng
    codec.open(0.0)
    return codec.client_id


def test_default_client_id_is_unique_per_connection_and_short() -> None:
    ids = {_default_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(i.startswith("wsload-") and len(i) == 23 for i in ids)


def test_default_client_id_comes_from_the_clients_rng() -> None:
    """Reproducible: the same client's rng gives the same ids, run after run."""
    first = [_default_id(rng) for rng in [random.Random(7)] * 3]
    again = [_default_id(rng) for rng in [random.Random(7)] * 3]
    assert first == again
    assert len(set(first)) == 3


def test_connack_refused_is_mqtt_refused() -> None:
    codec = MqttCodec({"client_id": "c"})
    codec.open(0.0)
    got = codec.receive(0.0, b"\x20\x02\x00\x05", False)
    assert got.failure == Failure("mqtt_refused", "CONNACK refused: not authorized (0x05)")
    assert not codec.ready


@pytest.mark.parametrize(
    "frame",
    [
        b"HTTP/1.1 200 OK\r\n",  # another protocol
        publish("t", b"x"),  # a packet before the CONNACK
        b"\x20\x03\x00\x00\x00",  # a CONNACK of the wrong length
    ],
)
def test_anything_but_connack_first_is_a_protocol_error(frame: bytes) -> None:
    codec = MqttCodec({"client_id": "c"})
    codec.open(0.0)
    got = codec.receive(0.0, frame, False)
    assert got.failure is not None
    assert got.failure.kind == "protocol_error"
    assert got.failure.fatal
    assert not codec.ready


def test_text_frame_is_a_protocol_error() -> None:
    got = ready().receive(0.0, b"0{}", True)
    assert got.failure is not None
    assert got.failure.kind == "protocol_error"


def test_publish_qos0_waits_for_nothing() -> None:
    codec = ready()
    frames, key = codec.encode(
        Action.SEND, {"topic": "a/b", "payload": {"seq": 1}, "retain": True}, False
    )
    assert key is None
    assert frames == [publish("a/b", b'{"seq":1}', retain=True)]
    frames, _ = codec.encode(Action.SEND, {"topic": "a", "payload": "hé"}, False)
    assert frames == [publish("a", "hé".encode())]


def test_publish_qos1_is_answered_by_its_puback() -> None:
    codec = ready()
    frames, key = codec.encode(Action.SEND, {"topic": "t", "payload": "x", "qos": 1}, True)
    assert key == 1
    assert frames == [publish("t", b"x", qos=1, pid=1)]
    got = codec.receive(0.0, b"\x40\x02" + u16(1), False)
    assert [m.view for m in got.messages] == [b'{"answer":1,"type":"puback"}']
    assert got.messages[0].parsed == {"answer": 1, "type": "puback"}
    assert not got.replies
    assert got.failure is None
    assert not codec.waiting


def test_puback_of_no_request_is_counted_not_fatal() -> None:
    codec = ready()
    got = codec.receive(0.0, b"\x40\x02" + u16(7), False)
    assert not got.messages
    assert got.failure is not None
    assert got.failure.kind == "protocol_error"
    assert not got.failure.fatal


def test_qos1_publish_of_a_step_that_does_not_wait_swallows_its_puback() -> None:
    codec = ready()
    _, key = codec.encode(Action.SEND, {"topic": "t", "qos": 1}, False)
    assert key is None
    assert codec.receive(0.0, b"\x40\x02" + u16(1), False) == Received()


def test_packet_ids_skip_those_in_use_and_wrap() -> None:
    codec = ready()
    codec.next_id = 65534
    codec.waiting[65535] = 4
    codec.waiting[1] = 4
    keys = [codec.encode(Action.SEND, {"topic": "t", "qos": 1}, True)[1] for _ in range(3)]
    assert keys == [65534, 2, 3]


def test_no_free_packet_id_is_a_fatal_failure_at_once() -> None:
    """Answers that never come fill the table: the connection is given up (the session's
    timer, due at once, counts the failure and closes; reconnect after the backoff)."""
    codec = ready()
    codec.waiting = dict.fromkeys(range(1, 65536), 4)
    with pytest.raises(CodecInputError, match="no free packet id"):
        codec.encode(Action.SEND, {"topic": "t", "qos": 1}, True)
    assert codec.failure is not None
    assert codec.failure.kind == "mqtt_backlog"
    assert codec.failure.fatal
    assert codec.deadline == 0.0
    assert codec.on_timer(100.0) == []


def test_subscribe_is_answered_by_its_suback() -> None:
    codec = ready()
    frames, _key = codec.encode(Action.SUBSCRIBE, {"topic": "news/#", "qos": 1}, True)
    body = u16(1) + s("news/#") + b"\x01"
    assert frames == [b"\x82" + bytes((len(body),)) + body]
    got = codec.receive(0.0, b"\x90\x03" + u16(1) + b"\x01", False)
    assert views(got) == [{"answer": 1, "type": "suback"}]
    assert got.messages[0].view.startswith(b'{"answer":1,')


def test_refused_subscription_is_an_error_answer() -> None:
    codec = ready()
    codec.encode(Action.SUBSCRIBE, {"topic": "$SYS/#"}, True)
    got = codec.receive(0.0, b"\x90\x03" + u16(1) + b"\x80", False)
    assert views(got) == [{"answer": 1, "type": "suback", "error": "subscription refused"}]


def test_unsubscribe_is_answered_by_its_unsuback() -> None:
    codec = ready()
    frames, key = codec.encode(Action.UNSUBSCRIBE, {"topic": "a"}, True)
    body = u16(1) + s("a")
    assert frames == [b"\xa2" + bytes((len(body),)) + body]
    assert key == 1
    # an UNSUBACK for a SUBSCRIBE's id is not its answer
    assert codec.receive(0.0, b"\x90\x03" + u16(1) + b"\x00", False).failure is not None
    got = codec.receive(0.0, b"\xb0\x02" + u16(1), False)
    assert views(got) == [{"answer": 1, "type": "unsuback"}]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"topic": "t", "qos": 2}, "qos 2 is not supported"),
        ({"topic": "a/+"}, "without wildcards"),
        ({"topic": ""}, "without wildcards"),
        ({"topic": "t", "qos": "x"}, "qos must be"),
        ({"topic": "t", "qos": True}, "qos must be"),
        ("text", "needs a table"),
    ],
)
def test_bad_publish_values_are_input_errors(value: object, error: str) -> None:
    with pytest.raises(CodecInputError, match=error):
        ready().encode(Action.SEND, value, False)


def test_qos0_publish_cannot_wait_and_unknown_verbs_are_refused() -> None:
    codec = ready()
    with pytest.raises(CodecInputError, match="no answer"):
        codec.encode(Action.SEND, {"topic": "t"}, True)
    with pytest.raises(CodecInputError, match="not a step of protocol mqtt"):
        codec.encode(Action.EMIT, {"topic": "t"}, True)
    with pytest.raises(CodecInputError, match="topic must be"):
        codec.encode(Action.SUBSCRIBE, {"topic": 3}, True)


def test_received_publish_is_a_view_with_its_payload_as_json_text_or_base64() -> None:
    codec = ready()
    got = codec.receive(0.0, publish("n", b'{"seq": 3}') + publish("n", b"hi", retain=True), False)
    assert views(got) == [
        {"topic": "n", "payload": {"seq": 3}, "qos": 0, "retain": False},
        {"topic": "n", "payload": "hi", "qos": 0, "retain": True},
    ]
    assert got.messages[0].view == b'{"topic":"n","payload":{"seq":3},"qos":0,"retain":false}'
    assert got.messages[0].parsed == json.loads(got.messages[0].view)
    got = codec.receive(0.0, publish("n", b"\xff\x00"), False)
    assert views(got)[0] == {
        "topic": "n",
        "payload": {"_binary": "/wA="},
        "qos": 0,
        "retain": False,
    }
    assert not got.replies


def test_qos1_delivery_is_pubacked_by_the_codec() -> None:
    got = ready().receive(0.0, publish("n", b"1", qos=1, pid=9), False)
    assert views(got) == [{"topic": "n", "payload": 1, "qos": 1, "retain": False}]
    assert got.replies == [b"\x40\x02" + u16(9)]


def test_qos2_delivery_goes_through_pubrec_pubrel_pubcomp_and_is_delivered_once() -> None:
    codec = ready()
    got = codec.receive(0.0, publish("n", b"1", qos=2, pid=5), False)
    assert len(got.messages) == 1
    assert got.replies == [b"\x50\x02" + u16(5)]
    again = codec.receive(0.0, publish("n", b"1", qos=2, pid=5), False)  # resent: not again
    assert not again.messages
    assert again.replies == [b"\x50\x02" + u16(5)]
    rel = codec.receive(0.0, b"\x62\x02" + u16(5), False)
    assert rel.replies == [b"\x70\x02" + u16(5)]
    assert not rel.messages
    assert not codec.qos2_in


def test_stream_reassembled_across_frames_in_any_split() -> None:
    stream = publish("a", b'{"n":1}') + b"\x40\x02" + u16(1) + publish("b", b"x" * 100)
    for cut in range(len(stream) + 1):
        codec = ready()
        codec.encode(Action.SEND, {"topic": "t", "qos": 1}, True)
        out = [*codec.receive(0.0, stream[:cut], False).messages]
        out += codec.receive(0.0, stream[cut:], False).messages
        assert [m.view for m in out] == [
            b'{"topic":"a","payload":{"n":1},"qos":0,"retain":false}',
            b'{"answer":1,"type":"puback"}',
            b'{"topic":"b","payload":"' + b"x" * 100 + b'","qos":0,"retain":false}',
        ], cut


def test_big_packet_in_many_frames() -> None:
    codec = ready()
    payload = b"y" * 300_000
    body = s("big") + payload
    length = bytearray()
    n = len(body)
    while n:
        length.append((n & 0x7F) | (0x80 if n >> 7 else 0))
        n >>= 7
    stream = b"\x30" + bytes(length) + body
    got = [codec.receive(0.0, stream[i : i + 1000], False) for i in range(0, len(stream), 1000)]
    assert [len(g.messages) for g in got].count(1) == 1
    assert sum(len(g.messages) for g in got) == 1
    assert not codec.reader.buffer


def test_packet_past_max_message_size_is_refused_at_its_header() -> None:
    codec = MqttCodec({"client_id": "c"}, max_message_size=1000)
    codec.open(0.0)
    codec.receive(0.0, CONNACK_OK, False)
    got = codec.receive(0.0, b"\x30\xff\xff\x7f", False)  # claims 2 MB
    assert got.failure is not None
    assert got.failure.kind == "protocol_error"
    assert "exceeds max_message_size" in got.failure.text


def test_remaining_length_of_five_bytes_is_refused() -> None:
    got = ready().receive(0.0, b"\x30\xff\xff\xff\xff\x01", False)
    assert got.failure is not None
    assert "longer than 4 bytes" in got.failure.text


@pytest.mark.parametrize(
    "frame",
    [
        b"\x40\x03\x00\x01\x00",  # PUBACK of 3 bytes
        b"\x41\x02\x00\x01",  # PUBACK with flags
        b"\x36\x03\x00\x01a",  # PUBLISH QoS 3
        b"\x32\x03\x00\x01a",  # QoS 1 PUBLISH without its packet id
        b"\x30\x03\x00\x05a",  # topic past the packet
        b"\x30\x04\x00\x02\xff\xfe",  # topic not UTF-8
        b"\x82\x02\x00\x01",  # a SUBSCRIBE from the server
        b"\xd0\x01\x00",  # PINGRESP with a body
        b"\x90\x02\x00\x01",  # SUBACK without return codes
    ],
)
def test_malformed_packets_are_protocol_errors(frame: bytes) -> None:
    got = ready().receive(0.0, frame, False)
    assert got.failure is not None, frame
    assert got.failure.kind == "protocol_error"
    assert got.failure.fatal


def test_pingreq_on_the_keepalive_timer_and_pingresp_swallowed() -> None:
    codec = ready({"keepalive": 5}, now=100.0)
    assert codec.deadline == 105.0
    assert codec.on_timer(104.0) == []
    assert codec.on_timer(105.0) == [PINGREQ]
    assert codec.deadline == 110.0  # its PINGRESP is due within the keep-alive
    assert codec.receive(106.0, PINGRESP, False) == Received()
    assert codec.deadline == 110.0  # the next PINGREQ: keepalive after the last one
    assert codec.on_timer(110.0) == [PINGREQ]
    assert codec.failure is None


def test_a_reply_sent_moves_the_next_pingreq() -> None:
    codec = ready({"keepalive": 5}, now=100.0)
    codec.receive(103.0, publish("n", b"1", qos=1, pid=1), False)  # PUBACK sent at 103
    assert codec.deadline == 108.0


def test_no_pingresp_within_the_keepalive_is_keepalive_timeout() -> None:
    codec = ready({"keepalive": 5}, now=100.0)
    assert codec.on_timer(105.0) == [PINGREQ]
    assert codec.on_timer(109.9) == []
    assert codec.on_timer(110.0) == []
    assert codec.failure is not None
    assert codec.failure.kind == "keepalive_timeout"
    assert codec.deadline == float("inf")
    assert codec.receive(111.0, PINGRESP, False) == Received()  # counted once, by the session


def test_keepalive_zero_never_pings() -> None:
    codec = ready({"keepalive": 0})
    assert codec.deadline == float("inf")
    assert codec.on_timer(1e9) == []


def test_goodbye_is_disconnect_once_connected() -> None:
    codec = MqttCodec({"client_id": "c"})
    codec.open(0.0)
    assert codec.goodbye() == []
    codec.receive(0.0, CONNACK_OK, False)
    assert codec.goodbye() == [b"\xe0\x00"]


@given(st.binary(max_size=200))
def test_any_bytes_give_messages_or_a_failure_never_an_exception(data: bytes) -> None:
    codec = ready()
    codec.encode(Action.SEND, {"topic": "t", "qos": 1}, True)
    got = codec.receive(0.0, data, False)
    assert isinstance(got, Received)


@given(st.lists(st.integers(min_value=0, max_value=60), max_size=6))
def test_any_split_of_a_stream_reads_the_same(cuts: list[int]) -> None:
    stream = b"".join(publish(f"t{i}", b'{"seq":%d}' % i, qos=i % 2, pid=i + 1) for i in range(4))
    codec = ready()
    got: list[bytes] = []
    at = 0
    for cut in sorted(c for c in cuts if c < len(stream)):
        got += [m.view for m in codec.receive(0.0, stream[at:cut], False).messages]
        at = cut
    got += [m.view for m in codec.receive(0.0, stream[at:], False).messages]
    assert [json.loads(v)["payload"]["seq"] for v in got] == [0, 1, 2, 3]


# -- MQTT 5 (version = 5) ---------------------------------------------------------------


def pkt(first: int, body: bytes) -> bytes:
    assert len(body) < 128
    return bytes((first, len(body))) + body


def ready5(connack_props: bytes = b"") -> MqttCodec:
    codec = MqttCodec({"client_id": "c5", "keepalive": 30, "version": 5})
    codec.open(0.0)
    got = codec.receive(
        0.0, pkt(0x20, b"\x00\x00" + bytes((len(connack_props),)) + connack_props), False
    )
    assert got == Received()
    assert codec.ready
    return codec


def test_v5_connect_has_level_5_and_empty_properties() -> None:
    [frame] = MqttCodec({"client_id": "me", "keepalive": 10, "version": 5}).open(0.0)
    assert frame == pkt(0x10, s("MQTT") + b"\x05\x02" + u16(10) + b"\x00" + s("me"))


def test_v5_connack_properties_set_the_keepalive_and_receive_maximum() -> None:
    # Server Keep Alive 10 s, Receive Maximum 2, and an assigned client id (skipped)
    codec = ready5(b"\x13" + u16(10) + b"\x21" + u16(2) + b"\x12" + s("x"))
    assert codec.keepalive == 10
    assert codec.deadline == 10.0
    codec.encode(Action.SEND, {"topic": "t", "qos": 1}, True)
    codec.encode(Action.SEND, {"topic": "t", "qos": 1}, True)
    codec.encode(Action.SEND, {"topic": "t", "qos": 0}, False)  # QoS 0 is not counted
    with pytest.raises(CodecInputError, match="receive maximum"):
        codec.encode(Action.SEND, {"topic": "t", "qos": 1}, True)
    assert codec.failure is not None
    assert codec.failure.kind == "mqtt_backlog"
    assert codec.failure.fatal
    assert codec.deadline == 0.0


def test_v5_connack_maximum_qos_and_packet_size_bound_the_sends() -> None:
    # Maximum QoS 0, Maximum Packet Size 40 bytes
    codec = ready5(b"\x24\x00" + b"\x27" + struct.pack(">I", 40))
    with pytest.raises(CodecInputError, match="past the server's Maximum QoS"):
        codec.encode(Action.SEND, {"topic": "t", "qos": 1}, True)
    [frame], _ = codec.encode(Action.SEND, {"topic": "t", "payload": "x" * 20}, False)
    assert len(frame) <= 40
    with pytest.raises(CodecInputError, match="past the server's Maximum Packet Size"):
        codec.encode(Action.SEND, {"topic": "t", "payload": "x" * 40}, False)
    with pytest.raises(CodecInputError, match="Maximum Packet Size"):
        codec.encode(Action.SUBSCRIBE, {"topic": "t/" + "x" * 40}, True)
    assert codec.failure is None
    assert not codec.waiting
    codec.encode(Action.SUBSCRIBE, {"topic": "t/#", "qos": 1}, True)  # subscribing is not capped


def test_v5_connack_refused_with_its_reason() -> None:
    codec = MqttCodec({"client_id": "c", "version": 5})
    codec.open(0.0)
    got = codec.receive(0.0, pkt(0x20, b"\x00\x87\x00"), False)
    assert got.failure == Failure("mqtt_refused", "CONNACK refused: not authorized (0x87)")


def test_v5_publish_subscribe_unsubscribe_carry_empty_properties() -> None:
    codec = ready5()
    assert codec.encode(Action.SEND, {"topic": "t", "payload": "x", "qos": 1}, True) == (
        [pkt(0x32, s("t") + u16(1) + b"\x00" + b"x")],
        1,
    )
    assert codec.encode(Action.SEND, {"topic": "t", "payload": "x"}, False)[0] == [
        pkt(0x30, s("t") + b"\x00" + b"x")
    ]
    assert codec.encode(Action.SUBSCRIBE, {"topic": "a", "qos": 1}, True)[0] == [
        pkt(0x82, u16(2) + b"\x00" + s("a") + b"\x01")
    ]
    assert codec.encode(Action.UNSUBSCRIBE, {"topic": "a"}, True)[0] == [
        pkt(0xA2, u16(3) + b"\x00" + s("a"))
    ]


def test_v5_answers_and_their_reason_codes() -> None:
    codec = ready5()
    for _ in range(3):
        codec.encode(Action.SEND, {"topic": "t", "qos": 1}, True)
    codec.encode(Action.SUBSCRIBE, {"topic": "a"}, True)
    codec.encode(Action.UNSUBSCRIBE, {"topic": "a"}, True)
    got = codec.receive(
        0.0,
        pkt(0x40, u16(1))  # success, no reason code
        + pkt(0x40, u16(2) + b"\x10\x00")  # no matching subscribers: a success
        + pkt(0x40, u16(3) + b"\x87\x04\x1f" + s("x"))  # not authorized
        + pkt(0x90, u16(4) + b"\x00\x8f")  # topic filter invalid
        + pkt(0xB0, u16(5) + b"\x00\x11"),  # no subscription existed: a success
        False,
    )
    assert got.failure is None
    assert views(got) == [
        {"answer": 1, "type": "puback"},
        {"answer": 2, "type": "puback"},
        {"answer": 3, "type": "puback", "error": "publish refused: not authorized (0x87)"},
        {
            "answer": 4,
            "type": "suback",
            "error": "subscription refused: topic filter invalid (0x8f)",
        },
        {"answer": 5, "type": "unsuback"},
    ]


def test_v5_received_publish_skips_its_properties() -> None:
    props = b"\x01\x01" + b"\x26" + s("k") + s("v")  # payload format, a user property
    got = ready5().receive(
        0.0, pkt(0x32, s("n") + u16(7) + bytes((len(props),)) + props + b'{"a":1}'), False
    )
    assert views(got) == [{"topic": "n", "payload": {"a": 1}, "qos": 1, "retain": False}]
    assert got.replies == [b"\x40\x02" + u16(7)]


def test_v5_server_disconnect_is_mqtt_disconnect_with_its_reason() -> None:
    got = ready5().receive(0.0, pkt(0xE0, b"\x8b\x00"), False)
    assert got.failure == Failure(
        "mqtt_disconnect", "the server disconnected: server shutting down (0x8b)", close_code=1000
    )


@pytest.mark.parametrize(
    "props",
    [
        b"\x05\x7f\x00\x00\x00\x00",  # an unknown property
        b"\x03\x21\x00",  # a u16 property cut short
        b"\x09\x26\x00\x01k",  # a block longer than the packet
        b"\x02\x21\x00\x00",  # a property running past its block
    ],
)
def test_v5_malformed_connack_properties_are_protocol_errors(props: bytes) -> None:
    codec = MqttCodec({"client_id": "c", "version": 5})
    codec.open(0.0)
    got = codec.receive(0.0, pkt(0x20, b"\x00\x00" + props), False)
    assert got.failure is not None
    assert got.failure.kind == "protocol_error"
    assert not codec.ready


@pytest.mark.parametrize("depth", [900, 990, 5000, 100_000])
def test_a_payload_nested_too_deep_is_text_never_a_failure(depth: int) -> None:
    """A peer's nesting past the interpreter's recursion limit: its text, not a traceback."""
    codec = ready()
    payload = b"[" * depth + b"]" * depth
    got = codec.receive(1.0, publish_topic_big("t", payload, 1, 7), False)
    assert got.failure is None
    assert got.replies == [b"\x40\x02" + u16(7)]
    [message] = got.messages
    shown = message.parsed["payload"]  # JSON when this interpreter's stack reads it, else text
    assert shown == payload.decode() or isinstance(shown, list)
    assert message.view.startswith(b'{"topic":"t","payload":')


def test_a_payload_with_nan_is_text_so_its_view_is_json() -> None:
    codec = ready()
    [message] = codec.receive(1.0, publish("t", b"[NaN]"), False).messages
    assert json.loads(message.view)["payload"] == "[NaN]"


def publish_topic_big(topic: str, payload: bytes, qos: int, pid: int) -> bytes:
    body = s(topic) + u16(pid) + payload
    n, length = len(body), bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        length.append(digit | 0x80 if n else digit)
        if not n:
            break
    return bytes((0x30 | qos << 1,)) + bytes(length) + body


def test_a_json_string_payload_is_its_value() -> None:
    codec = ready()
    [message] = codec.receive(1.0, publish("t", b' "hi"'), False).messages
    assert json.loads(message.view)["payload"] == "hi"

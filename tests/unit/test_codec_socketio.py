"""The Socket.IO v4 codec, sans-I/O: frames in, views and replies out, a fake clock."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from wsload.common.program import Action
from wsload.worker.codecs import codec_class
from wsload.worker.codecs.base import UNPARSED, CodecInputError, Received
from wsload.worker.codecs.socketio import (
    MAX_ATTACHMENT_BYTES,
    MAX_ATTACHMENTS,
    MAX_EARLY,
    SocketIOCodec,
)

OPEN = b'0{"sid":"abc","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}'


def opened(now: float = 0.0, **options: Any) -> SocketIOCodec:
    """A codec through its handshake: the server's open, our connect, its accept."""
    codec = SocketIOCodec(options)
    assert codec.open(now) == []
    assert not codec.ready
    codec.receive(now, OPEN, True)
    ns = options.get("namespace", "/")
    codec.receive(now, (b"40" if ns == "/" else b"40" + ns.encode() + b",") + b'{"sid":"s"}', True)
    assert codec.ready
    return codec


def views(received: Received) -> list[Any]:
    """Each message's view parsed, checked against its ``parsed`` value (when given)."""
    out = []
    for m in received.messages:
        value = json.loads(m.view)
        assert m.parsed is UNPARSED or m.parsed == value
        out.append(value)
    return out


def failed(received: Received, kind: str = "protocol_error") -> str:
    assert received.failure is not None, received
    assert received.failure.kind == kind
    assert received.messages == []
    return received.failure.text


# -- the URL --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ws_url", "options", "url"),
    [
        ("ws://h:9/", {}, "ws://h:9/socket.io/?EIO=4&transport=websocket"),
        ("ws://h:9", {}, "ws://h:9/socket.io/?EIO=4&transport=websocket"),
        ("wss://h/?token=t", {}, "wss://h/socket.io/?EIO=4&transport=websocket&token=t"),
        ("ws://h/", {"path": "rt"}, "ws://h/rt/?EIO=4&transport=websocket"),
        ("ws://h/", {"path": "/rt/io/"}, "ws://h/rt/io/?EIO=4&transport=websocket"),
        ("ws://h/socket.io/", {}, "ws://h/socket.io/?EIO=4&transport=websocket"),
        (
            "ws://h/socket.io/?EIO=3&transport=polling&x=1",
            {"path": "/ignored/"},
            "ws://h/socket.io/?EIO=4&transport=websocket&x=1",
        ),
    ],
)
def test_url_adds_the_path_to_a_root_and_ensures_eio4_websocket(
    ws_url: str, options: dict[str, Any], url: str
) -> None:
    assert SocketIOCodec.url(ws_url, options) == url


def test_registry_finds_the_codec() -> None:
    assert codec_class("socketio") is SocketIOCodec
    assert SocketIOCodec.verbs == frozenset({Action.EMIT})
    assert SocketIOCodec.subprotocol is None


# -- the handshake --------------------------------------------------------------------------


def test_handshake_root_namespace() -> None:
    codec = SocketIOCodec({})
    got = codec.receive(5.0, OPEN, True)
    assert got.replies == ["40"]
    assert got.messages == []
    assert got.failure is None
    assert not codec.ready
    assert codec.deadline == pytest.approx(5.5)  # pingInterval + pingTimeout
    got = codec.receive(5.1, b'40{"sid":"x"}', True)
    assert codec.ready
    assert got.messages == []
    assert got.replies == []


def test_handshake_namespace_and_auth() -> None:
    codec = SocketIOCodec({"namespace": "/chat", "auth": {"token": "t1", "n": 2}})
    assert codec.receive(0, OPEN, True).replies == ['40/chat,{"token":"t1","n":2}']
    codec.receive(0, b'40/other,{"sid":"x"}', True)
    assert not codec.ready  # another namespace's CONNECT is not ours
    codec.receive(0, b'40/chat,{"sid":"x"}', True)
    assert codec.ready


def test_open_without_ping_figures_takes_engineio_defaults() -> None:
    codec = SocketIOCodec({})
    codec.receive(1.0, b'0{"sid":"a"}', True)
    assert codec.deadline == pytest.approx(46.0)


def test_connect_error_fails_the_connection() -> None:
    codec = SocketIOCodec({"namespace": "/chat"})
    codec.receive(0, OPEN, True)
    got = codec.receive(0, b'44/chat,{"message":"Not authorized"}', True)
    text = failed(got, "socketio_connect_error")
    assert "Not authorized" in text
    assert got.failure is not None
    assert got.failure.fatal
    assert got.failure.close_code == 1000
    assert not codec.ready


@pytest.mark.parametrize(
    "first",
    [b"hello", b'{"type":"echo"}', b"40", b'0{"sid"', b"0[1,2]", b'0{"pingInterval":"x"}', b""],
)
def test_a_server_that_does_not_open_engineio_is_a_protocol_error(first: bytes) -> None:
    text = failed(SocketIOCodec({}).receive(0, first, True))
    assert "Engine.IO" in text


def test_a_binary_frame_first_is_a_protocol_error() -> None:
    failed(SocketIOCodec({}).receive(0, b"\x00\x01", False))


# -- ping / pong ----------------------------------------------------------------------------


def test_ping_is_answered_and_moves_the_deadline() -> None:
    codec = opened(0.0)
    got = codec.receive(0.3, b"2", True)
    assert got.replies == ["3"]
    assert got.messages == []
    assert got.failure is None
    assert codec.deadline == pytest.approx(0.8)
    assert codec.receive(0.4, b"2probe", True).replies == ["3probe"]
    assert codec.on_timer(0.85) == []
    assert codec.failure is None


def test_no_ping_in_time_is_ping_timeout() -> None:
    codec = opened(0.0)
    codec.receive(0.3, b"2", True)
    assert codec.on_timer(0.81) == []
    assert codec.failure is not None
    assert codec.failure.kind == "ping_timeout"
    assert codec.failure.fatal
    assert codec.deadline == float("inf")  # reported once


def test_pong_and_noop_are_swallowed() -> None:
    codec = opened()
    for frame in (b"3", b"6"):
        got = codec.receive(0, frame, True)
        assert got.messages == []
        assert got.replies == []
        assert got.failure is None


# -- events ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "view"),
    [
        (b'42["news",{"room":"r1","seq":3}]', {"event": "news", "data": {"room": "r1", "seq": 3}}),
        (b'42["news"]', {"event": "news"}),
        (b'42["news","text"]', {"event": "news", "data": "text"}),
        (b'42["news",[1,2]]', {"event": "news", "data": [1, 2]}),
        (b'42["n", 7 ]', {"event": "n", "data": 7}),
        (b'42["a,b",{"x":"]"}]', {"event": "a,b", "data": {"x": "]"}}),
        (b'42["q\\"uote",1]', {"event": 'q"uote', "data": 1}),
        (b'42["\\u00e9t\xc3\xa9",1]', {"event": "\u00e9t\u00e9", "data": 1}),
        (b'42["many",1,{"b":2},null]', {"event": "many", "data": 1, "args": [1, {"b": 2}, None]}),
    ],
)
def test_event_views(frame: bytes, view: dict[str, Any]) -> None:
    got = opened().receive(0, frame, True)
    assert got.replies == []
    assert got.failure is None
    assert views(got) == [view]


def test_event_view_is_spliced_from_the_frame_bytes() -> None:
    got = opened().receive(0, b'42["news",{"b":1,"a":[1,2]}]', True)
    assert got.messages[0].view == b'{"event":"news","data":{"b":1,"a":[1,2]}}'


def test_event_in_a_namespace() -> None:
    codec = opened(namespace="/chat")
    assert views(codec.receive(0, b'42/chat,["news",1]', True)) == [{"event": "news", "data": 1}]
    other = codec.receive(0, b'42/admin,["news",1]', True)
    assert other.messages == []
    assert other.failure is not None
    assert not other.failure.fatal


def test_root_codec_refuses_another_namespaces_event() -> None:
    got = opened().receive(0, b'42/chat,["news",1]', True)
    assert got.messages == []
    assert got.failure is not None
    assert not got.failure.fatal


def test_an_event_asking_for_an_ack_is_acked_empty() -> None:
    got = opened().receive(0, b'4217["ask",{"q":1}]', True)
    assert views(got) == [{"event": "ask", "data": {"q": 1}}]
    assert got.replies == ["4317[]"]
    got = opened(namespace="/c").receive(0, b'42/c,3["ask"]', True)
    assert got.replies == ["43/c,3[]"]


@pytest.mark.parametrize(
    "frame", [b"42", b"42{}", b"42[]", b"42[1,2]", b'42["x"', b"42 not json", b'42["x"]]']
)
def test_malformed_events_are_protocol_errors(frame: bytes) -> None:
    failed(opened().receive(0, frame, True))


def test_events_before_the_namespace_connect_are_held_until_it_comes() -> None:
    """python-socketio's connect handler may emit before the server sends ``40``."""
    codec = SocketIOCodec({})
    codec.receive(0, OPEN, True)
    assert codec.receive(0, b'42["welcome",{"hi":1}]', True) == Received()
    got = codec.receive(0, b'421["hello"]', True)  # asks for an ack: answered at once
    assert got == Received(replies=["431[]"])
    codec.receive(0, b'451-["bin",{"_placeholder":true,"num":0}]', True)
    assert codec.receive(0, b"x", False) == Received()
    assert not codec.ready
    got = codec.receive(0, b'40{"sid":"s"}', True)
    assert codec.ready
    assert views(got) == [
        {"event": "welcome", "data": {"hi": 1}},
        {"event": "hello"},
        {"event": "bin", "data": {"_binary": "eA=="}},
    ]
    assert views(codec.receive(0, b'42["later"]', True)) == [{"event": "later"}]


def test_events_before_the_namespace_connect_are_bounded() -> None:
    codec = SocketIOCodec({})
    codec.receive(0, OPEN, True)
    for i in range(MAX_EARLY):
        assert codec.receive(0, b'42["e",%d]' % i, True) == Received()
    assert "before the namespace" in failed(codec.receive(0, b'42["e"]', True))


def test_an_ack_before_the_namespace_connect_is_a_protocol_error() -> None:
    codec = SocketIOCodec({})
    codec.receive(0, OPEN, True)
    assert "before" in failed(codec.receive(0, b"431[1]", True))


@pytest.mark.parametrize(
    ("namespace", "ack"), [("/", b'43/chat,1["x"]'), ("/c", b'431["x"]'), ("/c", b"43/d,1[]")]
)
def test_an_ack_of_another_namespace_is_counted_not_fatal(namespace: str, ack: bytes) -> None:
    codec = opened(namespace=namespace)
    got = codec.receive(0, ack, True)
    assert got.failure is not None
    assert got.failure.kind == "protocol_error"
    assert not got.failure.fatal
    assert "another namespace" in got.failure.text
    assert got.messages == []


# -- acks -----------------------------------------------------------------------------------


def test_emit_with_ack_numbers_acks_per_connection() -> None:
    codec = opened()
    frames, key = codec.encode(Action.EMIT, {"event": "chat", "data": {"text": "hi"}}, True)
    assert frames == ['420["chat",{"text":"hi"}]']
    assert key == 0
    frames, key = codec.encode(Action.EMIT, {"event": "chat", "data": "é"}, True)
    assert frames == ['421["chat","é"]']
    assert key == 1
    assert opened().encode(Action.EMIT, {"event": "chat"}, True) == (['420["chat"]'], 0)


def test_emit_without_ack_has_no_id() -> None:
    codec = opened(namespace="/chat")
    assert codec.encode(Action.EMIT, {"event": "e", "data": 1}, False) == (
        ['42/chat,["e",1]'],
        None,
    )
    assert codec.encode(Action.EMIT, {"event": "e", "args": [1, "b"]}, True) == (
        ['42/chat,0["e",1,"b"]'],
        0,
    )


@pytest.mark.parametrize(
    ("action", "value"),
    [
        (Action.EMIT, "chat"),
        (Action.EMIT, {"data": 1}),
        (Action.EMIT, {"event": 5}),
        (Action.EMIT, {"event": "e", "args": "x"}),
        (Action.EMIT, {"event": "e", "data": {1, 2}}),
        (Action.EMIT, {"event": "e", "data": float("nan")}),
        (Action.SUBSCRIBE, {"topic": "t"}),
        (Action.SEND, "hello"),
        (Action.SEND_BINARY, b"x"),
    ],
)
def test_bad_step_values_are_codec_input_errors(action: Action, value: Any) -> None:
    with pytest.raises(CodecInputError):
        opened().encode(action, value, True)


@pytest.mark.parametrize(
    ("frame", "view"),
    [
        (b'430[{"ok":true}]', {"answer": 0, "data": {"ok": True}}),
        (b'4312["fine"]', {"answer": 12, "data": "fine"}),
        (b"437[]", {"answer": 7, "args": []}),
        (b'433[1,"b"]', {"answer": 3, "data": 1, "args": [1, "b"]}),
        (b"439[ 1 ]", {"answer": 9, "data": 1}),
        (b"436[1] ", {"answer": 6, "data": 1}),
        (b'43007["x"]', {"answer": 7, "data": "x"}),
    ],
)
def test_ack_views_lead_with_the_answer_key(frame: bytes, view: dict[str, Any]) -> None:
    got = opened().receive(0, frame, True)
    assert got.failure is None
    assert got.replies == []
    assert views(got) == [view]
    key = str(view["answer"]).encode()
    assert got.messages[0].view.startswith(b'{"answer":' + key + b",")


def test_ack_view_is_spliced_and_in_a_namespace() -> None:
    codec = opened(namespace="/chat")
    _frames, key = codec.encode(Action.EMIT, {"event": "chat", "data": 1}, True)
    got = codec.receive(0, b'43/chat,0[{"z":1,"a":{"b":[true]}}]', True)
    assert got.messages[0].view == b'{"answer":0,"data":{"z":1,"a":{"b":[true]}}}'
    assert json.loads(got.messages[0].view)["answer"] == key


@pytest.mark.parametrize(
    "frame", [b"43[1]", b"43", b"435", b"435{}", b'435["x"', b"43" + b"9" * 16 + b"[1]"]
)
def test_malformed_acks_are_protocol_errors(frame: bytes) -> None:
    failed(opened().receive(0, frame, True))


def test_ack_of_another_namespace_is_a_protocol_error() -> None:
    failed(opened(namespace="/chat").receive(0, b"43/x,0[1]", True))


# -- binary events and acks -----------------------------------------------------------------


def test_binary_event_reassembles_its_attachments() -> None:
    codec = opened()
    one, zero = ('{"_placeholder":true,"num":%d}' % n for n in (1, 0))  # noqa: UP031
    head = b'452-["file",{"a":' + one.encode() + b',"b":[' + zero.encode() + b"]}]"
    assert codec.receive(0, head, True).messages == []
    assert codec.receive(0, b"\x00\x01", False).messages == []
    got = codec.receive(0, b"\xff", False)
    b64 = base64.b64encode
    assert views(got) == [
        {"event": "file", "data": {"a": {"_binary": b64(b"\xff").decode()},
                                   "b": [{"_binary": b64(b"\x00\x01").decode()}]}}
    ]  # fmt: skip
    assert codec.receive(0, b'42["after",1]', True).messages  # back to plain packets


def test_binary_ack_and_binary_event_asking_for_an_ack() -> None:
    codec = opened(namespace="/c")
    codec.receive(0, b'461-/c,4[{"_placeholder":true,"num":0}]', True)
    got = codec.receive(0, b"abc", False)
    assert views(got) == [{"answer": 4, "data": {"_binary": "YWJj"}}]
    assert got.messages[0].view.startswith(b'{"answer":4,')
    codec.receive(0, b'451-/c,8["bin",{"_placeholder":true,"num":0}]', True)
    got = codec.receive(0, b"x", False)
    assert views(got) == [{"event": "bin", "data": {"_binary": "eA=="}}]
    assert got.replies == ["43/c,8[]"]


def test_text_while_attachments_are_pending_is_a_protocol_error() -> None:
    codec = opened()
    codec.receive(0, b'451-["bin",{"_placeholder":true,"num":0}]', True)
    assert "attachments" in failed(codec.receive(0, b'42["x"]', True))


def test_engineio_ping_pong_noop_between_a_packet_and_its_attachments_pass() -> None:
    codec = opened()
    codec.receive(
        0, b'452-["bin",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]', True
    )
    assert codec.receive(1, b"2", True) == Received(replies=["3"])
    assert codec.receive(1, b"6", True) == Received()
    assert codec.receive(1, b"a", False) == Received()
    assert codec.receive(1, b"3", True) == Received()
    got = codec.receive(1, b"b", False)
    assert views(got) == [
        {
            "event": "bin",
            "data": {"_binary": "YQ=="},
            "args": [{"_binary": "YQ=="}, {"_binary": "Yg=="}],
        }
    ]


def test_a_binary_ack_id_with_leading_zeros_is_a_json_number() -> None:
    codec = opened()
    codec.receive(0, b'461-007[{"_placeholder":true,"num":0}]', True)
    got = codec.receive(0, b"abc", False)
    assert got.messages[0].view.startswith(b'{"answer":7,')
    assert views(got) == [{"answer": 7, "data": {"_binary": "YWJj"}}]


def test_an_unannounced_attachment_is_a_protocol_error() -> None:
    failed(opened().receive(0, b"\x00", False))


@pytest.mark.parametrize(
    "frame",
    [
        b'45-["x"]',
        b'450-["x"]',
        b"45" + str(MAX_ATTACHMENTS + 1).encode() + b'-["x"]',
        b'45x-["x"]',
        b"461-[1]",
        b"451-{}",
        b"451-[1]",
    ],
)
def test_bad_binary_packets_are_protocol_errors(frame: bytes) -> None:
    failed(opened().receive(0, frame, True))


def test_a_placeholder_past_the_attachments_is_a_protocol_error() -> None:
    codec = opened()
    codec.receive(0, b'451-["x",{"_placeholder":true,"num":3}]', True)
    failed(codec.receive(0, b"a", False))


def test_attachments_are_bounded_in_bytes() -> None:
    codec = opened()
    codec.max_message_size = 2 * MAX_ATTACHMENT_BYTES  # the codec's own bound applies
    codec.receive(0, b'452-["x",{"_placeholder":true,"num":0}]', True)
    assert codec.receive(0, bytes(MAX_ATTACHMENT_BYTES), False).failure is None
    assert "bytes" in failed(codec.receive(0, b"1", False))
    failed(codec.receive(0, b"2", False))  # nothing held any more: unannounced


def test_attachments_are_bounded_by_the_jobs_message_size() -> None:
    codec = opened()
    codec.max_message_size = 1000  # as --max-message-size 1000 makes it
    codec.receive(0, b'452-["x",{"_placeholder":true,"num":0}]', True)
    assert codec.receive(0, bytes(600), False).failure is None
    assert "past 1000 bytes" in failed(codec.receive(0, bytes(600), False))


# -- the end --------------------------------------------------------------------------------


def test_socketio_disconnect_and_engineio_close() -> None:
    for frame, codec in ((b"41", opened()), (b"41/c,", opened(namespace="/c")), (b"1", opened())):
        got = codec.receive(0, frame, True)
        assert got.failure is not None, frame
        assert got.failure.kind == "socketio_disconnect"
        assert got.failure.fatal
        assert got.failure.close_code == 1000


def test_goodbye_leaves_the_namespace_once_connected() -> None:
    assert opened().goodbye() == ["41"]
    assert opened(namespace="/c").goodbye() == ["41/c,"]
    assert SocketIOCodec({}).goodbye() == []


@pytest.mark.parametrize("frame", [b"5", b"9x", b"4", b"47[1]", b"4x", b"40{}"])
def test_unknown_packets_after_connect_are_protocol_errors(frame: bytes) -> None:
    failed(opened().receive(0, frame, True))


def test_bad_namespace_option() -> None:
    with pytest.raises(CodecInputError):
        SocketIOCodec({"namespace": "chat"})

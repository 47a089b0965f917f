"""The STOMP codec, sans-I/O: frames in and out, a fake clock, no socket."""

from __future__ import annotations

import json
from typing import Any

import pytest

from wsload.common.program import Action
from wsload.worker.codecs import codec_class
from wsload.worker.codecs.base import CodecInputError, Received
from wsload.worker.codecs.stomp import MAX_RECEIPTS, StompCodec
from wsload.worker.codecs.stomp_frames import MAX_FRAME, MAX_HEADERS, parse_frames

CONNECTED = b"CONNECTED\nserver:RabbitMQ/3.10.8\nheart-beat:1000,2000\nversion:1.2\n\n\x00\n"


def frame_of(text: str) -> tuple[str, dict[str, str], str]:
    """A frame we sent, parsed back (command, headers, body)."""
    assert text.endswith("\0")
    head, _, body = text[:-1].partition("\n\n")
    command, *lines = head.split("\n")
    return command, dict(line.split(":", 1) for line in lines), body


def connected(options: dict[str, Any] | None = None, reply: bytes = CONNECTED) -> StompCodec:
    codec = StompCodec(options or {"login": "u", "passcode": "p", "heart_beat": [1000, 1000]})
    codec.open(0.0)
    got = codec.receive(0.0, reply, True)
    assert got.failure is None
    assert codec.ready
    return codec


def views(got: Received) -> list[Any]:
    return [json.loads(m.view) for m in got.messages]


def test_registry_and_subprotocols() -> None:
    assert codec_class("stomp") is StompCodec
    offered = [p.strip() for p in (StompCodec.subprotocol or "").split(",")]
    assert offered == ["v12.stomp", "v11.stomp", "v10.stomp"]
    assert StompCodec.verbs == {Action.SEND, Action.SUBSCRIBE, Action.UNSUBSCRIBE}


def test_connect_frame_and_handshake() -> None:
    codec = StompCodec(
        {"login": "guest", "passcode": "pw", "host": "vh", "headers": {"client-id": "c1"}}
    )
    (frame,) = codec.open(5.0)
    assert isinstance(frame, str)
    command, headers, body = frame_of(frame)
    assert command == "CONNECT"
    assert body == ""
    assert headers == {
        "accept-version": "1.2,1.1,1.0",
        "host": "vh",
        "login": "guest",
        "passcode": "pw",
        "heart-beat": "10000,10000",
        "client-id": "c1",
    }
    assert not codec.ready
    got = codec.receive(5.0, CONNECTED, True)
    assert got.failure is None
    assert not got.messages
    assert codec.ready
    assert codec.version == "1.2"


def test_heartbeats_negotiated_sent_and_watched() -> None:
    # we: send every 1000 ms, want one every 1000 ms; server: sends every 1000, wants 2000
    codec = connected()
    # we send every max(1000, 2000) ms; we hear within 2 * max(1000, 1000) ms
    assert codec.deadline == pytest.approx(2.0)
    # an EOL from the server is heard, swallowed, and moves the watch
    got = codec.receive(1.5, b"\n", True)
    assert got.failure is None
    assert not got.messages
    assert not got.replies
    assert codec.deadline == pytest.approx(2.0)  # our beat is due first now
    assert codec.on_timer(2.0) == ["\n"]
    assert codec.failure is None
    assert codec.deadline == pytest.approx(3.5)  # heard at 1.5 + 2 s
    assert codec.on_timer(3.5) == []
    assert codec.failure is not None
    assert codec.failure.kind == "heartbeat_timeout"
    assert codec.failure.fatal
    assert codec.deadline == float("inf")


def test_heartbeats_a_frame_also_counts_as_heard() -> None:
    codec = connected()
    codec.receive(1.9, b"RECEIPT\nreceipt-id:x\n\n\x00", True)
    assert codec.on_timer(2.0) == ["\n"]
    assert codec.failure is None
    assert codec.deadline == pytest.approx(3.9)


def test_heartbeats_off_when_either_side_says_zero() -> None:
    codec = connected(
        {"heart_beat": [0, 0]}, b"CONNECTED\nversion:1.2\nheart-beat:5000,5000\n\n\x00"
    )
    assert codec.deadline == float("inf")
    codec = connected({}, b"CONNECTED\nversion:1.2\n\n\x00")  # the server: none
    assert codec.deadline == float("inf")


def test_send_text_and_table_bodies() -> None:
    codec = connected()
    frames, key = codec.encode(
        Action.SEND,
        {"destination": "/topic/x", "body": "héllo", "content_type": "text/plain"},
        False,
    )
    assert key is None
    command, headers, body = frame_of(str(frames[0]))
    assert command == "SEND"
    assert body == "héllo"
    assert headers == {
        "destination": "/topic/x",
        "content-type": "text/plain",
        "content-length": "6",
    }
    frames, _ = codec.encode(
        Action.SEND, {"destination": "/q/a", "body": {"seq": 3, "t": "é"}}, False
    )
    _, headers, body = frame_of(str(frames[0]))
    assert json.loads(body) == {"seq": 3, "t": "é"}
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len(body.encode()))


def test_header_values_are_escaped() -> None:
    codec = connected()
    frames, _ = codec.encode(
        Action.SEND, {"destination": "/topic/a:b", "headers": {"x-note": "a\nb\\c\rd"}}, False
    )
    text = str(frames[0])
    assert "destination:/topic/a\\cb\n" in text
    assert "x-note:a\\nb\\\\c\\rd\n" in text
    # and what we escape, a parser unescapes back
    (parsed,), _, _ = parse_frames(text.encode(), True)
    assert parsed[1]["destination"] == "/topic/a:b"
    assert parsed[1]["x-note"] == "a\nb\\c\rd"


def test_receipt_is_the_answer_key() -> None:
    codec = connected()
    frames, key = codec.encode(Action.SEND, {"destination": "/topic/x", "body": "a"}, True)
    assert key == "r1"
    assert frame_of(str(frames[0]))[1]["receipt"] == "r1"
    _, key2 = codec.encode(Action.SUBSCRIBE, {"destination": "/topic/x", "id": "s"}, True)
    assert key2 == "r2"
    got = codec.receive(1.0, b"RECEIPT\nreceipt-id:r1\n\n\x00\n", True)
    (message,) = got.messages
    assert message.view == b'{"answer":"r1","command":"RECEIPT"}'
    assert message.parsed == {"answer": "r1", "command": "RECEIPT"}


def test_error_naming_a_pending_receipt_is_an_error_answer() -> None:
    codec = connected()
    _, key = codec.encode(Action.SEND, {"destination": "/bad", "body": ""}, True)
    got = codec.receive(
        1.0, b"ERROR\nmessage:Unknown destination\nreceipt-id:r1\n\nbody text\x00", True
    )
    assert got.failure is None
    assert views(got) == [
        {"answer": key, "command": "ERROR", "error": "Unknown destination: body text"}
    ]
    assert got.messages[0].view.startswith(b'{"answer":"r1",')


def test_other_error_is_a_fatal_stomp_error() -> None:
    codec = connected()
    got = codec.receive(1.0, b"ERROR\nmessage:Bad CONNECT\n\n\x00", True)  # no body
    assert got.failure is not None
    assert (got.failure.kind, got.failure.text, got.failure.fatal) == (
        "stomp_error",
        "Bad CONNECT",
        True,
    )
    # a refused login (as RabbitMQ says it): an ERROR instead of CONNECTED
    codec = StompCodec({})
    codec.open(0.0)
    got = codec.receive(
        0.0, b"ERROR\nmessage:Bad CONNECT\n\nAccess refused for user 'u'\n\x00", True
    )
    assert got.failure is not None
    assert got.failure.kind == "stomp_error"
    assert got.failure.text == "Bad CONNECT: Access refused for user 'u'"
    assert not codec.ready


def test_message_view() -> None:
    codec = connected()
    raw = (
        b"MESSAGE\nsubscription:0\ndestination:/topic/x\nmessage-id:T_0@@s@@1\n"
        b"redelivered:false\ncontent-type:application/json\ncontent-length:17\n\n"
        b'{"seq":7,"a":[1]}\x00\n'
    )
    got = codec.receive(1.0, raw, True)
    (view,) = views(got)
    assert list(view)[:4] == ["command", "destination", "subscription", "message_id"]
    assert view["body"] == {"seq": 7, "a": [1]}
    assert view["destination"] == "/topic/x"
    assert view["message_id"] == "T_0@@s@@1"
    assert view["headers"]["redelivered"] == "false"
    assert got.messages[0].parsed == view
    assert not got.replies  # an auto-ack subscription: nothing to ACK
    # a text body stays text (also one that only looks like JSON at first)
    got = codec.receive(1.0, b"MESSAGE\nsubscription:0\n\nhello\x00", True)
    assert views(got)[0]["body"] == "hello"
    got = codec.receive(1.0, b"ERROR\n\nno message header\x00", True)
    assert got.failure is not None
    assert got.failure.text == "no message header"
    codec = connected()
    got = codec.receive(1.0, b"MESSAGE\nsubscription:0\n\n{not json\x00", True)
    assert views(got)[0]["body"] == "{not json"


def test_content_length_body_may_hold_nul() -> None:
    codec = connected()
    got = codec.receive(1.0, b"MESSAGE\ncontent-length:3\n\na\x00b\x00", True)
    assert views(got)[0]["body"] == "a\x00b"


def test_several_frames_per_message_and_eols_between() -> None:
    codec = connected()
    _, k1 = codec.encode(Action.SEND, {"destination": "/t", "body": ""}, True)
    raw = (
        b"\n\r\nMESSAGE\nsubscription:0\n\n1\x00\n\n"
        b"RECEIPT\r\nreceipt-id:r1\r\n\r\n\x00\r\n"
        b"MESSAGE\nsubscription:0\n\n2\x00"
    )
    got = codec.receive(1.0, raw, True)
    assert got.failure is None
    assert [v.get("body", v.get("answer")) for v in views(got)] == [1, k1, 2]


def test_a_frame_split_over_messages_is_reassembled() -> None:
    codec = connected()
    raw = b"MESSAGE\nsubscription:0\ncontent-length:5\n\nhello\x00\n"
    got = [codec.receive(1.0, raw[i : i + 7], True) for i in range(0, len(raw), 7)]
    assert [views(g) for g in got if g.messages] == [
        [
            {
                "command": "MESSAGE",
                "destination": "",
                "subscription": "0",
                "message_id": "",
                "headers": {"subscription": "0", "content-length": "5"},
                "body": "hello",
            }
        ]
    ]


def test_client_ack_modes_ack_each_message() -> None:
    codec = connected()
    frames, _ = codec.encode(
        Action.SUBSCRIBE, {"destination": "/queue/q", "id": "s1", "ack": "client-individual"}, False
    )
    assert frame_of(str(frames[0]))[1] == {
        "id": "s1",
        "destination": "/queue/q",
        "ack": "client-individual",
    }
    got = codec.receive(1.0, b"MESSAGE\nsubscription:s1\nmessage-id:m1\nack:a1\n\nx\x00", True)
    assert len(got.messages) == 1
    (reply,) = got.replies
    assert frame_of(str(reply)) == ("ACK", {"id": "a1"}, "")
    # unsubscribed: no more ACKs
    frames, _ = codec.encode(Action.UNSUBSCRIBE, {"id": "s1"}, False)
    assert frame_of(str(frames[0])) == ("UNSUBSCRIBE", {"id": "s1"}, "")
    got = codec.receive(1.0, b"MESSAGE\nsubscription:s1\nmessage-id:m2\nack:a2\n\nx\x00", True)
    assert not got.replies


def test_ack_spelled_as_the_negotiated_version() -> None:
    codec = connected({}, b"CONNECTED\nversion:1.1\n\n\x00")
    codec.encode(Action.SUBSCRIBE, {"destination": "/q", "id": "s", "ack": "client"}, False)
    got = codec.receive(1.0, b"MESSAGE\nsubscription:s\nmessage-id:m9\n\nx\x00", True)
    assert frame_of(str(got.replies[0])) == ("ACK", {"message-id": "m9", "subscription": "s"}, "")


def test_subscribe_default_ids_and_bad_tables() -> None:
    codec = connected()
    frames, _ = codec.encode(Action.SUBSCRIBE, {"destination": "/topic/a"}, False)
    assert frame_of(str(frames[0]))[1] == {"id": "sub-1", "destination": "/topic/a", "ack": "auto"}
    with pytest.raises(CodecInputError, match="ack must be"):
        codec.encode(Action.SUBSCRIBE, {"destination": "/t", "ack": "never"}, False)
    with pytest.raises(CodecInputError, match="destination must be text"):
        codec.encode(Action.SEND, {"body": "x"}, False)
    with pytest.raises(CodecInputError, match="takes a table"):
        codec.encode(Action.SEND, "text", False)
    with pytest.raises(CodecInputError, match="not a step"):
        codec.encode(Action.EMIT, {}, False)


def test_goodbye_disconnects_only_when_connected() -> None:
    codec = StompCodec({})
    codec.open(0.0)
    assert codec.goodbye() == []
    codec.receive(0.0, CONNECTED, True)
    assert codec.goodbye() == ["DISCONNECT\n\n\0"]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (
            b"CONNECT\naccept-version:1.2\n\n\x00",
            "unexpected STOMP frame CONNECT",
        ),  # an echo server
        (b"hello there\n\n\x00", "not a STOMP command"),
        (b'{"type":"hello"}\n\n\x00', "not a STOMP command"),
        (b"MESSAGE\nsubscription:0\n\nx\x00", "instead of CONNECTED"),
    ],
)
def test_a_server_that_speaks_something_else(raw: bytes, why: str) -> None:
    codec = StompCodec({})
    codec.open(0.0)
    got = codec.receive(0.0, raw, True)
    assert got.failure is not None
    assert got.failure.kind == "protocol_error"
    assert why in got.failure.text
    assert not codec.ready


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"MESSAGE\nbad header\n\n\x00", "without ':'"),
        (b"MESSAGE\nx:a\\tb\n\n\x00", "undefined escape"),
        (b"MESSAGE\ncontent-length:two\n\n\x00", "content-length"),
        (b"MESSAGE\ncontent-length:1\n\nab\x00", "no NUL"),
        (b"MESSAGE\ncontent-length:%d\n\n" % (MAX_FRAME + 1), "past"),
        (b"MESSAGE\n" + b"h:v\n" * (MAX_HEADERS + 1) + b"\n\x00", "headers"),
        (b"MESSAGE\n" + b"h" * 70000, "no end of headers"),
        (b"\rX", "lone CR"),
        (b"CONNECTED\nversion:1.2\n\n\x00", "unexpected STOMP frame CONNECTED after"),
    ],
)
def test_hostile_frames_cost_a_protocol_error(raw: bytes, why: str) -> None:
    codec = connected()
    got = codec.receive(1.0, raw, True)
    assert got.failure is not None, got
    assert got.failure.kind == "protocol_error"
    assert why in got.failure.text


def test_a_frame_that_never_ends_is_bounded() -> None:
    codec = connected()
    assert codec.receive(1.0, b"MESSAGE\n\n", True).failure is None
    chunk = b"x" * (1024 * 1024)
    failures = [codec.receive(1.0, chunk, False).failure for _ in range(5)]
    assert failures[:3] == [None, None, None]
    assert failures[3] is not None
    assert failures[3].kind == "protocol_error"


def test_receipts_remembered_are_bounded() -> None:
    codec = connected()
    for _ in range(MAX_RECEIPTS + 1):
        codec.encode(Action.SEND, {"destination": "/t", "body": ""}, True)
    # r1, the oldest, was forgotten: an ERROR naming it is no answer any more
    got = codec.receive(1.0, b"ERROR\nmessage:late\nreceipt-id:r1\n\n\x00", True)
    assert got.failure is not None
    assert got.failure.kind == "stomp_error"
    codec = connected()
    for _ in range(MAX_RECEIPTS + 1):
        codec.encode(Action.SEND, {"destination": "/t", "body": ""}, True)
    got = codec.receive(1.0, b"ERROR\nmessage:refused\nreceipt-id:r2\n\n\x00", True)
    assert views(got) == [{"answer": "r2", "command": "ERROR", "error": "refused"}]


def test_a_large_frame_in_many_pieces() -> None:
    codec = connected()
    body = json.dumps({"seq": 1, "pad": "x" * 300_000}).encode()
    raw = b"MESSAGE\nsubscription:0\ncontent-length:%d\n\n%s\x00\n" % (len(body), body)
    got = [codec.receive(1.0, raw[i : i + 1000], False) for i in range(0, len(raw), 1000)]
    assert all(g.failure is None for g in got)
    (view,) = [v for g in got for v in views(g)]
    assert view["body"]["seq"] == 1
    assert len(view["body"]["pad"]) == 300_000


def test_versions_10_and_11_escape_as_they_say() -> None:
    codec = connected({}, b"CONNECTED\nversion:1.0\n\n\x00")
    frames, _ = codec.encode(Action.SEND, {"destination": "/a:b", "body": ""}, False)
    assert "destination:/a:b\n" in str(frames[0])  # 1.0: no escapes at all
    got = codec.receive(1.0, b"MESSAGE\nx:a\\tb\n\n\x00", True)
    assert views(got)[0]["headers"]["x"] == "a\\tb"
    codec = connected({}, b"CONNECTED\nversion:1.1\n\n\x00")
    frames, _ = codec.encode(Action.SEND, {"destination": "/a:b\r", "body": ""}, False)
    assert "destination:/a\\cb\r\n" in str(frames[0])  # 1.1: no \r escape


def test_connected_and_frames_in_one_message() -> None:
    codec = StompCodec({})
    codec.open(0.0)
    got = codec.receive(
        0.0, CONNECTED + b"MESSAGE\nsubscription:a\n\n1\x00\nRECEIPT\nreceipt-id:r9\n\n\x00", True
    )
    assert codec.ready
    assert [v["command"] for v in views(got)] == ["MESSAGE", "RECEIPT"]


def test_the_jobs_max_message_size_bounds_a_partial_frame() -> None:
    """A frame that never ends holds at most max_message_size bytes, then protocol_error."""
    codec = StompCodec({}, max_message_size=1024)
    codec.open(0.0)
    codec.receive(0.0, CONNECTED, True)
    got = codec.receive(1.0, b"MESSAGE\nsubscription:s\n\n" + b"x" * 1000, True)
    pieces = 1
    while got.failure is None and pieces < 10:
        got = codec.receive(1.0, b"y" * 1000, True)
        pieces += 1
    assert got.failure is not None
    assert got.failure.kind == "protocol_error"
    assert "past 1024 bytes" in got.failure.text
    assert pieces <= 2
    # a frame whose headers do not end is bounded by it too
    codec = StompCodec({}, max_message_size=1024)
    codec.open(0.0)
    codec.receive(0.0, CONNECTED, True)
    assert codec.receive(1.0, b"y" * 1000, True).failure is None
    got = codec.receive(1.0, b"y" * 1000, True)
    assert got.failure is not None
    assert "no end of headers within 1024 bytes" in got.failure.text
    long = b"MESSAGE\ncontent-length:2000\n\n"
    codec = connected()
    codec._max_frame = 1024
    assert "past 1024" in str(codec.receive(1.0, long, True).failure)


def test_a_5_mib_frame_passes_a_16_mib_bound() -> None:
    codec = StompCodec({}, max_message_size=16 * 1024 * 1024)
    codec.open(0.0)
    codec.receive(0.0, CONNECTED, True)
    body = b"z" * (5 * 1024 * 1024)
    raw = b"MESSAGE\nsubscription:0\n\n" + body + b"\x00"
    got = [codec.receive(1.0, raw[i : i + 65536], True) for i in range(0, len(raw), 65536)]
    assert all(g.failure is None for g in got)
    (view,) = [v for g in got for v in views(g)]
    assert len(view["body"]) == len(body)


def test_a_content_length_frame_with_nuls_in_every_piece_is_parsed_once() -> None:
    """Its content-length tells how many bytes it needs: pieces holding NULs are not
    parsed again one by one (quadratic), the frame is parsed when it is whole."""
    codec = connected()
    body = b"\x00ab" * 100_000
    raw = b"MESSAGE\nsubscription:0\ncontent-length:%d\n\n%s\x00" % (len(body), body)
    calls = 0
    import wsload.worker.codecs.stomp as stomp_module

    real = stomp_module.parse_frames

    def counting(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        return real(*args)

    stomp_module.parse_frames = counting  # type: ignore[assignment]
    try:
        got = [codec.receive(1.0, raw[i : i + 1000], True) for i in range(0, len(raw), 1000)]
    finally:
        stomp_module.parse_frames = real
    assert all(g.failure is None for g in got)
    assert [v["body"] for g in got for v in views(g)] == [body.decode()]
    assert calls <= 3


@pytest.mark.parametrize("depth", [900, 990, 5000, 100_000])
def test_a_body_nested_too_deep_is_text_never_a_failure(depth: int) -> None:
    codec = connected()
    body = b"[" * depth + b"]" * depth
    got = codec.receive(1.0, b"MESSAGE\nsubscription:s\nmessage-id:1\n\n" + body + b"\x00", True)
    assert got.failure is None
    [message] = got.messages
    assert message.view.startswith(b'{"command":"MESSAGE"')
    assert message.view.endswith(b"}")
    shown = message.parsed["body"]  # JSON when this interpreter's stack reads it, else text
    assert shown == body.decode() or isinstance(shown, list)


def test_a_body_that_is_not_utf8_is_base64() -> None:
    codec = connected()
    got = codec.receive(1.0, b"MESSAGE\nsubscription:s\n\n\xff\xfe\x00", True)
    assert views(got)[0]["body"] == {"_binary": "//4="}

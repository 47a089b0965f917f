"""The graphql-transport-ws codec (worker/codecs/graphql.py): frames in, views out, no sockets.

Each test drives one codec with the text a graphql-ws server sends and
checks what the steps would see (views, answer keys), what goes back at
once (pongs) and what counts as an error kind. Time is a plain number
passed in (the codec has no timer of its own: its deadline stays inf).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsload.common.program import Action
from wsload.worker.codecs import codec_class
from wsload.worker.codecs.base import CodecInputError, Failure, Received
from wsload.worker.codecs.graphql import MAX_OPERATIONS, GraphQLCodec

NOW = 100.0


def frame(message: dict[str, Any]) -> bytes:
    """A server's message as strawberry writes it (json.dumps: with spaces)."""
    return json.dumps(message).encode()


def sent(frames: list[str | bytes]) -> list[dict[str, Any]]:
    out = []
    for f in frames:
        assert isinstance(f, str)  # graphql-transport-ws is text only
        message = json.loads(f)
        assert f == json.dumps(message, separators=(",", ":"))  # compact
        out.append(message)
    return out


def ready(options: dict[str, Any] | None = None) -> GraphQLCodec:
    codec = GraphQLCodec(options or {})
    codec.open(NOW)
    assert codec.receive(NOW, frame({"type": "connection_ack"}), True) == Received()
    assert codec.ready
    return codec


def views(got: Received) -> list[Any]:
    return [json.loads(m.view) for m in got.messages]


def query(codec: GraphQLCodec, text: str = "{ hello }", **extra: Any) -> str:
    frames, key = codec.encode(Action.QUERY, {"query": text, **extra}, True)
    assert isinstance(key, str)
    (message,) = sent(frames)
    assert message["id"] == key
    return key


def test_registered_under_its_name() -> None:
    assert codec_class("graphql") is GraphQLCodec
    assert GraphQLCodec.subprotocol == "graphql-transport-ws"
    assert GraphQLCodec.verbs == {Action.SUBSCRIBE, Action.QUERY, Action.UNSUBSCRIBE}


def test_handshake_sends_connection_init_with_the_payload_and_is_ready_on_ack() -> None:
    codec = GraphQLCodec({"payload": {"token": "t1"}})
    assert not codec.ready
    assert sent(codec.open(NOW)) == [{"type": "connection_init", "payload": {"token": "t1"}}]
    assert not codec.ready
    got = codec.receive(NOW, frame({"type": "connection_ack", "payload": {"v": 1}}), True)
    assert got.messages == []
    assert got.replies == []
    assert got.failure is None
    assert codec.ready
    assert codec.deadline == float("inf")
    assert codec.goodbye() == []


def test_no_payload_option_sends_none() -> None:
    assert sent(GraphQLCodec({}).open(NOW)) == [{"type": "connection_init"}]


def test_a_message_before_the_ack_breaks_the_protocol() -> None:
    codec = GraphQLCodec({})
    codec.open(NOW)
    got = codec.receive(NOW, frame({"id": "1", "type": "next", "payload": {}}), True)
    assert got.failure is not None
    assert got.failure.kind == "protocol_error"
    assert got.failure.fatal
    assert "before connection_ack" in got.failure.text
    assert not codec.ready


def test_ping_is_answered_with_pong_before_and_after_the_ack_and_pong_is_swallowed() -> None:
    codec = GraphQLCodec({})
    codec.open(NOW)
    got = codec.receive(NOW, frame({"type": "ping"}), True)
    assert sent(got.replies) == [{"type": "pong"}]
    assert got.messages == []
    codec.receive(NOW, frame({"type": "connection_ack"}), True)
    got = codec.receive(NOW, frame({"type": "ping", "payload": {"x": 1}}), True)
    assert sent(got.replies) == [{"type": "pong"}]
    assert got.messages == []
    got = codec.receive(NOW, frame({"type": "pong"}), True)
    assert got == Received()


def test_query_is_a_subscribe_message_whose_id_is_the_answer_key() -> None:
    codec = ready()
    frames, key = codec.encode(
        Action.QUERY,
        {"query": "query Q($n: Int) { x(n: $n) }", "variables": {"n": 3}, "operation_name": "Q"},
        True,
    )
    assert sent(frames) == [
        {
            "id": key,
            "type": "subscribe",
            "payload": {
                "query": "query Q($n: Int) { x(n: $n) }",
                "variables": {"n": 3},
                "operationName": "Q",
            },
        }
    ]
    assert key == "q1"
    assert query(codec) == "q2"  # ids per connection, never reused


def test_query_result_is_the_answer_and_its_complete_is_swallowed() -> None:
    codec = ready()
    key = query(codec)
    got = codec.receive(
        NOW, frame({"id": key, "type": "next", "payload": {"data": {"hello": "hi"}}}), True
    )
    (message,) = got.messages
    # the answer's key first: the answer matcher tests the view's first bytes
    assert message.view.startswith(b'{"answer":"q1",')
    assert json.loads(message.view) == {
        "answer": "q1",
        "type": "next",
        "payload": {"data": {"hello": "hi"}},
    }
    assert message.parsed == json.loads(message.view)
    assert codec.receive(NOW, frame({"id": key, "type": "complete"}), True) == Received()


def test_query_error_is_an_error_answer() -> None:
    codec = ready()
    key = query(codec)
    errors = [{"message": "Cannot query field 'nope'", "locations": [{"line": 1, "column": 3}]}]
    got = codec.receive(NOW, frame({"id": key, "type": "error", "payload": errors}), True)
    assert got.failure is None
    (view,) = views(got)
    assert view == {"answer": "q1", "type": "error", "error": errors}
    assert got.messages[0].view.startswith(b'{"answer":"q1",')
    # the operation is over: a stray complete for it changes nothing
    assert codec.receive(NOW, frame({"id": key, "type": "complete"}), True) == Received()


def test_query_result_with_graphql_errors_fails_its_step() -> None:
    codec = ready()
    key = query(codec, 'mutation { post(text: "x") { seq } }')
    errors = [{"message": "boom", "path": ["post"]}]
    got = codec.receive(
        NOW, frame({"id": key, "type": "next", "payload": {"data": None, "errors": errors}}), True
    )
    (view,) = views(got)
    assert view["answer"] == "q1"
    assert view["error"] == errors


def test_query_completed_without_a_result_is_an_error_answer() -> None:
    codec = ready()
    key = query(codec)
    (view,) = views(codec.receive(NOW, frame({"id": key, "type": "complete"}), True))
    assert view["answer"] == key
    assert view["type"] == "complete"
    assert "error" in view


def test_a_late_answer_still_answers_its_key() -> None:
    """A query whose step timed out stays open: its answer comes as an answer (counted late)."""
    codec = ready()
    first = query(codec)
    second = query(codec)
    got = codec.receive(NOW, frame({"id": first, "type": "next", "payload": {"data": {}}}), True)
    assert views(got)[0]["answer"] == first
    got = codec.receive(NOW, frame({"id": second, "type": "next", "payload": {"data": {}}}), True)
    assert views(got)[0]["answer"] == second


def test_subscribe_ids_generated_or_given() -> None:
    codec = ready()
    frames, key = codec.encode(Action.SUBSCRIBE, {"query": "subscription { events }"}, False)
    assert key is None  # a subscription never waits
    assert sent(frames) == [
        {"id": "s1", "type": "subscribe", "payload": {"query": "subscription { events }"}}
    ]
    frames, _ = codec.encode(Action.SUBSCRIBE, {"query": "subscription { e }", "id": "mine"}, False)
    assert sent(frames)[0]["id"] == "mine"
    frames, _ = codec.encode(Action.SUBSCRIBE, {"query": "subscription { e }", "id": 7}, False)
    assert sent(frames)[0]["id"] == "7"
    # a given id that is open already would make the server close the connection (4409)
    with pytest.raises(CodecInputError, match="already open"):
        codec.encode(Action.SUBSCRIBE, {"query": "subscription { e }", "id": "mine"}, False)


def test_generated_ids_skip_ids_the_scenario_gave() -> None:
    codec = ready()
    codec.encode(Action.SUBSCRIBE, {"query": "subscription { e }", "id": "s2"}, False)
    codec.encode(Action.SUBSCRIBE, {"query": "subscription { e }"}, False)
    frames, _ = codec.encode(Action.SUBSCRIBE, {"query": "subscription { e }"}, False)
    assert sent(frames)[0]["id"] == "s3"


def test_subscription_next_is_the_wire_message_as_a_push() -> None:
    codec = ready()
    codec.encode(Action.SUBSCRIBE, {"query": "subscription { events { seq } }"}, False)
    wire = frame({"id": "s1", "type": "next", "payload": {"data": {"events": {"seq": 4}}}})
    got = codec.receive(NOW, wire, True)
    (message,) = got.messages
    assert message.view == wire
    assert message.parsed == json.loads(wire)
    assert b'"answer"' not in message.view  # a push never has an answer member
    assert got.replies == []
    assert got.failure is None


def test_subscription_error_counts_graphql_error_and_the_connection_goes_on() -> None:
    codec = ready()
    codec.encode(Action.SUBSCRIBE, {"query": "subscription { nope }"}, False)
    got = codec.receive(
        NOW, frame({"id": "s1", "type": "error", "payload": [{"message": "no such field"}]}), True
    )
    assert got.failure == Failure("graphql_error", "no such field", fatal=False)
    assert got.messages == []
    # the id is free again
    codec.encode(Action.SUBSCRIBE, {"query": "subscription { e }", "id": "s1"}, False)


def test_server_complete_of_a_subscription_is_swallowed_and_frees_its_id() -> None:
    codec = ready()
    codec.encode(Action.SUBSCRIBE, {"query": "subscription { e }", "id": "a"}, False)
    assert codec.receive(NOW, frame({"id": "a", "type": "complete"}), True) == Received()
    codec.encode(Action.SUBSCRIBE, {"query": "subscription { e }", "id": "a"}, False)


def test_unsubscribe_sends_complete_and_frees_its_id() -> None:
    codec = ready()
    codec.encode(Action.SUBSCRIBE, {"query": "subscription { e }", "id": "a"}, False)
    frames, key = codec.encode(Action.UNSUBSCRIBE, {"id": "a"}, False)
    assert sent(frames) == [{"id": "a", "type": "complete"}]
    assert key is None
    codec.encode(Action.SUBSCRIBE, {"query": "subscription { e }", "id": "a"}, False)
    # an event still on its way after we ended it is an ordinary push, not an error
    got = codec.receive(NOW, frame({"id": "zz", "type": "next", "payload": {}}), True)
    assert len(got.messages) == 1
    assert got.failure is None


@pytest.mark.parametrize(
    ("data", "text", "says"),
    [
        (b"not json", True, "not JSON"),
        (b"\xff\xfe\x00", True, "not JSON"),
        (b"[1, 2]", True, "not a message object"),
        (b'{"id": "1"}', True, "not a message object"),
        (b'{"type": 3}', True, "not a message object"),
        (b'{"type": "data", "id": "1"}', True, "unknown message type"),
        (b'{"type": "subscribe", "id": "1"}', True, "unknown message type"),
        (b'{"type": "next"}', False, "binary"),
    ],
)
def test_what_is_not_the_protocol_is_a_fatal_protocol_error(
    data: bytes, text: bool, says: str
) -> None:
    codec = ready()
    got = codec.receive(NOW, data, text)
    assert got.failure is not None, got
    assert got.failure.kind == "protocol_error"
    assert got.failure.fatal
    assert says in got.failure.text
    assert len(got.failure.text) <= 200
    assert got.messages == []


def test_another_protocol_in_the_handshake_is_a_protocol_error() -> None:
    """`wsload serve`'s echo /ws answers our connection_init with itself: not an ack."""
    codec = GraphQLCodec({})
    (init,) = codec.open(NOW)
    assert isinstance(init, str)
    got = codec.receive(NOW, init.encode(), True)
    assert got.failure is not None
    assert got.failure.kind == "protocol_error"
    assert "before connection_ack" in got.failure.text


@pytest.mark.parametrize(
    ("action", "value", "says"),
    [
        (Action.QUERY, "{ hello }", "a table is needed"),
        (Action.QUERY, {}, "'query' must be"),
        (Action.QUERY, {"query": ""}, "'query' must be"),
        (Action.QUERY, {"query": 3}, "'query' must be"),
        (Action.QUERY, {"query": "{ a }", "variables": [1]}, "'variables' must be a table"),
        (Action.QUERY, {"query": "{ a }", "operation_name": 1}, "'operation_name' must be"),
        (Action.SUBSCRIBE, {"query": "subscription { a }", "id": True}, "'id' must be"),
        (Action.SUBSCRIBE, {"query": "subscription { a }", "id": [1]}, "'id' must be"),
        (Action.UNSUBSCRIBE, {}, "'id' is needed"),
        (Action.EMIT, {"event": "x"}, "not a step of protocol"),
        (Action.SEND, {"x": 1}, "not a step of protocol"),
    ],
)
def test_a_table_it_cannot_send_is_a_codec_input_error(
    action: Action, value: Any, says: str
) -> None:
    codec = ready()
    with pytest.raises(CodecInputError, match=says):
        codec.encode(action, value, True)


def test_open_operations_are_bounded_oldest_query_forgotten_first() -> None:
    codec = ready()
    first = query(codec)  # its step timed out: its answer never came
    for _ in range(MAX_OPERATIONS - 1):
        codec.encode(Action.SUBSCRIBE, {"query": "subscription { e }"}, False)
    # full: a new query forgets the oldest query
    newest = query(codec)
    assert first not in codec._ops
    # forgotten, its result is still an answer (the session counts it late or
    # unsolicited), never a subscription's push
    got = codec.receive(NOW, frame({"id": first, "type": "next", "payload": {}}), True)
    assert got.messages[0].view == b'{"answer":"%s","type":"next","payload":{}}' % first.encode()
    # full of subscriptions but for the new query: it is forgotten for the next one
    query(codec)
    got = codec.receive(NOW, frame({"id": newest, "type": "next", "payload": {}}), True)
    assert got.messages[0].view.startswith(b'{"answer":"%s",' % newest.encode())


def test_open_subscriptions_are_bounded() -> None:
    codec = ready()
    for _ in range(MAX_OPERATIONS):
        codec.encode(Action.SUBSCRIBE, {"query": "subscription { e }"}, False)
    with pytest.raises(CodecInputError, match="already open"):
        codec.encode(Action.SUBSCRIBE, {"query": "subscription { e }"}, False)
    with pytest.raises(CodecInputError, match="already open"):
        query(codec)
    codec.encode(Action.UNSUBSCRIBE, {"id": "s1"}, False)  # room again
    query(codec)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.booleans())
def test_garbage_never_raises(data: bytes, text: bool) -> None:
    codec = ready()
    query(codec)
    got = codec.receive(NOW, data, text)
    assert isinstance(got, Received)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["next", "error", "complete", "ping", "pong", "connection_ack", "x"]),
    st.sampled_from(["q1", "s2", "zz", 1, None]),
    json_values,
)
def test_any_message_shape_never_raises(kind: str, op_id: Any, payload: Any) -> None:
    codec = ready()
    query(codec)
    codec.encode(Action.SUBSCRIBE, {"query": "subscription { e }"}, False)
    got = codec.receive(NOW, frame({"type": kind, "id": op_id, "payload": payload}), True)
    for message in got.messages:
        json.loads(message.view)
    if got.failure is not None:
        assert got.failure.kind in {"protocol_error", "graphql_error"}


# -- the legacy subscriptions-transport-ws protocol (legacy = true) ---------------------------


def legacy_ready(options: dict[str, Any] | None = None) -> GraphQLCodec:
    codec = GraphQLCodec({"legacy": True, **(options or {})})
    assert sent(codec.open(NOW)) == [{"type": "connection_init", **(options or {})}]
    assert codec.receive(NOW, frame({"type": "connection_ack"}), True) == Received()
    assert codec.ready
    return codec


def test_legacy_offers_graphql_ws() -> None:
    assert GraphQLCodec.subprotocols({"legacy": True}) == ("graphql-ws",)
    assert GraphQLCodec.subprotocols({}) == ("graphql-transport-ws",)
    assert GraphQLCodec.subprotocols({"legacy": False}) == ("graphql-transport-ws",)


def test_legacy_speaks_start_data_stop() -> None:
    codec = legacy_ready({"payload": {"token": "t"}})
    frames, key = codec.encode(Action.QUERY, {"query": "{ hello }"}, True)
    assert sent(frames) == [{"id": key, "type": "start", "payload": {"query": "{ hello }"}}]
    got = codec.receive(NOW, frame({"id": key, "type": "data", "payload": {"data": {}}}), True)
    assert views(got) == [{"answer": key, "type": "data", "payload": {"data": {}}}]
    assert codec.receive(NOW, frame({"id": key, "type": "complete"}), True) == Received()
    frames, _ = codec.encode(Action.SUBSCRIBE, {"query": "subscription { e }", "id": "a"}, False)
    assert sent(frames)[0]["type"] == "start"
    wire = frame({"id": "a", "type": "data", "payload": {"data": {"e": 1}}})
    assert [m.view for m in codec.receive(NOW, wire, True).messages] == [wire]
    frames, _ = codec.encode(Action.UNSUBSCRIBE, {"id": "a"}, False)
    assert sent(frames) == [{"id": "a", "type": "stop"}]
    assert sent(codec.goodbye()) == [{"type": "connection_terminate"}]


def test_legacy_keep_alives_are_swallowed_and_ping_is_not_its_message() -> None:
    codec = GraphQLCodec({"legacy": True})
    codec.open(NOW)
    assert codec.receive(NOW, frame({"type": "ka"}), True) == Received()  # before the ack too
    codec.receive(NOW, frame({"type": "connection_ack"}), True)
    assert codec.receive(NOW, frame({"type": "ka"}), True) == Received()
    got = codec.receive(NOW, frame({"type": "ping"}), True)
    assert got.failure is not None
    assert got.failure.kind == "protocol_error"
    # and graphql-transport-ws has no ka
    got = ready().receive(NOW, frame({"type": "ka"}), True)
    assert got.failure is not None
    assert got.failure.kind == "protocol_error"


def test_legacy_errors() -> None:
    codec = legacy_ready()
    key = query(codec, "{ nope }")
    error = {"message": "Cannot query field 'nope'"}  # one object in the legacy protocol
    (view,) = views(codec.receive(NOW, frame({"id": key, "type": "error", "payload": error}), True))
    assert view == {"answer": key, "type": "error", "error": error}
    codec.encode(Action.SUBSCRIBE, {"query": "subscription { nope }", "id": "s"}, False)
    got = codec.receive(NOW, frame({"id": "s", "type": "error", "payload": error}), True)
    assert got.failure == Failure("graphql_error", "Cannot query field 'nope'", fatal=False)


def test_legacy_connection_error_is_a_refused_handshake() -> None:
    codec = GraphQLCodec({"legacy": True})
    codec.open(NOW)
    got = codec.receive(
        NOW, frame({"type": "connection_error", "payload": {"message": "bad token"}}), True
    )
    assert got.failure is not None
    assert (got.failure.kind, got.failure.text, got.failure.fatal) == (
        "handshake_refused",
        "bad token",
        True,
    )
    assert not codec.ready


def test_a_result_for_a_query_id_we_never_made_is_a_push() -> None:
    codec = ready()
    query(codec)  # q1
    for other in ("q2", "q01", "s1", "query"):
        got = codec.receive(NOW, frame({"id": other, "type": "next", "payload": {}}), True)
        assert not got.messages[0].view.startswith(b'{"answer":'), other


@pytest.mark.parametrize("depth", [990, 5000, 100_000])
def test_a_message_nested_too_deep_is_dropped_not_fatal(depth: int) -> None:
    codec = ready()
    op_id = query(codec)
    data = b'{"id":"%s","type":"next","payload":' % op_id.encode()
    got = codec.receive(NOW, data + b"[" * depth + b"]" * depth + b"}", True)
    if got.messages:  # shallow enough for this interpreter's stack: an answer
        assert got.messages[0].view.startswith(b'{"answer":')
    else:
        assert got.failure is not None
        assert got.failure.kind == "protocol_error"
        assert not got.failure.fatal
        assert "too deep" in got.failure.text
    got = codec.receive(NOW, b"[" * 100_000, True)
    assert got.failure is not None
    assert not got.failure.fatal
    # the connection goes on: the next result is read
    got = codec.receive(NOW, frame({"id": "s9", "type": "next", "payload": {"x": 1}}), True)
    assert got.failure is None
    assert len(got.messages) == 1


def test_a_result_with_nan_is_dropped_not_fatal() -> None:
    codec = ready()
    op_id = query(codec)
    got = codec.receive(NOW, b'{"id":"%s","type":"next","payload":NaN}' % op_id.encode(), True)
    assert got.failure is not None
    assert not got.failure.fatal

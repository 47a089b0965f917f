"""The wire protocol: round trips, and nothing but ProtocolError on bad input."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsload.common import varint
from wsload.common.errors import ProtocolError
from wsload.common.fanout_wire import FanoutWindow, SubscriptionRecord
from wsload.common.protocol import (
    MAX_MESSAGE_BYTES,
    MAX_NAME_LEN,
    MAX_STEP_ENTRIES,
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Bye,
    Clock,
    Error,
    Heartbeat,
    Hello,
    Job,
    Message,
    Refuse,
    Result,
    Samples,
    StepWindow,
    Stop,
    VersionMismatch,
    Welcome,
    decode,
    encode,
)
from wsload.common.spec import JobSpec

EXAMPLES: list[Message] = [
    Hello("w1", "host-a", 1234, "0.1.0", 2, 20000),
    Welcome("w1", 1.0),
    Refuse("protocol version 2 is not supported (this side speaks 1)"),
    Heartbeat(1700000000.25),
    Job("job-1", JobSpec().to_dict(), 10, 20, 100.0, 1700000001.0),
    Samples(
        "job-1",
        3,
        1.0,
        1.25,
        {"sent": 10, "received": 9},
        {"timeout": 1},
        b"\x01\x00\x00\x00",
        b"",
        b"\x02\x00\x00\x00",
    ),
    Samples.window(
        "job-1",
        4,
        (1.25, 1.5),
        {"sent": 2, "expected": 2, "received": 1, "timed_out": 1},
        {},
        ([], [], []),
        steps={"ack": StepWindow({"expected": 2, "met": 1, "timed_out": 1}, [1500], [1400])},
        scenarios={"chat": {"unsolicited": 3, "iterations": 1}},
    ),
    Samples.window(
        "job-1",
        5,
        (1.5, 1.75),
        {},
        {},
        ([], [], []),
        fanout=FanoutWindow(
            {"news": [(1, 1_700_000_000_000_000)]},
            [
                SubscriptionRecord.of(
                    3, "news", 1_700_000_000_000_000, 1_700_000_001_000_000, [(0, 9)]
                )
            ],
            {"news": [1200, -5]},
            {"news": {"deliveries": 2}},
        ),
    ),
    Clock(1, 1700000000.5),
    Clock(1, 1700000000.5, 1700000000.75),
    Result("job-1", True, {"sent": 10}, {}, {"checks": [{"name": "echo", "status": "pass"}]}),
    Stop("job-1", "duration reached"),
    Bye("shutting down"),
    Error("bad-job", "num_clients must be at least 1", ["a", "b"]),
]


def raw(body: dict[str, Any]) -> bytes:
    data: bytes = msgpack.packb(body, use_bin_type=True)
    return data


def test_every_kind_has_an_example() -> None:
    assert {m.KIND for m in EXAMPLES} == set(MESSAGE_TYPES)


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: m.KIND)
def test_round_trip(message: Message) -> None:
    assert decode(encode(message)) == message


def test_defaults_may_be_omitted() -> None:
    body = {"v": PROTOCOL_VERSION, "kind": "samples", "job_id": "j", "seq": 0}
    body |= {"window_start": 0.0, "window_end": 0.25, "counters": {}}
    msg = decode(raw(body))
    assert isinstance(msg, Samples)
    assert msg.latency == b""


def test_integers_in_float_fields_become_floats() -> None:
    msg = decode(raw({"v": PROTOCOL_VERSION, "kind": "heartbeat", "sent_at": 5}))
    assert isinstance(msg, Heartbeat)
    assert isinstance(msg.sent_at, float)


def test_wrong_version_names_both() -> None:
    with pytest.raises(VersionMismatch) as info:
        decode(raw({"v": 99, "kind": "hello"}))
    assert "99" in str(info.value)
    assert f"speaks {PROTOCOL_VERSION}" in str(info.value)
    assert info.value.theirs == 99


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"kind": "bye"}, "no protocol version"),
        ({"v": True, "kind": "bye"}, "version True is not supported"),
        ({"v": PROTOCOL_VERSION, "kind": "launch"}, "unknown message kind 'launch'"),
        ({"v": PROTOCOL_VERSION}, "unknown message kind None"),
        ({"v": PROTOCOL_VERSION, "kind": "stop"}, "stop: missing field 'job_id'"),
        ({"v": PROTOCOL_VERSION, "kind": "bye", "extra": 1}, "bye: unknown field 'extra'"),
        (
            {"v": PROTOCOL_VERSION, "kind": "heartbeat", "sent_at": "now"},
            "heartbeat: field 'sent_at' must be a finite number, got str",
        ),
        (
            {"v": PROTOCOL_VERSION, "kind": "heartbeat", "sent_at": float("nan")},
            "must be a finite number",
        ),
        (
            {"v": PROTOCOL_VERSION, "kind": "stop", "job_id": b"j"},
            "field 'job_id' must be a string, got bytes",
        ),
        (
            {
                "v": PROTOCOL_VERSION,
                "kind": "result",
                "job_id": "j",
                "ok": 1,
                "counters": {},
            },
            "field 'ok' must be a boolean",
        ),
        (
            {
                "v": PROTOCOL_VERSION,
                "kind": "result",
                "job_id": "j",
                "ok": True,
                "counters": {"sent": -1},
            },
            "map of string to non-negative integer",
        ),
    ],
)
def test_bad_messages_are_named(body: dict[str, Any], needle: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(raw(body))
    assert needle in str(info.value)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never-used msgpack byte
        b"\x93\x01\x02\x03",  # array, not map
        b"\x81\x01\x02",  # non-string map key
        b"\x91" * 5000 + b"\x00",  # deeply nested arrays
        raw({"v": PROTOCOL_VERSION, "kind": "bye"}) + b"\x00",  # trailing bytes
        b"\xc7\x01\x05\x00",  # ext type
        b"\xdd\xff\xff\xff\xff",  # array claiming 4 billion items
    ],
)
def test_malformed_bytes(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(data)


def test_oversized_input_is_refused_before_parsing() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        decode(b"\x00" * (MAX_MESSAGE_BYTES + 1))


def test_encode_refuses_oversized_message() -> None:
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        encode(Error("big", "x" * (MAX_MESSAGE_BYTES + 1)))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_raise_only_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(data)


_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
_values = st.recursive(
    _leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@st.composite
def near_messages(draw: st.DrawFn) -> dict[str, Any]:
    """Maps shaped like real messages with some fields replaced by junk."""
    template = draw(st.sampled_from(EXAMPLES))
    body: dict[str, Any] = {"v": PROTOCOL_VERSION, "kind": template.KIND}
    for f in dataclasses.fields(template):
        if draw(st.booleans()):
            body[f.name] = getattr(template, f.name)
        elif draw(st.booleans()):
            body[f.name] = draw(_values)
    if draw(st.booleans()):
        body[draw(st.text(max_size=6))] = draw(_values)
    return body


@settings(max_examples=500, deadline=None)
@given(near_messages())
def test_wrong_shaped_messages_raise_only_protocol_error(body: dict[str, Any]) -> None:
    try:
        msg = decode(raw(body))
    except ProtocolError:
        return
    # Whatever decodes must be a well-typed message that re-encodes to itself.
    assert decode(encode(msg)) == msg


def test_varints_round_trip_and_take_about_three_bytes_a_reply() -> None:
    values = [0, 1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 0xFFFF_FFFF]
    assert varint.decode(varint.encode(values)).tolist() == values
    assert [len(varint.encode([v])) for v in values] == [1, 1, 1, 2, 2, 3, 3, 4, 5]
    latency = [1_500, 900, 12_000, 300]  # µs on a LAN
    msg = Samples.window("j", 0, (0.0, 0.25), {}, {}, (latency, [1_500, 899, 11_990, 300], [250]))
    assert decode(encode(msg)) == msg
    lat, service, connect = msg.arrays()
    assert lat.tolist() == latency
    assert service.tolist() == [1_500, 899, 11_990, 300]
    assert connect.tolist() == [250]
    assert len(msg.latency) + len(msg.lag) == 12  # 8 + 4: 3 bytes a reply, not 8


@pytest.mark.parametrize(
    ("latency", "lag", "needle"),
    [
        (b"\x80", b"", "middle of a value"),
        (b"\xff\xff\xff\xff\xff\x01", b"\x00", "longer than 5 bytes"),
        (b"\xff\xff\xff\xff\x7f", b"\x00", "beyond uint32"),
        (b"\x05\x06", b"\x00", "2 latencies but 1 lags"),
        (b"\x05", b"\x06", "lag exceeds its latency"),
    ],
)
def test_malformed_samples_raise_protocol_error(latency: bytes, lag: bytes, needle: str) -> None:
    msg = Samples("j", 0, 0.0, 0.25, {}, {}, latency, lag)
    with pytest.raises(ProtocolError, match=needle):
        msg.arrays()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_varint_decoder_fuzzed(data: bytes) -> None:
    try:
        values = varint.decode(data)
    except ProtocolError:
        return
    assert values.dtype == np.uint32
    assert varint.decode(varint.encode(values)).tolist() == values.tolist()


def test_step_windows_round_trip_and_decode() -> None:
    steps = {
        "login ok": StepWindow({"expected": 1, "met": 1, "lost": 0}, [2_000], [1_000]),
        "step 3": StepWindow({"expected": 3, "met": 2, "failed": 1}, [900, 40_000], [900, 500]),
        "idle": StepWindow({"unanswered": 1}),
    }
    msg = Samples.window(
        "j", 1, (0.0, 0.25), {"expected": 5}, {}, ([], [], []), steps, {"chat": {"iterations": 2}}
    )
    assert decode(encode(msg)) == msg
    assert msg.steps["login ok"]["counters"] == {"expected": 1, "met": 1}  # zeros left out
    assert msg.scenarios == {"chat": {"iterations": 2}}
    arrays = msg.step_arrays()
    assert list(arrays) == ["login ok", "step 3", "idle"]
    counters, latency, service = arrays["step 3"]
    assert counters == {"expected": 3, "met": 2, "failed": 1}
    assert latency.tolist() == [900, 40_000]
    assert service.tolist() == [900, 500]
    assert arrays["idle"][1].size == 0


def test_a_window_without_steps_is_an_old_workers_window() -> None:
    msg = Samples.window("j", 0, (0.0, 0.25), {"sent": 1}, {}, ([5], [5], []))
    body = msgpack.unpackb(encode(msg))
    assert body["steps"] == {}
    assert body["scenarios"] == {}
    del body["steps"], body["scenarios"]
    old = decode(raw(body))
    assert isinstance(old, Samples)
    assert old.steps == {}
    assert old.scenarios == {}
    assert old.step_arrays() == {}


@pytest.mark.parametrize(
    ("entry", "needle"),
    [
        ({"counters": {"met": 2}, "latency": b"\x05", "lag": b"\x00"}, "1 latencies for 2 met"),
        ({"counters": {"met": 1}, "latency": b"\x05", "lag": b"\x06"}, "lag exceeds"),
        ({"counters": {"met": 1}, "latency": b"\x05", "lag": b""}, "1 latencies but 0 lags"),
        ({"counters": {}, "latency": b"\x80", "lag": b""}, "middle of a value"),
    ],
)
def test_malformed_step_samples_raise_protocol_error(entry: dict[str, Any], needle: str) -> None:
    body = msgpack.unpackb(encode(Samples("j", 0, 0.0, 0.25, {})))
    body["steps"] = {"ack": entry}
    msg = decode(raw(body))
    assert isinstance(msg, Samples)
    with pytest.raises(ProtocolError, match=needle):
        msg.step_arrays()


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("steps", {"ack": {"counters": {"met": -1}}}),
        ("steps", {"ack": {"counters": {"sent": 1}}}),  # not a step counter
        ("steps", {"ack": {"counters": {"met": True}}}),
        ("steps", {"ack": {"counters": {"met": 1.5}}}),
        ("steps", {"ack": {"latency": "text"}}),
        ("steps", {"ack": {"extra": b""}}),
        ("steps", {"ack": []}),
        ("steps", {"": {}}),
        ("steps", {"x" * (MAX_NAME_LEN + 1): {}}),
        ("steps", {f"s{i}": {} for i in range(MAX_STEP_ENTRIES + 1)}),
        ("steps", [1, 2]),
        ("scenarios", {"chat": {"unsolicited": -3}}),
        ("scenarios", {"chat": {"clients": 3}}),
        ("scenarios", {"chat": 3}),
        ("scenarios", {"x" * (MAX_NAME_LEN + 1): {}}),
        ("fanout", {"pubs": {"news": "text"}}),
        ("fanout", {"subs": b"x"}),
        ("fanout", {"subs": [b"x", 3]}),
        ("fanout", {"counts": {"news": {"sent": 1}}}),
        ("fanout", {"other": {}}),
        ("fanout", {"latency": {"": b""}}),
    ],
)
def test_hostile_step_fields_are_protocol_errors(field_name: str, value: Any) -> None:
    body = msgpack.unpackb(encode(Samples("j", 0, 0.0, 0.25, {})))
    body[field_name] = value
    with pytest.raises(ProtocolError, match=f"field '{field_name}' must be"):
        decode(raw(body))


@pytest.mark.parametrize(
    "body",
    [
        {"probe": -1, "sent_at": 1.0},
        {"probe": 1, "sent_at": "now"},
        {"probe": 1, "sent_at": 1.0, "worker_time": float("nan")},
        {"probe": 1, "sent_at": 1.0, "worker_time": True},
        {"sent_at": 1.0},
    ],
)
def test_bad_clock_messages_are_protocol_errors(body: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError, match="clock"):
        decode(raw({"v": PROTOCOL_VERSION, "kind": "clock", **body}))


def test_a_clock_probe_is_answered_with_the_worker_time() -> None:
    probe = decode(encode(Clock(3, 1700000000.5)))
    assert isinstance(probe, Clock)
    assert probe.worker_time is None
    assert decode(encode(probe.answer(1700000000.75))) == Clock(3, 1700000000.5, 1700000000.75)

"""The endpoint parser reads endpoints as libzmq does, and refuses what it would misread."""

from __future__ import annotations

import pytest

from wsload.common.endpoint import EndpointError, bind_problem, bound_problem, parse_endpoint

# (endpoint, host, port, loopback) for binds ZeroMQ and wsload both accept.
GOOD_BINDS = [
    ("tcp://127.0.0.1:5555", "127.0.0.1", 5555, True),
    ("tcp://127.0.0.1:*", "127.0.0.1", None, True),
    ("tcp://127.0.0.1:0", "127.0.0.1", None, True),
    ("tcp://127.8.9.1:1", "127.8.9.1", 1, True),
    ("tcp://localhost:65535", "localhost", 65535, True),
    ("tcp://[::1]:5555", "::1", 5555, True),
    ("tcp://::1:5555", "::1", 5555, True),
    ("tcp://[127.0.0.1]:5555", "127.0.0.1", 5555, True),
    ("tcp://127.0.0.1%lo:5555", "127.0.0.1", 5555, True),
    ("tcp://0.0.0.0:5555", "0.0.0.0", 5555, False),
    ("tcp://*:5555", "*", 5555, False),
    ("tcp://*:*", "*", None, False),
    ("tcp://[::]:5555", "::", 5555, False),
    ("tcp://10.0.0.5:5555", "10.0.0.5", 5555, False),
    ("tcp://eth0:5555", "eth0", 5555, False),  # an interface name: not provably loopback
    ("tcp://lo:5555", "lo", 5555, False),
    ("tcp://[fe80::1%eth0]:5555", "fe80::1", 5555, False),
    ("ipc:///tmp/wsload.sock", "/tmp/wsload.sock", None, True),
]

# (endpoint, words of the reason) that must never pass as a bind.
BAD_BINDS = [
    ("tcp://0.0.0.0:5555@127.0.0.1", "not a number"),  # the bypass: ZeroMQ binds 0.0.0.0
    ("tcp://*:5555@127.0.0.1", "not a number"),
    ("tcp://127.0.0.1:99999", "outside 1..65535"),  # ZeroMQ would bind 34463
    ("tcp://127.0.0.1:65536", "outside 1..65535"),
    ("tcp://127.0.0.1:5x5", "not a number"),  # ZeroMQ would bind 5
    ("tcp://127.0.0.1:-1", "not a number"),
    ("tcp://127.0.0.1:+80", "not a number"),
    ("tcp://127.0.0.1:", "not a number"),
    ("tcp://127.0.0.1", "no port"),
    ("tcp://:5555", "no host"),
    ("tcp://127.0.0.1:1;0.0.0.0:5555", "SOURCE;ADDRESS"),  # ZeroMQ binds 0.0.0.0:5555
    ("tcp://127.0.0.1/x:5555", "not an IP address"),
    ("tcp://user@127.0.0.1:5555", "not an IP address"),
    ("tcp://127.0.0.1%:5555", "empty interface"),
    ("tcp://127.0.0.1 :5555", "whitespace"),
    ("tcp://127.0.0.1:\u0665\u0665", "not a number"),  # Arabic-Indic digits: isdigit() alone
    ("udp://127.0.0.1:5555", "expected tcp://"),
    ("127.0.0.1:5555", "expected tcp://"),
    ("inproc://x", "expected tcp://"),
    ("ipc://", "needs a path"),
    ("ipc://" + "x" * 200, "longer than"),
]

BAD_CONNECTS = [
    ("tcp://127.0.0.1", "no port"),  # used to hang the worker: ctx.term() blocked
    ("tcp://127.0.0.1:*", "not *"),
    ("tcp://127.0.0.1:0", "not 0"),
    ("tcp://*:5555", "for a bind"),
    ("tcp://host:70000", "outside 1..65535"),
    ("tcp://10.0.0.1:*;coordinator:5555", None),  # a source address: allowed
]


@pytest.mark.parametrize(("text", "host", "port", "loopback"), GOOD_BINDS)
def test_binds_are_read_as_zeromq_reads_them(
    text: str, host: str, port: int | None, loopback: bool
) -> None:
    endpoint = parse_endpoint(text, bind=True)
    assert (endpoint.host, endpoint.port, endpoint.loopback) == (host, port, loopback)
    allowed = bind_problem(text, keys=False, insecure=False) is None
    assert allowed == loopback
    assert bind_problem(text, keys=True, insecure=False) is None
    assert bind_problem(text, keys=False, insecure=True) is None


@pytest.mark.parametrize(("text", "reason"), BAD_BINDS)
def test_tricky_binds_are_refused_even_with_keys(text: str, reason: str) -> None:
    with pytest.raises(EndpointError, match=reason.replace("*", r"\*").replace("+", r"\+")):
        parse_endpoint(text, bind=True)
    for keys, insecure in ((False, False), (True, False), (False, True)):
        problem = bind_problem(text, keys=keys, insecure=insecure)
        assert problem is not None
        assert "\n" not in problem


@pytest.mark.parametrize(("text", "reason"), BAD_CONNECTS)
def test_connects(text: str, reason: str | None) -> None:
    if reason is None:
        endpoint = parse_endpoint(text, bind=False)
        assert (endpoint.source, endpoint.host, endpoint.port) == (
            "10.0.0.1:*",
            "coordinator",
            5555,
        )
        return
    with pytest.raises(EndpointError, match=reason.replace("*", r"\*")):
        parse_endpoint(text, bind=False)


def test_names_resolve_on_connect() -> None:
    endpoint = parse_endpoint("tcp://wsload-coordinator:5555", bind=False)
    assert (endpoint.host, endpoint.port, endpoint.ipv6) == ("wsload-coordinator", 5555, False)
    assert parse_endpoint("tcp://[::1]:5555", bind=False).ipv6


@pytest.mark.parametrize(
    ("last", "refused"),
    [
        ("tcp://127.0.0.1:40000", False),
        ("tcp://[::1]:40000", False),
        ("ipc:///tmp/x", False),
        ("tcp://0.0.0.0:40000", True),
        ("tcp://[::]:40000", True),
        ("tcp://10.1.2.3:40000", True),
        ("garbage", True),
    ],
)
def test_what_was_really_bound_is_checked(last: str, refused: bool) -> None:
    assert (bound_problem(last, keys=False, insecure=False) is not None) == refused
    assert bound_problem(last, keys=True, insecure=False) is None

"""The coordinator/worker wire protocol: versioned msgpack messages.

Every message is a msgpack map with two envelope fields, ``v`` (the protocol
version) and ``kind``, plus the fields of its kind. Each kind is a frozen
dataclass below; :func:`encode` turns one into bytes and :func:`decode` turns
bytes back into one.

:func:`decode` is the trust boundary: its input may come from any process
that can reach the coordinator's port. It raises :class:`ProtocolError` --
never another exception -- for oversized input, bytes that are not msgpack,
the wrong version (naming both), an unknown kind, and missing, unknown or
mistyped fields. msgpack's own size limits are set so a small message cannot
claim a huge allocation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgpack
import numpy as np
import numpy.typing as npt

from wsload.common import varint
from wsload.common.errors import ProtocolError
from wsload.common.fanout_wire import FanoutWindow, check_fanout, decode_fanout
from wsload.common.step_wire import (
    MAX_NAME_LEN,
    MAX_STEP_ENTRIES,
    SCENARIO_COUNTERS,
    STEP_COUNTERS,
    StepArrays,
    StepWindow,
    check_scenarios,
    check_steps,
    decode_latency,
    decode_steps,
    encode_latency,
    encode_scenarios,
    encode_steps,
)

PROTOCOL_VERSION = 2

#: Largest message either side accepts. A samples batch of 250 ms at the
#: rates one worker can make stays far below this.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
#: Bounds on containers inside a message: no field needs more.
MAX_CONTAINER_LEN = 100_000


class VersionMismatch(ProtocolError):
    """The peer speaks another protocol version; both are named in the message."""

    def __init__(self, theirs: object, ours: int = PROTOCOL_VERSION) -> None:
        self.theirs = theirs
        self.ours = ours
        super().__init__(f"protocol version {theirs!r} is not supported (this side speaks {ours})")


# -- field checkers ---------------------------------------------------------
# Each returns an error description, or None when the value fits.

Checker = Callable[[Any], str | None]


def _int(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool)
    return None if ok else "an integer"


def _nonneg_int(value: Any) -> str | None:
    return None if _int(value) is None and value >= 0 else "a non-negative integer"


def _float(value: Any) -> str | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return None if ok else "a finite number"


def _str(value: Any) -> str | None:
    return None if isinstance(value, str) else "a string"


def _bytes(value: Any) -> str | None:
    return None if isinstance(value, bytes) else "bytes"


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "a boolean"


def _map(value: Any) -> str | None:
    ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
    return None if ok else "a map with string keys"


def _counters(value: Any) -> str | None:
    ok = _map(value) is None and all(_nonneg_int(v) is None for v in value.values())
    return None if ok else "a map of string to non-negative integer"


def _int_map(value: Any) -> str | None:
    ok = _map(value) is None and all(_int(v) is None for v in value.values())
    return None if ok else "a map of string to integer"


def _str_list(value: Any) -> str | None:
    ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    return None if ok else "a list of strings"


# -- messages ---------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """Base of every message kind; ``KIND`` is the wire name."""

    KIND: ClassVar[str] = ""
    SCHEMA: ClassVar[Mapping[str, Checker]] = {}


@dataclass(frozen=True)
class Hello(Message):
    """Worker -> coordinator: who I am and what I can carry."""

    KIND: ClassVar[str] = "hello"
    SCHEMA: ClassVar[Mapping[str, Checker]] = {
        "worker_id": _str,
        "host": _str,
        "pid": _nonneg_int,
        "version": _str,
        "cores": _nonneg_int,
        "fd_limit": _nonneg_int,
    }
    worker_id: str
    host: str
    pid: int
    version: str
    cores: int
    fd_limit: int


@dataclass(frozen=True)
class Welcome(Message):
    """Coordinator -> worker: accepted; how often to heartbeat."""

    KIND: ClassVar[str] = "welcome"
    SCHEMA: ClassVar[Mapping[str, Checker]] = {"worker_id": _str, "heartbeat_interval": _float}
    worker_id: str
    heartbeat_interval: float


@dataclass(frozen=True)
class Refuse(Message):
    """Coordinator -> worker: not accepted, and why (e.g. both versions named)."""

    KIND: ClassVar[str] = "refuse"
    SCHEMA: ClassVar[Mapping[str, Checker]] = {"reason": _str}
    reason: str


@dataclass(frozen=True)
class Heartbeat(Message):
    """Either direction: still here. ``sent_at`` is the sender's wall clock."""

    KIND: ClassVar[str] = "heartbeat"
    SCHEMA: ClassVar[Mapping[str, Checker]] = {"sent_at": _float}
    sent_at: float


@dataclass(frozen=True)
class Job(Message):
    """Coordinator -> worker: run this share of a spec from ``start_at``.

    ``spec`` is :meth:`wsload.common.spec.JobSpec.to_dict`; the worker validates it
    with :func:`wsload.common.spec.spec_from_dict` like any other input.

    A second ``job`` with the id of the job a worker is running adds its
    share to that job: a lost worker's clients ``client_offset ..`` handed
    on, connecting evenly from its arrival until ``start_at``.
    """

    KIND: ClassVar[str] = "job"
    SCHEMA: ClassVar[Mapping[str, Checker]] = {
        "job_id": _str,
        "spec": _map,
        "num_clients": _nonneg_int,
        "client_offset": _nonneg_int,
        "rate": _float,
        "start_at": _float,
    }
    job_id: str
    spec: dict[str, Any]
    num_clients: int
    client_offset: int
    rate: float
    start_at: float


@dataclass(frozen=True)
class Samples(Message):
    """Worker -> coordinator: one window of counters and its samples.

    Samples are microseconds as varints (:mod:`wsload.common.varint`): ``latency``
    from the intended send time; ``lag`` = latency minus service time (from
    the actual send), one per latency and nearly always 0 or tiny, so a reply
    costs about 3 bytes on the wire instead of 8; ``connect`` per opened
    connection. :meth:`arrays` decodes and checks them.

    A conversation adds ``steps`` (step name -> ``{"counters": STEP_COUNTERS
    deltas, "latency": varints, "lag": varints}``, the same encoding per
    step; :meth:`step_arrays` decodes and checks them) and ``scenarios``
    (scenario name -> ``{"unsolicited": n, "iterations": n}`` deltas). Both
    are optional: an echo window, or an older worker, sends neither. Their
    schema and encoding are in :mod:`wsload.common.step_wire`.
    """

    KIND: ClassVar[str] = "samples"
    SCHEMA: ClassVar[Mapping[str, Checker]] = {
        "job_id": _str,
        "seq": _nonneg_int,
        "window_start": _float,
        "window_end": _float,
        # deltas: a gauge such as clients_connected can go down within a window
        "counters": _int_map,
        "errors": _counters,
        "latency": _bytes,
        "lag": _bytes,
        "connect": _bytes,
        "steps": check_steps,
        "scenarios": check_scenarios,
        "fanout": check_fanout,
    }
    job_id: str
    seq: int
    window_start: float
    window_end: float
    counters: dict[str, int]
    errors: dict[str, int] = field(default_factory=dict)
    latency: bytes = b""
    lag: bytes = b""
    connect: bytes = b""
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    scenarios: dict[str, dict[str, int]] = field(default_factory=dict)
    #: deliveries and publications (optional): :mod:`wsload.common.fanout_wire`
    fanout: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def window(
        cls,
        job_id: str,
        seq: int,
        window: tuple[float, float],
        counters: dict[str, int],
        errors: dict[str, int],
        samples: tuple[npt.ArrayLike, npt.ArrayLike, npt.ArrayLike],
        steps: Mapping[str, StepWindow] | None = None,
        scenarios: Mapping[str, Mapping[str, int]] | None = None,
        fanout: FanoutWindow | None = None,
    ) -> Samples:
        """Encode one window: ``samples`` are (latency, service, connect) microseconds.

        ``steps`` and ``scenarios`` (a conversation's) are encoded like the
        window's own samples; zero counters are left out.
        """
        latency, service, connect = samples
        return cls(
            job_id, seq, window[0], window[1], counters, errors,
            *encode_latency(latency, service), varint.encode(np.asarray(connect, dtype=np.int64)),
            encode_steps(steps or {}), encode_scenarios(scenarios or {}),
            fanout.encode() if fanout else {},
        )  # fmt: skip

    def arrays(self) -> tuple[npt.NDArray[np.uint32], ...]:
        """(latency, service, connect) microseconds; ProtocolError when malformed."""
        latency, service = decode_latency(self.latency, self.lag, "samples")
        return latency, service, varint.decode(self.connect)

    def step_arrays(self) -> dict[str, StepArrays]:
        """Step name -> (counters, latency, service) microseconds; ProtocolError when malformed.

        See :func:`wsload.common.step_wire.decode_steps`.
        """
        return decode_steps(self.steps)

    def fanout_window(self) -> FanoutWindow:
        """The decoded ``fanout`` field; ProtocolError when malformed.

        See :func:`wsload.common.fanout_wire.decode_fanout`.
        """
        return decode_fanout(self.fanout)


@dataclass(frozen=True)
class Clock(Message):
    """A clock probe, both ways: how far a worker's wall clock is from the coordinator's.

    Coordinator -> worker: ``probe`` (its number) and ``sent_at`` (the
    coordinator's clock, t0), ``worker_time`` None. The worker answers at
    once with the same two and ``worker_time`` (its clock, t1). With the
    answer's arrival t2, offset = t1 - (t0 + t2) / 2 within (t2 - t0) / 2.
    """

    KIND: ClassVar[str] = "clock"
    SCHEMA: ClassVar[Mapping[str, Checker]] = {
        "probe": _nonneg_int,
        "sent_at": _float,
        "worker_time": lambda v: None if v is None else _float(v),
    }
    probe: int
    sent_at: float
    worker_time: float | None = None

    def answer(self, worker_time: float) -> Clock:
        """The worker's reply to this probe."""
        return Clock(self.probe, self.sent_at, worker_time)


@dataclass(frozen=True)
class Result(Message):
    """Worker -> coordinator: final accounting of a job (and check results)."""

    KIND: ClassVar[str] = "result"
    SCHEMA: ClassVar[Mapping[str, Checker]] = {
        "job_id": _str,
        "ok": _bool,
        "counters": _counters,
        "errors": _counters,
        "details": _map,
    }
    job_id: str
    ok: bool
    counters: dict[str, int]
    errors: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stop(Message):
    """Coordinator -> worker: stop the job, drain, report."""

    KIND: ClassVar[str] = "stop"
    SCHEMA: ClassVar[Mapping[str, Checker]] = {"job_id": _str, "reason": _str}
    job_id: str
    reason: str = ""


@dataclass(frozen=True)
class Bye(Message):
    """Either direction: leaving for good."""

    KIND: ClassVar[str] = "bye"
    SCHEMA: ClassVar[Mapping[str, Checker]] = {"reason": _str}
    reason: str = ""


@dataclass(frozen=True)
class Error(Message):
    """Either direction: a request could not be honoured; ``code`` is machine-readable."""

    KIND: ClassVar[str] = "error"
    SCHEMA: ClassVar[Mapping[str, Checker]] = {"code": _str, "message": _str, "details": _str_list}
    code: str
    message: str
    details: list[str] = field(default_factory=list)


#: ``error`` codes by which a worker refuses a job: the run ends, it could not run.
JOB_REFUSALS = frozenset({"bad-job", "target-not-allowed", "bad-source-address"})

#: Identity suffix of a worker's heartbeat socket: ``<worker_id>#hb`` beats for ``<worker_id>``.
HEARTBEAT_SUFFIX = "#hb"

#: The counters a worker reports in ``samples`` and ``result`` messages.
#: Run-level accounting: ``expected = received + timed_out + failed + lost +
#: unanswered``: every answer awaited (in the echo load one per message sent, so
#: ``expected == sent``; in a conversation one per ``expect`` step begun) is
#: resolved exactly once, and ``failed`` counts expects that met an error
#: (their ``fail`` pattern, a capture missing from the reply);
#: ``late`` replies answer a message already resolved (timed out, or answered
#: before: a duplicate); ``unsolicited`` messages are no reply at all (no id,
#: or an id never sent: pushes, heartbeats, broadcasts); ``behind_schedule``
#: messages went out later than intended because the generator (or the
#: connection's write buffer) held them, their latency still counted from the
#: intended time; ``write_pauses`` counts the times a connection's write
#: buffer filled and sending waited; ``cpu_ms`` is the worker process's CPU
#: time; ``clients_connected`` is a gauge.
SAMPLE_COUNTERS = (
    "sent",
    "expected",
    "received",
    "timed_out",
    "failed",
    "lost",
    "unanswered",
    "late",
    "unsolicited",
    "behind_schedule",
    "write_pauses",
    "cpu_ms",
    "bytes_sent",
    "bytes_received",
    "connects",
    "connect_failures",
    "reconnects",
    "disconnects",
    "clients_connected",
)

MESSAGE_TYPES: Mapping[str, type[Message]] = {
    cls.KIND: cls
    for cls in (Hello, Welcome, Refuse, Heartbeat, Job, Samples, Clock, Result, Stop, Bye, Error)
}


def encode(message: Message) -> bytes:
    """Serialise a message with its envelope (version and kind)."""
    body: dict[str, Any] = {"v": PROTOCOL_VERSION, "kind": message.KIND}
    for f in dataclasses.fields(message):
        body[f.name] = getattr(message, f.name)
    data: bytes = msgpack.packb(body, use_bin_type=True)
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"{message.KIND} message of {len(data)} bytes exceeds the limit")
    return data


def decode(data: bytes) -> Message:
    """Parse and check one message; raises :class:`ProtocolError` on anything wrong."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ProtocolError(f"expected bytes, got {type(data).__name__}")
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES} bytes")
    try:
        body = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=MAX_MESSAGE_BYTES,
            max_bin_len=MAX_MESSAGE_BYTES,
            max_array_len=MAX_CONTAINER_LEN,
            max_map_len=MAX_CONTAINER_LEN,
            max_ext_len=0,
        )
    # Hostile bytes can make msgpack raise several unrelated exception types
    # (ValueError subclasses, TypeError for unhashable keys, UnicodeDecodeError,
    # RecursionError for deep nesting); all of them mean "not a message".
    except Exception as exc:
        raise ProtocolError(f"not a valid msgpack message: {type(exc).__name__}") from None
    if not isinstance(body, dict):
        raise ProtocolError(f"message must be a map, got {type(body).__name__}")
    if "v" not in body:
        raise ProtocolError("message has no protocol version field 'v'")
    if body["v"] != PROTOCOL_VERSION or isinstance(body["v"], bool):
        raise VersionMismatch(body["v"])
    kind = body.get("kind")
    cls = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message kind {kind!r}")
    return _build(cls, body)


def _build(cls: type[Message], body: dict[str, Any]) -> Message:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(body) - set(fields) - {"v", "kind"})
    if unknown:
        raise ProtocolError(f"{cls.KIND}: unknown field {unknown[0]!r}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in body:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required:
                raise ProtocolError(f"{cls.KIND}: missing field {name!r}")
            continue
        expected = cls.SCHEMA[name](body[name])
        if expected is not None:
            got = type(body[name]).__name__
            raise ProtocolError(f"{cls.KIND}: field {name!r} must be {expected}, got {got}")
        value = body[name]
        kwargs[name] = float(value) if cls.SCHEMA[name] is _float else value
    return cls(**kwargs)


__all__ = [
    "HEARTBEAT_SUFFIX",
    "JOB_REFUSALS",
    "MAX_MESSAGE_BYTES",
    "MAX_NAME_LEN",
    "MAX_STEP_ENTRIES",
    "MESSAGE_TYPES",
    "PROTOCOL_VERSION",
    "SAMPLE_COUNTERS",
    "SCENARIO_COUNTERS",
    "STEP_COUNTERS",
    "Bye",
    "Clock",
    "Error",
    "Heartbeat",
    "Hello",
    "Job",
    "Message",
    "ProtocolError",
    "Refuse",
    "Result",
    "Samples",
    "StepArrays",
    "StepWindow",
    "Stop",
    "VersionMismatch",
    "Welcome",
    "decode",
    "encode",
]

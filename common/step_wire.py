"""A conversation's per-step part of a ``samples`` message, on the wire.

A ``samples`` window (:class:`wsload.common.protocol.Samples`) may carry
``steps`` (step name -> ``{"counters": STEP_COUNTERS deltas, "latency":
varints, "lag": varints}``) and ``scenarios`` (scenario name ->
``{"unsolicited": n, "iterations": n}`` deltas). This module holds what is
particular to them -- their counters, the schema checkers ``decode`` runs
on them, and their encoding and decoding -- so that
:mod:`wsload.common.protocol` keeps to the messages and their envelope.

It imports nothing from the protocol module (which imports it); the
protocol re-exports its public names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from wsload.common import varint
from wsload.common.errors import ProtocolError

#: The counters of one ``expect`` step (a measured transaction), per window:
#: ``expected = met + timed_out + failed + lost + unanswered``. ``expected``
#: counts the expect begun; it is then met (a matching message came), timed
#: out, failed (its ``fail`` pattern matched, or a capture was missing), lost
#: (its connection closed first) or unanswered (still waiting at stop).
STEP_COUNTERS = ("expected", "met", "timed_out", "failed", "lost", "unanswered")
#: The counters of one scenario, per window.
SCENARIO_COUNTERS = ("unsolicited", "iterations")

#: Longest step or scenario name on the wire (a name is a metric name, not data).
MAX_NAME_LEN = 200
#: Most step (or scenario) entries one window may carry. A hostile worker
#: sending new names every window is bounded again by the aggregate.
MAX_STEP_ENTRIES = 4096

#: The fields of one ``steps`` entry.
_STEP_FIELDS = frozenset({"counters", "latency", "lag"})


@dataclass(frozen=True)
class StepWindow:
    """One ``expect`` step's share of a window, before encoding.

    ``counters`` are :data:`STEP_COUNTERS` deltas; ``latency`` (from the
    step's due time) and ``service`` (from the actual send) are microseconds,
    one pair per expect met in the window.
    """

    counters: Mapping[str, int]
    latency: npt.ArrayLike = ()
    service: npt.ArrayLike = ()


#: A decoded step entry: (counters, latency, service time), microseconds.
StepArrays = tuple[dict[str, int], npt.NDArray[np.uint32], npt.NDArray[np.uint32]]


# -- schema checkers (as wsload.common.protocol.Checker) ----------------------


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _named_map(value: Any) -> bool:
    """A map with at most MAX_STEP_ENTRIES non-empty string keys of bounded length."""
    return (
        isinstance(value, dict)
        and len(value) <= MAX_STEP_ENTRIES
        and all(isinstance(k, str) and 0 < len(k) <= MAX_NAME_LEN for k in value)
    )


def _step_entry(entry: Any) -> bool:
    if not isinstance(entry, dict) or not set(entry) <= _STEP_FIELDS:
        return False
    counters = entry.get("counters", {})
    if not isinstance(counters, dict) or not set(counters) <= set(STEP_COUNTERS):
        return False
    if not all(_count(v) for v in counters.values()):
        return False
    return isinstance(entry.get("latency", b""), bytes) and isinstance(entry.get("lag", b""), bytes)


def check_steps(value: Any) -> str | None:
    """None when ``value`` is a valid ``steps`` field, else what it must be."""
    ok = _named_map(value) and all(_step_entry(e) for e in value.values())
    return None if ok else (
        f"a map of step name (1..{MAX_NAME_LEN} characters, at most {MAX_STEP_ENTRIES})"
        " to {counters: {step counter: n}, latency: bytes, lag: bytes}"
    )  # fmt: skip


def _scenario_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and set(entry) <= set(SCENARIO_COUNTERS)
        and all(_count(v) for v in entry.values())
    )


def check_scenarios(value: Any) -> str | None:
    """None when ``value`` is a valid ``scenarios`` field, else what it must be."""
    ok = _named_map(value) and all(_scenario_entry(e) for e in value.values())
    return None if ok else (
        f"a map of scenario name (1..{MAX_NAME_LEN} characters, at most {MAX_STEP_ENTRIES})"
        " to {unsolicited: n, iterations: n}"
    )  # fmt: skip


# -- encoding -----------------------------------------------------------------


def encode_latency(latency: npt.ArrayLike, service: npt.ArrayLike) -> tuple[bytes, bytes]:
    """(latency, lag) varints: lag = latency - service, nearly always 0 or tiny."""
    lat = np.asarray(latency, dtype=np.int64)
    lag = np.maximum(lat - np.asarray(service, dtype=np.int64), 0)
    return varint.encode(lat), varint.encode(lag)


def decode_latency(
    latency: bytes, lag: bytes, where: str
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
    """(latency, service) microseconds; ProtocolError naming ``where`` when malformed."""
    lat = varint.decode(latency)
    lags = varint.decode(lag)
    if lags.size != lat.size:
        raise ProtocolError(f"{where}: {lat.size} latencies but {lags.size} lags")
    if (lags > lat).any():
        raise ProtocolError(f"{where}: a lag exceeds its latency")
    return lat, lat - lags


def encode_steps(steps: Mapping[str, StepWindow]) -> dict[str, dict[str, Any]]:
    """The ``steps`` field of a window; zero counters are left out."""
    wire: dict[str, dict[str, Any]] = {}
    for name, step in steps.items():
        latency, lag = encode_latency(step.latency, step.service)
        counters = {k: int(v) for k, v in step.counters.items() if v}
        wire[name] = {"counters": counters, "latency": latency, "lag": lag}
    return wire


def encode_scenarios(scenarios: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """The ``scenarios`` field of a window; zero counters are left out."""
    return {name: {k: int(v) for k, v in c.items() if v} for name, c in scenarios.items()}


def decode_steps(steps: Mapping[str, Mapping[str, Any]]) -> dict[str, StepArrays]:
    """Step name -> (counters, latency, service) microseconds; ProtocolError when malformed.

    Besides the varints themselves it checks that every lag fits its
    latency and that a step carries exactly one latency per expect met.
    """
    out: dict[str, StepArrays] = {}
    for name, entry in steps.items():
        counters = {k: int(v) for k, v in entry.get("counters", {}).items()}
        where = f"samples: step {name!r}"
        latency, service = decode_latency(entry.get("latency", b""), entry.get("lag", b""), where)
        met = counters.get("met", 0)
        if latency.size != met:
            raise ProtocolError(f"{where}: {latency.size} latencies for {met} met")
        out[name] = (counters, latency, service)
    return out


__all__ = [
    "MAX_NAME_LEN",
    "MAX_STEP_ENTRIES",
    "SCENARIO_COUNTERS",
    "STEP_COUNTERS",
    "StepArrays",
    "StepWindow",
    "check_scenarios",
    "check_steps",
    "decode_latency",
    "decode_steps",
    "encode_latency",
    "encode_scenarios",
    "encode_steps",
]

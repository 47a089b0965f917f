"""Fan-out deliveries on the wire: a ``samples`` window's ``fanout`` field.

``Samples.fanout`` (optional) is::

    {"pubs": {topic: bytes},        # publications made in the window: (seq, epoch µs)
     "subs": [bytes, ...],          # subscriptions that ended in the window
     "latency": {topic: bytes},     # delivery latencies, µs (signed: clocks may differ)
     "counts": {topic: {"deliveries": n, "duplicates": n,
                        "out_of_order": n, "publish_conflicts": n}}}

Everything numeric is an unsigned LEB128 varint of up to 63 bits (signed
values zigzagged), packed and unpacked with numpy so a window of tens of
thousands of publications costs a few array operations, not a Python loop
per value. Sequences are delta-encoded: a publisher's seqs and a
subscriber's received ranges are nearly contiguous, so most values take one
byte.

The worker fills a :class:`FanoutWindow` and :meth:`FanoutWindow.encode`
gives the field; :func:`check_fanout` is the schema checker
:func:`wsload.common.protocol.decode` runs and :func:`decode_fanout` the
strict decoding (the coordinator's trust boundary: anything malformed or
beyond the bounds below raises :class:`ProtocolError`, never another
exception and never an allocation the message's size does not justify).

Layouts (each field a varint):

- publications: ``n, seq0, (seq_i - seq_{i-1} - 1)*(n-1), t0, zigzag(t_i - t_{i-1})*(n-1)``
  with seqs ascending and unique, times epoch µs (a steady publisher's
  time steps are its interval: two or three bytes);
- a subscription: ``len(topic)``, the topic's UTF-8 bytes, then ``client,
  subscribed_at_us, ended_at_us - subscribed_at_us, untracked, n_ranges``
  and per range ``(gap, run)``: the first range's gap is its start, the
  next ones' ``start - previous end - 2`` (ranges never touch), ``run`` is
  ``end - start``;
- latencies: zigzag varints, one per delivery that carried ``sent_at``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from wsload.common.errors import ProtocolError
from wsload.common.rangeset import DEFAULT_MAX_RANGES, MAX_SEQ, Added, RangeSet
from wsload.common.varint63 import (
    MAX_VARINT_BYTES,
    SMALL,
    cumulative,
    decode_small,
    decode_u63,
    encode_u63,
    unzigzag,
    zigzag,
)

#: The per-topic counters of a window (deltas).
FANOUT_COUNTERS = ("deliveries", "duplicates", "out_of_order", "publish_conflicts")
#: Longest topic name (a topic is a metric name, not data).
MAX_TOPIC_LEN = 200
#: The topic of a subscription record that says "subscribed to every topic" (a
#: program with a ``topic`` path and no ``topics``): no ranges; the ledger owes it
#: every published topic it has no record of. No delivery's topic is this (NUL).
ALL_TOPICS = "\x00all"
#: Most topics in one window's ``pubs``, ``latency`` or ``counts``.
MAX_TOPICS_PER_WINDOW = 1024
#: Most ended subscriptions one window carries (the worker sends the rest next window).
MAX_SUBS_PER_WINDOW = 20_000
#: Most ranges one subscription carries (RangeSet's default bound).
MAX_RANGES_PER_SUB = DEFAULT_MAX_RANGES
#: Most ranges over all subscriptions of one window.
MAX_WINDOW_RANGES = 1_000_000
#: Most publications of one topic in one window.
MAX_PUBS_PER_TOPIC = 1_000_000
#: Latest epoch time in µs accepted (about year 2255; exact in a float).
MAX_TIME_US = (1 << 53) - 1
#: Latencies are clamped to ± this many µs (about 35 years) before encoding.
MAX_LATENCY_US = 1 << 50
#: Largest client number.
MAX_CLIENT = (1 << 40) - 1

# -- publications ---------------------------------------------------------------


def encode_publications(pubs: npt.ArrayLike) -> bytes:
    """``pubs``: (seq, epoch µs) pairs in any order. Seqs are sorted; a seq
    seen again keeps its first pair (the worker counts ``publish_conflicts``)."""
    arr = np.asarray(pubs, dtype=np.int64).reshape(-1, 2)
    if arr.shape[0] == 0:
        return encode_u63([0])
    seqs, times = arr[:, 0], arr[:, 1]
    if int(seqs.min()) < 0 or int(seqs.max()) > MAX_SEQ:
        raise ValueError(f"publication seqs must be in 0..{MAX_SEQ}")
    if int(times.min()) < 0 or int(times.max()) > MAX_TIME_US:
        raise ValueError(f"publication times must be in 0..{MAX_TIME_US} µs")
    seqs, first = np.unique(seqs, return_index=True)  # first occurrence of each seq
    times = times[first]
    gaps = np.diff(seqs) - 1
    steps = zigzag(np.diff(times), MAX_TIME_US).astype(np.int64)  # int64: no float mix
    return encode_u63(np.concatenate(([seqs.size, seqs[0]], gaps, [times[0]], steps)))


def decode_publications(
    data: bytes, where: str = "publications"
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(seqs ascending and unique, epoch µs); ProtocolError when malformed."""
    v = decode_u63(data, where)
    if v.size == 0:
        raise ProtocolError(f"{where}: empty")
    n = int(v[0])
    if n > MAX_PUBS_PER_TOPIC:
        raise ProtocolError(f"{where}: {n} publications, more than {MAX_PUBS_PER_TOPIC}")
    if v.size != (1 if n == 0 else 2 * n + 1):
        raise ProtocolError(f"{where}: {v.size} values for {n} publications")
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    steps = v[1 : n + 1].copy()
    steps[1:] += np.uint64(1)  # gaps back to differences (each below 2**63 + 1: checked next)
    seqs = cumulative(steps, MAX_SEQ, where)
    first, deltas = v[n + 1], unzigzag(v[n + 2 :])
    # bound every partial sum before summing exactly: no int64 overflow possible
    if float(first) + float(np.abs(deltas.astype(np.float64)).sum()) > 2.0**62:
        raise ProtocolError(f"{where}: times beyond {MAX_TIME_US} µs")
    times = np.cumsum(np.concatenate(([np.int64(first)], deltas)))
    if int(times.min()) < 0 or int(times.max()) > MAX_TIME_US:
        raise ProtocolError(f"{where}: times beyond {MAX_TIME_US} µs")
    return seqs, times


# -- latencies ------------------------------------------------------------------


def encode_latencies(latency_us: npt.ArrayLike) -> bytes:
    """Delivery latencies (µs, signed: receive time - sent_at across clocks)."""
    return encode_u63(zigzag(latency_us, MAX_LATENCY_US))


def decode_latencies(data: bytes, where: str = "latency") -> npt.NDArray[np.int64]:
    """Inverse of :func:`encode_latencies`; ProtocolError when malformed or out of bounds."""
    out = unzigzag(decode_u63(data, where))
    if out.size and int(np.abs(out).max()) > MAX_LATENCY_US:
        raise ProtocolError(f"{where}: a latency beyond {MAX_LATENCY_US} µs")
    return out


# -- subscriptions --------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SubscriptionRecord:
    """One ended subscription of one client to one topic.

    ``subscribed_at_us``/``ended_at_us``: epoch µs on the subscriber's
    worker clock (subscribed when its ``[[steps]]`` completed, ended when
    its connection did). ``ranges``: the seqs received, an (n, 2) int64
    array of inclusive (first, last) ranges, ascending, never touching.
    ``untracked``: seqs received but not recorded (the RangeSet was full).
    """

    client: int
    topic: str
    subscribed_at_us: int
    ended_at_us: int
    ranges: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    untracked: int = 0

    @classmethod
    def of(
        cls,
        client: int,
        topic: str,
        subscribed_at_us: int,
        ended_at_us: int,
        received: RangeSet | Iterable[tuple[int, int]],
        untracked: int = 0,
    ) -> SubscriptionRecord:
        """From a :class:`RangeSet` (its ``untracked`` too) or (first, last) pairs."""
        if isinstance(received, RangeSet):
            untracked, pairs = received.untracked, received.ranges()
        else:
            pairs = list(received)
        arr = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        return cls(client, topic, subscribed_at_us, ended_at_us, arr, untracked)

    @property
    def received(self) -> int:
        """How many distinct seqs the ranges hold."""
        return int((self.ranges[:, 1] - self.ranges[:, 0] + 1).sum())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SubscriptionRecord):
            return NotImplemented
        head = (self.client, self.topic, self.subscribed_at_us, self.ended_at_us, self.untracked)
        theirs = (other.client, other.topic, other.subscribed_at_us, other.ended_at_us)
        return head == (*theirs, other.untracked) and np.array_equal(self.ranges, other.ranges)

    def __hash__(self) -> int:
        return hash((self.client, self.topic, self.subscribed_at_us, self.ended_at_us))

    def encode(self) -> bytes:
        """The wire form (see the module's docstring). An end before the start is
        sent as the start; ranges must be ascending and never touch (ValueError)."""
        topic = self.topic.encode()
        if not 0 < len(self.topic) <= MAX_TOPIC_LEN:
            raise ValueError(f"topic must be 1..{MAX_TOPIC_LEN} characters")
        r = np.asarray(self.ranges, dtype=np.int64).reshape(-1, 2)
        if r.size and (
            int(r.min()) < 0 or int(r.max()) > MAX_SEQ or (r[:, 1] < r[:, 0]).any()
            or (r[1:, 0] < r[:-1, 1] + 2).any()
        ):  # fmt: skip
            raise ValueError("ranges must be ascending, disjoint and never touch, in 0..MAX_SEQ")
        pairs = np.empty((r.shape[0], 2), dtype=np.int64)
        if r.shape[0]:
            pairs[0, 0] = r[0, 0]
            pairs[1:, 0] = r[1:, 0] - r[:-1, 1] - 2
            pairs[:, 1] = r[:, 1] - r[:, 0]
        start = self.subscribed_at_us
        head = [self.client, start, max(self.ended_at_us - start, 0), self.untracked, r.shape[0]]
        return encode_u63([len(topic)]) + topic + encode_u63(np.concatenate((head, pairs.ravel())))

    @classmethod
    def decode(cls, data: bytes, where: str = "subscription") -> SubscriptionRecord:
        """Inverse of :meth:`encode`; ProtocolError when malformed or beyond the bounds."""
        if not isinstance(data, bytes):
            raise ProtocolError(f"{where}: not bytes")
        size = 0
        for i in range(min(len(data), MAX_VARINT_BYTES)):
            size |= (data[i] & 0x7F) << (7 * i)
            if data[i] < 0x80:
                break
        else:
            raise ProtocolError(f"{where}: no topic length")
        at = i + 1
        if not 0 < size <= 4 * MAX_TOPIC_LEN or at + size > len(data):
            raise ProtocolError(f"{where}: bad topic length {size}")
        try:
            topic = data[at : at + size].decode()
        except UnicodeDecodeError:
            raise ProtocolError(f"{where}: topic is not UTF-8") from None
        if len(topic) > MAX_TOPIC_LEN:
            raise ProtocolError(f"{where}: topic longer than {MAX_TOPIC_LEN} characters")
        rest = data[at + size :]
        small = len(rest) <= SMALL
        v: Any = decode_small(rest, where) if small else decode_u63(rest, where)
        if len(v) < 5:
            raise ProtocolError(f"{where}: {len(v)} values, fewer than 5")
        client, start, length, untracked, n = (int(x) for x in v[:5])
        if client > MAX_CLIENT or start > MAX_TIME_US or length > MAX_TIME_US:
            raise ProtocolError(f"{where}: client or times out of bounds")
        if n > MAX_RANGES_PER_SUB or untracked > MAX_SEQ:
            raise ProtocolError(f"{where}: {n} ranges, more than {MAX_RANGES_PER_SUB}")
        if len(v) != 5 + 2 * n:
            raise ProtocolError(f"{where}: {len(v) - 5} range values for {n} ranges")
        if small:  # a few ranges: plain integers beat a dozen array operations
            bounds, at_seq = [], 0
            for i, x in enumerate(v[5:]):
                at_seq += x + (2 if i % 2 == 0 and i else 0)
                bounds.append(at_seq)
            if at_seq > MAX_SEQ:
                raise ProtocolError(f"{where}: values beyond {MAX_SEQ}")
            ranges = np.array(bounds, dtype=np.int64).reshape(-1, 2)
        else:
            parts = v[5:].copy()
            parts[2::2] += np.uint64(2)  # later gaps: start - previous end - 2
            ranges = cumulative(parts, MAX_SEQ, where).reshape(-1, 2)
        return cls(client, topic, start, start + length, ranges, untracked)


# -- the window field -----------------------------------------------------------


@dataclass
class FanoutWindow:
    """A window's fan-out part, decoded (or to encode).

    ``pubs``: topic -> (seqs, epoch µs) arrays (to encode: any (n, 2) pairs);
    ``subs``: subscriptions ended in the window; ``latency``: topic -> µs
    (signed); ``counts``: topic -> :data:`FANOUT_COUNTERS` deltas.
    """

    pubs: dict[str, Any] = field(default_factory=dict)
    subs: list[SubscriptionRecord] = field(default_factory=list)
    latency: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.pubs or self.subs or self.latency or self.counts)

    def encode(self) -> dict[str, Any]:
        """The ``Samples.fanout`` field (empty parts and zero counters left out)."""
        out: dict[str, Any] = {}
        pubs = {t: encode_publications(p) for t, p in self.pubs.items() if np.size(p)}
        if pubs:
            out["pubs"] = pubs
        if self.subs:
            out["subs"] = [s.encode() for s in self.subs]
        latency = {t: encode_latencies(v) for t, v in self.latency.items() if np.size(v)}
        if latency:
            out["latency"] = latency
        counts = {t: {k: int(n) for k, n in c.items() if n} for t, c in self.counts.items()}
        counts = {t: c for t, c in counts.items() if c}
        if counts:
            out["counts"] = counts
        return out


def _topic_map(value: Any, ok: Any) -> bool:
    return (
        isinstance(value, dict)
        and len(value) <= MAX_TOPICS_PER_WINDOW
        and all(
            isinstance(k, str) and 0 < len(k) <= MAX_TOPIC_LEN and ok(v) for k, v in value.items()
        )
    )


def _counts(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) <= set(FANOUT_COUNTERS)
        and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value.values())
    )


def check_fanout(value: Any) -> str | None:
    """None when ``value`` is a valid ``Samples.fanout`` field (its shape), else what it must be."""
    ok = (
        isinstance(value, dict)
        and set(value) <= {"pubs", "subs", "latency", "counts"}
        and _topic_map(value.get("pubs", {}), lambda v: isinstance(v, bytes))
        and _topic_map(value.get("latency", {}), lambda v: isinstance(v, bytes))
        and _topic_map(value.get("counts", {}), _counts)
        and isinstance(value.get("subs", []), list)
        and len(value.get("subs", [])) <= MAX_SUBS_PER_WINDOW
        and all(isinstance(s, bytes) for s in value.get("subs", []))
    )
    return None if ok else (
        f"{{pubs: {{topic: bytes}}, subs: [bytes] (at most {MAX_SUBS_PER_WINDOW}),"
        f" latency: {{topic: bytes}}, counts: {{topic: {{fanout counter: n}}}}}}"
        f" with at most {MAX_TOPICS_PER_WINDOW} topics of 1..{MAX_TOPIC_LEN} characters"
    )  # fmt: skip


def decode_fanout(value: Mapping[str, Any]) -> FanoutWindow:
    """The decoded window (after :func:`check_fanout`); ProtocolError when malformed."""
    pubs = {
        t: decode_publications(b, f"fanout: publications of {t!r}")
        for t, b in value.get("pubs", {}).items()
    }
    subs: list[SubscriptionRecord] = []
    ranges = 0
    for i, raw in enumerate(value.get("subs", [])):
        sub = SubscriptionRecord.decode(raw, f"fanout: subscription {i}")
        ranges += sub.ranges.shape[0]
        if ranges > MAX_WINDOW_RANGES:
            raise ProtocolError(f"fanout: more than {MAX_WINDOW_RANGES} ranges in one window")
        subs.append(sub)
    latency = {
        t: decode_latencies(b, f"fanout: latency of {t!r}")
        for t, b in value.get("latency", {}).items()
    }
    counts = {t: dict(c) for t, c in value.get("counts", {}).items()}
    return FanoutWindow(pubs, subs, latency, counts)


def sum_counts(windows: Sequence[Mapping[str, int]]) -> dict[str, int]:
    """Counter dicts added up (every FANOUT_COUNTERS key present)."""
    total = dict.fromkeys(FANOUT_COUNTERS, 0)
    for c in windows:
        for k, n in c.items():
            total[k] = total.get(k, 0) + int(n)
    return total


__all__ = [
    "ALL_TOPICS",
    "FANOUT_COUNTERS",
    "MAX_CLIENT",
    "MAX_LATENCY_US",
    "MAX_PUBS_PER_TOPIC",
    "MAX_RANGES_PER_SUB",
    "MAX_SEQ",
    "MAX_SUBS_PER_WINDOW",
    "MAX_TIME_US",
    "MAX_TOPICS_PER_WINDOW",
    "MAX_TOPIC_LEN",
    "MAX_WINDOW_RANGES",
    "Added",
    "FanoutWindow",
    "RangeSet",
    "SubscriptionRecord",
    "check_fanout",
    "decode_fanout",
    "decode_latencies",
    "decode_publications",
    "decode_u63",
    "encode_latencies",
    "encode_publications",
    "encode_u63",
    "sum_counts",
]

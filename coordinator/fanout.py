"""The delivery ledger: which subscriber got which publication, across workers (sans-I/O).

Workers report publications (topic, seq, intended time), ended
subscriptions (client, topic, subscribed and ended times, the seqs received
as ranges), delivery latencies and counts
(:mod:`wsload.common.fanout_wire`). This ledger joins them: a subscription
is owed every publication of its topic whose time, on the coordinator's
clock, lies in ``[subscribed_at, ended_at)``; it got those of them its
ranges hold (``delivered``), missed the rest (``missing``); seqs it received
that were published outside its window are ``early``, seqs never published
``extra``. For a stream the service publishes itself (source ``server``,
no publication known), a subscription is owed ``first..last`` of what it
received and the gaps are missing. A subscriber to every topic (``topics``
empty) sends a record of :data:`~wsload.common.fanout_wire.ALL_TOPICS` beside
those of the topics it got something of; it is owed every published topic,
so one it got nothing of counts missing too.

Memory never holds one entry per (subscriber, publication): publications
are per-topic arrays (seq, time) sorted once, subscriptions are their range
arrays, and the join is a few vectorised binary searches per topic, so
10,000 subscribers x 100,000 publications join in tens of MB
(``tests/unit/test_fanout_ledger.py``).

Clocks: each worker's offset from the coordinator (its ``Clock`` probes,
:mod:`wsload.coordinator.clock`) is applied per *host*: workers on the
coordinator's host, or on one host together, share a clock, so on one host
nothing is corrected and the figures are exact.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from wsload.common.errors import WsloadError
from wsload.common.fanout_wire import ALL_TOPICS, FANOUT_COUNTERS, FanoutWindow
from wsload.common.histogram import LatencyHistogram
from wsload.coordinator.fanout_figures import (
    ClockFigures,
    DeliveryFigures,
    FanoutFigures,
    MissingDelivery,
    WorkerClock,
)
from wsload.coordinator.figures import Percentiles, distribution

#: Most topics one run keeps apart; the rest are summed under OTHER_TOPICS.
MAX_TOPICS = 256
OTHER_TOPICS = "(other topics)"
#: Most subscriptions and ranges held until the join; past them, subscriptions are
#: dropped (counted).
MAX_SUBSCRIPTIONS = 2_000_000
MAX_RANGES = 20_000_000
#: Most publications held until the join (16 bytes each); past it, publications are
#: dropped (counted, said in the summary: what they were owed reads as extra).
MAX_PUBLICATIONS = 20_000_000
#: Most latencies held back until their topic's publisher is known.
MAX_PENDING_LATENCIES = 2_000_000
#: Missing deliveries listed in the summary.
MISSING_SAMPLE = 20

if TYPE_CHECKING:
    from wsload.common.spec import JobSpec

Array = npt.NDArray[np.int64]


@dataclass
class _Topic:
    """What one topic has gathered until the join."""

    pubs: list[tuple[Array, Array, str]] = field(default_factory=list)  # seqs, raw µs, worker
    publisher: str | None = None
    clients: list[int] = field(default_factory=list)
    sub_workers: list[str] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)  # raw µs, subscriber's clock
    ends: list[int] = field(default_factory=list)
    ranges: list[Array] = field(default_factory=list)
    untracked: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FANOUT_COUNTERS, 0))
    latency: LatencyHistogram | None = None
    pending: list[tuple[str, Array]] = field(default_factory=list)  # (subscriber worker, raw µs)


@dataclass
class _Join:
    """One topic's join result."""

    published: int = 0
    expected: int = 0
    delivered: int = 0
    early: int = 0
    extra: int = 0
    conflicts: int = 0
    missing: list[MissingDelivery] = field(default_factory=list)


class FanoutLedger:
    """Every worker's fan-out windows, joined at the end.

    ``coordinator_host``: the coordinator's host name (workers there need no
    clock correction); ``sources``: the workload's delivery sources
    (``"wsload"``, ``"server"``).
    """

    def __init__(self, coordinator_host: str = "", sources: Collection[str] = ("wsload",)) -> None:
        self.coordinator_host = coordinator_host
        self.sources = frozenset(sources)
        self.topics: dict[str, _Topic] = {}
        self.clocks: dict[str, tuple[str, int | None, int | None]] = {}  # worker: host, off, unc
        self.subscriptions = 0
        self.ranges = 0
        self.dropped_subscriptions = 0
        self.publications = 0
        self.dropped_publications = 0
        self.pending = 0
        self.negative = 0
        #: subscriptions to every topic (records of ALL_TOPICS): worker, client, start, end
        self.everything: list[tuple[str, int, int, int]] = []

    # -- clocks ----------------------------------------------------------------

    def set_clock(
        self, worker_id: str, host: str, offset_us: int | None, uncertainty_us: int | None
    ) -> None:
        """A worker's clock: offset = its clock - the coordinator's (µs), None when unknown."""
        self.clocks[worker_id] = (host, offset_us, uncertainty_us)

    def _host_offsets(self) -> dict[str, tuple[int, int]]:
        """Per host other than the coordinator's: the offset of its best-known worker."""
        best: dict[str, tuple[int, int]] = {}
        for host, off, unc in self.clocks.values():
            if host == self.coordinator_host or off is None or unc is None:
                continue
            if host not in best or unc < best[host][1]:
                best[host] = (off, unc)
        return best

    def offset(self, worker_id: str) -> int:
        """The correction for a worker's times, µs (0 on the coordinator's host or when unknown)."""
        host = self.clocks.get(worker_id, ("", None, None))[0]
        return self._host_offsets().get(host, (0, 0))[0] if host else 0

    # -- windows ---------------------------------------------------------------

    def _topic(self, name: str) -> _Topic:
        topic = self.topics.get(name)
        if topic is None:
            if len(self.topics) >= MAX_TOPICS:
                name = OTHER_TOPICS
                topic = self.topics.get(name)
            if topic is None:
                topic = self.topics[name] = _Topic()
        return topic

    def add(self, worker_id: str, window: FanoutWindow) -> None:
        """Merge one decoded window of ``worker_id``."""
        for name, (seqs, times) in window.pubs.items():
            if self.publications + seqs.size > MAX_PUBLICATIONS:
                self.dropped_publications += int(seqs.size)
                continue
            self.publications += int(seqs.size)
            topic = self._topic(name)
            if topic.publisher is None and seqs.size:
                topic.publisher = worker_id
                self._flush(topic)
            topic.pubs.append((seqs, times, worker_id))
        for sub in window.subs:
            if self.subscriptions >= MAX_SUBSCRIPTIONS or self.ranges >= MAX_RANGES:
                self.dropped_subscriptions += 1
                continue
            self.subscriptions += 1
            self.ranges += sub.ranges.shape[0]
            if sub.topic == ALL_TOPICS:
                whole = (worker_id, sub.client, sub.subscribed_at_us, sub.ended_at_us)
                self.everything.append(whole)
                continue
            topic = self._topic(sub.topic)
            topic.clients.append(sub.client)
            topic.sub_workers.append(worker_id)
            topic.starts.append(sub.subscribed_at_us)
            topic.ends.append(sub.ended_at_us)
            topic.ranges.append(sub.ranges)
            topic.untracked += sub.untracked
        for name, counts in window.counts.items():
            into = self._topic(name).counts
            for k, n in counts.items():
                into[k] = into.get(k, 0) + n
        for name, latency in window.latency.items():
            topic = self._topic(name)
            waits = "wsload" in self.sources and topic.publisher is None
            if waits and self.pending + latency.size <= MAX_PENDING_LATENCIES:
                topic.pending.append((worker_id, latency))
                self.pending += latency.size
            else:
                self._record(topic, worker_id, latency)

    def _record(self, topic: _Topic, subscriber: str, raw: Array) -> None:
        """Record latencies on the coordinator's clock: raw - off(subscriber) + off(publisher)."""
        shift = 0
        if topic.publisher is not None:
            shift = self.offset(topic.publisher) - self.offset(subscriber)
        values = raw + shift
        below = int(np.count_nonzero(values < 0))
        self.negative += below
        if topic.latency is None:
            topic.latency = LatencyHistogram()
        topic.latency.record_many(np.maximum(values, 0) if below else values)

    def _flush(self, topic: _Topic) -> None:
        for worker_id, raw in topic.pending:
            self._record(topic, worker_id, raw)
            self.pending -= raw.size
        topic.pending.clear()

    # -- the join --------------------------------------------------------------

    def _publications(self, topic: _Topic, join: _Join) -> tuple[Array, Array]:
        """(seqs ascending, unique; times on the coordinator's clock); conflicts counted."""
        if not topic.pubs:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        seqs = np.concatenate([s for s, _, _ in topic.pubs])
        times = np.concatenate([t - self.offset(w) for _, t, w in topic.pubs])
        order = np.lexsort((times, seqs))  # by seq, then time: the earliest of a seq first
        seqs, times = seqs[order], times[order]
        first = np.ones(seqs.size, dtype=bool)
        first[1:] = seqs[1:] != seqs[:-1]
        join.conflicts = int(seqs.size - np.count_nonzero(first))
        return seqs[first], times[first]

    def _join(self, name: str, topic: _Topic, sample_room: int) -> _Join:
        join = _Join()
        seqs, times = self._publications(topic, join)
        join.published = int(seqs.size)
        if not topic.ranges:
            return join
        owner = np.repeat(np.arange(len(topic.ranges)), [r.shape[0] for r in topic.ranges])
        all_ranges = np.concatenate(topic.ranges) if owner.size else np.zeros((0, 2), np.int64)
        lo, hi = all_ranges[:, 0], all_ranges[:, 1]
        n = len(topic.ranges)
        received = np.bincount(owner, weights=hi - lo + 1, minlength=n).astype(np.int64)
        if not seqs.size and "server" in self.sources:
            return self._join_stream(name, topic, join, received, sample_room)
        offsets = np.array([self.offset(w) for w in topic.sub_workers], dtype=np.int64)
        starts = np.asarray(topic.starts, dtype=np.int64) - offsets
        ends = np.asarray(topic.ends, dtype=np.int64) - offsets
        # publications each range holds: seqs[a:b]
        a = np.searchsorted(seqs, lo, "left")
        b = np.searchsorted(seqs, hi, "right")
        held = np.bincount(owner, weights=b - a, minlength=n).astype(np.int64)
        if times.size < 2 or bool((np.diff(times) >= 0).all()):  # times follow seqs: one slice each
            i0 = np.searchsorted(times, starts, "left")
            i1 = np.searchsorted(times, ends, "left")
            expected = np.maximum(i1 - i0, 0)
            part = np.maximum(np.minimum(b, i1[owner]) - np.maximum(a, i0[owner]), 0)
            delivered = np.bincount(owner, weights=part, minlength=n).astype(np.int64)
        else:
            expected, delivered = self._join_unordered(topic, seqs, times, starts, ends)
        join.expected = int(expected.sum())
        join.delivered = int(delivered.sum())
        join.early = int((held - delivered).sum())
        join.extra = int((received - held).sum())
        for i in np.flatnonzero(expected > delivered)[: max(sample_room, 0)]:
            owed = seqs[(times >= starts[i]) & (times < ends[i])]
            got = _holds(topic.ranges[i], owed)
            for s in owed[~got][: sample_room - len(join.missing)]:
                join.missing.append(MissingDelivery(name, int(s), topic.clients[i]))
            if len(join.missing) >= sample_room:
                break
        return join

    @staticmethod
    def _join_unordered(
        topic: _Topic, seqs: Array, times: Array, starts: Array, ends: Array
    ) -> tuple[Array, Array]:
        """The general case (publication times not in seq order): one subscription at a time."""
        by_time = np.argsort(times, kind="stable")
        sorted_times = times[by_time]
        expected = np.zeros(len(starts), np.int64)
        delivered = np.zeros(len(starts), np.int64)
        for i, r in enumerate(topic.ranges):
            i0, i1 = np.searchsorted(sorted_times, [starts[i], ends[i]], "left")
            owed = seqs[by_time[i0:i1]]
            expected[i] = owed.size
            delivered[i] = int(np.count_nonzero(_holds(r, owed)))
        return expected, delivered

    def _join_stream(
        self, name: str, topic: _Topic, join: _Join, received: Array, sample_room: int
    ) -> _Join:
        """A server's own stream: owed ``first..last`` of what came, missing the gaps."""
        for i, r in enumerate(topic.ranges):
            if not r.shape[0]:
                continue
            owed = int(r[-1, 1] - r[0, 0] + 1)
            join.expected += owed
            join.delivered += int(received[i])
            for gap_lo, gap_hi in zip(r[:-1, 1] + 1, r[1:, 0] - 1, strict=True):
                for s in range(int(gap_lo), min(int(gap_hi), int(gap_lo) + sample_room) + 1):
                    if len(join.missing) >= sample_room:
                        break
                    join.missing.append(MissingDelivery(name, s, topic.clients[i]))
        return join

    def _owed_everything(self, topic: _Topic) -> _Topic:
        """``topic`` with every subscription to all topics that has no record of it.

        A subscriber to every topic sends records only for the topics it got
        something of; one it got nothing of is owed all the same: an empty
        record here, so its publications count missing. (The same
        subscription's records share its client, times and worker.)
        """
        if not self.everything or not topic.pubs:
            return topic
        have = set(zip(topic.sub_workers, topic.clients, topic.starts, topic.ends, strict=True))
        lacking = [e for e in self.everything if e not in have]
        if not lacking:
            return topic
        empty = np.zeros((0, 2), np.int64)
        return replace(
            topic,
            sub_workers=topic.sub_workers + [w for w, _, _, _ in lacking],
            clients=topic.clients + [c for _, c, _, _ in lacking],
            starts=topic.starts + [s for _, _, s, _ in lacking],
            ends=topic.ends + [e for _, _, _, e in lacking],
            ranges=topic.ranges + [empty] * len(lacking),
        )

    def figures(self, room: int = MISSING_SAMPLE) -> FanoutFigures:
        """The joined figures: per topic (by name) and in total; up to ``room`` missing
        deliveries listed (the event mode lists more)."""
        for topic in self.topics.values():
            self._flush(topic)
        rows: list[DeliveryFigures] = []
        sample: list[MissingDelivery] = []
        total_hist = LatencyHistogram()
        sums = dict.fromkeys(
            ("published", "expected", "delivered", "missing", "early", "extra", "subscriptions",
             "untracked", "publish_conflicts", *FANOUT_COUNTERS), 0
        )  # fmt: skip
        for name in sorted(self.topics):
            topic = self._owed_everything(self.topics[name])
            join = self._join(name, topic, room - len(sample))
            sample += join.missing
            hist = topic.latency or LatencyHistogram()
            if topic.latency is not None:
                total_hist.merge(topic.latency)
            c = topic.counts
            row = DeliveryFigures(
                name, Percentiles.of(hist), join.published, join.expected, join.delivered,
                join.expected - join.delivered, c.get("duplicates", 0), c.get("out_of_order", 0),
                join.early, join.extra, len(topic.ranges), topic.untracked,
                join.conflicts + c.get("publish_conflicts", 0), c.get("deliveries", 0),
                hist.mean / 1e6 if hist.count else None, distribution(hist),
            )  # fmt: skip
            rows.append(row)
            for k in sums:
                sums[k] += getattr(row, k)
        total = DeliveryFigures(
            "total", Percentiles.of(total_hist), sums["published"], sums["expected"],
            sums["delivered"], sums["missing"], sums["duplicates"], sums["out_of_order"],
            sums["early"], sums["extra"], sums["subscriptions"], sums["untracked"],
            sums["publish_conflicts"], sums["deliveries"],
            total_hist.mean / 1e6 if total_hist.count else None, distribution(total_hist),
        )  # fmt: skip
        return FanoutFigures(
            total, tuple(rows), self.clock_figures(bool(total_hist.count)), tuple(sample),
            self.dropped_subscriptions, self.dropped_publications, self._unfed(),
        )  # fmt: skip

    def _unfed(self) -> int:
        """Subscribing clients none of whose topics had a publication or a delivery."""
        subscribers: set[int] = set()
        fed: set[int] = set()
        for topic in self.topics.values():
            subscribers.update(topic.clients)
            if topic.pubs or topic.counts.get("deliveries"):
                fed.update(topic.clients)
        return len(subscribers - fed)

    def clock_figures(self, measured: bool) -> ClockFigures:
        """Each worker's clock, the latencies' source, the largest correction's uncertainty."""
        hosts = self._host_offsets()
        workers = []
        for worker_id, (host, off, unc) in sorted(self.clocks.items()):
            applied = host in hosts
            workers.append(
                WorkerClock(
                    worker_id, host, None if off is None else off / 1e6,
                    None if unc is None else unc / 1e6, applied,
                )
            )  # fmt: skip
        published = any(t.pubs for t in self.topics.values())
        streamed = "server" in self.sources and any(
            not t.pubs and t.latency is not None for t in self.topics.values()
        )
        source = "none"
        if measured:
            source = "mixed" if published and streamed else "server" if streamed else "wsload"
        applied_unc = [unc for _, unc in hosts.values()]
        uncertainty = max(applied_unc) / 1e6 if applied_unc and source != "server" else None
        unknown = tuple(
            w for w, (host, off, _) in sorted(self.clocks.items())
            if off is None and host and host != self.coordinator_host and host not in hosts
        )  # fmt: skip
        return ClockFigures(source, tuple(workers), uncertainty, self.negative, unknown)


def fanout_sources(spec: JobSpec) -> tuple[str, ...]:
    """The delivery sources of a job's programs (``wsload``, ``server``); empty without any.

    The spec was validated before the run; should it not compile here, the
    ledger assumes wsload's own publishers.
    """
    from wsload.common.workload import compile_workload

    try:
        programs = compile_workload(spec).programs
    except WsloadError:
        return ("wsload",)
    return tuple(sorted({p.deliveries.source for p in programs if p.deliveries is not None}))


def _holds(ranges: Array, seqs: Array) -> npt.NDArray[np.bool_]:
    """Which of ``seqs`` the (n, 2) inclusive ``ranges`` (ascending) hold."""
    if not ranges.shape[0] or not seqs.size:
        return np.zeros(seqs.size, dtype=bool)
    k = np.searchsorted(ranges[:, 0], seqs, "right") - 1
    ok = k >= 0
    out = np.zeros(seqs.size, dtype=bool)
    out[ok] = seqs[ok] <= ranges[k[ok], 1]
    return out


__all__ = ["MAX_TOPICS", "MISSING_SAMPLE", "OTHER_TOPICS", "FanoutLedger", "fanout_sources"]

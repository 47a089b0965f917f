"""Deliveries and publications of one worker, sans-I/O (issue 16).

A client whose program has ``deliveries`` is a subscriber: a message no
pending expect takes is read by its :class:`wsload.worker.fanout_reader.Reader`
(does ``match`` accept it, is there an integer at ``seq``, which topic,
which ``sent_at``) and, if it is a delivery, recorded on the connection's
:class:`Subscription`: per topic a :class:`wsload.common.rangeset.RangeSet`
(the seq numbers received, as ranges: memory grows with the gaps, not with
the deliveries), duplicates and out-of-order arrivals, and the latency
``receive epoch time - sent_at`` (signed: the publisher's clock may be
another host's; the coordinator corrects it).

:class:`Fanout` is the worker's side of the ledger: the publications made
here (topic, seq, intended epoch microseconds), the ended subscriptions,
per-topic latency samples and counts, handed over with each window by
:meth:`Fanout.take` (cumulative counts as deltas, so windows sum to totals).
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any

from wsload.common.fanout_wire import (
    ALL_TOPICS,
    MAX_LATENCY_US,
    MAX_SUBS_PER_WINDOW,
    FanoutWindow,
    SubscriptionRecord,
)
from wsload.common.rangeset import MAX_SEQ, RangeSet
from wsload.worker.fanout_reader import MAX_TOPIC, MAX_TOPICS, Reader

if TYPE_CHECKING:
    from wsload.worker.recorder import Recorder

#: ended subscriptions held until the next window (beyond: counted, dropped)
MAX_PENDING_SUBS = 200_000


class _Topic:
    """One topic's run counters and current window of latency samples."""

    __slots__ = ("_last", "conflicts", "deliveries", "duplicates", "latency", "out_of_order")

    def __init__(self) -> None:
        self.deliveries = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.conflicts = 0
        self.latency: array[int] = array("q")
        self._last = (0, 0, 0, 0)


class Subscription:
    """One connection of a subscriber: per topic the seqs it received.

    ``subscribed_at`` (epoch seconds) is set when the client's ``[[steps]]``
    end; deliveries before it are kept too (the coordinator calls them
    ``early``). :meth:`Fanout.end` closes it.

    Bound to its client's ``reader`` and recorder ``rec`` (``epoch``: the
    client's monotonic-to-epoch offset), it takes a delivery by itself
    (:meth:`take`): the session hands it a message between expects without
    going through its client, so a delivery touches this object, its
    topic's seqs and shared objects only (one of thousands of connections:
    each object more is a cache miss per delivery).
    """

    __slots__ = (
        "client",
        "default",
        "ended",
        "epoch",
        "every",
        "fanout",
        "last",
        "last_seqs",
        "last_stats",
        "reader",
        "rec",
        "subscribed_at",
        "topics",
    )

    def __init__(
        self,
        client: int,
        topics: tuple[str, ...],
        reader: Reader | None = None,
        rec: Recorder | None = None,
        epoch: float = 0.0,
    ) -> None:
        self.client = client
        #: the topic of a delivery that names none
        self.default = topics[0] if topics else "default"
        #: no topics declared: subscribed to every topic (its record says so)
        self.every = not topics
        self.subscribed_at: float | None = None
        self.ended = False
        self.topics: dict[str, RangeSet] = {t: RangeSet() for t in topics}
        #: the topic of the last delivery, its seqs and its run figures (the next
        #: delivery is nearly always of the same topic: no lookup then); until
        #: the first, shared placeholders (``last`` is None: never used)
        self.last: str | None = None
        self.last_seqs = _NO_SEQS
        self.last_stats = _NO_STATS
        #: what :meth:`take` needs (None: it takes nothing)
        self.reader = reader if rec is not None else None
        self.rec = rec
        self.fanout = rec.fanout if rec is not None else None
        self.epoch = epoch

    def take(self, data: bytes, text: bool, now: float) -> bool:
        """Record ``data`` (received at monotonic ``now``) if the reader's learned
        pattern reads it as a delivery, and count its bytes: True. False: nothing
        was counted (not a delivery, or one for the full path: the caller's).

        The path of nearly every delivery of a subscriber between expects; the
        same figures as :meth:`Reader.take` and :meth:`Fanout.deliver`.
        """
        reader = self.reader
        if reader is None or not text:
            return False
        memo = reader.memo
        if data != memo[0]:
            if not reader.remember(data):
                return False
            memo = reader.memo
        _, seq, name, sent = memo
        now_epoch = now + self.epoch
        self.rec.bytes_received += len(data)  # type: ignore[union-attr]
        fanout: Fanout = self.fanout  # type: ignore[assignment]
        if name is None:
            name = self.default
        if name is not self.last:
            fanout.deliver(self, name, seq, sent, now_epoch)
            return True
        stats = self.last_stats
        stats.deliveries += 1
        fanout.last_at = now_epoch
        seqs = self.last_seqs
        hi = seqs._hi
        if hi and seq == hi[-1] + 1:  # RangeSet.add's common case, inlined (seq <= MAX_SEQ)
            hi[-1] = seq
            seqs.count += 1
        else:
            before = seqs.out_of_order
            if seqs.add(seq) == "duplicate":
                stats.duplicates += 1
                return True
            if seqs.out_of_order != before:
                stats.out_of_order += 1
        if sent is not None:
            latency = int((now_epoch - sent) * 1e6)
            if -MAX_LATENCY_US <= latency <= MAX_LATENCY_US:  # else a garbage sent_at
                stats.latency.append(latency)
        return True


#: a new subscription's last topic's seqs and figures (never used: ``last`` is None)
_NO_SEQS = RangeSet(max_ranges=0)
_NO_STATS = _Topic()


class Fanout:
    """A worker's publications, ended subscriptions and per-topic delivery figures."""

    def __init__(self) -> None:
        self.topics: dict[str, _Topic] = {}
        #: publications of the window in progress: topic -> [(seq, epoch_us)]
        self.pubs: dict[str, list[tuple[int, int]]] = {}
        self.published: dict[str, RangeSet] = {}
        #: ended subscriptions not sent yet (a window carries at most MAX_SUBS_PER_WINDOW)
        self.subs: list[SubscriptionRecord] = []
        self.dropped_subs = 0
        #: when the last delivery came (epoch seconds): a draining run waits for quiet
        self.last_at = 0.0

    def topic(self, name: str) -> _Topic | None:
        found = self.topics.get(name)
        if found is None:
            if len(self.topics) >= MAX_TOPICS:
                return None
            found = self.topics[name] = _Topic()
        return found

    def deliver(
        self, sub: Subscription, topic: str, seq: int, sent_at: float | None, now_epoch: float
    ) -> None:
        """One delivery on ``sub`` received at ``now_epoch`` (this worker's clock)."""
        if topic is sub.last:  # the reader hands the same str object for the same topic
            seqs, stats = sub.last_seqs, sub.last_stats
        else:
            found_stats = self.topics.get(topic) or self.topic(topic)
            if found_stats is None:
                return
            found = sub.topics.get(topic)
            if found is None:
                if len(sub.topics) >= MAX_TOPICS:
                    return
                found = sub.topics[topic] = RangeSet()
            seqs, stats = sub.last_seqs, sub.last_stats = found, found_stats
            sub.last = topic
        stats.deliveries += 1
        self.last_at = now_epoch
        before = seqs.out_of_order
        if seqs.add(seq) == "duplicate":
            stats.duplicates += 1
            return
        if seqs.out_of_order != before:
            stats.out_of_order += 1
        if sent_at is not None:
            latency = int((now_epoch - sent_at) * 1e6)
            if -MAX_LATENCY_US <= latency <= MAX_LATENCY_US:  # else a garbage sent_at
                stats.latency.append(latency)

    def publish(self, topic: str, seq: int, at_epoch: float) -> None:
        """A publication written (or POSTed with a 2xx answer) by this worker."""
        stats = self.topic(topic)
        if stats is None:
            return
        done = self.published.get(topic)
        if done is None:
            done = self.published[topic] = RangeSet()
        if not 0 <= seq <= MAX_SEQ or done.add(seq) == "duplicate":
            stats.conflicts += 1
            return
        self.pubs.setdefault(topic, []).append((seq, int(at_epoch * 1e6)))

    def end(self, sub: Subscription, now_epoch: float) -> None:
        """The connection of ``sub`` ended: its record per topic goes with the next window."""
        if sub.ended:
            return
        sub.ended = True
        end_us = int(now_epoch * 1e6)
        start_us = end_us if sub.subscribed_at is None else int(sub.subscribed_at * 1e6)
        for topic, seqs in sub.topics.items():
            if len(self.subs) >= MAX_PENDING_SUBS:
                self.dropped_subs += 1
                continue
            self.subs.append(
                SubscriptionRecord.of(sub.client, topic, min(start_us, end_us), end_us, seqs)
            )
        if sub.every:  # owed every published topic, those it got nothing of too
            if len(self.subs) >= MAX_PENDING_SUBS:
                self.dropped_subs += 1
            else:
                start_us = min(start_us, end_us)
                record = SubscriptionRecord.of(sub.client, ALL_TOPICS, start_us, end_us, ())
                self.subs.append(record)

    @property
    def backlog(self) -> bool:
        """Ended subscriptions wait beyond what one window carries."""
        return len(self.subs) > MAX_SUBS_PER_WINDOW

    def take(self) -> FanoutWindow | None:
        """What changed since the last take (None: nothing): pubs, subs, latency, counts."""
        counts: dict[str, dict[str, int]] = {}
        latency: dict[str, Any] = {}
        for name, t in self.topics.items():
            now = (t.deliveries, t.duplicates, t.out_of_order, t.conflicts)
            if now != t._last:
                d = [a - b for a, b in zip(now, t._last, strict=True)]
                counts[name] = {
                    k: v
                    for k, v in zip(
                        ("deliveries", "duplicates", "out_of_order", "publish_conflicts"),
                        d,
                        strict=True,
                    )
                    if v
                }
                t._last = now
            if t.latency:
                latency[name] = t.latency
                t.latency = array("q")
        if not (counts or latency or self.pubs or self.subs):
            return None
        subs = self.subs[:MAX_SUBS_PER_WINDOW]
        out = FanoutWindow(self.pubs, subs, latency, counts)
        self.pubs = {}
        self.subs = self.subs[MAX_SUBS_PER_WINDOW:]
        return out


__all__ = ["MAX_TOPIC", "MAX_TOPICS", "Fanout", "Reader", "Subscription"]

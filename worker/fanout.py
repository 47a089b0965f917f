"""Deliveries and publications of one worker, sans-I/O (issue 16).

A client whose program has ``deliveries`` is a subscriber: a message no
pending expect takes is read by its :class:`Reader` (does ``match`` accept
it, is there an integer at ``seq``, which topic, which ``sent_at``) and, if
it is a delivery, recorded on the connection's :class:`Subscription`: per
topic a :class:`wsload.common.rangeset.RangeSet` (the seq numbers received,
as ranges: memory grows with the gaps, not with the deliveries), duplicates and out-of-order
arrivals, and the latency ``receive epoch time - sent_at`` (signed: the
publisher's clock may be another host's; the coordinator corrects it).

The hot path is one delivery per message per subscriber (issue item 6: at
most 1.5x the CPU of a bare client that only counts messages), so the
common shape is read without ``json.loads``: when the paths are top-level
keys and ``match`` is a flat table of literal values, precompiled byte
regexes find them (a message with a backslash, or any other shape, takes
the parsing path).

:class:`Fanout` is the worker's side of the ledger: the publications made
here (topic, seq, intended epoch microseconds), the ended subscriptions,
per-topic latency samples and counts, handed over with each window by
:meth:`Fanout.take` (cumulative counts as deltas, so windows sum to totals).
"""

from __future__ import annotations

import random
import re
from array import array
from collections.abc import Mapping
from typing import Any

from wsload.common.fanout_wire import (
    ALL_TOPICS,
    MAX_LATENCY_US,
    MAX_SUBS_PER_WINDOW,
    MAX_TOPIC_LEN,
    MAX_TOPICS_PER_WINDOW,
    FanoutWindow,
    SubscriptionRecord,
)
from wsload.common.match import MISSING, NOT_JSON, SubsetMatcher, capture, parse_json
from wsload.common.program import Deliveries
from wsload.common.rangeset import MAX_SEQ, RangeSet

#: bounds: a hostile or runaway target costs at most this many topics per worker
MAX_TOPICS = MAX_TOPICS_PER_WINDOW
#: a topic name longer than this is cut (it is a key on the wire)
MAX_TOPIC = MAX_TOPIC_LEN
#: ended subscriptions held until the next window (beyond: counted, dropped)
MAX_PENDING_SUBS = 200_000


def _flat_literals(matcher: Any) -> list[tuple[bytes, re.Pattern[bytes]]] | None:
    """A flat table of literal scalars as (its compact spelling, a pattern), or None.

    The compact spelling (``"type":"delivery"``, how most servers write it)
    is looked for first: a substring test is several times cheaper than a
    regex search; the pattern allows whitespace around the colon.
    """
    if not isinstance(matcher, SubsetMatcher) or matcher.names:
        return None
    source = matcher.source
    if not isinstance(source, dict):
        return None
    out = []
    for key, value in source.items():
        if not isinstance(key, str) or not key.isidentifier():
            return None
        if isinstance(value, bool) or value is None:
            lit = {True: b"true", False: b"false", None: b"null"}[value]
            compact = lit
        elif isinstance(value, int):
            lit = str(value).encode() + _NOT_MORE_DIGITS
            compact = b""  # 1 would be found in 12: only the pattern can tell
        elif isinstance(value, str) and value.isprintable() and '"' not in value:
            lit = b'"' + re.escape(value.encode()) + b'"'
            compact = b'"' + value.encode() + b'"'
        else:
            return None
        key_b = b'"' + key.encode() + b'"'
        out.append(
            (key_b + b":" + compact if compact else b"", re.compile(key_b + rb"\s*:\s*" + lit))
        )
    return out


#: one field of a delivery, found without parsing (``%`` its quoted key)
_SEQ = rb"%s\s*:\s*(-?\d+)(?![\d.eE])"
_TOPIC = rb'%s\s*:\s*"([^"\\]{0,200})"'
_SENT = rb"%s\s*:\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"


_NOT_MORE_DIGITS = rb"(?![\d.eE])"
#: the value parts of the above (the key spelled as the first delivery had it)
_SEQ_VALUE = rb"(-?\d+)(?![\d.eE])"
_TOPIC_VALUE = rb'([^"\\]{0,200})"'
_SENT_VALUE = rb"(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"


def _key(path: str) -> bytes:
    return re.escape(b'"' + path.encode() + b'"')


def _top(path: str | None) -> bool:
    return path is None or (path.isidentifier() and "." not in path)


class Reader:
    """Reads a message as a delivery: :meth:`read` returns its seq (-1: not a
    delivery) and leaves its :attr:`topic` and :attr:`sent_at` (or None) here
    (no tuple per delivery). The topic is None when the deliveries have no
    ``topic`` path: the subscriber's own (``topics[0]`` or ``"default"``).
    """

    __slots__ = (
        "_combo",
        "_fast",
        "_learned",
        "_match",
        "_match_res",
        "_sent_re",
        "_seq_re",
        "_topic_re",
        "_topics",
        "_where",
        "sent_at",
        "spec",
        "topic",
    )

    def __init__(self, spec: Deliveries) -> None:
        self.spec = spec
        self.topic: str | None = None
        self.sent_at: float | None = None
        self._match = spec.match
        literals = [] if spec.match is None else _flat_literals(spec.match)
        self._fast = literals is not None and all(
            _top(p) for p in (spec.seq, spec.topic, spec.sent_at)
        )
        self._match_res = tuple(literals or ())
        #: topic names as read (bytes -> str), so a delivery decodes none (bounded)
        self._topics: dict[bytes, str] = {}
        self._seq_re = re.compile(_SEQ % _key(spec.seq))
        self._topic_re = None if spec.topic is None else re.compile(_TOPIC % _key(spec.topic))
        self._sent_re = None if spec.sent_at is None else re.compile(_SENT % _key(spec.sent_at))
        #: seq, topic and sent_at in one search, in the order the first delivery
        #: had them (most services write every message alike); None until learned
        self._combo: Any = None
        self._where = (0, -1, -1)  #: their groups' indexes in it (-1: absent)
        self._learned = False

    def read(self, data: bytes, text: bool, values: Mapping[str, Any], rng: random.Random) -> int:
        if data.find(b"{", 1) >= 0:  # an object inside: a key found may be a nested one's
            return self._slow(data, text, values, rng)  # (in an array of scalars, none is)
        combo = self._combo
        if combo is not None and text:
            found = combo(data)  # match literals and fields at once: else as below
            if found is not None:
                groups = found.groups()
                i_seq, i_topic, i_sent = self._where
                seq = int(groups[i_seq])
                if i_topic >= 0:
                    raw = groups[i_topic]
                    name = self._topics.get(raw)
                    if name is None:
                        if not raw:
                            return -1
                        name = self._topic_name(raw)
                    self.topic = name
                self.sent_at = float(groups[i_sent]) if i_sent >= 0 else None
                return seq if 0 <= seq <= MAX_SEQ else -1
        if self._fast and text:
            # A backslash may spell a key or value in escapes the patterns do not
            # read: a message they do not take is parsed when it has one.
            for compact, pattern in self._match_res:
                if (not compact or compact not in data) and pattern.search(data) is None:
                    return self._slow(data, text, values, rng) if b"\\" in data else -1
            found = self._seq_re.search(data)
            if found is None:
                return self._slow(data, text, values, rng) if b"\\" in data else -1
            topic: str | None = None
            if self._topic_re is not None:
                t = self._topic_re.search(data)
                if t is None:
                    return self._slow(data, text, values, rng)  # a non-string topic, say
                raw = t.group(1)
                topic = self._topics.get(raw) or self._topic_name(raw)
            sent_at: float | None = None
            s = None
            if self._sent_re is not None:
                s = self._sent_re.search(data)
                if s is not None:
                    sent_at = float(s.group(1))
            seq = int(found.group(1))
            if not 0 <= seq <= MAX_SEQ or topic == "":
                return -1
            if not self._learned:
                self._learn(data, found, t if self._topic_re is not None else None, s)
            self.topic = topic
            self.sent_at = sent_at
            return seq
        return self._slow(data, text, values, rng)

    def take(
        self,
        data: bytes,
        text: bool,
        values: Mapping[str, Any],
        rng: random.Random,
        sub: Subscription | None,
        fanout: Fanout,
        now_epoch: float,
    ) -> bool:
        """:meth:`read` and :meth:`Fanout.deliver` in one call: is ``data`` a delivery?

        If so it is recorded on ``sub`` (none: counted nowhere) and True is
        returned. A message the learned pattern reads, of the subscription's
        last topic, is recorded here without a further call (the path of
        nearly every delivery: it is most of a subscriber's CPU); any other
        takes :meth:`read` and :meth:`Fanout.deliver`, with the same result.
        """
        combo = self._combo
        if combo is not None and text and sub is not None and data.find(b"{", 1) < 0:
            found = combo(data)
            if found is not None:
                groups = found.groups()
                i_seq, i_topic, i_sent = self._where
                seq = int(groups[i_seq])
                name = self._topics.get(groups[i_topic]) if i_topic >= 0 else sub.default
                if name is not None and name is sub.last and 0 <= seq <= MAX_SEQ:
                    stats = sub.last_stats
                    stats.deliveries += 1
                    fanout.last_at = now_epoch
                    seqs = sub.last_seqs
                    before = seqs.out_of_order
                    if seqs.add(seq) == "duplicate":
                        stats.duplicates += 1
                        return True
                    if seqs.out_of_order != before:
                        stats.out_of_order += 1
                    if i_sent >= 0:
                        latency = int((now_epoch - float(groups[i_sent])) * 1e6)
                        if -MAX_LATENCY_US <= latency <= MAX_LATENCY_US:  # else a garbage sent_at
                            stats.latency.append(latency)
                    return True
        seq = self.read(data, text, values, rng)
        if seq < 0:
            return False
        if sub is not None:
            topic = self.topic
            fanout.deliver(
                sub, sub.default if topic is None else topic, seq, self.sent_at, now_epoch
            )
        return True

    def _topic_name(self, raw: bytes) -> str:
        topic = raw.decode(errors="replace")
        if len(self._topics) < MAX_TOPICS:
            self._topics[raw] = topic
        return topic

    def _learn(self, data: bytes, seq: Any, topic: Any, sent: Any) -> None:
        """Compile one pattern for the match literals and fields as this delivery
        spells them: its keys, colons and short separators verbatim (no ``\\s*``
        to try), its values as groups, longer gaps skipped lazily. A message
        spelled otherwise takes the separate searches."""
        self._learned = True
        if sent is None and self.spec.sent_at is not None:
            return  # a delivery without its sent_at: keep to one search per field
        # (start, end of the key and colon, end, value pattern or None: a literal, name)
        parts: list[tuple[int, int, int, bytes | None, str]] = [
            (seq.start(), seq.start(1), seq.end(), _SEQ_VALUE, "seq")
        ]
        for _, pattern in self._match_res:
            found = pattern.search(data)
            if found is None:  # the compact spelling passed, inside another string
                return
            tail = _NOT_MORE_DIGITS if pattern.pattern.endswith(_NOT_MORE_DIGITS) else b""
            parts.append((found.start(), found.end(), found.end(), tail, ""))
        if topic is not None:
            parts.append((topic.start(), topic.start(1), topic.end(), _TOPIC_VALUE, "topic"))
        if sent is not None:
            parts.append((sent.start(), sent.start(1), sent.end(), _SENT_VALUE, "sent"))
        parts.sort()
        combined, names, at = b"", [], -1
        for start, head, end, value, name in parts:
            if start < at:
                return  # overlapping finds: nothing sensible to learn
            if at >= 0:
                gap = data[at:start]
                combined += re.escape(gap) if len(gap) <= 2 and not gap.strip(b", ") else rb".*?"
            combined += re.escape(data[start:head]) + (value or b"")
            if name:
                names.append(name)
            at = end
        self._combo = re.compile(combined, re.S).search
        where = {name: i for i, name in enumerate(names)}  # their groups
        self._where = (where["seq"], where.get("topic", -1), where.get("sent", -1))

    def _slow(self, data: bytes, text: bool, values: Mapping[str, Any], rng: random.Random) -> int:
        spec = self.spec
        if self._match is not None:
            parsed = self._match.match(data, text, values, rng)
            if parsed is None:
                return -1
        else:
            if not text:
                return -1
            parsed = parse_json(data)
            if parsed is NOT_JSON:
                return -1
        seq = capture(parsed, spec.seq)
        if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
            return -1
        topic: str | None = None
        if spec.topic is not None:
            t = capture(parsed, spec.topic)
            if t is MISSING or isinstance(t, dict | list) or t is None:
                return -1
            topic = (t if isinstance(t, str) else str(t))[:MAX_TOPIC]
            if not topic:
                return -1
        sent_at: float | None = None
        if spec.sent_at is not None:
            s = capture(parsed, spec.sent_at)
            if isinstance(s, int | float) and not isinstance(s, bool):
                sent_at = float(s)
        self.topic = topic
        self.sent_at = sent_at
        return seq


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
    """

    __slots__ = (
        "client",
        "default",
        "ended",
        "every",
        "last",
        "last_seqs",
        "last_stats",
        "subscribed_at",
        "topics",
    )

    def __init__(self, client: int, topics: tuple[str, ...]) -> None:
        self.client = client
        #: the topic of a delivery that names none
        self.default = topics[0] if topics else "default"
        #: no topics declared: subscribed to every topic (its record says so)
        self.every = not topics
        self.subscribed_at: float | None = None
        self.ended = False
        self.topics: dict[str, RangeSet] = {t: RangeSet() for t in topics}
        #: the topic of the last delivery, its seqs and its run figures (the next
        #: delivery is nearly always of the same topic: no lookup then)
        self.last: str | None = None
        self.last_seqs = RangeSet()
        self.last_stats = _Topic()


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


__all__ = ["Fanout", "Reader", "Subscription"]

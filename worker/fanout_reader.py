"""The delivery reader of a subscriber, sans-I/O (issue 16): is a message a delivery?

:class:`Reader` reads a message no pending expect took: does ``match``
accept it, is there an integer at ``seq``, which topic, which ``sent_at``.
:meth:`Reader.take` also records it on the connection's
:class:`wsload.worker.fanout.Subscription` in the same call.

The hot path is one delivery per message per subscriber (issue item 6: at
most 1.5x the CPU of a bare client that only counts messages), so the
common shape is read without ``json.loads``: when the paths are top-level
keys and ``match`` is a flat table of literal values, precompiled byte
regexes find them (a message with a backslash, or any other shape, takes
the parsing path). And a fan-out hands the *same bytes* to every
subscriber of a publication: the last message the learned pattern read is
remembered with what it read, so the next subscriber's copy costs a
comparison of bytes instead of a regex search, an ``int`` and a ``float``
(the reading is a pure function of the bytes on that path); the last
:data:`RECENT` ones are found by their bytes (a broker that falls behind
interleaves the copies of consecutive publications: with one remembered,
a profile showed 12 % of the worker's busy time re-reading them).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from wsload.common.fanout_wire import MAX_TOPIC_LEN, MAX_TOPICS_PER_WINDOW
from wsload.common.match import MISSING, NOT_JSON, SubsetMatcher, capture, parse_json
from wsload.common.program import Deliveries
from wsload.common.rangeset import MAX_SEQ

if TYPE_CHECKING:
    from wsload.worker.fanout import Fanout, Subscription

#: bounds: a hostile or runaway target costs at most this many topics per worker
MAX_TOPICS = MAX_TOPICS_PER_WINDOW
#: a topic name longer than this is cut (it is a key on the wire)
MAX_TOPIC = MAX_TOPIC_LEN
#: messages the reader remembers by their bytes (a fan-out's copies of them),
#: each at most RECENT_BYTES long: at most 256 KiB held
RECENT = 64
RECENT_BYTES = 4096


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
        "_recent",
        "_sent_re",
        "_seq_re",
        "_topic_re",
        "_topics",
        "_unread",
        "_where",
        "memo",
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
        #: the last message the learned pattern read: (its bytes, seq, topic or
        #: None, sent_at or None); a fan-out's next copy is read by comparing bytes
        self.memo: tuple[bytes, int, str | None, float | None] = (b"", 0, None, None)
        #: the messages read lately, by their bytes (bounded: cleared when full):
        #: a broker that falls behind interleaves two or more publications' copies
        self._recent: dict[bytes, tuple[bytes, int, str | None, float | None]] = {}
        #: the last text message :meth:`remember` could not read (read() tries no
        #: learned pattern on it again)
        self._unread: bytes | None = None

    def read(self, data: bytes, text: bool, values: Mapping[str, Any], rng: random.Random) -> int:
        if data.find(b"{", 1) >= 0:  # an object inside: a key found may be a nested one's
            return self._slow(data, text, values, rng)  # (in an array of scalars, none is)
        combo = self._combo
        if combo is not None and text and data is not self._unread:
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
        returned. A message the learned pattern reads (the same bytes as the
        last one: remembered) skips :meth:`read`.
        """
        if text and sub is not None and (data == self.memo[0] or self.remember(data)):
            _, seq, topic, sent_at = self.memo
        else:
            seq = self.read(data, text, values, rng)
            if seq < 0:
                return False
            if sub is None:
                return True
            topic, sent_at = self.topic, self.sent_at
        fanout.deliver(sub, sub.default if topic is None else topic, seq, sent_at, now_epoch)
        return True

    def remember(self, data: bytes) -> bool:
        """Read a text message with the learned pattern into :attr:`memo` (False: it
        does not read it, or its topic is new: :meth:`read` decides). One of the
        last :data:`RECENT` messages read is found by its bytes, not read again."""
        memo = self._recent.get(data)
        if memo is not None:
            self.memo = memo
            return True
        combo = self._combo
        if combo is None or data.find(b"{", 1) >= 0:
            return False
        found = combo(data)
        if found is None:
            self._unread = data
            return False
        groups = found.groups()
        i_seq, i_topic, i_sent = self._where
        seq = int(groups[i_seq])
        name = self._topics.get(groups[i_topic]) if i_topic >= 0 else None
        if (i_topic >= 0 and name is None) or not 0 <= seq <= MAX_SEQ:
            return False
        memo = self.memo = (data, seq, name, float(groups[i_sent]) if i_sent >= 0 else None)
        if len(data) <= RECENT_BYTES:
            recent = self._recent
            if len(recent) >= RECENT:
                recent.clear()
            recent[data] = memo
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


__all__ = ["MAX_TOPIC", "MAX_TOPICS", "Reader"]

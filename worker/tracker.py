"""Which sent message a reply answers, and which never got one.

Each connection keeps its in-flight messages in send order (a dict keyed by
sequence number: insertion order is send order). By default (``match =
"id"``) a reply is matched only by the sequence number found in it (``"seq":
17`` in a JSON reply; the field name is configurable): a message without it,
or with a number this connection never sent, is *unsolicited* -- servers
push heartbeats, presence and broadcasts, and charging those to the oldest
message in flight would report their timing as the service's. Only
``match = "order"`` takes any message as the answer to the oldest one in
flight, for servers that answer in order and never push.

A message is resolved exactly once: answered, timed out, lost with its
connection, or left unanswered at stop.
"""

from __future__ import annotations

import re
from typing import Literal


def id_pattern(field: str) -> re.Pattern[bytes]:
    """Find ``"<field>": <integer>`` in a reply without parsing the whole JSON.

    A regular expression on the raw bytes costs a fraction of ``json.loads``
    on the hot path; it finds the first occurrence of the field at any depth,
    which is the message's own id for the payload templates wsload sends.
    """
    return re.compile(b'"' + re.escape(field.encode()) + rb'"\s*:\s*(\d{1,18})\b')


def unmatched(seq: int, base: int, last: int) -> Literal["late", "unsolicited"]:
    """What a message carrying id ``seq`` is when nothing in flight has that id.

    The connection sent ids ``base + 1 .. last``: one of those was already
    resolved (timed out, or answered before: a duplicate), so the message is
    ``late``; any other id (0, a previous connection's, one not
    sent yet) was never asked for here: ``unsolicited``.
    """
    return "late" if base < seq <= last else "unsolicited"


class InFlight(dict[int, tuple[float, float]]):
    """Messages of one connection awaiting a reply: ``seq -> (intended, sent)``.

    A dict itself, so the engine's per-message path (``inflight[seq] = ...``,
    ``inflight.pop(seq, None)``, ``not inflight``) runs at C speed with no
    method of ours in between.
    """

    __slots__ = ()

    def take(self, seq: int | None) -> tuple[float, float] | None:
        """Resolve the message ``seq`` answers (oldest when ``seq`` is None).

        Returns its ``(intended, sent)`` times, or None when nothing matches
        (a late reply to a message already counted as timed out).
        """
        if seq is not None:
            return self.pop(seq, None)
        if not self:
            return None
        return self.pop(next(iter(self)))

    def expire(self, sent_before: float) -> int:
        """Drop (and count) the messages sent before ``sent_before``; oldest first."""
        expired: list[int] = []
        for seq, (_, sent) in self.items():
            if sent >= sent_before:
                break
            expired.append(seq)
        for seq in expired:
            del self[seq]
        return len(expired)

    def forget(self) -> int:
        """Forget every message in flight; returns how many there were."""
        n = len(self)
        self.clear()
        return n


__all__ = ["InFlight", "id_pattern", "unmatched"]

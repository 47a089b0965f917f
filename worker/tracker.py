"""Which sent message a reply answers, and which never got one.

Each connection keeps its in-flight messages in send order (a dict keyed by
sequence number: insertion order is send order). A reply is matched by the
sequence number found in it (``"seq": 17`` in a JSON reply; the field name
is configurable), and otherwise to the oldest message still in flight (echo
servers answer in order). A message is resolved exactly once: answered,
timed out, lost with its connection, or left unanswered at stop.
"""

from __future__ import annotations

import re


def id_pattern(field: str) -> re.Pattern[bytes]:
    """Find ``"<field>": <integer>`` in a reply without parsing the whole JSON.

    A regular expression on the raw bytes costs a fraction of ``json.loads``
    on the hot path; it finds the first occurrence of the field at any depth,
    which is the message's own id for the payload templates wsload sends.
    """
    return re.compile(b'"' + re.escape(field.encode()) + rb'"\s*:\s*(\d{1,18})\b')


class InFlight:
    """Messages of one connection awaiting a reply: ``seq -> (intended, sent)``."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: dict[int, tuple[float, float]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, seq: int, intended: float, sent: float) -> None:
        self._pending[seq] = (intended, sent)

    def take(self, seq: int | None) -> tuple[float, float] | None:
        """Resolve the message ``seq`` answers (oldest when ``seq`` is None).

        Returns its ``(intended, sent)`` times, or None when nothing matches
        (a late reply to a message already counted as timed out).
        """
        pending = self._pending
        if seq is not None:
            return pending.pop(seq, None)
        if not pending:
            return None
        return pending.pop(next(iter(pending)))

    def expire(self, sent_before: float) -> int:
        """Drop (and count) the messages sent before ``sent_before``; oldest first."""
        pending = self._pending
        expired: list[int] = []
        for seq, (_, sent) in pending.items():
            if sent >= sent_before:
                break
            expired.append(seq)
        for seq in expired:
            del pending[seq]
        return len(expired)

    def clear(self) -> int:
        """Forget every message in flight; returns how many there were."""
        n = len(self._pending)
        self._pending.clear()
        return n

    def oldest_sent(self) -> float | None:
        """Send time of the oldest message in flight (the next to time out)."""
        for _, sent in self._pending.values():
            return sent
        return None


__all__ = ["InFlight", "id_pattern"]

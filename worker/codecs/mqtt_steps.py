"""MQTT step tables: a step's rendered ``send``/``subscribe``/``unsubscribe`` values, checked.

Kept apart from :mod:`wsload.worker.codecs.mqtt` (the connection's state)
so that module stays readable: these read what a template rendered (the
language checked the table's shape before the run; a template can still
render a wrong type) and raise :class:`CodecInputError` for what cannot be
sent, the step's ``bad_step_value``.
"""

from __future__ import annotations

from typing import Any

from wsload.worker.codecs.base import CodecInputError, dumps


def topics(value: Any) -> list[str]:
    """A subscribe's or unsubscribe's topic filters: one text or a list of texts."""
    topic = value.get("topic")
    found = [topic] if isinstance(topic, str) else topic
    if not isinstance(found, list) or not found:
        raise CodecInputError(f"topic must be a string or a list of strings, got {topic!r}")
    for t in found:
        if not isinstance(t, str) or not t:
            raise CodecInputError(f"topic must be a non-empty string, got {t!r}")
    return found


def qos(value: Any, highest: int, why: str = "is not supported for a publish (0 or 1)") -> int:
    """The table's ``qos`` (0 by default), at most ``highest`` (``why`` says why not)."""
    level = value.get("qos", 0)
    if isinstance(level, str) and level.isdigit():
        level = int(level)
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 2:
        raise CodecInputError(f"qos must be 0, 1 or 2, got {level!r}")
    if level > highest:
        raise CodecInputError(f"qos {level} {why}")
    return level


def payload(value: Any) -> bytes:
    """A publish's payload: text as UTF-8, bytes as they are, anything else as JSON."""
    given = value.get("payload", "")
    if isinstance(given, str):
        return given.encode()
    if isinstance(given, bytes):
        return given
    try:
        return dumps(given).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise CodecInputError(f"payload is not JSON: {exc}") from None


__all__ = ["payload", "qos", "topics"]

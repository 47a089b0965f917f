"""What the server says, sans-I/O: replies to ``/ws`` frames and the events API's messages.

Kept apart from the sockets so the rules (what is a ping, what a
subscription, what a valid ``POST /api/events`` body) read in one place and
can be checked without a server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

ALL_EVENTS = "*"
MAX_EVENTS_PER_CALL = 10_000
MAX_EVENT_NAME = 200

#: The counter (see :mod:`wsload.testserver.stats`) a reply is counted in once sent.
ReplyKind = Literal["echoes_sent", "pongs_sent", "acks_sent"]

PONG = '{"type": "pong"}'


@dataclass(frozen=True)
class Reply:
    """The answer to one received frame: its payload (str = text frame) and its kind."""

    data: str | bytes
    kind: ReplyKind


class BadRequest(ValueError):
    """A ``POST /api/events`` body the server refuses; the message is the reason."""


@dataclass(frozen=True)
class Publish:
    """A valid ``POST /api/events`` request."""

    event: str
    data: Any
    count: int


def answer(frame: str | bytes, subscriptions: set[str]) -> Reply:
    """The reply to one data frame; a subscription also updates ``subscriptions``.

    ``{"type": "ping"}`` gets ``{"type": "pong"}``; ``{"type": "subscribe",
    "events": [names]}`` adds those names (``"*"``, or no ``events`` at all,
    means every event) and is acknowledged with the full set; everything else,
    binary frames and invalid JSON included, is echoed unchanged. Only text
    starting with ``{`` is parsed, so echoing plain text costs no JSON work.
    """
    if isinstance(frame, bytes) or frame.lstrip()[:1] != "{":
        return Reply(frame, "echoes_sent")
    try:
        message = json.loads(frame)
    except (ValueError, RecursionError):
        return Reply(frame, "echoes_sent")
    kind = message.get("type") if isinstance(message, dict) else None
    if kind == "ping":
        return Reply(PONG, "pongs_sent")
    if kind == "subscribe":
        names = _event_names(message.get("events"))
        if names is not None:
            subscriptions.update(names)
            ack = {"type": "subscribed", "events": sorted(subscriptions)}
            return Reply(json.dumps(ack), "acks_sent")
    return Reply(frame, "echoes_sent")


def _event_names(events: object) -> list[str] | None:
    """The names a subscription asks for, or None when ``events`` is malformed."""
    if events is None:
        return [ALL_EVENTS]
    if isinstance(events, list) and all(isinstance(e, str) and e for e in events):
        return list(events)
    return None


def wants(subscriptions: set[str], event: str) -> bool:
    """Whether a connection with these subscriptions receives ``event``."""
    return event in subscriptions or ALL_EVENTS in subscriptions


def parse_publish(body: bytes) -> Publish:
    """Validate a ``POST /api/events`` body: ``{"event": NAME, "data": ..., "count": N}``.

    Raises :class:`BadRequest` with a one-line reason. NaN and Infinity are
    refused because the events built from ``data`` must stay valid JSON for
    every client.
    """
    try:
        parsed = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise BadRequest("body must be a JSON object")
    event = parsed.get("event")
    if not isinstance(event, str) or not event or len(event) > MAX_EVENT_NAME:
        raise BadRequest(f"'event' must be a non-empty string of at most {MAX_EVENT_NAME} chars")
    count = parsed.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int):
        raise BadRequest("'count' must be an integer")
    if not 1 <= count <= MAX_EVENTS_PER_CALL:
        raise BadRequest(f"'count' must be 1..{MAX_EVENTS_PER_CALL}, got {count}")
    return Publish(event, parsed.get("data"), count)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def event_message(publish: Publish, seq: int, event_id: str, sent_at: float) -> str:
    """One event as delivered: ``seq`` (1..count) and ``id`` let a client spot
    duplicates and reordering, ``sent_at`` (Unix time) measure delivery latency."""
    return json.dumps(
        {
            "type": "event",
            "event": publish.event,
            "data": publish.data,
            "seq": seq,
            "id": event_id,
            "sent_at": sent_at,
        }
    )


__all__ = [
    "ALL_EVENTS",
    "MAX_EVENTS_PER_CALL",
    "BadRequest",
    "Publish",
    "Reply",
    "ReplyKind",
    "answer",
    "event_message",
    "parse_publish",
    "wants",
]

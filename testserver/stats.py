"""The test server's own counters: the ground truth a load run is compared with.

Definitions (each counted at the moment it happens on the socket):

- ``connections_opened`` WebSocket handshakes completed; ``connections_open`` open now;
- ``messages_received`` data frames received on ``/ws`` (every kind);
- ``messages_sent`` data frames sent on ``/ws``: ``echoes_sent`` + ``pongs_sent``
  + ``acks_sent`` + ``events_delivered``;
- ``dropped`` received messages that got no reply on purpose (``--drop-rate``),
  event deliveries lost on purpose (the same flag), plus replies that could
  not be sent because the connection had closed;
- ``events_published`` events triggered through ``POST /api/events``;
- ``bytes_received`` / ``bytes_sent`` payload bytes of those frames.

So for an echo load: ``messages_received == echoes_sent + dropped`` once
every reply has gone out.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field


@dataclass
class ServerStats:
    connections_opened: int = 0
    connections_open: int = 0
    messages_received: int = 0
    messages_sent: int = 0
    echoes_sent: int = 0
    pongs_sent: int = 0
    acks_sent: int = 0
    events_published: int = 0
    events_delivered: int = 0
    dropped: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    started: float = field(default_factory=time.monotonic)

    def snapshot(self) -> dict[str, float | int]:
        out: dict[str, float | int] = asdict(self)
        out.pop("started")
        out["uptime"] = round(time.monotonic() - self.started, 3)
        return out

    def reset(self) -> None:
        """Zero every counter except the gauge of open connections."""
        open_now = self.connections_open
        started = self.started
        fresh = ServerStats()
        self.__dict__.update(fresh.__dict__)
        self.connections_open = open_now
        self.started = started


__all__ = ["ServerStats"]

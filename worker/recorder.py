"""Run counters and the current window of latency samples, for one worker.

Clients bump plain integer attributes and append to ``array('I')`` buffers
(a few tens of nanoseconds each); every ~250 ms :meth:`Recorder.take_window`
hands the window over as a :class:`WindowBatch`: counter *deltas* since the
previous window, and the packed samples (little-endian uint32 microseconds,
the wire format of :class:`common.protocol.Samples`). Counters are only ever
cumulative, so the sum of all windows equals the run totals by construction.

Accounting: ``sent = received + timed_out + lost + unanswered``, where
``lost`` are messages in flight on a connection that closed abnormally and
``unanswered`` those still in flight when the run stopped. ``late`` counts
replies that arrived after their message had timed out (not received twice).
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass, field

from common.protocol import SAMPLE_COUNTERS

COUNTERS = SAMPLE_COUNTERS

_LITTLE = sys.byteorder == "little"


@dataclass(frozen=True)
class WindowBatch:
    """One window of a worker's measurements, ready to go on the wire."""

    seq: int
    window_start: float
    window_end: float
    counters: dict[str, int]
    errors: dict[str, int]
    latency: bytes
    service: bytes
    connect: bytes
    final: bool = False


@dataclass
class Recorder:
    """Cumulative counters plus the samples of the window in progress.

    ``clients_connected`` is a gauge (connections open now); its window value
    is the change since the last window, so summing windows still gives the
    current value.
    """

    sent: int = 0
    received: int = 0
    timed_out: int = 0
    lost: int = 0
    unanswered: int = 0
    late: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    connects: int = 0
    connect_failures: int = 0
    reconnects: int = 0
    disconnects: int = 0
    clients_connected: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency: array[int] = field(default_factory=lambda: array("I"))
    service: array[int] = field(default_factory=lambda: array("I"))
    connect: array[int] = field(default_factory=lambda: array("I"))
    _seq: int = 0
    _last_counters: dict[str, int] = field(default_factory=dict)
    _last_errors: dict[str, int] = field(default_factory=dict)
    _window_start: float = 0.0

    def error(self, kind: str) -> None:
        """Count one failure of ``kind`` (``refused``, ``http_503``, ``timeout``...)."""
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def reply(self, latency_us: int, service_us: int) -> None:
        """Record one answered message: latency from intended and from actual send."""
        self.received += 1
        try:  # the common case: both fit uint32 (a negative or huge value raises)
            self.latency.append(latency_us)
            self.service.append(service_us)
        except OverflowError:
            self._clamped(latency_us, service_us)

    def _clamped(self, latency_us: int, service_us: int) -> None:
        if len(self.latency) == len(self.service):  # the latency did not go in either
            self.latency.append(_clamp(latency_us))
        self.service.append(_clamp(service_us))

    def connected(self, connect_us: int) -> None:
        self.connects += 1
        self.clients_connected += 1
        self.connect.append(_clamp(connect_us))

    def totals(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTERS}

    def start_window(self, now: float) -> None:
        self._window_start = now

    def take_window(self, now: float, *, final: bool = False) -> WindowBatch:
        """Hand over everything recorded since the previous window."""
        totals = self.totals()
        deltas = {k: v - self._last_counters.get(k, 0) for k, v in totals.items()}
        errors = {k: v - self._last_errors.get(k, 0) for k, v in self.errors.items()}
        batch = WindowBatch(
            seq=self._seq,
            window_start=self._window_start,
            window_end=now,
            counters={k: v for k, v in deltas.items() if v},
            errors={k: v for k, v in errors.items() if v},
            latency=_pack(self.latency),
            service=_pack(self.service),
            connect=_pack(self.connect),
            final=final,
        )
        self._seq += 1
        self._last_counters = totals
        self._last_errors = dict(self.errors)
        self._window_start = now
        self.latency = array("I")
        self.service = array("I")
        self.connect = array("I")
        return batch


def _clamp(value: int) -> int:
    return min(max(value, 0), 0xFFFFFFFF)


def _pack(samples: array[int]) -> bytes:
    if not _LITTLE:  # pragma: no cover - the wire is little-endian
        samples = array("I", samples)
        samples.byteswap()
    return samples.tobytes()


__all__ = ["COUNTERS", "Recorder", "WindowBatch"]

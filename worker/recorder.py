"""Run counters and the current window of latency samples, for one worker.

Clients bump plain integer attributes and append to ``array('I')`` buffers
(a few tens of nanoseconds each); every ~250 ms :meth:`Recorder.take_window`
hands the window over as a :class:`WindowBatch`: counter *deltas* since the
previous window, and the packed samples (little-endian uint32 microseconds,
the wire format of :class:`wsload.common.protocol.Samples`). Counters are only ever
cumulative, so the sum of all windows equals the run totals by construction.

Accounting: ``expected = received + timed_out + failed + lost + unanswered``
(the echo load awaits one reply per message: ``expected == sent``), where
``lost`` are messages in flight on a connection that closed abnormally and
``unanswered`` those still in flight when the run stopped. Outside the
identity: ``late`` counts replies to a message already resolved (timed out,
or answered before: a duplicate), never received twice; ``unsolicited``
messages that answer nothing (no id, or an id never sent: a push);
``behind_schedule`` messages that went out later than intended (the
generator, or a paused connection, held them); ``cpu_ms`` this worker
process's CPU time during the run, sampled when a window is taken so that
the windows still sum to the totals. A conversation also keeps per-step and
per-scenario counters (:class:`wsload.worker.steprec.StepRecorder`), taken
with the same window.
"""

from __future__ import annotations

import sys
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from wsload.common.fanout_wire import FanoutWindow
from wsload.common.protocol import SAMPLE_COUNTERS
from wsload.worker.fanout import Fanout
from wsload.worker.steprec import StepBatch, StepRecorder

COUNTERS = SAMPLE_COUNTERS
#: Bounds of :attr:`Recorder.error_texts`: a hostile peer's error messages cost
#: at most this many kinds of at most this many characters.
MAX_ERROR_TEXTS = 32
MAX_ERROR_TEXT = 200

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
    #: a conversation's steps (step name -> its share of the window) and
    #: scenarios (name -> ``unsolicited``/``iterations`` deltas); empty for the echo load
    steps: dict[str, StepBatch] = field(default_factory=dict)
    scenarios: dict[str, dict[str, int]] = field(default_factory=dict)
    #: deliveries and publications (:meth:`wsload.worker.fanout.Fanout.take`); None: nothing new
    fanout: FanoutWindow | None = None


#: windows whose delivery latency the drain's wait reads (2 s of 0.25 s windows)
LAG_WINDOWS = 8
#: latency samples looked at per topic and window
LAG_SAMPLES = 16


@dataclass
class Recorder:
    """Cumulative counters plus the samples of the window in progress.

    ``clients_connected`` is a gauge (connections open now); its window value
    is the change since the last window, so summing windows still gives the
    current value.
    """

    sent: int = 0
    expected: int = 0
    received: int = 0
    timed_out: int = 0
    failed: int = 0
    lost: int = 0
    unanswered: int = 0
    late: int = 0
    unsolicited: int = 0
    behind_schedule: int = 0
    write_pauses: int = 0
    cpu_ms: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    connects: int = 0
    connect_failures: int = 0
    reconnects: int = 0
    disconnects: int = 0
    clients_connected: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    #: the first text of each error kind (bounded), to say *why* a run failed
    error_texts: dict[str, str] = field(default_factory=dict)
    #: CPU seconds of this process (``time.process_time``; a fake in tests)
    cpu_clock: Callable[[], float] = time.process_time
    latency: array[int] = field(default_factory=lambda: array("I"))
    service: array[int] = field(default_factory=lambda: array("I"))
    connect: array[int] = field(default_factory=lambda: array("I"))
    #: a conversation's per-step and per-scenario stats (:mod:`wsload.worker.steprec`)
    steps: StepRecorder = field(default_factory=StepRecorder)
    #: a publish/subscribe load's deliveries and publications (issue 16)
    fanout: Fanout = field(default_factory=Fanout)
    #: recent windows' delivery latencies (µs, the largest of a few spread samples
    #: each): how long after a publication its deliveries still come, for the drain
    delivery_lags: deque[int] = field(default_factory=lambda: deque(maxlen=LAG_WINDOWS))
    _seq: int = 0
    _last_counters: dict[str, int] = field(default_factory=dict)
    _last_errors: dict[str, int] = field(default_factory=dict)
    _window_start: float = 0.0
    _cpu_base: float | None = None

    def error(self, kind: str, text: str = "") -> None:
        """Count one failure of ``kind`` (``refused``, ``http_503``, ``timeout``...).

        The first ``text`` of each kind is kept (truncated, for at most
        :data:`MAX_ERROR_TEXTS` kinds), so a summary can name the cause
        (``dns: svc: Name or service not known``) without keeping every one.
        """
        self.errors[kind] = self.errors.get(kind, 0) + 1
        texts = self.error_texts
        if text and kind not in texts and len(texts) < MAX_ERROR_TEXTS:
            texts[kind] = text[:MAX_ERROR_TEXT]

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
        """Open the first window; CPU time counts from here."""
        self._window_start = now
        self._cpu_base = self.cpu_clock()

    def _sample_cpu(self) -> None:
        if self._cpu_base is None:
            self._cpu_base = self.cpu_clock()
        # Never decreasing, so a window's delta is never negative.
        self.cpu_ms = max(self.cpu_ms, int((self.cpu_clock() - self._cpu_base) * 1000))

    def take_window(self, now: float, *, final: bool = False) -> WindowBatch:
        """Hand over everything recorded since the previous window."""
        self._sample_cpu()
        totals = self.totals()
        deltas = {k: v - self._last_counters.get(k, 0) for k, v in totals.items()}
        errors = {k: v - self._last_errors.get(k, 0) for k, v in self.errors.items()}
        steps, scenarios = self.steps.take()
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
            steps=steps,
            scenarios=scenarios,
            fanout=self._take_fanout(),
        )
        self._seq += 1
        self._last_counters = totals
        self._last_errors = dict(self.errors)
        self._window_start = now
        self.latency = array("I")
        self.service = array("I")
        self.connect = array("I")
        return batch

    def _take_fanout(self) -> FanoutWindow | None:
        window = self.fanout.take()
        if window is not None and window.latency:
            lag = 0
            for samples in window.latency.values():  # a few of each: O(1) per window
                n = len(samples)
                if n:
                    lag = max(lag, int(max(samples[:: max(1, n // LAG_SAMPLES)])))
            self.delivery_lags.append(lag)
        return window


def _clamp(value: int) -> int:
    return min(max(value, 0), 0xFFFFFFFF)


def _pack(samples: array[int]) -> bytes:
    if not _LITTLE:  # pragma: no cover - the wire is little-endian
        samples = array("I", samples)
        samples.byteswap()
    return samples.tobytes()


__all__ = ["COUNTERS", "MAX_ERROR_TEXT", "MAX_ERROR_TEXTS", "Recorder", "WindowBatch"]

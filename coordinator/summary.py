"""``RunSummary``: the one frozen, typed value a load run ends with.

The coordinator builds it once (:func:`wsload.coordinator.loadrun.conclude`); every
output renders from it (text, JSON, CSV, JUnit, HDR log, HTML) and the
thresholds are measured on it (:meth:`RunFigures.metric`), so no output or
rule reads a figure by a string key of its own. Four parts, each frozen:

- :class:`~wsload.coordinator.figures.RunFigures`: what was measured
  (:meth:`RunAggregate.figures <coordinator.aggregate.RunAggregate.figures>`);
- :class:`RunEnding`: how the run ended (lost workers, abort, interruption,
  handovers), from the run's outcome;
- :class:`RunParameters` and :class:`Verdict`: what was asked, and the
  judgement (:func:`wsload.coordinator.verdict.judge`).

:meth:`RunSummary.to_json` is the JSON document users and tests read; its
keys and their order are those of the dict it replaced (pinned by
``tests/unit/test_outputs.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wsload.coordinator.figures import RunFigures, frozen_map


@dataclass(frozen=True)
class Handover:
    """A lost worker's clients handed on to another worker."""

    origin: str
    to: str
    clients: int
    first_client: int

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.origin,
            "to": self.to,
            "clients": self.clients,
            "first_client": self.first_client,
        }


@dataclass(frozen=True)
class RunEnding:
    """How the run ended: the parts of the outcome the figures do not say."""

    bad_input: Mapping[str, int] = field(default_factory=frozen_map)
    lost_workers: tuple[str, ...] = ()
    aborted: str = ""
    interrupted: bool = False
    interrupted_by: str = ""  # the signal's name: SIGINT, SIGTERM
    handovers: tuple[Handover, ...] = ()
    clients_orphaned: int = 0
    refused: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "bad_input": dict(self.bad_input),
            "lost_workers": list(self.lost_workers),
            "aborted": self.aborted,
            "interrupted": self.interrupted,
            "interrupted_by": self.interrupted_by,
            "handovers": [h.to_json() for h in self.handovers],
            "clients_orphaned": self.clients_orphaned,
        }


@dataclass(frozen=True)
class RunParameters:
    """What the run was asked to do; no secret (credentials show as ``***``; subprotocols,
    which may carry a token, are left out)."""

    target: str
    clients: int
    rate: float | None
    interval: float | None
    duration: float
    ramp_up: float
    engine: str
    match: str
    workers: int
    headers: tuple[tuple[str, str], ...]
    started_at: str  # ISO 8601, UTC
    wsload_version: str
    #: the scenario file as given (None: options only)
    scenario: str | None = None
    #: a conversation's feeder: ``{"file", "mode", "rows"}`` (rows in the whole file)
    feeder: Mapping[str, Any] | None = None
    #: ``[[stages]]``: ``{"count", "duration", "peak_clients"}``
    stages: Mapping[str, Any] | None = None
    #: a conversation's scenarios in order: ``(name, clients)`` (clients None: not known)
    scenarios: tuple[tuple[str, int | None], ...] = ()
    #: the run's start to the microsecond (Unix time, seconds; None: not known): second
    #: ``s`` of the time series begins at ``started_at_unix + s``
    started_at_unix: float | None = None
    #: the timeouts, in seconds (None: not known, for a summary built by hand)
    connect_timeout: float | None = None
    reply_timeout: float | None = None
    drain_timeout: float | None = None
    #: the echo load's padded payload size in bytes (0: the payload as given)
    payload_size: int | None = None
    #: whether a client reconnects after its connection ends
    reconnect: bool | None = None
    compression: bool | None = None
    #: a conversation's protocol by name (``socketio``, ``mqtt`` ...; None: raw messages)
    protocol: str | None = None
    #: the thresholds as given (their results are the document's ``thresholds``)
    thresholds: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "clients": self.clients,
            "rate": self.rate,
            "interval": self.interval,
            "duration": self.duration,
            "ramp_up": self.ramp_up,
            "engine": self.engine,
            "match": self.match,
            "workers": self.workers,
            "headers": [list(pair) for pair in self.headers],
            "started_at": self.started_at,
            "wsload_version": self.wsload_version,
            "scenario": self.scenario,
            "feeder": None if self.feeder is None else dict(self.feeder),
            "stages": None if self.stages is None else dict(self.stages),
            "scenarios": [{"name": n, "clients": c} for n, c in self.scenarios],
            "started_at_unix": self.started_at_unix,
            "connect_timeout": self.connect_timeout,
            "reply_timeout": self.reply_timeout,
            "drain_timeout": self.drain_timeout,
            "payload_size": self.payload_size,
            "reconnect": self.reconnect,
            "compression": self.compression,
            "protocol": self.protocol,
            "thresholds": list(self.thresholds),
        }


@dataclass(frozen=True)
class ThresholdResult:
    """One threshold, its measured value (None without data), as shown, and whether it passed."""

    threshold: str
    measured: float | None
    shown: str
    passed: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "measured": self.measured,
            "shown": self.shown,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class Verdict:
    """How a run ended, why, and the exit code that says it (:mod:`wsload.coordinator.verdict`).

    ``reasons`` are one line each, most important first.
    """

    code: int
    status: str
    reasons: tuple[str, ...] = ()
    thresholds: tuple[ThresholdResult, ...] = ()

    @property
    def passed(self) -> bool:
        return self.code == 0

    @property
    def nothing_tested(self) -> str | None:
        """The "nothing tested" reason, when the run tested nothing."""
        return next((r for r in self.reasons if r.startswith("nothing tested")), None)

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "status": self.status, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class RunSummary:
    """A finished load run: figures, ending, parameters, verdict; what every output shows."""

    figures: RunFigures
    ending: RunEnding
    parameters: RunParameters
    verdict: Verdict

    @property
    def passed(self) -> bool:
        return self.verdict.passed

    def to_json(self) -> dict[str, Any]:
        """The JSON document (without ``schema_version``, which the writer adds)."""
        return {
            **self.figures.to_json(),
            **self.ending.to_json(),
            "engine": self.parameters.engine,
            "parameters": self.parameters.to_json(),
            "thresholds": [t.to_json() for t in self.verdict.thresholds],
            "nothing_tested": self.verdict.nothing_tested,
            "verdict": self.verdict.to_json(),
            "passed": self.verdict.passed,
        }


__all__ = [
    "Handover",
    "RunEnding",
    "RunParameters",
    "RunSummary",
    "ThresholdResult",
    "Verdict",
]

"""Event mode as a job of the engine: the seed's ``WebSocketEventTester`` at small scale.

The event options compile into a load workload of the fan-out machinery
(:mod:`wsload.coordinator.event_job`), which :func:`run_event` runs like any
load job, on one local worker (as the other check modes run), stopping it
once it has what it waits for (:class:`_Watch`). The checks the event mode
always printed -- connect, subscribe, trigger NAME, deliveries -- and its
counts are judged here, on the coordinator, from the run's fan-out figures
(:func:`judge`, sans-I/O).

One trigger is ``event_count`` events (seq 1..count) but the step language
records one publication per request, so :func:`owe_whole_triggers` adds
seqs 2..count at the time of seq 1 before the ledger joins. A trigger the
API refused still owes its events, as the event mode always said: all of
them count missing, listed by client.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wsload.common.fanout_wire import MAX_TOPIC_LEN, FanoutWindow
from wsload.common.mix import assign
from wsload.common.spec import JobSpec
from wsload.common.validation import display_url
from wsload.common.workload import compile_workload
from wsload.coordinator.aggregate import RunAggregate
from wsload.coordinator.event_job import ACK_STEP, event_job, settle, topics, trigger_url
from wsload.coordinator.fanout import FanoutLedger
from wsload.coordinator.fanout_figures import FanoutFigures
from wsload.coordinator.loadrun import conclude
from wsload.coordinator.runner import run_session
from wsload.coordinator.session import RunOutcome, SessionOptions
from wsload.coordinator.summary import RunSummary

PASS, FAIL = "pass", "fail"
#: Missing events listed by client, name and seq.
MAX_LISTED_MISSING = 200
#: The stop reason of a run that has everything it waited for (not a failure).
_DONE = "event test complete"


def triggered_topics(ledger: FanoutLedger, spec: JobSpec) -> list[str]:
    """The event names whose trigger published (was answered 2xx)."""
    out = []
    for name in topics(spec):
        topic = ledger.topics.get(name)
        if topic is not None and any(s.size for s, _, _ in topic.pubs):
            out.append(name)
    return out


def owe_whole_triggers(ledger: FanoutLedger, spec: JobSpec) -> None:
    """Each trigger is ``event_count`` publications: add seqs 2..count at seq 1's time.

    A trigger that was never answered 2xx published nothing; the event mode
    owes its events all the same (at the latest subscription's start, so
    every subscriber is owed them).
    """
    count = spec.event_count
    for name in topics(spec):
        topic = ledger.topics.get(name)
        pubs = [(s, t, w) for s, t, w in topic.pubs if s.size] if topic else []
        if pubs:
            first = min(int(t.min()) for _, t, _ in pubs)
            worker = pubs[0][2]
            seqs = np.arange(2, count + 1, dtype=np.int64)
        else:
            starts = topic.starts if topic else []
            first = max(starts) if starts else 0
            worker = topic.sub_workers[0] if topic and topic.sub_workers else ""
            seqs = np.arange(1, count + 1, dtype=np.int64)
        if seqs.size:
            times = np.full(seqs.size, first, dtype=np.int64)
            ledger.add(worker, FanoutWindow(pubs={name: (seqs, times)}))


@dataclass(frozen=True)
class EventRun:
    """What the judge reads of one event run (plain values: :func:`judge` is sans-I/O)."""

    #: the fan-out figures, triggers made whole, up to MAX_LISTED_MISSING missing listed
    fanout: FanoutFigures
    #: the topics whose trigger was answered 2xx (before :func:`owe_whole_triggers`)
    triggered: frozenset[str]
    connects: int = 0
    connect_failures: int = 0
    connect_time: float = 0.0
    #: subscriptions the server acknowledged, and the slowest acknowledgement (s)
    acks: int = 0
    ack_time: float = 0.0
    errors: Mapping[str, int] = field(default_factory=dict)
    error_texts: Mapping[str, str] = field(default_factory=dict)
    worker: str = ""
    lost_workers: tuple[str, ...] = ()
    interrupted: bool = False
    interrupted_by: str = ""

    @classmethod
    def of(
        cls, summary: RunSummary, fanout: FanoutFigures, triggered: frozenset[str], worker: str
    ) -> EventRun:
        """The values of a load run's summary (``fanout``: the ledger's longer listing)."""
        figures = summary.figures
        ack = figures.step(ACK_STEP)
        return cls(
            fanout=fanout,
            triggered=triggered,
            connects=figures.counters.connects,
            connect_failures=figures.counters.connect_failures,
            connect_time=figures.connect_time.get("max") or 0.0,
            acks=ack.counters.met if ack is not None else 0,
            ack_time=(ack.latency.get("max") if ack is not None else None) or 0.0,
            errors=figures.errors,
            error_texts=figures.error_texts,
            worker=worker,
            lost_workers=summary.ending.lost_workers,
            interrupted=summary.ending.interrupted,
            interrupted_by=summary.ending.interrupted_by,
        )


def _label(spec: JobSpec) -> Callable[[int], str]:
    """Job-wide client number -> the event mode's name of that subscriber."""
    job = event_job(spec)
    programs = compile_workload(job).programs
    assignment = assign(programs, job.num_clients)

    def label(g: int) -> str:
        try:
            p, rank = assignment.locate(g)
        except IndexError:
            return f"client-{g}"
        return f"event-client-{rank}" if p == 0 else f"client-{g}"

    return label


def _check(name: str, ok: bool, reason: str, duration: float = 0.0) -> dict[str, Any]:
    return {"name": name, "status": PASS if ok else FAIL, "reason": reason, "duration": duration}


def judge(spec: JobSpec, run: EventRun) -> dict[str, Any]:
    """The event mode's results (the seed's keys and checks) from a run's fan-out figures."""
    fanout = run.fanout
    n = spec.num_clients
    names = topics(spec)
    planned = n * len(names) * spec.event_count
    total = fanout.total
    received = total.delivered + total.early + total.extra + total.untracked
    connects = run.connects
    clients = n + len(spec.event_names)
    checks = []
    if connects < clients:
        first = next(iter(run.error_texts.values()), "") or ", ".join(run.errors)
        reason = (
            f"{clients - connects} of {clients} clients ({n} subscribers, "
            f"{clients - n} triggers' publishers) could not connect: {first}"
        )
        checks.append(_check("connect", False, reason))
        return _document(spec, run, checks, planned, received, 0, [], fanout)
    failed = run.connect_failures
    note = f" ({failed} attempts failed first)" if failed else ""
    checks.append(_check("connect", True, f"{n} clients connected{note}", run.connect_time))
    by_topic = {t.name: t for t in fanout.topics}
    late = sum(
        n * spec.event_count - by_topic[t].expected for t in names if t in by_topic
    )  # publications made before a subscriber had subscribed (not owed to it)
    subscribed = f"subscribed to {', '.join(spec.event_names)} ({run.acks} of {n} acknowledged)"
    if late > 0:
        reason = (
            f"{late} events were triggered while their client was not subscribed (not yet, "
            f"or its connection had closed): not owed to it; {subscribed}"
        )
        checks.append(_check("subscribe", False, reason, run.ack_time))
    else:
        checks.append(_check("subscribe", True, subscribed, run.ack_time))
    url = display_url(trigger_url(spec))  # credentials in api_url are sent, never shown
    method = spec.event_method.upper()
    for i, name in enumerate(spec.event_names, 1):
        if name[:MAX_TOPIC_LEN] in run.triggered:
            checks.append(_check(f"trigger {name}", True, f"{method} {url} -> 2xx"))
        else:
            why = _trigger_failure(run, f"trigger {i}", method, url)
            checks.append(_check(f"trigger {name}", False, why))
    missing_count = total.missing
    listed = sorted(fanout.missing_sample, key=lambda m: (m.client, names.index(m.topic)
                    if m.topic in names else len(names), m.seq))  # fmt: skip
    label = _label(spec)
    missing = [f"{label(m.client)}: {m.topic} #{m.seq}" for m in listed][:MAX_LISTED_MISSING]
    expected = total.expected
    dupes = total.duplicates
    if missing_count or dupes or expected - received:
        lost = expected - received
        shown = ", ".join(missing[:5])
        reason = f"{lost} of {expected} events missing ({shown}"
        reason += ", ...)" if lost > 5 else ")"
        if dupes:
            reason += f"; {dupes} duplicates"
        checks.append(_check("deliveries", False, reason))
    else:
        checks.append(_check("deliveries", True, f"all {expected} events delivered once"))
    return _document(spec, run, checks, expected, received, missing_count, missing, fanout)


def _trigger_failure(run: EventRun, step: str, method: str, url: str) -> str:
    """Why a trigger published nothing: its post's error kind and text.

    Each kind keeps its first text (``"trigger N: ..."``): the kind this
    trigger's step gave it, else the first kind a post gives.
    """
    posts = [k for k in run.errors if k.startswith("http_") or k in ("timeout", "refused")]
    mine = [k for k in posts if run.error_texts.get(k, "").startswith(f"{step}: ")]
    for kind in mine or posts:
        text = run.error_texts.get(kind, "")
        detail = text.split(": ", 1)[1] if ": " in text else text
        if kind.startswith("http_"):
            return f"{method} {url} answered {kind.removeprefix('http_')}: {detail[:120]}"
        return f"{method} {url} failed ({kind}): {detail[:120]}"
    return f"{method} {url} was not answered 2xx"


def _document(
    spec: JobSpec,
    run: EventRun,
    checks: list[dict[str, Any]],
    expected: int,
    received: int,
    missing_count: int,
    missing: Sequence[str],
    fanout: FanoutFigures,
) -> dict[str, Any]:
    interrupted = run.interrupted
    latency = {k: float(v or 0.0) for k, v in fanout.total.latency.to_json().items()}
    return {
        "mode": "event",
        "ok": all(c["status"] != FAIL for c in checks) and not interrupted,
        "worker": run.worker,
        "total_expected": expected,
        "total_received": received,
        "success_rate": 100.0 * received / expected if expected else 0.0,
        "duplicates": fanout.total.duplicates,
        "out_of_order": fanout.total.out_of_order,
        "latency_percentiles": latency,
        "missing_count": missing_count,
        "missing": list(missing),
        "clients": spec.num_clients,
        "checks": checks,
        "lost_workers": list(run.lost_workers),
        "interrupted": interrupted,
        "interrupted_by": run.interrupted_by,
    }


class _Watch:
    """Stops the run once it has what it waits for (checked once a second).

    Once every trigger is answered (2xx, or an HTTP error): when every event
    owed has come, or ``event_wait`` seconds later. A trigger never answered
    (a timeout, a refused connection) leaves the run to its duration's end.
    Clients still not connected ``connect_timeout`` after the start: now.
    """

    def __init__(self, spec: JobSpec) -> None:
        self.names = topics(spec)
        self.triggers = len(spec.event_names)
        self.clients = spec.num_clients + self.triggers
        self.connect_limit = settle(spec) + spec.connect_timeout
        self.planned = spec.num_clients * len(self.names) * spec.event_count
        self.wait = spec.event_wait
        self.triggered_at: float | None = None

    def __call__(self, agg: RunAggregate, elapsed: float) -> str | None:
        if elapsed >= self.connect_limit and agg.totals().get("connects", 0) < self.clients:
            return _DONE  # the connect check fails: nothing more to wait for
        ledger = agg.fanout
        answered = sum(n for kind, n in agg.errors().items() if kind.startswith("http_"))
        for name in self.names:
            if (t := ledger.topics.get(name)) is not None:
                answered += sum(int(s.size) for s, _, _ in t.pubs)
                answered += t.counts.get("publish_conflicts", 0)
        if answered < self.triggers:
            return None
        now = time.monotonic()
        if self.triggered_at is None:
            self.triggered_at = now
        got = sum(
            t.counts.get("deliveries", 0) - t.counts.get("duplicates", 0)
            for name in self.names
            if (t := ledger.topics.get(name)) is not None
        )
        if got >= self.planned or now - self.triggered_at >= self.wait:
            return _DONE
        return None


@dataclass
class EventOutcome:
    """What :func:`run_event` hands the CLI and the API (the shape of a check mode's outcome)."""

    document: dict[str, Any]
    aborted: str = ""
    interrupted: bool = False

    def summary(self) -> dict[str, Any]:
        return self.document


async def run_event(
    spec: JobSpec,
    *,
    options: SessionOptions | None = None,
    on_log: Callable[[str], None] | None = None,
) -> EventOutcome:
    """Run the event mode as a load job of one local worker and judge it."""
    job = event_job(spec)
    opts = options or SessionOptions(expect_workers=1)
    outcome: RunOutcome = await run_session(
        job, local_workers=1, options=opts, on_log=on_log, on_progress=_Watch(spec)
    )
    aborted = "" if outcome.aborted == _DONE else outcome.aborted
    if outcome.aborted == _DONE:
        outcome.aborted = ""
    ledger = outcome.aggregate.fanout
    triggered = frozenset(triggered_topics(ledger, spec))
    owe_whole_triggers(ledger, spec)
    summary = conclude(job, outcome)
    listed = ledger.figures(MAX_LISTED_MISSING)
    worker = next(iter(outcome.workers), "")
    run = EventRun.of(summary, listed, triggered, worker)
    if aborted:
        document = {
            "mode": "event", "ok": False, "worker": worker, "checks": [],
            "lost_workers": list(outcome.lost_workers), "interrupted": outcome.interrupted,
            "interrupted_by": outcome.interrupted_by, "aborted": aborted,
        }  # fmt: skip
    else:
        document = judge(spec, run)
    return EventOutcome(document, aborted, outcome.interrupted)


__all__ = [
    "MAX_LISTED_MISSING",
    "EventOutcome",
    "EventRun",
    "judge",
    "owe_whole_triggers",
    "run_event",
    "triggered_topics",
]
